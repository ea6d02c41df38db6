/**
 * The microbatch bookkeeping both training engines share (platform-neutral): which batches
 * this rank takes, the epoch's running loss over every rank's microbatches in global order,
 * when a microbatch completes an optimizer step, and the fixed-order gradient sum (GradientSum)
 * for R ranks or for accumulation over update-freq microbatches, on every backend (a device
 * backend's gradients are read back once per microbatch), so that R ranks equal one process with
 * update-freq R bit for bit. One process with update-freq 1 needs no sum.
 */
import type { Shard } from '../data/batch.js';
import { ConvNextError } from '../errors.js';
import type { Comm } from '../parallel/comm.js';
import { GradientSum } from '../parallel/grad_sum.js';
import type { Kernels } from '../kernels/types.js';
import type { Param } from '../nn/param.js';
import { NonFiniteLossError } from './epoch.js';
import { lrAt, type CosineSchedule } from './schedule.js';

export class Microbatches {
  /** This rank's share of an epoch's batches (undefined: all of them). */
  readonly shard: Shard | undefined;
  /** The fixed-order sum, or null (accumulation in the kernels). */
  readonly sums: GradientSum | null;
  private readonly gathered: Float32Array;
  sum = 0;
  count = 0;
  images = 0;
  /** This rank's microbatches so far in the epoch. */
  local = 0;
  private sumSeconds0 = 0;

  constructor(readonly comm: Comm, readonly updateFreq: number, k: Kernels, params: readonly Param[], previous?: Microbatches | null) {
    const R = comm.size;
    this.shard = R > 1 ? { rank: comm.rank, size: R } : undefined;
    const wanted = R > 1 || updateFreq > 1;
    // The flat buffers are reused from epoch to epoch.
    this.sums = !wanted ? null : previous?.sums && previous.sums.comm === comm ? previous.sums : new GradientSum(k, params, comm);
    this.sums?.reset();
    this.sumSeconds0 = this.sums?.seconds ?? 0;
    this.gathered = new Float32Array(2 * R);
  }

  /** The loss scale of a microbatch: ranks x update-freq microbatches make a step. */
  get lossScale(): number {
    return this.updateFreq * this.comm.size;
  }

  /** Whether the next microbatch starts an optimizer step. */
  get stepStart(): boolean {
    return this.local % this.updateFreq === 0;
  }

  /**
   * The lr of the optimizer step that batch `it` (this rank's, of `length` in epoch `epoch`,
   * 1-based) starts: the official `adjust_learning_rate(data_iter_step / len(data_loader) + epoch)`,
   * from the step's first global batch (it - rank), so every rank and any rank count agree.
   */
  stepLr(schedule: CosineSchedule, epoch: number, it: number, length: number): number {
    return lrAt(schedule, epoch - 1 + (it - this.comm.rank) / length);
  }

  /** Epoch batches the ranks take together (whole rounds of R), for progress. */
  epochBatches(length: number): number {
    return this.comm.size > 1 ? Math.floor(length / this.comm.size) * this.comm.size : length;
  }

  /** Global batches done after this rank's batch `it` (every rank's of the round). */
  done(it: number): number {
    return it - this.comm.rank + this.comm.size;
  }

  /**
   * Every rank's loss and batch size of this round, in rank order (the global batch order), into
   * the running mean: the same log on every rank; a non-finite loss on any rank throws on all.
   */
  record(loss: number, n: number, epoch: number, it: number): void {
    const { comm, gathered } = this;
    comm.allgather(Float32Array.of(loss, n), gathered, 2);
    for (let q = 0; q < comm.size; q++) {
      const lq = gathered[2 * q];
      if (!Number.isFinite(lq)) throw new NonFiniteLossError(lq, epoch, it - comm.rank + q + 1);
      this.sum += lq;
      this.count++;
      this.images += gathered[2 * q + 1];
    }
  }

  /** After a microbatch's backward: true when it completes a step (with a sum, the step's gradient is then in p.grad). */
  async endMicrobatch(): Promise<boolean> {
    await this.sums?.add();
    if (++this.local % this.updateFreq !== 0) return false;
    await this.sums?.finish();
    return true;
  }

  /** Drops an incomplete accumulation (the epoch's end). */
  dropPartial(): void {
    this.sums?.reset();
  }

  /** Seconds in the gradient sum this epoch. */
  get sumSeconds(): number {
    return (this.sums?.seconds ?? 0) - this.sumSeconds0;
  }
}
