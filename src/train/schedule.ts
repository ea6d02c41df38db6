/**
 * Learning-rate schedule of the official scripts (`adjust_learning_rate` in utils.py): linear
 * warmup from 0 over `warmupEpochs`, then a half-cycle cosine from `lr` to `minLr` at
 * `epochs`, evaluated at the fractional epoch of every optimizer step
 * (epoch + step_in_epoch / steps_per_epoch, epochs counted from 0).
 */
export interface CosineSchedule {
  lr: number;
  minLr: number;
  warmupEpochs: number;
  epochs: number;
}

export function lrAt(s: CosineSchedule, epoch: number): number {
  if (epoch < s.warmupEpochs) return (s.lr * epoch) / s.warmupEpochs;
  const span = s.epochs - s.warmupEpochs;
  if (span <= 0) return s.lr;
  return s.minLr + (s.lr - s.minLr) * 0.5 * (1 + Math.cos((Math.PI * (epoch - s.warmupEpochs)) / span));
}

/** The official rule: lr = blr * effective batch size / 256 (effective = batch * update_freq). */
export function scaledLr(blr: number, batchSize: number, updateFreq = 1): number {
  return (blr * batchSize * updateFreq) / 256;
}

/**
 * The official fine-tuning schedule (utils.cosine_scheduler): one value per optimizer step,
 * a linear warmup from 0 to `lr` over warmupEpochs * stepsPerEpoch steps (np.linspace, both
 * ends included), then lr -> minLr along a half cosine over the remaining steps.
 */
export function cosineScheduler(lr: number, minLr: number, epochs: number, stepsPerEpoch: number, warmupEpochs: number, warmupSteps = -1): Float64Array {
  const total = epochs * stepsPerEpoch;
  const warm = Math.min(total, warmupSteps > 0 ? warmupSteps : Math.floor(warmupEpochs * stepsPerEpoch));
  const out = new Float64Array(total);
  if (warmupEpochs > 0 || warmupSteps > 0) {
    for (let i = 0; i < warm; i++) out[i] = warm === 1 ? 0 : (lr * i) / (warm - 1);
  }
  const n = total - warm;
  for (let i = 0; i < n; i++) out[warm + i] = minLr + 0.5 * (lr - minLr) * (1 + Math.cos((Math.PI * i) / n));
  return out;
}
