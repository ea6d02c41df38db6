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
import type { EpochHooks, EpochStats } from '../train/epoch.js';
import { Microbatches } from '../train/microbatches.js';
import { lrAt, type CosineSchedule } from '../train/schedule.js';
import type { FCMAE } from './fcmae.js';
import { randomMask } from './masking.js';
import type { EncoderMode } from './sparse_encoder.js';
import { type Comm, singleProcess } from '../parallel/comm.js';

export interface PretrainEngineOptions {
  fcmae: FCMAE;
  opt: AdamW;
  batches: BatchSource;
  schedule: CosineSchedule;
  seed: number;
  /** Batches per optimizer step (gradient accumulation; default 1). */
  updateFreq?: number;
  /** Microbatches whose losses are read together (default: 1 on a host backend, 16 on a device one, where each read waits for the GPU); afterBatch's loss is NaN until the first read. */
  lossReadEvery?: number;
  /** The sparse (compacted) encoder, as the official MinkowskiEngine one, or the dense-masked one. */
  mode?: EncoderMode;
  /** A resumed run: optimizer steps taken. */
  resume?: { step: number };
  /** The ranks of a data-parallel job (default: this process alone): as FinetuneEngineOptions.comm. */
  comm?: Comm;
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
    const mb = (this.mb = new Microbatches(this.o.comm ?? singleProcess, updateFreq, fcmae.kernels, fcmae.params, this.mb, this.o.lossReadEvery));
    const t0 = performance.now();
    let lr = lrAt(schedule, epoch - 1);
    fcmae.zeroGrad();
    for await (const batch of batches.epoch(epoch - 1, undefined, mb.shard)) {
      const it = batch.batch;
      await hooks.beforeBatch?.(epoch, it + 1);
      if (mb.stepStart) lr = mb.stepLr(schedule, epoch, it, batches.length);
      const [B, , H, W] = batch.pixels.shape;
      const L = (H / p) * (W / p);
      const mask = randomMask(B, L, fcmae.opts.maskRatio, new Rng(sampleSeed(seed, epoch, it, 0x6d61736b)));
      const r = fcmae.forwardTensors(batch.pixels, { shape: [B, L], data: mask }, { mode });
      fcmae.backward(mb.lossScale);
      // The loss is copied aside by a kernel; it is read once per mb.readEvery microbatches.
      await mb.record(r.loss, B, epoch, it);
      if (await mb.endMicrobatch()) {
        opt.update(fcmae.kernels, lr);
        fcmae.zeroGrad();
        this.step++;
      }
      await hooks.afterBatch?.({ epoch, batch: mb.done(it), batches: mb.epochBatches(batches.length), loss: mb.meanLoss, lr, images: mb.images });
    }
    await mb.flush(epoch);
    // Gradients of an incomplete accumulation at the epoch's end are dropped.
    fcmae.zeroGrad();
    mb.dropPartial();
    return { epoch, loss: mb.sum / mb.count, lr, batches: mb.count, images: mb.images, seconds: (performance.now() - t0) / 1000, gradSumSeconds: mb.sumSeconds };
  }

  private mb: Microbatches | null = null;
}
