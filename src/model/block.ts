/**
 * The ConvNeXt V2 block (paper Fig. 5), channels-last:
 *   x -> 7x7 depthwise conv -> LayerNorm -> Linear(C, 4C) -> GELU -> GRN -> Linear(4C, C)
 *     -> drop path -> + x
 * Names follow timm: conv_dw, norm, mlp.fc1, mlp.grn, mlp.fc2.
 *
 * With kind `v1`, the ConvNeXt V1 block (the paper's GRN ablation): no GRN, and LayerScale
 * (`gamma` [C], timm's name) multiplying the MLP output before drop path:
 *   x -> dwconv -> LayerNorm -> Linear -> GELU -> Linear -> * gamma -> drop path -> + x
 */
import { hostArray } from '../kernels/host.js';
import type { Buf, Idx, Kernels } from '../kernels/types.js';
import { Arena, type Buffers } from '../nn/arena.js';
import { DepthwiseConv } from '../nn/dwconv.js';
import { LayerNorm } from '../nn/layernorm.js';
import { Linear } from '../nn/linear.js';
import { LayerScaledLinear } from '../nn/layerscale.js';
import type { Param } from '../nn/param.js';
import type { Rng } from '../rng.js';
import type { BlockType } from './config.js';
import { GRN } from './grn.js';

/**
 * Receives a block's MLP hidden activation: GELU(fc1(...)), the input of GRN (V2) or of fc2
 * (V1), [N, H, W, 4C] channels-last. The array is a reused buffer: read it before returning.
 */
export type HiddenCapture = (hidden: Float32Array, N: number, H: number, W: number, channels: number) => void;

/**
 * The sites a block runs on when they are not a whole dense map (the FCMAE encoder, paper
 * Sec. 3.1): the visible rows of a masked batch, compacted, or a dense map whose masked rows
 * are zeroed after every layer.
 */
export interface BlockSites {
  /** Rows of the activations: the S visible rows, or N*H*W with `zero`. */
  rows: number;
  /** Compacted rows: the submanifold depthwise convolution's row maps (StageMask tables). */
  rowMaps?: { rowOf: Idx; idx: Idx };
  /** GRN's statistic segments over the rows (the batch, or each image). */
  grnOffsets: Idx;
  /** Dense-masked rows: zeroes the masked rows of a [rows, ch] buffer, returns it. */
  zero?: (v: Buf, ch: number) => Buf;
}

export interface BlockForwardOptions extends Buffers {
  /** Training mode: drop path active (needs rng). */
  train: boolean;
  rng?: Rng;
  /** Where the output goes (default: the block's own buffer when caching, else a fresh array). */
  out?: Buf;
  /** Called with the MLP hidden activation (for analysis; nothing is copied when absent). */
  capture?: HiddenCapture;
  /** Masked sites (FCMAE encoder; needs cache, no drop path); absent: the whole [N, H, W] map. */
  sites?: BlockSites;
}

export class Block {
  readonly convDw: DepthwiseConv;
  readonly norm: LayerNorm;
  readonly fc1: Linear;
  /** GRN (V2 blocks; null in V1 blocks). */
  readonly grn: GRN | null;
  /** LayerScale (V1 blocks; null in V2 blocks). */
  readonly gamma: Param | null;
  /** The second Linear; in V1 blocks with LayerScale folded in. */
  readonly fc2: Linear | LayerScaledLinear;
  private readonly own = new Arena();
  /** Per-sample drop-path scales of the last training forward (null: no drop path). */
  private scale: Float32Array | null = null;
  private shape: [number, number, number] = [0, 0, 0];
  private sites: BlockSites | null = null;

  constructor(p: (name: string) => Param, readonly C: number, kernelSize: number, eps: number, readonly dropPath: number,
    readonly kind: BlockType = 'v2') {
    this.convDw = new DepthwiseConv(p('conv_dw.weight'), p('conv_dw.bias'), C, kernelSize);
    this.norm = new LayerNorm(p('norm.weight'), p('norm.bias'), C, eps);
    this.fc1 = new Linear(p('mlp.fc1.weight'), p('mlp.fc1.bias'), C, 4 * C, true);
    if (kind === 'v1') {
      this.grn = null;
      this.gamma = p('gamma');
      this.fc2 = new LayerScaledLinear(p('mlp.fc2.weight'), p('mlp.fc2.bias'), this.gamma, 4 * C, C);
    } else {
      this.grn = new GRN(p('mlp.grn.weight'), p('mlp.grn.bias'), 4 * C);
      this.gamma = null;
      this.fc2 = new Linear(p('mlp.fc2.weight'), p('mlp.fc2.bias'), 4 * C, C);
    }
  }

  /** x: [N, H, W, C] -> x + drop_path(mlp(norm(dwconv(x)))) (V1: x + drop_path(gamma * mlp(...))). */
  forward(k: Kernels, x: Buf, N: number, H: number, W: number, opts: BlockForwardOptions): Buf {
    this.sites = opts.sites ?? null;
    if (opts.sites) return this.forwardSites(k, x, N, H, W, opts.sites, opts);
    const M = N * H * W;
    const n = M * this.C;
    const t = this.convDw.forward(k, x, N, H, W, opts);
    const u = this.norm.forward(k, t, M, opts);
    const fold = this.grn !== null && !opts.cache && !opts.train && this.fc2 instanceof Linear;
    // GRN's statistics come from fc1's epilogue. Inference: GRN's calibration is folded into
    // fc2 (no GRN output written), and fc2's GEMM reads the residual.
    const sq = this.grn ? { sums: opts.shared.get(k, 'grn.sqsums', N * 4 * this.C), groupRows: H * W } : undefined;
    const g = this.fc1.forward(k, u, M, opts, undefined, undefined, sq);
    opts.capture?.(hostArray(g, 'activation capture'), N, H, W, 4 * this.C);
    this.shape = [N, H, W];
    this.scale = null;
    const out = opts.out ?? (opts.cache ? this.own.get(k, 'out', n) : opts.shared.get(k, 'block.out', n));
    if (fold && this.grn && this.fc2 instanceof Linear) {
      return this.grn.forwardIntoLinear(k, g, N, H * W, this.fc2, x, out, opts.shared, sq?.sums);
    }
    const r = this.grn ? this.grn.forward(k, g, GRN.perImageTable(k, opts.shared, N, H * W), opts, sq?.sums) : g;
    if (opts.train && this.dropPath > 0) {
      if (!opts.rng) throw new Error('drop path needs an rng');
      const keep = 1 - this.dropPath;
      const scale = new Float32Array(N);
      for (let i = 0; i < N; i++) scale[i] = opts.rng.uniform() < keep ? 1 / keep : 0;
      const branch = this.fc2.forward(k, r, M, opts, opts.shared.get(k, 'block.branch', n));
      k.addScaled(x, branch, scale, N, H * W, this.C, out);
      this.scale = scale;
      return out;
    }
    // Residual fused into the GEMM's epilogue: out = x + r W2^T + b2.
    return this.fc2.forward(k, r, M, opts, out, x.length === n ? x : x.subarray(0, n));
  }

  /**
   * The block on masked sites: the same layers on `sites.rows` rows. GRN's sums of squares are
   * not taken from fc1's epilogue here (on one group of S rows that changes the FCMAE bits).
   */
  private forwardSites(k: Kernels, x: Buf, N: number, H: number, W: number, sites: BlockSites, opts: BlockForwardOptions): Buf {
    if (!opts.cache || this.dropPath > 0) throw new Error('Block on masked sites: needs cache and no drop path');
    const { C } = this;
    const { rows, rowMaps } = sites;
    const zero = sites.zero ?? ((v: Buf) => v);
    this.shape = [N, H, W];
    this.scale = null;
    const t = rowMaps
      ? this.convDw.forwardRows(k, x, rowMaps.rowOf, rowMaps.idx, N, H, W, opts)
      : zero(this.convDw.forward(k, x, N, H, W, opts), C);
    const u = zero(this.norm.forward(k, t, rows, opts), C);
    const g = zero(this.fc1.forward(k, u, rows, opts), 4 * C);
    const r = this.grn ? zero(this.grn.forward(k, g, sites.grnOffsets, opts), 4 * C) : g;
    const out = opts.out ?? this.own.get(k, 'out', rows * C);
    this.fc2.forward(k, r, rows, opts, out, x.length === rows * C ? x : x.subarray(0, rows * C));
    return zero(out, C);
  }

  /**
   * dy: [N, H, W, C] -> dx, computed in place: dy's buffer is consumed and returned holding
   * dx = dy (the residual) + the branch's input gradient.
   */
  backward(k: Kernels, dy: Buf, shared: Arena): Buf {
    const [N, H, W] = this.shape;
    const sites = this.sites;
    const mask = sites?.zero ?? ((v: Buf) => v);
    mask(dy, this.C);
    let db = dy;
    if (this.scale) {
      db = shared.get(k, 'block.db', dy.length);
      const zero = shared.get(k, 'block.zero', dy.length);
      k.fill(zero, 0);
      k.addScaled(zero, dy, this.scale, N, H * W, this.C, db);
    }
    const M = sites ? sites.rows : N * H * W;
    const dr = mask(this.fc2.backward(k, db, shared, shared.get(k, 'block.dr', M * 4 * this.C))!, 4 * this.C);
    const duBuf = shared.get(k, 'block.du', M * this.C);
    // V2: GRN's backward also applies fc1's GELU derivative and accumulates fc1's bias gradient.
    // On dense-masked sites GRN's input and dr are zero at masked rows, and so is its
    // gradient: no mask between GRN and fc1.
    const du = mask(this.grn
      ? this.fc1.backwardPreact(k, this.grn.backward(k, dr, shared, 'block.dg', this.fc1), shared, duBuf)!
      : this.fc1.backward(k, dr, shared, duBuf)!, this.C);
    const dt = mask(this.norm.backward(k, du, shared, 'block.dt'), this.C);
    // dx = dy (the residual) + the convolution's input gradient, accumulated in place.
    return sites?.rowMaps ? this.convDw.backwardRows(k, dt, dy) : this.convDw.backward(k, dt, dy);
  }
}
