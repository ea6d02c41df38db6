/**
 * GEMM: 64x64 tiles of C per workgroup of 16x16 threads, 4x4 outputs per thread (register
 * blocking), K in tiles of 16 staged in workgroup memory. Override constants select the
 * layout (TRANS_A, TRANS_B) and the epilogue (ACC, RES, BIAS, GELU, PRE, SCALE, SHIFT); with
 * SPLIT the workgroups of grid z each sum one fixed chunk of K (P.kChunk) and write the raw
 * partial products to `c` laid out [split][M][N]; gemmSplitReduce then adds the chunks in
 * order and applies the epilogue. gemmSqSums writes per-group column sums of squares of C.
 */
import { kernel } from './common.js';

export const TILE_M = 64;
export const TILE_N = 64;
export const TILE_K = 16;

const FLAGS = /* wgsl */ `
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACC: bool = false;
override RES: bool = false;
override BIAS: bool = false;
override GELU: bool = false;
override PRE: bool = false;
override SCALE: bool = false;
override SHIFT: bool = false;
override SPLIT: bool = false;
`;

/** T (the product) plus C, the residual and the bias, then GELU with its pre-activation, into C. */
const EPILOGUE = /* wgsl */ `
fn epilogue(row: u32, col: u32, t0: f32) {
  let o = row * P.ldc + col;
  var t = t0;
  if (ACC) { t = t + c[P.oC + o]; }
  if (RES) { t = t + res[P.oRes + o]; }
  if (BIAS) { t = t + bias[P.oBias + col]; }
  if (GELU) {
    if (PRE) { pre[P.oPre + o] = t; }
    c[P.oC + o] = gelu_f(t);
  } else {
    c[P.oC + o] = t;
  }
}
`;

const EPILOGUE_PARAMS = { M: 'u32', N: 'u32', ldc: 'u32', oC: 'u32', oBias: 'u32', oPre: 'u32', oRes: 'u32' } as const;

export const gemmTiled = kernel({
  name: 'gemm',
  wg: 256,
  params: {
    ...EPILOGUE_PARAMS, K: 'u32', lda: 'u32', ldb: 'u32', oA: 'u32', oB: 'u32',
    oScale: 'u32', oShift: 'u32', scaleRows: 'u32', kChunk: 'u32',
  },
  buffers: { a: 'f32', b: 'f32', c: 'f32', bias: 'f32', pre: 'f32', res: 'f32', scale: 'f32', shift: 'f32' },
  code: FLAGS + EPILOGUE + /* wgsl */ `
const TM: u32 = ${TILE_M}u;
const TN: u32 = ${TILE_N}u;
const TK: u32 = ${TILE_K}u;
var<workgroup> As: array<f32, ${TILE_K * TILE_M}>;  // [k][m]
var<workgroup> Bs: array<f32, ${TILE_K * TILE_N}>;  // [k][n]

/** op(A)[row, k], with the per-image scale and shift applied as A is loaded; 0 outside. */
fn loadA(row: u32, k: u32, kEnd: u32) -> f32 {
  if (row >= P.M || k >= kEnd) { return 0.0; }
  var v: f32;
  if (TRANS_A) { v = a[P.oA + k * P.lda + row]; } else { v = a[P.oA + row * P.lda + k]; }
  if (SCALE) {
    v = v * scale[P.oScale + (row / P.scaleRows) * P.K + k];
    if (SHIFT) { v = v + shift[P.oShift + k]; }
  }
  return v;
}

/** op(B)[k, col]; 0 outside. */
fn loadB(k: u32, col: u32, kEnd: u32) -> f32 {
  if (col >= P.N || k >= kEnd) { return 0.0; }
  if (TRANS_B) { return b[P.oB + col * P.ldb + k]; }
  return b[P.oB + k * P.ldb + col];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row0 = wid.y * TM;
  let col0 = wid.x * TN;
  let tx = lid % 16u;
  let ty = lid / 16u;
  var kBegin = 0u;
  var kEnd = P.K;
  if (SPLIT) {
    kBegin = wid.z * P.kChunk;
    kEnd = min(P.K, kBegin + P.kChunk);
  }
  var acc: array<vec4<f32>, 4>;
  for (var k0 = kBegin; k0 < kEnd; k0 = k0 + TK) {
    // Stage a TK-deep slice of A and B, reading memory along its contiguous dimension.
    for (var l = 0u; l < 4u; l = l + 1u) {
      let e = lid + l * WG;
      if (TRANS_A) {
        let kk = e / TM; let mi = e % TM;
        As[kk * TM + mi] = loadA(row0 + mi, k0 + kk, kEnd);
      } else {
        let mi = e / TK; let kk = e % TK;
        As[kk * TM + mi] = loadA(row0 + mi, k0 + kk, kEnd);
      }
      if (TRANS_B) {
        let nj = e / TK; let kk = e % TK;
        Bs[kk * TN + nj] = loadB(k0 + kk, col0 + nj, kEnd);
      } else {
        let kk = e / TN; let nj = e % TN;
        Bs[kk * TN + nj] = loadB(k0 + kk, col0 + nj, kEnd);
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let ao = kk * TM + ty * 4u;
      let bo = kk * TN + tx * 4u;
      let bv = vec4<f32>(Bs[bo], Bs[bo + 1u], Bs[bo + 2u], Bs[bo + 3u]);
      acc[0] = acc[0] + As[ao] * bv;
      acc[1] = acc[1] + As[ao + 1u] * bv;
      acc[2] = acc[2] + As[ao + 2u] * bv;
      acc[3] = acc[3] + As[ao + 3u] * bv;
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r = r + 1u) {
    let row = row0 + ty * 4u + r;
    if (row >= P.M) { continue; }
    for (var q = 0u; q < 4u; q = q + 1u) {
      let col = col0 + tx * 4u + q;
      if (col >= P.N) { continue; }
      if (SPLIT) {
        c[P.oC + (wid.z * P.M + row) * P.N + col] = acc[r][q];
      } else {
        epilogue(row, col, acc[r][q]);
      }
    }
  }
}
`,
});

/** C[i, j] = epilogue(sum over splits z, in order, of part[z, i, j]). */
export const gemmSplitReduce = kernel({
  name: 'gemmSplitReduce',
  wg: 256,
  params: { ...EPILOGUE_PARAMS, splits: 'u32' },
  buffers: { part: 'f32', c: 'f32', bias: 'f32', pre: 'f32', res: 'f32' },
  code: FLAGS + EPILOGUE + /* wgsl */ `
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = groupIndex(wid, nwg) * WG + lid;
  if (e >= P.M * P.N) { return; }
  var t = 0.0;
  for (var z = 0u; z < P.splits; z = z + 1u) { t = t + part[z * P.M * P.N + e]; }
  epilogue(e / P.N, e % P.N, t);
}
`,
});

/** sq[g, j] = sum over the rows i of group g (in order) of C[i, j]^2. */
export const gemmSqSums = kernel({
  name: 'gemmSqSums',
  wg: 256,
  params: { G: 'u32', N: 'u32', rows: 'u32', ldc: 'u32', oC: 'u32', oSq: 'u32' },
  buffers: { c: 'f32', sq: 'f32' },
  code: /* wgsl */ `
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = groupIndex(wid, nwg) * WG + lid;
  if (e >= P.G * P.N) { return; }
  let g = e / P.N;
  let j = e % P.N;
  var s = 0.0;
  for (var i = g * P.rows; i < (g + 1u) * P.rows; i = i + 1u) {
    let v = c[P.oC + i * P.ldc + j];
    s = s + v * v;
  }
  sq[P.oSq + e] = s;
}
`,
});
