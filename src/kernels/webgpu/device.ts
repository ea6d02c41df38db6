/// <reference types="@webgpu/types" />
/**
 * Getting a GPUDevice for the WebGPU kernels: a page's `navigator.gpu`, or in Node the
 * optional `webgpu` package (dawn.node), imported only when this backend is asked for.
 * In Node a software adapter works: Mesa's lavapipe (Vulkan), e.g. Debian's
 * mesa-vulkan-drivers from bookworm-backports.
 */
import { ConvNextError } from '../../errors.js';
import { WebGPUKernels } from './kernels.js';

export { WebGPUKernels } from './kernels.js';
export { GpuTensor, GpuMemory } from './tensor.js';

export interface WebGPUOptions {
  /** Use this device (its owner destroys it); otherwise an adapter is requested and a device created. */
  device?: GPUDevice;
  /** Node only: dawn.node options for `create`, e.g. ['backend=opengl'] (default: none). */
  dawnOptions?: string[];
  /** requestAdapter's featureLevel ('compatibility' for Dawn's OpenGL ES backend). */
  featureLevel?: 'core' | 'compatibility';
  powerPreference?: 'low-power' | 'high-performance';
}

interface DawnModule {
  create(options: string[]): GPU;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').trim();

/** navigator.gpu, or dawn.node's GPU in Node. */
async function getGpu(opts: WebGPUOptions): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const isNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
  if (nav?.gpu && !opts.dawnOptions) return nav.gpu;
  if (!isNode) throw new ConvNextError('webgpu backend: this browser has no WebGPU (navigator.gpu is missing)');
  // A computed specifier: bundlers leave the optional Node-only package alone.
  const specifier = 'webgpu';
  let mod: DawnModule;
  try {
    mod = (await import(specifier)) as DawnModule;
  } catch (e) {
    throw new ConvNextError(`webgpu backend: the optional package 'webgpu' (dawn.node) did not load (${message(e)}); npm install webgpu`);
  }
  try {
    return mod.create(opts.dawnOptions ?? []);
  } catch (e) {
    throw new ConvNextError(`webgpu backend: dawn.node could not start (${message(e)})`);
  }
}

/** The adapter in words: 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6) (mesa, software)'. */
export function describeAdapter(info: GPUAdapterInfo | undefined): string {
  if (!info) return 'webgpu';
  // Chromium's SwiftShader names neither description nor device: its architecture is the name.
  const name = info.description || info.device || info.architecture || 'unknown adapter';
  const more = [info.vendor, info.architecture].filter((s) => s && s !== name).join(', ');
  return more ? `${name} (${more})` : name;
}

/** Whether an adapter is a CPU rasteriser (Mesa's llvmpipe / lavapipe, SwiftShader, a fallback adapter), not a GPU. */
export function isSoftwareAdapter(info: GPUAdapterInfo | undefined): boolean {
  if (!info) return false;
  if ((info as { isFallbackAdapter?: boolean }).isFallbackAdapter) return true;
  return /software|swiftshader|llvmpipe|lavapipe|cpu/i.test(`${info.architecture} ${info.device} ${info.description}`);
}

/** The WebGPU kernels on `opts.device`, or on a new device of the default adapter. */
export async function createWebGPUKernels(opts: WebGPUOptions = {}): Promise<WebGPUKernels> {
  if (opts.device) {
    return new WebGPUKernels({ device: opts.device, description: describeAdapter(opts.device.adapterInfo), software: isSoftwareAdapter(opts.device.adapterInfo), ownsDevice: false });
  }
  const gpu = await getGpu(opts);
  let adapter: GPUAdapter | null;
  try {
    const req: GPURequestAdapterOptions & { featureLevel?: string } = { powerPreference: opts.powerPreference ?? 'high-performance' };
    if (opts.featureLevel) req.featureLevel = opts.featureLevel;
    adapter = await gpu.requestAdapter(req);
  } catch (e) {
    throw new ConvNextError(`webgpu backend: requestAdapter failed (${message(e)})`);
  }
  if (!adapter) {
    const inNode = !(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu || opts.dawnOptions;
    throw new ConvNextError(inNode
      ? 'webgpu backend: no WebGPU adapter (in Node: no Vulkan driver that Dawn accepts; install Mesa lavapipe, e.g. mesa-vulkan-drivers)'
      : 'webgpu backend: the browser gives no WebGPU adapter (WebGPU may be disabled or blocked for this GPU; Chromium without a GPU needs --enable-unsafe-webgpu)');
  }
  const l = adapter.limits;
  // The kernels bind whole buffers and use up to 8 storage buffers and 256-thread workgroups;
  // ask for the adapter's largest buffers so that big activations fit one binding.
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
  };
  const requiredFeatures: GPUFeatureName[] = adapter.features.has('shader-f16') ? ['shader-f16'] : [];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'convnextv2' });
  } catch (e) {
    throw new ConvNextError(`webgpu backend: requestDevice failed (${message(e)})`);
  }
  return new WebGPUKernels({ device, description: describeAdapter(adapter.info), software: isSoftwareAdapter(adapter.info), ownsDevice: true, keepAlive: gpu });
}
