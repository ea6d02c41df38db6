/// <reference types="@webgpu/types" />
/**
 * The machinery under the WebGPU kernels: pipelines built once per (kernel, override
 * constants), explicit bind-group layouts, per-call scratch buffers and uniforms, dispatch.
 *
 * Ordering and batching: kernel calls record their dispatches, copies and clears into one
 * open command encoder shared by consecutive calls (dispatches into one compute pass, each its
 * own usage scope, so a dispatch sees the writes of the one before), submitted every
 * FLUSH_EVERY calls and whenever the host touches the queue otherwise: before Kernels.write's
 * writeBuffer (a write must land after the work enqueued before it), before a read, before a
 * tensor is freed (its buffer must outlive the commands that use it). The per-call scratch
 * buffers (uploads of host inputs) and uniforms are written with queue.writeBuffer as the call
 * is recorded, so they land before the batch that reads them runs; each is a buffer of its own
 * until that batch is submitted, and then goes back to its pool.
 */
import { assemble, type BufferSpec, type KernelDef, packParams, type ParamSpec } from './wgsl/common.js';
import { BufferUsage, SHADER_STAGE_COMPUTE } from './tensor.js';

/** Workgroups per grid dimension (the WebGPU default limit). */
const MAX_GROUPS = 65535;

interface Built {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** Distinguishes layouts in bind-group cache keys. */
  id: number;
}

/** Bytes of one dispatch's parameters in a uniform ring buffer (the usual minUniformBufferOffsetAlignment). */
const UNIFORM_SLOT = 256;
/** Slots per ring buffer. */
const RING_SLOTS = 256;
/** Bind groups kept (keyed by layout, buffers and ring buffer; the same arena buffers recur every step). */
const MAX_BIND_GROUPS = 8192;

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

/** Kernel calls per submitted command buffer (the GPU starts on a batch while the next is recorded). */
const FLUSH_EVERY = 32;

/** A kernel call being recorded into the runtime's open batch. */
export class Call {
  constructor(private readonly rt: GpuRuntime) {}

  /** The batch's command encoder, outside any compute pass (for copies and clears). */
  get encoder(): GPUCommandEncoder {
    return this.rt.encoderOutsidePass();
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
    const data = packParams(def.params, params as Readonly<Record<string, number>>);
    const u = this.rt.uniformSlot(data);
    const bindGroup = this.rt.bindGroup(built, distinct, u.buffer, data.byteLength);
    const pass = this.rt.computePass();
    pass.setPipeline(built.pipeline);
    pass.setBindGroup(0, bindGroup, [u.offset]);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
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

  /** The call is recorded (its work is submitted with the batch). */
  submit(): void {
    this.rt.endCall();
  }
}

export class GpuRuntime {
  private readonly built = new Map<string, Built>();
  readonly storage: Pool;
  /** Stands for an absent optional argument (dispatch binds dummyAt(i) instead). */
  readonly dummy: GPUBuffer;
  private readonly dummies: GPUBuffer[] = [];
  /** Validation and out-of-memory errors reported by the device since the last `takeError`. */
  private errors: string[] = [];

  constructor(readonly device: GPUDevice) {
    const maxBytes = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    this.storage = new Pool(device, BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST, 'webgpu scratch', maxBytes);
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

  private readonly ids = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  private readonly groups = new Map<string, GPUBindGroup>();
  /** Ring buffers of dispatch parameters: the one being filled is rings[ring]; all go back at flush. */
  private readonly rings: GPUBuffer[] = [];
  private ring = 0;
  private slot = 0;

  private idOf(b: GPUBuffer): number {
    let id = this.ids.get(b);
    if (id === undefined) this.ids.set(b, (id = this.nextId++));
    return id;
  }

  /**
   * A uniform slot holding `data` (a dispatch's parameters), bound with a dynamic offset so the
   * bind group does not depend on it. Written now: it lands before the batch that reads it.
   */
  uniformSlot(data: ArrayBuffer): { buffer: GPUBuffer; offset: number } {
    if (data.byteLength > UNIFORM_SLOT) throw new Error(`webgpu: ${data.byteLength} bytes of parameters exceed a uniform slot`);
    if (this.slot === RING_SLOTS) {
      this.ring++;
      this.slot = 0;
    }
    while (this.rings.length <= this.ring) {
      this.rings.push(this.device.createBuffer({ size: UNIFORM_SLOT * RING_SLOTS, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label: 'webgpu params' }));
    }
    const buffer = this.rings[this.ring];
    const offset = UNIFORM_SLOT * this.slot++;
    this.device.queue.writeBuffer(buffer, offset, data);
    return { buffer, offset };
  }

  /** The bind group of `storage` (in slot order) and a ring buffer, created once and kept. */
  bindGroup(built: Built, storage: readonly GPUBuffer[], ring: GPUBuffer, paramBytes: number): GPUBindGroup {
    let key = `${built.id}|${this.idOf(ring)}`;
    for (const b of storage) key += `,${this.idOf(b)}`;
    let g = this.groups.get(key);
    if (g) return g;
    if (this.groups.size >= MAX_BIND_GROUPS) this.groups.clear();
    const entries: GPUBindGroupEntry[] = storage.map((b, j) => ({ binding: j, resource: { buffer: b } }));
    entries.push({ binding: storage.length, resource: { buffer: ring, offset: 0, size: paramBytes } });
    g = this.device.createBindGroup({ layout: built.layout, entries });
    this.groups.set(key, g);
    return g;
  }

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private calls = 0;

  /** The open batch's compute pass (begun when needed). */
  computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.encoder ??= this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  /** The open batch's encoder with no compute pass open. */
  encoderOutsidePass(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  endCall(): void {
    if (++this.calls >= FLUSH_EVERY) this.flush();
  }

  /** Submits the open batch; its scratch buffers and uniforms go back to their pools. */
  flush(): void {
    if (this.encoder) {
      const enc = this.encoderOutsidePass();
      this.encoder = null;
      this.device.queue.submit([enc.finish()]);
    }
    this.calls = 0;
    this.ring = 0;
    this.slot = 0;
    this.storage.release();
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
    entries.push({ binding: count, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } });
    const layout = this.device.createBindGroupLayout({ entries, label: def.name });
    const module = this.device.createShaderModule({ code: assemble(def, slots), label: def.name });
    const pipeline = this.device.createComputePipeline({
      label: key,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main', constants: constants ? { ...constants } : undefined },
    });
    b = { pipeline, layout, id: this.built.size + 1 };
    this.built.set(key, b);
    return b;
  }

  destroy(): void {
    if (this.pass) this.pass.end();
    this.pass = null;
    this.encoder = null;
    this.storage.destroy();
    for (const r of this.rings) r.destroy();
    this.rings.length = 0;
    this.groups.clear();
    this.dummy.destroy();
    for (const d of this.dummies) d.destroy();
    this.built.clear();
  }
}
