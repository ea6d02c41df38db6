/**
 * LayerNorm and GRN. Row statistics: one workgroup per row (LayerNorm) or per segment (GRN),
 * each thread summing its strided columns in order, then a fixed tree over the workgroup.
 * Column statistics over rows come from reduce.ts (colPartial + chunkReduce).
 */
import { kernel, SUM, treeReduce } from './common.js';
import { elementwise } from './misc.js';

/** Sum of a vec2 over the workgroup by a fixed tree; every thread gets the result. */
const TREE = treeReduce('reduce2', 'vec2<f32>', SUM);

const ROW_MAIN = '@compute @workgroup_size(WG)\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32)';

/** y = (x - mean) * rstd * gamma + beta per row; mean and rstd written. */
export const layerNormForwardK = kernel({
  name: 'layerNormForward',
  wg: 64,
  params: { M: 'u32', C: 'u32', eps: 'f32', oX: 'u32', oG: 'u32', oB: 'u32', oY: 'u32', oMean: 'u32', oRstd: 'u32' },
  buffers: { x: 'f32', gamma: 'f32', beta: 'f32', y: 'f32', mean: 'f32', rstd: 'f32' },
  code: TREE + /* wgsl */ `
${ROW_MAIN} {
  let row = groupIndex(wid, nwg);
  if (row >= P.M) { return; }
  let o = P.oX + row * P.C;
  var s = 0.0;
  for (var c = lid; c < P.C; c = c + WG) { s = s + x[o + c]; }
  let mu = reduce2(lid, vec2<f32>(s, 0.0)).x / f32(P.C);
  var v = 0.0;
  for (var c = lid; c < P.C; c = c + WG) { let d = x[o + c] - mu; v = v + d * d; }
  let r = 1.0 / sqrt(reduce2(lid, vec2<f32>(v, 0.0)).x / f32(P.C) + P.eps);
  if (lid == 0u) { mean[P.oMean + row] = mu; rstd[P.oRstd + row] = r; }
  let oy = P.oY + row * P.C;
  for (var c = lid; c < P.C; c = c + WG) { y[oy + c] = (x[o + c] - mu) * r * gamma[P.oG + c] + beta[P.oB + c]; }
}
`,
});

/** dx (+)= rstd * (g - mean_c g - xhat * mean_c(g * xhat)), g = dy * gamma, per row. */
export const layerNormBackwardK = kernel({
  name: 'layerNormBackward',
  wg: 64,
  params: { M: 'u32', C: 'u32', oDy: 'u32', oX: 'u32', oMean: 'u32', oRstd: 'u32', oG: 'u32', oDx: 'u32' },
  buffers: { dy: 'f32', x: 'f32', mean: 'f32', rstd: 'f32', gamma: 'f32', dx: 'f32' },
  code: TREE + /* wgsl */ `
override ACC: bool = false;

${ROW_MAIN} {
  let row = groupIndex(wid, nwg);
  if (row >= P.M) { return; }
  let mu = mean[P.oMean + row];
  let r = rstd[P.oRstd + row];
  let ox = P.oX + row * P.C;
  let od = P.oDy + row * P.C;
  var s = vec2<f32>(0.0, 0.0);
  for (var c = lid; c < P.C; c = c + WG) {
    let xh = (x[ox + c] - mu) * r;
    let g = dy[od + c] * gamma[P.oG + c];
    s = s + vec2<f32>(g, g * xh);
  }
  let t = reduce2(lid, s) / f32(P.C);
  let o = P.oDx + row * P.C;
  for (var c = lid; c < P.C; c = c + WG) {
    let xh = (x[ox + c] - mu) * r;
    let v = r * (dy[od + c] * gamma[P.oG + c] - t.x - xh * t.y);
    if (ACC) { dx[o + c] = dx[o + c] + v; } else { dx[o + c] = v; }
  }
}
`,
});

/** Per segment s: gx = sqrt(sq), nx = gx / (mean_c gx + eps). */
export const grnStatsK = kernel({
  name: 'grnStats',
  wg: 64,
  params: { S: 'u32', C: 'u32', eps: 'f32', oSq: 'u32', oGx: 'u32', oNx: 'u32' },
  buffers: { sq: 'f32', gx: 'f32', nx: 'f32' },
  code: TREE + /* wgsl */ `
${ROW_MAIN} {
  let s = groupIndex(wid, nwg);
  if (s >= P.S) { return; }
  var t = 0.0;
  for (var c = lid; c < P.C; c = c + WG) {
    let g = sqrt(sq[P.oSq + s * P.C + c]);
    gx[P.oGx + s * P.C + c] = g;
    t = t + g;
  }
  let d = reduce2(lid, vec2<f32>(t, 0.0)).x / f32(P.C) + P.eps;
  for (var c = lid; c < P.C; c = c + WG) {
    nx[P.oNx + s * P.C + c] = sqrt(sq[P.oSq + s * P.C + c]) / d;
  }
}
`,
});

/** The segment of row i: the largest s < S with offsets[s] <= i. */
const SEGMENT_OF = /* wgsl */ `
fn segmentOf(i: i32) -> u32 {
  var lo = 0u;
  var hi = P.S - 1u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) / 2u;
    if (offsets[mid] <= i) { lo = mid; } else { hi = mid - 1u; }
  }
  return lo;
}
`;

/** y = gamma * (x * nx[s]) + beta + x for rows [offsets[0], offsets[S]) (n = their elements). */
export const grnApplyK = elementwise('grnApply', { S: 'u32', C: 'u32', row0: 'u32', oX: 'u32', oG: 'u32', oB: 'u32', oY: 'u32', oNx: 'u32' },
  { x: 'f32', offsets: 'i32', gamma: 'f32', beta: 'f32', nx: 'f32', y: 'f32' }, `
  let i = P.row0 + e / P.C;
  let c = e % P.C;
  let s = segmentOf(i32(i));
  let v = x[P.oX + i * P.C + c];
  y[P.oY + i * P.C + c] = gamma[P.oG + c] * (v * nx[P.oNx + s * P.C + c]) + beta[P.oB + c] + v;`, SEGMENT_OF);

/**
 * Per segment s, from sums[s] = (sum dy*x [C], sum dy [C]): D = mean_c gx + eps,
 * a = gamma * sum dy*x, dG[c] = a[c] / D - sum_k a[k] gx[s, k] / (C D^2), and the two
 * coefficients of dx = dy * coef[s, c] + x * coef[s, C + c]:
 *   coef[s, c] = 1 + gamma[c] nx[s, c];  coef[s, C + c] = dG[c] / gx[s, c] (0 where gx == 0).
 */
export const grnBackwardStatsK = kernel({
  name: 'grnBackwardStats',
  wg: 64,
  params: { S: 'u32', C: 'u32', eps: 'f32', oG: 'u32', oGx: 'u32', oNx: 'u32' },
  buffers: { sums: 'f32', gamma: 'f32', gx: 'f32', nx: 'f32', coef: 'f32' },
  code: TREE + /* wgsl */ `
${ROW_MAIN} {
  let s = groupIndex(wid, nwg);
  if (s >= P.S) { return; }
  var t = vec2<f32>(0.0, 0.0);
  for (var c = lid; c < P.C; c = c + WG) {
    let g = gx[P.oGx + s * P.C + c];
    let a = gamma[P.oG + c] * sums[s * 2u * P.C + c];
    t = t + vec2<f32>(g, a * g);
  }
  t = reduce2(lid, t);
  let D = t.x / f32(P.C) + P.eps;
  let u = t.y / (f32(P.C) * D * D);
  for (var c = lid; c < P.C; c = c + WG) {
    let g = gx[P.oGx + s * P.C + c];
    let a = gamma[P.oG + c] * sums[s * 2u * P.C + c];
    coef[s * 2u * P.C + c] = 1.0 + gamma[P.oG + c] * nx[P.oNx + s * P.C + c];
    var b = 0.0;
    if (g > 0.0) { b = (a / D - u) / g; }
    coef[s * 2u * P.C + P.C + c] = b;
  }
}
`,
});

/** dgamma[c] += sum_s (sum dy*x)[s, c] * nx[s, c]; dbeta[c] += sum_s (sum dy)[s, c]; s in order (n = C). */
export const grnBackwardParamsK = elementwise('grnBackwardParams', { S: 'u32', C: 'u32', oNx: 'u32', oDg: 'u32', oDb: 'u32' },
  { sums: 'f32', nx: 'f32', dgamma: 'f32', dbeta: 'f32' }, `
  var g = 0.0;
  var b = 0.0;
  for (var s = 0u; s < P.S; s = s + 1u) {
    g = g + sums[s * 2u * P.C + e] * nx[P.oNx + s * P.C + e];
    b = b + sums[s * 2u * P.C + P.C + e];
  }
  dgamma[P.oDg + e] = dgamma[P.oDg + e] + g;
  dbeta[P.oDb + e] = dbeta[P.oDb + e] + b;`);

/** dx = dy * coef[s, c] + x * coef[s, C + c], times gelu'(pre) when GELU, rows [offsets[0], offsets[S]). */
export const grnBackwardDxK = elementwise('grnBackwardDx', {
  S: 'u32', C: 'u32', row0: 'u32', oDy: 'u32', oX: 'u32', oDx: 'u32', oPre: 'u32',
}, { dy: 'f32', x: 'f32', offsets: 'i32', coef: 'f32', dx: 'f32', pre: 'f32' }, `
  let i = P.row0 + e / P.C;
  let c = e % P.C;
  let s = segmentOf(i32(i));
  let o = i * P.C + c;
  var v = dy[P.oDy + o] * coef[s * 2u * P.C + c] + x[P.oX + o] * coef[s * 2u * P.C + P.C + c];
  if (GELU) { v = v * gelu_grad(pre[P.oPre + o]); }
  dx[P.oDx + o] = v;`, SEGMENT_OF + 'override GELU: bool = false;');
