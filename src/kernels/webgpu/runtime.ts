/// <reference types="@webgpu/types" />
/**
 * The machinery under the WebGPU kernels: pipelines built once per (kernel, override
 * constants), explicit bind-group layouts, per-call scratch buffers and uniforms, dispatch.
 *
 * Ordering: every kernel call records its passes in one command encoder and submits it before
 * returning, so the queue runs kernel calls, `queue.writeBuffer`s (Kernels.write, uniforms,
 * uploads of host inputs) and copies in program order. That is also why per-call scratch
 * buffers can be handed out again to the next call as soon as this one is submitted: a later
 * writeBuffer or dispatch into them is behind this submission on the queue timeline.
 */
import { assemble, type BufferSpec, type KernelDef, packParams, type ParamSpec } from './wgsl/common.js';
import { BufferUsage, SHADER_STAGE_COMPUTE } from './tensor.js';

/** Workgroups per grid dimension (the WebGPU default limit). */
const MAX_GROUPS = 65535;

interface Built {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

/** Buffers handed out for one kernel call, pooled by power-of-two size. */
class Pool {
  private free = new Map<number, GPUBuffer[]>();
  private used: [number, GPUBuffer][] = [];
  constructor(private readonly device: GPUDevice, private readonly usage: number, private readonly label: string,
    private readonly maxBytes: number) {}

  take(bytes: number): GPUBuffer {
    // Powers of two (reused across calls), or the exact size in 256-byte steps where the
    // power of two would exceed the device's largest binding.
    let size = 256;
    while (size < bytes) size *= 2;
    if (size > this.maxBytes) size = Math.ceil(bytes / 256) * 256;
    if (size > this.maxBytes) throw new Error(`webgpu: a scratch buffer of ${bytes} bytes exceeds the device's largest storage binding (${this.maxBytes} bytes)`);
    const list = this.free.get(size);
    const b = list?.pop() ?? this.device.createBuffer({ size, usage: this.usage, label: `${this.label} ${size}` });
    this.used.push([size, b]);
    return b;
  }

  /** Everything taken since the last release goes back (the call has been submitted). */
  release(): void {
    for (const [size, b] of this.used) {
      let list = this.free.get(size);
      if (!list) this.free.set(size, (list = []));
      list.push(b);
    }
    this.used = [];
  }

  destroy(): void {
    this.release();
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
  }
}

export type Groups = number | readonly [number, number, number];

/** A kernel call being recorded: dispatches, copies and clears into one command encoder. */
export class Call {
  readonly encoder: GPUCommandEncoder;
  constructor(private readonly rt: GpuRuntime) {
    this.encoder = rt.device.createCommandEncoder();
  }

  /**
   * One dispatch of `def`. `groups` is a count of workgroups (folded into a 2D grid; the shader
   * numbers them with groupIndex) or an explicit 3D grid.
   */
  dispatch<Pm extends ParamSpec, Bf extends BufferSpec>(
    def: KernelDef<Pm, Bf>,
    params: { readonly [K in keyof Pm]: number },
    buffers: { readonly [K in keyof Bf]: GPUBuffer },
    groups: Groups,
    constants?: Readonly<Record<string, number>>,
  ): void {
    let grid: [number, number, number];
    if (typeof groups === 'number') {
      if (groups <= 0) return;
      const x = Math.min(groups, MAX_GROUPS);
      const y = Math.ceil(groups / x);
      if (y > MAX_GROUPS) throw new Error(`webgpu ${def.name}: ${groups} workgroups are too many`);
      grid = [x, y, 1];
    } else {
      if (groups.some((g) => g <= 0)) return;
      if (groups.some((g) => g > MAX_GROUPS)) throw new Error(`webgpu ${def.name}: grid ${groups.join('x')} exceeds ${MAX_GROUPS} per dimension`);
      grid = [groups[0], groups[1], groups[2]];
    }
    // Each distinct buffer is bound once (see assemble); absent arguments get a dummy each.
    const names = Object.keys(def.buffers);
    const distinct: GPUBuffer[] = [];
    const slots = names.map((n, i) => {
      let b = (buffers as Record<string, GPUBuffer>)[n];
      if (b === this.rt.dummy) b = this.rt.dummyAt(i);
      let j = distinct.indexOf(b);
      if (j < 0) j = distinct.push(b) - 1;
      return j;
    });
    const built = this.rt.pipeline(def, slots, constants);
    const uniform = this.rt.uniforms.take(16);
    const data = packParams(def.params, params as Readonly<Record<string, number>>);
    this.rt.device.queue.writeBuffer(uniform, 0, data);
    const entries: GPUBindGroupEntry[] = distinct.map((b, j) => ({ binding: j, resource: { buffer: b } }));
    entries.push({ binding: distinct.length, resource: { buffer: uniform, size: data.byteLength } });
    const bindGroup = this.rt.device.createBindGroup({ layout: built.layout, entries });
    const pass = this.encoder.beginComputePass();
    pass.setPipeline(built.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    pass.end();
  }

  /** A scratch storage buffer of at least `floats` floats, for this call only (contents undefined). */
  scratch(floats: number): GPUBuffer {
    return this.rt.storage.take(Math.max(16, floats * 4));
  }

  /** A scratch buffer holding `data` (a host input). */
  upload(data: Float32Array | Int32Array): GPUBuffer {
    const b = this.scratch(data.length);
    if (data.length > 0) this.rt.device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  }

  submit(): void {
    this.rt.device.queue.submit([this.encoder.finish()]);
    this.rt.storage.release();
    this.rt.uniforms.release();
  }
}

export class GpuRuntime {
  private readonly built = new Map<string, Built>();
  readonly storage: Pool;
  readonly uniforms: Pool;
  /** Stands for an absent optional argument (dispatch binds dummyAt(i) instead). */
  readonly dummy: GPUBuffer;
  private readonly dummies: GPUBuffer[] = [];
  /** Validation and out-of-memory errors reported by the device since the last `takeError`. */
  private errors: string[] = [];

  constructor(readonly device: GPUDevice) {
    const maxBytes = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    this.storage = new Pool(device, BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST, 'webgpu scratch', maxBytes);
    this.uniforms = new Pool(device, BufferUsage.UNIFORM | BufferUsage.COPY_DST, 'webgpu params', device.limits.maxUniformBufferBindingSize);
    this.dummy = device.createBuffer({ size: 16, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST, label: 'webgpu dummy' });
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      if (this.errors.length < 8) this.errors.push(ev.error.message);
    };
  }

  /** The first device error since the last call, or null. */
  takeError(): string | null {
    const e = this.errors[0] ?? null;
    this.errors = [];
    return e;
  }

  call(): Call {
    return new Call(this);
  }

  /** A dummy buffer for absent argument i (distinct per argument: bindings must not alias). */
  dummyAt(i: number): GPUBuffer {
    while (this.dummies.length <= i) {
      this.dummies.push(this.device.createBuffer({ size: 16, usage: BufferUsage.STORAGE, label: `webgpu dummy ${this.dummies.length}` }));
    }
    return this.dummies[i];
  }

  /** The pipeline of `def` for one binding pattern (slots) and set of override constants, built once. */
  pipeline(def: KernelDef, slots: readonly number[], constants?: Readonly<Record<string, number>>): Built {
    const key = `${def.name}|${slots.join(',')}|${constants ? JSON.stringify(constants) : ''}`;
    let b = this.built.get(key);
    if (b) return b;
    const count = Math.max(-1, ...slots) + 1;
    const entries: GPUBindGroupLayoutEntry[] = [];
    for (let j = 0; j < count; j++) entries.push({ binding: j, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'storage' } });
    entries.push({ binding: count, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'uniform' } });
    const layout = this.device.createBindGroupLayout({ entries, label: def.name });
    const module = this.device.createShaderModule({ code: assemble(def, slots), label: def.name });
    const pipeline = this.device.createComputePipeline({
      label: key,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main', constants: constants ? { ...constants } : undefined },
    });
    b = { pipeline, layout };
    this.built.set(key, b);
    return b;
  }

  destroy(): void {
    this.storage.destroy();
    this.uniforms.destroy();
    this.dummy.destroy();
    for (const d of this.dummies) d.destroy();
    this.built.clear();
  }
}
