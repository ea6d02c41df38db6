/**
 * `convnextv2 finetune`: supervised fine-tuning with the official recipe (main_finetune.py):
 * AdamW with layer-wise lr decay, lr = blr * effective batch / 256, warmup then half-cycle
 * cosine per optimizer step, label smoothing or mixup/cutmix soft targets, RandAugment,
 * random erasing, drop path, head init scale, model EMA, gradient clipping and accumulation.
 * `--init` takes an FCMAE checkpoint (encoder mapped, decoder dropped, head initialised) or a
 * classifier (head kept when the classes match). `--recipe SIZE` applies the paper's
 * per-size settings (TRAINING.md); explicit flags override it.
 *
 * Every epoch: a line in DIR/log.jsonl (epoch, loss, lr, val_top1, val_top5, val_loss and the
 * EMA's), DIR/checkpoint-last.safetensors (weights, AdamW moments, EMA, step), and
 * DIR/checkpoint-best.safetensors (weights and EMA) when validation top-1 improves; `--resume` continues
 * bit-identically (data, augmentation, mixup and drop path are functions of seed, epoch, step)
 * with the arguments recorded in the checkpoint (flags given again may change only --epochs,
 * --data, --val-limit and how the run is driven: --workers, --threads, --stop-after).
 */

/** Flags a resumed fine-tuning run may change (reported as changed). */
const MUTABLE_ON_RESUME = new Set(['epochs', 'data', 'val-limit']);
import { join } from 'node:path';
import { ConvNextError } from '../errors.js';
import { openDataset, type Dataset } from '../data/dataset.js';
import { DataLoader } from '../data/loader.js';
import { Mixup, type MixupOptions } from '../data/mixup.js';
import type { TrainTransformSpec } from '../data/transforms.js';
import { loadCheckpoint, saveCheckpoint } from '../io/checkpoint_file.js';
import type { TensorData } from '../io/safetensors.js';
import { MODEL_SIZES, modelFromFlags, type ConvNeXtV2Config } from '../model/config.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import { AdamW } from '../train/adamw.js';
import { ModelEma } from '../train/ema.js';
import { FinetuneEngine, type FinetuneEpoch } from '../train/finetune_engine.js';
import { runTraining } from '../train/run.js';
import { loadOptimizerTensors } from '../train/optimizer_state.js';
import { finetuneParamGroups, type FinetuneGroupOptions } from '../train/param_groups.js';
import { scaledLr } from '../train/schedule.js';
import { ParsedArgs, type FlagValue } from './args.js';
import type { Command } from './command.js';
import { evaluate } from './evaluate.js';
import { jobComm } from '../parallel/mpi.js';
import { checkResumedGlobalBatch, completeNote, DATA_FLAG, flagReader, Interruption, mutableOnResume, nodeRunFolder, skippedNote, STRICT_DATA_FLAG, resumeArgs, runCliEpoch, runFolderArgs, runSettings, warmupNote, type RunSettings } from './runlog.js';

/** The paper's fine-tuning settings (TRAINING.md documents atto, tiny and base; femto, pico and
 * nano use atto's, large and huge use base's). */
export const RECIPES: Record<string, Record<string, string | number | boolean>> = {
  atto: { blr: 2e-4, epochs: 600, 'warmup-epochs': 0, 'layer-decay-type': 'single', 'layer-decay': 0.9, 'weight-decay': 0.3, 'drop-path': 0.1, reprob: 0.25, mixup: 0, cutmix: 0, smoothing: 0.2, 'model-ema': true, 'model-ema-eval': true },
  tiny: { blr: 8e-4, epochs: 300, 'warmup-epochs': 40, 'layer-decay-type': 'single', 'layer-decay': 0.9, 'weight-decay': 0.05, 'drop-path': 0.2, reprob: 0.25, mixup: 0.8, cutmix: 1.0, smoothing: 0.1, 'model-ema': true, 'model-ema-eval': true },
  base: { blr: 6.25e-4, epochs: 100, 'warmup-epochs': 20, 'layer-decay-type': 'group', 'layer-decay': 0.6, 'weight-decay': 0.05, 'drop-path': 0.1, reprob: 0.25, mixup: 0.8, cutmix: 1.0, smoothing: 0.1, 'model-ema': true, 'model-ema-eval': true },
};
for (const s of ['femto', 'pico', 'nano']) RECIPES[s] = RECIPES.atto;
for (const s of ['large', 'huge']) RECIPES[s] = RECIPES.base;

export const finetune: Command = {
  name: 'finetune',
  summary: 'supervised fine-tuning with the paper recipe (from FCMAE, a classifier, or scratch)',
  usage: 'convnextv2 finetune --model atto --data SPEC [--init CKPT] --epochs E --out DIR [--recipe SIZE] [--resume [FILE]]',
  examples: [
    'convnextv2 finetune --model atto --data flowers/ --epochs 30 --out runs/flowers',
    'convnextv2 finetune --init timm/convnextv2_atto.fcmae --data flowers/ --recipe atto --epochs 50 --out runs/flowers',
    'convnextv2 finetune --resume --out runs/flowers',
  ],
  flags: {
    model: { kind: 'string', help: 'model size (atto ... huge); --init decides when given', default: 'atto' },
    depths: { kind: 'string', help: 'custom blocks per stage, e.g. 2,2,6,2 (with --dims)' },
    dims: { kind: 'string', help: 'custom channels per stage, e.g. 40,80,160,320 (with --depths)' },
    block: { kind: 'string', help: 'v2 (GRN) or v1 (ConvNeXt V1: LayerScale, no GRN); --init decides when given', default: 'v2' },
    data: DATA_FLAG,
    init: { kind: 'string', help: 'initial weights: FCMAE or classifier checkpoint (file or run folder)' },
    recipe: { kind: 'string', help: "the paper's settings for a size (atto ... huge); flags override" },
    epochs: { kind: 'int', help: 'epochs', default: 100 },
    'batch-size': { kind: 'int', help: 'images per step', default: 64 },
    'update-freq': { kind: 'int', help: 'gradient accumulation steps', default: 1 },
    'input-size': { kind: 'int', help: 'image size', default: 224 },
    blr: { kind: 'number', help: 'base lr: lr = blr * batch * update-freq / 256', default: 5e-4 },
    lr: { kind: 'number', help: 'absolute lr (overrides --blr)' },
    'min-lr': { kind: 'number', help: 'final lr of the cosine', default: 1e-6 },
    'warmup-epochs': { kind: 'number', help: 'linear warmup epochs', default: 20 },
    'warmup-steps': { kind: 'int', help: 'linear warmup steps (overrides --warmup-epochs)', default: -1 },
    'opt-eps': { kind: 'number', help: 'AdamW epsilon', default: 1e-8 },
    'opt-betas': { kind: 'string', help: 'AdamW betas "b1,b2"', default: '0.9,0.999' },
    'weight-decay': { kind: 'number', help: 'weight decay (none on 1-D tensors, biases, GRN gamma/beta)', default: 0.05 },
    'layer-decay': { kind: 'number', help: 'layer-wise lr decay (1: none)', default: 1.0 },
    'layer-decay-type': { kind: 'string', help: 'single (per block) or group (12 groups)', default: 'single' },
    smoothing: { kind: 'number', help: 'label smoothing', default: 0.1 },
    mixup: { kind: 'number', help: 'mixup alpha (0: off)', default: 0 },
    cutmix: { kind: 'number', help: 'cutmix alpha (0: off)', default: 0 },
    'mixup-prob': { kind: 'number', help: 'probability of mixup or cutmix per batch', default: 1 },
    'mixup-switch-prob': { kind: 'number', help: 'probability of cutmix when both are on', default: 0.5 },
    'mixup-mode': { kind: 'string', help: 'batch (per batch)', default: 'batch' },
    aa: { kind: 'string', help: "RandAugment policy ('' or none to disable)", default: 'rand-m9-mstd0.5-inc1' },
    reprob: { kind: 'number', help: 'random erasing probability', default: 0.25 },
    'drop-path': { kind: 'number', help: 'stochastic depth rate', default: 0 },
    'head-init-scale': { kind: 'number', help: 'scale of the initial head weights', default: 0.001 },
    'model-ema': { kind: 'boolean', help: 'keep an EMA of the weights' },
    'model-ema-decay': { kind: 'number', help: 'EMA decay', default: 0.9999 },
    'model-ema-eval': { kind: 'boolean', help: 'also evaluate the EMA every epoch' },
    'clip-grad': { kind: 'number', help: 'clip the total gradient norm' },
    'val-split': { kind: 'number', help: 'fraction of train carved out for validation when the data has no val part' },
    'val-limit': { kind: 'int', help: 'evaluate each epoch on the first N validation images' },
    'crop-pct': { kind: 'number', help: 'evaluation centre-crop fraction', default: 0.875 },
    seed: { kind: 'int', help: 'seed of the initialisation, data order, augmentation, mixup, drop path', default: 0 },
    limit: { kind: 'int', help: 'use N training images: a seeded, class-stratified subset' },
    out: { kind: 'string', help: 'run folder (refused when it holds a run, unless --resume or --overwrite)' },
    resume: { kind: 'string', help: 'continue from DIR/checkpoint-last.safetensors or FILE, with the arguments the run was started with', implicit: 'auto' },
    overwrite: { kind: 'boolean', help: 'start over in a run folder that holds a run (its checkpoints, log and PNGs are removed)' },
    workers: { kind: 'int', help: 'data loading worker threads' },
    'strict-data': STRICT_DATA_FLAG,
    'stop-after': { kind: 'int', help: 'stop after this epoch (as if interrupted)' },
    'mpi-timeout': { kind: 'number', help: 'under mpirun / srun: seconds a collective may wait before the job is aborted (a dead or hung rank)', default: 300 },
  },
  async run(given, ctx) {
    // Data-parallel under mpirun / srun (connected by main): rank 0 alone writes.
    const comm = jobComm();
    const R = comm.size;
    const lead = comm.rank === 0;
    // The run folder and what to resume first: a resumed run's recorded arguments are the defaults.
    const { out, overwrite, resumeFile } = runFolderArgs('finetune', given);
    const resumed = resumeFile ? loadCheckpoint(resumeFile, { extra: true }) : null;
    if (resumed && (resumed.fcmae || resumed.backbone || resumed.metadata.kind === 'fcmae-pretrain')) {
      throw new ConvNextError(`finetune: ${resumeFile} is a pre-training checkpoint, not a fine-tuning run: start from it with --init ${resumeFile} (--resume continues a fine-tuning run)`, 2);
    }
    const { args: runArgs, changed } = resumed ? resumeArgs('finetune', given, resumed.metadata.args, resumeFile!, mutableOnResume(MUTABLE_ON_RESUME, resumed.metadata, R)) : { args: given, changed: [] };
    // --init's recorded input size (a pre-training run's, a classifier's) is the default one.
    const initPath = runArgs.string('init');
    const init = !resumed && initPath ? loadCheckpoint(initPath) : null;
    const initSize = init && !runArgs.explicit.has('input-size') ? init.preprocessing?.inputSize ?? init.fcmae?.inputSize : undefined;
    const args = initSize === undefined ? runArgs
      : new ParsedArgs(new Map([...runArgs.flags, ['input-size', initSize]]), runArgs.positionals, new Set([...runArgs.explicit, 'input-size']), runArgs.command);
    const st = finetuneSettings(args);
    const { epochs: E, batchSize: B, updateFreq, inputSize: S, seed } = st;
    if (resumed) checkResumedGlobalBatch('finetune', resumeFile!, resumed.metadata, B, R, updateFreq);
    const valSplit = args.number('val-split');
    if (valSplit !== undefined && !(valSplit >= 0 && valSplit < 1)) throw new ConvNextError(`finetune: --val-split ${valSplit}: must be in [0, 1)`, 2);
    const limit = args.number('limit');
    if (limit !== undefined && !(limit >= 1)) throw new ConvNextError(`finetune: --limit ${limit}: must be a positive integer`, 2);
    const valLimit = args.number('val-limit');
    if (valLimit !== undefined && !(valLimit >= 1)) throw new ConvNextError(`finetune: --val-limit ${valLimit}: must be a positive integer`, 2);
    const spec = st.data;
    const train = openDataset(spec, 'train', { limit, seed, valSplit });
    const val = openValidation(spec, seed, valSplit, valLimit);
    const K = train.classes.length;

    // Model: from --resume, --init, or scratch.
    const block = st.block;
    const base: ConvNeXtV2Config = resumed?.config ?? (init ? { ...init.config } : modelFromFlags(st.model, args.string('depths'), args.string('dims'), { block }));
    if (args.explicit.has('block') && base.block !== block) {
      throw new ConvNextError(`finetune: --block ${block} but ${resumed ? resumeFile : initPath} holds ${base.block} blocks`, 2);
    }
    const cfg: ConvNeXtV2Config = { ...base, numClasses: K, dropPathRate: st.dropPath, headInitScale: st.headInitScale };
    // A resumed run is built from its checkpoint (no random initialisation first); drop path's
    // random source depends on the seed alone.
    const model = new ConvNeXtV2(cfg, { seed, kernels: await ctx.backend(), ...(resumed ? { state: resumed.state, stateSource: resumeFile! } : {}) });
    // A resumed run's weights are its checkpoint's; the recorded --init says where the run began.
    let initNote = resumed ? `continuing its run${initPath ? ` (started from ${initPath})` : ''}` : 'from scratch';
    if (init) {
      const state = new Map(init.state);
      const headMatches = init.config.numClasses === K && !init.backbone;
      for (const p of model.params) {
        if (p.name.startsWith('head.fc.') && !headMatches) continue;
        if (init.initialised.includes(p.name)) continue;
        const t = state.get(p.name);
        if (!t) continue;
        if (t.data.length !== p.size) throw new ConvNextError(`finetune: --init ${initPath}: tensor ${p.name} does not fit the model`);
        p.write(model.kernels, t.data);
      }
      initNote = `from ${init.format} checkpoint ${init.file}${headMatches ? '' : ' (head re-initialised)'}${initSize !== undefined ? `, at its input size ${initSize} px (--input-size to change)` : ''}`;
    }

    // Optimizer groups: (layer, decay) with the layer-wise lr scale.
    const opt = new AdamW(finetuneParamGroups(model.params, cfg.depths, st.groups), st.optimizer);
    const ema = st.ema ? new ModelEma(model.params, st.ema.decay, model.kernels) : null;
    let startEpoch = 0;
    let step = 0;
    let bestSoFar = -1;
    if (resumed) {
      const extra = resumed.extra ?? new Map<string, TensorData>();
      startEpoch = Number(resumed.metadata.epoch);
      step = Number(resumed.metadata.step);
      bestSoFar = Number(resumed.metadata.best_top1 ?? -1);
      loadOptimizerTensors(model.kernels, opt, extra, Number(resumed.metadata.optimizer_step ?? step), resumeFile!);
      if (ema) {
        for (const p of model.params) {
          const t = extra.get(`ema.${p.name}`);
          if (!t) throw new ConvNextError(`finetune: ${resumeFile} has no EMA weights (ema.${p.name})`);
          model.kernels.write(ema.shadow.get(p.name)!, t.data);
        }
      }
    }

    const loader = new DataLoader(train, {
      batchSize: B, shuffle: true, seed, dropLast: true, transform: { ...st.transform, size: S },
      workers: args.number('workers') ?? 'auto', strict: args.bool('strict-data'),
    });
    // Per rank: every R-th batch (R > 1: the epoch's last batches short of a whole round are left out).
    const stepsPerEpoch = Math.floor(loader.length / R);
    if (stepsPerEpoch < 1) throw new ConvNextError(`finetune: ${train.length} training images make no batch of ${B}${R > 1 ? ` for each of ${R} ranks` : ''}`);
    const updatesPerEpoch = Math.floor(stepsPerEpoch / updateFreq);
    // The official rule on the global batch: batch x ranks x update-freq.
    const lr = st.lr ?? scaledLr(st.blr, B * R, updateFreq);
    // --warmup-steps (optimizer steps) as the fraction of epochs it covers.
    const warmupEpochs = st.warmupSteps > 0 ? st.warmupSteps / Math.max(1, updatesPerEpoch) : st.warmupEpochs;
    const schedule = { lr, minLr: st.minLr, warmupEpochs, epochs: E };
    const warmNote = warmupNote('finetune', warmupEpochs, E, lr);
    const mixup = st.mixup ? new Mixup({ ...st.mixup, numClasses: K }) : null;
    const cropPct = st.cropPct;
    const interrupt = new Interruption('finetune', out);
    interrupt.saved = startEpoch;
    const engine = new FinetuneEngine({
      model, opt, ema, batches: loader, schedule, seed, updateFreq, smoothing: st.smoothing, mixup, clipGrad: st.clipGrad,
      emaEval: st.ema?.eval ?? false, resume: { step, best: bestSoFar }, comm,
      evaluate: (m) => evaluate(m, val, { size: S, cropPct, batchSize: Math.max(B, 32), comm, strict: args.bool('strict-data') }),
    });
    const records = await runTraining<FinetuneEpoch>({
      epochs: E, startEpoch, resuming: resumed !== null, stopAfter: args.number('stop-after'), lead, folder: nodeRunFolder(out, overwrite, 'finetune'),
      ready: () => {
        comm.barrier();
        if (changed.length) ctx.out(`finetune: resuming ${resumeFile} with ${changed.join(', ')}`);
        if (warmNote && !resumed) ctx.out(warmNote);
        ctx.out(`finetune: ConvNeXt ${cfg.block === 'v1' ? 'V1 blocks' : 'V2'} ${cfg.depths}/${cfg.dims}, ${K} classes, ${initNote}; ${train.source}; ` +
          `${stepsPerEpoch} steps/epoch of ${B}${R > 1 ? ` on each of ${R} ranks (${comm.description}; global batch ${B * R * updateFreq})` : ''}, lr ${lr.toExponential(3)}, layer decay ${st.groups.layerDecay} (${st.groups.layerDecayType}), ` +
          `${st.mixup ? `mixup ${st.mixup.mixupAlpha} cutmix ${st.mixup.cutmixAlpha}` : `smoothing ${st.smoothing}`}, ` +
          `drop path ${cfg.dropPathRate}${ema ? `, EMA ${ema.decay}` : ''}${resumed ? `, resumed after epoch ${startEpoch} of ${E} (its checkpoint)` : ''}`);
        if (resumed && startEpoch >= E) ctx.out(completeNote('finetune', resumeFile!, startEpoch, E));
      },
      runEpoch: (epoch) => runCliEpoch(engine, epoch, E, stepsPerEpoch * R, interrupt),
      record: (epoch, r) => {
        const rec: Record<string, number> = {
          epoch, loss: r.loss, lr: r.lr, val_top1: r.val.top1, val_top5: r.val.top5, val_loss: r.val.loss,
          images_per_second: r.images / r.seconds, seconds: r.seconds, grad_sum_seconds: r.gradSumSeconds, ranks: R, peak_lr: lr, min_lr: st.minLr, warmup_epochs: warmupEpochs, epochs: E,
        };
        if (r.ema) {
          rec.ema_top1 = r.ema.top1;
          rec.ema_top5 = r.ema.top5;
          rec.ema_loss = r.ema.loss;
        }
        return rec;
      },
      // The EMA weights go into both checkpoints (as the official checkpoint-best holds model_ema), so `eval RUN --ema` finds them.
      save: async (epoch, r) => {
        const meta = {
          kind: 'finetune', epoch: String(epoch), step: String(engine.step), optimizer_step: String(opt.step), best_top1: String(engine.best),
          seed: String(seed), ranks: String(R), crop_pct: String(cropPct), input_size: String(S), args: JSON.stringify(Object.fromEntries(st.flags)),
        };
        const state = await model.stateDict();
        saveCheckpoint(join(out, 'checkpoint-last.safetensors'), { config: cfg, state, extra: await engine.checkpointExtra(), labels: train.classes, metadata: meta });
        if (r.improved) saveCheckpoint(join(out, 'checkpoint-best.safetensors'), { config: cfg, state, extra: await engine.emaTensors(), labels: train.classes, metadata: meta });
        return true;
      },
      onEpoch: (epoch, r, rec, saved) => {
        if (saved) interrupt.saved = epoch;
        ctx.out(`epoch ${epoch}: loss ${rec.loss.toFixed(4)}, val top-1 ${r.val.top1.toFixed(2)}% top-5 ${r.val.top5.toFixed(2)}% loss ${r.val.loss.toFixed(4)}` +
          `${rec.ema_top1 !== undefined ? `, EMA top-1 ${rec.ema_top1.toFixed(2)}%` : ''}${r.improved ? ' (best)' : ''}${skippedNote(train, val)}`);
      },
      close: async () => {
        interrupt.dispose();
        await loader.close();
      },
    });
    const best = engine.best;
    ctx.out(`run folder: ${out} (best val top-1 ${best.toFixed(2)}%)`);
    return { out, best_top1: best, epochs: records };
  },
};

/** The validation part of a data set: its own val/test part, or a carved-out fraction. */
export function openValidation(spec: string, seed: number, valSplit?: number, limit?: number): Dataset {
  try {
    return openDataset(spec, 'val', { seed, valSplit, limit });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // The hint once (the data set's own message may give it already), and the exit code kept (2 for a usage error).
    if (valSplit !== undefined || msg.includes('--val-split')) throw e;
    throw new ConvNextError(`${msg} (give --val-split F to carve a validation part out of train)`, e instanceof ConvNextError ? e.exitCode : 1);
  }
}

/** What a fine-tuning run computes, resolved from its flags with `--recipe SIZE` applied under the
 * explicit ones: the one place `run` reads them (test/recipe.test.ts pins it against the
 * official main_finetune.py). */
export interface FinetuneSettings extends RunSettings {
  /** The flag values the run records in its checkpoints (--resume takes them back). */
  flags: Map<string, FlagValue>;
  dropPath: number;
  headInitScale: number;
  /** Optimizer steps of warm-up (overrides warmupEpochs when > 0). */
  warmupSteps: number;
  optimizer: { betas: [number, number]; eps: number };
  groups: FinetuneGroupOptions;
  /** Label smoothing (folded into the soft targets when mixup is on). */
  smoothing: number;
  /** Mixup / CutMix (timm's Mixup), or null when both alphas are 0. */
  mixup: Omit<MixupOptions, 'numClasses'> | null;
  /** The training transform (its size is inputSize). */
  transform: Omit<TrainTransformSpec, 'size'>;
  /** The evaluation centre-crop fraction. */
  cropPct: number;
  ema: { decay: number; eval: boolean } | null;
  clipGrad?: number;
}

export function finetuneSettings(args: ParsedArgs): FinetuneSettings {
  const name = args.string('recipe');
  const recipe = name === undefined ? {} : RECIPES[name];
  if (!recipe) throw new ConvNextError(`finetune: unknown --recipe '${name}' (one of ${Object.keys(MODEL_SIZES).join(', ')})`, 2);
  const flags = new Map<string, FlagValue>(args.flags);
  for (const [k, v] of Object.entries(recipe)) if (!args.explicit.has(k)) flags.set(k, v);
  const { str, num, opt } = flagReader('finetune', flags);
  const layerDecayType = str('layer-decay-type');
  if (layerDecayType !== 'single' && layerDecayType !== 'group') throw new ConvNextError('finetune: --layer-decay-type must be single or group', 2);
  if (str('mixup-mode') !== 'batch') throw new ConvNextError(`finetune: --mixup-mode ${str('mixup-mode')} is not supported (batch only)`, 2);
  const betas = str('opt-betas').split(/[ ,]+/).map(Number);
  if (betas.length !== 2 || betas.some((b) => !(b >= 0 && b < 1))) throw new ConvNextError('finetune: --opt-betas needs two numbers in [0, 1), e.g. 0.9,0.999', 2);
  const dropPath = num('drop-path');
  if (!(dropPath >= 0 && dropPath < 1)) throw new ConvNextError(`finetune: --drop-path ${dropPath}: must be in [0, 1)`, 2);
  const emaDecay = num('model-ema-decay');
  if (!(emaDecay >= 0 && emaDecay < 1)) throw new ConvNextError(`finetune: --model-ema-decay ${emaDecay}: must be in [0, 1)`, 2);
  const aa = String(flags.get('aa') ?? '');
  return {
    ...runSettings('finetune', flags),
    flags,
    dropPath,
    headInitScale: num('head-init-scale'),
    warmupSteps: num('warmup-steps'),
    optimizer: { betas: [betas[0], betas[1]], eps: num('opt-eps') },
    groups: { weightDecay: num('weight-decay'), layerDecay: num('layer-decay'), layerDecayType },
    smoothing: num('smoothing'),
    mixup: num('mixup') > 0 || num('cutmix') > 0
      ? { mixupAlpha: num('mixup'), cutmixAlpha: num('cutmix'), prob: num('mixup-prob'), switchProb: num('mixup-switch-prob'), mode: 'batch', labelSmoothing: num('smoothing') }
      : null,
    // timm's create_transform for training (main_finetune.py / datasets.py build_transform).
    transform: {
      kind: 'train', scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic', hflip: 0.5,
      autoAugment: aa === 'none' ? '' : aa, reprob: num('reprob'), remode: 'pixel', recount: 1,
    },
    cropPct: num('crop-pct'),
    ema: flags.get('model-ema') === true ? { decay: emaDecay, eval: flags.get('model-ema-eval') === true } : null,
    clipGrad: opt('clip-grad'),
  };
}
