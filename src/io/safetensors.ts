/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
 * (`{"__metadata__": {string: string}, "<name>": {"dtype", "shape", "data_offsets": [start, end]}}`,
 * offsets relative to the data section), then the raw little-endian tensor data.
 *
 * Reading is lazy: a reader validates the header only, and `get` reads one tensor with
 * positioned reads from a {@link ByteSource}, so files over 2 GiB work without loading them
 * (the Node file reader is src/io/safetensors_file.ts; this module imports nothing from Node).
 * The whole header is validated before anything is allocated for tensor data; every problem
 * is a one-line {@link ConvNextError} naming the file.
 *
 * Writing produces F32 tensors in the order given, the header padded with spaces to a
 * multiple of 8 bytes (as the reference implementation does).
 */
import { sniff } from './sniff.js';
import { ConvNextError, oneLine } from '../errors.js';
import { fp8e4m3Table, halfTable } from './lowp.js';

/** A tensor in host memory: a shape and row-major float32 values. */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** The safetensors dtypes this reader understands, with their sizes in bytes. */
export const DTYPE_SIZES = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1,
} as const;
export type Dtype = keyof typeof DTYPE_SIZES;

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, s);
}

/** One tensor as listed in a safetensors header. */
export interface SafetensorsEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Number of elements. */
  numel: number;
  /** Absolute byte offset of the tensor's data in the file (or buffer). */
  offset: number;
  /** Size of the tensor's data in bytes. */
  byteLength: number;
}

/** An opened safetensors file (or buffer): header parsed and validated, data read on demand. */
export interface SafetensorsReader {
  /** The file path, or a label for in-memory buffers. */
  readonly source: string;
  /** Tensors in the order of their data in the file (the writer's order). */
  readonly tensors: readonly SafetensorsEntry[];
  /** The `__metadata__` map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Total size in bytes of the file or buffer. */
  readonly size: number;
  names(): string[];
  has(name: string): boolean;
  /** The header entry of `name`; a ConvNextError if absent. */
  info(name: string): SafetensorsEntry;
  /** The tensor's values converted to float32 (a fresh array the caller owns). */
  get(name: string): Float32Array;
  /** `{shape, data}` of the tensor, values converted to float32. */
  getTensor(name: string): TensorData;
  /** The tensor's values as float64 (exact for every integer dtype up to 2^53). */
  getFloat64(name: string): Float64Array;
  /** The tensor's raw little-endian bytes (a fresh, aligned array). */
  getBytes(name: string): Uint8Array;
  /** Releases the file descriptor (no-op for buffers). Later reads throw. */
  close(): void;
}

/** Upper bound on the JSON header (the reference implementation uses 100 MB as well). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Largest chunk handed to one positioned read (Node's fs.readSync cannot read 2 GiB at once). */
export const READ_CHUNK = 1 << 30;
/** Largest typed array we will allocate (elements), below V8's limit. */
const MAX_ELEMENTS = 2 ** 32 - 1;

// Tensor bytes are little-endian and are viewed directly as typed arrays.
if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new Error('convnextv2 safetensors I/O needs a little-endian host');

export function fail(source: string, why: string): never {
  throw new ConvNextError(`${source}: ${why}`);
}


function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function quoteName(name: string): string {
  return /^[\w.\-/:]+$/.test(name) && name.length <= 200 ? name : JSON.stringify(oneLine(name, 120));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates a decoded header against a data section of `dataLength` bytes starting at
 * absolute offset `dataStart`. Nothing is allocated per tensor here beyond the entry list.
 */
export function parseHeader(source: string, headerBytes: Uint8Array, dataStart: number, dataLength: number): {
  tensors: SafetensorsEntry[]; metadata: Record<string, string>;
} {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    fail(source, 'header is not valid UTF-8 (not a safetensors file?)');
  }
  if (!text.startsWith('{')) fail(source, 'header does not start with \'{\' (not a safetensors file?)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    fail(source, `header is not valid JSON (${oneLine(err instanceof Error ? err.message : String(err), 120)})`);
  }
  if (!isPlainObject(parsed)) fail(source, 'header is not a JSON object');

  const metadata: Record<string, string> = {};
  const tensors: SafetensorsEntry[] = [];
  for (const name of Object.keys(parsed)) {
    const v = parsed[name];
    if (name === '__metadata__') {
      if (!isPlainObject(v)) fail(source, '__metadata__ is not an object of strings');
      for (const k of Object.keys(v)) {
        const mv = v[k];
        if (typeof mv !== 'string') fail(source, `__metadata__ value of ${quoteName(k)} is not a string`);
        metadata[k] = mv;
      }
      continue;
    }
    const what = `tensor ${quoteName(name)}`;
    if (!isPlainObject(v)) fail(source, `${what}: header entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = v;
    if (!isDtype(dtype)) {
      fail(source, `${what}: unknown dtype ${typeof dtype === 'string' ? quoteName(dtype) : oneLine(String(JSON.stringify(dtype)), 40)}`);
    }
    if (!Array.isArray(shape)) fail(source, `${what}: shape is not an array`);
    if (shape.length > 64) fail(source, `${what}: shape has ${shape.length} dimensions`);
    const itemSize = DTYPE_SIZES[dtype];
    for (const d of shape) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        fail(source, `${what}: shape ${oneLine(JSON.stringify(shape), 80)} has a dimension that is not a non-negative integer`);
      }
    }
    const dims = shape as number[];
    let numel = dims.includes(0) ? 0 : 1;
    for (let i = 0; i < dims.length && numel > 0; i++) {
      numel *= dims[i];
      // Stopping here keeps the product exact: it never exceeds what the data section holds.
      if (numel * itemSize > dataLength) {
        fail(source, `${what}: shape ${shapeStr(dims)} needs more bytes than the data section holds (${dataLength})`);
      }
    }
    if (!Array.isArray(offsets) || offsets.length !== 2) fail(source, `${what}: data_offsets is not a pair [start, end]`);
    const [start, end] = offsets as unknown[];
    if (typeof start !== 'number' || typeof end !== 'number' || !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < 0) {
      fail(source, `${what}: data_offsets ${oneLine(JSON.stringify(offsets), 80)} are not non-negative integers`);
    }
    if (end < start) fail(source, `${what}: data_offsets [${start},${end}] end before they start`);
    if (end > dataLength) {
      fail(source, `${what}: data_offsets [${start},${end}] reach past the end of the data section (${dataLength} bytes; file truncated?)`);
    }
    if (end - start !== numel * itemSize) {
      fail(source, `${what}: data_offsets [${start},${end}] hold ${end - start} bytes but ${dtype} shape ${shapeStr(shape as number[])} needs ${numel * itemSize}`);
    }
    tensors.push({ name, dtype, shape: [...(shape as number[])], numel, offset: dataStart + start, byteLength: end - start });
  }
  // List tensors in data order: JSON.parse moves integer-like names ("0", "10") first, and
  // every writer lays data out in its header order. The sort is stable for equal offsets.
  tensors.sort((a, b) => a.offset - b.offset);
  // No two tensors may share bytes.
  const byStart = tensors.filter((t) => t.byteLength > 0);
  for (let i = 1; i < byStart.length; i++) {
    const prev = byStart[i - 1];
    const cur = byStart[i];
    if (cur.offset < prev.offset + prev.byteLength) {
      fail(source, `tensors ${quoteName(prev.name)} and ${quoteName(cur.name)} overlap in the data section`);
    }
  }
  return { tensors, metadata };
}

/** Converts little-endian raw bytes (aligned, byteOffset 0) of `dtype` to float32. */
function toFloat32(dtype: Dtype, bytes: Uint8Array, n: number): Float32Array {
  const buf = bytes.buffer;
  const off = bytes.byteOffset;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf, off, n);
    case 'F64':
      return Float32Array.from(new Float64Array(buf, off, n));
    case 'F16': {
      const t = halfTable();
      const src = new Uint16Array(buf, off, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = t[src[i]];
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(buf, off, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return out;
    }
    case 'F8_E4M3': {
      const t = fp8e4m3Table();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = t[bytes[i]];
      return out;
    }
    case 'F8_E5M2': {
      // E5M2 is the upper byte of a float16.
      const t = halfTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = t[bytes[i] << 8];
      return out;
    }
    default:
      return Float32Array.from(toFloat64(dtype, bytes, n));
  }
}

/** Converts little-endian raw bytes (aligned, byteOffset 0) of `dtype` to float64. */
function toFloat64(dtype: Dtype, bytes: Uint8Array, n: number): Float64Array {
  const buf = bytes.buffer;
  const off = bytes.byteOffset;
  switch (dtype) {
    case 'F64': return new Float64Array(buf, off, n);
    case 'I32': return Float64Array.from(new Int32Array(buf, off, n));
    case 'I16': return Float64Array.from(new Int16Array(buf, off, n));
    case 'I8': return Float64Array.from(new Int8Array(buf, off, n));
    case 'U32': return Float64Array.from(new Uint32Array(buf, off, n));
    case 'U16': return Float64Array.from(new Uint16Array(buf, off, n));
    case 'U8': return Float64Array.from(bytes.subarray(0, n));
    case 'BOOL': {
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes[i] ? 1 : 0;
      return out;
    }
    case 'I64': {
      const src = new BigInt64Array(buf, off, n);
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      return out;
    }
    case 'U64': {
      const src = new BigUint64Array(buf, off, n);
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      return out;
    }
    default:
      return Float64Array.from(toFloat32(dtype, bytes, n));
  }
}

/** Where the bytes come from: a file descriptor or an in-memory buffer. */
export interface ByteSource {
  read(pos: number, length: number, into: Uint8Array): number;
  close(): void;
}

export class Reader implements SafetensorsReader {
  readonly tensors: readonly SafetensorsEntry[];
  readonly metadata: Readonly<Record<string, string>>;
  private readonly byName: Map<string, SafetensorsEntry>;
  private closed = false;

  constructor(
    readonly source: string,
    readonly size: number,
    private readonly bytes: ByteSource,
    parsed: { tensors: SafetensorsEntry[]; metadata: Record<string, string> },
  ) {
    this.tensors = parsed.tensors;
    this.metadata = parsed.metadata;
    this.byName = new Map(parsed.tensors.map((t) => [t.name, t]));
  }

  names(): string[] { return this.tensors.map((t) => t.name); }
  has(name: string): boolean { return this.byName.has(name); }

  info(name: string): SafetensorsEntry {
    const e = this.byName.get(name);
    if (!e) fail(this.source, `no tensor named ${quoteName(name)}`);
    return e;
  }

  getBytes(name: string): Uint8Array {
    const e = this.info(name);
    if (this.closed) fail(this.source, `read of ${quoteName(name)} after close()`);
    if (e.numel > MAX_ELEMENTS) fail(this.source, `tensor ${quoteName(name)} has ${e.numel} elements, more than one array can hold`);
    // A fresh ArrayBuffer is 8-byte aligned, so typed views of any dtype can be made on it.
    const out = new Uint8Array(e.byteLength);
    let done = 0;
    while (done < e.byteLength) {
      const len = Math.min(READ_CHUNK, e.byteLength - done);
      const n = this.bytes.read(e.offset + done, len, out.subarray(done, done + len));
      if (n <= 0) fail(this.source, `file ended while reading tensor ${quoteName(name)} (truncated or changed since it was opened?)`);
      done += n;
    }
    return out;
  }

  get(name: string): Float32Array {
    const e = this.info(name);
    return toFloat32(e.dtype, this.getBytes(name), e.numel);
  }

  getTensor(name: string): TensorData {
    return { shape: [...this.info(name).shape], data: this.get(name) };
  }

  getFloat64(name: string): Float64Array {
    const e = this.info(name);
    return toFloat64(e.dtype, this.getBytes(name), e.numel);
  }

  close(): void {
    if (!this.closed) {
      this.closed = true;
      this.bytes.close();
    }
  }
}

/** Checks the 8-byte prefix and header length (`first`: up to 64 leading bytes, to say what the file is instead); returns the header length. */
export function checkPrefix(source: string, first8: Uint8Array, size: number, first: Uint8Array = first8): number {
  if (size === 0) fail(source, 'empty file, not a safetensors file');
  if (size < 8) fail(source, `file is ${size} bytes, too small for a safetensors file`);
  if (first8[0] === 0x50 && first8[1] === 0x4b && first8[2] === 0x03 && first8[3] === 0x04) {
    fail(source, 'is a zip archive (a PyTorch .pt/.pth checkpoint?), not a safetensors file');
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  const kind = n > BigInt(size - 8) || n > BigInt(MAX_HEADER_BYTES) ? sniff(first) : null;
  if (kind) fail(source, `is ${kind}, not a safetensors file`);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    fail(source, `header length ${n} is over ${MAX_HEADER_BYTES} bytes (not a safetensors file, or corrupt)`);
  }
  if (n > BigInt(size - 8)) fail(source, `header length ${n} runs past the end of the file (${size} bytes; truncated?)`);
  if (n < 2n) fail(source, `header length ${n} is too small for a JSON header`);
  return Number(n);
}

/** Parses safetensors bytes held in memory (validated like a file). `source` labels errors. */
export function parseSafetensorsBuffer(buf: Uint8Array, source = 'safetensors buffer'): SafetensorsReader {
  const size = buf.byteLength;
  const n = checkPrefix(source, buf.subarray(0, Math.min(8, size)), size, buf.subarray(0, Math.min(64, size)));
  const parsed = parseHeader(source, buf.subarray(8, 8 + n), 8 + n, size - 8 - n);
  const src: ByteSource = {
    read: (pos, length, into) => {
      const end = Math.min(size, pos + length);
      if (end <= pos) return 0;
      into.set(buf.subarray(pos, end));
      return end - pos;
    },
    close: () => undefined,
  };
  return new Reader(source, size, src, parsed);
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Tensors to write, in order: a Map or any iterable of [name, tensor] pairs. */
export type TensorsInput = Iterable<readonly [string, TensorData]>;

interface Layout {
  header: Uint8Array;
  items: Array<{ name: string; data: Float32Array }>;
  dataBytes: number;
}

export function layout(tensors: TensorsInput, metadata: Readonly<Record<string, string>> | undefined, label: string): Layout {
  const bad = (why: string): never => { throw new ConvNextError(`cannot write ${label}: ${why}`); };
  const parts: string[] = [];
  if (metadata !== undefined) {
    const meta: string[] = [];
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') bad(`metadata value of ${quoteName(k)} is not a string`);
      meta.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${meta.join(',')}}`);
  }
  const items: Layout['items'] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const [name, t] of tensors) {
    if (typeof name !== 'string' || name.length === 0) bad('a tensor name is empty');
    if (name === '__metadata__') bad('a tensor cannot be named __metadata__');
    if (seen.has(name)) bad(`tensor ${quoteName(name)} is given twice`);
    seen.add(name);
    if (!(t.data instanceof Float32Array)) bad(`tensor ${quoteName(name)} data is not a Float32Array`);
    let numel = 1;
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) bad(`tensor ${quoteName(name)} has shape ${shapeStr(t.shape)}`);
      numel *= d;
    }
    if (numel !== t.data.length) bad(`tensor ${quoteName(name)} has shape ${shapeStr(t.shape)} (${numel} values) but ${t.data.length} values`);
    const bytes = numel * 4;
    // The JSON text is built by hand: an object would put integer-like names ("0") first.
    parts.push(`${JSON.stringify(name)}:{"dtype":"F32","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`);
    items.push({ name, data: t.data });
    offset += bytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) bad(`header would be ${padded} bytes, over ${MAX_HEADER_BYTES}`);
  const head = new Uint8Array(8 + padded).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return { header: head, items, dataBytes: offset };
}

export function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The bytes of a safetensors file holding `tensors` as F32 (in the order given) and `metadata`. */
export function serializeSafetensors(tensors: TensorsInput, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const l = layout(tensors, metadata, 'safetensors buffer');
  const out = new Uint8Array(l.header.byteLength + l.dataBytes);
  out.set(l.header, 0);
  let pos = l.header.byteLength;
  for (const it of l.items) {
    out.set(f32Bytes(it.data), pos);
    pos += it.data.byteLength;
  }
  return out;
}

