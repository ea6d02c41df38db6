/** A trainable tensor with its gradient buffer (PyTorch layout, timm name). */
import { numel } from '../tensor.js';

export class Param {
  readonly name: string;
  readonly shape: number[];
  data: Float32Array;
  grad: Float32Array;
  /** Excluded from weight decay (1-D tensors, biases, GRN gamma/beta). */
  noDecay: boolean;

  constructor(name: string, shape: number[], noDecay: boolean) {
    this.name = name;
    this.shape = [...shape];
    this.data = new Float32Array(numel(shape));
    this.grad = new Float32Array(numel(shape));
    this.noDecay = noDecay;
  }

  get size(): number {
    return this.data.length;
  }
}
