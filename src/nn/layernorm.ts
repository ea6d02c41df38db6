/** LayerNorm over the channels of channels-last rows (timm LayerNorm / LayerNorm2d). */
import type { Kernels } from '../kernels/types.js';
import type { Param } from './param.js';

export class LayerNorm {
  x: Float32Array | null = null;
  mean: Float32Array | null = null;
  rstd: Float32Array | null = null;
  M = 0;

  constructor(readonly weight: Param, readonly bias: Param, readonly C: number, readonly eps: number) {}

  forward(k: Kernels, x: Float32Array, M: number, cache: boolean): Float32Array {
    const y = new Float32Array(M * this.C);
    const mean = new Float32Array(M);
    const rstd = new Float32Array(M);
    k.layerNormForward(x, M, this.C, this.weight.data, this.bias.data, this.eps, y, mean, rstd);
    this.M = M;
    if (cache) {
      this.x = x;
      this.mean = mean;
      this.rstd = rstd;
    }
    return y;
  }

  backward(k: Kernels, dy: Float32Array): Float32Array {
    if (!this.x || !this.mean || !this.rstd) throw new Error('LayerNorm.backward without a cached forward');
    const dx = new Float32Array(this.M * this.C);
    k.layerNormBackward(dy, this.x, this.mean, this.rstd, this.weight.data, this.M, this.C, dx, false,
      this.weight.grad, this.bias.grad);
    this.x = this.mean = this.rstd = null;
    return dx;
  }
}
