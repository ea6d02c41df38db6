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
import type { Buf, Idx, Kernels } from '../kernels/types.js';
import { Arena, type Buffers } from '../nn/arena.js';
import { DepthwiseConv } from '../nn/dwconv.js';
import { LayerNorm } from '../nn/layernorm.js';
import type { Param } from '../nn/param.js';
import type { Rng } from '../rng.js';
import type { BlockType } from './config.js';
import { GrnMlp, type HiddenCapture } from './grn_mlp.js';

export type { HiddenCapture } from './grn_mlp.js';

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
  /** fc1 -> GELU -> GRN -> fc2 (V1: LayerScale instead of GRN). */
  readonly mlp: GrnMlp;
  private readonly own = new Arena();
  /** Per-sample drop-path scales of the last training forward (null: no drop path). */
  private scale: Float32Array | null = null;
  private shape: [number, number, number] = [0, 0, 0];
  private sites: BlockSites | null = null;

  constructor(p: (name: string) => Param, readonly C: number, kernelSize: number, eps: number, readonly dropPath: number,
    readonly kind: BlockType = 'v2') {
    this.convDw = new DepthwiseConv(p('conv_dw.weight'), p('conv_dw.bias'), C, kernelSize);
    this.norm = new LayerNorm(p('norm.weight'), p('norm.bias'), C, eps);
    this.mlp = new GrnMlp(p, C, kind);
  }

  /** x: [N, H, W, C] -> x + drop_path(mlp(norm(dwconv(x)))) (V1: x + drop_path(gamma * mlp(...))). */
  forward(k: Kernels, x: Buf, N: number, H: number, W: number, opts: BlockForwardOptions): Buf {
    this.sites = opts.sites ?? null;
    if (opts.sites) return this.forwardSites(k, x, N, H, W, opts.sites, opts);
    const M = N * H * W;
    const n = M * this.C;
    const t = this.convDw.forward(k, x, N, H, W, opts);
    const u = this.norm.forward(k, t, M, opts);
    this.shape = [N, H, W];
    this.scale = null;
    const out = opts.out ?? (opts.cache ? this.own.get(k, 'out', n) : opts.shared.get(k, 'block.out', n));
    const images = { images: { N, H, W } };
    if (opts.train && this.dropPath > 0) {
      if (!opts.rng) throw new Error('drop path needs an rng');
      const keep = 1 - this.dropPath;
      const scale = new Float32Array(N);
      for (let i = 0; i < N; i++) scale[i] = opts.rng.uniform() < keep ? 1 / keep : 0;
      const branch = this.mlp.forward(k, u, M, images, opts, opts.shared.get(k, 'block.branch', n));
      k.addScaled(x, branch, scale, N, H * W, this.C, out);
      this.scale = scale;
      return out;
    }
    // The residual is fused into fc2's GEMM epilogue: out = x + mlp(u).
    return this.mlp.forward(k, u, M, images, opts, out, x.length === n ? x : x.subarray(0, n));
  }

  /** The block on masked sites: the same layers on `sites.rows` rows (no drop path, as the official encoder). */
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
    const out = opts.out ?? this.own.get(k, 'out', rows * C);
    this.mlp.forward(k, u, rows, { offsets: sites.grnOffsets }, { ...opts, mask: sites.zero }, out, x.length === rows * C ? x : x.subarray(0, rows * C));
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
    const du = mask(this.mlp.backward(k, db, M, shared, mask), this.C);
    const dt = mask(this.norm.backward(k, du, shared, 'block.dt'), this.C);
    // dx = dy (the residual) + the convolution's input gradient, accumulated in place.
    return sites?.rowMaps ? this.convDw.backwardRows(k, dt, dy) : this.convDw.backward(k, dt, dy);
  }
}
