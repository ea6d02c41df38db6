/**
 * Parameter names: the state-dict types, the rules between canonical and official / Hugging Face
 * names, the layout variants a tensor may be stored in, and the canonical -> other naming
 * functions (toTimmNames, toOfficialNames, toHfNames, toNaming).
 */
import { ConvNextError } from '../../errors.js';
import { type TensorData } from '../safetensors.js';

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

export function applyRules(rules: readonly CompiledRule[], name: string): string | null {
  for (const r of rules) {
    const m = r.from.exec(name);
    if (!m) continue;
    const vals: Record<string, string> = {};
    r.fromKeys.forEach((k, i) => { vals[k] = m[i + 1]; });
    return r.to.replace(/\{(\w)\}/g, (_x, k: string) => vals[k]);
  }
  return null;
}

export const TO_CANONICAL: Record<Naming, CompiledRule[] | null> = {
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

export function layoutOf(canonical: string): Layout {
  if (/\.mlp\.fc[12]\.weight$/.test(canonical)) return 'linear';
  if (/\.mlp\.grn\.(weight|bias)$/.test(canonical)) return 'grn';
  return 'exact';
}

/** The canonical shape of a tensor stored as `shape`, when it is an accepted variant; else `shape`. */
export function canonicalShape(layout: Layout, shape: readonly number[]): number[] {
  if (layout === 'linear' && shape.length === 4 && shape[2] === 1 && shape[3] === 1) return [shape[0], shape[1]];
  if (layout === 'grn' && shape.length > 1 && shape.slice(0, -1).every((d) => d === 1)) return [shape[shape.length - 1]];
  return [...shape];
}

/** The shape a source tensor should have had, in the same layout variant as `given`. */
export function expectedSourceShape(layout: Layout, spec: readonly number[], given: readonly number[]): number[] {
  if (layout === 'linear' && given.length === 4) return [...spec, 1, 1];
  if (layout === 'grn' && given.length > 1) return [...new Array<number>(given.length - 1).fill(1), ...spec];
  return [...spec];
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function listNames(names: readonly string[], max = 8): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

// ---------------------------------------------------------------------------------------------
// Exports to other namings

export function fromCanonicalName(naming: Naming, name: string, bare?: boolean): string {
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
