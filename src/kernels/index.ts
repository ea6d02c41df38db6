/**
 * Chooses the kernel backend: the native addon when it loads, else the TypeScript reference
 * (slow; a warning is printed once). `CONVNEXTV2_KERNELS=reference` forces the reference,
 * `CONVNEXTV2_KERNELS=native` the addon (an error, not a fallback, when it does not load),
 * `CONVNEXTV2_KERNELS=wasm` the WebAssembly build of the same kernels (npm run build:wasm),
 * `CONVNEXTV2_KERNELS=webgpu` the WebGPU backend (the optional npm package `webgpu` in Node);
 * any other value is an error. `createBackend` is the asynchronous, explicit way.
 * `CONVNEXTV2_ISA` asks for one native path: when that cannot be had (unknown, or the CPU
 * lacks it) getKernels() throws instead of falling back.
 */
import { ConvNextError } from '../errors.js';
import { ReferenceKernels } from './reference.js';
import type { Kernels } from './types.js';
import type { WebGPUOptions } from './webgpu/device.js';

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

const KERNEL_CHOICES = ['native', 'reference', 'wasm', 'webgpu'];
// No `process` in a browser: no environment, and ./native.js is replaced by a module that throws.
const env: Record<string, string | undefined> = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const chosen = env.CONVNEXTV2_KERNELS || undefined;
const none = { kernels: null, error: null, browserBuild: false };
const nativeLoad = chosen === 'reference' || chosen === 'wasm' || chosen === 'webgpu' ? none : await tryLoad(async () => new (await import('./native.js')).NativeKernels());
const native: Kernels | null = nativeLoad.kernels;
const nativeError = nativeLoad.error;
const browserBuild = nativeLoad.browserBuild;
const wasmLoad = chosen === 'wasm' ? await tryLoad(async () => (await import('./wasm_node.js')).loadWasmKernels()) : none;
const wasm: Kernels | null = wasmLoad.kernels;
const wasmError = wasmLoad.error;
const webgpuLoad = chosen === 'webgpu' ? await tryLoad(async () => (await import('./webgpu/device.js')).createWebGPUKernels()) : none;

/** The default kernels: native when available. */
export function getKernels(): Kernels {
  if (cached) return cached;
  if (chosen !== undefined && !KERNEL_CHOICES.includes(chosen)) {
    throw new ConvNextError(`CONVNEXTV2_KERNELS=${chosen}: unknown kernels (use native, reference, wasm or webgpu, or leave it unset)`, 2);
  }
  if (chosen === 'native' && !native) throw new ConvNextError(`CONVNEXTV2_KERNELS=native: the native addon did not load (${nativeError})`, 2);
  if (chosen === 'wasm') {
    if (!wasm) throw new ConvNextError(`CONVNEXTV2_KERNELS=wasm: ${wasmError}`, 2);
    return (cached = wasm);
  }
  if (chosen === 'webgpu') {
    if (!webgpuLoad.kernels) throw new ConvNextError(`CONVNEXTV2_KERNELS=webgpu: ${webgpuLoad.error}`, 2);
    return (cached = webgpuLoad.kernels);
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

/** Makes `k` what getKernels() returns (the CLI's --device), for models created without `kernels`. */
export function setDefaultKernels(k: Kernels): void {
  cached = k;
}

/** What createBackend takes: a device (`cpu`, `webgpu`, or `auto`: a hardware GPU when there is one) or one CPU backend. */
export type BackendChoice = 'auto' | 'cpu' | 'webgpu' | 'native' | 'wasm' | 'reference';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'cpu', 'webgpu', 'native', 'wasm', 'reference'];

export interface BackendOptions {
  /** For webgpu: an existing GPUDevice, dawn.node options, the adapter's feature level (see WebGPUOptions). */
  webgpu?: WebGPUOptions;
}

/**
 * A kernel backend, created asynchronously (a GPU's adapter and device are). `cpu` is
 * getKernels() (native, or the reference where the addon is missing); `webgpu` is the WGSL
 * backend (navigator.gpu in a page; in Node the optional npm package `webgpu`, imported only
 * here); `auto` is webgpu on a hardware adapter, else cpu (a software adapter such as Mesa's
 * llvmpipe or SwiftShader is correct but slower than the CPU kernels).
 */
export async function createBackend(choice: BackendChoice = 'auto', opts: BackendOptions = {}): Promise<Kernels> {
  switch (choice) {
    case 'cpu':
      return getKernels();
    case 'native':
      if (!native) throw new ConvNextError(`native kernels: the addon did not load (${nativeError})`, 2);
      return native;
    case 'reference':
      return new ReferenceKernels();
    case 'wasm':
      return wasm ?? (await import('./wasm_node.js')).loadWasmKernels();
    case 'webgpu':
      return (await import('./webgpu/device.js')).createWebGPUKernels(opts.webgpu);
    case 'auto': {
      const gpu = await tryLoad(async () => (await import('./webgpu/device.js')).createWebGPUKernels(opts.webgpu));
      const k = gpu.kernels as (Kernels & { software?: boolean; destroy?: () => void }) | null;
      if (k && !k.software) return k;
      k?.destroy?.();
      return getKernels();
    }
    default:
      throw new ConvNextError(`unknown backend '${String(choice)}' (use ${BACKEND_CHOICES.join(', ')})`, 2);
  }
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
