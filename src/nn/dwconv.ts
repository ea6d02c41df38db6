/**
 * Depthwise KxK convolution (stride 1, padding K/2) over channels-last maps. The weight is
 * kept in PyTorch layout [C, 1, K, K]; the kernels want it tap-major [K*K, C], so it is
 * transposed when it has changed (Param.version: once per optimizer step in training, once at
 * inference; a kernel, so it runs where the weights live) and its gradient transposed back.
 *
 * `forwardRows` / `backwardRows` are the submanifold form for the sparse FCMAE encoder: the
 * input is the compacted visible rows [S, C] of an N x H x W map (masked positions zero) and
 * outputs are computed at those rows only.
 */
import type { Buf, Idx, Kernels } from '../kernels/types.js';
import { Arena, type Buffers } from './arena.js';
import type { Param } from './param.js';

export class DepthwiseConv {
  private readonly own = new Arena();
  private x: Buf | null = null;
  /** Row maps of the last forwardRows (null after a dense forward). */
  private rows: { rowOf: Idx; idx: Idx } | null = null;
  private N = 0; private H = 0; private W = 0;

  constructor(readonly weight: Param, readonly bias: Param, readonly C: number, readonly K: number) {}

  /** What the tap-major copy was made from (it is remade when the weight changes: Param.version). */
  private wtOf: { wt: Buf; data: Buf; version: number; k: Kernels } | null = null;

  /** The weight tap-major, wt [K*K, C] = weight [C, K*K] transposed (once per change of the weight). */
  private transposeWeight(k: Kernels): Buf {
    const { C, K } = this;
    const wt = this.own.get(k, 'wt', K * K * C);
    const w = this.weight, of = this.wtOf;
    if (of && of.wt === wt && of.data === w.data && of.version === w.version && of.k === k) return wt;
    k.transpose(w.data, 1, C, K * K, wt, false);
    this.wtOf = { wt, data: w.data, version: w.version, k };
    return wt;
  }

  /** A zeroed tap-major weight gradient [K*K, C]. */
  private weightGradBuffer(k: Kernels): Buf {
    const dwt = this.own.get(k, 'dwt', this.K * this.K * this.C);
    k.fill(dwt, 0);
    return dwt;
  }

  /** weight.grad [C, K*K] += dwt [K*K, C] transposed. */
  private addWeightGrad(k: Kernels, dwt: Buf): void {
    k.transpose(dwt, 1, this.K * this.K, this.C, this.weight.grad, true);
  }

  forward(k: Kernels, x: Buf, N: number, H: number, W: number, b: Buffers): Buf {
    const wt = this.transposeWeight(k);
    const n = N * H * W * this.C;
    const y = b.cache ? this.own.get(k, 'y', n) : b.shared.get(k, 'dwconv.y', n);
    k.dwconvForward(x, N, H, W, this.C, this.K, wt, this.bias.data, y);
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
  forwardRows(k: Kernels, x: Buf, rowOf: Idx, idx: Idx, N: number, H: number, W: number, b: Buffers): Buf {
    const wt = this.transposeWeight(k);
    const S = idx.length;
    const n = S * this.C;
    const y = b.cache ? this.own.get(k, 'y', n) : b.shared.get(k, 'dwconv.y', n);
    k.dwconvForwardRows(x, rowOf, idx, S, N, H, W, this.C, this.K, wt, this.bias.data, y);
    this.N = N; this.H = H; this.W = W;
    this.x = b.cache ? x : null;
    this.rows = b.cache ? { rowOf, idx } : null;
    return y;
  }

  /** Backward of forwardRows: adds the input gradient [S, C] into `dxAcc` and returns it. */
  backwardRows(k: Kernels, dy: Buf, dxAcc: Buf): Buf {
    if (!this.x || !this.rows) throw new Error('DepthwiseConv.backwardRows without a cached forwardRows');
    const { N, H, W, C, K } = this;
    const { rowOf, idx } = this.rows;
    const S = idx.length;
    const dwt = this.weightGradBuffer(k);
    k.dwconvBackwardWeightRows(dy, this.x, rowOf, idx, S, N, H, W, C, K, dwt, this.bias.grad);
    this.addWeightGrad(k, dwt);
    k.dwconvBackwardInputRows(dy, rowOf, idx, S, N, H, W, C, K, this.transposeWeight(k), dxAcc, true);
    this.x = null;
    this.rows = null;
    return dxAcc;
  }

  /** Adds d(out)/d(x) · dy into `dxAcc` (the residual gradient already there) and returns it. */
  backward(k: Kernels, dy: Buf, dxAcc: Buf): Buf {
    if (!this.x || this.rows) throw new Error('DepthwiseConv.backward without a cached forward');
    const { N, H, W, C, K } = this;
    const dwt = this.weightGradBuffer(k);
    k.dwconvBackwardWeight(dy, this.x, N, H, W, C, K, dwt, this.bias.grad);
    this.addWeightGrad(k, dwt);
    k.dwconvBackwardInput(dy, N, H, W, C, K, this.transposeWeight(k), dxAcc, true);
    this.x = null;
    return dxAcc;
  }
}
