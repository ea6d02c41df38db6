/** A trainable tensor with its gradient buffer (PyTorch layout, timm name). */
import { hostArray } from '../kernels/host.js';
import { type Buf, hostMemory, type TensorMemory } from '../kernels/types.js';
import { numel } from '../tensor.js';
import type { ParamStore } from './store.js';

export class Param {
  readonly name: string;
  readonly shape: number[];
  /** The values, in the kernels' memory (a DeviceTensor on a GPU backend: see {@link Param.host}). */
  data: Buf;
  grad: Buf;
  /** Excluded from weight decay (1-D tensors, biases, GRN gamma/beta). */
  noDecay: boolean;

  /** Where data, grad and the optimizer's moments live (the kernels' memory: see TensorMemory). */
  readonly memory: TensorMemory;

  /**
   * Counts the library's writes to `data` (initialisation, loading, optimizer steps, EMA swaps),
   * like torch's tensor._version: copies derived from the values (InferencePack) are remade
   * when it moves. Code that writes `data` itself calls {@link Param.touch}.
   */
  version = 0;

  /** The flat store whose views `data` and `grad` are (null: a Param with buffers of its own). */
  readonly store: ParamStore | null;

  /** `views`: the store's views to use instead of buffers of its own (see ParamStore). */
  constructor(name: string, shape: number[], noDecay: boolean, memory: TensorMemory = hostMemory, views?: { data: Buf; grad: Buf; store: ParamStore }) {
    this.name = name;
    this.shape = [...shape];
    this.memory = memory;
    this.data = views ? views.data : memory.alloc(numel(shape));
    this.grad = views ? views.grad : memory.alloc(numel(shape));
    this.store = views?.store ?? null;
    this.noDecay = noDecay;
  }

  /** Marks `data` as changed (see {@link Param.version}). */
  touch(): void {
    this.version++;
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
    this.touch();
  }

  /** data as a host array; throws on a device backend, whose values are read with `await k.read(p.data)`. */
  host(): Float32Array {
    return hostArray(this.data, `parameter ${this.name}`);
  }

  /** grad as a host array (see {@link Param.host}). */
  hostGrad(): Float32Array {
    return hostArray(this.grad, `gradient of ${this.name}`);
  }

  get size(): number {
    return this.data.length;
  }
}
