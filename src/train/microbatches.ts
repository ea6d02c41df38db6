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
import type { Buf, Kernels } from '../kernels/types.js';
import type { Param } from '../nn/param.js';
import { NonFiniteLossError } from './epoch.js';
import { lrAt, type CosineSchedule } from './schedule.js';

/** Microbatches per loss read on a device backend. */
export const LOSS_READS = 16;

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
  /**
   * Microbatches whose loss is read together: 1 on a host backend (reading is free), LOSS_READS
   * on a device backend, whose loss read waits for the GPU (the loss is read once per interval,
   * not once per microbatch).
   */
  readonly readEvery: number;
  /** The losses not read yet, one slot per microbatch, in the backend's memory. */
  private readonly losses: Buf;
  private readonly pending: { n: number; it: number }[] = [];

  constructor(readonly comm: Comm, readonly updateFreq: number, private readonly k: Kernels, params: readonly Param[], previous?: Microbatches | null,
    readEvery?: number) {
    const R = comm.size;
    this.shard = R > 1 ? { rank: comm.rank, size: R } : undefined;
    const wanted = R > 1 || updateFreq > 1;
    // The flat buffers are reused from epoch to epoch.
    this.sums = !wanted ? null : previous?.sums && previous.sums.comm === comm ? previous.sums : new GradientSum(k, params, comm);
    this.sums?.reset();
    this.sumSeconds0 = this.sums?.seconds ?? 0;
    this.readEvery = readEvery ?? (k.capabilities().device ? LOSS_READS : 1);
    if (!(Number.isInteger(this.readEvery) && this.readEvery >= 1)) throw new ConvNextError(`lossReadEvery ${this.readEvery}: must be a positive integer`, 2);
    this.losses = previous?.losses && previous.readEvery === this.readEvery && previous.k === k ? previous.losses : k.memory?.alloc(this.readEvery) ?? new Float32Array(this.readEvery);
    this.gathered = new Float32Array(2 * R * this.readEvery);
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
   * Records microbatch `it`'s loss (one value in the backend's memory, copied by a kernel: no wait)
   * and its batch size n; every readEvery microbatches the losses are read and taken in.
   */
  async record(loss: Buf, n: number, epoch: number, it: number): Promise<void> {
    this.k.copy(loss, this.losses.subarray(this.pending.length, this.pending.length + 1));
    this.pending.push({ n, it });
    if (this.pending.length === this.readEvery) await this.flush(epoch);
  }

  /**
   * Takes the recorded losses in: every rank's, round by round and in rank order within a round
   * (the global batch order), into the running mean, so every rank logs the same; a non-finite
   * loss on any rank throws on all. The engines call it at the epoch's end for the rest.
   */
  async flush(epoch: number): Promise<void> {
    const P = this.pending.length;
    if (P === 0) return;
    const { comm, gathered } = this;
    const values = await this.k.read(this.losses);
    const mine = new Float32Array(2 * P);
    this.pending.forEach((b, i) => {
      mine[2 * i] = values[i];
      mine[2 * i + 1] = b.n;
    });
    comm.allgather(mine, gathered, 2 * P);
    for (let i = 0; i < P; i++) {
      for (let q = 0; q < comm.size; q++) {
        const lq = gathered[q * 2 * P + 2 * i];
        if (!Number.isFinite(lq)) throw new NonFiniteLossError(lq, epoch, this.pending[i].it - comm.rank + q + 1);
        this.sum += lq;
        this.count++;
        this.images += gathered[q * 2 * P + 2 * i + 1];
      }
    }
    this.pending.length = 0;
  }

  /** The running mean loss (NaN before the first read). */
  get meanLoss(): number {
    return this.count > 0 ? this.sum / this.count : NaN;
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
