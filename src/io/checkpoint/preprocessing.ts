/**
 * Evaluation preprocessing (input size, crop fraction): its defaults, how it is written
 * (Hugging Face preprocessor_config.json, safetensors metadata) and how it is read back from
 * a checkpoint and the files beside it.
 */
import { type FileSet } from '../files.js';
import { isPickleRecord } from '../pickle.js';

/** The evaluation preprocessing a model was trained with: resize the short side to inputSize / cropPct, centre-crop inputSize. */
export interface Preprocessing {
  inputSize: number;
  cropPct: number;
}

/** ImageNet evaluation at 224 px (the official checkpoints), when a file says nothing. */
export const DEFAULT_PREPROCESSING: Preprocessing = { inputSize: 224, cropPct: 0.875 };

/**
 * The `preprocessor_config.json` of the official Hugging Face ConvNeXt V2 checkpoints:
 * ConvNextImageProcessor, resize the shortest edge to size / crop_pct and centre-crop (224 and
 * 0.875 for ImageNet evaluation; a model trained at another size carries its own), rescale to
 * [0, 1], normalise with the ImageNet mean and std.
 */
export function hfPreprocessorJson(pre: Preprocessing = DEFAULT_PREPROCESSING): Record<string, unknown> {
  return {
    crop_pct: pre.cropPct,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.485, 0.456, 0.406],
    image_processor_type: 'ConvNextImageProcessor',
    image_std: [0.229, 0.224, 0.225],
    resample: 3,
    rescale_factor: 0.00392156862745098,
    size: { shortest_edge: pre.inputSize },
  };
}

/** Metadata entries of the preprocessing (our checkpoints and the safetensors we export). */
export function preprocessingMetadata(pre: Preprocessing | undefined): Record<string, string> {
  return pre ? { input_size: String(pre.inputSize), crop_pct: String(pre.cropPct) } : {};
}

/** A JSON file's top-level object, {} when it is missing or not one (optional side files). */
export function readJsonObject(files: FileSet, f: string): Record<string, unknown> {
  try {
    if (files.kind(f) !== 'file') return {};
    const v = JSON.parse(files.readText(f)) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** timm's config.json `label_names`, when it has them. */
export function readTimmLabels(files: FileSet, f: string): string[] | undefined {
  const v = readJsonObject(files, f).label_names;
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
}

const positive = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
};

/**
 * What a file says about its preprocessing: metadata `input_size` / `crop_pct` (ours and our
 * exports), a Hugging Face directory's preprocessor_config.json (`size.shortest_edge`,
 * `crop_pct`) or config.json `image_size`, a `.pt` file's `args` (`input_size`, `crop_pct`).
 */
export function readPreprocessing(files: FileSet, metadata: Record<string, string>, hfConfig: string | undefined, args: unknown, timmConfig?: string): Preprocessing | undefined {
  let size = positive(metadata.input_size);
  let crop = positive(metadata.crop_pct);
  if (timmConfig !== undefined) {
    // timm's hub config.json: pretrained_cfg.input_size [C, H, W] (or test_input_size) and crop_pct.
    const pc = readJsonObject(files, timmConfig).pretrained_cfg;
    if (typeof pc === 'object' && pc !== null) {
      const p = pc as Record<string, unknown>;
      const sz = Array.isArray(p.input_size) ? p.input_size[1] : undefined;
      size ??= positive(sz);
      crop ??= positive(p.crop_pct);
    }
  }
  if (hfConfig !== undefined) {
    const prep = readJsonObject(files, files.join(files.dirname(hfConfig), 'preprocessor_config.json'));
    const sz = prep.size;
    size ??= positive(typeof sz === 'object' && sz !== null ? (sz as Record<string, unknown>).shortest_edge : sz) ?? positive(readJsonObject(files, hfConfig).image_size);
    crop ??= positive(prep.crop_pct);
  }
  if (isPickleRecord(args)) {
    const a = args as Record<string, unknown>;
    size ??= positive(a.input_size);
    crop ??= positive(a.crop_pct);
  }
  if (size === undefined && crop === undefined) return undefined;
  return { inputSize: size ?? DEFAULT_PREPROCESSING.inputSize, cropPct: crop !== undefined && crop <= 1 ? crop : DEFAULT_PREPROCESSING.cropPct };
}
