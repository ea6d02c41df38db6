/**
 * A small, strict zip reader and writer, enough for PyTorch's `torch.save` archives.
 *
 * Reading works with positioned reads on a file descriptor (or on a buffer), never loading the
 * whole file: official checkpoints can exceed 4 GB. Opening reads the end-of-central-directory
 * record (searched in the last 64 KiB + 22 bytes only), the zip64 locator and record when
 * present, the central directory, and every local header. Every size and offset is checked
 * against the file before anything is allocated or read, so a hostile archive (a central
 * directory "of 1 TB", offsets past the end, overlapping entries, absurd entry counts) is a
 * one-line {@link ConvNextError} naming the file, never a RangeError or a huge allocation.
 *
 * Supported: stored (method 0, what torch.save writes) and deflate (method 8) entries, data
 * descriptors (flag bit 3: sizes come from the central directory), zip64 sizes and offsets
 * (zip64 extra field 0x0001), UTF-8 or CP437 names (decoded as Latin-1). Not supported (an
 * error): encryption, other compression methods, multi-disk archives. CRC-32 checks are
 * optional per read.
 *
 * Writing ({@link ZipWriter}) produces stored entries laid out as PyTorch's writer (miniz)
 * does: each local header has flags 0x0808 (data descriptor, UTF-8), zero CRC and sizes, an
 * `FB` extra field padded with `Z` so that the entry's data starts at a multiple of 64 bytes,
 * and a data descriptor after the data; zip64 extra fields and 64-bit data descriptors for
 * entries at or past 4 GiB; and always the zip64 end-of-central-directory record and locator
 * before the classic one.
 */
import { ConvNextError, oneLine } from '../errors.js';
import { codecs } from './codecs.js';

// ---------------------------------------------------------------------------------------------
// Constants

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_DATA_DESCRIPTOR = 0x08074b50;

const LOCAL_HEADER_SIZE = 30;
const CENTRAL_HEADER_SIZE = 46;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const MAX_COMMENT = 0xffff;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

/** Upper bound on the central directory we are willing to read into memory. */
export const MAX_CENTRAL_DIRECTORY_BYTES = 256 * 1024 * 1024;
/** Upper bound on the number of entries. */
export const MAX_ENTRIES = 1_000_000;
/** Largest chunk handed to one `fs.readSync` call. */
export const READ_CHUNK = 1 << 30;
/** Largest single buffer we will allocate for one entry. */
const MAX_BUFFER_BYTES = 2 ** 32 - 1;
/** Deflate cannot expand by more than about 1032:1; a larger claimed ratio is corrupt. */
const MAX_DEFLATE_RATIO = 1032;

// ---------------------------------------------------------------------------------------------
// CRC-32

/** CRC-32 (IEEE) of `bytes`, continuing from `crc` (0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  return codecs().crc32(bytes, crc);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** One file of a zip archive, as described by its central directory entry. */
export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  readonly flags: number;
  readonly crc32: number;
  readonly compressedSize: number;
  /** Uncompressed size in bytes. */
  readonly size: number;
  readonly localHeaderOffset: number;
  /** Absolute offset of the entry's (compressed) data, from the validated local header. */
  readonly dataOffset: number;
}

/** Options of whole-entry reads. */
export interface ZipReadOptions {
  /** Check the CRC-32 against the central directory (default true). */
  verifyCrc?: boolean;
  /** Refuse entries larger than this many bytes (default: no limit beyond the file's). */
  maxBytes?: number;
}

/** An opened zip archive. */
export interface ZipReader {
  /** The file path, or a label for in-memory buffers. */
  readonly source: string;
  /** Size of the archive in bytes. */
  readonly size: number;
  /** Entries in central-directory order. */
  readonly entries: readonly ZipEntry[];
  /** The entry named `name`, if any. */
  get(name: string): ZipEntry | undefined;
  /** The whole uncompressed content of `entry` (a fresh array the caller owns). */
  read(entry: ZipEntry, opts?: ZipReadOptions): Uint8Array;
  /**
   * Bytes `[start, start + length)` of `entry`'s uncompressed content (a fresh array). Stored
   * entries are read with one positioned read; deflated ones are inflated once and cached.
   */
  readRange(entry: ZipEntry, start: number, length: number): Uint8Array;
  /** Reads bytes `[start, start + into.length)` of `entry`'s uncompressed content into `into`. */
  readRangeInto(entry: ZipEntry, start: number, into: Uint8Array): void;
  /** Checks `entry`'s CRC-32, streaming stored entries in chunks (no large allocation). */
  verify(entry: ZipEntry): void;
  /** Releases the file descriptor (no-op for buffers). */
  close(): void;
}

/** Where the bytes come from. */
export interface ByteSource {
  readonly size: number;
  /** Reads exactly `into.length` bytes at `pos`; false if the source ended early. */
  readExact(pos: number, into: Uint8Array): boolean;
  close(): void;
}

function bufferSource(buf: Uint8Array): ByteSource {
  return {
    size: buf.byteLength,
    readExact(pos, into) {
      if (pos < 0 || pos + into.length > buf.byteLength) return false;
      into.set(buf.subarray(pos, pos + into.length));
      return true;
    },
    close() { /* nothing */ },
  };
}


/** A printable, quoted form of an entry name for messages. */
export function quoteEntryName(name: string): string {
  return /^[\w.\-/]+$/.test(name) && name.length <= 160 ? name : JSON.stringify(oneLine(name, 120));
}

function u16(b: Uint8Array, o: number): number { return b[o] | (b[o + 1] << 8); }
function u32(b: Uint8Array, o: number): number { return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0; }
/** A little-endian u64 as a number, or Infinity when it is not a safe integer. */
function u64(b: Uint8Array, o: number): number {
  const lo = u32(b, o);
  const hi = u32(b, o + 4);
  if (hi >= 0x200000) return Infinity;
  return hi * 0x100000000 + lo;
}

export class Reader implements ZipReader {
  readonly entries: readonly ZipEntry[];
  private readonly byName: Map<string, ZipEntry>;
  private readonly inflated = new Map<ZipEntry, Uint8Array>();
  private closed = false;

  constructor(readonly source: string, private readonly src: ByteSource) {
    this.entries = parseArchive(source, src);
    this.byName = new Map(this.entries.map((e) => [e.name, e]));
  }

  get size(): number { return this.src.size; }

  get(name: string): ZipEntry | undefined { return this.byName.get(name); }

  private fail(why: string): never { throw new ConvNextError(`${this.source}: ${why}`); }

  private raw(pos: number, length: number, what: string): Uint8Array {
    if (this.closed) this.fail(`read of ${what} after close()`);
    if (length > MAX_BUFFER_BYTES) this.fail(`${what} is ${length} bytes, more than one buffer can hold`);
    const out = new Uint8Array(length);
    if (!this.src.readExact(pos, out)) this.fail(`file ended while reading ${what} (truncated or changed since it was opened?)`);
    return out;
  }

  private inflate(entry: ZipEntry, verifyCrc: boolean): Uint8Array {
    const cached = this.inflated.get(entry);
    if (cached) return cached;
    const what = `entry ${quoteEntryName(entry.name)}`;
    const comp = this.raw(entry.dataOffset, entry.compressedSize, what);
    let out: Uint8Array;
    try {
      out = codecs().inflateRaw(comp, entry.size);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      this.fail(`${what}: deflate data is corrupt or larger than its declared ${entry.size} bytes (${oneLine(msg, 80)})`);
    }
    if (out.length !== entry.size) this.fail(`${what}: inflates to ${out.length} bytes, the directory says ${entry.size}`);
    const bytes = out;
    if (verifyCrc) this.checkCrc(entry, crc32(bytes));
    this.inflated.set(entry, bytes);
    return bytes;
  }

  private checkCrc(entry: ZipEntry, got: number): void {
    if (got !== entry.crc32) {
      this.fail(`entry ${quoteEntryName(entry.name)}: CRC-32 mismatch (stored ${hex8(entry.crc32)}, data ${hex8(got)}): file corrupt`);
    }
  }

  read(entry: ZipEntry, opts: ZipReadOptions = {}): Uint8Array {
    const verifyCrc = opts.verifyCrc ?? true;
    const what = `entry ${quoteEntryName(entry.name)}`;
    if (opts.maxBytes !== undefined && entry.size > opts.maxBytes) {
      this.fail(`${what} is ${entry.size} bytes, over the limit of ${opts.maxBytes}`);
    }
    if (entry.method === 8) return this.inflate(entry, verifyCrc).slice();
    const out = this.raw(entry.dataOffset, entry.size, what);
    if (verifyCrc) this.checkCrc(entry, crc32(out));
    return out;
  }

  private checkRange(entry: ZipEntry, start: number, length: number): void {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > entry.size) {
      this.fail(`entry ${quoteEntryName(entry.name)}: bytes [${start}, ${start + length}) requested, it has ${entry.size}`);
    }
  }

  readRange(entry: ZipEntry, start: number, length: number): Uint8Array {
    this.checkRange(entry, start, length);
    if (entry.method === 8) return this.inflate(entry, false).slice(start, start + length);
    return this.raw(entry.dataOffset + start, length, `entry ${quoteEntryName(entry.name)}`);
  }

  readRangeInto(entry: ZipEntry, start: number, into: Uint8Array): void {
    this.checkRange(entry, start, into.length);
    if (entry.method === 8) {
      into.set(this.inflate(entry, false).subarray(start, start + into.length));
      return;
    }
    if (this.closed) this.fail(`read of entry ${quoteEntryName(entry.name)} after close()`);
    if (!this.src.readExact(entry.dataOffset + start, into)) {
      this.fail(`file ended while reading entry ${quoteEntryName(entry.name)} (truncated or changed since it was opened?)`);
    }
  }

  verify(entry: ZipEntry): void {
    if (entry.method === 8) {
      this.inflated.delete(entry);
      this.inflate(entry, true);
      return;
    }
    const chunk = new Uint8Array(Math.min(entry.size, 16 * 1024 * 1024));
    let crc = 0;
    for (let done = 0; done < entry.size;) {
      const n = Math.min(chunk.length, entry.size - done);
      const view = chunk.subarray(0, n);
      if (this.closed) this.fail(`read of entry ${quoteEntryName(entry.name)} after close()`);
      if (!this.src.readExact(entry.dataOffset + done, view)) {
        this.fail(`file ended while reading entry ${quoteEntryName(entry.name)} (truncated?)`);
      }
      crc = crc32(view, crc);
      done += n;
    }
    this.checkCrc(entry, crc);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inflated.clear();
    this.src.close();
  }
}

function hex8(n: number): string { return n.toString(16).padStart(8, '0'); }

/**
 * Parses and validates the whole directory structure: EOCD, zip64 records, central directory
 * and every local header. Returns the entries; throws ConvNextError on anything inconsistent.
 */
function parseArchive(source: string, src: ByteSource): ZipEntry[] {
  const fail = (why: string): never => { throw new ConvNextError(`${source}: ${why}`); };
  const size = src.size;
  const read = (pos: number, len: number, what: string): Uint8Array => {
    const b = new Uint8Array(len);
    if (pos < 0 || pos + len > size || !src.readExact(pos, b)) fail(`file ended while reading ${what} (truncated?)`);
    return b;
  };
  if (size === 0) fail('empty file, not a zip archive');
  if (size < EOCD_SIZE) fail(`file is ${size} bytes, too small for a zip archive (truncated?)`);

  // 1. End of central directory: the last record whose comment reaches exactly the end.
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
  const tailStart = size - tailLen;
  const tail = read(tailStart, tailLen, 'the end of the archive');
  let eocd = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tail[i] === 0x50 && tail[i + 1] === 0x4b && tail[i + 2] === 0x05 && tail[i + 3] === 0x06) {
      if (i + EOCD_SIZE + u16(tail, i + 20) === tailLen) { eocd = i; break; }
    }
  }
  if (eocd < 0) {
    const head = read(0, Math.min(4, size), 'the file header');
    if (u32(head, 0) === SIG_LOCAL && head.length === 4) fail('zip end-of-central-directory record not found (file truncated?)');
    fail('not a zip archive (no end-of-central-directory record)');
  }
  const eocdPos = tailStart + eocd;
  const disk = u16(tail, eocd + 4);
  const cdDisk = u16(tail, eocd + 6);
  let entriesOnDisk = u16(tail, eocd + 8);
  let entryCount = u16(tail, eocd + 10);
  let cdSize = u32(tail, eocd + 12);
  let cdOffset = u32(tail, eocd + 16);
  let cdEnd = eocdPos;

  // 2. Zip64: a locator right before the EOCD points at the zip64 EOCD record.
  if (eocdPos >= ZIP64_LOCATOR_SIZE) {
    const loc = read(eocdPos - ZIP64_LOCATOR_SIZE, ZIP64_LOCATOR_SIZE, 'the zip64 locator');
    if (u32(loc, 0) === SIG_ZIP64_LOCATOR) {
      const recPos = u64(loc, 8);
      const totalDisks = u32(loc, 16);
      if (totalDisks > 1) fail(`multi-disk zip archives are not supported (${totalDisks} disks)`);
      if (!(recPos + ZIP64_EOCD_SIZE <= eocdPos - ZIP64_LOCATOR_SIZE)) {
        fail(`zip64 end-of-central-directory offset ${Number.isFinite(recPos) ? recPos : 'over 2^53'} is outside the file (${size} bytes; truncated?)`);
      }
      const rec = read(recPos, ZIP64_EOCD_SIZE, 'the zip64 end-of-central-directory record');
      if (u32(rec, 0) !== SIG_ZIP64_EOCD) fail('zip64 end-of-central-directory record not found where the locator points (corrupt)');
      const recSize = u64(rec, 4);
      if (recSize < ZIP64_EOCD_SIZE - 12 || recPos + 12 + recSize > eocdPos - ZIP64_LOCATOR_SIZE) {
        fail(`zip64 end-of-central-directory record claims ${Number.isFinite(recSize) ? recSize : 'over 2^53'} bytes (corrupt)`);
      }
      if (u32(rec, 16) !== 0 || u32(rec, 20) !== 0) fail('multi-disk zip archives are not supported');
      entriesOnDisk = u64(rec, 24);
      entryCount = u64(rec, 32);
      cdSize = u64(rec, 40);
      cdOffset = u64(rec, 48);
      cdEnd = recPos;
    } else if (entryCount === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
      fail('zip64 archive without a zip64 end-of-central-directory locator (truncated or corrupt)');
    } else if (disk !== 0 || cdDisk !== 0) {
      fail('multi-disk zip archives are not supported');
    }
  } else if (disk !== 0 || cdDisk !== 0) {
    fail('multi-disk zip archives are not supported');
  }

  // 3. Bounds of the central directory, before reading it.
  const num = (v: number): string => (Number.isFinite(v) ? String(v) : 'over 2^53');
  if (entriesOnDisk !== entryCount) fail(`central directory counts ${num(entriesOnDisk)} entries on this disk but ${num(entryCount)} in all (multi-disk or corrupt)`);
  if (!(cdOffset <= cdEnd)) fail(`central directory offset ${num(cdOffset)} is past the end of the data (${cdEnd} bytes; truncated or corrupt)`);
  if (!(cdSize <= cdEnd - cdOffset)) {
    fail(`central directory of ${num(cdSize)} bytes at offset ${cdOffset} runs past the end of the data (${cdEnd} bytes; truncated or corrupt)`);
  }
  if (cdSize > MAX_CENTRAL_DIRECTORY_BYTES) fail(`central directory of ${cdSize} bytes is over the limit of ${MAX_CENTRAL_DIRECTORY_BYTES}`);
  if (entryCount > MAX_ENTRIES) fail(`archive claims ${num(entryCount)} entries, over the limit of ${MAX_ENTRIES}`);
  if (entryCount * CENTRAL_HEADER_SIZE > cdSize) fail(`central directory of ${cdSize} bytes cannot hold ${entryCount} entries (corrupt)`);

  // 4. Central directory entries.
  const cd = read(cdOffset, cdSize, 'the central directory');
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  type Raw = Omit<ZipEntry, 'dataOffset'> & { nameBytes: Uint8Array };
  const raws: Raw[] = [];
  const seen = new Set<string>();
  let p = 0;
  for (let i = 0; i < entryCount; i++) {
    if (p + CENTRAL_HEADER_SIZE > cdSize) fail(`central directory entry ${i} runs past the directory's end (corrupt)`);
    if (u32(cd, p) !== SIG_CENTRAL) fail(`central directory entry ${i} has a bad signature (corrupt)`);
    const flags = u16(cd, p + 8);
    const method = u16(cd, p + 10);
    const crc = u32(cd, p + 16);
    let compressedSize = u32(cd, p + 20);
    let size = u32(cd, p + 24);
    const nameLen = u16(cd, p + 28);
    const extraLen = u16(cd, p + 30);
    const commentLen = u16(cd, p + 32);
    const diskStart = u16(cd, p + 34);
    let localHeaderOffset = u32(cd, p + 42);
    const end = p + CENTRAL_HEADER_SIZE + nameLen + extraLen + commentLen;
    if (end > cdSize) fail(`central directory entry ${i} runs past the directory's end (corrupt)`);
    const nameBytes = cd.slice(p + CENTRAL_HEADER_SIZE, p + CENTRAL_HEADER_SIZE + nameLen);
    let name = '';
    if (flags & 0x800) {
      try { name = utf8.decode(nameBytes); } catch { fail(`central directory entry ${i} has a name that is not valid UTF-8`); }
    } else {
      name = latin1.decode(nameBytes);
    }
    const what = `entry ${quoteEntryName(name)}`;
    // Zip64 extended information: present for the fields stored as 0xFFFFFFFF, in this order.
    if (size === U32_MAX || compressedSize === U32_MAX || localHeaderOffset === U32_MAX || diskStart === U16_MAX) {
      let q = p + CENTRAL_HEADER_SIZE + nameLen;
      const qEnd = q + extraLen;
      let found = false;
      while (q + 4 <= qEnd) {
        const id = u16(cd, q);
        const len = u16(cd, q + 2);
        if (q + 4 + len > qEnd) fail(`${what}: extra field runs past its end (corrupt)`);
        if (id === 0x0001) {
          found = true;
          let r = q + 4;
          const take = (field: string): number => {
            if (r + 8 > q + 4 + len) fail(`${what}: zip64 extra field lacks the ${field} (corrupt)`);
            const v = u64(cd, r);
            r += 8;
            return v;
          };
          if (size === U32_MAX) size = take('uncompressed size');
          if (compressedSize === U32_MAX) compressedSize = take('compressed size');
          if (localHeaderOffset === U32_MAX) localHeaderOffset = take('local header offset');
          break;
        }
        q += 4 + len;
      }
      if (!found) fail(`${what}: sizes or offset need a zip64 extra field, there is none (corrupt)`);
    }
    if (diskStart !== 0 && diskStart !== U16_MAX) fail(`${what}: starts on disk ${diskStart} (multi-disk archives are not supported)`);
    if (flags & 0x1 || flags & 0x40) fail(`${what} is encrypted (not supported)`);
    if (method !== 0 && method !== 8) fail(`${what} uses compression method ${method} (only stored and deflate are supported)`);
    if (!(localHeaderOffset + LOCAL_HEADER_SIZE <= cdOffset)) {
      fail(`${what}: local header offset ${num(localHeaderOffset)} is past the start of the central directory (${cdOffset}; corrupt)`);
    }
    if (!(compressedSize <= cdOffset)) fail(`${what}: compressed size ${num(compressedSize)} is larger than the archive data (${cdOffset} bytes; corrupt)`);
    if (method === 0 && size !== compressedSize) fail(`${what}: stored entry with compressed size ${compressedSize} but size ${num(size)} (corrupt)`);
    if (method === 8 && !(size <= compressedSize * MAX_DEFLATE_RATIO + 1024)) {
      fail(`${what}: claims ${num(size)} bytes from ${compressedSize} deflated bytes (corrupt)`);
    }
    if (!Number.isSafeInteger(size)) fail(`${what}: size ${num(size)} is not representable`);
    if (seen.has(name)) fail(`entry ${quoteEntryName(name)} appears twice in the central directory`);
    seen.add(name);
    raws.push({ name, method, flags, crc32: crc, compressedSize, size, localHeaderOffset, nameBytes });
    p = end;
  }

  // 5. Local headers: signature, same name, data inside the archive data, no overlaps.
  const entries: ZipEntry[] = [];
  for (const r of raws) {
    const what = `entry ${quoteEntryName(r.name)}`;
    const lh = read(r.localHeaderOffset, LOCAL_HEADER_SIZE, `the local header of ${what}`);
    if (u32(lh, 0) !== SIG_LOCAL) fail(`${what}: bad local header signature at offset ${r.localHeaderOffset} (corrupt)`);
    const nameLen = u16(lh, 26);
    const extraLen = u16(lh, 28);
    const method = u16(lh, 8);
    if (method !== r.method) fail(`${what}: local header says compression method ${method}, the directory ${r.method} (corrupt)`);
    if (nameLen !== r.nameBytes.length) fail(`${what}: local header name differs from the central directory (corrupt)`);
    const dataOffset = r.localHeaderOffset + LOCAL_HEADER_SIZE + nameLen + extraLen;
    if (dataOffset > cdOffset || r.compressedSize > cdOffset - dataOffset) {
      fail(`${what}: data of ${r.compressedSize} bytes at offset ${dataOffset} runs past the archive data (${cdOffset} bytes; truncated or corrupt)`);
    }
    const localName = read(r.localHeaderOffset + LOCAL_HEADER_SIZE, nameLen, `the local header of ${what}`);
    for (let k = 0; k < nameLen; k++) {
      if (localName[k] !== r.nameBytes[k]) fail(`${what}: local header name differs from the central directory (corrupt)`);
    }
    const { nameBytes: _unused, ...rest } = r;
    void _unused;
    entries.push({ ...rest, dataOffset });
  }
  const sorted = [...entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (sorted[i].localHeaderOffset < prev.dataOffset + prev.compressedSize) {
      fail(`entries ${quoteEntryName(prev.name)} and ${quoteEntryName(sorted[i].name)} overlap (corrupt or crafted archive)`);
    }
  }
  return entries;
}

/** Opens zip bytes held in memory (validated like a file). `source` labels errors. */
export function openZipBuffer(buf: Uint8Array, source = 'zip buffer'): ZipReader {
  return new Reader(source, bufferSource(buf));
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Options of {@link ZipWriter}. */
export interface ZipWriterOptions {
  /** Data of each entry starts at a multiple of this many bytes (default 64, as PyTorch). */
  alignment?: number;
  /**
   * Sizes and offsets at or above this use zip64 fields (default and maximum 0xFFFFFFFF, as
   * the format requires; lower values exist to test the zip64 paths with small archives).
   */
  zip64Threshold?: number;
}

interface WrittenEntry {
  nameBytes: Uint8Array;
  crc: number;
  size: number;
  offset: number;
}

/**
 * Writes a zip archive of stored entries sequentially through `write`, laid out as PyTorch's
 * writer does (see the file header). Call {@link ZipWriter.finish} once after the last entry.
 */
export class ZipWriter {
  private pos = 0;
  private readonly written: WrittenEntry[] = [];
  private readonly names = new Set<string>();
  private finished = false;
  private readonly alignment: number;
  private readonly big: number;

  constructor(private readonly write: (bytes: Uint8Array) => void, opts: ZipWriterOptions = {}) {
    this.alignment = opts.alignment ?? 64;
    this.big = Math.min(opts.zip64Threshold ?? U32_MAX, U32_MAX);
    if (!Number.isInteger(this.alignment) || this.alignment < 1 || this.alignment > 0x8000) {
      throw new ConvNextError(`zip alignment ${this.alignment} is not an integer in [1, 32768]`);
    }
  }

  /** Bytes written so far. */
  get offset(): number { return this.pos; }

  private emit(bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    this.write(bytes);
    this.pos += bytes.byteLength;
  }

  /** Adds a stored entry whose content is the concatenation of `parts`. */
  add(name: string, parts: Uint8Array | readonly Uint8Array[]): void {
    if (this.finished) throw new ConvNextError(`zip: add(${quoteEntryName(name)}) after finish()`);
    if (this.names.has(name)) throw new ConvNextError(`zip: entry ${quoteEntryName(name)} added twice`);
    const nameBytes = new TextEncoder().encode(name);
    if (nameBytes.length === 0 || nameBytes.length > U16_MAX) throw new ConvNextError(`zip: entry name of ${nameBytes.length} bytes`);
    this.names.add(name);
    const list = parts instanceof Uint8Array ? [parts] : parts;
    let size = 0;
    let crc = 0;
    for (const part of list) {
      size += part.byteLength;
      crc = crc32(part, crc);
    }
    const offset = this.pos;
    const zip64 = size >= this.big || offset >= this.big;
    // zip64 extra field (local): uncompressed and compressed sizes if large, offset if large.
    let z64: Uint8Array = new Uint8Array(0);
    if (zip64) {
      const fields: number[] = [];
      if (size >= this.big) fields.push(size, size);
      if (offset >= this.big) fields.push(offset);
      z64 = new Uint8Array(4 + 8 * fields.length);
      const dv = new DataView(z64.buffer);
      dv.setUint16(0, 0x0001, true);
      dv.setUint16(2, 8 * fields.length, true);
      fields.forEach((v, k) => dv.setBigUint64(4 + 8 * k, BigInt(v), true));
    }
    // FB padding so the data starts at a multiple of the alignment.
    const start = offset + LOCAL_HEADER_SIZE + nameBytes.length + z64.length + 4;
    const pad = (this.alignment - (start % this.alignment)) % this.alignment;
    const extraLen = z64.length + 4 + pad;
    const header = new Uint8Array(LOCAL_HEADER_SIZE + nameBytes.length + extraLen);
    const dv = new DataView(header.buffer);
    dv.setUint32(0, SIG_LOCAL, true);
    dv.setUint16(4, 0, true); // version needed (as miniz writes for stored entries)
    dv.setUint16(6, 0x0808, true); // data descriptor follows; UTF-8 name
    dv.setUint16(8, 0, true); // stored
    // time, date, crc, sizes: zero (the data descriptor and central directory hold them)
    dv.setUint16(26, nameBytes.length, true);
    dv.setUint16(28, extraLen, true);
    header.set(nameBytes, LOCAL_HEADER_SIZE);
    header.set(z64, LOCAL_HEADER_SIZE + nameBytes.length);
    const fb = LOCAL_HEADER_SIZE + nameBytes.length + z64.length;
    header[fb] = 0x46; // 'F'
    header[fb + 1] = 0x42; // 'B'
    dv.setUint16(fb + 2, pad, true);
    header.fill(0x5a, fb + 4); // 'Z'
    this.emit(header);
    for (const part of list) this.emit(part);
    const desc = new Uint8Array(zip64 ? 24 : 16);
    const dd = new DataView(desc.buffer);
    dd.setUint32(0, SIG_DATA_DESCRIPTOR, true);
    dd.setUint32(4, crc, true);
    if (zip64) {
      dd.setBigUint64(8, BigInt(size), true);
      dd.setBigUint64(16, BigInt(size), true);
    } else {
      dd.setUint32(8, size, true);
      dd.setUint32(12, size, true);
    }
    this.emit(desc);
    this.written.push({ nameBytes, crc, size, offset });
  }

  /** Writes the central directory and the end records. */
  finish(): void {
    if (this.finished) throw new ConvNextError('zip: finish() called twice');
    this.finished = true;
    const cdOffset = this.pos;
    for (const e of this.written) {
      const bigSize = e.size >= this.big;
      const bigOffset = e.offset >= this.big;
      const fields: number[] = [];
      if (bigSize) fields.push(e.size, e.size);
      if (bigOffset) fields.push(e.offset);
      const extraLen = fields.length ? 4 + 8 * fields.length : 0;
      const h = new Uint8Array(CENTRAL_HEADER_SIZE + e.nameBytes.length + extraLen);
      const dv = new DataView(h.buffer);
      dv.setUint32(0, SIG_CENTRAL, true);
      dv.setUint16(4, 0, true); // version made by
      dv.setUint16(6, fields.length ? 45 : 0, true); // version needed
      dv.setUint16(8, 0x0808, true);
      dv.setUint16(10, 0, true);
      dv.setUint32(16, e.crc, true);
      dv.setUint32(20, bigSize ? U32_MAX : e.size, true);
      dv.setUint32(24, bigSize ? U32_MAX : e.size, true);
      dv.setUint16(28, e.nameBytes.length, true);
      dv.setUint16(30, extraLen, true);
      dv.setUint32(42, bigOffset ? U32_MAX : e.offset, true);
      h.set(e.nameBytes, CENTRAL_HEADER_SIZE);
      if (extraLen) {
        const x = CENTRAL_HEADER_SIZE + e.nameBytes.length;
        dv.setUint16(x, 0x0001, true);
        dv.setUint16(x + 2, 8 * fields.length, true);
        fields.forEach((v, k) => dv.setBigUint64(x + 4 + 8 * k, BigInt(v), true));
      }
      this.emit(h);
    }
    const cdSize = this.pos - cdOffset;
    const n = this.written.length;
    const z64Pos = this.pos;
    const tail = new Uint8Array(ZIP64_EOCD_SIZE + ZIP64_LOCATOR_SIZE + EOCD_SIZE);
    const dv = new DataView(tail.buffer);
    dv.setUint32(0, SIG_ZIP64_EOCD, true);
    dv.setBigUint64(4, BigInt(ZIP64_EOCD_SIZE - 12), true);
    dv.setUint16(12, 0x031e, true); // made by: Unix, spec 3.0 (as miniz)
    dv.setUint16(14, 45, true);
    dv.setBigUint64(24, BigInt(n), true);
    dv.setBigUint64(32, BigInt(n), true);
    dv.setBigUint64(40, BigInt(cdSize), true);
    dv.setBigUint64(48, BigInt(cdOffset), true);
    const l = ZIP64_EOCD_SIZE;
    dv.setUint32(l, SIG_ZIP64_LOCATOR, true);
    dv.setBigUint64(l + 8, BigInt(z64Pos), true);
    dv.setUint32(l + 16, 1, true);
    const e = l + ZIP64_LOCATOR_SIZE;
    dv.setUint32(e, SIG_EOCD, true);
    dv.setUint16(e + 8, Math.min(n, U16_MAX), true);
    dv.setUint16(e + 10, Math.min(n, U16_MAX), true);
    dv.setUint32(e + 12, cdSize >= this.big ? U32_MAX : cdSize, true);
    dv.setUint32(e + 16, cdOffset >= this.big ? U32_MAX : cdOffset, true);
    this.emit(tail);
  }
}
