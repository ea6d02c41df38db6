/** LayerNorm over the channels of channels-last rows (timm LayerNorm / LayerNorm2d). */
import type { Buf, Kernels } from '../kernels/types.js';
import { Arena, type Buffers } from './arena.js';
import type { Param } from './param.js';

export class LayerNorm {
  private readonly own = new Arena();
  private x: Buf | null = null;
  private mean: Buf | null = null;
  private rstd: Buf | null = null;
  private M = 0;

  constructor(readonly weight: Param, readonly bias: Param, readonly C: number, readonly eps: number) {}

  /** x: [M, C] -> y (a buffer of its own when caching, else the shared `key`). */
  forward(k: Kernels, x: Buf, M: number, b: Buffers, key = 'layernorm.y'): Buf {
    const a = b.cache ? this.own : b.shared;
    const y = b.cache ? this.own.get(k, 'y', M * this.C) : b.shared.get(k, key, M * this.C);
    const mean = a.get(k, b.cache ? 'mean' : 'layernorm.mean', M);
    const rstd = a.get(k, b.cache ? 'rstd' : 'layernorm.rstd', M);
    k.layerNormForward(x, M, this.C, this.weight.data, this.bias.data, this.eps, y, mean, rstd);
    this.M = M;
    this.x = b.cache ? x : null;
    this.mean = b.cache ? mean : null;
    this.rstd = b.cache ? rstd : null;
    return y;
  }

  /** dy -> dx in the shared arena under `key`. */
  backward(k: Kernels, dy: Buf, shared: Arena, key = 'layernorm.dx'): Buf {
    if (!this.x || !this.mean || !this.rstd) throw new Error('LayerNorm.backward without a cached forward');
    const dx = shared.get(k, key, this.M * this.C);
    k.layerNormBackward(dy, this.x, this.mean, this.rstd, this.weight.data, this.M, this.C, dx, false,
      this.weight.grad, this.bias.grad);
    this.x = this.mean = this.rstd = null;
    return dx;
  }
}
