/**
 * Learning-rate schedule of the official scripts (`adjust_learning_rate` in utils.py, which both
 * main_pretrain.py and main_finetune.py use; utils.cosine_scheduler is ConvNeXt V1's and unused
 * in V2): linear warmup from 0 over `warmupEpochs`, then a half-cycle cosine from `lr` to
 * `minLr` at `epochs`, evaluated at the fractional epoch of every optimizer step
 * (epoch + data_iter_step / len(data_loader), epochs counted from 0).
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
