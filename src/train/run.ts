/**
 * The run lifecycle that fine-tuning and FCMAE pre-training share (platform-neutral): open the
 * run's folder (or continue one being resumed, keeping its log up to the resumed epoch), run the
 * epochs from the one after the resumed one to the last (or `stopAfter`), and after each epoch
 * build its log record, append it, save what the command saves (checkpoints, pictures) and say
 * so; the lead rank alone writes, every rank trains. The caller gives the engine's epoch (with
 * its own progress and cancellation hooks), the record, the saving and where the folder is
 * (a RunFolder: a directory in Node), so a command is its flags, its model and one call.
 */

/** Where a run's files go (Node: src/cli/runlog.ts's directory; a page could keep them in memory). */
export interface RunFolder {
  /** Makes the folder ready: a new one, a cleaned one (--overwrite), or the resumed one as it is. */
  open(resuming: boolean): void;
  /** Drops log records after `epoch` (a resumed run rewrites them). */
  keepLogUpTo(epoch: number): void;
  appendLog(record: object): void;
}

/** `R`: what an epoch gives; `Rec`: its log record (one JSON object a line). */
export interface TrainingRun<R, Rec extends object = Record<string, number>> {
  /** Epochs of the run (the last one), and the last one done before (0: a new run). */
  epochs: number;
  startEpoch: number;
  /** A checkpoint of this run is being continued (its folder is kept). */
  resuming: boolean;
  /** Stop after this epoch, as if interrupted (the epochs after it are for a --resume). */
  stopAfter?: number;
  /** This process writes the folder (rank 0 of a data-parallel job). */
  lead: boolean;
  folder: RunFolder;
  /** Called after the folder is ready, on every rank (a data-parallel job's barrier). */
  ready?: () => void;
  /** Trains (and evaluates) one epoch. */
  runEpoch(epoch: number): Promise<R>;
  /** The epoch's log record. */
  record(epoch: number, r: R): Rec;
  /** The lead's saving after the record is logged (checkpoints, pictures); true when a checkpoint now holds `epoch`. */
  save(epoch: number, r: R, record: Readonly<Rec>): Promise<boolean>;
  /** Progress events, on the lead after saving: what the epoch gave and whether it is in a checkpoint. */
  onEpoch?(epoch: number, r: R, record: Readonly<Rec>, saved: boolean): void;
  /** Always called at the end, also on an error (close data loaders, release signal handlers). */
  close?(): Promise<void> | void;
}

/** Runs the epochs of `run`; returns the records of the epochs run now. */
export async function runTraining<R, Rec extends object = Record<string, number>>(run: TrainingRun<R, Rec>): Promise<Rec[]> {
  const records: Rec[] = [];
  try {
    if (run.lead) {
      run.folder.open(run.resuming);
      run.folder.keepLogUpTo(run.startEpoch);
    }
    run.ready?.();
    for (let epoch = run.startEpoch + 1; epoch <= run.epochs; epoch++) {
      const r = await run.runEpoch(epoch);
      const rec = run.record(epoch, r);
      records.push(rec);
      if (run.lead) {
        run.folder.appendLog(rec);
        const saved = await run.save(epoch, r, rec);
        run.onEpoch?.(epoch, r, rec, saved);
      }
      if (epoch === run.stopAfter) break;
    }
  } finally {
    await run.close?.();
  }
  return records;
}
