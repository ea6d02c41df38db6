/**
 * Planning: maps source names and shapes onto the canonical parameters (names and shapes
 * only, no tensor data, so files are validated before reading), and builds the canonical
 * state dict from a plan.
 */
import { ConvNextError } from '../../errors.js';
import { initConstant, paramSpecs, type ConvNeXtV2Config } from '../../model/config.js';
import { type TensorData } from '../safetensors.js';
import { detectNaming, type DetectedNaming } from './detect.js';
import { inferConfig, matchModelSize } from './infer.js';
import {
  TO_CANONICAL, applyRules, canonicalShape, expectedSourceShape, fromCanonicalName, layoutOf, listNames, sameShape, shapeStr,
  type Naming, type StateDict,
} from './names.js';

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
export function buildState(plan: MappingPlan, read: (e: PlanEntry) => Float32Array): StateDict {
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
