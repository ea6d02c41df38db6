/**
 * The app's Worker: it holds the opened checkpoint's model (and its FCMAE, when the file has a
 * decoder) and does all the work, so the page never blocks: reading checkpoints, decoding
 * images (createImageBitmap + OffscreenCanvas), classification, FCMAE reconstructions and
 * fine-tuning (the library's FinetuneEngine over an ImageBatches source). It computes on the CPU
 * (the WebAssembly kernels) or, when chosen, the GPU (WebGPU): every model use goes through the
 * device-safe API (forward, stateDict, kernels.write), so the same code runs on both, and
 * a device switch moves the open model's weights to a model on the new backend. One task at a
 * time; `cancel` stops a fine-tuning run at the next batch. Every failure comes back as a one-line
 * `error` message, never as an uncaught exception.
 */
import * as lib from '../src/web.js';
import type { AdamW, ConvNeXtV2, EvalSummary, FCMAE, FinetuneEngine, Image, Kernels, LoadedCheckpoint, ParamGroup, TransformSpec } from '../src/web.js';
import { createGpuKernels, createKernels, noWebGpu, type AppKernels } from './kernels.js';
import {
  BACKBONE_LR_SCALE, heldOutCounts, settingProblems,
  type CheckpointSummary, type Classified, type Device, type DeviceInfo, type EpochDone, type FinetuneSettings, type FromWorker, type Kind, type Requests,
  type Results, type Skipped, type StepProgress, type ToWorker,
} from './protocol.js';

const scope = self as unknown as DedicatedWorkerGlobalScope;
const { ConvNextError } = lib;

function post(msg: FromWorker, transfer: Transferable[] = []): void {
  scope.postMessage(msg, transfer);
}

function deviceInfo(k: AppKernels): DeviceInfo {
  return { device: k.device, kernels: k.label, adapter: k.adapter, software: k.software };
}

/** The backend every model is made on now: the CPU's until the page chooses the GPU. */
let active: AppKernels | null = null;

/** The CPU backend, made once and kept (the GPU's comes and goes with the device choice). */
const cpuReady: Promise<AppKernels> = createKernels(new URL('../wasm/', import.meta.url)).then((k) => {
  active = k;
  post({ type: 'ready', info: deviceInfo(k), fallback: k.fallback, noGpu: noWebGpu() });
  return k;
});

async function kernelsNow(): Promise<Kernels> {
  await cpuReady;
  return active!.kernels;
}

/** What is open: the model the page classifies with, and what it was made from. */
interface Current {
  summary: CheckpointSummary;
  model: ConvNeXtV2;
  fcmae: FCMAE | null;
  /** Names shown for the head's classes (`class N` when there are none). */
  names: string[];
  /** The class names to save with the weights (the checkpoint's own, or the fine-tuning classes). */
  labels: string[] | undefined;
  /** Parameters the file lacked (set to initial values): not carried into fine-tuning. */
  initialised: string[];
  inputSize: number;
  cropPct: number;
  /** `epochs` completed and `steps` taken (fewer than the settings' for a cancelled run). */
  fineTuned: { from: string; settings: FinetuneSettings; epochs: number; steps: number } | null;
}

let current: Current | null = null;
let busy = false;
let cancelRequested = false;

/** Gives models' and optimizers' arrays back to the kernels' memory (the wasm module's: not garbage-collected). */
function release(...xs: ({ dispose(): void } | null | undefined)[]): void {
  for (const x of xs) x?.dispose();
}

/** Makes `next` the open model, releasing what the previous one held that `next` does not share. */
function replaceCurrent(next: Current): void {
  const prev = current;
  current = next;
  if (!prev) return;
  if (prev.fcmae && prev.fcmae !== next.fcmae) release(prev.fcmae); // its encoder too
  if (prev.model !== next.model && prev.model !== prev.fcmae?.encoderModel) release(prev.model);
}

function need(): Current {
  if (!current) throw new ConvNextError('open a checkpoint first (Open, at the top)');
  return current;
}

/** A `cancel` honoured: fine-tuning keeps the model as trained when a step was taken. */
class Cancelled extends ConvNextError {
  constructor() {
    super('cancelled: the model is unchanged');
  }
}

/** Yields to the event loop so that a `cancel` message is seen, then honours it. */
async function checkpointForCancel(): Promise<void> {
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
  if (cancelRequested) throw new Cancelled();
}

// ---- open -----------------------------------------------------------------------------------

const CHECKPOINT_LIKE = /\.(safetensors|json|bin|pt|pth)$/i;

async function openCheckpoint(files: File[]): Promise<CheckpointSummary> {
  const kernels = await kernelsNow();
  if (files.length === 0) throw new ConvNextError('no file chosen');
  let ck: LoadedCheckpoint;
  if (files.length === 1) {
    const f = files[0];
    ck = lib.loadCheckpoint({ [f.name]: new Uint8Array(await f.arrayBuffer()) }, { path: f.name, extra: true });
  } else {
    // Several files: a Hugging Face (or timm hub, or run) folder's files, by name.
    const record: Record<string, Uint8Array> = {};
    for (const f of files) if (CHECKPOINT_LIKE.test(f.name)) record[f.name] = new Uint8Array(await f.arrayBuffer());
    if (!lib.CHECKPOINT_FILES.some((n) => n in record)) {
      throw new ConvNextError(`the ${files.length} files chosen hold none of ${lib.CHECKPOINT_FILES.join(', ')}: choose one checkpoint file, or a Hugging Face folder's config.json and model.safetensors`);
    }
    ck = lib.loadCheckpoint(record, { path: '.', extra: true });
  }
  const label = `checkpoint ${ck.file}`;
  // Only the FCMAE decoder of the extras is used (not optimizer moments or EMA weights).
  const decoder = new Map([...(ck.extra ?? [])].filter(([k]) => k.startsWith('fcmae.')));
  let fcmae: FCMAE | null = null;
  let model: ConvNeXtV2 | null = null;
  let normPixAssumed = false;
  try {
    if (ck.fcmae && decoder.size > 0) {
      const info = ck.fcmae;
      normPixAssumed = info.normPixLoss === undefined;
      fcmae = new lib.FCMAE({ ...ck.config, numClasses: 0 }, {
        decoderDim: info.decoderDim, decoderDepth: info.decoderDepth, patchSize: info.patchSize,
        maskRatio: info.maskRatio ?? lib.FCMAE_DEFAULTS.maskRatio, normPixLoss: info.normPixLoss ?? true,
      }, { kernels });
      fcmae.encoderModel.loadStateDict(new Map([...ck.state].filter(([k]) => !k.startsWith('head.fc.'))), label);
      fcmae.loadDecoderState(decoder, label);
    }
    if (fcmae && ck.config.numClasses === 0) {
      model = fcmae.encoderModel; // one copy of the encoder's weights
    } else {
      model = new lib.ConvNeXtV2(ck.config, { kernels });
      model.loadStateDict(ck.state, label);
    }
  } catch (e) {
    release(fcmae, model === fcmae?.encoderModel ? null : model);
    throw e;
  }
  const K = ck.config.numClasses;
  const named = lib.classNames(ck);
  const names = named ? [...named.names] : Array.from({ length: K }, (_, i) => `class ${i}`);
  const pre = ck.preprocessing ?? lib.DEFAULT_PREPROCESSING;
  const notes: string[] = [];
  if (ck.initialised.length > 0) notes.push(`${ck.initialised.join(', ')} not in the file: initial values, as the official fine-tuning starts`);
  if (ck.extraNames.some((n) => n.startsWith('ema.'))) notes.push('the file also holds EMA weights (not used here)');
  if (ck.stateDictKey !== undefined && ck.stateDictKey !== 'model') notes.push(`weights read from the file's '${ck.stateDictKey}' entry`);
  if (K === 0) notes.push('no classifier head: Classify shows embeddings; Fine-tune adds a head');
  const summary: CheckpointSummary = {
    file: ck.file,
    format: formatWords(ck),
    architecture: architectureWords(ck.config, ck.modelName),
    depths: [...ck.config.depths],
    dims: [...ck.config.dims],
    block: ck.config.block,
    params: lib.countParams(ck.config),
    decoderParams: fcmae ? fcmae.decoderParams.reduce((a, p) => a + p.size, 0) : 0,
    numClasses: K,
    classNames: K === 0 ? [] : names,
    classSource: K === 0 ? 'none' : named ? named.source : 'none',
    fcmae: fcmae ? { decoderDim: fcmae.opts.decoderDim, decoderDepth: fcmae.opts.decoderDepth, maskRatio: fcmae.opts.maskRatio, normPixLoss: fcmae.opts.normPixLoss, normPixAssumed } : null,
    inputSize: pre.inputSize,
    cropPct: pre.cropPct,
    preprocessingRecorded: ck.preprocessing !== undefined,
    fineTuned: false,
    notes,
  };
  replaceCurrent({
    summary, model, fcmae, names, labels: named?.source === 'checkpoint' ? [...named.names] : undefined,
    initialised: [...ck.initialised], inputSize: pre.inputSize, cropPct: pre.cropPct, fineTuned: null,
  });
  return summary;
}

function formatWords(ck: LoadedCheckpoint): string {
  const container = ck.container.startsWith('safetensors') ? 'safetensors' : 'torch.save';
  const sharded = ck.container.endsWith('sharded') ? ', sharded' : '';
  switch (ck.format) {
    case 'convnextv2': {
      const kind = ck.metadata.kind === 'fcmae-pretrain' ? ': FCMAE pre-training' : ck.metadata.kind?.startsWith('finetune') ? ': fine-tuned' : '';
      return `convnextv2 checkpoint (safetensors${kind})`;
    }
    case 'fcmae': return `official FCMAE pre-training (${container}${sharded})`;
    case 'timm': return `timm (${container}${sharded})`;
    case 'official': return `official ConvNeXt-V2 (${container}${sharded})`;
    case 'hf': return `Hugging Face transformers (${container}${sharded})`;
  }
}

function architectureWords(cfg: { block: 'v1' | 'v2' }, modelName: string | undefined): string {
  const family = cfg.block === 'v1' ? 'ConvNeXt V1' : 'ConvNeXt V2';
  return modelName ? `${family}-${modelName[0].toUpperCase()}${modelName.slice(1)}` : `${family} (custom)`;
}

// ---- images ---------------------------------------------------------------------------------

/**
 * Decodes `files` (labelled `label`) into `images`, the unreadable ones into `skipped` (named
 * `prefix` + file name); progress counts from `done` of `total`.
 */
async function decodeInto(id: number, files: File[], images: Image[], skipped: Skipped[], label = -1, prefix = '', done = 0, total = files.length): Promise<void> {
  for (const [i, f] of files.entries()) {
    post({ type: 'progress', id, stage: 'decoding', done: done + i, total });
    try {
      images.push(await lib.decodeImageBlob(f, label, f.name));
    } catch (e) {
      if (!(e instanceof ConvNextError)) throw e;
      skipped.push({ name: prefix + f.name, reason: e.message.replace(/^cannot decode image .*?: /, '') });
    }
  }
}

async function decodeAll(id: number, files: File[]): Promise<{ images: Image[]; skipped: Skipped[] }> {
  const images: Image[] = [];
  const skipped: Skipped[] = [];
  await decodeInto(id, files, images, skipped);
  return { images, skipped };
}

function noneReadable(n: number, skipped: Skipped[]): Error {
  return new ConvNextError(n === 1
    ? `cannot decode image ${skipped[0].name}: ${skipped[0].reason}`
    : `none of the ${n} files is a readable image (${skipped[0].name}: ${skipped[0].reason})`);
}

/** The evaluation transform of `convnextv2 predict` (evalTransform at the checkpoint's size and crop) into one batch. */
function evalBatch(images: readonly Image[], S: number, cropPct: number): { shape: number[]; data: Float32Array } {
  const data = new Float32Array(images.length * 3 * S * S);
  images.forEach((img, i) => lib.evalTransform(img, S, cropPct, data, i * 3 * S * S));
  return { shape: [images.length, 3, S, S], data };
}

const CHUNK = 8;

async function classify(id: number, files: File[], topK: number): Promise<Results['classify']> {
  const cur = need();
  const t0 = performance.now();
  const { images, skipped } = await decodeAll(id, files);
  if (images.length === 0) throw noneReadable(files.length, skipped);
  const S = cur.inputSize;
  const K = cur.model.config.numClasses;
  const C = cur.model.config.dims[3];
  const items: Classified[] = [];
  for (let s = 0; s < images.length; s += CHUNK) {
    post({ type: 'progress', id, stage: 'classifying', done: s, total: images.length });
    await new Promise<void>((resolve) => setTimeout(resolve, 0)); // let the progress message go out
    const part = images.slice(s, s + CHUNK);
    const r = await cur.model.forward(evalBatch(part, S, cur.cropPct));
    part.forEach((img, i) => {
      const embedding = r.preLogits.data.slice(i * C, (i + 1) * C);
      let sq = 0;
      for (const v of embedding) sq += v * v;
      // Softmax and ranking as `convnextv2 predict` computes them.
      const top: Classified['top'] = r.logits && K > 0 ? lib.topClasses(r.logits.data.subarray(i * K, (i + 1) * K), cur.names, topK) : [];
      items.push({ name: img.path ?? `image ${s + i + 1}`, width: img.width, height: img.height, top, embedding, norm: Math.sqrt(sq) });
    });
  }
  return { items, skipped, inputSize: S, cropPct: cur.cropPct, seconds: (performance.now() - t0) / 1000 };
}

// ---- FCMAE reconstructions ------------------------------------------------------------------

const MAX_RECONSTRUCT = 8;

async function reconstruct(id: number, files: File[], size: number, seed: number): Promise<Results['reconstruct']> {
  const cur = need();
  const fcmae = cur.fcmae;
  if (!fcmae) throw new ConvNextError(`${cur.summary.file} has no FCMAE decoder: open an FCMAE pre-training checkpoint (convnextv2 pretrain's, or an official *_fcmae.pt)`);
  if (!(Number.isInteger(size) && size >= 32 && size <= 1024 && size % 32 === 0)) throw new ConvNextError(`image size ${size}: must be a multiple of 32 from 32 to 1024`);
  const { images, skipped } = await decodeAll(id, files.slice(0, MAX_RECONSTRUCT));
  if (images.length === 0) throw noneReadable(Math.min(files.length, MAX_RECONSTRUCT), skipped);
  post({ type: 'progress', id, stage: 'reconstructing', done: 0, total: 1 });
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
  // The evaluation transform at the default crop, as pretrain's reconstruction images.
  const batch = evalBatch(images, size, lib.DEFAULT_PREPROCESSING.cropPct);
  const r = await lib.reconstructImages(fcmae, batch, seed);
  const png = lib.reconstructionPng(r.images, `${cur.summary.file}: original | masked | reconstruction`);
  return {
    items: r.images.map((x, i) => ({ name: images[i].path ?? `image ${i + 1}`, original: rgb(x.original), masked: rgb(x.masked), reconstruction: rgb(x.reconstruction) })),
    skipped: files.length > MAX_RECONSTRUCT ? [...skipped, { name: `${files.length - MAX_RECONSTRUCT} more`, reason: `only the first ${MAX_RECONSTRUCT} images are reconstructed` }] : skipped,
    png, size, maskRatio: fcmae.opts.maskRatio, loss: r.loss,
  };
}

function rgb(img: Image): { width: number; height: number; data: Uint8Array } {
  return { width: img.width, height: img.height, data: img.data };
}

// ---- fine-tuning ----------------------------------------------------------------------------

/** Refuses settings the page should not have sent (its fields show the same problems). */
function checkSettings(s: FinetuneSettings, trainImages: number): void {
  const problem = Object.values(settingProblems(s, trainImages))[0];
  if (problem !== undefined) throw new ConvNextError(problem);
  if (!(s.backbone in BACKBONE_LR_SCALE)) throw new ConvNextError(`backbone '${s.backbone}': must be one of ${Object.keys(BACKBONE_LR_SCALE).join(', ')}`);
  if (!(Number.isInteger(s.seed) && s.seed >= 0 && s.seed <= 0xffffffff)) throw new ConvNextError(`seed ${s.seed}: must be a non-negative integer`);
}

/** The images of `K` classes split into training and held-out ones: heldOutCounts() of each class, picked by `seed`. */
function splitValidation(images: readonly Image[], K: number, seed: number): { train: Image[]; val: Image[] } {
  const byClass = Array.from({ length: K }, (_, k) => images.filter((img) => img.label === k));
  const counts = heldOutCounts(byClass.map((c) => c.length));
  const rng = new lib.Rng([seed, 0x76616c]);
  const held = new Set<Image>();
  for (const [k, c] of byClass.entries()) {
    const order = Array.from(c.keys());
    rng.shuffle(order);
    for (const i of order.slice(0, counts[k])) held.add(c[i]);
  }
  return { train: images.filter((img) => !held.has(img)), val: images.filter((img) => held.has(img)) };
}

/** AdamW groups: the head (`head.*`) at the scheduled lr, the backbone at BACKBONE_LR_SCALE of it; no decay for 1-D tensors. */
function paramGroups(model: ConvNeXtV2, backbone: FinetuneSettings['backbone']): ParamGroup[] {
  const head = model.params.filter((p) => p.name.startsWith('head.'));
  const body = model.params.filter((p) => !p.name.startsWith('head.'));
  const scale = BACKBONE_LR_SCALE[backbone];
  return [
    ...lib.defaultGroups(head, 0.05),
    ...lib.defaultGroups(body, 0.05).map((g) => ({ ...g, lrScale: scale })),
  ].filter((g) => g.params.length > 0);
}

function trainTransform(s: FinetuneSettings, cropPct: number): TransformSpec {
  const S = s.inputSize;
  switch (s.augment) {
    case 'light': return { kind: 'train', size: S, scale: [0.35, 1], hflip: 0.5 };
    // `convnextv2 finetune`'s defaults.
    case 'recipe': return { kind: 'train', size: S, scale: [0.08, 1], hflip: 0.5, autoAugment: 'rand-m9-mstd0.5-inc1', reprob: 0.25, remode: 'pixel' };
    case 'none': return { kind: 'eval', size: S, cropPct };
  }
}

/** Top-1 / top-5 (%) and the mean cross-entropy on `images` under the evaluation transform, counted as `convnextv2 eval` counts them. */
async function evaluateOn(model: ConvNeXtV2, images: readonly Image[], S: number, cropPct: number): Promise<EvalSummary> {
  const count = new lib.EvalCounter(model.config.numClasses);
  for (let s = 0; s < images.length; s += CHUNK) {
    const part = images.slice(s, s + CHUNK);
    const { logits } = await model.forward(evalBatch(part, S, cropPct));
    count.add(model.kernels, (logits as { data: Float32Array }).data, Int32Array.from(part, (img) => img.label));
  }
  return count.summary();
}

/** Nothing is written in the page: the run's checkpoint is made when the user asks for it. */
const NO_FOLDER = { open: () => {}, keepLogUpTo: () => {}, appendLog: () => {} };

/**
 * The engine's epochs through the library's run lifecycle, with a `step` message per batch and an
 * `epoch` message per epoch; each completed epoch's record goes into `done` (kept when cancelled).
 */
async function runEpochs(id: number, engine: FinetuneEngine, E: number, perEpoch: number, n: number, done: EpochDone[]): Promise<void> {
  const t0 = performance.now();
  await lib.runTraining<Awaited<ReturnType<FinetuneEngine['runEpoch']>>, EpochDone>({
    epochs: E, startEpoch: 0, resuming: false, lead: true, folder: NO_FOLDER,
    runEpoch: (epoch) => {
      let before = 0;
      return engine.runEpoch(epoch, {
        beforeBatch: () => checkpointForCancel(),
        afterBatch: (info) => {
          // StepInfo.loss is the epoch's running mean: this batch's loss is the difference of the sums.
          const sum = info.loss * info.batch;
          const step: StepProgress = {
            epoch, epochs: E, batch: info.batch, batches: info.batches, step: (epoch - 1) * perEpoch + info.batch, steps: E * perEpoch,
            loss: sum - before, epochLoss: info.loss, lr: info.lr,
            imagesPerSecond: (n * (epoch - 1) + info.images) / ((performance.now() - t0) / 1000),
          };
          before = sum;
          post({ type: 'step', id, step });
        },
      });
    },
    record: (epoch, r) => ({ epoch, loss: r.loss, top1: r.val.top1, seconds: r.seconds }),
    save: async () => false,
    onEpoch: (_epoch, _r, e) => {
      done.push(e);
      post({ type: 'epoch', id, epoch: e });
    },
  });
}

async function finetune(id: number, req: Requests['finetune']): Promise<Results['finetune']> {
  const cur = need();
  const kernels = await kernelsNow();
  const s = req.settings;
  checkSettings(s, 0);
  const classes = req.classes.map((c) => c.name.trim());
  if (classes.length < 2) throw new ConvNextError('fine-tuning needs at least two classes');
  for (const [i, c] of classes.entries()) {
    if (c === '') throw new ConvNextError(`class ${i + 1} has no name`);
    if (classes.indexOf(c) !== i) throw new ConvNextError(`two classes are named '${c}'`);
    if (req.classes[i].files.length === 0) throw new ConvNextError(`class '${c}' has no images`);
  }
  const images: Image[] = [];
  const skipped: Skipped[] = [];
  const total = req.classes.reduce((a, c) => a + c.files.length, 0);
  let done = 0;
  for (const [label, c] of req.classes.entries()) {
    await decodeInto(id, c.files, images, skipped, label, `${classes[label]}/`, done, total);
    done += c.files.length;
    if (!images.some((img) => img.label === label)) {
      const k = skipped[skipped.length - 1];
      throw new ConvNextError(`class '${classes[label]}': none of its ${c.files.length} files is a readable image (${k.name}: ${k.reason})`);
    }
  }
  const K = classes.length;
  const { train, val } = splitValidation(images, K, s.seed);
  checkSettings(s, train.length);
  await checkpointForCancel();

  // The model: the open one's weights, a new head for the classes (kept when they are the same classes).
  const S = s.inputSize;
  const base = cur.model.config;
  const cfg = { ...base, numClasses: K, dropPathRate: 0, headInitScale: 0.001 };
  const model = new lib.ConvNeXtV2(cfg, { kernels, seed: s.seed });
  let opt: AdamW | null = null;
  let engine: FinetuneEngine | null = null;
  const perEpoch = Math.ceil(train.length / s.batchSize);
  const steps = perEpoch * s.epochs;
  const t0 = performance.now();
  const epochs: EpochDone[] = [];
  let stopped: Results['finetune']['stopped'] = null;
  try {
    const keepHead = base.numClasses === K && cur.labels !== undefined && cur.labels.every((n, i) => n === classes[i]);
    // The open model's tensors over the new one's initial values (host copies: either may be on the GPU).
    const state = await model.stateDict();
    for (const [name, t] of await cur.model.stateDict()) {
      if ((name.startsWith('head.fc.') && !keepHead) || cur.initialised.includes(name)) continue;
      const mine = state.get(name);
      if (mine && mine.data.length === t.data.length) state.set(name, t);
    }
    model.loadStateDict(state, 'the opened checkpoint');
    const batches = new lib.ImageBatches(train, { batchSize: s.batchSize, transform: trainTransform(s, cur.cropPct), shuffle: true, seed: s.seed });
    opt = new lib.AdamW(paramGroups(model, s.backbone), { lr: s.lr });
    engine = new lib.FinetuneEngine({
      // The loss of every step is read (the page plots each one), also on the GPU.
      model, opt, batches, seed: s.seed, smoothing: 0.1, lossReadEvery: 1,
      schedule: { lr: s.lr, minLr: Math.min(1e-6, s.lr), warmupEpochs: 0, epochs: s.epochs },
      evaluate: (m) => evaluateOn(m, val.length > 0 ? val : train, S, cur.cropPct),
    });
    await runEpochs(id, engine, s.epochs, batches.length, train.length, epochs);
  } catch (e) {
    // Cancelled after a step: the model as trained so far becomes the open one. Else the open model stays.
    if (!(e instanceof Cancelled && engine !== null && engine.step > 0)) {
      release(opt, model);
      throw e;
    }
    stopped = { step: engine.step, steps };
  }
  release(opt);
  const from = cur.summary.fineTuned ? cur.summary.format : `fine-tuned in this page from ${cur.summary.format}`;
  const augment = { light: 'crop + flip', recipe: 'the finetune recipe', none: 'no augmentation' }[s.augment];
  const backbone = { slow: 'backbone at lr / 10', same: 'backbone at the same lr', frozen: 'backbone frozen' }[s.backbone];
  const notes = [`${train.length} images (${val.length} held out), ${s.epochs} epoch${s.epochs > 1 ? 's' : ''} × ${perEpoch} step${perEpoch > 1 ? 's' : ''}, lr ${s.lr}, ${backbone}, batch ${s.batchSize}, ${augment}`];
  if (stopped) notes.push(`cancelled after step ${stopped.step} of ${steps}`);
  const summary: CheckpointSummary = {
    ...cur.summary,
    format: from,
    params: lib.countParams(cfg),
    numClasses: K,
    classNames: classes,
    classSource: 'fine-tuned',
    inputSize: S,
    preprocessingRecorded: true,
    fineTuned: true,
    notes,
  };
  const fineTuned = { from, settings: s, epochs: epochs.length, steps: stopped?.step ?? steps };
  replaceCurrent({ summary, model, fcmae: cur.fcmae, names: classes, labels: classes, initialised: [], inputSize: S, cropPct: cur.cropPct, fineTuned });
  return { classes, images: train.length, heldOut: val.length, skipped, epochs, seconds: (performance.now() - t0) / 1000, summary, stopped };
}

async function download(): Promise<Results['download']> {
  const cur = need();
  if (!cur.fineTuned) throw new ConvNextError('nothing to download: fine-tune first (the checkpoint you opened is on your disk already)');
  const ft = cur.fineTuned;
  const bytes = lib.serializeCheckpoint({
    config: cur.model.config,
    state: await cur.model.stateDict(),
    labels: cur.labels,
    metadata: {
      kind: 'finetune-web', epoch: String(ft.epochs), step: String(ft.steps), seed: String(ft.settings.seed),
      ...lib.preprocessingMetadata({ inputSize: cur.inputSize, cropPct: cur.cropPct }),
      source: ft.from, settings: JSON.stringify(ft.settings),
    },
  });
  return { bytes, fileName: `convnextv2-finetuned-${cur.names.length}-classes.safetensors` };
}

// ---- sample images ---------------------------------------------------------------------------

/**
 * The sample: three classes of the library's synthetic set at its own 64 px, 30 images each,
 * each class with a colour cast (45% of an orange, a teal, a violet) over the set's random
 * colours, so that a few dozen images teach it even a randomly initialised model.
 */
const SAMPLE = {
  classes: [['h-stripes', [0.95, 0.45, 0.15]], ['v-stripes', [0.15, 0.6, 0.75]], ['disc', [0.6, 0.3, 0.8]]] as const,
  cast: 0.45, perClass: 30, size: 64,
};

function sampleImages(): Results['sample'] {
  const S = SAMPLE.size;
  const a = SAMPLE.cast;
  const classes = SAMPLE.classes.map(([name, tint]) => {
    const k = (lib.SYNTHETIC_CLASSES as readonly string[]).indexOf(name);
    const files = Array.from({ length: SAMPLE.perClass }, (_, j) => {
      // Image index i of the set has class i % 10.
      const { image } = lib.renderSynthetic(j * lib.SYNTHETIC_CLASSES.length + k, 'train', { size: S });
      const data = new Uint8Array(S * S * 3);
      for (let p = 0; p < S * S; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = Math.round(((1 - a) * image[c * S * S + p] + a * tint[c]) * 255);
      const png = lib.encodePng({ width: S, height: S, channels: 3, data });
      return new File([png as Uint8Array<ArrayBuffer>], `${name}-${String(j).padStart(2, '0')}.png`, { type: 'image/png' });
    });
    return { name, files };
  });
  return { classes, size: S };
}

// ---- device ---------------------------------------------------------------------------------

/**
 * The open model (and its FCMAE) rebuilt on `kernels` from host copies of its weights: the
 * checkpoint as it is now (fine-tuned or not), everything else of `cur` kept.
 */
async function moveCurrent(cur: Current, kernels: Kernels): Promise<Current> {
  let fcmae: FCMAE | null = null;
  let model: ConvNeXtV2 | null = null;
  const label = `the open model (${cur.summary.file})`;
  try {
    if (cur.fcmae) {
      const from = cur.fcmae;
      fcmae = new lib.FCMAE(from.encoderModel.config, { ...from.opts }, { kernels });
      fcmae.encoderModel.loadStateDict(await from.encoderModel.stateDict(), label);
      fcmae.loadDecoderState(await from.decoderStateDict(), label);
    }
    if (fcmae && cur.model === cur.fcmae?.encoderModel) {
      model = fcmae.encoderModel; // still one copy of the encoder's weights
    } else {
      model = new lib.ConvNeXtV2(cur.model.config, { kernels });
      model.loadStateDict(await cur.model.stateDict(), label);
    }
  } catch (e) {
    release(fcmae, model === fcmae?.encoderModel ? null : model);
    throw e;
  }
  return { ...cur, model, fcmae };
}

/** Makes `to` the device models compute on; the open model is moved there, the old backend's memory freed. */
async function switchDevice(id: number, to: Device): Promise<Results['device']> {
  const cpu = await cpuReady;
  const from = active!;
  if (to === from.device) return { ...deviceInfo(from), moved: false };
  post({ type: 'progress', id, stage: to === 'gpu' ? 'starting WebGPU' : 'back to the CPU', done: 0, total: 0 });
  const next = to === 'gpu' ? await createGpuKernels() : cpu;
  const cur = current;
  try {
    if (cur) {
      post({ type: 'progress', id, stage: `moving ${cur.summary.file} to the ${to.toUpperCase()}`, done: 0, total: 0 });
      replaceCurrent(await moveCurrent(cur, next.kernels));
    }
  } catch (e) {
    if (next !== cpu) next.destroy(); // the open model stays where it was
    throw e;
  }
  active = next;
  if (from !== cpu) from.destroy(); // its models were released by replaceCurrent
  return { ...deviceInfo(next), moved: cur !== null };
}

// ---- dispatch -------------------------------------------------------------------------------

async function handle(msg: Exclude<ToWorker, { type: 'cancel' }>): Promise<{ result: Results[Kind]; transfer: Transferable[] }> {
  switch (msg.type) {
    case 'open': return { result: await openCheckpoint(msg.files), transfer: [] };
    case 'classify': {
      const r = await classify(msg.id, msg.images, msg.topK);
      return { result: r, transfer: r.items.map((x) => x.embedding.buffer) };
    }
    case 'reconstruct': {
      const r = await reconstruct(msg.id, msg.images, msg.size, msg.seed);
      return { result: r, transfer: [] };
    }
    case 'finetune': return { result: await finetune(msg.id, msg), transfer: [] };
    case 'download': {
      const r = await download();
      return { result: r, transfer: [r.bytes.buffer] };
    }
    case 'device': return { result: await switchDevice(msg.id, msg.device), transfer: [] };
    case 'sample': return { result: sampleImages(), transfer: [] };
  }
}

/** What the page shows for a failure: the library's one-line message, or one line naming the task. */
function message(kind: Kind, e: unknown): string {
  const line = lib.errorLine(e, 300);
  if (e instanceof ConvNextError) return line;
  const what = {
    open: 'cannot read the checkpoint', classify: 'classification failed', reconstruct: 'reconstruction failed', finetune: 'fine-tuning failed',
    download: 'cannot write the checkpoint', device: 'cannot switch the device', sample: 'cannot make the sample images',
  }[kind];
  return `${what}: ${line}`;
}

scope.onmessage = (ev: MessageEvent<ToWorker>) => {
  const msg = ev.data;
  if (msg.type === 'cancel') {
    cancelRequested = true;
    return;
  }
  if (busy) {
    post({ type: 'error', id: msg.id, message: 'busy with another task: wait for it, or cancel it' });
    return;
  }
  busy = true;
  cancelRequested = false;
  handle(msg).then(
    ({ result, transfer }) => post({ type: 'done', id: msg.id, kind: msg.type, result } as FromWorker, transfer),
    (e: unknown) => post({ type: 'error', id: msg.id, message: message(msg.type, e) }),
  ).finally(() => {
    busy = false;
  });
};
