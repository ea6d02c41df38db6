/**
 * Elementwise and layout kernels: one thread per output element `e < P.n` (gelu, layouts,
 * patches, optimizer steps, the small kernels of the interface), and the cross-entropy.
 */
import { type BufferSpec, kernel, type KernelDef, type ParamSpec, SUM, treeReduce } from './common.js';

/** A kernel whose body runs once per element `e` in [0, P.n). */
export function elementwise<Pm extends ParamSpec, Bf extends BufferSpec>(
  name: string, params: Pm, buffers: Bf, body: string, prelude = '',
): KernelDef<Pm & { n: 'u32' }, Bf> {
  return kernel({
    name,
    wg: 256,
    params: { n: 'u32', ...params } as Pm & { n: 'u32' },
    buffers,
    code: `${prelude}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = groupIndex(wid, nwg) * WG + lid;
  if (e >= P.n) { return; }
${body}
}
`,
  });
}

const ACC = 'override ACC: bool = false;';

/** One-hot targets with label smoothing: off everywhere, off + on at the row's label. */
export const smoothTargetsK = elementwise('smoothTargets', { K: 'u32', oY: 'u32', off: 'f32', on: 'f32' }, { labels: 'i32', y: 'f32' }, `
  let n = e / P.K;
  let k = e % P.K;
  y[P.oY + e] = select(P.off, P.off + P.on, i32(k) == labels[n]);`);

export const fillK = elementwise('fill', { oY: 'u32', value: 'f32' }, { y: 'f32' }, `  y[P.oY + e] = P.value;`);

export const copyK = elementwise('copy', { oX: 'u32', oY: 'u32' }, { x: 'f32', y: 'f32' }, `  y[P.oY + e] = x[P.oX + e];`);

export const scaleK = elementwise('scale', { oX: 'u32', s: 'f32' }, { x: 'f32' }, `  x[P.oX + e] = x[P.oX + e] * P.s;`);

export const erfK = elementwise('erf', { oX: 'u32', oY: 'u32' }, { x: 'f32', y: 'f32' }, `  y[P.oY + e] = erf_f32(x[P.oX + e]);`);

export const geluK = elementwise('gelu', { oX: 'u32', oY: 'u32' }, { x: 'f32', y: 'f32' }, `  y[P.oY + e] = gelu_f(x[P.oX + e]);`);

export const geluBackwardK = elementwise('geluBackward', { oDy: 'u32', oX: 'u32', oDx: 'u32' }, { dy: 'f32', x: 'f32', dx: 'f32' },
  `  dx[P.oDx + e] = dy[P.oDy + e] * gelu_grad(x[P.oX + e]);`);

/** dx[n, hw, c] = dy[n, c] / HW. */
export const avgPoolBackwardK = elementwise('avgPoolBackward', { HW: 'u32', C: 'u32', oDy: 'u32', oDx: 'u32' }, { dy: 'f32', dx: 'f32' }, `
  let n = e / (P.HW * P.C);
  let c = e % P.C;
  dx[P.oDx + e] = dy[P.oDy + n * P.C + c] / f32(P.HW);`);

/** cols[r, (c, ky, kx)] = x[n, i*P + ky, j*P + kx, c], r = (n, i, j). */
export const patchifyK = elementwise('patchify', { H: 'u32', W: 'u32', C: 'u32', Pt: 'u32', Ho: 'u32', Wo: 'u32', oX: 'u32', oY: 'u32' },
  { x: 'f32', cols: 'f32' }, `
  let L = P.C * P.Pt * P.Pt;
  let r = e / L;
  let q = e % L;
  let c = q / (P.Pt * P.Pt);
  let ky = (q / P.Pt) % P.Pt;
  let kx = q % P.Pt;
  let j = r % P.Wo;
  let i = (r / P.Wo) % P.Ho;
  let n = r / (P.Wo * P.Ho);
  cols[P.oY + e] = x[P.oX + ((n * P.H + i * P.Pt + ky) * P.W + j * P.Pt + kx) * P.C + c];`);

/** dx[n, h, w, c] = the dcols entry that patchify took it to, 0 on the floored border. */
export const unpatchifyK = elementwise('unpatchify', { H: 'u32', W: 'u32', C: 'u32', Pt: 'u32', Ho: 'u32', Wo: 'u32', oX: 'u32', oY: 'u32' },
  { dcols: 'f32', dx: 'f32' }, `
  let c = e % P.C;
  let w = (e / P.C) % P.W;
  let h = (e / (P.C * P.W)) % P.H;
  let n = e / (P.C * P.W * P.H);
  let i = h / P.Pt;
  let j = w / P.Pt;
  var v = 0.0;
  if (i < P.Ho && j < P.Wo) {
    let L = P.C * P.Pt * P.Pt;
    v = dcols[P.oX + ((n * P.Ho + i) * P.Wo + j) * L + (c * P.Pt + h % P.Pt) * P.Pt + w % P.Pt];
  }
  dx[P.oY + e] = v;`);

/** dst [N, HW, C] from src [N, C, HW]. */
export const nchwToNhwcK = elementwise('nchwToNhwc', { C: 'u32', HW: 'u32', oX: 'u32', oY: 'u32' }, { src: 'f32', dst: 'f32' }, `
  let c = e % P.C;
  let p = (e / P.C) % P.HW;
  let n = e / (P.C * P.HW);
  dst[P.oY + e] = src[P.oX + (n * P.C + c) * P.HW + p];`);

/** dst [N, C, HW] from src [N, HW, C]. */
export const nhwcToNchwK = elementwise('nhwcToNchw', { C: 'u32', HW: 'u32', oX: 'u32', oY: 'u32' }, { src: 'f32', dst: 'f32' }, `
  let p = e % P.HW;
  let c = (e / P.HW) % P.C;
  let n = e / (P.C * P.HW);
  dst[P.oY + e] = src[P.oX + (n * P.HW + p) * P.C + c];`);

/** out = x + scale[sample] * branch (out may alias x: each element is read and written by one thread). */
export const addScaledK = elementwise('addScaled', { per: 'u32', oX: 'u32', oB: 'u32', oS: 'u32', oY: 'u32' },
  { x: 'f32', branch: 'f32', scale: 'f32', out: 'f32' }, `
  out[P.oY + e] = x[P.oX + e] + scale[P.oS + e / P.per] * branch[P.oB + e];`);

/** One AdamW step; the scalars (decay = 1 - lr*wd, 1 - beta1, 1 - beta2 computed in double) come in P. */
export const adamwK = elementwise('adamw', {
  oP: 'u32', oG: 'u32', oM: 'u32', oV: 'u32',
  lr: 'f32', b1: 'f32', b2: 'f32', c1: 'f32', c2: 'f32', eps: 'f32', decay: 'f32', bc1: 'f32', bc2: 'f32',
}, { p: 'f32', g: 'f32', m: 'f32', v: 'f32' }, `
  let gi = g[P.oG + e];
  let mi = P.b1 * m[P.oM + e] + P.c1 * gi;
  let vi = P.b2 * v[P.oV + e] + P.c2 * gi * gi;
  m[P.oM + e] = mi;
  v[P.oV + e] = vi;
  p[P.oP + e] = p[P.oP + e] * P.decay - P.lr * (mi / P.bc1) / (sqrt(vi / P.bc2) + P.eps);`);

/** dst [B, C, R] (+)= src [B, R, C], each matrix transposed; one thread per dst element. */
export const transposeK = elementwise('transpose', { R: 'u32', C: 'u32', oX: 'u32', oY: 'u32' }, { src: 'f32', dst: 'f32' }, `
  let m = e / (P.R * P.C);
  let q = e % (P.R * P.C);
  let c = q / P.R;
  let r = q % P.R;
  let v = src[P.oX + m * P.R * P.C + r * P.C + c];
  if (ACC) { dst[P.oY + e] = dst[P.oY + e] + v; } else { dst[P.oY + e] = v; }`, ACC);

/** out[r, c] (+)= x[r, c] * s[r] (out may alias x). */
export const scaleRowsK = elementwise('scaleRows', { C: 'u32', oX: 'u32', oS: 'u32', oY: 'u32' }, { x: 'f32', s: 'f32', out: 'f32' }, `
  let v = x[P.oX + e] * s[P.oS + e / P.C];
  if (ACC) { out[P.oY + e] = out[P.oY + e] + v; } else { out[P.oY + e] = v; }`, ACC);

/** out[r] (+)= sum_c a[r, c] * b[r, c], c in order; one thread per row (n = R). */
export const rowDotK = elementwise('rowDot', { C: 'u32', oA: 'u32', oB: 'u32', oY: 'u32' }, { a: 'f32', b: 'f32', out: 'f32' }, `
  var s = 0.0;
  for (var c = 0u; c < P.C; c = c + 1u) { s = s + a[P.oA + e * P.C + c] * b[P.oB + e * P.C + c]; }
  if (ACC) { out[P.oY + e] = out[P.oY + e] + s; } else { out[P.oY + e] = s; }`, ACC);

/** part[q] = sum of x[i]^2 over i in [q*chunk, min(len, (q+1)*chunk)), in order; n = chunks. */
export const sumSquaresPartialK = elementwise('sumSquaresPartial', { len: 'u32', chunk: 'u32', oX: 'u32' }, { x: 'f32', part: 'f32' }, `
  var s = 0.0;
  let end = min(P.len, (e + 1u) * P.chunk);
  for (var i = e * P.chunk; i < end; i = i + 1u) { let v = x[P.oX + i]; s = s + v * v; }
  part[e] = s;`);

/** out[0] (+)= sum of part[0..count) in order, times `scale`; a single thread (n = 1). */
export const sumPartsK = elementwise('sumParts', { count: 'u32', oY: 'u32', scale: 'f32' }, { part: 'f32', out: 'f32' }, `
  var s = 0.0;
  for (var i = 0u; i < P.count; i = i + 1u) { s = s + part[i]; }
  s = s * P.scale;
  if (ACC) { out[P.oY] = out[P.oY] + s; } else { out[P.oY] = s; }`, ACC);

/** x *= min(1, maxNorm / (sqrt(sumSq[0]) + 1e-6)). */
export const clipByNormK = elementwise('clipByNorm', { oX: 'u32', oS: 'u32', maxNorm: 'f32' }, { x: 'f32', sumSq: 'f32' }, `
  let f = P.maxNorm / (sqrt(sumSq[P.oS]) + 1e-6);
  if (f < 1.0) { x[P.oX + e] = x[P.oX + e] * f; }`);

/** out[s, c] = 1 + gamma[c] * nx[s, c]. */
export const grnScaleK = elementwise('grnScale', { C: 'u32', oNx: 'u32', oG: 'u32', oY: 'u32' }, { nx: 'f32', gamma: 'f32', out: 'f32' }, `
  out[P.oY + e] = 1.0 + gamma[P.oG + e % P.C] * nx[P.oNx + e];`);

/** dst[i, c] = src[idx[i], c], 0 where idx[i] < 0; one thread per dst element. */
export const gatherRowsK = elementwise('gatherRows', { C: 'u32', oX: 'u32', oY: 'u32' }, { src: 'f32', idx: 'i32', dst: 'f32' }, `
  let j = idx[e / P.C];
  var v = 0.0;
  if (j >= 0) { v = src[P.oX + u32(j) * P.C + e % P.C]; }
  dst[P.oY + e] = v;`);

/** dst[idx[i], c] = src[i, c], skipping idx[i] < 0; one thread per src element. */
export const scatterRowsK = elementwise('scatterRows', { C: 'u32', oX: 'u32', oY: 'u32' }, { src: 'f32', idx: 'i32', dst: 'f32' }, `
  let j = idx[e / P.C];
  if (j >= 0) { dst[P.oY + u32(j) * P.C + e % P.C] = src[P.oX + e]; }`);

/** shadow = decay * shadow + (1 - decay) * w. */
export const emaK = elementwise('ema', { oS: 'u32', oW: 'u32', decay: 'f32', rest: 'f32' }, { shadow: 'f32', w: 'f32' }, `
  shadow[P.oS + e] = P.decay * shadow[P.oS + e] + P.rest * w[P.oW + e];`);

/**
 * Softmax cross-entropy, one workgroup per row: the max, sum of exponentials and the row's
 * loss -sum target * (logit - lse) by fixed tree reductions; rowLoss[row] for sceMean;
 * dlogits = (softmax - target) * gradScale when DL.
 */
export const softmaxCrossEntropyK = kernel({
  name: 'softmaxCrossEntropy',
  wg: 64,
  params: { N: 'u32', K: 'u32', oL: 'u32', oT: 'u32', oD: 'u32', gradScale: 'f32' },
  buffers: { logits: 'f32', targets: 'f32', dlogits: 'f32', rowLoss: 'f32' },
  code: /* wgsl */ `
override DL: bool = false;
${treeReduce('reduceSum', 'f32', SUM)}${treeReduce('reduceMax', 'f32', (a, b) => `max(${a}, ${b})`)}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = groupIndex(wid, nwg);
  if (row >= P.N) { return; }
  let o = row * P.K;
  var mx = -3.4028234663852886e38;
  for (var k = lid; k < P.K; k = k + WG) { mx = max(mx, logits[P.oL + o + k]); }
  mx = reduceMax(lid, mx);
  var se = 0.0;
  for (var k = lid; k < P.K; k = k + WG) { se = se + exp(logits[P.oL + o + k] - mx); }
  se = reduceSum(lid, se);
  let lse = mx + log(se);
  var loss = 0.0;
  for (var k = lid; k < P.K; k = k + WG) {
    let l = logits[P.oL + o + k];
    let t = targets[P.oT + o + k];
    if (t != 0.0) { loss = loss - t * (l - lse); }
    if (DL) { dlogits[P.oD + o + k] = (exp(l - lse) - t) * P.gradScale; }
  }
  loss = reduceSum(lid, loss);
  if (lid == 0u) { rowLoss[row] = loss; }
}
`,
});

/**
 * The FCMAE loss, one workgroup per patch row r = (n, i, j): target[r] = the p x p patch of x
 * in (row, col, channel) order, normalised when NORM (mean, unbiased variance + 1e-6, the
 * [mean, std] into stats[r]); for a removed row (mask[r] != 0) dpred = g * (pred - target),
 * g = 2 m / (P msum), and rowLoss[r] = m * sum (pred - target)^2 / P; else dpred = 0 and 0.
 */
export const fcmaeLossK = kernel({
  name: 'fcmaeLoss',
  wg: 64,
  params: {
    rows: 'u32', H: 'u32', W: 'u32', C: 'u32', p: 'u32', gh: 'u32', gw: 'u32', msum: 'f32',
    oX: 'u32', oPred: 'u32', oT: 'u32', oD: 'u32', oS: 'u32',
  },
  buffers: { x: 'f32', pred: 'f32', mask: 'f32', target: 'f32', dpred: 'f32', stats: 'f32', rowLoss: 'f32' },
  code: /* wgsl */ `
override NORM: bool = false;
override STATS: bool = false;
${treeReduce('reduceSum', 'f32', SUM)}
/** Element q of patch row r. */
fn pixel(r: u32, q: u32) -> f32 {
  let n = r / (P.gh * P.gw);
  let i = (r / P.gw) % P.gh;
  let j = r % P.gw;
  let pc = P.p * P.C;
  let y = q / pc;
  return x[P.oX + ((n * P.H + i * P.p + y) * P.W + j * P.p) * P.C + q % pc];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = groupIndex(wid, nwg);
  if (r >= P.rows) { return; }
  let L = P.p * P.p * P.C;
  var mean = 0.0;
  var inv = 1.0;
  if (NORM) {
    var s = 0.0;
    for (var q = lid; q < L; q = q + WG) { s = s + pixel(r, q); }
    mean = reduceSum(lid, s) / f32(L);
    var v = 0.0;
    for (var q = lid; q < L; q = q + WG) { let d = pixel(r, q) - mean; v = v + d * d; }
    let sd = sqrt(reduceSum(lid, v) / f32(L - 1u) + 1e-6);
    inv = 1.0 / sd;
    if (STATS && lid == 0u) { stats[P.oS + 2u * r] = mean; stats[P.oS + 2u * r + 1u] = sd; }
  }
  let m = mask[r];
  let g = 2.0 * m / (f32(L) * P.msum);
  var loss = 0.0;
  for (var q = lid; q < L; q = q + WG) {
    var t = pixel(r, q);
    if (NORM) { t = (t - mean) * inv; }
    target[P.oT + r * L + q] = t;
    var dp = 0.0;
    if (m != 0.0) {
      let d = pred[P.oPred + r * L + q] - t;
      loss = loss + d * d;
      dp = g * d;
    }
    dpred[P.oD + r * L + q] = dp;
  }
  loss = reduceSum(lid, loss);
  if (lid == 0u) { rowLoss[r] = m * loss / f32(L); }
}
`,
});
