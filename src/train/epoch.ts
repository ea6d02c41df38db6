/** What the training engines (fine-tuning, FCMAE pre-training) share: epoch records, per-batch hooks, the loss error. */
import { ConvNextError } from '../errors.js';

/** Where an epoch is, for progress displays and interruption points. */
export interface StepInfo {
  epoch: number;
  /** 1-based batch within the epoch. */
  batch: number;
  batches: number;
  /** Mean loss of the epoch so far (NaN before its first read: a device backend reads the loss every few microbatches). */
  loss: number;
  lr: number;
  images: number;
}

/** Called around every batch; awaited (a CLI yields there so that a signal is handled). */
export interface EpochHooks {
  beforeBatch?: (epoch: number, batch: number) => void | Promise<void>;
  afterBatch?: (s: StepInfo) => void | Promise<void>;
}

/** What every training epoch reports. */
export interface EpochStats {
  epoch: number;
  /** Mean training loss. */
  loss: number;
  /** The lr of the epoch's last step. */
  lr: number;
  batches: number;
  images: number;
  seconds: number;
  /** Of `seconds`, those in the fixed-order gradient sum (GradientSum: copies, additions and the ranks' exchange); 0 without one. */
  gradSumSeconds: number;
}

/** A non-finite training loss: the run cannot go on (the last checkpoint is what is left). */
export class NonFiniteLossError extends ConvNextError {
  constructor(readonly loss: number, readonly epoch: number, readonly batch: number) {
    super(`loss is ${loss} at epoch ${epoch}, step ${batch}`);
  }
}
