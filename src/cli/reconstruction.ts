/**
 * The FCMAE reconstruction picture: for a few fixed images, original | masked (removed
 * patches grey) | reconstruction (visible patches from the input, removed ones predicted;
 * with norm-pix loss the prediction is de-normalised with each patch's own mean and std).
 */
import { FCMAE } from '../fcmae/fcmae.js';
import { randomMask } from '../fcmae/masking.js';
import { fromNormalizedCHW } from '../data/transforms.js';
import { Rng } from '../rng.js';
import type { Tensor } from '../tensor.js';
import { imageGrid, type GridImage } from '../viz/plot.js';
import { writeBytesAtomicSync } from '../io/atomic.js';

/** `batch`: [n, 3, S, S] normalised pixels. */
export function writeReconstructionPng(path: string, fcmae: FCMAE, batch: Tensor, seed: number, title: string): void {
  const [n, , S] = batch.shape;
  const pixels = batch.data;
  const p = fcmae.opts.patchSize;
  const g = S / p;
  const L = g * g;
  const mask = randomMask(n, L, fcmae.opts.maskRatio, new Rng(seed ^ 0x5ee5));
  const out = fcmae.forward(batch, { shape: [n, L], data: mask });
  const pred = out.pred.data;
  const stats = out.patchStats?.data;
  const P = p * p * 3;
  const images: GridImage[] = [];
  for (let i = 0; i < n; i++) {
    const orig = pixels.subarray(i * 3 * S * S, (i + 1) * 3 * S * S);
    const masked = Float32Array.from(orig);
    const recon = Float32Array.from(orig);
    for (let l = 0; l < L; l++) {
      if (!mask[i * L + l]) continue;
      const row = i * L + l;
      const [mean, std] = stats ? [stats[2 * row], stats[2 * row + 1]] : [0, 1];
      const py = Math.floor(l / g) * p;
      const px = (l % g) * p;
      for (let r = 0; r < p; r++) {
        for (let c = 0; c < p; c++) {
          for (let ch = 0; ch < 3; ch++) {
            const o = ch * S * S + (py + r) * S + px + c;
            masked[o] = 0; // the mean colour after normalisation: grey
            recon[o] = pred[row * P + (r * p + c) * 3 + ch] * std + mean;
          }
        }
      }
    }
    for (const chw of [orig, masked, recon]) {
      const img = fromNormalizedCHW(chw, S, S);
      images.push({ width: S, height: S, data: img.data, channels: 3 });
    }
  }
  writeBytesAtomicSync(path, imageGrid(images, 3, ['original', 'masked', 'reconstruction'], { title }));
}
