/**
 * The one place the app builds its kernel backends (the Worker calls these): on the CPU the
 * WebAssembly build of the native kernels, on all cores with Web Worker threads sharing its
 * memory where the page is cross-origin isolated (npm run web serves it so), else the
 * single-thread build; the TypeScript reference kernels, with a note the page shows, when no
 * .wasm file can be had. On the GPU the WebGPU kernels on the Worker's navigator.gpu (the
 * adapter's own device, destroyed with the backend).
 */
import { ConvNextError, createBackend, errorLine, type Kernels } from '../src/web.js';
import type { Device } from './protocol.js';

export interface AppKernels {
  kernels: Kernels;
  device: Device;
  /** In words, for the page's header. */
  label: string;
  /** The adapter or CPU in words (capabilities().description). */
  adapter: string;
  /** A software adapter (SwiftShader, llvmpipe): correct but slower than the CPU kernels. */
  software: boolean;
  /** Why the reference kernels are used, or null. */
  fallback: string | null;
  /** Frees what the backend holds (the GPU device and every tensor on it); a no-op on the CPU. */
  destroy(): void;
}

/** `wasmDir`: the folder holding convnextv2.wasm / convnextv2-single.wasm (dist/wasm, served as /wasm/). */
export async function createKernels(wasmDir: URL): Promise<AppKernels> {
  const cpu = (kernels: Kernels, label: string, fallback: string | null): AppKernels => ({
    kernels, device: 'cpu', label, adapter: kernels.capabilities().description, software: false, fallback, destroy: () => {},
  });
  try {
    const kernels = await createBackend('wasm', { wasm: { baseUrl: wasmDir } });
    const t = kernels.threads;
    return cpu(kernels, `WebAssembly kernels (SIMD128, ${t} thread${t === 1 ? '' : 's'})`, null);
  } catch (e) {
    return cpu(await createBackend('reference'), 'TypeScript reference kernels (slow)', `no WebAssembly kernels: ${errorLine(e, 160)}`);
  }
}

/** Why this context cannot offer WebGPU, or null when it has navigator.gpu. */
export function noWebGpu(): string | null {
  const gpu: GPU | undefined = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  return gpu ? null : 'no navigator.gpu in the Worker';
}

/** The WebGPU kernels on a new device of the default adapter; throws (one line) when there is none. */
export async function createGpuKernels(): Promise<AppKernels> {
  const why = noWebGpu();
  if (why) throw new ConvNextError(`WebGPU is not available here (${why}): the CPU is used`);
  let kernels: Kernels;
  try {
    kernels = await createBackend('webgpu');
  } catch (e) {
    // The library's words also address Node (Vulkan drivers); say what a browser user can do.
    if (e instanceof ConvNextError && /no WebGPU adapter/.test(e.message)) {
      throw new ConvNextError('this browser gives no WebGPU adapter (Chromium on Linux: start it with --enable-unsafe-webgpu or turn on chrome://flags/#enable-unsafe-webgpu): the CPU is used');
    }
    throw e;
  }
  const adapter = kernels.capabilities().description;
  return {
    kernels, device: 'gpu', label: `WebGPU kernels · ${adapter}`, adapter, software: kernels.capabilities().software, fallback: null,
    destroy: () => kernels.destroy?.(),
  };
}
