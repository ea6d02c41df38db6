/** The per-epoch FCMAE reconstruction PNG of `pretrain` (the pictures: fcmae/reconstruction.ts). */
import type { FCMAE } from '../fcmae/fcmae.js';
import { reconstructImages, reconstructionPng } from '../fcmae/reconstruction.js';
import type { Tensor } from '../tensor.js';
import { writeBytesAtomicSync } from '../io/atomic.js';

/** `batch`: [n, 3, S, S] normalised pixels. */
export async function writeReconstructionPng(path: string, fcmae: FCMAE, batch: Tensor, seed: number, title: string): Promise<void> {
  writeBytesAtomicSync(path, reconstructionPng((await reconstructImages(fcmae, batch, seed)).images, title));
}
