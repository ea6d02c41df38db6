/**
 * FCMAE masking (paper Sec. 3.1): patches of the final-stage grid (32 px for the standard
 * model, a 7x7 grid at 224 px) are removed at random, exactly floor(L * (1 - ratio)) kept per
 * sample, as the official `gen_random_mask`. Convention as the official code: 1 = removed,
 * 0 = visible.
 *
 * A `StageMask` is the mask upsampled to one stage's resolution (each grid cell covers
 * 2^(3-s) x 2^(3-s) positions at stage s, 8x8 at the stem's): the visible positions as row
 * indices of the dense NHWC map, as runs of contiguous rows, per-sample offsets into the
 * compacted rows, and the inverse map (the compact row of each dense position) that the
 * submanifold depthwise kernels take. The sparse encoder computes on the compacted rows;
 * gather/scatter move between the two layouts. Its kernels take the mask's tables on their
 * backend (`attachTables`: made once per batch, not sent again with each of the blocks' calls).
 */
import { ConvNextError } from '../errors.js';
import type { Buf, Idx, Kernels } from '../kernels/types.js';
import type { Rng } from '../rng.js';

/** Random masks [N, L] (1 = removed) with exactly floor(L * (1 - ratio)) visible cells each. */
export function randomMask(N: number, L: number, ratio: number, rng: Rng): Float32Array {
  if (!(ratio >= 0 && ratio < 1)) throw new ConvNextError(`mask ratio ${ratio} must be in [0, 1)`);
  const keep = Math.floor(L * (1 - ratio));
  const mask = new Float32Array(N * L);
  const order = new Int32Array(L);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < L; i++) order[i] = i;
    rng.shuffle(order);
    for (let i = keep; i < L; i++) mask[n * L + order[i]] = 1;
  }
  return mask;
}

export interface StageMask {
  N: number;
  H: number;
  W: number;
  /** Dense row (n*H*W + y*W + x) of each visible position, ascending. */
  idx: Int32Array;
  /** Compact row of each dense row, -1 where masked (N*H*W): the inverse of idx. */
  rowOf: Int32Array;
  /** Runs of visible dense rows: [start, end) pairs; compact rows follow run order. */
  visRuns: Int32Array;
  /** Runs of masked dense rows: [start, end) pairs. */
  maskRuns: Int32Array;
  /** Compact-row offsets of each sample (N + 1 entries). */
  sampleOffsets: Int32Array;
  /** 1 at visible dense rows, 0 at masked ones (N*H*W). */
  keep: Float32Array;
  /** The tables on the backend of the batch's forward (attachTables), null before. */
  tables: MaskTables | null;
}

/** A stage mask's index tables on one backend (Kernels.indexTable), made once per batch. */
export interface MaskTables {
  readonly k: Kernels;
  idx: Idx;
  rowOf: Idx;
  sampleOffsets: Idx;
  /** [0, S]: one GRN segment over every visible row of the batch. */
  allRows: Idx;
  /** [0, N*H*W]: one segment over the whole dense map (the dense mode's batch statistics). */
  allPositions: Idx;
  /** `keep` on the backend (the dense mode's zeroing; null in the sparse mode). */
  keep: Buf | null;
}

/** Makes sm's tables on `k` (releasing any it had); `dense`: also the keep mask. */
export function attachTables(k: Kernels, sm: StageMask, dense: boolean): MaskTables {
  releaseTables(sm);
  let keep: Buf | null = null;
  if (dense) {
    keep = k.memory ? k.memory.alloc(sm.keep.length) : new Float32Array(sm.keep.length);
    k.write(keep, sm.keep);
  }
  sm.tables = {
    k, idx: k.indexTable(sm.idx), rowOf: k.indexTable(sm.rowOf), sampleOffsets: k.indexTable(sm.sampleOffsets),
    allRows: k.indexTable(Int32Array.of(0, sm.idx.length)), allPositions: k.indexTable(Int32Array.of(0, sm.N * sm.H * sm.W)), keep,
  };
  return sm.tables;
}

/** Frees sm's tables (a device backend's buffers) once the batch is done with them. */
export function releaseTables(sm: StageMask): void {
  const t = sm.tables;
  if (!t) return;
  for (const i of [t.idx, t.rowOf, t.sampleOffsets, t.allRows, t.allPositions]) t.k.freeIndexTable(i);
  if (t.keep && t.k.memory) t.k.memory.free(t.keep);
  sm.tables = null;
}

/** sm's tables on `k` (attachTables first). */
export function tablesOf(k: Kernels, sm: StageMask): MaskTables {
  if (!sm.tables || sm.tables.k !== k) throw new Error('stage mask: its tables were not made on these kernels (attachTables)');
  return sm.tables;
}

/**
 * The mask [N, gh*gw] (1 = removed) upsampled by `scale` to an H x W map (H = gh*scale,
 * W = gw*scale).
 */
export function stageMask(mask: Float32Array, N: number, gh: number, gw: number, scale: number): StageMask {
  const H = gh * scale;
  const W = gw * scale;
  const HW = H * W;
  const total = N * HW;
  const keep = new Float32Array(total);
  const rowOf = new Int32Array(total);
  const sampleOffsets = new Int32Array(N + 1);
  // Runs never cross an image boundary, so per-sample offsets stay exact.
  const vis: number[] = [];
  const msk: number[] = [];
  let S = 0;
  for (let n = 0; n < N; n++) {
    let runStart = n * HW;
    let runVis = -1;
    for (let y = 0; y < H; y++) {
      const m = n * gh * gw + Math.floor(y / scale) * gw;
      for (let x = 0; x < W; x++) {
        const i = (n * H + y) * W + x;
        const v = mask[m + Math.floor(x / scale)] ? 0 : 1;
        keep[i] = v;
        rowOf[i] = v ? S++ : -1;
        if (v !== runVis) {
          if (runVis >= 0) (runVis ? vis : msk).push(runStart, i);
          runStart = i;
          runVis = v;
        }
      }
    }
    if (runVis >= 0) (runVis ? vis : msk).push(runStart, (n + 1) * HW);
    sampleOffsets[n + 1] = S;
  }
  const idx = new Int32Array(S);
  for (let i = 0; i < total; i++) if (rowOf[i] >= 0) idx[rowOf[i]] = i;
  return { N, H, W, idx, rowOf, visRuns: Int32Array.from(vis), maskRuns: Int32Array.from(msk), sampleOffsets, keep, tables: null };
}

/** dst [S, C] = the visible rows of the dense map src (compaction), in a kernel. */
export function gatherRows(k: Kernels, src: Buf, sm: StageMask, C: number, dst: Buf): Buf {
  k.gatherRows(src, tablesOf(k, sm).idx, C, dst);
  return dst;
}

/** Dense dst: visible rows from compact src, masked rows zero (overwrites all of dst). */
export function scatterRows(k: Kernels, src: Buf, sm: StageMask, C: number, dst: Buf): Buf {
  k.fill(dst, 0);
  k.scatterRows(src, tablesOf(k, sm).idx, C, dst);
  return dst;
}

/** Zeroes the masked rows of a dense map in place (rows times the keep mask). */
export function zeroMasked(k: Kernels, x: Buf, sm: StageMask, C: number): Buf {
  const rows = sm.N * sm.H * sm.W;
  k.scaleRows(x, rows, C, tablesOf(k, sm).keep ?? sm.keep, x, false);
  return x;
}
