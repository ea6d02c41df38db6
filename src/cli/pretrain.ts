/**
 * `convnextv2 pretrain`: FCMAE self-supervised pre-training with the official script's
 * defaults (main_pretrain.py): norm-pix loss, AdamW betas (0.9, 0.95), weight decay 0.05
 * except 1-D tensors and biases, lr = blr * effective batch / 256 with blr 1.5e-4,
 * half-cycle cosine after linear warmup updated every optimizer step, RandomResizedCrop
 * (scale 0.2-1, bicubic) + horizontal flip + ImageNet normalisation, mask ratio 0.6.
 *
 * Every epoch: a line in DIR/log.jsonl, a reconstruction PNG of a few fixed images, and
 * (each --save-every epochs) DIR/checkpoint-last.safetensors written atomically with the
 * weights, the decoder, the AdamW moments and the step. The data order, augmentation and
 * masks are functions of (seed, epoch, batch), so `--resume` continues bit-identically, with
 * the arguments recorded in the checkpoint (flags given again may change only --epochs,
 * --data, --save-every, --vis-images and how the run is driven: --workers, --threads,
 * --stop-after).
 */
import { join } from 'node:path';
import { ConvNextError } from '../errors.js';
import { FCMAE, type FcmaeOptions } from '../fcmae/fcmae.js';
import type { EncoderMode } from '../fcmae/sparse_encoder.js';
import type { TrainTransformSpec } from '../data/transforms.js';
import { openDataset, type Dataset } from '../data/dataset.js';
import { DataLoader } from '../data/loader.js';
import { PretrainEngine, type PretrainEpoch } from '../fcmae/pretrain_engine.js';
import { runTraining } from '../train/run.js';
import { loadCheckpoint, saveCheckpoint } from '../io/checkpoint_file.js';
import { modelFromFlags, type ConvNeXtV2Config } from '../model/config.js';
import type { Tensor } from '../tensor.js';
import { AdamW } from '../train/adamw.js';
import { pretrainParamGroups } from '../train/param_groups.js';
import { loadOptimizerTensors, optimizerTensors } from '../train/optimizer_state.js';
import { scaledLr } from '../train/schedule.js';
import type { TensorData } from '../io/safetensors.js';
import type { ParsedArgs } from './args.js';
import type { Command } from './command.js';
import { checkResumedGlobalBatch, completeNote, DATA_FLAG, Interruption, mutableOnResume, nodeRunFolder, skippedNote, STRICT_DATA_FLAG, resumeArgs, runCliEpoch, runFolderArgs, runSettings, warmupNote, type RunSettings } from './runlog.js';
import { writeReconstructionPng } from './reconstruction.js';
import { jobComm } from '../parallel/mpi.js';

export interface EpochRecord {
  epoch: number;
  loss: number;
  lr: number;
  images_per_second: number;
  seconds: number;
  /** Of `seconds`, those in the fixed-order gradient sum over microbatches and ranks (0 without one). */
  grad_sum_seconds: number;
  /** Ranks of the job (1: one process). */
  ranks: number;
  steps: number;
  /** The schedule used: peak and final learning rate, warm-up, total epochs. */
  peak_lr: number;
  min_lr: number;
  warmup_epochs: number;
  epochs: number;
}

/** Flags a resumed pre-training run may change (reported as changed). */
const MUTABLE_ON_RESUME = new Set(['epochs', 'data', 'save-every', 'vis-images']);

export const pretrain: Command = {
  name: 'pretrain',
  summary: 'FCMAE self-supervised pre-training (sparse encoder) with the official recipe',
  usage: 'convnextv2 pretrain --model atto --data SPEC --epochs E --batch-size B --out DIR [--resume [FILE]]',
  examples: [
    'convnextv2 pretrain --model atto --data photos/ --epochs 100 --batch-size 64 --out runs/pretrain',
    'convnextv2 pretrain --data synthetic --input-size 64 --epochs 2 --out runs/try',
    'convnextv2 pretrain --resume --out runs/pretrain --epochs 200',
  ],
  flags: {
    model: { kind: 'string', help: 'model size (atto ... huge)', default: 'atto' },
    depths: { kind: 'string', help: 'custom blocks per stage, e.g. 2,2,6,2 (with --dims)' },
    dims: { kind: 'string', help: 'custom channels per stage, e.g. 40,80,160,320 (with --depths)' },
    block: { kind: 'string', help: 'v2 (GRN) or v1 (ConvNeXt V1: LayerScale, no GRN; the GRN ablation)', default: 'v2' },
    data: DATA_FLAG,
    epochs: { kind: 'int', help: 'epochs', default: 800 },
    'batch-size': { kind: 'int', help: 'images per step', default: 64 },
    'update-freq': { kind: 'int', help: 'gradient accumulation steps per update', default: 1 },
    'input-size': { kind: 'int', help: 'image size (a multiple of 32)', default: 224 },
    'mask-ratio': { kind: 'number', help: 'fraction of 32x32 patches removed', default: 0.6 },
    'norm-pix-loss': { kind: 'boolean', help: 'per-patch normalised target (the official script forces it on)', default: true },
    'decoder-depth': { kind: 'int', help: 'decoder blocks', default: 1 },
    'decoder-embed-dim': { kind: 'int', help: 'decoder width', default: 512 },
    'grn-stats': { kind: 'string', help: 'encoder GRN statistics: batch (official) or per-sample', default: 'batch' },
    'fcmae-init': { kind: 'string', help: "timm (the encoder's own std 0.02 everywhere) or official (FCMAE's std-1 re-initialisation, for exact reproduction; it makes short pre-training hurt)", default: 'timm' },
    'dense-masking': { kind: 'boolean', help: 'dense-masked encoder instead of the sparse one (same function, slower)' },
    blr: { kind: 'number', help: 'base learning rate: lr = blr * batch * update-freq / 256', default: 1.5e-4 },
    lr: { kind: 'number', help: 'absolute learning rate (overrides --blr)' },
    'min-lr': { kind: 'number', help: 'final learning rate of the cosine', default: 0 },
    'warmup-epochs': { kind: 'number', help: 'linear warmup epochs', default: 40 },
    'weight-decay': { kind: 'number', help: 'AdamW weight decay (not on LayerNorm affines and biases; GRN and the mask token are decayed, as main_pretrain.py)', default: 0.05 },
    seed: { kind: 'int', help: 'seed of the initialisation, data order, augmentation and masks', default: 0 },
    limit: { kind: 'int', help: 'use N training images: a seeded, class-stratified subset' },
    out: { kind: 'string', help: 'run folder (log.jsonl, PNGs, checkpoints; refused when it holds a run, unless --resume or --overwrite)' },
    overwrite: { kind: 'boolean', help: 'start over in a run folder that holds a run (its checkpoints, log and PNGs are removed)' },
    'save-every': { kind: 'int', help: 'write checkpoint-last.safetensors every N epochs (and after the last)', default: 1 },
    resume: { kind: 'string', help: 'continue from DIR/checkpoint-last.safetensors, or from FILE, with the arguments the run was started with', implicit: 'auto' },
    workers: { kind: 'int', help: 'data loading worker threads (default: cores - 1, at most 4)' },
    'strict-data': STRICT_DATA_FLAG,
    'vis-images': { kind: 'int', help: 'images in the per-epoch reconstruction PNG', default: 4 },
    'stop-after': { kind: 'int', help: 'stop after this epoch (as if interrupted; --resume continues)' },
    'mpi-timeout': { kind: 'number', help: 'under mpirun / srun: seconds a collective may wait before the job is aborted (a dead or hung rank)', default: 300 },
  },
  async run(given, ctx) {
    // Data-parallel under mpirun / srun (connected by main): rank 0 alone writes.
    const comm = jobComm();
    const R = comm.size;
    const lead = comm.rank === 0;
    // The run folder and what to resume first: a resumed run's recorded arguments are the defaults.
    const { out, overwrite, resumeFile } = runFolderArgs('pretrain', given);
    const ck = resumeFile ? loadCheckpoint(resumeFile, { extra: true }) : null;
    if (ck && !ck.fcmae) throw new ConvNextError(`pretrain: ${resumeFile} is not an FCMAE checkpoint (no fcmae.* tensors)`);
    const { args, changed } = ck ? resumeArgs('pretrain', given, ck.metadata.args, resumeFile!, mutableOnResume(MUTABLE_ON_RESUME, ck.metadata, R)) : { args: given, changed: [] };

    const st = pretrainSettings(args);
    const { epochs: E, batchSize: B, updateFreq, inputSize: S, seed } = st;
    if (ck) checkResumedGlobalBatch('pretrain', resumeFile!, ck.metadata, B, R, updateFreq);
    const limit = args.number('limit');
    if (limit !== undefined && !(limit >= 1)) throw new ConvNextError(`pretrain: --limit ${limit}: must be a positive integer`, 2);
    const saveEvery = args.requireNumber('save-every');
    if (!(saveEvery >= 1)) throw new ConvNextError(`pretrain: --save-every ${saveEvery}: must be a positive integer`, 2);
    const visImages = args.requireNumber('vis-images');
    if (!(visImages >= 1)) throw new ConvNextError(`pretrain: --vis-images ${visImages}: must be a positive integer`, 2);
    // A resumed run keeps its decoder.
    const fcmaeOpts = { ...st.fcmae, ...(ck?.fcmae ? { decoderDim: ck.fcmae.decoderDim, decoderDepth: ck.fcmae.decoderDepth } : {}) };
    const encCfg: ConvNeXtV2Config = ck ? ck.config : modelFromFlags(st.model, args.string('depths'), args.string('dims'), { numClasses: 0, block: st.block });
    const fcmae = new FCMAE(encCfg, fcmaeOpts, { seed, kernels: await ctx.backend() });
    const opt = new AdamW(pretrainParamGroups(fcmae.params, st.weightDecay), st.optimizer);
    let startEpoch = 0;
    let step = 0;
    if (ck) {
      fcmae.encoderModel.loadStateDict(ck.state, resumeFile!);
      const extra = ck.extra ?? new Map<string, TensorData>();
      fcmae.loadDecoderState(extra, resumeFile!);
      startEpoch = Number(ck.metadata.epoch);
      step = Number(ck.metadata.step);
      if (!Number.isInteger(startEpoch) || !Number.isInteger(step)) throw new ConvNextError(`pretrain: ${resumeFile} has no epoch/step metadata`);
      loadOptimizerTensors(fcmae.kernels, opt, extra, Number(ck.metadata.optimizer_step ?? step), resumeFile!);
    }

    const train = openDataset(st.data, 'train', { limit, seed });
    const loader = new DataLoader(train, {
      batchSize: B, shuffle: true, seed, dropLast: true,
      transform: { ...st.transform, size: S },
      workers: args.number('workers') ?? 'auto', strict: args.bool('strict-data'),
    });
    // Per rank: every R-th batch (R > 1: the epoch's last batches short of a whole round are left out).
    const steps = Math.floor(loader.length / R);
    if (steps < 1) throw new ConvNextError(`pretrain: ${train.length} training images make no batch of ${B}${R > 1 ? ` for each of ${R} ranks` : ''}`);
    // The official rule on the global batch: batch x ranks x update-freq.
    const lr = st.lr ?? scaledLr(st.blr, B * R, updateFreq);
    const schedule = { lr, minLr: st.minLr, warmupEpochs: st.warmupEpochs, epochs: E };
    const warmNote = warmupNote('pretrain', schedule.warmupEpochs, E, lr);
    const vis = await visBatch(st.data, seed, S, visImages, train);
    const pngOf = (epoch: number) => join(out, `reconstruction-epoch${String(epoch).padStart(3, '0')}.png`);
    const mode = st.mode;
    const interrupt = new Interruption('pretrain', out);
    interrupt.saved = startEpoch;
    const engine = new PretrainEngine({ fcmae, opt, batches: loader, schedule, seed, updateFreq, mode, resume: { step }, comm });
    const records = await runTraining<PretrainEpoch, EpochRecord>({
      epochs: E, startEpoch, resuming: ck !== null, stopAfter: args.number('stop-after'), lead, folder: nodeRunFolder(out, overwrite, 'pretrain'),
      ready: () => {
        comm.barrier();
        if (changed.length) ctx.out(`pretrain: resuming ${resumeFile} with ${changed.join(', ')}`);
        if (warmNote && !ck) ctx.out(warmNote);
        ctx.out(`pretrain: FCMAE ${encCfg.depths}/${encCfg.dims}${encCfg.block === 'v1' ? ' (ConvNeXt V1 blocks)' : ''} decoder ${fcmae.opts.decoderDepth}x${fcmae.opts.decoderDim}, ` +
          `${train.source}, ${steps} steps/epoch of ${B}${R > 1 ? ` on each of ${R} ranks (${comm.description}; global batch ${B * R * updateFreq})` : ''}, lr ${lr.toExponential(3)}, ${mode} encoder, ` +
          `kernels ${fcmae.kernels.isa} x${fcmae.kernels.threads}${ck ? `, resumed after epoch ${startEpoch} of ${E} (its checkpoint)` : ''}`);
        if (ck && startEpoch >= E) ctx.out(completeNote('pretrain', resumeFile!, startEpoch, E));
      },
      runEpoch: (epoch) => runCliEpoch(engine, epoch, E, steps * R, interrupt, '; try a lower --blr or more --warmup-epochs'),
      record: (epoch, r): EpochRecord => ({
        epoch, loss: r.loss, lr: r.lr, images_per_second: r.images / r.seconds, seconds: r.seconds, grad_sum_seconds: r.gradSumSeconds, ranks: R, steps: r.batches,
        peak_lr: lr, min_lr: schedule.minLr, warmup_epochs: schedule.warmupEpochs, epochs: E,
      }),
      save: async (epoch) => {
        await writeReconstructionPng(pngOf(epoch), fcmae, vis, seed, `FCMAE epoch ${epoch}: original | masked | reconstruction`);
        if (epoch % saveEvery !== 0 && epoch !== E) return false;
        saveCheckpoint(join(out, 'checkpoint-last.safetensors'), {
          config: fcmae.encoderModel.config,
          state: await fcmae.encoderModel.stateDict(),
          extra: new Map([...(await fcmae.decoderStateDict()), ...(await optimizerTensors(fcmae.kernels, opt))]),
          initialised: ['head.norm.weight', 'head.norm.bias'],
          fcmae: { ...fcmae.info(), inputSize: S },
          metadata: {
            kind: 'fcmae-pretrain', epoch: String(epoch), step: String(engine.step), optimizer_step: String(opt.step),
            seed: String(seed), ranks: String(R), input_size: String(S), args: JSON.stringify(Object.fromEntries(args.flags)),
          },
        });
        return true;
      },
      onEpoch: (epoch, _r, rec, saved) => {
        if (saved) interrupt.saved = epoch;
        ctx.out(`epoch ${epoch}: loss ${rec.loss.toFixed(4)}, lr ${rec.lr.toExponential(3)}, ${rec.images_per_second.toFixed(1)} images/s -> ${pngOf(epoch)}${skippedNote(train)}`);
      },
      close: async () => {
        interrupt.dispose();
        await loader.close();
      },
    });
    ctx.out(`run folder: ${out}`);
    return { out, epochs: records };
  },
};

/** What a pre-training run computes, resolved from its flags: the one place `run` reads them
 * (test/recipe.test.ts pins it against the official main_pretrain.py). */
export interface PretrainSettings extends RunSettings {
  fcmae: Omit<FcmaeOptions, 'patchSize'> & { patchSize: 32 };
  mode: EncoderMode;
  weightDecay: number;
  /** AdamW as main_pretrain.py builds it: betas (0.9, 0.95), torch's eps. */
  optimizer: { betas: [number, number]; eps: number };
  /** RandomResizedCrop(scale 0.2-1, bicubic) + horizontal flip + ImageNet normalisation; its size is inputSize. */
  transform: Omit<TrainTransformSpec, 'size'>;
}

export function pretrainSettings(args: ParsedArgs): PretrainSettings {
  const grnStats = args.requireString('grn-stats');
  if (grnStats !== 'batch' && grnStats !== 'per-sample') throw new ConvNextError(`pretrain: --grn-stats must be batch or per-sample, got '${grnStats}'`, 2);
  const initStyle = args.requireString('fcmae-init');
  if (initStyle !== 'official' && initStyle !== 'timm') throw new ConvNextError(`pretrain: --fcmae-init must be official or timm, got '${initStyle}'`, 2);
  const s: PretrainSettings = {
    ...runSettings('pretrain', args.flags),
    fcmae: {
      patchSize: 32,
      maskRatio: args.requireNumber('mask-ratio'),
      normPixLoss: args.bool('norm-pix-loss'),
      decoderDepth: args.requireNumber('decoder-depth'),
      decoderDim: args.requireNumber('decoder-embed-dim'),
      grnStats,
      initStyle,
    },
    mode: args.bool('dense-masking') ? 'dense' : 'sparse',
    weightDecay: args.requireNumber('weight-decay'),
    optimizer: { betas: [0.9, 0.95], eps: 1e-8 },
    transform: { kind: 'train', scale: [0.2, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic', hflip: 0.5 },
  };
  const S = s.inputSize;
  if (S % 32 !== 0 || S < 32) throw new ConvNextError(`pretrain: --input-size ${S} must be a positive multiple of 32`, 2);
  const { maskRatio, decoderDim, decoderDepth } = s.fcmae;
  const L = (S / 32) ** 2;
  if (!(maskRatio >= 0 && maskRatio < 1) || Math.floor(L * (1 - maskRatio)) < 1) {
    throw new ConvNextError(`pretrain: --mask-ratio ${maskRatio}: must be in [0, 1) and leave at least one of the ${L} patches of ${S} px visible`, 2);
  }
  if (!(decoderDim >= 1)) throw new ConvNextError(`pretrain: --decoder-embed-dim ${decoderDim}: must be a positive integer`, 2);
  if (!(decoderDepth >= 0)) throw new ConvNextError(`pretrain: --decoder-depth ${decoderDepth}: must not be negative`, 2);
  return s;
}

/** A few fixed images for the reconstruction PNG: the validation part if any, else training. */
async function visBatch(spec: string, seed: number, S: number, n: number, train: Dataset): Promise<Tensor> {
  let ds: Dataset = train;
  try {
    ds = openDataset(spec, 'val', { seed, limit: n, warn: () => undefined });
  } catch {
    ds = train;
  }
  const count = Math.min(n, ds.length);
  const loader = new DataLoader(ds, { batchSize: count, transform: { kind: 'eval', size: S }, workers: 0, seed });
  try {
    for await (const b of loader.epoch(0)) return b.pixels;
  } finally {
    await loader.close();
  }
  throw new ConvNextError(`pretrain: no images for the reconstruction picture in ${spec}`);
}
