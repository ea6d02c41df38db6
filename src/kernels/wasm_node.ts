/** The WebAssembly kernels in Node: dist/wasm/convnextv2.wasm (npm run build:wasm), or CONVNEXTV2_WASM. */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WasmKernels } from './wasm.js';

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const wasmPath = process.env.CONVNEXTV2_WASM || path.join(packageRoot, 'dist', 'wasm', 'convnextv2.wasm');

export function loadWasmKernels(file = wasmPath): WasmKernels {
  if (!existsSync(file)) throw new Error(`wasm kernels not built (${file} missing; run npm run build:wasm)`);
  return new WasmKernels(new WebAssembly.Module(readFileSync(file)));
}
