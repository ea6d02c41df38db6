/** Helpers for run folders: the per-epoch log (one JSON record per line), the folder's safety, resumed arguments. */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConvNextError } from '../errors.js';
import { writeBytesAtomicSync } from '../io/atomic.js';
import { ParsedArgs, type FlagSpec, type FlagValue } from './args.js';
import { type EpochHooks, NonFiniteLossError } from '../train/epoch.js';
import type { RunFolder } from '../train/run.js';
import { Progress } from './progress.js';
import { runReadme, writeRunCurves, type RunKind } from './run_curves.js';
import { activeComm } from '../parallel/mpi.js';
import { parseBlockType, type BlockType } from '../model/config.js';

/** Keeps the log records of epochs <= `epoch` (a resumed run rewrites the later ones). */
export function keepLogUpTo(path: string, epoch: number): void {
  if (!existsSync(path)) return;
  const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const keep = lines.filter((l) => {
    try {
      return (JSON.parse(l) as { epoch: number }).epoch <= epoch;
    } catch {
      return false;
    }
  });
  writeBytesAtomicSync(path, Buffer.from(keep.map((l) => l + '\n').join('')));
}

/** The records of a run's log.jsonl. */
export function readLog<T = Record<string, number>>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as T);
}

// ---- run folders of pretrain and finetune ----
// A run is never overwritten by accident, a resumed run goes on with the arguments it was
// started with, and an interrupted one says how to continue.

/** What a run writes into its folder (and --overwrite removes). */
const RUN_FILE = /^(checkpoint-(last|best)\.safetensors|log\.jsonl|reconstruction-epoch\d+\.png|loss\.png|lr\.png|accuracy\.png|README\.txt)$/;

/** The run files already in `out` (none when it does not exist). */
export function runFiles(out: string): string[] {
  if (!existsSync(out)) return [];
  if (!statSync(out).isDirectory()) throw new ConvNextError(`--out ${out}: not a folder`, 2);
  return readdirSync(out).filter((f) => RUN_FILE.test(f)).sort();
}

/**
 * Refuses (exit 2) to start a new run in a folder that holds one, unless resuming or told
 * to overwrite. Writes nothing: call it with the other flag checks, before any work.
 */
function checkRunFolder(command: string, out: string, opts: { resuming: boolean; overwrite: boolean }): void {
  if (opts.resuming || opts.overwrite) return;
  // What makes it a run: its checkpoints and log (the PNGs and README.txt go with them; alone,
  // as a run stopped before its first epoch leaves them, they are written over).
  const found = runFiles(out).filter((f) => /\.(safetensors|jsonl)$/.test(f));
  if (found.length === 0) return;
  const shown = found.length > 3 ? `${found.slice(0, 3).join(', ')}, ...` : found.join(', ');
  throw new ConvNextError(`${command}: --out ${out} already holds a run (${shown}): --resume continues it, --overwrite starts it over`, 2);
}

/**
 * The run folder and the checkpoint to resume from, from --out, --resume [FILE] and
 * --overwrite: the two last contradict each other; --resume alone means DIR's
 * checkpoint-last.safetensors, which must exist; a folder holding a run is refused unless one
 * of them is given (checkRunFolder). Writes nothing.
 */
export function runFolderArgs(command: string, given: ParsedArgs): { out: string; overwrite: boolean; resumeFile: string | null } {
  const out = resolve(given.requireString('out'));
  const overwrite = given.bool('overwrite');
  const resumeArg = given.string('resume');
  if (resumeArg !== undefined && overwrite) throw new ConvNextError(`${command}: --resume and --overwrite contradict each other`, 2);
  const resumeFile = resumeArg === undefined ? null : resumeArg === 'auto' ? join(out, 'checkpoint-last.safetensors') : resolve(resumeArg);
  if (resumeFile && !existsSync(resumeFile)) throw new ConvNextError(`${command}: nothing to resume: ${resumeFile} does not exist`);
  checkRunFolder(command, out, { resuming: resumeFile !== null, overwrite });
  return { out, overwrite, resumeFile };
}

/** Creates the run folder (with --overwrite, first removes the previous run's files). Call it just before the first write. */
export function openRunFolder(out: string, opts: { resuming: boolean; overwrite: boolean }): void {
  if (opts.overwrite && !opts.resuming) for (const f of runFiles(out)) rmSync(join(out, f));
  mkdirSync(out, { recursive: true });
}

/**
 * The run folder `out` on disk, as the run lifecycle (train/run.ts) writes it: log.jsonl beside
 * the checkpoints, a README.txt of what each file is, and curve PNGs redrawn after each epoch.
 */
export function nodeRunFolder(out: string, overwrite: boolean, kind: RunKind): RunFolder {
  const log = join(out, 'log.jsonl');
  return {
    open: (resuming) => {
      openRunFolder(out, { resuming, overwrite });
      writeBytesAtomicSync(join(out, 'README.txt'), new TextEncoder().encode(runReadme(kind)));
    },
    keepLogUpTo: (epoch) => keepLogUpTo(log, epoch),
    appendLog: (record) => {
      appendFileSync(log, JSON.stringify(record) + '\n');
      writeRunCurves(out, kind);
    },
  };
}

/** Flags about where and how a run is driven, not what it computes: never taken from the recorded run, free to differ. */
const DRIVER_FLAGS = new Set(['out', 'resume', 'overwrite', 'stop-after', 'workers', 'strict-data', 'threads', 'device', 'quiet', 'json', 'help', 'mpi-timeout']);

export interface ResumedArgs {
  /** The recorded arguments, with the flags given now where they may change. */
  args: ParsedArgs;
  /** '--epochs 10 (was 5)' for each flag given now that differs from the recorded run. */
  changed: string[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
const shown = (v: unknown) => (v === undefined || v === null ? 'unset' : Array.isArray(v) ? v.join(',') : String(v));

/**
 * The arguments of a resumed run: those it recorded (checkpoint metadata `args`) stand for
 * every flag not given now; a flag given now that contradicts them is refused (exit 2) unless
 * it is in `mutable` (then it is taken and reported as changed). Without recorded arguments
 * (checkpoints from before they were recorded) the flags are taken as given, and so is a flag
 * the recorded arguments lack.
 */
export function resumeArgs(command: string, args: ParsedArgs, recordedJson: string | undefined, file: string, mutable: ReadonlySet<string>): ResumedArgs {
  if (recordedJson === undefined) return { args, changed: [] };
  let recorded: Record<string, FlagValue>;
  try {
    recorded = JSON.parse(recordedJson) as Record<string, FlagValue>;
  } catch {
    throw new ConvNextError(`${command}: ${file}: its recorded arguments are not JSON`);
  }
  const flags = new Map(args.flags);
  const changed: string[] = [];
  for (const name of new Set([...args.flags.keys(), ...Object.keys(recorded)])) {
    if (DRIVER_FLAGS.has(name) || !args.flags.has(name)) continue;
    // A flag the run did not record (added to the program after the run started) keeps its
    // value now: its default or what is given.
    if (!Object.hasOwn(recorded, name)) continue;
    const was = recorded[name];
    if (!args.explicit.has(name)) {
      flags.set(name, was);
      continue;
    }
    const now = args.flags.get(name);
    if (same(now, was)) continue;
    if (!mutable.has(name)) {
      throw new ConvNextError(`${command}: --${name} ${shown(now)} contradicts the run being resumed (${file} was started with ${shown(was)}): drop the flag, or start a new run with another --out`, 2);
    }
    changed.push(`--${name} ${shown(now)} (was ${shown(was)})`);
  }
  return { args: new ParsedArgs(flags, args.positionals, new Set([...args.explicit, ...Object.keys(recorded)]), args.command), changed };
}

/**
 * While a run trains: on SIGINT / SIGTERM, one line saying where it stopped and how to go on,
 * then exit 130 / 143 (checkpoints are written atomically: the last one is intact). The loop
 * must `await at(epoch, step)` once per step: a loop fed by in-process loaders runs on
 * promise continuations alone and would otherwise never let a signal handler run.
 */
export class Interruption {
  epoch = 0;
  step = 0;
  /** The epoch checkpoint-last.safetensors holds (0: none yet). */
  saved = 0;
  private readonly handlers: [NodeJS.Signals, () => void][];
  constructor(readonly command: string, readonly out: string) {
    this.handlers = (['SIGINT', 'SIGTERM'] as const).map((sig) => [sig, () => {
      const code = sig === 'SIGINT' ? 130 : 143;
      const comm = activeComm();
      if (!comm || comm.rank === 0) {
        process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}convnextv2: ${command}: interrupted at epoch ${this.epoch} step ${this.step} (${this.checkpointNote()}); resume with --resume --out ${out}\n`);
      }
      // A data-parallel job ends as a whole (MPI_Finalize would wait for ranks inside a collective).
      if (comm && comm.size > 1) comm.abort(code);
      process.exit(code);
    }]);
    for (const [sig, h] of this.handlers) process.on(sig, h);
  }
  /** What checkpoint-last.safetensors holds, for messages. */
  checkpointNote(): string {
    return this.saved > 0 ? `checkpoint-last.safetensors holds epoch ${this.saved}` : 'no checkpoint was written yet';
  }
  /** Where the run is now; yields to the event loop so that a pending signal is handled. */
  at(epoch: number, step: number): Promise<void> {
    this.epoch = epoch;
    this.step = step;
    return new Promise((resolve) => setImmediate(resolve));
  }
  dispose(): void {
    for (const [sig, h] of this.handlers) process.off(sig, h);
  }
}

/**
 * One line when the warm-up is longer than the run (the official defaults are written for
 * 300-1600 epochs: `pretrain --epochs 4` keeps 40 warm-up epochs, so the learning rate never
 * leaves a tenth of its ramp), with a value to try; null when it is not. Printed when a run
 * starts, not again when it is resumed.
 */
export function warmupNote(command: string, warmupEpochs: number, epochs: number, peakLr: number): string | null {
  if (!(warmupEpochs > epochs)) return null;
  const reached = epochs / warmupEpochs;
  const suggest = Math.max(0, Math.round((epochs / 10) * 100) / 100);
  return `${command}: note: --warmup-epochs ${warmupEpochs} is longer than the run (${epochs} epoch${epochs === 1 ? '' : 's'}): ` +
    `the learning rate reaches ${(reached * peakLr).toExponential(2)} of its ${peakLr.toExponential(2)} at most; for a run this short try --warmup-epochs ${suggest}`;
}

/**
 * What may change when a run is resumed on another number of ranks than it was trained on
 * (the checkpoint's `ranks`; older checkpoints record none): `--update-freq` too, so that the
 * global batch (batch x ranks x update-freq) can be kept. N ranks at batch b are one process
 * at batch b and update-freq N, bit for bit, so such a resume continues exactly.
 */
export function mutableOnResume(mutable: ReadonlySet<string>, metadata: Record<string, string>, ranks: number): ReadonlySet<string> {
  const was = Number(metadata.ranks);
  return Number.isInteger(was) && was !== ranks ? new Set([...mutable, 'update-freq']) : mutable;
}

/**
 * Refuses a resume that would change the global batch because the run is resumed on another
 * number of ranks; the error gives the --update-freq that keeps it, when one does.
 */
export function checkResumedGlobalBatch(command: string, file: string, metadata: Record<string, string>, batch: number, ranks: number, updateFreq: number): void {
  const was = Number(metadata.ranks);
  if (!Number.isInteger(was) || was === ranks) return;
  let recorded: Record<string, FlagValue> = {};
  try {
    recorded = JSON.parse(metadata.args ?? '{}') as Record<string, FlagValue>;
  } catch { /* resumeArgs has said so */ }
  const b0 = Number(recorded['batch-size'] ?? batch);
  const uf0 = Number(recorded['update-freq'] ?? 1);
  const g0 = b0 * was * uf0;
  const g = batch * ranks * updateFreq;
  if (g === g0) return;
  const procs = (r: number) => (r === 1 ? 'one process' : `${r} ranks`);
  const fix = g0 % (batch * ranks) === 0
    ? `resume with --update-freq ${g0 / (batch * ranks)} to keep it (the same run, bit for bit)`
    : `no --update-freq keeps it at batch ${batch} on ${procs(ranks)}: resume on ${procs(was)}, or start a new run with another --out`;
  throw new ConvNextError(`${command}: ${file} was trained on ${procs(was)} x batch ${b0} x update-freq ${uf0} (global batch ${g0}); ` +
    `${procs(ranks)} x batch ${batch} x update-freq ${updateFreq} would make it ${g}: ${fix}`, 2);
}

/** The --strict-data flag of the training commands. */
export const STRICT_DATA_FLAG = { kind: 'boolean', help: 'stop at the first unreadable image (default: skip it, warn once, count it at the end of each epoch)' } as const satisfies FlagSpec;

/** What an epoch's line adds when unreadable images were skipped (none: ''). */
export function skippedNote(...sets: { skipped: readonly string[] }[]): string {
  return skippedText(new Set(sets.flatMap((d) => d.skipped)).size, ' so far');
}

/** The same for a command that reads its data once (eval). */
export function skippedOnce(ds: { skipped: readonly string[] }): string {
  return skippedText(ds.skipped.length, '');
}

function skippedText(n: number, when: string): string {
  return n === 0 ? '' : `; ${n} unreadable image${n === 1 ? '' : 's'} skipped${when} (named in the warnings; --strict-data to stop at one)`;
}

/** What `--resume` says of a run that has all its epochs: it is complete, and how to extend it. */
export function completeNote(command: string, file: string, done: number, epochs: number): string {
  return `${command}: ${file} is complete (${done} of ${epochs} epochs): nothing to train; to train longer, resume with --epochs M (M > ${epochs})`;
}

/**
 * Runs epoch `epoch` of a training engine the CLI way: a progress bar, an interruption point
 * before every batch, and a non-finite loss as one line saying what checkpoint is left
 * (`hint` appended).
 */
export async function runCliEpoch<R>(engine: { runEpoch(epoch: number, hooks: EpochHooks): Promise<R> }, epoch: number, epochs: number, batches: number,
  interrupt: Interruption, hint = ''): Promise<R> {
  const bar = new Progress(`epoch ${epoch}/${epochs}`, batches, 'img');
  try {
    return await engine.runEpoch(epoch, {
      beforeBatch: (e, b) => interrupt.at(e, b),
      afterBatch: (s) => bar.update(s.batch, { loss: s.loss, lr: s.lr }, s.images),
    });
  } catch (e) {
    if (e instanceof NonFiniteLossError) {
      throw new ConvNextError(`${interrupt.command}: ${e.message}; stopping (${interrupt.checkpointNote()} in ${interrupt.out}${hint})`);
    }
    throw e;
  }
}

/** The --data flag of the commands that read a data set: required (the synthetic set only by name). */
export const DATA_FLAG = {
  kind: 'string',
  help: 'DIR (a folder of class folders), fashion-mnist[:DIR], cifar10:DIR, or synthetic[:SIZE] for the embedded synthetic set (required)',
} as const satisfies FlagSpec;

/** The one-line usage error for a missing --data. */
export function missingData(command: string): string {
  return `${command}: missing --data: name the images (a folder of class folders, fashion-mnist[:DIR] or cifar10:DIR), or --data synthetic for the embedded synthetic set`;
}

/** --data of a command without a run folder (eval, analyze); a usage error when absent. */
export function requireData(command: string, args: ParsedArgs): string {
  const v = args.string('data');
  if (v === undefined || v === '') throw new ConvNextError(missingData(command), 2);
  return v;
}

/** Typed reads of resolved flag values (after --recipe or --resume); a missing value is a usage error. */
export function flagReader(command: string, flags: ReadonlyMap<string, FlagValue>): { str(n: string): string; num(n: string): number; opt(n: string): number | undefined } {
  const missing = (n: string) => new ConvNextError(n === 'data' ? missingData(command) : `${command}: missing --${n}`, 2);
  return {
    str: (n) => {
      const v = flags.get(n);
      if (v === undefined || v === '') throw missing(n);
      return String(v);
    },
    num: (n) => {
      const v = flags.get(n);
      if (v === undefined) throw missing(n);
      return Number(v);
    },
    opt: (n) => (flags.get(n) === undefined ? undefined : Number(flags.get(n))),
  };
}

/** What pretrain and finetune both read from their flags: the data, the model, the loop and the lr schedule. */
export interface RunSettings {
  data: string;
  model: string;
  block: BlockType;
  epochs: number;
  batchSize: number;
  updateFreq: number;
  inputSize: number;
  seed: number;
  /** Base lr (lr = blr x global batch / 256) unless `lr` is given. */
  blr: number;
  lr?: number;
  minLr: number;
  warmupEpochs: number;
}

export function runSettings(command: string, flags: ReadonlyMap<string, FlagValue>): RunSettings {
  const { str, num, opt } = flagReader(command, flags);
  const s: RunSettings = {
    data: str('data'), model: str('model'), block: parseBlockType(str('block')),
    epochs: num('epochs'), batchSize: num('batch-size'), updateFreq: num('update-freq'), inputSize: num('input-size'), seed: num('seed'),
    blr: num('blr'), lr: opt('lr'), minLr: num('min-lr'), warmupEpochs: num('warmup-epochs'),
  };
  if (s.epochs < 1 || s.batchSize < 1 || s.updateFreq < 1) throw new ConvNextError(`${command}: --epochs, --batch-size and --update-freq must be positive`, 2);
  return s;
}
