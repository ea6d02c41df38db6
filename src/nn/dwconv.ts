/**
 * Depthwise KxK convolution (stride 1, padding K/2) over channels-last maps. The weight is
 * kept in PyTorch layout [C, 1, K, K]; the kernels want it tap-major [K*K, C], so it is
 * transposed on each forward (C*K*K values, negligible) and its gradient transposed back.
 *
 * `forwardRows` / `backwardRows` are the submanifold form for the sparse FCMAE encoder: the
 * input is the compacted visible rows [S, C] of an N x H x W map (masked positions zero) and
 * outputs are computed at those rows only.
 */
import type { Kernels } from '../kernels/types.js';
import { Arena, type Buffers } from './arena.js';
import type { Param } from './param.js';

export class DepthwiseConv {
  private readonly own = new Arena();
  private x: Float32Array | null = null;
  /** Row maps of the last forwardRows (null after a dense forward). */
  private rows: { rowOf: Int32Array; idx: Int32Array } | null = null;
  private readonly wt: Float32Array;
  private readonly dwt: Float32Array;
  private N = 0; private H = 0; private W = 0;

  constructor(readonly weight: Param, readonly bias: Param, readonly C: number, readonly K: number) {
    this.wt = new Float32Array(K * K * C);
    this.dwt = new Float32Array(K * K * C);
  }

  private transposeWeight(): void {
    const { C, K } = this;
    const w = this.weight.data;
    for (let c = 0; c < C; c++) for (let t = 0; t < K * K; t++) this.wt[t * C + c] = w[c * K * K + t];
  }

  forward(k: Kernels, x: Float32Array, N: number, H: number, W: number, b: Buffers): Float32Array {
    this.transposeWeight();
    const n = N * H * W * this.C;
    const y = b.cache ? this.own.get(k, 'y', n) : b.shared.get(k, 'dwconv.y', n);
    k.dwconvForward(x, N, H, W, this.C, this.K, this.wt, this.bias.data, y);
    this.N = N; this.H = H; this.W = W;
    this.x = b.cache ? x : null;
    this.rows = null;
    return y;
  }

  /**
   * Submanifold forward on compacted rows: x [S, C] are the visible positions of an
   * N x H x W map (idx: the dense position of each row, rowOf: the row of each dense position
   * or -1, as StageMask); returns y [S, C], the outputs at those positions.
   */
  forwardRows(k: Kernels, x: Float32Array, rowOf: Int32Array, idx: Int32Array, N: number, H: number, W: number, b: Buffers): Float32Array {
    this.transposeWeight();
    const S = idx.length;
    const n = S * this.C;
    const y = b.cache ? this.own.get(k, 'y', n) : b.shared.get(k, 'dwconv.y', n);
    k.dwconvForwardRows(x, rowOf, idx, S, N, H, W, this.C, this.K, this.wt, this.bias.data, y);
    this.N = N; this.H = H; this.W = W;
    this.x = b.cache ? x : null;
    this.rows = b.cache ? { rowOf, idx } : null;
    return y;
  }

  /** Backward of forwardRows: adds the input gradient [S, C] into `dxAcc` and returns it. */
  backwardRows(k: Kernels, dy: Float32Array, dxAcc: Float32Array): Float32Array {
    if (!this.x || !this.rows) throw new Error('DepthwiseConv.backwardRows without a cached forwardRows');
    const { N, H, W, C, K } = this;
    const { rowOf, idx } = this.rows;
    const S = idx.length;
    this.dwt.fill(0);
    k.dwconvBackwardWeightRows(dy, this.x, rowOf, idx, S, N, H, W, C, K, this.dwt, this.bias.grad);
    this.addWeightGrad();
    this.transposeWeight();
    k.dwconvBackwardInputRows(dy, rowOf, idx, S, N, H, W, C, K, this.wt, dxAcc, true);
    this.x = null;
    this.rows = null;
    return dxAcc;
  }

  private addWeightGrad(): void {
    const { C, K } = this;
    const g = this.weight.grad;
    for (let c = 0; c < C; c++) for (let t = 0; t < K * K; t++) g[c * K * K + t] += this.dwt[t * C + c];
  }

  /** Adds d(out)/d(x) · dy into `dxAcc` (the residual gradient already there) and returns it. */
  backward(k: Kernels, dy: Float32Array, dxAcc: Float32Array): Float32Array {
    if (!this.x || this.rows) throw new Error('DepthwiseConv.backward without a cached forward');
    const { N, H, W, C, K } = this;
    this.dwt.fill(0);
    k.dwconvBackwardWeight(dy, this.x, N, H, W, C, K, this.dwt, this.bias.grad);
    this.addWeightGrad();
    this.transposeWeight();
    k.dwconvBackwardInput(dy, N, H, W, C, K, this.wt, dxAcc, true);
    this.x = null;
    return dxAcc;
  }
}
