/**
 * Tensor sources behind `loadCheckpoint`: one interface over a safetensors file (read
 * lazily), a PyTorch `torch.save` zip (`.pt`, `.pth`, `pytorch_model.bin`; detected by its
 * magic bytes, not its extension) and a Hugging Face sharded index
 * (`model.safetensors.index.json` / `pytorch_model.bin.index.json`: shards in the same folder),
 * read from a {@link FileSet} (Node's files or files in memory).
 */
import { ConvNextError } from '../errors.js';
import type { FileSet } from './files.js';
import { isPickleRecord, PickleGlobal, PickleExternal, type PickleValue } from './pickle.js';
import { type SafetensorsReader } from './safetensors.js';
import { sniff } from './sniff.js';
import { findStateDict, isTensorData, STATE_DICT_KEYS, torchTensorInfo } from './torch.js';

/** The file container a checkpoint came in. */
export type Container = 'safetensors' | 'torch' | 'safetensors-sharded' | 'torch-sharded';

/** A JSON-able value (records of `.pt` files, shown by `inspect`). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface TensorSource {
  readonly container: Container;
  /** Every tensor, in file order: name, shape, stored dtype. */
  readonly tensors: ReadonlyArray<{ name: string; shape: number[]; dtype: string }>;
  /** String metadata (safetensors `__metadata__`, the index's `metadata`); empty for `.pt`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** For `.pt`: the top-level key the state dict was taken from (`model`, `model_ema`, ...). */
  readonly stateDictKey?: string;
  /** For `.pt`: the other top-level entries (epoch, args, ...), summarised as JSON. */
  readonly records?: Record<string, JsonValue>;
  /** For `.pt`: the raw top-level entries other than the state dict (for args lookups). */
  readonly raw?: ReadonlyMap<string, PickleValue>;
  /** Float32 values of a tensor (a fresh array, or the array read from a `.pt`). */
  get(name: string): Float32Array;
  close(): void;
}

export interface OpenSourceOptions {
  /** For `.pt`: read `model_ema` instead of `model` (ignored for safetensors). */
  ema?: boolean;
}

/** Largest index JSON we parse. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

/** True when the bytes start like a torch.save file (zip, or a legacy pickle / tar). */
export function looksLikeTorch(b: Uint8Array): boolean {
  return (b.length >= 2 && b[0] === 0x50 && b[1] === 0x4b) || (b.length >= 2 && b[0] === 0x80 && b[1] >= 1 && b[1] <= 5);
}

/** Opens a checkpoint file of any supported container from `files`. */
export function openTensorSource(files: FileSet, file: string, opts: OpenSourceOptions = {}): TensorSource {
  if (file.endsWith('.index.json')) return openIndex(files, file, opts);
  const b = files.head(file, 64);
  if (looksLikeTorch(b)) return openTorch(files, file, opts);
  // Say what the file is when it is plainly no checkpoint (an image, an ONNX model, ...).
  const kind = sniff(b);
  if (kind && !/zip|pickle|text/.test(kind)) {
    throw new ConvNextError(`checkpoint ${file}: is ${kind}, not a checkpoint (safetensors, a torch.save .pt/.pth/.bin, or a Hugging Face folder)`);
  }
  return fromSafetensors(files.openSafetensors(file));
}

function fromSafetensors(r: SafetensorsReader, container: Container = 'safetensors'): TensorSource {
  return {
    container,
    tensors: r.tensors.map((t) => ({ name: t.name, shape: [...t.shape], dtype: t.dtype })),
    metadata: { ...r.metadata },
    get: (name) => r.get(name),
    close: () => r.close(),
  };
}

function openTorch(files: FileSet, file: string, opts: OpenSourceOptions, container: Container = 'torch'): TensorSource {
  const tree = files.readTorch(file);
  const label = `checkpoint ${file}`;
  let key: string | undefined;
  if (opts.ema) {
    const has = tree instanceof Map ? tree.has('model_ema') : isPickleRecord(tree) ? 'model_ema' in tree : false;
    if (!has) throw new ConvNextError(`${label}: holds no EMA weights (no "model_ema" entry)`);
    key = 'model_ema';
  }
  const sd = findStateDict(tree, key, label);
  // Which top-level entry held it (as findStateDict chooses; none: the file is the state dict).
  let stateDictKey: string | undefined;
  const raw = new Map<string, PickleValue>();
  if (tree instanceof Map) {
    const isSd = (v: PickleValue | undefined): boolean => v instanceof Map && v.size > 0 && [...v.values()].every((x) => isTensorData(x));
    stateDictKey = key ?? STATE_DICT_KEYS.find((k) => isSd(tree.get(k)));
    if (stateDictKey !== undefined) {
      for (const [k, v] of tree) if (typeof k === 'string' && k !== stateDictKey) raw.set(k, v);
    }
  }
  const records: Record<string, JsonValue> = {};
  for (const [k, v] of raw) Object.defineProperty(records, k, { value: summarise(v, 0), enumerable: true, writable: true, configurable: true });
  const tensors = [...sd].map(([name, t]) => ({ name, shape: [...t.shape], dtype: torchTensorInfo(t)?.dtype ?? 'float32' }));
  const src: TensorSource = {
    container,
    tensors,
    metadata: {},
    records,
    raw,
    get: (name) => {
      const t = sd.get(name);
      if (!t) throw new ConvNextError(`${label}: no tensor named ${name}`);
      return t.data;
    },
    close: () => { sd.clear(); },
  };
  if (stateDictKey !== undefined) (src as { stateDictKey?: string }).stateDictKey = stateDictKey;
  return src;
}

/** A short JSON view of a pickled value: tensors and big containers summarised. */
export function summarise(v: PickleValue | undefined, depth: number): JsonValue {
  if (v === undefined || v === null) return null;
  if (typeof v === 'boolean' || typeof v === 'string') return typeof v === 'string' && v.length > 500 ? `${v.slice(0, 500)}...` : v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return `<bytes ${v.length}>`;
  if (v instanceof PickleGlobal) return `<${v.qualname}>`;
  if (v instanceof PickleExternal) return `<${v.kind}>`;
  if (isTensorData(v)) return `<tensor [${v.shape.join(',')}]>`;
  if (v instanceof Set) return `<set of ${v.size}>`;
  if (Array.isArray(v)) {
    if (depth >= 3 || v.length > 32) return `<${Object.isFrozen(v) ? 'tuple' : 'list'} of ${v.length}>`;
    return v.map((x) => summarise(x, depth + 1));
  }
  if (v instanceof Map) {
    let tensors = 0;
    for (const x of v.values()) if (isTensorData(x)) tensors++;
    if (tensors > 0 && tensors === v.size) return `<state dict of ${v.size} tensors>`;
    if (depth >= 3 || v.size > 64) return `<dict of ${v.size} entries>`;
    const o: { [key: string]: JsonValue } = {};
    for (const [k, x] of v) {
      const key = typeof k === 'string' ? k : typeof k === 'number' || typeof k === 'bigint' ? String(k) : '<key>';
      Object.defineProperty(o, key, { value: summarise(x, depth + 1), enumerable: true, writable: true, configurable: true });
    }
    return o;
  }
  if (isPickleRecord(v)) {
    const o: { [key: string]: JsonValue } = { __class__: v.__class__ };
    const keys = Object.keys(v).filter((k) => k !== '__class__');
    if (depth >= 3 || keys.length > 200) return `<${v.__class__} with ${keys.length} fields>`;
    for (const k of keys) Object.defineProperty(o, k, { value: summarise(v[k], depth + 1), enumerable: true, writable: true, configurable: true });
    return o;
  }
  return '<object>';
}

/** A Hugging Face sharded checkpoint: `{"metadata": {...}, "weight_map": {tensor: shard}}`. */
function openIndex(files: FileSet, file: string, opts: OpenSourceOptions): TensorSource {
  const label = `checkpoint ${file}`;
  const kind = files.kind(file);
  if (kind === null) throw new ConvNextError(`${label}: no such file or directory`);
  if (kind === 'dir') throw new ConvNextError(`${label}: is a directory`);
  const size = files.size(file);
  if (size > MAX_INDEX_BYTES) throw new ConvNextError(`${label}: index of ${size} bytes is over ${MAX_INDEX_BYTES}`);
  const text = files.readText(file);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConvNextError(`${label}: not valid JSON`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConvNextError(`${label}: not a JSON object`);
  const j = json as Record<string, unknown>;
  const wm = j.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw new ConvNextError(`${label}: no "weight_map" object`);
  const dir = files.dirname(file);
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== 'string' || !/^[A-Za-z0-9_.-]{1,255}$/.test(shard) || shard === '.' || shard === '..' || shard.endsWith('.json')) {
      throw new ConvNextError(`${label}: weight_map entry ${JSON.stringify(name.slice(0, 80))} names a shard that is not a plain file name in the same folder`);
    }
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  if (byShard.size === 0) throw new ConvNextError(`${label}: weight_map is empty`);
  const shards: TensorSource[] = [];
  const owner = new Map<string, TensorSource>();
  const tensors: Array<{ name: string; shape: number[]; dtype: string }> = [];
  let torch = false;
  try {
    for (const [shard, names] of byShard) {
      const path = files.join(dir, shard);
      const src = looksLikeTorch(files.head(path, 8)) ? openTorch(files, path, opts, 'torch-sharded') : fromSafetensors(files.openSafetensors(path));
      if (src.container === 'torch-sharded') torch = true;
      shards.push(src);
      const have = new Map(src.tensors.map((t) => [t.name, t]));
      for (const n of names) {
        const t = have.get(n);
        if (!t) throw new ConvNextError(`${label}: shard ${shard} lacks tensor ${n} that the weight_map puts there`);
        if (owner.has(n)) throw new ConvNextError(`${label}: tensor ${n} is in two shards`);
        owner.set(n, src);
        tensors.push(t);
      }
    }
  } catch (err) {
    for (const s of shards) s.close();
    throw err;
  }
  const metadata: Record<string, string> = {};
  if (typeof j.metadata === 'object' && j.metadata !== null && !Array.isArray(j.metadata)) {
    for (const [k, v] of Object.entries(j.metadata as Record<string, unknown>)) {
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') metadata[k] = String(v);
    }
  }
  return {
    container: torch ? 'torch-sharded' : 'safetensors-sharded',
    tensors,
    metadata,
    get: (name) => {
      const s = owner.get(name);
      if (!s) throw new ConvNextError(`${label}: no tensor named ${name}`);
      return s.get(name);
    },
    close: () => { for (const s of shards) s.close(); },
  };
}
