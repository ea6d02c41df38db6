/**
 * The ConvNeXt V2 block (paper Fig. 5), channels-last:
 *   x -> 7x7 depthwise conv -> LayerNorm -> Linear(C, 4C) -> GELU -> GRN -> Linear(4C, C)
 *     -> drop path -> + x
 * Names follow timm: conv_dw, norm, mlp.fc1, mlp.grn, mlp.fc2.
 */
import type { Kernels } from '../kernels/types.js';
import { DepthwiseConv } from '../nn/dwconv.js';
import { LayerNorm } from '../nn/layernorm.js';
import { Linear } from '../nn/linear.js';
import type { Param } from '../nn/param.js';
import type { Rng } from '../rng.js';
import { GRN } from './grn.js';

export class Block {
  readonly convDw: DepthwiseConv;
  readonly norm: LayerNorm;
  readonly fc1: Linear;
  readonly grn: GRN;
  readonly fc2: Linear;
  /** Per-sample drop-path scales of the last training forward (null: no drop path). */
  private scale: Float32Array | null = null;
  private shape: [number, number, number] = [0, 0, 0];

  constructor(p: (name: string) => Param, readonly C: number, kernelSize: number, eps: number, readonly dropPath: number) {
    this.convDw = new DepthwiseConv(p('conv_dw.weight'), p('conv_dw.bias'), C, kernelSize);
    this.norm = new LayerNorm(p('norm.weight'), p('norm.bias'), C, eps);
    this.fc1 = new Linear(p('mlp.fc1.weight'), p('mlp.fc1.bias'), C, 4 * C, true);
    this.grn = new GRN(p('mlp.grn.weight'), p('mlp.grn.bias'), 4 * C);
    this.fc2 = new Linear(p('mlp.fc2.weight'), p('mlp.fc2.bias'), 4 * C, C);
  }

  /**
   * x: [N, H, W, C]. `train` enables drop path (needs rng); `cache` keeps what backward needs.
   */
  forward(k: Kernels, x: Float32Array, N: number, H: number, W: number, opts: { cache: boolean; train: boolean; rng?: Rng }): Float32Array {
    const M = N * H * W;
    const { cache } = opts;
    const t = this.convDw.forward(k, x, N, H, W, cache);
    const u = this.norm.forward(k, t, M, cache);
    const g = this.fc1.forward(k, u, M, cache);
    const r = this.grn.forward(k, g, GRN.perImage(N, H * W), cache);
    this.shape = [N, H, W];
    this.scale = null;
    if (opts.train && this.dropPath > 0) {
      if (!opts.rng) throw new Error('drop path needs an rng');
      const keep = 1 - this.dropPath;
      const scale = new Float32Array(N);
      for (let n = 0; n < N; n++) scale[n] = opts.rng.uniform() < keep ? 1 / keep : 0;
      const b = this.fc2.forward(k, r, M, cache);
      const out = new Float32Array(M * this.C);
      k.addScaled(x, b, scale, N, H * W, this.C, out);
      this.scale = scale;
      return out;
    }
    // Residual fused into the GEMM: out = x + r W2^T + b2.
    const out = Float32Array.from(x.subarray(0, M * this.C));
    k.gemm(false, true, M, this.C, 4 * this.C, r, 4 * this.C, this.fc2.weight.data, 4 * this.C, out, this.C, true,
      this.fc2.bias!.data, 0, null);
    this.fc2.M = M;
    this.fc2.x = cache ? r : null;
    return out;
  }

  /** dy: [N, H, W, C] -> dx. */
  backward(k: Kernels, dy: Float32Array): Float32Array {
    const [N, H, W] = this.shape;
    let db = dy;
    if (this.scale) {
      db = new Float32Array(dy.length);
      const zero = new Float32Array(dy.length);
      k.addScaled(zero, dy, this.scale, N, H * W, this.C, db);
    }
    const dr = this.fc2.backward(k, db);
    const dg = this.grn.backward(k, dr);
    const du = this.fc1.backward(k, dg);
    const dt = this.norm.backward(k, du);
    // dx = dy (residual) + d(dwconv)/dx
    const dx = Float32Array.from(dy);
    this.convDw.backward(k, dt, dx);
    return dx;
  }
}
