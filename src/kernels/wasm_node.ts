/**
 * The WebAssembly kernels in Node: dist/wasm/convnextv2.wasm (npm run build:wasm; the
 * shared-memory build, so tensors live in its memory), or CONVNEXTV2_WASM, with
 * CONVNEXTV2_THREADS threads (default: the CPUs this process may use) on worker_threads.
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { WASM_THREAD_MAIN, type WasmLocation, type WasmThreadHost, WasmKernels } from './wasm.js';

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const wasmPath = process.env.CONVNEXTV2_WASM || path.join(packageRoot, 'dist', 'wasm', 'convnextv2.wasm');

/** Kernel threads on worker_threads; they do not keep the process alive. */
export const nodeThreadHost: WasmThreadHost = {
  spawn(init, onError) {
    const w = new Worker(`const { workerData } = require('node:worker_threads');\n(${WASM_THREAD_MAIN})(workerData);`, { eval: true, workerData: init });
    w.on('error', (e: Error) => onError(e.message));
    w.unref();
    return { terminate: () => void w.terminate() };
  },
};

function defaultThreads(): number {
  const e = process.env.CONVNEXTV2_THREADS;
  if (e !== undefined && /^\d+$/.test(e) && +e >= 1 && +e <= 256) return +e;
  return availableParallelism();
}

/** The wasm backend as createBackend('wasm') makes it in Node. */
export function loadWasmBackend(o: WasmLocation & { threads?: number }): Promise<WasmKernels> {
  return loadWasmKernels(o.file, o.threads);
}

export async function loadWasmKernels(file = wasmPath, threads = defaultThreads()): Promise<WasmKernels> {
  if (!existsSync(file)) throw new Error(`wasm kernels not built (${file} missing; run npm run build:wasm)`);
  const module = new WebAssembly.Module(readFileSync(file));
  return WasmKernels.create(module, { threads, host: nodeThreadHost });
}
