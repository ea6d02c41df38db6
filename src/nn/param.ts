/** A trainable tensor with its gradient buffer (PyTorch layout, timm name). */
import { hostMemory, type TensorMemory } from '../kernels/types.js';
import { numel } from '../tensor.js';

export class Param {
  readonly name: string;
  readonly shape: number[];
  data: Float32Array;
  grad: Float32Array;
  /** Excluded from weight decay (1-D tensors, biases, GRN gamma/beta). */
  noDecay: boolean;

  /** Where data, grad and the optimizer's moments live (the kernels' memory: see TensorMemory). */
  readonly memory: TensorMemory;

  constructor(name: string, shape: number[], noDecay: boolean, memory: TensorMemory = hostMemory) {
    this.name = name;
    this.shape = [...shape];
    this.memory = memory;
    this.data = memory.alloc(numel(shape));
    this.grad = memory.alloc(numel(shape));
    this.noDecay = noDecay;
  }

  /** Returns data and grad to their memory (a no-op for host arrays); the Param is unusable after. */
  dispose(): void {
    this.memory.free(this.data);
    this.memory.free(this.grad);
    this.data = new Float32Array(0);
    this.grad = new Float32Array(0);
  }

  get size(): number {
    return this.data.length;
  }
}
