/**
 * Linear layer over channels-last rows: y = x W^T + b, W [out, in] (PyTorch layout), with an
 * optional exact-GELU epilogue fused into the GEMM (the pre-activation is kept for backward).
 */
import { Act, type Kernels } from '../kernels/types.js';
import type { Param } from './param.js';

export class Linear {
  x: Float32Array | null = null;
  preact: Float32Array | null = null;
  M = 0;

  constructor(
    readonly weight: Param,
    readonly bias: Param | null,
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly gelu = false,
  ) {}

  /** x: [M, in] -> y: [M, out]. When `cache`, keeps x (and the pre-activation) for backward. */
  forward(k: Kernels, x: Float32Array, M: number, cache: boolean, out?: Float32Array): Float32Array {
    const y = out ?? new Float32Array(M * this.outFeatures);
    const pre = this.gelu && cache ? new Float32Array(M * this.outFeatures) : null;
    k.gemm(false, true, M, this.outFeatures, this.inFeatures, x, this.inFeatures, this.weight.data, this.inFeatures,
      y, this.outFeatures, false, this.bias ? this.bias.data : null, this.gelu ? Act.Gelu : Act.None, pre);
    this.M = M;
    this.x = cache ? x : null;
    this.preact = pre;
    return y;
  }

  /** dy: [M, out] (gradient after the activation) -> dx: [M, in]; accumulates dW, db. */
  backward(k: Kernels, dy: Float32Array): Float32Array {
    const { M, inFeatures: I, outFeatures: O } = this;
    if (!this.x) throw new Error('Linear.backward without a cached forward');
    let g = dy;
    if (this.gelu) {
      if (!this.preact) throw new Error('Linear.backward: missing pre-activation');
      g = new Float32Array(M * O);
      k.geluBackward(dy, this.preact, g, M * O);
    }
    // dW[O, I] += g^T [O, M] · x [M, I]
    k.gemm(true, false, O, I, M, g, O, this.x, I, this.weight.grad, I, true, null, Act.None, null);
    if (this.bias) k.colSum(g, M, O, this.bias.grad, true);
    const dx = new Float32Array(M * I);
    k.gemm(false, false, M, I, O, g, O, this.weight.data, I, dx, I, false, null, Act.None, null);
    this.x = null;
    this.preact = null;
    return dx;
  }
}
