/**
 * The messages between the page (app.ts) and the Worker (worker.ts) that holds the model and
 * does every computation. Files travel as `File` objects (structured clone: the Worker reads and
 * decodes them, the page never holds their bytes); results come back as plain data.
 */

export type Augment = 'light' | 'recipe' | 'none';

/** Where the model computes: the CPU (the WebAssembly kernels) or the GPU (WebGPU). */
export type Device = 'cpu' | 'gpu';

/** The backend the Worker computes with, as the page shows it. */
export interface DeviceInfo {
  device: Device;
  /** In words, for the page's header: 'WebAssembly kernels (SIMD128, 4 threads)', 'WebGPU: ...'. */
  kernels: string;
  /** The adapter or CPU in words (the kernels' capabilities().description). */
  adapter: string;
  /** A software adapter (SwiftShader, llvmpipe): correct but slower than the CPU. */
  software: boolean;
}

/** How the backbone (all but `head.*`) trains: at a tenth of the head's lr, at the same lr, or not at all. */
export type Backbone = 'slow' | 'same' | 'frozen';

/** The backbone's lr as a multiple of the head's. */
export const BACKBONE_LR_SCALE: Record<Backbone, number> = { slow: 0.1, same: 1, frozen: 0 };

export interface FinetuneSettings {
  epochs: number;
  /** The head's learning rate (peak of the cosine schedule). */
  lr: number;
  batchSize: number;
  inputSize: number;
  augment: Augment;
  backbone: Backbone;
  seed: number;
}

/** The model's total stride (stem 4, three downsamplings by 2): an input side must be a multiple of it. */
export const STRIDE = 32;

export type SettingField = 'epochs' | 'lr' | 'batchSize' | 'inputSize';

/**
 * What is wrong with settings `s` for a run on `trainImages` training images (0: not known yet),
 * one line per field; empty when nothing is. The page shows these at the fields, the Worker
 * refuses a run with any of them.
 */
export function settingProblems(s: Pick<FinetuneSettings, SettingField>, trainImages: number): Partial<Record<SettingField, string>> {
  const int = (v: number, lo: number, hi: number) => Number.isInteger(v) && v >= lo && v <= hi;
  const shown = (v: number) => (Number.isNaN(v) ? 'empty' : String(v));
  const out: Partial<Record<SettingField, string>> = {};
  if (!int(s.epochs, 1, 1000)) out.epochs = `epochs ${shown(s.epochs)}: must be a whole number from 1 to 1000`;
  if (!(s.lr > 0 && s.lr < 1)) out.lr = `learning rate ${shown(s.lr)}: must be above 0 and below 1 (e.g. 0.003)`;
  if (!int(s.batchSize, 1, 256)) out.batchSize = `batch ${shown(s.batchSize)}: must be a whole number from 1 to 256`;
  else if (trainImages > 0 && s.batchSize > trainImages) out.batchSize = `batch ${s.batchSize} is more than the ${trainImages} training images: at most ${trainImages}`;
  if (!(int(s.inputSize, STRIDE, 1024) && s.inputSize % STRIDE === 0)) {
    out.inputSize = `image size ${shown(s.inputSize)}: must be a multiple of ${STRIDE} (the model's total stride) from ${STRIDE} to 1024`;
  }
  return out;
}

/** Every class needs this many images for a validation split (then 4 or more stay for training). */
export const MIN_PER_CLASS_FOR_SPLIT = 5;

/**
 * Images held out for validation per class, for classes of `counts` images: a fifth of each
 * class (rounded) when every class has at least MIN_PER_CLASS_FOR_SPLIT, else none (accuracy is
 * then measured on the training images). The Worker picks which by the run's seed.
 */
export function heldOutCounts(counts: readonly number[]): number[] {
  const split = counts.length > 0 && counts.every((n) => n >= MIN_PER_CLASS_FOR_SPLIT);
  return counts.map((n) => (split ? Math.round(n / 5) : 0));
}

/** What the page asks, by `type`; `id` pairs the answer with the question. */
export interface Requests {
  open: { files: File[] };
  classify: { images: File[]; topK: number };
  reconstruct: { images: File[]; size: number; seed: number };
  finetune: { classes: { name: string; files: File[] }[]; settings: FinetuneSettings };
  download: Record<string, never>;
  /** The sample images: a few classes of the library's synthetic set, as PNG files. */
  sample: Record<string, never>;
  /** Compute on `device` from now on; the open model (fine-tuned or not) is moved there. */
  device: { device: Device };
}

export interface CheckpointSummary {
  /** The file read (for a folder: the checkpoint file in it). */
  file: string;
  /** Where it comes from, in words: 'timm safetensors', 'official FCMAE pre-training (.pt)', ... */
  format: string;
  /** 'ConvNeXt V2-Atto' or 'ConvNeXt V2 (custom)'. */
  architecture: string;
  depths: number[];
  dims: number[];
  block: 'v1' | 'v2';
  /** Parameters of the model (encoder + head), and of the FCMAE decoder when there is one. */
  params: number;
  decoderParams: number;
  numClasses: number;
  /** The class names the app shows (empty for a backbone). */
  classNames: string[];
  /** 'checkpoint', 'imagenet-1k', 'none' (shown as `class N`), 'fine-tuned'. */
  classSource: string;
  fcmae: { decoderDim: number; decoderDepth: number; maskRatio: number; normPixLoss: boolean; normPixAssumed: boolean } | null;
  inputSize: number;
  cropPct: number;
  /** Whether the file records its preprocessing (else the defaults, 224 px and 0.875). */
  preprocessingRecorded: boolean;
  /** Fine-tuned in this page (then it can be downloaded). */
  fineTuned: boolean;
  notes: string[];
}

export interface Prediction {
  index: number;
  label: string;
  probability: number;
}

export interface Classified {
  name: string;
  width: number;
  height: number;
  /** Top-k classes (empty for a backbone). */
  top: Prediction[];
  /** Pre-logits: pooled and normalised features. */
  embedding: Float32Array;
  norm: number;
}

export interface Skipped {
  name: string;
  reason: string;
}

/** An 8-bit RGB image, HWC. */
export interface Rgb {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface StepProgress {
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  /** Optimizer steps done, of `steps`. */
  step: number;
  steps: number;
  /** This batch's loss, and the epoch's mean so far. */
  loss: number;
  epochLoss: number;
  lr: number;
  imagesPerSecond: number;
}

export interface EpochDone {
  epoch: number;
  loss: number;
  /** Top-1 (%) under the evaluation transform on the held-out images (on the training images when none are held out). */
  top1: number;
  seconds: number;
}

export interface Results {
  open: CheckpointSummary;
  classify: { items: Classified[]; skipped: Skipped[]; inputSize: number; cropPct: number; seconds: number };
  reconstruct: { items: { name: string; original: Rgb; masked: Rgb; reconstruction: Rgb }[]; skipped: Skipped[]; png: Uint8Array; size: number; maskRatio: number; loss: number };
  /**
   * `images` trained on, `heldOut` for validation; `epochs` the completed ones; `stopped`: the
   * step a cancelled run stopped after (the model as trained so far is the open one now).
   */
  finetune: {
    classes: string[]; images: number; heldOut: number; skipped: Skipped[]; epochs: EpochDone[]; seconds: number; summary: CheckpointSummary;
    stopped: { step: number; steps: number } | null;
  };
  download: { bytes: Uint8Array; fileName: string };
  sample: { classes: { name: string; files: File[] }[]; size: number };
  /** The backend now in use; `moved` when an open model was reloaded onto it. */
  device: DeviceInfo & { moved: boolean };
}

export type Kind = keyof Requests;

export type ToWorker =
  | { [K in Kind]: { type: K; id: number } & Requests[K] }[Kind]
  | { type: 'cancel' };

export type FromWorker =
  /**
   * The Worker is up, on the CPU. `fallback`: why the reference kernels stand in for the
   * WebAssembly ones; `noGpu`: why the GPU cannot be offered (no navigator.gpu in the Worker), or null.
   */
  | { type: 'ready'; info: DeviceInfo; fallback: string | null; noGpu: string | null }
  | { [K in Kind]: { type: 'done'; id: number; kind: K; result: Results[K] } }[Kind]
  | { type: 'error'; id: number; message: string }
  /** Long tasks: `done` of `total` units of `stage` ('decoding', 'classifying', ...). */
  | { type: 'progress'; id: number; stage: string; done: number; total: number }
  | { type: 'step'; id: number; step: StepProgress }
  | { type: 'epoch'; id: number; epoch: EpochDone };
