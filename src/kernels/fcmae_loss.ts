/**
 * The host implementation of the fcmaeLoss kernel (and the oracle the other backends are checked against):
 * The FCMAE reconstruction target and loss (official `patchify` and `forward_loss`):
 * the image cut into p x p patches, each flattened in (row, col, channel) order; with
 * `normPixLoss` each patch normalised by its own mean and unbiased variance (+1e-6); loss =
 * mean squared error per patch, averaged over the removed patches only.
 */

/** target [N*L, p*p*C] from NHWC pixels [N, H, W, C]; L = (H/p)*(W/p). */
export function patchifyTarget(x: Float32Array, N: number, H: number, W: number, C: number, p: number, out: Float32Array): Float32Array {
  const gh = H / p;
  const gw = W / p;
  const P = p * p * C;
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < gh; i++) {
      for (let j = 0; j < gw; j++) {
        const o = ((n * gh + i) * gw + j) * P;
        for (let r = 0; r < p; r++) {
          const src = ((n * H + i * p + r) * W + j * p) * C;
          out.set(x.subarray(src, src + p * C), o + r * p * C);
        }
      }
    }
  }
  return out;
}

/** sum of t[a..b) in float64, four interleaved partial sums (no serial add chain). */
function sum(t: Float32Array, a: number, b: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = a;
  for (const e = a + ((b - a) & ~3); i < e; i += 4) {
    s0 += t[i]; s1 += t[i + 1]; s2 += t[i + 2]; s3 += t[i + 3];
  }
  for (; i < b; i++) s0 += t[i];
  return (s0 + s1) + (s2 + s3);
}

/** sum of (t[i] - m)^2 over [a, b) in float64, four interleaved partial sums. */
function sumSqDev(t: Float32Array, a: number, b: number, m: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = a;
  for (const e = a + ((b - a) & ~3); i < e; i += 4) {
    const d0 = t[i] - m, d1 = t[i + 1] - m, d2 = t[i + 2] - m, d3 = t[i + 3] - m;
    s0 += d0 * d0; s1 += d1 * d1; s2 += d2 * d2; s3 += d3 * d3;
  }
  for (; i < b; i++) { const d = t[i] - m; s0 += d * d; }
  return (s0 + s1) + (s2 + s3);
}

/** Per-patch normalisation in place; returns [mean, std] per row for de-normalising. */
export function normalizePatches(t: Float32Array, rows: number, P: number): Float32Array {
  const stats = new Float32Array(rows * 2);
  for (let r = 0; r < rows; r++) {
    const o = r * P;
    const mean = sum(t, o, o + P) / P;
    const std = Math.sqrt(sumSqDev(t, o, o + P, mean) / (P - 1) + 1e-6);
    const inv = 1 / std;
    for (let i = o; i < o + P; i++) t[i] = (t[i] - mean) * inv;
    stats[2 * r] = mean;
    stats[2 * r + 1] = std;
  }
  return stats;
}

/**
 * sum over removed rows of mean_P (pred - target)^2, divided by the number of removed rows.
 * Writes d loss / d pred into `dpred` when given. `mask` is [rows], 1 = removed.
 */
export function maskedMse(pred: Float32Array, target: Float32Array, mask: Float32Array, rows: number, P: number,
  dpred: Float32Array | null): number {
  let msum = 0;
  for (let r = 0; r < rows; r++) msum += mask[r];
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * P;
    const m = mask[r];
    if (m === 0) {
      if (dpred) dpred.fill(0, o, o + P);
      continue;
    }
    const g = (2 * m) / (P * msum);
    let s0 = 0, s1 = 0;
    let i = o;
    for (const e = o + (P & ~1); i < e; i += 2) {
      const d0 = pred[i] - target[i], d1 = pred[i + 1] - target[i + 1];
      s0 += d0 * d0; s1 += d1 * d1;
      if (dpred) { dpred[i] = g * d0; dpred[i + 1] = g * d1; }
    }
    for (; i < o + P; i++) {
      const d = pred[i] - target[i];
      s0 += d * d;
      if (dpred) dpred[i] = g * d;
    }
    loss += (m * (s0 + s1)) / P;
  }
  return msum > 0 ? loss / msum : 0;
}

/**
 * patchifyTarget, normalizePatches (when `norm`) and maskedMse in one pass per patch, while
 * the patch is in cache; the same values. Writes target [N*L, P] and dpred; returns the loss
 * and, when `norm`, the per-patch [mean, std].
 */
export function targetAndLoss(x: Float32Array, N: number, H: number, W: number, C: number, p: number, norm: boolean,
  pred: Float32Array, mask: Float32Array, target: Float32Array, dpred: Float32Array): { loss: number; patchStats: Float32Array | null } {
  const gh = H / p;
  const gw = W / p;
  const P = p * p * C;
  const rows = N * gh * gw;
  const stats = norm ? new Float32Array(rows * 2) : null;
  let msum = 0;
  for (let r = 0; r < rows; r++) msum += mask[r];
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const n = Math.floor(r / (gh * gw));
    const i = Math.floor((r - n * gh * gw) / gw);
    const j = r - n * gh * gw - i * gw;
    const o = r * P;
    for (let y = 0; y < p; y++) {
      const src = ((n * H + i * p + y) * W + j * p) * C;
      target.set(x.subarray(src, src + p * C), o + y * p * C);
    }
    let mean = 0;
    let inv = 1;
    if (stats) {
      mean = sum(target, o, o + P) / P;
      const std = Math.sqrt(sumSqDev(target, o, o + P, mean) / (P - 1) + 1e-6);
      inv = 1 / std;
      stats[2 * r] = mean;
      stats[2 * r + 1] = std;
    }
    const m = mask[r];
    if (m === 0) {
      if (stats) for (let q = o; q < o + P; q++) target[q] = (target[q] - mean) * inv;
      dpred.fill(0, o, o + P);
      continue;
    }
    const g = (2 * m) / (P * msum);
    let s0 = 0, s1 = 0;
    let q = o;
    if (stats) {
      for (const e = o + (P & ~1); q < e; q += 2) {
        const t0 = Math.fround((target[q] - mean) * inv), t1 = Math.fround((target[q + 1] - mean) * inv);
        target[q] = t0; target[q + 1] = t1;
        const d0 = pred[q] - t0, d1 = pred[q + 1] - t1;
        s0 += d0 * d0; s1 += d1 * d1;
        dpred[q] = g * d0; dpred[q + 1] = g * d1;
      }
      for (; q < o + P; q++) {
        const t = Math.fround((target[q] - mean) * inv);
        target[q] = t;
        const d = pred[q] - t;
        s0 += d * d;
        dpred[q] = g * d;
      }
    } else {
      for (const e = o + (P & ~1); q < e; q += 2) {
        const d0 = pred[q] - target[q], d1 = pred[q + 1] - target[q + 1];
        s0 += d0 * d0; s1 += d1 * d1;
        dpred[q] = g * d0; dpred[q + 1] = g * d1;
      }
      for (; q < o + P; q++) {
        const d = pred[q] - target[q];
        s0 += d * d;
        dpred[q] = g * d;
      }
    }
    loss += (m * (s0 + s1)) / P;
  }
  return { loss: msum > 0 ? loss / msum : 0, patchStats: stats };
}
