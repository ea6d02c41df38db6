/**
 * Depthwise KxK convolution, stride 1, zero padding K>>1, channels-last, dense maps or the
 * compacted rows of the sparse encoder (ROWS: row r sits at dense position idx[r]; a dense
 * neighbour q is row rowOf[q], masked when outside [0, S)).
 * - dwconv: one thread per output element; FLIP gives the input gradient (the flipped kernel).
 * - dwconvWeightPartial: per chunk of rows, tap t (t == K*K: the bias) and channel, the sum in
 *   row order of dy * the tap's neighbour of x; chunkReduce adds the chunks in order.
 */
import { kernel } from './common.js';

const COMMON = /* wgsl */ `
override ROWS: bool = false;

/** The x row of the neighbour (h + dy, w + dx) of dense position p, or -1 (outside or masked). */
fn neighbour(p: u32, dh: i32, dw: i32) -> i32 {
  let HW = P.H * P.W;
  let n = p / HW;
  let h = i32((p % HW) / P.W) + dh;
  let w = i32(p % P.W) + dw;
  if (h < 0 || h >= i32(P.H) || w < 0 || w >= i32(P.W)) { return -1; }
  let q = n * HW + u32(h) * P.W + u32(w);
  if (ROWS) {
    let j = rowOf[q];
    if (j < 0 || j >= i32(P.S)) { return -1; }
    return j;
  }
  return i32(q);
}

/** The dense position of output row r. */
fn position(r: u32) -> u32 {
  if (ROWS) { return u32(idx[r]); }
  return r;
}
`;

const PARAMS = { S: 'u32', H: 'u32', W: 'u32', C: 'u32', K: 'u32' } as const;

/**
 * Forward: y[r, c] = bias[c] + sum_{ky,kx} w[ky*K + kx, c] * x[neighbour(ky - P, kx - P), c].
 * FLIP (input gradient): y[r, c] (+)= sum w[ky*K + kx, c] * x[neighbour(P - ky, P - kx), c].
 * S rows (dense: N*H*W).
 */
export const dwconvK = kernel({
  name: 'dwconv',
  wg: 256,
  params: { ...PARAMS, oX: 'u32', oW: 'u32', oB: 'u32', oY: 'u32' },
  buffers: { x: 'f32', weight: 'f32', bias: 'f32', y: 'f32', rowOf: 'i32', idx: 'i32' },
  code: COMMON + /* wgsl */ `
override FLIP: bool = false;
override BIAS: bool = false;
override ACC: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = groupIndex(wid, nwg) * WG + lid;
  if (e >= P.S * P.C) { return; }
  let r = e / P.C;
  let c = e % P.C;
  let p = position(r);
  let half = i32(P.K / 2u);
  var s = 0.0;
  if (BIAS) { s = bias[P.oB + c]; }
  if (ACC) { s = y[P.oY + e]; }
  for (var ky = 0u; ky < P.K; ky = ky + 1u) {
    for (var kx = 0u; kx < P.K; kx = kx + 1u) {
      var j: i32;
      if (FLIP) { j = neighbour(p, half - i32(ky), half - i32(kx)); } else { j = neighbour(p, i32(ky) - half, i32(kx) - half); }
      if (j >= 0) { s = s + x[P.oX + u32(j) * P.C + c] * weight[P.oW + (ky * P.K + kx) * P.C + c]; }
    }
  }
  y[P.oY + e] = s;
}
`,
});

/**
 * part[q*J + t*C + c], J = (K*K + 1) * C: over the rows r of chunk q in order, the sum of
 * dy[r, c] * x[neighbour(ky - P, kx - P), c] for tap t = ky*K + kx, and of dy[r, c] for t = K*K.
 */
export const dwconvWeightPartialK = kernel({
  name: 'dwconvWeightPartial',
  wg: 256,
  params: { ...PARAMS, nChunks: 'u32', oDy: 'u32', oX: 'u32' },
  buffers: { dy: 'f32', x: 'f32', chunks: 'i32', part: 'f32', rowOf: 'i32', idx: 'i32' },
  code: COMMON + /* wgsl */ `
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let J = (P.K * P.K + 1u) * P.C;
  let e = groupIndex(wid, nwg) * WG + lid;
  if (e >= P.nChunks * J) { return; }
  let q = e / J;
  let t = (e % J) / P.C;
  let c = e % P.C;
  let half = i32(P.K / 2u);
  let dh = i32(t / P.K) - half;
  let dw = i32(t % P.K) - half;
  var s = 0.0;
  for (var r = u32(chunks[2u * q]); r < u32(chunks[2u * q + 1u]); r = r + 1u) {
    let d = dy[P.oDy + r * P.C + c];
    if (t == P.K * P.K) {
      s = s + d;
    } else {
      let j = neighbour(position(r), dh, dw);
      if (j >= 0) { s = s + d * x[P.oX + u32(j) * P.C + c]; }
    }
  }
  part[e] = s;
}
`,
});
