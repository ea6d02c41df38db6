/**
 * The backend registry: the one place a kernel backend is chosen and created. Nothing is loaded
 * when this module is imported: the native addon, the WebAssembly module and a GPU device are
 * loaded by `createBackend` only, and every model, optimizer and engine is given the backend it
 * runs on (there is no process-wide default). Two models on two backends live in one process.
 *
 * - `native`: the C++ addon (build/Release/convnextv2.node). `CONVNEXTV2_ISA` asks for one of its
 *   paths (avx512, avx2, portable): when that cannot be had the backend is refused, never
 *   replaced by another path.
 * - `wasm`: the same C++ compiled to WebAssembly (npm run build:wasm in Node; the page's .wasm in
 *   a browser bundle).
 * - `webgpu`: WGSL kernels on a GPU (navigator.gpu in a page; the optional npm package `webgpu`
 *   in Node, imported only here).
 * - `reference`: the TypeScript oracle (slow).
 * - `cpu`: what `CONVNEXTV2_KERNELS` names (native, wasm, webgpu or reference) when it is set, else
 *   native, or the reference with a warning where the addon does not load (silently in a browser
 *   bundle, which has no addon by design).
 * - `auto`: webgpu on a hardware adapter, else `cpu` (a software adapter such as Mesa's llvmpipe
 *   or SwiftShader is correct but slower than the CPU kernels).
 */
import { ConvNextError } from '../errors.js';
import { withChecks } from './ops.js';
import { ReferenceKernels } from './reference.js';
import type { Kernels } from './types.js';
import type { WebGPUOptions } from './webgpu/device.js';
import type { WasmLocation } from './wasm.js';

export type { Kernels, Isa } from './types.js';
export { Act, hostMemory, memoryOf, type TensorMemory } from './types.js';

/** What createBackend takes: a device (`cpu`, `webgpu`, or `auto`: a hardware GPU when there is one) or one CPU backend. */
export type BackendChoice = 'auto' | 'cpu' | 'webgpu' | 'native' | 'wasm' | 'reference';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'cpu', 'webgpu', 'native', 'wasm', 'reference'];
const ENV_CHOICES = ['native', 'reference', 'wasm', 'webgpu'];

export interface BackendOptions {
  /** For webgpu: an existing GPUDevice, dawn.node options, the adapter's feature level (see WebGPUOptions). */
  webgpu?: WebGPUOptions;
  /** Threads of the parallel kernels (native: process-wide; wasm: the threads it starts). */
  threads?: number;
  /** For wasm: where the module is (Node: a file, default dist/wasm/convnextv2.wasm; a page: the folder's URL, default ../wasm/ beside the bundle). */
  wasm?: WasmLocation;
}

// No `process` in a browser: no environment.
const env = (): Record<string, string | undefined> =>
  (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};

/** Why a backend could not be made, and whether the browser bundle lacks it by design. */
function reason(e: unknown): { error: string; browserBuild: boolean } {
  return { error: e instanceof Error ? e.message : String(e), browserBuild: e instanceof Error && e.name === 'BrowserBuild' };
}

// The addon is process-wide (its ISA and threads are settings of the loaded library): one
// NativeKernels per process, made on first request (the browser bundle swaps ./native.js for a
// module that throws).
let nativeLoad: Promise<Kernels> | null = null;
function loadNative(): Promise<Kernels> {
  nativeLoad ??= import('./native.js').then((m) => new m.NativeKernels());
  return nativeLoad;
}

/**
 * The native kernels, or the reason they do not load (`convnextv2 info`). Loading them is what
 * this asks; nothing else is created.
 */
export async function nativeBackend(): Promise<{ kernels: Kernels | null; error: string | null }> {
  try {
    return { kernels: await loadNative(), error: null };
  } catch (e) {
    return { kernels: null, error: reason(e).error };
  }
}

async function make(choice: BackendChoice, opts: BackendOptions): Promise<Kernels> {
  switch (choice) {
    case 'native':
      try {
        return await loadNative();
      } catch (e) {
        const why = reason(e).error;
        throw new ConvNextError(why.startsWith('CONVNEXTV2_ISA') ? why : `the native addon did not load (${why})`, 2);
      }
    case 'reference':
      return new ReferenceKernels();
    case 'wasm':
      try {
        return await (await import('./wasm_node.js')).loadWasmBackend({ ...opts.wasm, threads: opts.threads });
      } catch (e) {
        const why = reason(e).error;
        throw new ConvNextError(why.startsWith('wasm kernels') ? why : `wasm kernels: ${why}`, 2);
      }
    case 'webgpu':
      return (await import('./webgpu/device.js')).createWebGPUKernels(opts.webgpu);
    case 'cpu': {
      const chosen = env().CONVNEXTV2_KERNELS || undefined;
      if (chosen !== undefined) {
        if (!ENV_CHOICES.includes(chosen)) {
          throw new ConvNextError(`CONVNEXTV2_KERNELS=${chosen}: unknown kernels (use native, reference, wasm or webgpu, or leave it unset)`, 2);
        }
        try {
          return await make(chosen as BackendChoice, opts);
        } catch (e) {
          const why = reason(e).error;
          throw new ConvNextError(why.startsWith('CONVNEXTV2_ISA') ? why : `CONVNEXTV2_KERNELS=${chosen}: ${why}`, 2);
        }
      }
      try {
        return await loadNative();
      } catch (e) {
        const { error, browserBuild } = reason(e);
        if (env().CONVNEXTV2_ISA) throw new ConvNextError(error.startsWith('CONVNEXTV2_ISA') ? error : `CONVNEXTV2_ISA: native kernels unavailable (${error})`, 2);
        const p = (globalThis as { process?: { emitWarning?: (m: string) => void } }).process;
        if (!browserBuild && p?.emitWarning) p.emitWarning(`convnextv2: native kernels unavailable (${error}); using the slow TypeScript reference`);
        return new ReferenceKernels();
      }
    }
    case 'auto': {
      let gpu: (Kernels & { software?: boolean; destroy?: () => void }) | null = null;
      let why = '';
      try {
        gpu = await (await import('./webgpu/device.js')).createWebGPUKernels(opts.webgpu);
      } catch (e) {
        gpu = null;
        why = `no WebGPU device (${reason(e).error})`;
      }
      if (gpu && !gpu.software) {
        lastAuto = `the GPU ${gpu.capabilities().description}: a hardware WebGPU adapter`;
        return gpu;
      }
      if (gpu) why = `the only WebGPU adapter, ${gpu.capabilities().description}, is a software one (a CPU emulation: correct but slower than the CPU kernels)`;
      gpu?.destroy?.();
      lastAuto = `the CPU kernels: ${why}`;
      return make('cpu', opts);
    }
    default:
      throw new ConvNextError(`unknown backend '${String(choice)}' (use ${BACKEND_CHOICES.join(', ')})`, 2);
  }
}

let lastAuto: string | null = null;

/** What the last `createBackend('auto')` chose and why, in words (null before one). */
export function autoChoice(): string | null {
  return lastAuto;
}

/**
 * Creates a kernel backend (asynchronously: a GPU's adapter and device are). Every model, FCMAE,
 * engine and loader is then given it (`new ConvNeXtV2(config, { kernels })`). Its kernels check
 * their arguments against the op table (ops.ts) before they run.
 */
export async function createBackend(choice: BackendChoice = 'cpu', opts: BackendOptions = {}): Promise<Kernels> {
  // Every backend refuses a bad call the same way: the op table's one validator runs first.
  const k = withChecks(await make(choice, opts));
  if (opts.threads !== undefined) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new ConvNextError(`threads ${opts.threads}: must be a positive integer`, 2);
    k.setThreads?.(opts.threads);
  }
  return k;
}
