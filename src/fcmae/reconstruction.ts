/**
 * The FCMAE reconstruction picture (platform-neutral): for a batch of images, original |
 * masked (removed patches grey) | reconstruction (visible patches from the input, removed ones
 * predicted; with norm-pix loss the prediction is de-normalised with each patch's own mean and
 * std). `pretrain` writes it every epoch; a page draws the same images.
 */
import { fromNormalizedCHW } from '../data/transforms.js';
import type { Image } from '../data/image.js';
import { Rng } from '../rng.js';
import type { Tensor } from '../tensor.js';
import { imageGrid, type GridImage } from '../viz/plot.js';
import type { FCMAE } from './fcmae.js';
import { randomMask } from './masking.js';

export interface Reconstruction {
  original: Image;
  /** The removed patches grey (the mean colour after normalisation). */
  masked: Image;
  reconstruction: Image;
}

/**
 * `batch`: [n, 3, S, S] normalised pixels (S a multiple of the patch size). The mask is drawn
 * from `seed` (the same seed gives the same mask); one FCMAE forward on the whole batch.
 */
export async function reconstructImages(fcmae: FCMAE, batch: Tensor, seed: number): Promise<{ mask: Float32Array; loss: number; images: Reconstruction[] }> {
  const [n, , S] = batch.shape;
  const pixels = batch.data;
  const p = fcmae.opts.patchSize;
  const g = S / p;
  const L = g * g;
  const mask = randomMask(n, L, fcmae.opts.maskRatio, new Rng(seed ^ 0x5ee5));
  const out = await fcmae.forward(batch, { shape: [n, L], data: mask });
  const pred = out.pred.data;
  const stats = out.patchStats?.data;
  const P = p * p * 3;
  const images: Reconstruction[] = [];
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
    images.push({ original: fromNormalizedCHW(orig, S, S), masked: fromNormalizedCHW(masked, S, S), reconstruction: fromNormalizedCHW(recon, S, S) });
  }
  return { mask, loss: out.loss, images };
}

/** The reconstructions as one PNG: a row per image, columns original | masked | reconstruction. */
export function reconstructionPng(images: readonly Reconstruction[], title?: string): Uint8Array {
  const cells: GridImage[] = [];
  for (const r of images) for (const img of [r.original, r.masked, r.reconstruction]) cells.push({ width: img.width, height: img.height, data: img.data, channels: 3 });
  return imageGrid(cells, 3, ['original', 'masked', 'reconstruction'], title === undefined ? {} : { title });
}
