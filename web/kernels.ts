/**
 * The one place the app builds its kernel backend (the Worker calls it once): the WebAssembly
 * build of the native kernels, on all cores with Web Worker threads sharing its memory where
 * the page is cross-origin isolated (npm run web serves it so), else the single-thread build;
 * the TypeScript reference kernels, with a note the page shows, when no .wasm file can be had.
 */
import { ReferenceKernels, errorLine, loadWasmKernels, type Kernels } from '../src/web.js';

export interface AppKernels {
  kernels: Kernels;
  /** In words, for the page's header. */
  label: string;
  /** Why the reference kernels are used, or null. */
  fallback: string | null;
}

/** `wasmDir`: the folder holding convnextv2.wasm / convnextv2-single.wasm (dist/wasm, served as /wasm/). */
export async function createKernels(wasmDir: URL): Promise<AppKernels> {
  try {
    const kernels = await loadWasmKernels({ baseUrl: wasmDir });
    const t = kernels.threads;
    return { kernels, label: `WebAssembly kernels (SIMD128, ${t} thread${t === 1 ? '' : 's'})`, fallback: null };
  } catch (e) {
    return { kernels: new ReferenceKernels(), label: 'TypeScript reference kernels (slow)', fallback: `no WebAssembly kernels: ${errorLine(e, 160)}` };
  }
}
