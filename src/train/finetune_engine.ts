/**
 * The fine-tuning loop of the official main_finetune.py, as a library engine (platform-neutral:
 * the CLI and a page both run it): per batch mixup/cutmix or label smoothing, forward and
 * backward with gradient accumulation over `updateFreq` batches, optional gradient clipping,
 * AdamW at the lr of the half-cosine schedule evaluated at the fractional epoch (the official
 * `adjust_learning_rate`, set every `updateFreq` batches, as in pre-training), the EMA update; per epoch the evaluation of the model (and of the
 * EMA) and the best top-1. Every random choice is seeded by (seed, epoch, batch), so a run
 * resumed from a checkpoint's `step` and `best` continues exactly. Saving, logging and
 * progress are the caller's, through the returned records and the `onStep` callback.
 */
import { sampleSeed, type BatchSource } from '../data/batch.js';
import type { Mixup } from '../data/mixup.js';
import type { TensorData } from '../io/safetensors.js';
import type { ConvNeXtV2 } from '../model/convnextv2.js';
import { readPerParam } from '../nn/store.js';
import { Rng } from '../rng.js';
import type { AdamW } from './adamw.js';
import type { ModelEma } from './ema.js';
import { optimizerTensors } from './optimizer_state.js';
import { clipGradients, forwardBackward } from './step.js';
import type { EpochHooks, EpochStats } from './epoch.js';
import { type Comm, singleProcess } from '../parallel/comm.js';
import { Microbatches } from './microbatches.js';
import { lrAt, type CosineSchedule } from './schedule.js';

/** What an evaluation reports (top-1 / top-5 in percent, mean cross-entropy). */
export interface EvalSummary {
  top1: number;
  top5: number;
  loss: number;
}

export interface FinetuneEngineOptions {
  model: ConvNeXtV2;
  opt: AdamW;
  /** The EMA of the weights, updated after every optimizer step (none: null). */
  ema?: ModelEma | null;
  batches: BatchSource;
  /** Warm-up and half cosine, evaluated at the fractional epoch of each optimizer step's first batch. */
  schedule: CosineSchedule;
  /** Evaluates the model as it is (the EMA is swapped in for `emaEval`). */
  evaluate: (model: ConvNeXtV2) => Promise<EvalSummary>;
  seed: number;
  /** Batches per optimizer step (gradient accumulation; default 1). */
  updateFreq?: number;
  /** Microbatches whose losses are read together (default: 1 on a host backend, 16 on a device one, where each read waits for the GPU); afterBatch's loss is NaN until the first read. */
  lossReadEvery?: number;
  /** Label smoothing when there is no mixup (default 0). */
  smoothing?: number;
  mixup?: Mixup | null;
  /** Clip the total gradient norm to this before each step. */
  clipGrad?: number;
  /** Also evaluate the EMA every epoch. */
  emaEval?: boolean;
  /** A resumed run: optimizer steps taken and the best top-1 so far. */
  resume?: { step: number; best: number };
  /**
   * The ranks of a data-parallel job (default: this process alone). Each takes every size-th
   * batch of the epoch; gradients are summed over ranks and microbatches in one fixed order
   * (GradientSum), so R ranks are bit-identical to one process with update-freq R x updateFreq.
   * `evaluate` is the caller's to shard.
   */
  comm?: Comm;
}

export interface FinetuneEpoch extends EpochStats {
  val: EvalSummary;
  /** The EMA's evaluation, with `emaEval`. */
  ema?: EvalSummary;
  /** Whether val top-1 beat the best so far (it is the best now). */
  improved: boolean;
  best: number;
}

export class FinetuneEngine {
  readonly o: FinetuneEngineOptions;
  /** Optimizer steps taken. */
  step: number;
  /** Best val top-1 so far (-1: none yet). */
  best: number;

  constructor(opts: FinetuneEngineOptions) {
    this.o = opts;
    this.step = opts.resume?.step ?? 0;
    this.best = opts.resume?.best ?? -1;
  }

  /** Trains epoch `epoch` (1-based) and evaluates, calling `hooks` around every batch. */
  async runEpoch(epoch: number, hooks: EpochHooks = {}): Promise<FinetuneEpoch> {
    const { model, opt, ema, batches, seed, mixup } = this.o;
    const K = model.config.numClasses;
    const mb = (this.mb = new Microbatches(this.o.comm ?? singleProcess, this.o.updateFreq ?? 1, model.kernels, model.params, this.mb, this.o.lossReadEvery));
    const t0 = performance.now();
    let lr = lrAt(this.o.schedule, epoch - 1);
    model.zeroGrad();
    for await (const batch of batches.epoch(epoch - 1, undefined, mb.shard)) {
      const it = batch.batch;
      await hooks.beforeBatch?.(epoch, it + 1);
      if (mb.stepStart) lr = mb.stepLr(this.o.schedule, epoch, it, batches.length);
      const [, , H, W] = batch.pixels.shape;
      const targets = mixup
        ? mixup.apply(batch.pixels.data, batch.labels, 3, H, W, new Rng(sampleSeed(seed, epoch, it, 0x6d6978))).targets
        : batch.labels;
      const r = forwardBackward(model, batch.pixels, targets, {
        smoothing: this.o.smoothing ?? 0, lossScale: mb.lossScale, rng: new Rng(sampleSeed(seed, epoch, it, 0x64726f70)),
      });
      await mb.record(r.loss, batch.labels.length, epoch, it);
      if (await mb.endMicrobatch()) {
        if (this.o.clipGrad !== undefined) clipGradients(model.kernels, model.params, this.o.clipGrad, model.buffer('clip.sumsq', 1));
        opt.update(model.kernels, lr);
        model.zeroGrad();
        ema?.update();
        this.step++;
      }
      await hooks.afterBatch?.({ epoch, batch: mb.done(it), batches: mb.epochBatches(batches.length), loss: mb.meanLoss, lr, images: mb.images });
    }
    await mb.flush(epoch);
    // Gradients of an incomplete accumulation at the epoch's end are dropped.
    model.zeroGrad();
    mb.dropPartial();
    const seconds = (performance.now() - t0) / 1000;
    const val = await this.o.evaluate(model);
    let emaVal: EvalSummary | undefined;
    if (ema && this.o.emaEval) {
      ema.swap();
      try {
        emaVal = await this.o.evaluate(model);
      } finally {
        ema.swap();
      }
    }
    const improved = val.top1 > this.best;
    if (improved) this.best = val.top1;
    return { epoch, loss: mb.sum / mb.count, lr, batches: mb.count, images: mb.images, seconds, gradSumSeconds: mb.sumSeconds, val, ...(emaVal ? { ema: emaVal } : {}), improved, best: this.best };
  }

  private mb: Microbatches | null = null;

  /** The EMA weights as `ema.<name>` tensors (none without an EMA), read from any backend (copies; one read per store). */
  async emaTensors(): Promise<Map<string, TensorData>> {
    const { model, ema } = this.o;
    const out = new Map<string, TensorData>();
    if (!ema) return out;
    const values = await readPerParam(model.kernels, model.params, (s) => ema.stores.get(s), (p) => ema.shadow.get(p.name)!);
    for (const p of model.params) out.set(`ema.${p.name}`, { shape: p.shape, data: values.get(p)! });
    return out;
  }

  /** What checkpoint-last carries besides the weights: the AdamW moments and the EMA, read from any backend (copies). */
  async checkpointExtra(): Promise<Map<string, TensorData>> {
    return new Map([...(await optimizerTensors(this.o.model.kernels, this.o.opt)), ...(await this.emaTensors())]);
  }
}
