/**
 * PyTorch checkpoints (`torch.save`, the zip format of PyTorch >= 1.6), read and written
 * without Python and without executing anything from the file.
 *
 * A checkpoint is a zip archive whose entries live under one top folder (`archive/`, or the
 * file's stem): `data.pkl` (a pickle of the saved object), `data/<key>` (raw storage bytes),
 * `version`, `byteorder`, `.format_version`, `.storage_alignment`, `.data/serialization_id`.
 * Tensors appear in the pickle as `torch._utils._rebuild_tensor_v2(storage, offset, size,
 * stride, requires_grad, backward_hooks[, metadata])` whose storage is a persistent id
 * `('storage', torch.FloatStorage, key, location, numel)`.
 *
 * Reading ({@link readTorchCheckpoint}) unpickles `data.pkl` with the restricted unpickler of
 * `pickle.ts` and an allow-list of torch rebuild functions implemented here in TypeScript;
 * every tensor becomes a contiguous float32 {@link TensorData} (float16, bfloat16, float64,
 * float8 and integer/bool storages are converted; strided views and storage offsets are
 * honoured; big-endian archives are byte-swapped). Storages are read with positioned reads,
 * only the bytes a tensor needs. Everything is validated before allocation: storage entries
 * must exist and be long enough for their tensors, and the tensors of one file may not need
 * more than twice the storage bytes (plus 64 MiB) in all, so views crafted to repeat a small
 * storage cannot exhaust memory.
 *
 * Writing ({@link writeTorchCheckpoint}) produces what torch.save (PyTorch 2.x, protocol 2)
 * writes, byte for byte in structure: the same pickle opcodes and memo layout, FloatStorage
 * storages, 64-byte aligned zip entries in the same order, so `torch.load(f)["model"]` (also
 * with `weights_only=True`) accepts it.
 */
import { ConvNextError } from '../errors.js';
import type { TensorData } from './safetensors.js';
import { concatBytes } from './bytes.js';
import { fp8e4m3Table, halfTable } from './lowp.js';
import { crc32, openZipBuffer, quoteEntryName, ZipWriter, type ZipEntry, type ZipReader } from './zip.js';
import {
  PickleExternal, PickleFunction, PickleGlobal, PickleWriter, isPickleRecord, isPlainDict, makeRecord, refusalReason, tupleOf, unpickle,
  type PickleDict, type PickleRecord, type PickleValue,
} from './pickle.js';

if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new Error('convnextv2 torch checkpoint I/O needs a little-endian host');

// ---------------------------------------------------------------------------------------------
// Dtypes

/** Element types of torch storages this reader converts to float32. */
export type TorchDtype =
  | 'float32' | 'float64' | 'float16' | 'bfloat16' | 'float8_e4m3fn' | 'float8_e5m2'
  | 'int64' | 'int32' | 'int16' | 'int8' | 'uint64' | 'uint32' | 'uint16' | 'uint8' | 'bool';

const ITEM_SIZE: Record<TorchDtype, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, float8_e4m3fn: 1, float8_e5m2: 1,
  int64: 8, int32: 4, int16: 2, int8: 1, uint64: 8, uint32: 4, uint16: 2, uint8: 1, bool: 1,
};

/** Legacy typed storage classes (as named in persistent ids) and their dtypes. */
const STORAGE_DTYPES: Record<string, TorchDtype | null> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8',
  ByteStorage: 'uint8', BoolStorage: 'bool', UntypedStorage: 'uint8',
  // Known but not convertible: a clear error when used.
  ComplexFloatStorage: null, ComplexDoubleStorage: null, QInt8Storage: null, QUInt8Storage: null,
  QInt32Storage: null, QUInt4x2Storage: null, QUInt2x4Storage: null,
};

/** `torch.<name>` dtype globals and the dtype they denote (null: known, unsupported). */
const DTYPE_GLOBALS: Record<string, TorchDtype | null> = {
  float32: 'float32', float: 'float32', float64: 'float64', double: 'float64', float16: 'float16',
  half: 'float16', bfloat16: 'bfloat16', float8_e4m3fn: 'float8_e4m3fn', float8_e5m2: 'float8_e5m2',
  int64: 'int64', long: 'int64', int32: 'int32', int: 'int32', int16: 'int16', short: 'int16',
  int8: 'int8', uint8: 'uint8', uint16: 'uint16', uint32: 'uint32', uint64: 'uint64', bool: 'bool',
  complex64: null, complex128: null, cfloat: null, cdouble: null, qint8: null, quint8: null, qint32: null,
  float8_e4m3fnuz: null, float8_e5m2fnuz: null,
};

/** Dtype and flags of a tensor as stored in the file (see {@link torchTensorInfo}). */
export interface TorchTensorInfo {
  /** Storage element type before conversion to float32. */
  dtype: TorchDtype;
  requiresGrad: boolean;
  /** The zip entry the values came from, e.g. `archive/data/3`. */
  storage: string;
}

const tensorInfo = new WeakMap<TensorData, TorchTensorInfo>();

/** Where a tensor returned by {@link readTorchCheckpoint} came from; undefined for other objects. */
export function torchTensorInfo(t: TensorData): TorchTensorInfo | undefined {
  return tensorInfo.get(t);
}

/** True for `{shape: number[], data: Float32Array}` values (tensors in a checkpoint tree). */
export function isTensorData(v: unknown): v is TensorData {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || isPickleRecord(v)) return false;
  const t = v as { shape?: unknown; data?: unknown };
  return t.data instanceof Float32Array && Array.isArray(t.shape);
}

/**
 * Converts `n` little-endian values of `dtype` (bytes at offset 0 of a fresh buffer) to
 * float32. May return a view of `bytes`' buffer for float32.
 */
function toFloat32(dtype: TorchDtype, bytes: Uint8Array, n: number): Float32Array {
  const buf = bytes.buffer;
  const off = bytes.byteOffset;
  const out = dtype === 'float32' ? new Float32Array(buf, off, n) : new Float32Array(n);
  switch (dtype) {
    case 'float32': break;
    case 'float64': { const s = new Float64Array(buf, off, n); for (let i = 0; i < n; i++) out[i] = s[i]; break; }
    case 'float16': { const t = halfTable(); const s = new Uint16Array(buf, off, n); for (let i = 0; i < n; i++) out[i] = t[s[i]]; break; }
    case 'bfloat16': { const s = new Uint16Array(buf, off, n); const o = new Uint32Array(out.buffer); for (let i = 0; i < n; i++) o[i] = s[i] << 16; break; }
    case 'float8_e4m3fn': { const t = fp8e4m3Table(); for (let i = 0; i < n; i++) out[i] = t[bytes[i]]; break; }
    case 'float8_e5m2': { const t = halfTable(); for (let i = 0; i < n; i++) out[i] = t[bytes[i] << 8]; break; }
    case 'int64': { const s = new Int32Array(buf, off, 2 * n); for (let i = 0; i < n; i++) out[i] = s[2 * i + 1] * 4294967296 + (s[2 * i] >>> 0); break; }
    case 'uint64': { const s = new Uint32Array(buf, off, 2 * n); for (let i = 0; i < n; i++) out[i] = s[2 * i + 1] * 4294967296 + s[2 * i]; break; }
    case 'int32': out.set(new Int32Array(buf, off, n)); break;
    case 'uint32': out.set(new Uint32Array(buf, off, n)); break;
    case 'int16': out.set(new Int16Array(buf, off, n)); break;
    case 'uint16': out.set(new Uint16Array(buf, off, n)); break;
    case 'int8': out.set(new Int8Array(buf, off, n)); break;
    case 'uint8': out.set(bytes.subarray(0, n)); break;
    case 'bool': for (let i = 0; i < n; i++) out[i] = bytes[i] ? 1 : 0; break;
  }
  return out;
}

function hex8(n: number): string { return n.toString(16).padStart(8, '0'); }

function byteSwap(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i + size <= bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Options of {@link readTorchCheckpoint}. */
export interface TorchReadOptions {
  /** Check the CRC-32 of `data.pkl` and of every storage used (default true). */
  verifyCrc?: boolean;
}

/** Largest data.pkl we read. */
const MAX_PICKLE_BYTES = 1 << 30;
/** Largest number of elements of one tensor. */
const MAX_ELEMENTS = 2 ** 32 - 1;
/** Largest number of dimensions. */
const MAX_DIMS = 64;
/** Extra bytes of tensors allowed beyond twice the storage bytes (small stride-0 views). */
const BUDGET_SLACK = 64 * 1024 * 1024;
/** Largest raw read in one piece (typed-array views are limited to 2^32 - 1 bytes). */
const READ_CHUNK_BYTES = 256 * 1024 * 1024;
/** Largest piece of tensor data handed to the zip writer at once. */
const WRITE_CHUNK_BYTES = 1 << 30;

class TorchStorage extends PickleExternal {
  readonly kind = 'torch storage';
  constructor(readonly key: string, readonly entry: ZipEntry, readonly dtype: TorchDtype, readonly numel: number) {
    super();
  }
}

/** State of one read: the archive, its layout and the allocation budget. */
class CheckpointReader {
  private readonly storages = new Map<string, TorchStorage>();
  private readonly verified = new Set<ZipEntry>();
  /** Whole-storage tensors already read, by entry and dtype: tied tensors share one array. */
  private readonly wholes = new Map<string, Float32Array>();
  private budget: number;
  readonly bigEndian: boolean;

  constructor(
    readonly source: string,
    private readonly zip: ZipReader,
    private readonly prefix: string,
    private readonly verifyCrc: boolean,
  ) {
    let storageBytes = 0;
    for (const e of zip.entries) if (e.name.startsWith(`${prefix}data/`)) storageBytes += e.size;
    this.budget = 2 * storageBytes + BUDGET_SLACK;
    const bo = zip.get(`${prefix}byteorder`);
    let order = 'little';
    if (bo) {
      if (bo.size > 16) this.fail(`${quoteEntryName(bo.name)} is ${bo.size} bytes, expected "little" or "big"`);
      order = new TextDecoder('latin1').decode(zip.read(bo, { verifyCrc })).trim();
      if (order !== 'little' && order !== 'big') this.fail(`${quoteEntryName(bo.name)} says ${JSON.stringify(order.slice(0, 20))}, expected "little" or "big"`);
    }
    this.bigEndian = order === 'big';
  }

  fail(why: string): never { throw new ConvNextError(`${this.source}: ${why}`); }

  persistentLoad(pid: PickleValue): PickleValue {
    if (!Array.isArray(pid) || pid.length === 0) this.fail('data.pkl: persistent id is not a tuple');
    let tag = pid[0];
    if (tag instanceof Uint8Array) tag = new TextDecoder('latin1').decode(tag);
    if (tag !== 'storage') this.fail(`data.pkl: persistent id of kind ${typeof tag === 'string' ? JSON.stringify(tag.slice(0, 40)) : '(not a string)'} is not supported (only 'storage')`);
    if (pid.length !== 5) this.fail(`data.pkl: storage persistent id has ${pid.length} items, expected 5`);
    const [, type, rawKey, location, numel] = pid;
    if (!(type instanceof PickleGlobal) || type.module !== 'torch' || !(type.name in STORAGE_DTYPES)) {
      this.fail('data.pkl: storage persistent id does not name a torch storage type');
    }
    const dtype = STORAGE_DTYPES[type.name];
    if (dtype === null || dtype === undefined) this.fail(`data.pkl: storage type torch.${type.name} is not supported (only real float, integer and bool tensors)`);
    const key = typeof rawKey === 'number' && Number.isSafeInteger(rawKey) ? String(rawKey) : rawKey;
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(key) || key === '.' || key === '..') {
      this.fail('data.pkl: storage key is not a plain name');
    }
    if (typeof location !== 'string' && !(location instanceof Uint8Array)) this.fail(`data.pkl: storage ${key} has a location that is not a string`);
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) this.fail(`data.pkl: storage ${key} has a size that is not a non-negative integer`);
    const cacheKey = `${key}\u0000${dtype}`;
    const cached = this.storages.get(cacheKey);
    if (cached) return cached;
    const entry = this.zip.get(`${this.prefix}data/${key}`);
    if (!entry) this.fail(`storage data/${key} is missing from the archive`);
    const s = new TorchStorage(key, entry, dtype, numel);
    this.storages.set(cacheKey, s);
    return s;
  }

  private intList(v: PickleValue, what: string): number[] {
    if (!Array.isArray(v)) this.fail(`data.pkl: tensor ${what} is not a tuple`);
    if (v.length > MAX_DIMS) this.fail(`data.pkl: tensor ${what} has ${v.length} dimensions, over ${MAX_DIMS}`);
    for (const d of v) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) this.fail(`data.pkl: tensor ${what} has an entry that is not a non-negative integer`);
    }
    return v as number[];
  }

  /** `_rebuild_tensor(storage, offset, size, stride)` into a contiguous float32 tensor. */
  rebuild(storage: PickleValue, offsetV: PickleValue, sizeV: PickleValue, strideV: PickleValue, requiresGrad: PickleValue, dtypeOverride?: TorchDtype): TensorData {
    if (!(storage instanceof TorchStorage)) this.fail('data.pkl: tensor storage is not a storage persistent id');
    const dtype = dtypeOverride ?? storage.dtype;
    const item = ITEM_SIZE[dtype];
    const size = this.intList(sizeV, 'size');
    const stride = this.intList(strideV, 'stride');
    if (stride.length !== size.length) this.fail(`data.pkl: tensor size has ${size.length} dimensions but stride ${stride.length}`);
    if (typeof offsetV !== 'number' || !Number.isSafeInteger(offsetV) || offsetV < 0) this.fail('data.pkl: tensor storage offset is not a non-negative integer');
    const offset = offsetV;
    const name = `data/${storage.key}`;
    const shapeStr = `[${size.join(',')}]`;
    let numel = 1;
    for (const d of size) {
      numel *= d;
      if (numel > MAX_ELEMENTS) this.fail(`data.pkl: tensor of shape ${shapeStr} has more than ${MAX_ELEMENTS} elements`);
    }
    let last = offset; // last element index touched
    if (numel > 0) for (let i = 0; i < size.length; i++) last += (size[i] - 1) * stride[i];
    if (!Number.isSafeInteger(last)) this.fail(`data.pkl: tensor of shape ${shapeStr} reaches past any storage`);
    const needBytes = numel === 0 ? 0 : (last + 1) * item;
    const have = storage.entry.size;
    if (needBytes > have) this.fail(`storage ${name} has ${have} bytes, tensor needs ${needBytes} (shape ${shapeStr}, offset ${offset}, ${dtype})`);
    if (numel > 0 && last + 1 > storage.numel * (ITEM_SIZE[storage.dtype] / item)) {
      this.fail(`storage ${name} declares ${storage.numel} elements, tensor of shape ${shapeStr} needs ${last + 1}`);
    }
    if (storage.numel * ITEM_SIZE[storage.dtype] > have) {
      this.fail(`storage ${name} has ${have} bytes, its id declares ${storage.numel} ${storage.dtype} elements (${storage.numel * ITEM_SIZE[storage.dtype]} bytes)`);
    }
    const outBytes = numel * 4;
    if (outBytes > this.budget) {
      this.fail(`tensors would need more than twice the storage bytes of the file (tensor of shape ${shapeStr} over storage ${name}; crafted views?)`);
    }
    this.budget -= outBytes;
    const entry = storage.entry;
    let data: Float32Array;
    const whole = numel > 0 && offset === 0 && numel * item === entry.size && this.isContiguous(size, stride);
    const tied = whole ? this.wholes.get(`${entry.name}\0${dtype}`) : undefined;
    if (tied) {
      data = tied;
      this.budget += outBytes; // no new array
    } else if (whole) {
      // The tensor is its whole storage (the usual case): one pass, CRC checked on those bytes.
      const check = this.verifyCrc && !this.verified.has(entry);
      let crc = 0;
      data = this.readElems(entry, dtype, 0, numel, check ? (b) => { crc = crc32(b, crc); } : undefined);
      if (check) {
        if (crc !== entry.crc32) this.fail(`entry ${quoteEntryName(entry.name)}: CRC-32 mismatch (stored ${hex8(entry.crc32)}, data ${hex8(crc)}): file corrupt`);
        this.verified.add(entry);
      }
      this.wholes.set(`${entry.name}\0${dtype}`, data);
    } else {
      if (this.verifyCrc && !this.verified.has(entry)) {
        this.zip.verify(entry);
        this.verified.add(entry);
      }
      data = numel === 0 ? new Float32Array(0) : this.gather(entry, dtype, offset, last, size, stride, numel);
    }
    const t: TensorData = { shape: [...size], data };
    tensorInfo.set(t, { dtype, requiresGrad: requiresGrad === true, storage: storage.entry.name });
    return t;
  }

  /**
   * Elements `[first, first + count)` of a storage as float32, read in chunks of at most
   * READ_CHUNK_BYTES (float32 straight into the result). `onBytes` sees the raw file bytes.
   */
  private readElems(entry: ZipEntry, dtype: TorchDtype, first: number, count: number, onBytes?: (b: Uint8Array) => void): Float32Array {
    const item = ITEM_SIZE[dtype];
    const out = new Float32Array(count);
    const per = Math.max(1, Math.floor(READ_CHUNK_BYTES / item));
    let tmp: Uint8Array | undefined;
    for (let done = 0; done < count;) {
      const n = Math.min(per, count - done);
      let bytes: Uint8Array;
      if (dtype === 'float32') bytes = new Uint8Array(out.buffer, done * 4, n * 4);
      else {
        if (!tmp || tmp.length < n * item) tmp = new Uint8Array(Math.min(per, count) * item);
        bytes = tmp.subarray(0, n * item);
      }
      this.zip.readRangeInto(entry, (first + done) * item, bytes);
      if (onBytes) onBytes(bytes);
      if (this.bigEndian) byteSwap(bytes, item);
      if (dtype !== 'float32') out.set(toFloat32(dtype, bytes, n), done);
      done += n;
    }
    return out;
  }

  /** Row-major contiguous strides (dimensions of size 1 may have any stride). */
  private isContiguous(size: readonly number[], stride: readonly number[]): boolean {
    for (let i = size.length - 1, expect = 1; i >= 0; i--) {
      if (size[i] !== 1 && stride[i] !== expect) return false;
      expect *= size[i];
    }
    return true;
  }

  private gather(entry: ZipEntry, dtype: TorchDtype, offset: number, last: number, size: number[], stride: number[], numel: number): Float32Array {
    const nd = size.length;
    // Contiguous (row-major) view: one read.
    if (this.isContiguous(size, stride)) return this.readElems(entry, dtype, offset, numel);
    const out = new Float32Array(numel);
    const span = last - offset + 1;
    const idx = new Array<number>(nd).fill(0);
    if (span <= 4 * numel + 4096) {
      // Read the span once and gather in memory.
      const src = this.readElems(entry, dtype, offset, span);
      let p = 0;
      for (let o = 0; o < numel; o++) {
        out[o] = src[p];
        for (let d = nd - 1; d >= 0; d--) {
          if (++idx[d] < size[d]) { p += stride[d]; break; }
          idx[d] = 0;
          p -= (size[d] - 1) * stride[d];
        }
      }
      return out;
    }
    // Sparse views over a large span: read the innermost rows one by one.
    const inner = nd > 0 && stride[nd - 1] === 1 ? size[nd - 1] : 1;
    const outerDims = inner > 1 ? nd - 1 : nd;
    let p = offset;
    for (let o = 0; o < numel; o += inner) {
      out.set(this.readElems(entry, dtype, p, inner), o);
      for (let d = outerDims - 1; d >= 0; d--) {
        if (++idx[d] < size[d]) { p += stride[d]; break; }
        idx[d] = 0;
        p -= (size[d] - 1) * stride[d];
      }
    }
    return out;
  }

  /** The allow-listed torch globals: rebuild functions (closures over this reader) and constants. */
  globals(): Map<string, PickleGlobal | PickleValue> {
    const g = new Map<string, PickleGlobal | PickleValue>();
    const fn = (module: string, name: string, f: (args: readonly PickleValue[]) => PickleValue): void => {
      g.set(`${module}.${name}`, new PickleFunction(module, name, (args) => f(args)));
    };
    const arity = (name: string, args: readonly PickleValue[], min: number, max: number): void => {
      if (args.length < min || args.length > max) this.fail(`data.pkl: ${name} called with ${args.length} arguments`);
    };
    fn('torch._utils', '_rebuild_tensor', (a) => {
      arity('_rebuild_tensor', a, 4, 4);
      return this.rebuild(a[0], a[1], a[2], a[3], false);
    });
    fn('torch._utils', '_rebuild_tensor_v2', (a) => {
      arity('_rebuild_tensor_v2', a, 6, 7);
      return this.rebuild(a[0], a[1], a[2], a[3], a[4]);
    });
    fn('torch._utils', '_rebuild_tensor_v3', (a) => {
      arity('_rebuild_tensor_v3', a, 7, 8);
      const d = a[6];
      if (!(d instanceof PickleGlobal) || d.module !== 'torch' || !(d.name in DTYPE_GLOBALS)) this.fail('data.pkl: _rebuild_tensor_v3 dtype is not a torch dtype');
      const dtype = DTYPE_GLOBALS[d.name];
      if (!dtype) this.fail(`data.pkl: tensors of dtype torch.${d.name} are not supported`);
      return this.rebuild(a[0], a[1], a[2], a[3], a[4], dtype);
    });
    const param = (name: string, min: number, max: number) => (a: readonly PickleValue[]): PickleValue => {
      arity(name, a, min, max);
      if (!isTensorData(a[0])) this.fail(`data.pkl: ${name} of something that is not a tensor`);
      const info = tensorInfo.get(a[0]);
      if (info) info.requiresGrad = a[1] === true;
      return a[0];
    };
    fn('torch._utils', '_rebuild_parameter', param('_rebuild_parameter', 3, 3));
    fn('torch._utils', '_rebuild_parameter_with_state', param('_rebuild_parameter_with_state', 4, 4));
    fn('torch._tensor', '_rebuild_from_type_v2', (a) => {
      arity('_rebuild_from_type_v2', a, 3, 4);
      const [f, , args] = a;
      if (!(f instanceof PickleFunction) || !f.module.startsWith('torch.')) this.fail('data.pkl: _rebuild_from_type_v2 of a function that is not an allow-listed torch rebuild function');
      if (!Array.isArray(args)) this.fail('data.pkl: _rebuild_from_type_v2 arguments are not a tuple');
      const t = f.fn(args);
      if (!isTensorData(t)) this.fail('data.pkl: _rebuild_from_type_v2 did not rebuild a tensor');
      return t;
    });
    fn('torch', 'Size', (a) => {
      arity('torch.Size', a, 0, 1);
      return tupleOf([...this.intList(a.length ? a[0] : [], 'torch.Size')]);
    });
    fn('torch', 'device', (a) => {
      arity('torch.device', a, 1, 2);
      if (typeof a[0] !== 'string') this.fail('data.pkl: torch.device of something that is not a string');
      return makeRecord('torch.device', a.length === 2 ? [['type', a[0]], ['index', a[1]]] : [['type', a[0]]]);
    });
    for (const name of Object.keys(STORAGE_DTYPES)) g.set(`torch.${name}`, new PickleGlobal('torch', name));
    for (const name of Object.keys(DTYPE_GLOBALS)) g.set(`torch.${name}`, new PickleGlobal('torch', name));
    g.set('torch.Tensor', new PickleGlobal('torch', 'Tensor'));
    g.set('torch.nn.parameter.Parameter', new PickleGlobal('torch.nn.parameter', 'Parameter'));
    return g;
  }
}

const LEGACY_MESSAGE = 'legacy torch.save format is not supported, re-save with torch.save in PyTorch >= 1.6';

export function checkHead(source: string, head: Uint8Array, size: number): void {
  if (size === 0) throw new ConvNextError(`${source}: empty file, not a PyTorch checkpoint`);
  if (head[0] === 0x80 && size > 1 && head[1] >= 1 && head[1] <= 5) throw new ConvNextError(`${source}: ${LEGACY_MESSAGE}`);
  if (head.length >= 262 && new TextDecoder('latin1').decode(head.subarray(257, 262)) === 'ustar') {
    throw new ConvNextError(`${source}: ${LEGACY_MESSAGE} (tar archive)`);
  }
  if (!(head[0] === 0x50 && head[1] === 0x4b)) {
    if (head.length >= 8 && head[0] === 0x93 && new TextDecoder('latin1').decode(head.subarray(1, 6)) === 'NUMPY') {
      throw new ConvNextError(`${source}: is a NumPy .npy file, not a PyTorch checkpoint`);
    }
    throw new ConvNextError(`${source}: not a PyTorch checkpoint (no zip signature; torch.save files of PyTorch >= 1.6 are zip archives)`);
  }
}

export function readFromZip(source: string, zip: ZipReader, opts: TorchReadOptions): PickleValue {
  if (zip.entries.length === 0) throw new ConvNextError(`${source}: zip archive has no entries, not a PyTorch checkpoint`);
  const first = zip.entries[0].name;
  const slash = first.indexOf('/');
  if (slash <= 0) throw new ConvNextError(`${source}: first zip entry ${quoteEntryName(first)} is not in a folder (not a torch.save archive)`);
  const prefix = first.slice(0, slash + 1);
  const pkl = zip.get(`${prefix}data.pkl`);
  if (!pkl) {
    if (zip.get(`${prefix}constants.pkl`) || zip.entries.some((e) => e.name.startsWith(`${prefix}code/`))) {
      throw new ConvNextError(`${source}: is a TorchScript archive (torch.jit.save), not supported; save the state_dict with torch.save`);
    }
    throw new ConvNextError(`${source}: no ${quoteEntryName(`${prefix}data.pkl`)} in the archive (not a torch.save file)`);
  }
  const verifyCrc = opts.verifyCrc ?? true;
  const reader = new CheckpointReader(source, zip, prefix, verifyCrc);
  const bytes = zip.read(pkl, { verifyCrc, maxBytes: MAX_PICKLE_BYTES });
  return unpickle(bytes, {
    source: `${source}: data.pkl`,
    persistentLoad: (pid) => reader.persistentLoad(pid),
    globals: reader.globals(),
  });
}

/** Like {@link readTorchCheckpoint}, for checkpoint bytes in memory; `source` labels errors. */
export function readTorchCheckpointBuffer(bytes: Uint8Array, source = 'checkpoint buffer', opts: TorchReadOptions = {}): PickleValue {
  checkHead(source, bytes.subarray(0, 512), bytes.length);
  const zip = openZipBuffer(bytes, source);
  try {
    return readFromZip(source, zip, opts);
  } finally {
    zip.close();
  }
}

/** Keys looked for, in order, by {@link findStateDict}. */
export const STATE_DICT_KEYS = ['model', 'model_ema', 'state_dict'] as const;

function asStateDict(v: PickleValue | undefined, label: string, source: string): Map<string, TensorData> | undefined {
  if (!(v instanceof Map) || v.size === 0) return undefined;
  const out = new Map<string, TensorData>();
  for (const [k, t] of v) {
    if (typeof k !== 'string') throw new ConvNextError(`${source}: ${label} has a key that is not a string`);
    if (!isTensorData(t)) return undefined;
    out.set(k, t);
  }
  return out;
}

function lookup(obj: PickleValue, key: string): PickleValue | undefined {
  if (obj instanceof Map) return obj.get(key);
  if (isPickleRecord(obj)) return obj[key];
  return undefined;
}

/**
 * The state dict (tensor name -> tensor) in a checkpoint tree: under `key` when given, else
 * under the first of "model", "model_ema", "state_dict" that holds one, else the top level
 * itself. A ConvNextError (naming `source`) lists the keys when none is found.
 */
export function findStateDict(obj: PickleValue, key?: string, source = 'checkpoint'): Map<string, TensorData> {
  const keysOf = (): string => {
    const label = (k: PickleValue): string => (typeof k === 'string' ? JSON.stringify(k.slice(0, 60)) : typeof k === 'number' ? String(k) : '(non-string key)');
    const ks = obj instanceof Map ? [...obj.keys()].map(label) : isPickleRecord(obj) ? Object.keys(obj).map((k) => JSON.stringify(k.slice(0, 60))) : [];
    return ks.length ? ks.slice(0, 12).join(', ') + (ks.length > 12 ? ', ...' : '') : 'none';
  };
  if (key !== undefined) {
    const v = lookup(obj, key);
    if (v === undefined) throw new ConvNextError(`${source}: no key ${JSON.stringify(key)} (keys: ${keysOf()})`);
    const sd = asStateDict(v, JSON.stringify(key), source);
    if (!sd) throw new ConvNextError(`${source}: ${JSON.stringify(key)} is not a state dict of tensors`);
    return sd;
  }
  for (const k of STATE_DICT_KEYS) {
    const sd = asStateDict(lookup(obj, k), JSON.stringify(k), source);
    if (sd) return sd;
  }
  const top = asStateDict(obj, 'the top level', source);
  if (top) return top;
  throw new ConvNextError(`${source}: no state dict of tensors under "model", "model_ema", "state_dict" or at the top level (keys: ${keysOf()})`);
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Values {@link writeTorchCheckpoint} can write: Maps become `collections.OrderedDict` (except
 * Maps that {@link readTorchCheckpoint} read from a plain dict, which stay `dict`), plain
 * objects `dict`, arrays `list` (frozen arrays `tuple`), integral numbers `int`, other numbers
 * `float`, Uint8Array `bytes`, inert records (e.g. an argparse.Namespace that was read)
 * instances rebuilt by NEWOBJ + BUILD, and TensorData float32 tensors.
 */
export type TorchWritable =
  | null | boolean | number | bigint | string | Uint8Array | TensorData | PickleRecord
  | readonly TorchWritable[]
  | ReadonlyMap<string | number, TorchWritable>
  | { readonly [key: string]: TorchWritable };

/** Options of {@link writeTorchCheckpoint}. */
export interface TorchWriteOptions {
  /** The zip's top folder (default `archive`, as torch.save to a file object writes). */
  archiveName?: string;
}

interface PendingStorage { key: string; data: Float32Array }

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= Math.max(shape[i], 1);
  }
  return s;
}

/** Pickles `obj` as torch.save does (protocol 2), collecting tensor storages. */
function pickleCheckpoint(obj: TorchWritable, label: string): { pkl: Uint8Array; storages: PendingStorage[] } {
  const w = new PickleWriter();
  const storages: PendingStorage[] = [];
  // Tensors over one Float32Array share one storage, as tied weights do in torch.save.
  const keys = new Map<Float32Array, string>();
  const active = new Set<object>();
  const bad = (why: string): never => { throw new ConvNextError(`cannot write ${label}: ${why}`); };

  const tuple = (n: number, items: () => void): void => {
    if (n > 3) w.mark();
    items();
    w.tuple(n);
  };
  const batched = <T>(items: readonly T[], one: (x: T) => void, single: () => void, many: () => void): void => {
    for (let i = 0; i < items.length; i += 1000) {
      const batch = items.slice(i, i + 1000);
      if (batch.length > 1) {
        w.mark();
        batch.forEach(one);
        many();
      } else {
        one(batch[0]);
        single();
      }
    }
  };
  const dictItems = (entries: ReadonlyArray<readonly [PickleKey, TorchWritable]>): void => {
    batched(entries, ([k, v]) => { key(k); value(v); }, () => w.setitem(), () => w.setitems());
  };
  type PickleKey = string | number;
  const key = (k: PickleKey): void => {
    if (typeof k === 'string') w.string(k);
    else if (typeof k === 'number' && Number.isSafeInteger(k)) w.int(k);
    else bad(`a dict key is ${typeof k}, not a string or an integer`);
  };
  const tensor = (t: TensorData): void => {
    let numel = 1;
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) bad(`a tensor has shape [${t.shape.join(',')}]`);
      numel *= d;
    }
    if (numel !== t.data.length) bad(`a tensor of shape [${t.shape.join(',')}] has ${t.data.length} values`);
    let k = keys.get(t.data);
    if (k === undefined) {
      k = String(storages.length);
      keys.set(t.data, k);
      storages.push({ key: k, data: t.data });
    }
    const sk = k;
    w.global('torch._utils', '_rebuild_tensor_v2');
    tuple(6, () => {
      // persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
      tuple(5, () => {
        w.string('storage');
        w.global('torch', 'FloatStorage');
        w.string(sk);
        w.string('cpu');
        w.int(t.data.length);
      });
      w.binpersid();
      w.int(0);
      tuple(t.shape.length, () => t.shape.forEach((d) => w.int(d)));
      const strides = contiguousStrides(t.shape);
      tuple(strides.length, () => strides.forEach((d) => w.int(d)));
      w.bool(false);
      w.global('collections', 'OrderedDict');
      w.emptyTuple();
      w.reduce();
    });
    w.reduce();
  };
  const value = (v: TorchWritable): void => {
    if (v === null) { w.none(); return; }
    if (typeof v === 'boolean') { w.bool(v); return; }
    if (typeof v === 'bigint') { w.int(v); return; }
    if (typeof v === 'number') {
      if (Number.isSafeInteger(v)) w.int(v);
      else w.float(v);
      return;
    }
    if (typeof v === 'string') { w.string(v); return; }
    if (v instanceof Uint8Array) {
      // Protocol 2 writes bytes as _codecs.encode(latin-1 text, 'latin1'), as Python does.
      w.global('_codecs', 'encode');
      let s = '';
      for (let i = 0; i < v.length; i += 8192) s += String.fromCharCode(...v.subarray(i, i + 8192));
      tuple(2, () => { w.string(s); w.string('latin1'); });
      w.reduce();
      return;
    }
    if (typeof v !== 'object') bad(`cannot pickle a ${typeof v}`);
    if (active.has(v)) bad('the object contains itself (cycle)');
    active.add(v);
    try {
      if (isTensorData(v)) tensor(v);
      else if (Array.isArray(v)) {
        const arr = v as readonly TorchWritable[];
        if (Object.isFrozen(arr)) tuple(arr.length, () => arr.forEach(value));
        else {
          w.emptyList();
          batched(arr, value, () => w.append(), () => w.appends());
        }
      } else if (v instanceof Map) {
        if (isPlainDict(v)) w.emptyDict();
        else {
          w.global('collections', 'OrderedDict');
          w.emptyTuple();
          w.reduce();
        }
        dictItems([...(v as ReadonlyMap<PickleKey, TorchWritable>)]);
      } else if (v instanceof Set || v instanceof PickleGlobal || v instanceof PickleExternal || ArrayBuffer.isView(v)) {
        bad('sets, globals, storages and typed arrays other than Uint8Array cannot be written');
      } else if (isPickleRecord(v) || typeof (v as { __class__?: unknown }).__class__ === 'string') {
        const rec = v as PickleRecord;
        const cls = rec.__class__;
        const dot = cls.lastIndexOf('.');
        const module = cls.slice(0, dot);
        const name = cls.slice(dot + 1);
        if (dot <= 0 || refusalReason(module, name) !== undefined) bad(`records of class ${JSON.stringify(cls.slice(0, 80))} cannot be written`);
        w.global(module, name);
        const args = rec.__args__;
        if (Array.isArray(args)) tuple(args.length, () => (args as TorchWritable[]).forEach(value));
        else w.emptyTuple();
        w.newobj();
        const fields = Object.keys(rec).filter((k) => !['__class__', '__args__', '__kwargs__', '__dictitems__', '__listitems__', '__state__'].includes(k));
        if (fields.length) {
          w.emptyDict();
          dictItems(fields.map((k) => [k, rec[k] as TorchWritable] as const));
          w.build();
        }
      } else {
        const o = v as { readonly [key: string]: TorchWritable };
        w.emptyDict();
        dictItems(Object.keys(o).map((k) => [k, o[k]] as const));
      }
    } finally {
      active.delete(v);
    }
  };
  value(obj);
  return { pkl: w.finish(), storages };
}

function decimal20(b: Uint8Array): string {
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true).toString().padStart(20, '0');
}

/**
 * Writes `obj` as torch.save zip bytes (e.g. `{model: new Map([[name, tensor], ...])}` for
 * `torch.load(f)["model"]`) to `sink`, in pieces; tensors as float32 FloatStorages. `label`
 * names errors. {@link serializeTorchCheckpoint} collects the bytes; the Node file writer is
 * src/io/torch_file.ts.
 */
export function writeTorchZip(sink: (bytes: Uint8Array) => void, obj: TorchWritable, label: string, opts: TorchWriteOptions = {}): void {
  const archive = opts.archiveName ?? 'archive';
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(archive) || archive === '.' || archive === '..') {
    throw new ConvNextError(`cannot write ${label}: archive name ${JSON.stringify(archive.slice(0, 80))} is not a plain name`);
  }
  const { pkl, storages } = pickleCheckpoint(obj, label);
  const zip = new ZipWriter(sink);
  const text = (s: string): Uint8Array => new TextEncoder().encode(s);
  zip.add(`${archive}/data.pkl`, pkl);
  zip.add(`${archive}/.format_version`, text('1'));
  zip.add(`${archive}/.storage_alignment`, text('64'));
  zip.add(`${archive}/byteorder`, text('little'));
  let mix = 0n;
  for (const s of storages) {
    const parts: Uint8Array[] = [];
    for (let off = 0; off < s.data.byteLength; off += WRITE_CHUNK_BYTES) {
      parts.push(new Uint8Array(s.data.buffer, s.data.byteOffset + off, Math.min(WRITE_CHUNK_BYTES, s.data.byteLength - off)));
    }
    zip.add(`${archive}/data/${s.key}`, parts);
    mix = BigInt.asUintN(64, mix * 1000003n + BigInt(s.data.byteLength) + 1n);
  }
  zip.add(`${archive}/version`, text('3\n'));
  const h = new Uint8Array(8);
  new DataView(h.buffer).setBigUint64(0, mix, true);
  zip.add(`${archive}/.data/serialization_id`, text(decimal20(globalThis.crypto.getRandomValues(new Uint8Array(8))) + decimal20(h)));
  zip.finish();
}

/** The bytes of a torch.save checkpoint of `obj` (see {@link writeTorchZip}). */
export function serializeTorchCheckpoint(obj: TorchWritable, opts: TorchWriteOptions = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  writeTorchZip((b) => parts.push(b.slice()), obj, 'checkpoint buffer', opts);
  return concatBytes(parts);
}

/** Exposed for tests: the data.pkl bytes {@link writeTorchCheckpoint} would write for `obj`. */
export function torchPickleBytes(obj: TorchWritable): Uint8Array {
  return pickleCheckpoint(obj, 'pickle').pkl;
}

export type { PickleDict, PickleRecord, PickleValue };
