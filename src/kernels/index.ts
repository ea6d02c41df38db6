/**
 * Chooses the kernel backend: the native addon when it loads, else the TypeScript reference
 * (slow; a warning is printed once). `CONVNEXTV2_KERNELS=reference` forces the reference,
 * `CONVNEXTV2_KERNELS=native` the addon (an error, not a fallback, when it does not load),
 * `CONVNEXTV2_KERNELS=wasm` the WebAssembly build of the same kernels (npm run build:wasm); any
 * other value is an error.
 * `CONVNEXTV2_ISA` asks for one native path: when that cannot be had (unknown, or the CPU
 * lacks it) getKernels() throws instead of falling back.
 */
import { ConvNextError } from '../errors.js';
import { ReferenceKernels } from './reference.js';
import type { Kernels } from './types.js';

export type { Kernels, Isa } from './types.js';
export { Act, hostMemory, memoryOf, type TensorMemory } from './types.js';
export { ReferenceKernels } from './reference.js';

let cached: Kernels | null = null;

/** A backend built by `make` (a dynamic import: the browser bundle swaps those modules for throwing stand-ins), or why not. */
async function tryLoad(make: () => Promise<Kernels>): Promise<{ kernels: Kernels | null; error: string | null; browserBuild: boolean }> {
  try {
    return { kernels: await make(), error: null, browserBuild: false };
  } catch (e) {
    return { kernels: null, error: e instanceof Error ? e.message : String(e), browserBuild: e instanceof Error && e.name === 'BrowserBuild' };
  }
}

const KERNEL_CHOICES = ['native', 'reference', 'wasm'];
// No `process` in a browser: no environment, and ./native.js is replaced by a module that throws.
const env: Record<string, string | undefined> = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const chosen = env.CONVNEXTV2_KERNELS || undefined;
const none = { kernels: null, error: null, browserBuild: false };
const nativeLoad = chosen === 'reference' || chosen === 'wasm' ? none : await tryLoad(async () => new (await import('./native.js')).NativeKernels());
const native: Kernels | null = nativeLoad.kernels;
const nativeError = nativeLoad.error;
const browserBuild = nativeLoad.browserBuild;
const wasmLoad = chosen === 'wasm' ? await tryLoad(async () => (await import('./wasm_node.js')).loadWasmKernels()) : none;
const wasm: Kernels | null = wasmLoad.kernels;
const wasmError = wasmLoad.error;

/** The default kernels: native when available. */
export function getKernels(): Kernels {
  if (cached) return cached;
  if (chosen !== undefined && !KERNEL_CHOICES.includes(chosen)) {
    throw new ConvNextError(`CONVNEXTV2_KERNELS=${chosen}: unknown kernels (use native, reference or wasm, or leave it unset)`, 2);
  }
  if (chosen === 'native' && !native) throw new ConvNextError(`CONVNEXTV2_KERNELS=native: the native addon did not load (${nativeError})`, 2);
  if (chosen === 'wasm') {
    if (!wasm) throw new ConvNextError(`CONVNEXTV2_KERNELS=wasm: ${wasmError}`, 2);
    return (cached = wasm);
  }
  if (native) {
    cached = native;
  } else {
    if (env.CONVNEXTV2_ISA && env.CONVNEXTV2_KERNELS !== 'reference') {
      throw new ConvNextError(nativeError?.startsWith('CONVNEXTV2_ISA') ? nativeError : `CONVNEXTV2_ISA: native kernels unavailable (${nativeError})`, 2);
    }
    // The browser bundle has no addon by design: the reference kernels are its kernels, no warning.
    if (env.CONVNEXTV2_KERNELS !== 'reference' && !browserBuild) {
      const p = (globalThis as { process?: { emitWarning?: (m: string) => void } }).process;
      if (p?.emitWarning) p.emitWarning(`convnextv2: native kernels unavailable (${nativeError}); using the slow TypeScript reference`);
    }
    cached = new ReferenceKernels();
  }
  return cached;
}

/** The native kernels, or null with the reason they did not load. */
export function getNativeKernels(): { kernels: Kernels | null; error: string | null } {
  return { kernels: native, error: nativeError };
}

/** Sets the thread count of the default kernels: native, or wasm up to the threads it started (no-op for the reference). */
export function setThreads(n: number): void {
  for (const k of [native, wasm] as (Kernels & { setThreads?: (n: number) => void } | null)[]) {
    if (k && typeof k.setThreads === 'function') k.setThreads(n);
  }
}
