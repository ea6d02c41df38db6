/**
 * Loading: resolves a checkpoint path (file or directory), reads the Hugging Face / timm /
 * our metadata beside the tensors, and loads any supported file as a canonical model
 * (including official FCMAE pre-training checkpoints).
 */
import { ConvNextError } from '../../errors.js';
import { type ConvNeXtV2Config } from '../../model/config.js';
import { type FileSet, memoryFiles } from '../files.js';
import { isPickleRecord } from '../pickle.js';
import { openTensorSource, type Container, type JsonValue, type TensorSource } from '../sources.js';
import {
  FCMAE_PREFIX, applyFcmaeTransform, detectFcmae, fcmaeHints, fcmaeParamSpecs, inferFcmaeInfo, mapFcmaeNames, parseFcmaeInfo,
  type FcmaeInfo, type FcmaeMapEntry,
} from '../fcmae.js';
import { detectNaming } from './detect.js';
import { CHECKPOINT_FILES, EXTRA_PREFIXES, listNames, type CheckpointFormat, type Naming, type StateDict } from './names.js';
import { buildState, planCanonical, type PlanOptions } from './plan.js';
import { readJsonObject, readPreprocessing, readTimmLabels, type Preprocessing } from './preprocessing.js';

export interface LoadOptions {
  /**
   * Load the EMA weights as the model: `ema.*` of our checkpoints, `model_ema` of official
   * `.pt` files. An error for files that hold none.
   */
  ema?: boolean;
  /** Also read the `optimizer.` / `ema.` / `fcmae.` tensors (ours) or FCMAE decoder parts into `extra`. */
  extra?: boolean;
  /** Key prefix of the model's tensors, when a file holds several (e.g. `param.`). */
  prefix?: string;
  /** Accept tensors that map to nothing (listed in `unused`). */
  allowUnexpected?: boolean;
}

export interface LoadedCheckpoint {
  config: ConvNeXtV2Config;
  /** Canonical state dict in `paramSpecs(config)` order. */
  state: StateDict;
  /** `fcmae`: an official FCMAE pre-training checkpoint (sparse encoder + decoder). */
  format: CheckpointFormat;
  /** Naming of the model tensors in the file (`official` for FCMAE, after its remapping). */
  naming: Naming;
  /** The file container: safetensors, a torch.save zip, or sharded versions of either. */
  container: Container;
  /** The named size matching depths and dims, if any. */
  modelName?: string;
  /** Class names (HF id2label, or our metadata `labels`), when they match numClasses. */
  labels?: string[];
  metadata: Record<string, string>;
  /** The evaluation preprocessing the file records (see readPreprocessing), if any. */
  preprocessing?: Preprocessing;
  /** The file actually read (a directory resolves to a file inside it). */
  file: string;
  /** No classifier head (numClasses 0): a feature extractor, e.g. an FCMAE encoder. */
  backbone: boolean;
  /**
   * Parameters the file lacks that were set to their initial values. An FCMAE encoder has no
   * final norm: `head.norm.weight` / `head.norm.bias` are ones / zeros, as the official
   * fine-tuning starts from (its `norm` LayerNorm keeps PyTorch's initialisation).
   */
  initialised: string[];
  /** Names of the `optimizer.` / `ema.` / `fcmae.` tensors (ours) or the FCMAE decoder parts. */
  extraNames: string[];
  /** Those tensors, when `extra: true`. */
  extra?: StateDict;
  /** The FCMAE decoder setup, for FCMAE checkpoints and ours that carry `fcmae.` tensors. */
  fcmae?: FcmaeInfo;
  /** For `.pt` files: the top-level key of the state dict (`model`, `model_ema`, ...). */
  stateDictKey?: string;
  /** For `.pt` files: the other top-level entries (epoch, args, ...), summarised as JSON. */
  records?: Record<string, JsonValue>;
  /** Source tensors that were not used (only with `allowUnexpected`). */
  unused: string[];
}

/** File names of Hugging Face checkpoints (config.json beside them is read). */
const HF_FILES: ReadonlySet<string> = new Set(['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json']);

/** A timm hub config.json (`architecture`, `pretrained_cfg`), not a transformers one (`model_type`). */
function isTimmConfig(files: FileSet, path: string): boolean {
  const j = readJsonObject(files, path);
  return !('model_type' in j) && (typeof j.architecture === 'string' || typeof j.pretrained_cfg === 'object');
}

/** Resolves a checkpoint path: a file, or a directory holding one of {@link CHECKPOINT_FILES}. */
export function resolveCheckpointPath(files: FileSet, path: string): { file: string; hfConfig?: string; timmConfig?: string } {
  const kind = files.kind(path);
  if (kind === null) throw new ConvNextError(`checkpoint ${path}: no such file or directory`);
  let file = path;
  if (kind === 'dir') {
    const f = CHECKPOINT_FILES.find((name) => files.kind(files.join(path, name)) === 'file');
    if (f === undefined) throw new ConvNextError(`checkpoint ${path}: the directory holds none of ${CHECKPOINT_FILES.join(', ')}`);
    file = files.join(path, f);
  }
  if (HF_FILES.has(files.basename(file))) {
    const cfg = files.join(files.dirname(file), 'config.json');
    if (files.kind(cfg) === 'file') return isTimmConfig(files, cfg) ? { file, timmConfig: cfg } : { file, hfConfig: cfg };
  }
  return { file };
}

interface HfConfigInfo {
  declared: Partial<ConvNeXtV2Config>;
  labels?: string[];
}

/** Reads what matters from a Hugging Face config.json. */
export function readHfConfig(files: FileSet, path: string): HfConfigInfo {
  let json: unknown;
  try {
    json = JSON.parse(files.readText(path));
  } catch (err) {
    throw new ConvNextError(`${path}: cannot read it as JSON (${(err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 120)})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConvNextError(`${path}: not a JSON object`);
  const j = json as Record<string, unknown>;
  const declared: Partial<ConvNeXtV2Config> = {};
  const num = (k: string): number | undefined => (typeof j[k] === 'number' && Number.isFinite(j[k]) ? (j[k] as number) : undefined);
  const ints = (k: string): number[] | undefined => {
    const v = j[k];
    return Array.isArray(v) && v.length === 4 && v.every((x) => Number.isSafeInteger(x)) ? (v as number[]) : undefined;
  };
  const eps = num('layer_norm_eps');
  // HF's default layer_norm_eps is 1e-12; it applies to the final norm only.
  declared.headNormEps = eps !== undefined && eps > 0 ? eps : 1e-12;
  const dpr = num('drop_path_rate');
  if (dpr !== undefined && dpr >= 0 && dpr < 1) declared.dropPathRate = dpr;
  const depths = ints('depths');
  if (depths) declared.depths = depths;
  const dims = ints('hidden_sizes');
  if (dims) declared.dims = dims;
  const ch = num('num_channels');
  if (ch !== undefined) declared.inChans = ch;
  const info: HfConfigInfo = { declared };
  const id2label = j.id2label;
  if (typeof id2label === 'object' && id2label !== null && !Array.isArray(id2label)) {
    const m = id2label as Record<string, unknown>;
    const n = Object.keys(m).length;
    const labels: string[] = [];
    for (let i = 0; i < n; i++) {
      const l = m[String(i)];
      if (typeof l !== 'string') { labels.length = 0; break; }
      labels.push(l);
    }
    // transformers' placeholders (LABEL_0, LABEL_1, ...) are no names.
    if (labels.length === n && n > 0 && !labels.every((l, i) => l === `LABEL_${i}`)) info.labels = labels;
  }
  return info;
}

function parseOurConfig(file: string, text: string): Partial<ConvNeXtV2Config> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ConvNextError(`checkpoint ${file}: metadata 'config' is not valid JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConvNextError(`checkpoint ${file}: metadata 'config' is not an object`);
  const o = v as Record<string, unknown>;
  const out: Partial<ConvNeXtV2Config> = {};
  const numKeys = ['numClasses', 'inChans', 'dropPathRate', 'headInitScale', 'layerNormEps', 'headNormEps', 'kernelSize'] as const;
  for (const k of numKeys) {
    const x = o[k];
    if (x === undefined) continue;
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new ConvNextError(`checkpoint ${file}: metadata config ${k} is not a number`);
    out[k] = x;
  }
  for (const k of ['depths', 'dims'] as const) {
    const x = o[k];
    if (x === undefined) continue;
    if (!Array.isArray(x) || !x.every((d) => Number.isSafeInteger(d))) throw new ConvNextError(`checkpoint ${file}: metadata config ${k} is not a list of integers`);
    out[k] = x as number[];
  }
  if (o.block !== undefined) {
    if (o.block !== 'v1' && o.block !== 'v2') throw new ConvNextError(`checkpoint ${file}: metadata config block is not v1 or v2`);
    out.block = o.block;
  }
  return out;
}

function parseLabels(text: string | undefined, n: number): string[] | undefined {
  if (text === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    if (Array.isArray(v) && v.length === n && n > 0 && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // labels are optional; ignore malformed ones
  }
  return undefined;
}

/**
 * Loads a checkpoint: a safetensors file, a torch.save zip (`.pt`, `.pth`, `pytorch_model.bin`;
 * detected by its magic bytes), a Hugging Face sharded index, or a directory (HF files +
 * `config.json`, or a run directory's `checkpoint-best` / `checkpoint-last`). Detects the
 * naming (timm, official, HF, ours, official FCMAE pre-training), infers and validates the
 * config, and reads only the tensors it needs (safetensors lazily).
 *
 * An official FCMAE checkpoint loads as a backbone: its encoder mapped as the official
 * `remap_checkpoint_keys` does (see io/fcmae.ts), `numClasses` 0, `head.norm` initialised
 * to ones / zeros (listed in `initialised`), and its decoder parts as `fcmae.*` in
 * `extraNames` (read into `extra` with `extra: true`), with the decoder setup in `fcmae`.
 */
export function loadCheckpointFrom(files: FileSet, path: string, opts: LoadOptions = {}): LoadedCheckpoint {
  const { file, hfConfig, timmConfig } = resolveCheckpointPath(files, path);
  const src = openTensorSource(files, file, { ema: opts.ema });
  try {
    return loadFromSource(files, src, file, hfConfig, opts, timmConfig);
  } finally {
    src.close();
  }
}

/** {@link loadCheckpointFrom} for the bytes of one file of any supported format. */
export function loadCheckpointBytes(bytes: Uint8Array, opts: LoadOptions = {}): LoadedCheckpoint {
  return loadCheckpointFrom(memoryFiles({ '(bytes)': bytes }), '(bytes)', opts);
}

function loadFromSource(files: FileSet, src: TensorSource, file: string, hfConfig: string | undefined, opts: LoadOptions, timmConfig?: string): LoadedCheckpoint {
  const label = `checkpoint ${file}`;
  const metadata: Record<string, string> = { ...src.metadata };
  const ours = src.container === 'safetensors' && metadata.format === 'convnextv2';
  const isTorch = src.container === 'torch' || src.container === 'torch-sharded';
  if (opts.ema && !ours && !isTorch) throw new ConvNextError(`${label}: EMA weights are read from convnextv2 checkpoints (ema.*) and .pt files (model_ema) only`);
  const allShapes = src.tensors.map((t) => [t.name, t.shape] as const);
  const finish = (out: Omit<LoadedCheckpoint, 'container' | 'backbone' | 'metadata' | 'file'>): LoadedCheckpoint => {
    const r: LoadedCheckpoint = { ...out, container: src.container, backbone: out.config.numClasses === 0, metadata, file };
    const pre = readPreprocessing(files, metadata, hfConfig, src.raw?.get('args'), timmConfig);
    if (pre) r.preprocessing = pre;
    if (timmConfig && !r.labels) {
      const names = readTimmLabels(files, timmConfig);
      if (names && names.length === r.config.numClasses) r.labels = names;
    }
    if (src.stateDictKey !== undefined) r.stateDictKey = src.stateDictKey;
    if (src.records !== undefined) r.records = src.records;
    return r;
  };

  // Official FCMAE pre-training checkpoints (sparse encoder kernels).
  const fcPrefix = ours ? undefined : detectFcmae(allShapes.map(([n]) => n), label, opts.prefix);
  if (fcPrefix !== undefined) {
    const map = mapFcmaeNames(allShapes, fcPrefix, label);
    if (map.unused.length > 0 && !opts.allowUnexpected) {
      throw new ConvNextError(`${label}: unexpected tensor${map.unused.length > 1 ? 's' : ''} ${listNames(map.unused)} (read as an official FCMAE checkpoint with key prefix '${fcPrefix}')`);
    }
    const byName = new Map(map.encoder.map((e) => [e.name, e]));
    const plan = planCanonical(map.encoder.map((e) => [e.name, e.shape] as const), {
      source: file, naming: 'official', prefix: '', allowUnexpected: opts.allowUnexpected, initialise: ['head.norm.weight', 'head.norm.bias'],
    });
    const state = buildState(plan, (e) => {
      const m = byName.get(e.source) as FcmaeMapEntry;
      return applyFcmaeTransform(m, src.get(m.source));
    });
    const args = src.raw?.get('args');
    const hints = fcmaeHints((k) => (isPickleRecord(args) ? args[k] : metadata[k]));
    const fcmae = inferFcmaeInfo(new Map(map.decoder.map((d) => [d.name, d.shape])), plan.config.dims[3], plan.config.inChans, hints, label);
    const specs = fcmaeParamSpecs(fcmae, plan.config.dims[3], plan.config.inChans);
    const out = {
      config: plan.config, state, format: 'fcmae' as const, naming: 'official' as const, initialised: plan.initialised,
      extraNames: specs.map((x) => x.name), fcmae, unused: [...map.unused, ...plan.unused.map((n) => byName.get(n)?.source ?? n)],
    } as Omit<LoadedCheckpoint, 'container' | 'backbone' | 'metadata' | 'file'>;
    if (plan.modelName !== undefined) out.modelName = plan.modelName;
    if (opts.extra) {
      const bySpec = new Map(map.decoder.map((d) => [d.name, d]));
      out.extra = new Map(specs.map((x) => [x.name, { shape: [...x.shape], data: src.get((bySpec.get(x.name) as FcmaeMapEntry).source) }]));
    }
    return finish(out);
  }

  const extraNames = ours ? src.tensors.map((t) => t.name).filter((n) => EXTRA_PREFIXES.some((p) => n.startsWith(p))) : [];
  const extraSet = new Set(extraNames);
  let shapes: Array<readonly [string, readonly number[]]>;
  const planOpts: PlanOptions = { source: file, allowUnexpected: opts.allowUnexpected };
  let hf: HfConfigInfo | undefined;
  if (ours) {
    if (opts.ema && !extraNames.some((n) => n.startsWith('ema.'))) throw new ConvNextError(`${label}: holds no EMA weights (ema.*)`);
    const keep = (n: string) => (opts.ema ? n.startsWith('ema.') : !extraSet.has(n));
    shapes = allShapes.filter(([n]) => keep(n));
    planOpts.naming = 'timm';
    planOpts.prefix = opts.ema ? 'ema.' : '';
    if (metadata.config !== undefined) planOpts.declared = parseOurConfig(file, metadata.config);
  } else {
    shapes = allShapes;
    if (opts.prefix !== undefined) planOpts.prefix = opts.prefix;
    const det = detectNaming(shapes.map(([n]) => n).filter((n) => opts.prefix === undefined || n.startsWith(opts.prefix)), label);
    if (det.naming === 'hf') {
      hf = hfConfig ? readHfConfig(files, hfConfig) : { declared: { headNormEps: 1e-12 } };
      planOpts.declared = hf.declared;
    } else if (metadata.naming !== undefined && metadata.config !== undefined) {
      // Written by exportCheckpoint: the config restores what shapes cannot tell (eps, ...).
      planOpts.declared = parseOurConfig(file, metadata.config);
    }
  }
  const plan = planCanonical(shapes, planOpts);
  const state = buildState(plan, (e) => src.get(e.source));

  let labels: string[] | undefined;
  if (ours) labels = parseLabels(metadata.labels, plan.config.numClasses);
  else if (hf?.labels && hf.labels.length === plan.config.numClasses) labels = hf.labels;
  else labels = parseLabels(metadata.labels, plan.config.numClasses);

  const out: Omit<LoadedCheckpoint, 'container' | 'backbone' | 'metadata' | 'file'> = {
    config: plan.config,
    state,
    format: ours ? 'convnextv2' : plan.naming,
    naming: plan.naming,
    initialised: parseInitialised(ours ? metadata.initialised : undefined),
    extraNames,
    unused: plan.unused,
  };
  if (plan.modelName !== undefined) out.modelName = plan.modelName;
  if (labels) out.labels = labels;
  if (ours) {
    const fcmae = parseFcmaeInfo(metadata.fcmae);
    if (fcmae && extraNames.some((n) => n.startsWith(FCMAE_PREFIX))) out.fcmae = fcmae;
  }
  if (opts.extra && ours) {
    out.extra = new Map();
    for (const n of extraNames) out.extra.set(n, { shape: [...(src.tensors.find((t) => t.name === n) as { shape: number[] }).shape], data: src.get(n) });
  }
  return finish(out);
}

/** Our metadata `initialised`: a JSON list of parameter names (see LoadedCheckpoint.initialised). */
function parseInitialised(text: string | undefined): string[] {
  if (text === undefined) return [];
  try {
    const v: unknown = JSON.parse(text);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // optional; ignore malformed values
  }
  return [];
}
