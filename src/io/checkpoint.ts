/**
 * Checkpoint formats and parameter-name mapping.
 *
 * Every reader produces our canonical state dict: the names and shapes of `paramSpecs(cfg)`
 * (timm names, PyTorch layouts, Linear MLP form). Accepted namings:
 * - `timm`: canonical names; the MLP as Linear [out,in] or 1x1 conv [out,in,1,1] (timm's
 *   `conv_mlp` form of atto..nano); `head.fc` optional (absent = backbone). A key prefix such
 *   as `model.` or `module.` is detected.
 * - `official`: facebookresearch/ConvNeXt-V2 fine-tune names (`downsample_layers.I.J`,
 *   `stages.S.B.{dwconv,norm,pwconv1,grn.gamma,grn.beta,pwconv2}`, `norm`, `head`).
 * - `hf`: Hugging Face transformers `ConvNextV2ForImageClassification` (`convnextv2.…`,
 *   `classifier`) or a bare `ConvNextV2Model`.
 * GRN parameters may be [C] or [1,1,1,C] (or [1,C]) in any naming. ConvNeXt V1 checkpoints
 * (timm `stages.S.blocks.B.gamma`, official `stages.S.B.gamma`: LayerScale, no GRN) load as
 * `block: 'v1'` models.
 *
 * The model config is inferred from the tensor shapes (depths, dims, classes, input channels,
 * kernel size), so loading needs no model name. Validation is strict: every expected tensor
 * present with its exact shape, nothing left over; errors name the tensors.
 *
 * Our own checkpoints (`format: 'convnextv2'`) are safetensors files with canonical names,
 * optional `optimizer.` / `ema.` / `fcmae.` prefixed tensors and JSON metadata (`config`).
 */
import { ConvNextError } from '../errors.js';
import { MODEL_SIZES, configJson, initConstant, paramSpecs, validateConfig, type ConvNeXtV2Config } from '../model/config.js';
import { type FileSet, memoryFiles } from './files.js';
import { serializeSafetensors, type TensorData } from './safetensors.js';
import { serializeTorchCheckpoint } from './torch.js';
import { isPickleRecord } from './pickle.js';
import { openTensorSource, type Container, type JsonValue, type TensorSource } from './sources.js';
import {
  FCMAE_PREFIX, applyFcmaeTransform, detectFcmae, fcmaeHints, fcmaeParamSpecs, inferFcmaeInfo, mapFcmaeNames, parseFcmaeInfo,
  type FcmaeInfo, type FcmaeMapEntry,
} from './fcmae.js';

/** A state dict: tensor name -> shape and float32 values. */
export type StateDict = Map<string, TensorData>;

/** Parameter naming conventions we can map to and from canonical names. */
export type Naming = 'timm' | 'official' | 'hf';
/** Where a checkpoint came from: our own checkpoints, a foreign naming, or official FCMAE pre-training. */
export type CheckpointFormat = 'convnextv2' | Naming | 'fcmae';

/** Prefixes of the non-model tensors in our own checkpoints. */
export const EXTRA_PREFIXES = ['optimizer.', 'ema.', 'fcmae.'] as const;

/** File names looked for, in order, when a directory is given. */
export const CHECKPOINT_FILES = [
  'model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json',
  'checkpoint-best.safetensors', 'checkpoint-last.safetensors',
] as const;

// ---------------------------------------------------------------------------------------------
// Name rules

/**
 * A rule pairs a canonical name pattern with the same parameter's name in another naming.
 * Placeholders: {s} stage, {b} block, {j} layer index (digits), {p} `weight|bias`.
 */
type Rule = readonly [canonical: string, other: string];

const OFFICIAL_RULES: readonly Rule[] = [
  ['stem.0.{p}', 'downsample_layers.0.0.{p}'],
  ['stem.1.{p}', 'downsample_layers.0.1.{p}'],
  ['stages.{s}.downsample.{j}.{p}', 'downsample_layers.{s}.{j}.{p}'],
  ['stages.{s}.blocks.{b}.conv_dw.{p}', 'stages.{s}.{b}.dwconv.{p}'],
  ['stages.{s}.blocks.{b}.norm.{p}', 'stages.{s}.{b}.norm.{p}'],
  ['stages.{s}.blocks.{b}.mlp.fc1.{p}', 'stages.{s}.{b}.pwconv1.{p}'],
  ['stages.{s}.blocks.{b}.mlp.grn.weight', 'stages.{s}.{b}.grn.gamma'],
  ['stages.{s}.blocks.{b}.mlp.grn.bias', 'stages.{s}.{b}.grn.beta'],
  ['stages.{s}.blocks.{b}.mlp.fc2.{p}', 'stages.{s}.{b}.pwconv2.{p}'],
  ['stages.{s}.blocks.{b}.gamma', 'stages.{s}.{b}.gamma'],
  ['head.norm.{p}', 'norm.{p}'],
  ['head.fc.{p}', 'head.{p}'],
];

/** Hugging Face names, as in `ConvNextV2ForImageClassification`. */
const HF_RULES: readonly Rule[] = [
  ['stem.0.{p}', 'convnextv2.embeddings.patch_embeddings.{p}'],
  ['stem.1.{p}', 'convnextv2.embeddings.layernorm.{p}'],
  ['stages.{s}.downsample.{j}.{p}', 'convnextv2.encoder.stages.{s}.downsampling_layer.{j}.{p}'],
  ['stages.{s}.blocks.{b}.conv_dw.{p}', 'convnextv2.encoder.stages.{s}.layers.{b}.dwconv.{p}'],
  ['stages.{s}.blocks.{b}.norm.{p}', 'convnextv2.encoder.stages.{s}.layers.{b}.layernorm.{p}'],
  ['stages.{s}.blocks.{b}.mlp.fc1.{p}', 'convnextv2.encoder.stages.{s}.layers.{b}.pwconv1.{p}'],
  ['stages.{s}.blocks.{b}.mlp.grn.{p}', 'convnextv2.encoder.stages.{s}.layers.{b}.grn.{p}'],
  ['stages.{s}.blocks.{b}.mlp.fc2.{p}', 'convnextv2.encoder.stages.{s}.layers.{b}.pwconv2.{p}'],
  ['head.norm.{p}', 'convnextv2.layernorm.{p}'],
  ['head.fc.{p}', 'classifier.{p}'],
];

interface CompiledRule { from: RegExp; fromKeys: string[]; to: string }

function compile(pattern: string): { re: RegExp; keys: string[] } {
  const keys: string[] = [];
  const src = pattern.replace(/\./g, '\\.').replace(/\{(\w)\}/g, (_m, k: string) => {
    keys.push(k);
    return k === 'p' ? '(weight|bias)' : '(0|[1-9]\\d{0,5})';
  });
  return { re: new RegExp(`^${src}$`), keys };
}

function compileRules(rules: readonly Rule[], toCanonical: boolean): CompiledRule[] {
  return rules.map(([canon, other]) => {
    const { re, keys } = compile(toCanonical ? other : canon);
    return { from: re, fromKeys: keys, to: toCanonical ? canon : other };
  });
}

function applyRules(rules: readonly CompiledRule[], name: string): string | null {
  for (const r of rules) {
    const m = r.from.exec(name);
    if (!m) continue;
    const vals: Record<string, string> = {};
    r.fromKeys.forEach((k, i) => { vals[k] = m[i + 1]; });
    return r.to.replace(/\{(\w)\}/g, (_x, k: string) => vals[k]);
  }
  return null;
}

const TO_CANONICAL: Record<Naming, CompiledRule[] | null> = {
  timm: null,
  official: compileRules(OFFICIAL_RULES, true),
  hf: compileRules(HF_RULES, true),
};
const FROM_CANONICAL: Record<Naming, CompiledRule[] | null> = {
  timm: null,
  official: compileRules(OFFICIAL_RULES, false),
  hf: compileRules(HF_RULES, false),
};

/** How a tensor's layout may differ from the canonical one. */
type Layout = 'exact' | 'linear' | 'grn';

function layoutOf(canonical: string): Layout {
  if (/\.mlp\.fc[12]\.weight$/.test(canonical)) return 'linear';
  if (/\.mlp\.grn\.(weight|bias)$/.test(canonical)) return 'grn';
  return 'exact';
}

/** The canonical shape of a tensor stored as `shape`, when it is an accepted variant; else `shape`. */
function canonicalShape(layout: Layout, shape: readonly number[]): number[] {
  if (layout === 'linear' && shape.length === 4 && shape[2] === 1 && shape[3] === 1) return [shape[0], shape[1]];
  if (layout === 'grn' && shape.length > 1 && shape.slice(0, -1).every((d) => d === 1)) return [shape[shape.length - 1]];
  return [...shape];
}

/** The shape a source tensor should have had, in the same layout variant as `given`. */
function expectedSourceShape(layout: Layout, spec: readonly number[], given: readonly number[]): number[] {
  if (layout === 'linear' && given.length === 4) return [...spec, 1, 1];
  if (layout === 'grn' && given.length > 1) return [...new Array<number>(given.length - 1).fill(1), ...spec];
  return [...spec];
}

function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function listNames(names: readonly string[], max = 8): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

// ---------------------------------------------------------------------------------------------
// Detection

/** Name of the stem convolution weight in each naming (the marker used for detection). */
const MARKERS: ReadonlyArray<readonly [Naming, string]> = [
  ['timm', 'stem.0.weight'],
  ['official', 'downsample_layers.0.0.weight'],
  ['hf', 'embeddings.patch_embeddings.weight'],
];

/** Prefixes that hold something other than the model's weights; used only as a last resort. */
const NON_MODEL_PREFIX = /^(grad|grads|optimizer|optim|ema|model_ema|state_ema|fcmae|teacher|momentum)[._]/;

export interface DetectedNaming {
  naming: Naming;
  /** Prefix stripped from every key (e.g. `module.`); for `hf`, the prefix outside `convnextv2.`. */
  prefix: string;
  /** For `hf`: true when the keys lack the `convnextv2.` level (a bare ConvNextV2Model). */
  bare?: boolean;
}

/**
 * Detects the naming and key prefix of a state dict from its keys. Throws a ConvNextError when
 * no stem weight is found, or for an official FCMAE pre-training checkpoint (sparse encoder).
 */
export function detectNaming(keys: Iterable<string>, label = 'checkpoint'): DetectedNaming {
  const all = [...keys];
  const found: Array<DetectedNaming & { score: [number, number] }> = [];
  for (const key of all) {
    for (const [naming, marker] of MARKERS) {
      if (!key.endsWith(marker)) continue;
      let prefix = key.slice(0, key.length - marker.length);
      if (prefix !== '' && !prefix.endsWith('.')) continue;
      let bare: boolean | undefined;
      if (naming === 'hf') {
        bare = !(prefix === 'convnextv2.' || prefix.endsWith('.convnextv2.'));
        if (!bare) prefix = prefix.slice(0, prefix.length - 'convnextv2.'.length);
      }
      found.push({ naming, prefix, bare, score: [NON_MODEL_PREFIX.test(prefix) ? 1 : 0, prefix.length] });
    }
  }
  const sparse = all.find((k) => /(^|\.)(dwconv|downsample_layers\.\d+\.1)\.kernel$/.test(k));
  if (sparse) {
    throw new ConvNextError(`${label}: is an official FCMAE pre-training checkpoint (sparse encoder tensors such as ${sparse}); read it with loadCheckpoint, which remaps its kernels`);
  }
  if (found.length === 0) {
    throw new ConvNextError(`${label}: cannot recognise the parameter names (no stem weight stem.0.weight, downsample_layers.0.0.weight or embeddings.patch_embeddings.weight); first names: ${listNames(all, 5) || 'none'}`);
  }
  found.sort((a, b) => a.score[0] - b.score[0] || a.score[1] - b.score[1]);
  const best = found[0];
  const tie = found.find((f, i) => i > 0 && f.score[0] === best.score[0] && f.score[1] === best.score[1] && (f.prefix !== best.prefix || f.naming !== best.naming));
  if (tie) {
    throw new ConvNextError(`${label}: holds several models (key prefixes '${best.prefix}' and '${tie.prefix}'); choose one with the prefix option`);
  }
  const out: DetectedNaming = { naming: best.naming, prefix: best.prefix };
  if (best.naming === 'hf') out.bare = best.bare;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Planning: names and shapes only (no tensor data), so files are validated before reading.

export interface PlanOptions {
  /** Label for error messages, e.g. the file name (`checkpoint <source>: ...`). */
  source?: string;
  /** Skip detection: use this naming. */
  naming?: Naming;
  /** Skip detection of the key prefix (with `naming`, or alone to pick among several models). */
  prefix?: string;
  /** Config fields the tensors cannot tell (eps, drop path); checked against the tensors where they can. */
  declared?: Partial<ConvNeXtV2Config>;
  /** Accept tensors that map to nothing (listed in `unused`) instead of failing. */
  allowUnexpected?: boolean;
  /**
   * Canonical names that may be absent: they are listed in `initialised` and take their
   * initial values (only parameters initialised to ones or zeros, e.g. `head.norm.*`).
   */
  initialise?: readonly string[];
}

export interface PlanEntry {
  /** Canonical name. */
  name: string;
  /** Name in the source. */
  source: string;
  /** Canonical shape (the source shape with 1x1 / GRN singleton dimensions dropped). */
  shape: number[];
}

export interface MappingPlan {
  naming: Naming;
  prefix: string;
  config: ConvNeXtV2Config;
  /** The named size (`atto` ... `huge`) whose depths and dims match, if any. */
  modelName?: string;
  /** One entry per `paramSpecs(config)` parameter present in the source, in that order. */
  entries: PlanEntry[];
  /** Parameters absent from the source that take their initial values (see `initialise`). */
  initialised: string[];
  /** Source names that map to no parameter (only with `allowUnexpected`). */
  unused: string[];
}

class Votes {
  private readonly counts = new Map<number, number>();
  add(v: number | undefined): void {
    if (v === undefined || !Number.isSafeInteger(v) || v < 0) return;
    this.counts.set(v, (this.counts.get(v) ?? 0) + 1);
  }
  /** The value most tensors agree on (ties: the first seen). */
  winner(): number | undefined {
    let best: number | undefined;
    let bestN = 0;
    for (const [v, n] of this.counts) if (n > bestN) { best = v; bestN = n; }
    return best;
  }
}

/** The named size with these depths and dims, if any. */
export function matchModelSize(depths: readonly number[], dims: readonly number[]): string | undefined {
  for (const [name, s] of Object.entries(MODEL_SIZES)) {
    if (sameShape(s.depths, depths) && sameShape(s.dims, dims)) return name;
  }
  return undefined;
}

/** Upper bound on blocks per stage (the largest model has 27). */
const MAX_BLOCKS = 1000;

/** Infers the architecture from canonical names and shapes (a majority vote per quantity). */
function inferConfig(label: string, shapes: ReadonlyMap<string, number[]>, declared: Partial<ConvNeXtV2Config>): ConvNeXtV2Config {
  const dimVotes = [new Votes(), new Votes(), new Votes(), new Votes()];
  const inVotes = new Votes();
  const kVotes = new Votes();
  const clsVotes = new Votes();
  const maxBlock = [-1, -1, -1, -1];
  let layerScales = 0;
  let grns = 0;
  const quarter = (v: number | undefined) => (v !== undefined && v % 4 === 0 ? v / 4 : undefined);
  for (const [name, sh] of shapes) {
    let m: RegExpExecArray | null;
    if ((m = /^stem\.([01])\.(weight|bias)$/.exec(name))) {
      dimVotes[0].add(sh[0]);
      if (m[1] === '0' && m[2] === 'weight' && sh.length === 4) inVotes.add(sh[1]);
    } else if ((m = /^stages\.([1-3])\.downsample\.([01])\.(weight|bias)$/.exec(name))) {
      const s = Number(m[1]);
      if (m[2] === '0') dimVotes[s - 1].add(sh[0]);
      else {
        dimVotes[s].add(sh[0]);
        if (m[3] === 'weight' && sh.length === 4) dimVotes[s - 1].add(sh[1]);
      }
    } else if ((m = /^stages\.([0-3])\.blocks\.(\d+)\.(.+)$/.exec(name))) {
      const s = Number(m[1]);
      const b = Number(m[2]);
      if (b >= MAX_BLOCKS) throw new ConvNextError(`${label}: tensor ${name} has an implausible block index ${m[2]}`);
      maxBlock[s] = Math.max(maxBlock[s], b);
      const d = dimVotes[s];
      switch (m[3]) {
        case 'conv_dw.weight':
          d.add(sh[0]);
          if (sh.length === 4) kVotes.add(sh[2]);
          break;
        case 'conv_dw.bias': case 'norm.weight': case 'norm.bias': case 'mlp.fc2.bias':
          d.add(sh[0]);
          break;
        case 'gamma':
          d.add(sh[0]);
          layerScales++;
          break;
        case 'mlp.fc1.weight':
          if (sh.length === 2) { d.add(sh[1]); d.add(quarter(sh[0])); }
          break;
        case 'mlp.fc2.weight':
          if (sh.length === 2) { d.add(sh[0]); d.add(quarter(sh[1])); }
          break;
        case 'mlp.grn.weight': case 'mlp.grn.bias':
          grns++;
          d.add(quarter(sh[0]));
          break;
        case 'mlp.fc1.bias':
          d.add(quarter(sh[0]));
          break;
        default:
          break;
      }
    } else if (/^head\.norm\.(weight|bias)$/.test(name)) {
      dimVotes[3].add(sh[0]);
    } else if (name === 'head.fc.weight') {
      clsVotes.add(sh[0]);
      if (sh.length === 2) dimVotes[3].add(sh[1]);
    } else if (name === 'head.fc.bias') {
      clsVotes.add(sh[0]);
    }
  }
  const dims: number[] = [];
  for (let s = 0; s < 4; s++) {
    const d = dimVotes[s].winner();
    if (d === undefined) throw new ConvNextError(`${label}: cannot tell the width of stage ${s} (no tensors for it)`);
    dims.push(d);
  }
  const depths = maxBlock.map((b) => b + 1);
  const cfg: ConvNeXtV2Config = {
    dropPathRate: 0,
    headInitScale: 1,
    layerNormEps: 1e-6,
    headNormEps: 1e-6,
    ...declared,
    depths,
    dims,
    numClasses: clsVotes.winner() ?? 0,
    inChans: inVotes.winner() ?? declared.inChans ?? 3,
    kernelSize: kVotes.winner() ?? declared.kernelSize ?? 7,
    // ConvNeXt V1 blocks: LayerScale and no GRN (with both, the gammas are left over as unexpected).
    block: layerScales > 0 && grns === 0 ? 'v1' : 'v2',
  };
  // What the metadata / config.json says must agree with the tensors.
  for (const key of ['depths', 'dims', 'numClasses', 'inChans', 'kernelSize', 'block'] as const) {
    const want = declared[key];
    if (want === undefined) continue;
    const got = cfg[key];
    const same = Array.isArray(want) && Array.isArray(got) ? sameShape(want, got) : want === got;
    if (!same) {
      const fmt = (v: unknown) => (Array.isArray(v) ? shapeStr(v as number[]) : String(v));
      throw new ConvNextError(`${label}: its config says ${key} ${fmt(want)} but the tensors say ${fmt(got)}`);
    }
  }
  try {
    validateConfig(cfg);
  } catch (err) {
    throw new ConvNextError(`${label}: the tensors describe no valid model (${err instanceof Error ? err.message : String(err)})`);
  }
  return cfg;
}

/**
 * Maps source names and shapes onto the canonical parameters: detects the naming (unless
 * given), infers the config and validates every shape. Throws a one-line ConvNextError naming
 * the first wrong tensor, or listing missing and unexpected tensors.
 */
export function planCanonical(shapes: Iterable<readonly [string, readonly number[]]>, opts: PlanOptions = {}): MappingPlan {
  const label = `checkpoint ${opts.source ?? '(state dict)'}`.replace(/\s+/g, ' ');
  const srcShapes = new Map<string, readonly number[]>();
  for (const [k, sh] of shapes) srcShapes.set(k, sh);

  let det: DetectedNaming;
  if (opts.naming !== undefined) {
    det = { naming: opts.naming, prefix: opts.prefix ?? '' };
    if (opts.naming === 'hf') {
      const p = det.prefix;
      det.bare = ![...srcShapes.keys()].some((k) => k.startsWith(`${p}convnextv2.`));
    }
  } else {
    const keys = opts.prefix === undefined ? srcShapes.keys() : [...srcShapes.keys()].filter((k) => k.startsWith(opts.prefix as string));
    det = detectNaming(keys, label);
    if (opts.prefix !== undefined && det.prefix !== opts.prefix) det = { ...det, prefix: opts.prefix };
  }
  const { naming, prefix } = det;
  const rules = TO_CANONICAL[naming];

  // Map names; anything that maps to nothing is left over.
  const unexpected: string[] = [];
  const mapped = new Map<string, { source: string; shape: readonly number[] }>();
  for (const [key, shape] of srcShapes) {
    let canon: string | null = null;
    if (key.startsWith(prefix)) {
      let k = key.slice(prefix.length);
      if (naming === 'hf' && det.bare) k = `convnextv2.${k}`;
      canon = rules ? applyRules(rules, k) : k;
    }
    if (canon === null) { unexpected.push(key); continue; }
    const prev = mapped.get(canon);
    if (prev) throw new ConvNextError(`${label}: tensors ${prev.source} and ${key} both map to ${canon}`);
    mapped.set(canon, { source: key, shape });
  }

  const canonShapes = new Map<string, number[]>();
  for (const [canon, { shape }] of mapped) canonShapes.set(canon, canonicalShape(layoutOf(canon), shape));
  const config = inferConfig(label, canonShapes, opts.declared ?? {});

  const entries: PlanEntry[] = [];
  const missing: string[] = [];
  const initialised: string[] = [];
  const mayInit = new Set(opts.initialise ?? []);
  const wrong: string[] = [];
  const used = new Set<string>();
  for (const spec of paramSpecs(config)) {
    const m = mapped.get(spec.name);
    if (!m && mayInit.has(spec.name) && spec.init !== 'trunc_normal') {
      initialised.push(spec.name);
      continue;
    }
    if (!m) {
      const srcName = naming === 'timm' ? spec.name : fromCanonicalName(naming, spec.name, det.bare);
      missing.push(`${prefix}${srcName}`);
      continue;
    }
    used.add(spec.name);
    const shape = canonShapes.get(spec.name) as number[];
    if (!sameShape(shape, spec.shape)) {
      const layout = layoutOf(spec.name);
      const named = m.source === spec.name ? m.source : `${m.source} (${spec.name})`;
      wrong.push(`tensor ${named} has shape ${shapeStr(m.shape)}, expected ${shapeStr(expectedSourceShape(layout, spec.shape, m.shape))}`);
      continue;
    }
    entries.push({ name: spec.name, source: m.source, shape: [...spec.shape] });
  }
  for (const [canon, m] of mapped) if (!used.has(canon)) unexpected.push(m.source);

  if (wrong.length > 0) {
    const more = wrong.length > 1 ? ` (and ${wrong.length - 1} more tensors with wrong shapes)` : '';
    throw new ConvNextError(`${label}: ${wrong[0]}${more}`);
  }
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing tensor${missing.length > 1 ? 's' : ''} ${listNames(missing)}`);
  if (unexpected.length > 0 && !opts.allowUnexpected) {
    problems.push(`unexpected tensor${unexpected.length > 1 ? 's' : ''} ${listNames(unexpected)}`);
  }
  if (problems.length > 0) {
    const model = `${naming} naming, depths ${shapeStr(config.depths)}, dims ${shapeStr(config.dims)}, ${config.numClasses} classes`;
    throw new ConvNextError(`${label}: ${problems.join('; ')} (read as ${model})`);
  }
  const plan: MappingPlan = { naming, prefix, config, entries, initialised, unused: unexpected };
  const modelName = matchModelSize(config.depths, config.dims);
  if (modelName !== undefined) plan.modelName = modelName;
  return plan;
}

export interface CanonicalResult extends MappingPlan {
  /** Canonical state dict, in `paramSpecs(config)` order. Arrays are shared with the input. */
  state: StateDict;
}

/**
 * Converts a state dict in any accepted naming into the canonical one and infers its config.
 * The returned tensors share their Float32Arrays with the input (only shapes change).
 */
export function toCanonical(sd: ReadonlyMap<string, TensorData>, opts: PlanOptions = {}): CanonicalResult {
  const plan = planCanonical([...sd].map(([k, t]) => [k, t.shape] as const), opts);
  const state = buildState(plan, (e) => {
    const t = sd.get(e.source) as TensorData;
    if (t.data.length !== e.shape.reduce((a, b) => a * b, 1)) {
      throw new ConvNextError(`checkpoint ${opts.source ?? '(state dict)'}: tensor ${e.source} has ${t.data.length} values for shape ${shapeStr(t.shape)}`);
    }
    return t.data;
  });
  return { ...plan, state };
}

/**
 * The canonical state dict of a plan in `paramSpecs` order: `read` gives each entry's values,
 * parameters in `plan.initialised` get their initial values (ones or zeros).
 */
function buildState(plan: MappingPlan, read: (e: PlanEntry) => Float32Array): StateDict {
  const byName = new Map(plan.entries.map((e) => [e.name, e]));
  const init = new Set(plan.initialised);
  const state: StateDict = new Map();
  for (const spec of paramSpecs(plan.config)) {
    const e = byName.get(spec.name);
    if (e) state.set(spec.name, { shape: [...e.shape], data: read(e) });
    else if (init.has(spec.name)) {
      const data = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
      if (spec.init !== 'trunc_normal') data.fill(initConstant(spec.init));
      state.set(spec.name, { shape: [...spec.shape], data });
    }
  }
  return state;
}

// ---------------------------------------------------------------------------------------------
// Exports to other namings

function fromCanonicalName(naming: Naming, name: string, bare?: boolean): string {
  const rules = FROM_CANONICAL[naming];
  if (!rules) return name;
  const out = applyRules(rules, name);
  if (out === null) throw new ConvNextError(`cannot export tensor ${name}: not a canonical parameter name`);
  return naming === 'hf' && bare && out.startsWith('convnextv2.') ? out.slice('convnextv2.'.length) : out;
}

function checkCanonicalName(name: string): void {
  // The canonical names are exactly those the official rules can express.
  if (applyRules(FROM_CANONICAL.official as CompiledRule[], name) === null) {
    throw new ConvNextError(`cannot export tensor ${name}: not a canonical parameter name`);
  }
}

export interface TimmExportOptions {
  /** Write the MLP as 1x1 convolutions ([out,in,1,1]), timm's `conv_mlp` form for atto..nano. */
  convMlp?: boolean;
}

/** Canonical -> timm names (the same names; optionally the conv-MLP layout). Arrays are shared. */
export function toTimmNames(state: ReadonlyMap<string, TensorData>, opts: TimmExportOptions = {}): StateDict {
  const out: StateDict = new Map();
  for (const [name, t] of state) {
    checkCanonicalName(name);
    const shape = opts.convMlp && layoutOf(name) === 'linear' ? [...t.shape, 1, 1] : [...t.shape];
    out.set(name, { shape, data: t.data });
  }
  return out;
}

/** Canonical -> official ConvNeXt-V2 names (GRN gamma/beta as [1,1,1,C]). Arrays are shared. */
export function toOfficialNames(state: ReadonlyMap<string, TensorData>): StateDict {
  const out: StateDict = new Map();
  for (const [name, t] of state) {
    const shape = layoutOf(name) === 'grn' ? [1, 1, 1, ...t.shape] : [...t.shape];
    out.set(fromCanonicalName('official', name), { shape, data: t.data });
  }
  return out;
}

/** Canonical -> Hugging Face `ConvNextV2ForImageClassification` names. Arrays are shared. */
export function toHfNames(state: ReadonlyMap<string, TensorData>): StateDict {
  const out: StateDict = new Map();
  for (const [name, t] of state) {
    const shape = layoutOf(name) === 'grn' ? [1, 1, 1, ...t.shape] : [...t.shape];
    out.set(fromCanonicalName('hf', name), { shape, data: t.data });
  }
  return out;
}

/** Canonical -> any naming. */
export function toNaming(state: ReadonlyMap<string, TensorData>, naming: Naming, opts: TimmExportOptions = {}): StateDict {
  if (naming === 'official') return toOfficialNames(state);
  if (naming === 'hf') return toHfNames(state);
  return toTimmNames(state, opts);
}

/**
 * A Hugging Face `config.json`: `ConvNextV2ForImageClassification` with `id2label`, or a bare
 * `ConvNextV2Model` for a backbone (numClasses 0). `layer_norm_eps` is the final norm's
 * epsilon (headNormEps; transformers uses 1e-6 for the other norms, as we do).
 */
export function hfConfigJson(config: ConvNeXtV2Config, labels?: readonly string[], pre: Preprocessing = DEFAULT_PREPROCESSING): Record<string, unknown> {
  const n = config.numClasses;
  const out: Record<string, unknown> = {
    architectures: [n > 0 ? 'ConvNextV2ForImageClassification' : 'ConvNextV2Model'],
    model_type: 'convnextv2',
    depths: [...config.depths],
    hidden_sizes: [...config.dims],
    num_channels: config.inChans,
    num_stages: 4,
    patch_size: 4,
    hidden_act: 'gelu',
    layer_norm_eps: config.headNormEps,
    drop_path_rate: config.dropPathRate,
    initializer_range: 0.02,
    image_size: pre.inputSize,
  };
  if (n > 0) {
    const names = labels && labels.length === n ? labels : Array.from({ length: n }, (_v, i) => `LABEL_${i}`);
    const id2label: Record<string, string> = {};
    const label2id: Record<string, number> = {};
    names.forEach((l, i) => {
      Object.defineProperty(id2label, String(i), { value: l, enumerable: true, writable: true, configurable: true });
      Object.defineProperty(label2id, l, { value: i, enumerable: true, writable: true, configurable: true });
    });
    out.id2label = id2label;
    out.label2id = label2id;
  }
  return out;
}

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
function readJsonObject(files: FileSet, f: string): Record<string, unknown> {
  try {
    if (files.kind(f) !== 'file') return {};
    const v = JSON.parse(files.readText(f)) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** timm's config.json `label_names`, when it has them. */
function readTimmLabels(files: FileSet, f: string): string[] | undefined {
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
function readPreprocessing(files: FileSet, metadata: Record<string, string>, hfConfig: string | undefined, args: unknown, timmConfig?: string): Preprocessing | undefined {
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

/**
 * Whether timm stores this model's MLP as 1x1 convolutions: its registered convnextv2_atto,
 * _femto, _pico and _nano set `conv_mlp=True`; every other size, and timm's `ConvNeXt`
 * default for custom depths/dims, uses Linear layers.
 */
export function timmUsesConvMlp(config: Pick<ConvNeXtV2Config, 'depths' | 'dims'>): boolean {
  const name = matchModelSize(config.depths, config.dims);
  return name !== undefined && ['atto', 'femto', 'pico', 'nano'].includes(name);
}

export interface ExportOptions extends TimmExportOptions {
  naming: Naming;
  /** The preprocessing the model was trained with (written to every target that has a place for it). */
  preprocessing?: Preprocessing;
  /** Class names (written to config.json for `hf`, to metadata otherwise). */
  labels?: readonly string[];
  /**
   * For `official`: `torch` writes a `torch.save` zip holding `{"model": state_dict}` (what
   * `torch.load(f)["model"]` of the official code expects); default safetensors.
   */
  container?: 'safetensors' | 'torch';
}

/** What an export writes: one safetensors or torch.save file, or an HF folder's three files. */
export interface ExportPlan {
  kind: 'safetensors' | 'torch' | 'hf';
  tensors: StateDict;
  /** safetensors metadata (`kind: 'safetensors'`; `{format: 'pt'}` for the HF weights). */
  metadata: Record<string, string>;
  /** For `hf`: config.json and preprocessor_config.json, as text. */
  configJson?: string;
  preprocessorJson?: string;
}

/** Checks a model for export under `opts` and names what to write (see {@link exportCheckpoint} in io/checkpoint_file.ts). */
export function planExport(model: { config: ConvNeXtV2Config; state: ReadonlyMap<string, TensorData> }, opts: ExportOptions, label: string): ExportPlan {
  checkState(model.config, model.state, `cannot export to ${label}`);
  if (opts.naming === 'hf' && model.config.block === 'v1') {
    throw new ConvNextError(`cannot export to ${label}: Hugging Face's ConvNextV2 has no ConvNeXt V1 blocks (LayerScale); use timm or official naming`);
  }
  let tensors = toNaming(model.state, opts.naming, opts);
  if (opts.naming === 'hf') {
    if (model.config.numClasses === 0) {
      // save_pretrained of a ConvNextV2Model: no `convnextv2.` level.
      tensors = new Map([...tensors].map(([k, t]) => [k.startsWith('convnextv2.') ? k.slice('convnextv2.'.length) : k, t]));
    }
    const json = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
    const pre = opts.preprocessing ?? DEFAULT_PREPROCESSING;
    return {
      kind: 'hf', tensors, metadata: { format: 'pt' },
      configJson: json(hfConfigJson(model.config, opts.labels, pre)), preprocessorJson: json(hfPreprocessorJson(pre)),
    };
  }
  if (opts.container === 'torch') {
    if (opts.naming !== 'official') throw new ConvNextError(`cannot export to ${label}: torch.save files are written in the official naming only`);
    return { kind: 'torch', tensors, metadata: {} };
  }
  const metadata: Record<string, string> = { format: 'pt', naming: opts.naming, config: configJson(model.config), ...preprocessingMetadata(opts.preprocessing) };
  if (opts.labels) metadata.labels = JSON.stringify(opts.labels);
  return { kind: 'safetensors', tensors, metadata };
}

/**
 * An export as bytes (a browser download): one file (`model.safetensors` for timm/official,
 * `model.pt` for the torch container) or, for `hf`, the folder's three files by name.
 */
export function exportBytes(model: { config: ConvNeXtV2Config; state: ReadonlyMap<string, TensorData> }, opts: ExportOptions): Map<string, Uint8Array> {
  const plan = planExport(model, opts, 'a buffer');
  const text = (t: string) => new TextEncoder().encode(t);
  if (plan.kind === 'hf') {
    return new Map([
      ['model.safetensors', serializeSafetensors(plan.tensors, plan.metadata)],
      ['config.json', text(plan.configJson!)],
      ['preprocessor_config.json', text(plan.preprocessorJson!)],
    ]);
  }
  if (plan.kind === 'torch') return new Map([['model.pt', serializeTorchCheckpoint({ model: plan.tensors })]]);
  return new Map([['model.safetensors', serializeSafetensors(plan.tensors, plan.metadata)]]);
}

// ---------------------------------------------------------------------------------------------
// Our own checkpoints

/** Checks that `state` holds exactly the parameters of `config` with their shapes. */
export function checkState(config: ConvNeXtV2Config, state: ReadonlyMap<string, TensorData>, label: string): void {
  const specs = paramSpecs(config);
  const missing: string[] = [];
  for (const s of specs) {
    const t = state.get(s.name);
    if (!t) { missing.push(s.name); continue; }
    if (!sameShape(t.shape, s.shape)) throw new ConvNextError(`${label}: tensor ${s.name} has shape ${shapeStr(t.shape)}, expected ${shapeStr(s.shape)}`);
    if (t.data.length !== s.shape.reduce((a, b) => a * b, 1)) {
      throw new ConvNextError(`${label}: tensor ${s.name} has ${t.data.length} values for shape ${shapeStr(s.shape)}`);
    }
  }
  if (missing.length > 0) throw new ConvNextError(`${label}: missing tensor${missing.length > 1 ? 's' : ''} ${listNames(missing)}`);
  if (state.size !== specs.length) {
    const known = new Set(specs.map((s) => s.name));
    const extra = [...state.keys()].filter((k) => !known.has(k));
    throw new ConvNextError(`${label}: unexpected tensor${extra.length > 1 ? 's' : ''} ${listNames(extra)}`);
  }
}

export interface SaveCheckpointInput {
  config: ConvNeXtV2Config;
  /** Canonical state dict (exactly `paramSpecs(config)`). */
  state: ReadonlyMap<string, TensorData>;
  /** Further tensors, each name starting with `optimizer.`, `ema.` or `fcmae.`. */
  extra?: ReadonlyMap<string, TensorData>;
  /** String metadata (step, epoch, RNG states, ...); `config` and `format` are set here. */
  metadata?: Readonly<Record<string, string>>;
  /** Class names, stored as JSON in metadata `labels`. */
  labels?: readonly string[];
  /** Parameters that hold initial values, not trained ones (metadata `initialised`, JSON). */
  initialised?: readonly string[];
  /** FCMAE decoder setup of the `fcmae.` extras (metadata `fcmae`, JSON). */
  fcmae?: FcmaeInfo;
}

/**
 * The tensors and metadata of one of our checkpoints: canonical tensors in `paramSpecs` order,
 * then the extras, with metadata `format: convnextv2` and `config` (JSON). `label` names errors.
 */
export function checkpointContents(ck: SaveCheckpointInput, label: string): { tensors: Array<readonly [string, TensorData]>; metadata: Record<string, string> } {
  validateConfig(ck.config);
  checkState(ck.config, ck.state, label);
  const tensors: Array<readonly [string, TensorData]> = paramSpecs(ck.config).map((s) => [s.name, ck.state.get(s.name) as TensorData] as const);
  for (const [name, t] of ck.extra ?? []) {
    if (!EXTRA_PREFIXES.some((p) => name.startsWith(p) && name.length > p.length)) {
      throw new ConvNextError(`${label}: extra tensor ${name} must start with ${EXTRA_PREFIXES.join(', ')}`);
    }
    tensors.push([name, t]);
  }
  const metadata: Record<string, string> = { ...(ck.metadata ?? {}) };
  if (ck.labels) metadata.labels = JSON.stringify(ck.labels);
  if (ck.initialised && ck.initialised.length > 0) metadata.initialised = JSON.stringify(ck.initialised);
  if (ck.fcmae) metadata.fcmae = JSON.stringify(ck.fcmae);
  metadata.format = 'convnextv2';
  metadata.config = configJson(ck.config);
  return { tensors, metadata };
}

/** One of our checkpoints as safetensors bytes (a browser download; the CLI loads it). */
export function serializeCheckpoint(ck: SaveCheckpointInput): Uint8Array {
  const { tensors, metadata } = checkpointContents(ck, 'cannot serialize checkpoint');
  return serializeSafetensors(tensors, metadata);
}

// ---------------------------------------------------------------------------------------------
// Loading

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

/** Resolves a checkpoint path: a file, or a directory holding one of {@link CHECKPOINT_FILES}. */
/** A timm hub config.json (`architecture`, `pretrained_cfg`), not a transformers one (`model_type`). */
function isTimmConfig(files: FileSet, path: string): boolean {
  const j = readJsonObject(files, path);
  return !('model_type' in j) && (typeof j.architecture === 'string' || typeof j.pretrained_cfg === 'object');
}

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
