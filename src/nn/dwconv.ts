/**
 * Depthwise KxK convolution (stride 1, padding K/2) over channels-last maps. The weight is
 * kept in PyTorch layout [C, 1, K, K]; the kernels want it tap-major [K*K, C], so it is
 * transposed on each forward (C*K*K values, negligible) and its gradient transposed back.
 */
import type { Kernels } from '../kernels/types.js';
import type { Param } from './param.js';

export class DepthwiseConv {
  x: Float32Array | null = null;
  wt: Float32Array;
  N = 0; H = 0; W = 0;

  constructor(readonly weight: Param, readonly bias: Param, readonly C: number, readonly K: number) {
    this.wt = new Float32Array(K * K * C);
  }

  private transposeWeight(): void {
    const { C, K } = this;
    const w = this.weight.data;
    for (let c = 0; c < C; c++) for (let t = 0; t < K * K; t++) this.wt[t * C + c] = w[c * K * K + t];
  }

  forward(k: Kernels, x: Float32Array, N: number, H: number, W: number, cache: boolean): Float32Array {
    this.transposeWeight();
    const y = new Float32Array(N * H * W * this.C);
    k.dwconvForward(x, N, H, W, this.C, this.K, this.wt, this.bias.data, y);
    this.N = N; this.H = H; this.W = W;
    this.x = cache ? x : null;
    return y;
  }

  /** Returns dx (overwritten buffer) or, if `dxAcc` is given, adds into it and returns it. */
  backward(k: Kernels, dy: Float32Array, dxAcc?: Float32Array): Float32Array {
    if (!this.x) throw new Error('DepthwiseConv.backward without a cached forward');
    const { N, H, W, C, K } = this;
    const dwt = new Float32Array(K * K * C);
    k.dwconvBackwardWeight(dy, this.x, N, H, W, C, K, dwt, this.bias.grad);
    const g = this.weight.grad;
    for (let c = 0; c < C; c++) for (let t = 0; t < K * K; t++) g[c * K * K + t] += dwt[t * C + c];
    const dx = dxAcc ?? new Float32Array(N * H * W * C);
    this.transposeWeight();
    k.dwconvBackwardInput(dy, N, H, W, C, K, this.wt, dx, dxAcc !== undefined);
    this.x = null;
    return dx;
  }
}
