/**
 * Column reductions over rows in fixed chunks (no atomics, the same order on every run):
 * rows are cut into chunks by the host (a table of [begin, end) pairs, a function of the
 * shapes only); a first kernel writes one partial sum per chunk and column, summing the rows
 * of its chunk in order; chunkReduce adds the chunks of each segment in order.
 */
import { kernel } from './common.js';

/** Rows per chunk for `rows` rows in all: at least 64, at most about 1024 chunks. */
export function rowsPerChunk(rows: number): number {
  return Math.max(64, Math.ceil(rows / 1024));
}

/**
 * The chunk table of segments [offsets[s], offsets[s+1]): `chunks` holds (begin, end) per
 * chunk, `segChunks[s]..segChunks[s+1]` are the chunks of segment s.
 */
export function chunkTable(offsets: ArrayLike<number>, per = rowsPerChunk(offsets[offsets.length - 1] - offsets[0])): {
  chunks: Int32Array; segChunks: Int32Array; count: number;
} {
  const S = offsets.length - 1;
  const segChunks = new Int32Array(S + 1);
  let count = 0;
  for (let s = 0; s < S; s++) {
    segChunks[s] = count;
    count += Math.ceil((offsets[s + 1] - offsets[s]) / per);
  }
  segChunks[S] = count;
  const chunks = new Int32Array(Math.max(2 * count, 2));
  let q = 0;
  for (let s = 0; s < S; s++) {
    for (let b = offsets[s]; b < offsets[s + 1]; b += per) {
      chunks[2 * q] = b;
      chunks[2 * q + 1] = Math.min(b + per, offsets[s + 1]);
      q++;
    }
  }
  return { chunks, segChunks, count };
}

/**
 * Per chunk q and column j < C (one thread each), summing rows r of the chunk in order:
 *   MODE 0: part[q*C + j] = sum x[r, j]
 *   MODE 1: part[q*C + j] = sum x[r, j]^2
 *   MODE 2: part[q*2C + j] = sum dy[r, j] * x[r, j];  part[q*2C + C + j] = sum dy[r, j]
 *   MODE 3: as 2 with x replaced by LayerNorm's xhat = (x - mean[r]) * rstd[r]
 * Rows have stride C and start at the buffers' offsets.
 */
export const colPartial = kernel({
  name: 'colPartial',
  wg: 256,
  params: { nChunks: 'u32', C: 'u32', oX: 'u32', oDy: 'u32', oMean: 'u32', oRstd: 'u32' },
  buffers: { x: 'f32', dy: 'f32', mean: 'f32', rstd: 'f32', chunks: 'i32', part: 'f32' },
  code: /* wgsl */ `
override MODE: u32 = 0u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = groupIndex(wid, nwg) * WG + lid;
  if (e >= P.nChunks * P.C) { return; }
  let q = e / P.C;
  let j = e % P.C;
  let r0 = u32(chunks[2u * q]);
  let r1 = u32(chunks[2u * q + 1u]);
  var s0 = 0.0;
  var s1 = 0.0;
  for (var r = r0; r < r1; r = r + 1u) {
    var v = x[P.oX + r * P.C + j];
    if (MODE == 0u) {
      s0 = s0 + v;
    } else if (MODE == 1u) {
      s0 = s0 + v * v;
    } else {
      if (MODE == 3u) { v = (v - mean[P.oMean + r]) * rstd[P.oRstd + r]; }
      let d = dy[P.oDy + r * P.C + j];
      s0 = s0 + d * v;
      s1 = s1 + d;
    }
  }
  if (MODE < 2u) {
    part[q * P.C + j] = s0;
  } else {
    part[q * 2u * P.C + j] = s0;
    part[q * 2u * P.C + P.C + j] = s1;
  }
}
`,
});

/**
 * out[oOut + s*cols + j] (+)= scale * sum over the chunks q of segment s, in order, of
 * part[q*J + jOff + j]; one thread per (s, j).
 */
export const chunkReduce = kernel({
  name: 'chunkReduce',
  wg: 256,
  params: { S: 'u32', cols: 'u32', J: 'u32', jOff: 'u32', oOut: 'u32', scale: 'f32' },
  buffers: { part: 'f32', segChunks: 'i32', out: 'f32' },
  code: /* wgsl */ `
override ACC: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = groupIndex(wid, nwg) * WG + lid;
  if (e >= P.S * P.cols) { return; }
  let s = e / P.cols;
  let j = e % P.cols;
  var t = 0.0;
  for (var q = u32(segChunks[s]); q < u32(segChunks[s + 1u]); q = q + 1u) { t = t + part[q * P.J + P.jOff + j]; }
  t = t * P.scale;
  let o = P.oOut + e;
  if (ACC) { out[o] = out[o] + t; } else { out[o] = t; }
}
`,
});
