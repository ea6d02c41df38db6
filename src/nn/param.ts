/** A trainable tensor with its gradient buffer (PyTorch layout, timm name). */
import { hostArray } from '../kernels/host.js';
import { type Buf, hostMemory, type TensorMemory } from '../kernels/types.js';
import { numel } from '../tensor.js';

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

  constructor(name: string, shape: number[], noDecay: boolean, memory: TensorMemory = hostMemory) {
    this.name = name;
    this.shape = [...shape];
    this.memory = memory;
    this.data = memory.alloc(numel(shape));
    this.grad = memory.alloc(numel(shape));
    this.noDecay = noDecay;
  }

  /** Marks `data` as changed (see {@link Param.version}). */
  touch(): void {
    this.version++;
  }

  /** Returns data and grad to their memory (a no-op for host arrays); the Param is unusable after. */
  dispose(): void {
    this.memory.free(this.data);
    this.memory.free(this.grad);
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
