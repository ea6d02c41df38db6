/**
 * DEFLATE (RFC 1951) and the zlib container (RFC 1950) in plain TypeScript: synchronous, no
 * dependencies, nothing from `node:*`, so it runs in a browser bundle as well as in Node.
 *
 * - inflateRaw / inflateZlib decode untrusted data: every malformed stream throws a one-line
 *   ConvNextError (never another error, never a hang); the output grows geometrically up to
 *   maxOutputLength and never past it. Huffman codes are decoded through a 10-bit (literal/length)
 *   and 9-bit (distance) lookup table, longer codes canonically.
 * - deflateRaw / deflateZlib encode: level 0 = stored blocks, level 1 = LZ77 (hash chains of
 *   modest depth, one-step lazy matching) with, per block, the smallest of dynamic Huffman,
 *   fixed Huffman or stored. The output is plain RFC 1951 that zlib decodes.
 */
import { ConvNextError } from '../errors.js';

export interface InflateOptions {
  /** The most bytes the output may have (more: a ConvNextError). Default: no limit but memory. */
  maxOutputLength?: number;
  /**
   * The output length the caller expects (e.g. a zip directory's size): the output buffer is
   * allocated once at that size (capped by maxOutputLength and by what the input could possibly
   * inflate to). A hint only: the result has the stream's real length, which the caller compares.
   */
  expectedLength?: number;
}

export interface DeflateOptions {
  /** 0: stored blocks only; 1 (default): LZ77 + Huffman codes. */
  level?: 0 | 1;
}

// ---------------------------------------------------------------------------------------------
// Shared tables
// ---------------------------------------------------------------------------------------------

/** Base lengths and extra bits of length codes 257..285. */
const LEN_BASE = new Uint16Array([3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]);
const LEN_EXTRA = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]);
/** Base distances and extra bits of distance codes 0..29. */
const DIST_BASE = new Uint16Array([1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]);
const DIST_EXTRA = new Uint8Array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]);
/** The order in which a dynamic block sends the code lengths of the code-length code. */
const CL_ORDER = new Uint8Array([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]);

/** The fixed literal/length code lengths (RFC 1951 3.2.6): 288 symbols. */
function fixedLitLengths(): Uint8Array {
  const l = new Uint8Array(288);
  l.fill(8, 0, 144);
  l.fill(9, 144, 256);
  l.fill(7, 256, 280);
  l.fill(8, 280, 288);
  return l;
}

/** Reverses the low `n` bits of `v` (Huffman codes are sent most significant bit first). */
function reverseBits(v: number, n: number): number {
  let r = 0;
  for (let i = 0; i < n; i++) {
    r = (r << 1) | (v & 1);
    v >>>= 1;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Inflate
// ---------------------------------------------------------------------------------------------

/** A decoding table: `fast[bits & mask]` = (symbol << 4) | code length, 0 = longer code or no code. */
interface Huff {
  fast: Uint16Array;
  bits: number;
  /** counts[len]: how many codes of each length (1..15). */
  counts: Uint16Array;
  /** The symbols sorted by (code length, symbol): canonical order, for codes longer than `bits`. */
  syms: Uint16Array;
}

const LIT_FAST_BITS = 10;
const DIST_FAST_BITS = 9;
const CL_FAST_BITS = 7;

function newHuff(bits: number, maxSyms: number): Huff {
  return { fast: new Uint16Array(1 << bits), bits, counts: new Uint16Array(16), syms: new Uint16Array(maxSyms) };
}

const enum Kind {
  Lit,
  Dist,
  CodeLen,
}

/** A one-line error about a corrupt stream at input byte `pos`. */
function corrupt(what: string, pos: number): ConvNextError {
  return new ConvNextError(`corrupt deflate stream: ${what} (near input byte ${pos})`);
}

/**
 * Fills `h` for the code lengths `lens[0..n)`. Over-subscribed sets are refused; incomplete ones
 * too, except (as zlib) a literal/length or distance code with a single code of length 1, and
 * the empty code (a symbol decoded from it is then an error).
 */
function buildHuff(h: Huff, lens: Uint8Array, n: number, kind: Kind, pos: number): void {
  const counts = h.counts;
  counts.fill(0);
  for (let i = 0; i < n; i++) counts[lens[i]]++;
  counts[0] = 0;
  let left = 1;
  let maxLen = 0;
  for (let len = 1; len <= 15; len++) {
    left = (left << 1) - counts[len];
    if (left < 0) throw corrupt(`over-subscribed ${kindName(kind)} code`, pos);
    if (counts[len] > 0) maxLen = len;
  }
  if (left > 0 && maxLen > 0 && (kind === Kind.CodeLen || maxLen !== 1)) throw corrupt(`incomplete ${kindName(kind)} code`, pos);
  // canonical order and first codes
  const offs = new Uint16Array(17);
  for (let len = 1; len <= 15; len++) offs[len + 1] = offs[len] + counts[len];
  for (let i = 0; i < n; i++) if (lens[i] !== 0) h.syms[offs[lens[i]]++] = i;
  const fast = h.fast;
  const bits = h.bits;
  fast.fill(0);
  // next[len]: the first code of each length
  const next = new Uint16Array(16);
  let code = 0;
  for (let len = 1; len <= 15; len++) {
    next[len] = code;
    code = (code + counts[len]) << 1;
  }
  for (let s = 0; s < n; s++) {
    const len = lens[s];
    if (len === 0) continue;
    const c = next[len]++;
    if (len > bits) continue;
    const entry = (s << 4) | len;
    const step = 1 << len;
    for (let i = reverseBits(c, len); i < fast.length; i += step) fast[i] = entry;
  }
}

function kindName(kind: Kind): string {
  return kind === Kind.Lit ? 'literal/length' : kind === Kind.Dist ? 'distance' : 'code-length';
}

/**
 * Canonical decoding of a code longer than the fast table (or absent from it) from the low bits
 * of `bitbuf` (at least 15 valid bits): (symbol << 4) | length, or -1 for no such code.
 */
function slowDecode(h: Huff, bitbuf: number): number {
  const counts = h.counts;
  let code = 0;
  let first = 0;
  let index = 0;
  for (let len = 1; len <= 15; len++) {
    code |= (bitbuf >>> (len - 1)) & 1;
    const c = counts[len];
    if (code - first < c) return (h.syms[index + code - first] << 4) | len;
    index += c;
    first = (first + c) << 1;
    code <<= 1;
  }
  return -1;
}

let fixedLit: Huff | undefined;
let fixedDist: Huff | undefined;

function fixedTables(): [Huff, Huff] {
  if (!fixedLit || !fixedDist) {
    const lit = newHuff(LIT_FAST_BITS, 288);
    buildHuff(lit, fixedLitLengths(), 288, Kind.Lit, 0);
    const dist = newHuff(DIST_FAST_BITS, 32);
    buildHuff(dist, new Uint8Array(32).fill(5), 32, Kind.Dist, 0);
    fixedLit = lit;
    fixedDist = dist;
  }
  return [fixedLit, fixedDist];
}

function checkLengthOption(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ConvNextError(`inflate: ${name} must be a non-negative integer, not ${String(v)}`, 2);
  return v;
}

function allocOutput(n: number): Uint8Array {
  try {
    return new Uint8Array(n);
  } catch {
    throw new ConvNextError(`inflate: cannot allocate an output buffer of ${n} bytes`);
  }
}

/** `out` (holding `used` bytes) grown to hold at least `need` bytes: doubling, capped at `limit`. */
function grow(out: Uint8Array, used: number, need: number, limit: number): Uint8Array {
  if (need > limit) throw new ConvNextError(`inflate: the output exceeds the limit of ${limit} bytes`);
  let n = Math.max(out.length * 2, need, 4096);
  if (n > limit) n = limit;
  const nb = allocOutput(n);
  nb.set(out.subarray(0, used));
  return nb;
}

/** The most bytes `n` input bytes can inflate to: 258 bytes per 2 bits (a 1-bit length code and a 1-bit distance code). */
function maxInflated(n: number): number {
  return n * 1032 + 258;
}

/** Inflates the raw DEFLATE stream starting at `data[start]`; `end`: the byte after its last block. */
function inflateCore(data: Uint8Array, start: number, opts: InflateOptions): { out: Uint8Array; end: number } {
  if (!(data instanceof Uint8Array)) throw new ConvNextError('inflate: the input must be a Uint8Array', 2);
  const maxOut = checkLengthOption('maxOutputLength', opts.maxOutputLength) ?? Number.MAX_SAFE_INTEGER;
  const expected = checkLengthOption('expectedLength', opts.expectedLength);
  const len = data.length;
  const bound = maxInflated(len - start);
  let out = allocOutput(Math.min(expected ?? Math.max(4 * (len - start), 4096), maxOut, bound));
  let outPos = 0;
  let inPos = start;
  // Bit buffer: bits are consumed from the low end; refilled byte by byte to 24..31 bits (a Smi).
  // Past the end of the input it is filled with zeros, and a symbol that used any of those
  // (inPos - len bytes of padding > bitcnt / 8 unread) is reported as truncation.
  let bitbuf = 0;
  let bitcnt = 0;
  let final = 0;
  const lit = newHuff(LIT_FAST_BITS, 288);
  const dist = newHuff(DIST_FAST_BITS, 32);
  const cl = newHuff(CL_FAST_BITS, 19);
  const lens = new Uint8Array(286 + 30);
  const clLens = new Uint8Array(19);
  do {
    while (bitcnt < 24) {
      bitbuf |= (inPos < len ? data[inPos] : 0) << bitcnt;
      inPos++;
      bitcnt += 8;
    }
    if (inPos > len && (inPos - len) * 8 > bitcnt - 3) throw corrupt('unexpected end of input', len);
    final = bitbuf & 1;
    const type = (bitbuf >>> 1) & 3;
    bitbuf >>>= 3;
    bitcnt -= 3;
    if (type === 0) {
      // stored: skip to a byte boundary, give back the whole bytes still buffered
      inPos -= bitcnt >>> 3;
      bitbuf = 0;
      bitcnt = 0;
      if (inPos + 4 > len) throw corrupt('unexpected end of input in a stored block header', len);
      const n = data[inPos] | (data[inPos + 1] << 8);
      const nn = data[inPos + 2] | (data[inPos + 3] << 8);
      if ((n ^ 0xffff) !== nn) throw corrupt(`stored block length ${n} does not match its complement ${nn}`, inPos);
      inPos += 4;
      if (inPos + n > len) throw corrupt(`unexpected end of input in a stored block of ${n} bytes`, len);
      if (outPos + n > out.length) out = grow(out, outPos, outPos + n, maxOut);
      out.set(data.subarray(inPos, inPos + n), outPos);
      outPos += n;
      inPos += n;
      continue;
    }
    let lt: Huff;
    let dt: Huff;
    if (type === 1) {
      [lt, dt] = fixedTables();
    } else if (type === 2) {
      const hlit = (bitbuf & 31) + 257;
      const hdist = ((bitbuf >>> 5) & 31) + 1;
      const hclen = ((bitbuf >>> 10) & 15) + 4;
      bitbuf >>>= 14;
      bitcnt -= 14;
      if (hlit > 286) throw corrupt(`too many literal/length codes (${hlit})`, inPos);
      if (hdist > 30) throw corrupt(`too many distance codes (${hdist})`, inPos);
      clLens.fill(0);
      for (let i = 0; i < hclen; i++) {
        if (bitcnt < 3) {
          while (bitcnt < 24) {
            bitbuf |= (inPos < len ? data[inPos] : 0) << bitcnt;
            inPos++;
            bitcnt += 8;
          }
        }
        clLens[CL_ORDER[i]] = bitbuf & 7;
        bitbuf >>>= 3;
        bitcnt -= 3;
      }
      if (inPos > len && (inPos - len) * 8 > bitcnt) throw corrupt('unexpected end of input', len);
      buildHuff(cl, clLens, 19, Kind.CodeLen, inPos);
      const total = hlit + hdist;
      const clMask = (1 << CL_FAST_BITS) - 1;
      let i = 0;
      while (i < total) {
        while (bitcnt < 24) {
          bitbuf |= (inPos < len ? data[inPos] : 0) << bitcnt;
          inPos++;
          bitcnt += 8;
        }
        let e = cl.fast[bitbuf & clMask];
        if (e === 0) {
          e = slowDecode(cl, bitbuf);
          if (e < 0) throw corrupt('invalid code-length code', inPos);
        }
        const l = e & 15;
        bitbuf >>>= l;
        bitcnt -= l;
        const sym = e >>> 4;
        if (sym < 16) {
          lens[i++] = sym;
        } else {
          let rep: number;
          let v = 0;
          if (sym === 16) {
            if (i === 0) throw corrupt('a repeated code length with no previous length', inPos);
            v = lens[i - 1];
            rep = 3 + (bitbuf & 3);
            bitbuf >>>= 2;
            bitcnt -= 2;
          } else if (sym === 17) {
            rep = 3 + (bitbuf & 7);
            bitbuf >>>= 3;
            bitcnt -= 3;
          } else {
            rep = 11 + (bitbuf & 127);
            bitbuf >>>= 7;
            bitcnt -= 7;
          }
          if (i + rep > total) throw corrupt('code lengths repeated past the end of the code', inPos);
          lens.fill(v, i, i + rep);
          i += rep;
        }
        if (inPos > len && (inPos - len) * 8 > bitcnt) throw corrupt('unexpected end of input', len);
      }
      if (lens[256] === 0) throw corrupt('no end-of-block code', inPos);
      buildHuff(lit, lens, hlit, Kind.Lit, inPos);
      buildHuff(dist, lens.subarray(hlit, total), hdist, Kind.Dist, inPos);
      lt = lit;
      dt = dist;
    } else {
      throw corrupt('invalid block type 3', inPos);
    }
    // the block's symbols
    const lfast = lt.fast;
    const lmask = (1 << lt.bits) - 1;
    const dfast = dt.fast;
    const dmask = (1 << dt.bits) - 1;
    for (;;) {
      while (bitcnt < 24) {
        bitbuf |= (inPos < len ? data[inPos] : 0) << bitcnt;
        inPos++;
        bitcnt += 8;
      }
      let e = lfast[bitbuf & lmask];
      if (e === 0) {
        e = slowDecode(lt, bitbuf);
        if (e < 0) throw corrupt('invalid literal/length code', inPos);
      }
      let l = e & 15;
      bitbuf >>>= l;
      bitcnt -= l;
      let sym = e >>> 4;
      if (sym < 256) {
        if (inPos > len && (inPos - len) * 8 > bitcnt) throw corrupt('unexpected end of input', len);
        if (outPos >= out.length) out = grow(out, outPos, outPos + 1, maxOut);
        out[outPos++] = sym;
        continue;
      }
      if (sym === 256) {
        if (inPos > len && (inPos - len) * 8 > bitcnt) throw corrupt('unexpected end of input', len);
        break;
      }
      sym -= 257;
      if (sym >= 29) throw corrupt(`invalid literal/length symbol ${sym + 257}`, inPos);
      let mlen = LEN_BASE[sym];
      l = LEN_EXTRA[sym];
      if (l !== 0) {
        mlen += bitbuf & ((1 << l) - 1);
        bitbuf >>>= l;
        bitcnt -= l;
      }
      while (bitcnt < 24) {
        bitbuf |= (inPos < len ? data[inPos] : 0) << bitcnt;
        inPos++;
        bitcnt += 8;
      }
      e = dfast[bitbuf & dmask];
      if (e === 0) {
        e = slowDecode(dt, bitbuf);
        if (e < 0) throw corrupt('invalid distance code', inPos);
      }
      l = e & 15;
      bitbuf >>>= l;
      bitcnt -= l;
      sym = e >>> 4;
      if (sym >= 30) throw corrupt(`invalid distance symbol ${sym}`, inPos);
      let d = DIST_BASE[sym];
      l = DIST_EXTRA[sym];
      if (l !== 0) {
        if (bitcnt < l) {
          while (bitcnt < 24) {
            bitbuf |= (inPos < len ? data[inPos] : 0) << bitcnt;
            inPos++;
            bitcnt += 8;
          }
        }
        d += bitbuf & ((1 << l) - 1);
        bitbuf >>>= l;
        bitcnt -= l;
      }
      if (inPos > len && (inPos - len) * 8 > bitcnt) throw corrupt('unexpected end of input', len);
      if (d > outPos) throw corrupt(`distance ${d} is past the start of the output (${outPos} bytes)`, inPos);
      if (outPos + mlen > out.length) out = grow(out, outPos, outPos + mlen, maxOut);
      let s = outPos - d;
      if (d >= mlen && mlen > 32) {
        out.copyWithin(outPos, s, s + mlen);
        outPos += mlen;
      } else if (d === 1 && mlen > 16) {
        out.fill(out[s], outPos, outPos + mlen);
        outPos += mlen;
      } else {
        const end = outPos + mlen;
        while (outPos < end) out[outPos++] = out[s++];
      }
    }
  } while (final === 0);
  const end = inPos - (bitcnt >>> 3);
  return { out: outPos === out.length ? out : out.slice(0, outPos), end };
}

/**
 * Decodes a raw DEFLATE stream (RFC 1951); bytes after its final block are ignored. Throws a
 * one-line ConvNextError for any malformed stream and when the output would pass maxOutputLength.
 */
export function inflateRaw(data: Uint8Array, opts: InflateOptions = {}): Uint8Array {
  return inflateCore(data, 0, opts).out;
}

/** Decodes a zlib stream (RFC 1950): checks its header and its Adler-32; bytes after it are ignored. */
export function inflateZlib(data: Uint8Array, opts: InflateOptions = {}): Uint8Array {
  if (!(data instanceof Uint8Array)) throw new ConvNextError('inflate: the input must be a Uint8Array', 2);
  if (data.length < 2) throw new ConvNextError('corrupt zlib stream: shorter than its 2-byte header');
  const cmf = data[0];
  const flg = data[1];
  if ((cmf & 15) !== 8) throw new ConvNextError(`corrupt zlib stream: compression method ${cmf & 15}, not 8 (deflate)`);
  if (cmf >>> 4 > 7) throw new ConvNextError(`corrupt zlib stream: window size 2^${(cmf >>> 4) + 8} is over 32 KiB`);
  if (((cmf << 8) | flg) % 31 !== 0) throw new ConvNextError('corrupt zlib stream: header check bits are wrong');
  if (flg & 0x20) throw new ConvNextError('corrupt zlib stream: a preset dictionary is not supported');
  const { out, end } = inflateCore(data, 2, opts);
  if (end + 4 > data.length) throw new ConvNextError('corrupt zlib stream: unexpected end of input in its Adler-32 trailer');
  const want = ((data[end] << 24) | (data[end + 1] << 16) | (data[end + 2] << 8) | data[end + 3]) >>> 0;
  const got = adler32(out);
  if (want !== got) throw new ConvNextError(`corrupt zlib stream: Adler-32 ${hex8(got)} of the data, the stream says ${hex8(want)}`);
  return out;
}

function hex8(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Adler-32 and the zlib container
// ---------------------------------------------------------------------------------------------

/** Adler-32 of `data`, continuing from `start` (default 1, the initial value). */
export function adler32(data: Uint8Array, start = 1): number {
  let a = start & 0xffff;
  let b = (start >>> 16) & 0xffff;
  const n = data.length;
  let i = 0;
  while (i < n) {
    // 3800 bytes keep b under 2^31 (small integers): b <= 65520 * 3801 + 255 * 3800 * 3801 / 2
    const end = Math.min(i + 3800, n);
    for (; i < end; i++) {
      a += data[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/** A zlib stream (header 0x78 0x01, the raw DEFLATE data, the big-endian Adler-32 of the uncompressed data). */
export function zlibWrap(raw: Uint8Array, adler: number): Uint8Array {
  const out = new Uint8Array(raw.length + 6);
  out[0] = 0x78;
  out[1] = 0x01;
  out.set(raw, 2);
  const p = raw.length + 2;
  out[p] = (adler >>> 24) & 255;
  out[p + 1] = (adler >>> 16) & 255;
  out[p + 2] = (adler >>> 8) & 255;
  out[p + 3] = adler & 255;
  return out;
}

/** deflateRaw in a zlib container (what PNG's IDAT holds). */
export function deflateZlib(data: Uint8Array, opts: DeflateOptions = {}): Uint8Array {
  return zlibWrap(deflateRaw(data, opts), adler32(data));
}

// ---------------------------------------------------------------------------------------------
// Deflate
// ---------------------------------------------------------------------------------------------

/** An LSB-first bit writer into a growing buffer. */
class BitWriter {
  buf: Uint8Array;
  pos = 0;
  private bits = 0;
  private cnt = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(Math.max(size, 64));
  }
  /** Room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n + 8 <= this.buf.length) return;
    const nb = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n + 8));
    nb.set(this.buf.subarray(0, this.pos));
    this.buf = nb;
  }
  /** Writes the low `n` (<= 24) bits of `v`. */
  put(v: number, n: number): void {
    let bits = this.bits | (v << this.cnt);
    let cnt = this.cnt + n;
    const buf = this.buf;
    while (cnt >= 8) {
      buf[this.pos++] = bits & 255;
      bits >>>= 8;
      cnt -= 8;
    }
    this.bits = bits;
    this.cnt = cnt;
  }
  /** Pads with zero bits to a byte boundary. */
  align(): void {
    if (this.cnt > 0) this.put(0, 8 - this.cnt);
  }
  get bitPos(): number {
    return this.pos * 8 + this.cnt;
  }
  bytes(src: Uint8Array): void {
    this.buf.set(src, this.pos);
    this.pos += src.length;
  }
  finish(): Uint8Array {
    this.align();
    return this.buf.slice(0, this.pos);
  }
}

/** Writes stored blocks for `data[start, end)` (at least one block, even when empty). */
function writeStored(w: BitWriter, data: Uint8Array, start: number, end: number, final: boolean): void {
  w.ensure(end - start + 5 * (Math.ceil((end - start) / 65535) + 1));
  let p = start;
  do {
    const n = Math.min(65535, end - p);
    const last = p + n === end;
    w.put(final && last ? 1 : 0, 1);
    w.put(0, 2);
    w.align();
    w.put(n & 255, 8);
    w.put(n >>> 8, 8);
    w.put(~n & 255, 8);
    w.put((~n >>> 8) & 255, 8);
    w.bytes(data.subarray(p, p + n));
    p += n;
  } while (p < end);
}

/** Length code index (0..28) of each match length 0..258. */
const LEN_CODE = (() => {
  const t = new Uint8Array(259);
  for (let c = 0; c < 29; c++) {
    const hi = c === 28 ? 258 : LEN_BASE[c] + (1 << LEN_EXTRA[c]) - 1;
    for (let l = LEN_BASE[c]; l <= hi; l++) t[l] = c;
  }
  t[258] = 28;
  return t;
})();

/** Distance code (0..29) of each distance 1..32768 (index = distance). */
const DIST_CODE = (() => {
  const t = new Uint8Array(32769);
  for (let c = 0; c < 30; c++) {
    const hi = DIST_BASE[c] + (1 << DIST_EXTRA[c]) - 1;
    for (let d = DIST_BASE[c]; d <= hi && d <= 32768; d++) t[d] = c;
  }
  return t;
})();

/**
 * Huffman code lengths of at most `maxBits` for the frequencies `freq` (symbols with 0 get 0).
 * At least two symbols get a code (dummy ones when fewer are used), so every code is complete,
 * which every decoder accepts. Too-long codes are avoided by flattening the frequencies and retrying.
 */
function huffLengths(freqIn: Uint32Array, maxBits: number): Uint8Array {
  const n = freqIn.length;
  const freq = Float64Array.from(freqIn);
  let used = 0;
  for (let i = 0; i < n; i++) if (freq[i] > 0) used++;
  for (let i = 0; used < 2 && i < n; i++) {
    if (freq[i] === 0) {
      freq[i] = 1;
      used++;
    }
  }
  const lens = new Uint8Array(n);
  const syms: number[] = [];
  for (let i = 0; i < n; i++) if (freq[i] > 0) syms.push(i);
  const m = syms.length;
  const w = new Float64Array(2 * m - 1);
  const parent = new Int32Array(2 * m - 1);
  const depth = new Uint8Array(2 * m - 1);
  for (;;) {
    syms.sort((a, b) => freq[a] - freq[b] || a - b);
    for (let i = 0; i < m; i++) w[i] = freq[syms[i]];
    // two-queue Huffman: leaves in sorted order, internal nodes created in non-decreasing order
    let li = 0;
    let ii = m;
    for (let next = m; next < 2 * m - 1; next++) {
      const a = li < m && (ii >= next || w[li] <= w[ii]) ? li++ : ii++;
      const b = li < m && (ii >= next || w[li] <= w[ii]) ? li++ : ii++;
      w[next] = w[a] + w[b];
      parent[a] = next;
      parent[b] = next;
    }
    depth[2 * m - 2] = 0;
    let maxDepth = 0;
    for (let i = 2 * m - 3; i >= 0; i--) {
      depth[i] = depth[parent[i]] + 1;
      if (i < m && depth[i] > maxDepth) maxDepth = depth[i];
    }
    if (maxDepth <= maxBits) {
      for (let i = 0; i < m; i++) lens[syms[i]] = depth[i];
      return lens;
    }
    for (const s of syms) freq[s] = Math.max(1, Math.floor(freq[s] / 2));
  }
}

/** Canonical codes, bit-reversed for LSB-first writing, for the lengths `lens`. */
function huffCodes(lens: Uint8Array): Uint16Array {
  const counts = new Uint16Array(16);
  for (const l of lens) counts[l]++;
  counts[0] = 0;
  const next = new Uint16Array(16);
  let code = 0;
  for (let len = 1; len <= 15; len++) {
    next[len] = code;
    code = (code + counts[len]) << 1;
  }
  const codes = new Uint16Array(lens.length);
  for (let s = 0; s < lens.length; s++) if (lens[s] > 0) codes[s] = reverseBits(next[lens[s]]++, lens[s]);
  return codes;
}

const FIXED_LIT_LENS = fixedLitLengths();
const FIXED_LIT_CODES = huffCodes(FIXED_LIT_LENS);
const FIXED_DIST_LENS = new Uint8Array(30).fill(5);
const FIXED_DIST_CODES = huffCodes(FIXED_DIST_LENS);

/** Symbols per block (as zlib's default). */
const BLOCK_SYMS = 16384;

/** Buffers an LZ77 symbol stream and writes it as blocks of the cheapest kind. */
class BlockWriter {
  readonly w: BitWriter;
  /** Literal byte, or match length (3..258) when dist > 0. */
  readonly lit = new Uint16Array(BLOCK_SYMS);
  readonly dist = new Uint16Array(BLOCK_SYMS);
  n = 0;
  private readonly litFreq = new Uint32Array(286);
  private readonly distFreq = new Uint32Array(30);
  constructor(
    private readonly data: Uint8Array,
    size: number,
  ) {
    this.w = new BitWriter(size);
  }

  /** Writes the buffered symbols, which cover data[start, end). */
  flush(start: number, end: number, final: boolean): void {
    const { lit, dist, litFreq, distFreq, w } = this;
    const n = this.n;
    litFreq.fill(0);
    distFreq.fill(0);
    let extra = 0;
    for (let i = 0; i < n; i++) {
      if (dist[i] === 0) {
        litFreq[lit[i]]++;
      } else {
        const lc = LEN_CODE[lit[i]];
        const dc = DIST_CODE[dist[i]];
        litFreq[257 + lc]++;
        distFreq[dc]++;
        extra += LEN_EXTRA[lc] + DIST_EXTRA[dc];
      }
    }
    litFreq[256] = 1;
    // dynamic code and its header
    const litLens = huffLengths(litFreq, 15);
    const distLens = huffLengths(distFreq, 15);
    let hlit = 286;
    while (hlit > 257 && litLens[hlit - 1] === 0) hlit--;
    let hdist = 30;
    while (hdist > 1 && distLens[hdist - 1] === 0) hdist--;
    const all = new Uint8Array(hlit + hdist);
    all.set(litLens.subarray(0, hlit));
    all.set(distLens.subarray(0, hdist), hlit);
    // run-length code of the lengths: symbol | (extra value << 5)
    const rle: number[] = [];
    const clFreq = new Uint32Array(19);
    for (let i = 0; i < all.length; ) {
      const v = all[i];
      let run = 1;
      while (i + run < all.length && all[i + run] === v) run++;
      i += run;
      if (v === 0) {
        while (run >= 11) {
          const r = Math.min(run, 138);
          rle.push(18 | ((r - 11) << 5));
          clFreq[18]++;
          run -= r;
        }
        if (run >= 3) {
          rle.push(17 | ((run - 3) << 5));
          clFreq[17]++;
          run = 0;
        }
      } else {
        rle.push(v);
        clFreq[v]++;
        run--;
        while (run >= 3) {
          const r = Math.min(run, 6);
          rle.push(16 | ((r - 3) << 5));
          clFreq[16]++;
          run -= r;
        }
      }
      for (; run > 0; run--) {
        rle.push(v);
        clFreq[v]++;
      }
    }
    const clLens = huffLengths(clFreq, 7);
    let hclen = 19;
    while (hclen > 4 && clLens[CL_ORDER[hclen - 1]] === 0) hclen--;
    let dynBits = 3 + 5 + 5 + 4 + 3 * hclen;
    for (let s = 0; s < 19; s++) dynBits += clFreq[s] * clLens[s];
    dynBits += 2 * clFreq[16] + 3 * clFreq[17] + 7 * clFreq[18];
    let fixBits = 3;
    for (let s = 0; s < 286; s++) {
      dynBits += litFreq[s] * litLens[s];
      fixBits += litFreq[s] * FIXED_LIT_LENS[s];
    }
    for (let s = 0; s < 30; s++) {
      dynBits += distFreq[s] * distLens[s];
      fixBits += distFreq[s] * 5;
    }
    dynBits += extra;
    fixBits += extra;
    const storedBits = 8 * (end - start + 5 * Math.max(1, Math.ceil((end - start) / 65535))) + 8;
    if (storedBits <= dynBits && storedBits <= fixBits) {
      writeStored(w, this.data, start, end, final);
    } else if (fixBits <= dynBits) {
      w.ensure((fixBits >>> 3) + 8);
      w.put(final ? 1 : 0, 1);
      w.put(1, 2);
      this.writeSymbols(FIXED_LIT_CODES, FIXED_LIT_LENS, FIXED_DIST_CODES, FIXED_DIST_LENS);
    } else {
      w.ensure((dynBits >>> 3) + 8);
      w.put(final ? 1 : 0, 1);
      w.put(2, 2);
      w.put(hlit - 257, 5);
      w.put(hdist - 1, 5);
      w.put(hclen - 4, 4);
      for (let i = 0; i < hclen; i++) w.put(clLens[CL_ORDER[i]], 3);
      const clCodes = huffCodes(clLens);
      for (const r of rle) {
        const s = r & 31;
        w.put(clCodes[s], clLens[s]);
        if (s === 16) w.put(r >>> 5, 2);
        else if (s === 17) w.put(r >>> 5, 3);
        else if (s === 18) w.put(r >>> 5, 7);
      }
      this.writeSymbols(huffCodes(litLens), litLens, huffCodes(distLens), distLens);
    }
    this.n = 0;
  }

  private writeSymbols(lc: Uint16Array, ll: Uint8Array, dc: Uint16Array, dl: Uint8Array): void {
    const { lit, dist, w } = this;
    for (let i = 0; i < this.n; i++) {
      const d = dist[i];
      if (d === 0) {
        w.put(lc[lit[i]], ll[lit[i]]);
        continue;
      }
      const len = lit[i];
      const c = LEN_CODE[len];
      w.put(lc[257 + c], ll[257 + c]);
      if (LEN_EXTRA[c] !== 0) w.put(len - LEN_BASE[c], LEN_EXTRA[c]);
      const k = DIST_CODE[d];
      w.put(dc[k], dl[k]);
      if (DIST_EXTRA[k] !== 0) w.put(d - DIST_BASE[k], DIST_EXTRA[k]);
    }
    w.put(lc[256], ll[256]);
  }
}

const HASH_BITS = 15;
const WSIZE = 32768;
const WMASK = WSIZE - 1;
/** Candidates examined per position; a match this long ends the search at once. */
const MAX_CHAIN = 16;
const NICE_LEN = 128;
/** A match at least this long is taken without looking for a longer one at the next byte. */
const LAZY_LEN = 32;

/**
 * Encodes `data` as a raw DEFLATE stream (RFC 1951). Level 0: stored blocks of at most 65535
 * bytes; level 1 (default): LZ77 over a 32 KiB window with hash chains (16 probes, one-step lazy
 * matching), each block written with dynamic or fixed Huffman codes or stored, whichever is smallest.
 */
export function deflateRaw(data: Uint8Array, opts: DeflateOptions = {}): Uint8Array {
  if (!(data instanceof Uint8Array)) throw new ConvNextError('deflate: the input must be a Uint8Array', 2);
  const level = opts.level ?? 1;
  if (level !== 0 && level !== 1) throw new ConvNextError(`deflate: level must be 0 or 1, not ${String(level)}`, 2);
  const n = data.length;
  if (level === 0) {
    const w = new BitWriter(n + 5 * (Math.ceil(n / 65535) + 1));
    writeStored(w, data, 0, n, true);
    return w.finish();
  }
  const bw = new BlockWriter(data, (n >>> 2) + 1024);
  const lit = bw.lit;
  const dist = bw.dist;
  const head = new Int32Array(1 << HASH_BITS).fill(-1);
  const prev = new Int32Array(WSIZE);
  const hashEnd = n - 2; // positions with 3 bytes to hash
  let blockStart = 0;
  let pos = 0;
  // the match found at `pos` by the previous step's lookahead (lazy matching), if any
  let pendLen = 0;
  let pendDist = 0;
  let havePend = false;
  // Inserts position p into the hash chains; returns the chain's previous head (its first candidate).
  const insert = (p: number): number => {
    const h = Math.imul((data[p] << 16) | (data[p + 1] << 8) | data[p + 2], 0x9e3779b1) >>> (32 - HASH_BITS);
    const cand = head[h];
    prev[p & WMASK] = cand;
    head[h] = p;
    return cand;
  };
  // The longest match at p longer than `min` along the chain from `cand`, at most `chain` probes:
  // its length in mLen and distance in mDist (0: none longer than min).
  let mLen = 0;
  let mDist = 0;
  const search = (p: number, cand: number, min: number, chain: number): void => {
    const maxLen = Math.min(258, n - p);
    mLen = min;
    mDist = 0;
    for (; cand >= 0 && chain > 0; chain--) {
      const d = p - cand;
      if (d > WSIZE) break;
      if (data[cand + mLen] === data[p + mLen] && data[cand] === data[p] && data[cand + 1] === data[p + 1]) {
        let l = 2;
        while (l < maxLen && data[cand + l] === data[p + l]) l++;
        if (l > mLen) {
          mLen = l;
          mDist = d;
          if (l >= NICE_LEN || l === maxLen) break;
        }
      }
      const nx = prev[cand & WMASK];
      if (nx >= cand) break;
      cand = nx;
    }
  };
  while (pos < n) {
    let bestLen = 0;
    let bestDist = 0;
    if (havePend) {
      bestLen = pendLen;
      bestDist = pendDist;
      havePend = false;
    } else if (pos < hashEnd) {
      // insert pos and search its chain
      search(pos, insert(pos), 2, MAX_CHAIN);
      if (mDist !== 0 && !(mLen === 3 && mDist > 4096)) {
        bestLen = mLen;
        bestDist = mDist;
      }
    }
    if (bestLen >= 3 && bestLen < LAZY_LEN && pos + 1 < hashEnd) {
      // one-step lazy matching: is there a longer match at pos + 1?
      const p1 = pos + 1;
      search(p1, insert(p1), bestLen, MAX_CHAIN >>> 1);
      const best = mLen;
      const bd = mDist;
      if (bd !== 0) {
        // emit a literal now, the longer match next step (p1 is already inserted)
        pendLen = best;
        pendDist = bd;
        havePend = true;
        bestLen = 0;
      } else {
        // keep the match at pos; p1 is inserted, continue inserting after it
        const end = pos + bestLen;
        lit[bw.n] = bestLen;
        dist[bw.n++] = bestDist;
        const stop = Math.min(end, hashEnd);
        for (let p = pos + 2; p < stop; p++) insert(p);
        pos = end;
        if (bw.n === BLOCK_SYMS) {
          bw.flush(blockStart, pos, false);
          blockStart = pos;
        }
        continue;
      }
    }
    if (bestLen >= 3) {
      lit[bw.n] = bestLen;
      dist[bw.n++] = bestDist;
      const end = pos + bestLen;
      const stop = Math.min(end, hashEnd);
      for (let p = pos + 1; p < stop; p++) insert(p);
      pos = end;
    } else {
      lit[bw.n] = data[pos];
      dist[bw.n++] = 0;
      pos++;
    }
    if (bw.n === BLOCK_SYMS) {
      bw.flush(blockStart, pos, false);
      blockStart = pos;
    }
  }
  bw.flush(blockStart, n, true);
  return bw.w.finish();
}
