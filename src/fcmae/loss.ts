/**
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

/** Per-patch normalisation in place; returns [mean, std] per row for de-normalising. */
export function normalizePatches(t: Float32Array, rows: number, P: number): Float32Array {
  const stats = new Float32Array(rows * 2);
  for (let r = 0; r < rows; r++) {
    const o = r * P;
    let s = 0;
    for (let i = 0; i < P; i++) s += t[o + i];
    const mean = s / P;
    let v = 0;
    for (let i = 0; i < P; i++) v += (t[o + i] - mean) ** 2;
    const std = Math.sqrt(v / (P - 1) + 1e-6);
    for (let i = 0; i < P; i++) t[o + i] = (t[o + i] - mean) / std;
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
    let s = 0;
    const g = (2 * m) / (P * msum);
    for (let i = 0; i < P; i++) {
      const d = pred[o + i] - target[o + i];
      s += d * d;
      if (dpred) dpred[o + i] = g * d;
    }
    loss += (m * s) / P;
  }
  return msum > 0 ? loss / msum : 0;
}
