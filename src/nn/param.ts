/** A trainable tensor with its gradient buffer (PyTorch layout, timm name). */
import { type Buf, hostMemory, type Kernels, type TensorMemory } from '../kernels/types.js';
import { numel } from '../tensor.js';
import type { ParamStore } from './store.js';

/** How often values were written: one per store (its Params share it), or a Param's own. */
export interface WriteCount {
  n: number;
}

export class Param {
  readonly name: string;
  readonly shape: number[];
  /** The values, in the backend's memory (a DeviceTensor on a GPU backend; read with `await k.read(p.data)`). */
  data: Buf;
  grad: Buf;
  /** Excluded from weight decay (1-D tensors, biases, GRN gamma/beta). */
  noDecay: boolean;

  /** Where data, grad and the optimizer's moments live (the kernels' memory: see TensorMemory). */
  readonly memory: TensorMemory;

  /**
   * The writes to `data` so far, like torch's tensor._version: copies made from the values
   * (InferencePack, the transposed dwconv taps, the folded LayerScale weights) are remade when it
   * moves. The store counts them, not each caller: {@link Param.write} and {@link Param.fill}
   * (initialisation, loading) and the kernels' writers of a store's runs (AdamW, EMA swaps) move
   * it, and a store's Params share one count (any write to the buffer remakes their copies).
   */
  get version(): number {
    return this.writes.n;
  }

  /** The count {@link Param.version} reads: the store's, or this Param's own. */
  readonly writes: WriteCount;

  /** The flat store whose views `data` and `grad` are (null: a Param with buffers of its own). */
  readonly store: ParamStore | null;

  /** `views`: the store's views to use instead of buffers of its own (see ParamStore). */
  constructor(name: string, shape: number[], noDecay: boolean, memory: TensorMemory = hostMemory, views?: { data: Buf; grad: Buf; store: ParamStore; writes: WriteCount }) {
    this.name = name;
    this.shape = [...shape];
    this.memory = memory;
    this.data = views ? views.data : memory.alloc(numel(shape));
    this.grad = views ? views.grad : memory.alloc(numel(shape));
    this.store = views?.store ?? null;
    this.writes = views?.writes ?? { n: 0 };
    this.noDecay = noDecay;
  }

  /** Copies host values into `data` through `k` (the Param's backend); the version moves. */
  write(k: Kernels, values: Float32Array): void {
    k.write(this.data, values);
    this.writes.n++;
  }

  /** Sets every value of `data` to `value` through `k`; the version moves. */
  fill(k: Kernels, value: number): void {
    k.fill(this.data, value);
    this.writes.n++;
  }

  /** Returns data and grad to their memory (a no-op for host arrays, and for a store's views: the store frees them); the Param is unusable after. */
  dispose(): void {
    if (!this.store) {
      this.memory.free(this.data);
      this.memory.free(this.grad);
    }
    this.detach();
  }

  /** Drops the buffers (the store's dispose). */
  detach(): void {
    this.data = new Float32Array(0);
    this.grad = new Float32Array(0);
    this.writes.n++;
  }

  get size(): number {
    return this.data.length;
  }
}
