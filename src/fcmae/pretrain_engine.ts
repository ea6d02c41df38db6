/**
 * The FCMAE pre-training loop of the official main_pretrain.py, as a library engine
 * (platform-neutral: the CLI and a page both run it): per batch a random mask seeded by (seed,
 * epoch, batch), the masked-reconstruction forward and backward with gradient accumulation over
 * `updateFreq` batches, AdamW at the lr of the half-cosine schedule evaluated at the fractional
 * epoch (as the official code sets it every `updateFreq` batches). A run resumed from a
 * checkpoint's `step` continues exactly. Saving, logging, pictures and progress are the caller's.
 */
import { sampleSeed, type BatchSource } from '../data/batch.js';
import { Rng } from '../rng.js';
import type { AdamW } from '../train/adamw.js';
import { type EpochHooks, type EpochStats, NonFiniteLossError } from '../train/epoch.js';
import { lrAt, type CosineSchedule } from '../train/schedule.js';
import type { FCMAE } from './fcmae.js';
import { randomMask } from './masking.js';
import type { EncoderMode } from './sparse_encoder.js';

export interface PretrainEngineOptions {
  fcmae: FCMAE;
  opt: AdamW;
  batches: BatchSource;
  schedule: CosineSchedule;
  seed: number;
  /** Batches per optimizer step (gradient accumulation; default 1). */
  updateFreq?: number;
  /** The sparse (compacted) encoder, as the official MinkowskiEngine one, or the dense-masked one. */
  mode?: EncoderMode;
  /** A resumed run: optimizer steps taken. */
  resume?: { step: number };
}

/** An epoch of pre-training: `loss` is the mean masked-reconstruction loss. */
export type PretrainEpoch = EpochStats;

export class PretrainEngine {
  readonly o: PretrainEngineOptions;
  /** Optimizer steps taken. */
  step: number;

  constructor(opts: PretrainEngineOptions) {
    this.o = opts;
    this.step = opts.resume?.step ?? 0;
  }

  /** Trains epoch `epoch` (1-based), calling `hooks` around every batch. */
  async runEpoch(epoch: number, hooks: EpochHooks = {}): Promise<PretrainEpoch> {
    const { fcmae, opt, batches, schedule, seed } = this.o;
    const updateFreq = this.o.updateFreq ?? 1;
    const mode = this.o.mode ?? 'sparse';
    const p = fcmae.opts.patchSize;
    const t0 = performance.now();
    let sum = 0;
    let count = 0;
    let images = 0;
    let lr = lrAt(schedule, epoch - 1);
    fcmae.zeroGrad();
    for await (const batch of batches.epoch(epoch - 1)) {
      const it = batch.batch;
      await hooks.beforeBatch?.(epoch, it + 1);
      if (it % updateFreq === 0) lr = lrAt(schedule, epoch - 1 + it / batches.length);
      const [B, , H, W] = batch.pixels.shape;
      const L = (H / p) * (W / p);
      const mask = randomMask(B, L, fcmae.opts.maskRatio, new Rng(sampleSeed(seed, epoch, it, 0x6d61736b)));
      const r = fcmae.forwardTensors(batch.pixels, { shape: [B, L], data: mask }, { mode });
      fcmae.backward(updateFreq);
      // The loss is read while the backward is queued (a device backend runs it meanwhile).
      const loss = (await fcmae.kernels.read(r.loss))[0];
      if (!Number.isFinite(loss)) throw new NonFiniteLossError(loss, epoch, it + 1);
      if ((it + 1) % updateFreq === 0) {
        opt.update(fcmae.kernels, lr);
        fcmae.zeroGrad();
        this.step++;
      }
      sum += loss;
      count++;
      images += B;
      await hooks.afterBatch?.({ epoch, batch: it + 1, batches: batches.length, loss: sum / count, lr, images });
    }
    // Gradients of an incomplete accumulation at the epoch's end are dropped.
    fcmae.zeroGrad();
    return { epoch, loss: sum / count, lr, batches: count, images, seconds: (performance.now() - t0) / 1000 };
  }
}
