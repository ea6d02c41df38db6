/**
 * Our own checkpoints: checking a canonical state dict against its config, and the tensors,
 * metadata and safetensors bytes of a `format: convnextv2` checkpoint.
 */
import { ConvNextError } from '../../errors.js';
import { configJson, paramSpecs, validateConfig, type ConvNeXtV2Config } from '../../model/config.js';
import { serializeSafetensors, type TensorData } from '../safetensors.js';
import { type FcmaeInfo } from '../fcmae.js';
import { EXTRA_PREFIXES, listNames, sameShape, shapeStr } from './names.js';

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
