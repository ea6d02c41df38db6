/// <reference types="@webgpu/types" />
/**
 * WebGPU tensors: a float32 range of a GPUBuffer, and the TensorMemory that allocates them.
 *
 * A view (`subarray`) shares its allocation's buffer at an element offset. Storage-buffer
 * binding offsets must be multiples of minStorageBufferOffsetAlignment, so kernels never bind
 * a view's range: they bind the whole buffer and take the element offset as a uniform.
 */
import { ConvNextError } from '../../errors.js';
import type { Buf, DeviceTensor, TensorMemory } from '../types.js';

/** Float32Array.subarray's argument rules: negatives count from the end, clamped to [0, length]. */
/** WebGPU's flag values (spec constants), so that nothing depends on the GPU* globals being installed. */
export const BufferUsage = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
export const SHADER_STAGE_COMPUTE = 0x4;
export const MAP_MODE_READ = 0x1;

function clampIndex(i: number | undefined, length: number, dflt: number): number {
  if (i === undefined) return dflt;
  const t = Math.trunc(i);
  if (Number.isNaN(t)) return 0;
  return t < 0 ? Math.max(length + t, 0) : Math.min(t, length);
}

export class GpuTensor implements DeviceTensor {
  readonly device = 'webgpu';

  /**
   * @param buffer the allocation's buffer (whole-buffer bindings)
   * @param offset the first element of this view in the buffer
   * @param length elements in this view
   * @param root the allocation this is a view of (itself for an allocation)
   */
  constructor(
    readonly buffer: GPUBuffer,
    readonly offset: number,
    readonly length: number,
    root?: GpuTensor,
  ) {
    this.root = root ?? this;
  }

  /** The tensor `alloc` returned that this is a view of. */
  readonly root: GpuTensor;

  /** Byte offset of this view in its buffer. */
  get byteOffset(): number {
    return this.offset * 4;
  }

  subarray(begin?: number, end?: number): GpuTensor {
    const b = clampIndex(begin, this.length, 0);
    const e = Math.max(clampIndex(end, this.length, this.length), b);
    return new GpuTensor(this.buffer, this.offset + b, e - b, this.root);
  }
}

export function isGpuTensor(b: Buf | null | undefined): b is GpuTensor {
  return b instanceof GpuTensor;
}

/** Allocates zeroed STORAGE | COPY_SRC | COPY_DST buffers on one device; `free` destroys them. */
export class GpuMemory implements TensorMemory {
  readonly kind = 'webgpu';
  private live = new Set<GPUBuffer>();
  private bytes = 0;

  /** `beforeFree`: runs before a buffer is destroyed (the backend submits what it has recorded). */
  constructor(private readonly device: GPUDevice, private readonly maxBytes: number, private readonly beforeFree: () => void = () => {}) {}

  alloc(n: number): GpuTensor {
    if (!Number.isInteger(n) || n < 0) throw new ConvNextError(`webgpu memory: cannot allocate ${n} floats`);
    const size = Math.max(16, Math.ceil((n * 4) / 16) * 16);
    if (size > this.maxBytes) {
      throw new ConvNextError(`webgpu memory: ${n} floats (${size} bytes) exceed the device's largest storage binding (${this.maxBytes} bytes)`);
    }
    // WebGPU zero-initialises new buffers.
    const buffer = this.device.createBuffer({ size, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    this.live.add(buffer);
    this.bytes += size;
    return new GpuTensor(buffer, 0, n);
  }

  free(a: Buf): void {
    if (!(a instanceof GpuTensor)) return;
    if (a.root !== a) throw new ConvNextError('webgpu memory: free takes a tensor alloc returned, not a view');
    if (!this.live.has(a.buffer)) return;
    this.beforeFree();
    this.live.delete(a.buffer);
    this.bytes -= a.buffer.size;
    a.buffer.destroy();
  }

  /** Whether `b` is a live allocation of this memory. */
  owns(b: GPUBuffer): boolean {
    return this.live.has(b);
  }

  /** Bytes held by live allocations. */
  bytesInUse(): number {
    return this.bytes;
  }

  /** Destroys every live allocation (the backend's teardown). */
  destroyAll(): void {
    for (const b of this.live) b.destroy();
    this.live.clear();
    this.bytes = 0;
  }
}
