/**
 * The FCMAE encoder: a ConvNeXt V2 that sees only the visible patches (paper Sec. 3.1, the
 * official `SparseConvNeXtV2` on MinkowskiEngine), sharing its parameters with a dense
 * `ConvNeXtV2` backbone so pre-trained weights are the classifier's weights.
 *
 * Semantics (as the official sparse encoder):
 * 1. stem conv + LayerNorm on the whole image, then masked positions set to zero;
 * 2. every later layer acts on visible positions only: the 7x7 depthwise convolution is
 *    submanifold (outputs at visible sites only, masked inputs count as zero), LayerNorm,
 *    Linear, GELU per site, GRN statistics over all visible sites of the batch (MinkowskiGRN;
 *    `grnStats: 'per-sample'` makes them per image, like the dense GRN at fine-tuning), 2x2
 *    downsampling on blocks that are wholly visible or wholly masked;
 * 3. the output is dense with zeros at masked sites.
 *
 * Two execution modes compute the same function:
 * - `sparse` (default): compaction. The visible positions of the whole batch are rows [S, C];
 *   LayerNorm, Linear, GELU, GRN and the residual run on S rows only; the depthwise
 *   convolution runs on the rows too (the submanifold kernels dwconv*Rows, with the stage
 *   mask's row maps); the downsampling gathers the patches of visible 2x2 blocks.
 * - `dense`: full maps with masked rows zeroed after every layer (for cross-checking and the
 *   speed comparison).
 */
import { STEM_CONV, STEM_NORM } from '../model/names.js';
import { ConvNextError } from '../errors.js';
import type { Buf, Idx, Kernels } from '../kernels/types.js';
import { Act } from '../kernels/types.js';
import type { ConvNeXtV2 } from '../model/convnextv2.js';
import type { BlockSites } from '../model/block.js';
import { Stage } from '../model/stage.js';
import { GRN } from '../model/grn.js';
import { Arena } from '../nn/arena.js';
import { LayerNorm } from '../nn/layernorm.js';
import type { Param } from '../nn/param.js';
import { PatchConv } from '../nn/patchconv.js';
import { attachTables, gatherRows, releaseTables, scatterRows, stageMask, type StageMask, tablesOf, zeroMasked } from './masking.js';

export type EncoderMode = 'sparse' | 'dense';
export type GrnStats = 'batch' | 'per-sample';

function copyOf(k: Kernels, src: Buf, dst: Buf): Buf {
  k.copy(src, dst);
  return dst;
}

function grnOffsets(k: Kernels, sm: StageMask, mode: EncoderMode, stats: GrnStats, shared: Arena): Idx {
  const t = tablesOf(k, sm);
  if (mode === 'sparse') return stats === 'batch' ? t.allRows : t.sampleOffsets;
  return stats === 'batch' ? t.allPositions : GRN.perImageTable(k, shared, sm.N, sm.H * sm.W);
}

/** A stage's sites for its blocks: compacted visible rows, or the dense map with masked rows zeroed. */
function stageSites(k: Kernels, sm: StageMask, mode: EncoderMode, stats: GrnStats, shared: Arena): BlockSites {
  const offsets = grnOffsets(k, sm, mode, stats, shared);
  if (mode === 'sparse') {
    const t = tablesOf(k, sm);
    return { rows: sm.idx.length, rowMaps: { rowOf: t.rowOf, idx: t.idx }, grnOffsets: offsets };
  }
  return { rows: sm.N * sm.H * sm.W, grnOffsets: offsets, zero: (v, ch) => zeroMasked(k, v, sm, ch) };
}

/**
 * The four previous-stage rows of each visible next-stage position (its 2x2 block), in
 * (ky, kx) order, -1 for a masked child (never, for blocks of the upsampled mask grid).
 */
function blockChildren(prev: StageMask, next: StageMask, out: Int32Array): Int32Array {
  const { H, W, rowOf } = prev;
  const HWn = next.H * next.W;
  const Wn = next.W;
  const idx = next.idx;
  for (let r = 0; r < idx.length; r++) {
    const p = idx[r];
    const n = Math.floor(p / HWn);
    const Y = Math.floor((p - n * HWn) / Wn);
    const X = p - n * HWn - Y * Wn;
    for (let q = 0; q < 4; q++) out[4 * r + q] = rowOf[(n * H + 2 * Y + (q >> 1)) * W + 2 * X + (q & 1)];
  }
  return out;
}

/**
 * LayerNorm + 2x2 stride-2 convolution between stages, on visible blocks. The sparse mode
 * gathers each visible block's four input rows directly (no dense map), so its patches are in
 * (ky, kx, c) order and the GEMM uses the weight permuted to match (the PyTorch weight
 * [out, c, ky, kx] is kept; its gradient is permuted back).
 */
class MaskedDownsample {
  private readonly norm: LayerNorm;
  private readonly conv: PatchConv;
  private readonly own = new Arena();
  private prev: StageMask | null = null;
  private next: StageMask | null = null;
  private mode: EncoderMode = 'sparse';
  private cols: Buf | null = null;
  private children = new Int32Array(0);
  /** The children as an index table of the forward's kernels (gather there, scatter in backward). */
  private childTable: { k: Kernels; t: Idx } | null = null;

  private readonly w: Param;
  private readonly bias: Param;
  readonly inC: number;
  readonly outC: number;

  /** The stage's own downsampling layers (LayerNorm, 2x2 conv), run on masked sites. */
  constructor(layers: { norm: LayerNorm; conv: PatchConv }) {
    this.norm = layers.norm;
    this.conv = layers.conv;
    this.w = layers.conv.weight;
    this.bias = layers.conv.bias;
    this.inC = layers.conv.inC;
    this.outC = layers.conv.outC;
  }

  /** The weight as [out, (ky, kx, c)]: each output's [c, 2*2] slice transposed. */
  private permuteWeight(k: Kernels): Buf {
    const wp = this.own.get(k, 'wp', this.outC * 4 * this.inC);
    k.transpose(this.w.data, this.outC, this.inC, 4, wp, false);
    return wp;
  }

  forward(k: Kernels, x: Buf, prev: StageMask, next: StageMask, mode: EncoderMode, shared: Arena): Buf {
    const b = { shared, cache: true };
    this.prev = prev;
    this.next = next;
    this.mode = mode;
    const { N, H, W } = prev;
    if (mode === 'dense') {
      const u = zeroMasked(k, this.norm.forward(k, x, N * H * W, b), prev, this.inC);
      return zeroMasked(k, this.conv.forward(k, u, N, H, W, b), next, this.outC);
    }
    const S = next.idx.length;
    const L = this.inC * 4;
    const u = this.norm.forward(k, x, prev.idx.length, b);
    if (this.children.length < 4 * S) this.children = new Int32Array(4 * S);
    const children = blockChildren(prev, next, this.children.subarray(0, 4 * S));
    if (this.childTable) this.childTable.k.freeIndexTable(this.childTable.t);
    this.childTable = { k, t: k.indexTable(children) };
    // cols [S, 4*C]: each visible block's four rows of u side by side (4*S rows of C, zeros for -1).
    const cols = this.own.get(k, 'cols', S * L);
    k.gatherRows(u, this.childTable.t, this.inC, cols);
    const y = this.own.get(k, 'y', S * this.outC);
    k.gemm(false, true, S, this.outC, L, cols, L, this.permuteWeight(k), L, y, this.outC, false, this.bias.data, Act.None, null);
    this.cols = cols;
    return y;
  }

  backward(k: Kernels, dy: Buf, shared: Arena): Buf {
    const prev = this.prev;
    const next = this.next;
    if (!prev || !next) throw new Error('MaskedDownsample.backward without a forward');
    if (this.mode === 'dense') {
      const du = zeroMasked(k, this.conv.backward(k, zeroMasked(k, dy, next, this.outC), shared)!, prev, this.inC);
      return this.norm.backward(k, du, shared, 'ds.dx');
    }
    const cols = this.cols!;
    const S = next.idx.length;
    const L = this.inC * 4;
    // The weight gradient in the permuted layout, permuted back into w.grad.
    const dwp = this.own.get(k, 'dwp', this.outC * L);
    k.gemm(true, false, this.outC, L, S, dy, this.outC, cols, L, dwp, L, false, null, Act.None, null);
    k.transpose(dwp, this.outC, 4, this.inC, this.w.grad, true);
    k.colSum(dy, S, this.outC, this.bias.grad, true);
    const dcols = shared.get(k, 'ds.dcols', S * L);
    // 'wp': the forward's permuted weight (the weight does not change before backward).
    k.gemm(false, false, S, L, this.outC, dy, this.outC, this.own.get(k, 'wp', this.outC * L), L, dcols, L, false, null, Act.None, null);
    // The transpose of the gather: each child's slice of dcols back to its row. Every visible
    // position lies in exactly one visible block unless the mask is not a block upsampling
    // (then the others get zero).
    const children = this.children.subarray(0, 4 * S);
    const du = shared.get(k, 'ds.du', prev.idx.length * this.inC);
    let live = 0;
    for (let i = 0; i < children.length; i++) if (children[i] >= 0) live++;
    if (live !== prev.idx.length) k.fill(du, 0);
    k.scatterRows(dcols, this.childTable!.t, this.inC, du);
    this.cols = null;
    return this.norm.backward(k, du, shared, 'ds.dx');
  }
}

export interface EncoderOutput {
  /** Dense final-stage map [N, h, w, C3], zeros at masked sites. */
  map: Buf;
  N: number;
  H: number;
  W: number;
  C: number;
}

export class SparseEncoder {
  private readonly stem: PatchConv;
  private readonly stemNorm: LayerNorm;
  private readonly downs: (MaskedDownsample | null)[] = [];
  /** The backbone's stages over its parameters, drop path 0; their blocks run on masked sites. */
  private readonly stages: Stage[] = [];
  private readonly own = new Arena();
  private masks: StageMask[] = [];
  private mode: EncoderMode = 'sparse';
  private inputShape: [number, number, number] = [0, 0, 0];

  constructor(readonly backbone: ConvNeXtV2, readonly shared: Arena) {
    const cfg = backbone.config;
    const p = (n: string) => backbone.param(n);
    const eps = cfg.layerNormEps;
    this.stem = new PatchConv(p(`${STEM_CONV}.weight`), p(`${STEM_CONV}.bias`), cfg.inChans, cfg.dims[0], 4);
    this.stemNorm = new LayerNorm(p(`${STEM_NORM}.weight`), p(`${STEM_NORM}.bias`), cfg.dims[0], eps);
    for (let s = 0; s < 4; s++) {
      // The backbone's stage on masked sites (no drop path in pre-training, as the official
      // encoder): its blocks take the sites, its downsampling layers run masked.
      const stage = new Stage(p, s, cfg, new Array<number>(cfg.depths[s]).fill(0));
      this.stages.push(stage);
      this.downs.push(stage.downsample && new MaskedDownsample(stage.downsample));
    }
  }

  /**
   * x: NHWC pixels [N, H, W, inChans] with H and W multiples of 32; mask [N, (H/32)*(W/32)]
   * (1 = removed). Returns the dense final map with zeros at masked sites.
   */
  forward(k: Kernels, x: Buf, N: number, H: number, W: number, mask: Float32Array,
    opts: { mode?: EncoderMode; grnStats?: GrnStats } = {}): EncoderOutput {
    const cfg = this.backbone.config;
    if (H % 32 !== 0 || W % 32 !== 0) throw new ConvNextError(`FCMAE input ${H}x${W}: height and width must be multiples of 32`);
    const gh = H / 32;
    const gw = W / 32;
    if (mask.length !== N * gh * gw) throw new ConvNextError(`mask has ${mask.length} values, expected [${N}, ${gh * gw}]`);
    const mode = opts.mode ?? 'sparse';
    const stats = opts.grnStats ?? 'batch';
    this.mode = mode;
    this.inputShape = [N, H, W];
    // The previous batch's tables are released; this batch's are made once for all its calls.
    for (const m of this.masks) releaseTables(m);
    this.masks = [8, 4, 2, 1].map((scale) => stageMask(mask, N, gh, gw, scale));
    for (const m of this.masks) attachTables(k, m, mode === 'dense');
    const b = { shared: this.shared, cache: true };
    const [h0, w0] = [H / 4, W / 4];
    let y = this.stem.forward(k, x, N, H, W, b);
    y = this.stemNorm.forward(k, y, N * h0 * w0, b);
    y = mode === 'sparse'
      ? gatherRows(k, y, this.masks[0], cfg.dims[0], this.own.get(k, 'stem.rows', this.masks[0].idx.length * cfg.dims[0]))
      : zeroMasked(k, y, this.masks[0], cfg.dims[0]);
    for (let s = 0; s < 4; s++) {
      if (s > 0) y = this.downs[s]!.forward(k, y, this.masks[s - 1], this.masks[s], mode, this.shared);
      const sm = this.masks[s];
      const sites = stageSites(k, sm, mode, stats, this.shared);
      for (const blk of this.stages[s].blocks) y = blk.forward(k, y, sm.N, sm.H, sm.W, { shared: this.shared, cache: true, train: true, sites });
    }
    const m3 = this.masks[3];
    const C3 = cfg.dims[3];
    const map = mode === 'sparse' ? scatterRows(k, y, m3, C3, this.own.get(k, 'out', N * m3.H * m3.W * C3)) : y;
    return { map, N, H: m3.H, W: m3.W, C: C3 };
  }

  /** Backward from d/d(output map) (dense [N, h, w, C3]); accumulates parameter gradients. */
  backward(k: Kernels, dmap: Buf): void {
    const cfg = this.backbone.config;
    const sh = this.shared;
    const m3 = this.masks[3];
    let d = this.mode === 'sparse'
      ? gatherRows(k, dmap, m3, cfg.dims[3], sh.get(k, 'enc.d3', m3.idx.length * cfg.dims[3]))
      : copyOf(k, dmap, sh.get(k, 'enc.d3', dmap.length));
    for (let s = 3; s >= 0; s--) {
      const blocks = this.stages[s].blocks;
      for (let i = blocks.length - 1; i >= 0; i--) d = blocks[i].backward(k, d, sh);
      // The downsampling's input gradient (a shared buffer) is consumed in place by the
      // previous stage's blocks before the next downsampling reuses it.
      if (s > 0) d = this.downs[s]!.backward(k, d, sh);
    }
    const m0 = this.masks[0];
    const C0 = cfg.dims[0];
    const [N, H, W] = this.inputShape;
    d = this.mode === 'sparse'
      ? scatterRows(k, d, m0, C0, sh.get(k, 'enc.d0', N * (H / 4) * (W / 4) * C0))
      : zeroMasked(k, d, m0, C0);
    d = this.stemNorm.backward(k, d, sh, 'enc.dstem');
    this.stem.backward(k, d, sh, false);
  }

  /** The stage masks of the last forward (for visualisation). */
  stageMasks(): readonly StageMask[] {
    return this.masks;
  }
}
