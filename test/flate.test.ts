import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { ConvNextError } from '../src/errors.js';
import { adler32, deflateRaw, deflateZlib, inflateRaw, inflateZlib, zlibWrap } from '../src/io/flate.js';
import { concatBytes } from '../src/io/bytes.js';
import { filterScanlines } from '../src/viz/png.js';
import { assertOneLineError } from './helpers.js';

/** A small seeded PRNG (xorshift32). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 256) | 0;
  return out;
}

const WORDS = ('the of and to in is was that for on with as by at from his her it an were are which this be or has had ' +
  'not but what all when there can been one would its who more will other their time if about up out them into only some ' +
  'tensor weight bias layer norm conv stage block channel kernel gradient batch epoch loss accuracy checkpoint 0 1 2 3 4 5 6 7 8 9').split(' ');

/** Text-like bytes: seeded random words and numbers, lines of varying length. */
function textLike(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n);
  let p = 0;
  let col = 0;
  while (p < n) {
    let w = WORDS[(r() * r() * WORDS.length) | 0];
    if (r() < 0.05) w = String((r() * 100000) | 0);
    for (let i = 0; i < w.length && p < n; i++) out[p++] = w.charCodeAt(i);
    col += w.length + 1;
    if (p < n) out[p++] = col > 60 + r() * 30 ? 10 : 32;
    if (out[p - 1] === 10) col = 0;
  }
  return out;
}

/** A plot-like RGB image as PNG scanlines (src/viz/png.ts's filtering). */
function plotScanlines(W: number, H: number): Uint8Array {
  const px = new Uint8Array(W * H * 3).fill(255);
  const set = (x: number, y: number, c: [number, number, number]): void => {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    px.set(c, (y * W + x) * 3);
  };
  // axes, grid, three curves
  for (let x = 40; x < W - 20; x++) set(x, H - 40, [0, 0, 0]);
  for (let y = 20; y < H - 40; y++) set(40, y, [0, 0, 0]);
  for (let gx = 80; gx < W - 20; gx += 60) for (let y = 20; y < H - 40; y += 4) set(gx, y, [200, 200, 200]);
  const colours: [number, number, number][] = [[31, 119, 180], [255, 127, 14], [44, 160, 44]];
  for (let k = 0; k < 3; k++) {
    let py = -1;
    for (let x = 41; x < W - 20; x++) {
      const t = (x - 41) / (W - 61);
      const y = Math.round(H - 60 - (H - 100) * (k === 0 ? 1 - Math.exp(-4 * t) : k === 1 ? t * t : 0.5 + 0.4 * Math.sin(12 * t)));
      const y0 = py < 0 ? y : Math.min(py, y);
      const y1 = py < 0 ? y : Math.max(py, y);
      for (let yy = y0; yy <= y1; yy++) for (let d = 0; d < 2; d++) set(x, yy + d, colours[k]);
      py = y;
    }
  }
  return filterScanlines({ width: W, height: H, channels: 3, data: px });
}

function same(actual: Uint8Array, expected: Uint8Array, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.length)), `${label}: bytes differ`);
}

function cases(): [string, Uint8Array][] {
  const rep = new Uint8Array(300000);
  for (let i = 0; i < rep.length; i++) rep[i] = 'abcabcabd'.charCodeAt(i % 9);
  const runs = new Uint8Array(200000);
  for (let i = 0; i < runs.length; i++) runs[i] = (i >> 12) & 1 ? 0 : 7;
  return [
    ['empty', new Uint8Array(0)],
    ['1 byte', new Uint8Array([42])],
    ['65535 random', randomBytes(65535, 1)],
    ['65536 random', randomBytes(65536, 2)],
    ['65537 random', randomBytes(65537, 3)],
    ['65537 zeros', new Uint8Array(65537)],
    ['1 MB random', randomBytes(1 << 20, 4)],
    ['repetitive', rep],
    ['runs', runs],
    ['text 300 kB', textLike(300000, 5)],
    ['plot scanlines', plotScanlines(320, 240)],
  ];
}

test('deflateRaw (levels 0 and 1) round trips through zlib and inflateRaw', () => {
  for (const [name, data] of cases()) {
    for (const level of [0, 1] as const) {
      const c = deflateRaw(data, { level });
      same(new Uint8Array(zlib.inflateRawSync(c)), data, `${name} level ${level} -> zlib`);
      same(inflateRaw(c), data, `${name} level ${level} -> inflateRaw`);
      same(inflateRaw(c, { expectedLength: data.length, maxOutputLength: data.length }), data, `${name} level ${level} exact`);
      if (level === 0) assert.equal(c.length, data.length + 5 * Math.max(1, Math.ceil(data.length / 65535)), `${name}: stored size`);
      // level 1 never expands by more than the stored framing
      if (level === 1) assert.ok(c.length <= data.length + 5 * Math.max(1, Math.ceil(data.length / 65535)) + 5 * Math.ceil(data.length / 16384 + 1), `${name}: level 1 size ${c.length}`);
    }
  }
});

test('zlib deflateRawSync output (levels, strategies) inflates exactly', () => {
  const { Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED, Z_FILTERED } = zlib.constants;
  const opts: [string, zlib.ZlibOptions][] = [
    ['level 0', { level: 0 }],
    ['level 1', { level: 1 }],
    ['level 6', { level: 6 }],
    ['level 9', { level: 9 }],
    ['huffman only', { strategy: Z_HUFFMAN_ONLY }],
    ['rle', { strategy: Z_RLE }],
    ['fixed', { strategy: Z_FIXED }],
    ['filtered', { strategy: Z_FILTERED }],
    ['level 9 memLevel 1', { level: 9, memLevel: 1 }],
    ['windowBits 9', { windowBits: 9 }],
  ];
  for (const [name, data] of cases()) {
    for (const [oname, o] of opts) {
      const c = new Uint8Array(zlib.deflateRawSync(data, o));
      same(inflateRaw(c), data, `${name} ${oname}`);
    }
  }
});

test('zlib container: deflateZlib -> inflateSync, deflateSync -> inflateZlib, adler32', () => {
  assert.equal(adler32(new TextEncoder().encode('Wikipedia')), 0x11e60398);
  assert.equal(adler32(new Uint8Array(0)), 1);
  for (const [name, data] of cases()) {
    for (const level of [0, 1] as const) same(new Uint8Array(zlib.inflateSync(deflateZlib(data, { level }))), data, `${name} level ${level}`);
    const z = new Uint8Array(zlib.deflateSync(data));
    same(inflateZlib(z), data, `${name} zlib.deflateSync`);
    // adler32 = zlib's trailer; incremental use continues the checksum
    const want = ((z[z.length - 4] << 24) | (z[z.length - 3] << 16) | (z[z.length - 2] << 8) | z[z.length - 1]) >>> 0;
    assert.equal(adler32(data), want, `${name} adler32`);
    const half = data.length >> 1;
    assert.equal(adler32(data.subarray(half), adler32(data.subarray(0, half))), want, `${name} adler32 incremental`);
  }
  const wrapped = zlibWrap(deflateRaw(new Uint8Array([1, 2, 3])), adler32(new Uint8Array([1, 2, 3])));
  assert.equal(((wrapped[0] << 8) | wrapped[1]) % 31, 0);
  same(new Uint8Array(zlib.inflateSync(wrapped)), new Uint8Array([1, 2, 3]), 'zlibWrap');
  // trailing bytes after the stream are ignored (as zlib does)
  const text = textLike(5000, 9);
  const raw = deflateRaw(text);
  same(inflateRaw(concat(raw, new Uint8Array([1, 2, 3]))), text, 'trailing bytes');
});

const concat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);

/** A bit writer for hand-made streams: put() LSB-first values, code() MSB-first Huffman codes. */
class Bits {
  private bytes: number[] = [];
  private acc = 0;
  private n = 0;
  put(v: number, n: number): this {
    for (let i = 0; i < n; i++) this.bit((v >>> i) & 1);
    return this;
  }
  code(c: number, len: number): this {
    for (let i = len - 1; i >= 0; i--) this.bit((c >>> i) & 1);
    return this;
  }
  private bit(b: number): void {
    this.acc |= b << this.n;
    if (++this.n === 8) {
      this.bytes.push(this.acc);
      this.acc = 0;
      this.n = 0;
    }
  }
  done(): Uint8Array {
    return new Uint8Array(this.n > 0 ? [...this.bytes, this.acc] : this.bytes);
  }
}

const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** A dynamic block header with the given code-length code lengths (19 sent). */
function dynHeader(b: Bits, hlit: number, hdist: number, cl: Record<number, number>): Bits {
  b.put(1, 1).put(2, 2).put(hlit - 257, 5).put(hdist - 1, 5).put(15, 4);
  for (const s of CL_ORDER) b.put(cl[s] ?? 0, 3);
  return b;
}

/**
 * A valid dynamic block: literal/length code 'a' = 0, EOB = 10, 257 (length 3) = 11; distance
 * code: only symbol 0 (distance 1), one code of length 1 (incomplete, as zlib allows).
 * Data: 'a', then a match of 3 at distance `distBit` (0: code 0 = distance 1; 1: unused code).
 */
function singleDistStream(distBit: number): Uint8Array {
  const b = dynHeader(new Bits(), 258, 1, { 18: 1, 1: 2, 2: 2 });
  // code-length codes: 18 = 0, 1 = 10, 2 = 11
  b.code(0, 1).put(97 - 11, 7); // 97 zeros
  b.code(2, 2); // 'a': 1
  b.code(0, 1).put(127, 7); // 138 zeros (98..235)
  b.code(0, 1).put(20 - 11, 7); // 20 zeros (236..255)
  b.code(3, 2).code(3, 2); // 256, 257: 2
  b.code(2, 2); // distance 0: 1
  b.code(0, 1); // 'a'
  b.code(3, 2).code(distBit, 1); // length 3, distance code
  b.code(2, 2); // end of block
  return b.done();
}

/** Asserts that both inflateRaw (a one-line ConvNextError matching `re`) and zlib refuse `data`. */
function refused(data: Uint8Array, re: RegExp, label: string): void {
  assert.throws(() => zlib.inflateRawSync(data), `${label}: zlib accepts the hand-made stream`);
  assertOneLineError(() => inflateRaw(data), re);
}

test('hand-made streams: what zlib accepts is accepted, what it refuses throws one-line ConvNextErrors', () => {
  same(inflateRaw(singleDistStream(0)), new TextEncoder().encode('aaaa'), 'single distance code');
  same(new Uint8Array(zlib.inflateRawSync(singleDistStream(0))), new TextEncoder().encode('aaaa'), 'single distance code (zlib)');
  refused(singleDistStream(1), /invalid distance code/, 'unused distance code');

  refused(new Uint8Array([0x07]), /invalid block type 3/, 'block type 3');
  refused(new Uint8Array([0x01, 0x05, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5]), /stored block length 5 does not match/, 'LEN/NLEN');
  refused(new Uint8Array([0x01, 0x05, 0x00, 0xfa, 0xff, 1, 2, 3]), /end of input in a stored block/, 'short stored block');
  refused(new Uint8Array([0x01, 0x05, 0x00]), /end of input/, 'short stored header');
  // fixed block: 257 (length 3) = 0000001, distance code 0 (distance 1) with no output yet
  refused(new Bits().put(1, 1).put(1, 2).code(1, 7).code(0, 5).code(0, 7).done(), /distance 1 is past the start of the output \(0 bytes\)/, 'distance too far');
  // 'a' (0x30 + 97 = 0x91, 8 bits) then length 3 at distance 2 (code 1)
  refused(new Bits().put(1, 1).put(1, 2).code(0x91, 8).code(1, 7).code(1, 5).code(0, 7).done(), /distance 2 is past the start/, 'distance too far after 1 byte');
  // fixed literal/length symbol 286 (11000110) and distance symbol 30 (11110)
  refused(new Bits().put(1, 1).put(1, 2).code(0xc6, 8).code(0, 7).done(), /invalid literal\/length symbol 286/, 'symbol 286');
  refused(new Bits().put(1, 1).put(1, 2).code(0x91, 8).code(1, 7).code(30, 5).code(0, 7).done(), /invalid distance symbol 30/, 'distance symbol 30');
  // code-length code: all 19 of length 1
  const all1: Record<number, number> = {};
  for (let s = 0; s < 19; s++) all1[s] = 1;
  refused(dynHeader(new Bits(), 257, 1, all1).put(0, 32).done(), /over-subscribed code-length code/, 'over-subscribed code-length code');
  refused(dynHeader(new Bits(), 257, 1, { 8: 2 }).put(0, 32).done(), /incomplete code-length code/, 'incomplete code-length code');
  // literal/length lengths: 258 × 1 (over-subscribed); code-length code 1 = 0, 18 = 1
  {
    const b = dynHeader(new Bits(), 258, 1, { 1: 1, 18: 1 });
    for (let i = 0; i < 259; i++) b.code(0, 1);
    refused(b.put(0, 16).done(), /over-subscribed literal\/length code/, 'over-subscribed literal/length code');
  }
  // literal/length lengths: only 'a' and 256 of length 2 (incomplete)
  {
    const b = dynHeader(new Bits(), 257, 1, { 18: 1, 1: 2, 2: 2 });
    b.code(0, 1).put(97 - 11, 7).code(3, 2).code(0, 1).put(127, 7).code(0, 1).put(9, 7).code(3, 2).code(2, 2);
    refused(b.put(0, 16).done(), /incomplete literal\/length code/, 'incomplete literal/length code');
  }
  // all zero lengths: no end-of-block code
  refused(dynHeader(new Bits(), 258, 1, { 8: 1, 18: 1 }).code(1, 1).put(127, 7).code(1, 1).put(110, 7).put(0, 16).done(), /no end-of-block code/, 'no EOB');
  refused(dynHeader(new Bits(), 258, 1, { 8: 1, 16: 1 }).code(1, 1).put(0, 2).put(0, 16).done(), /repeated code length with no previous/, 'repeat first');
  refused(dynHeader(new Bits(), 258, 1, { 8: 1, 18: 1 }).code(1, 1).put(127, 7).code(1, 1).put(127, 7).put(0, 16).done(), /repeated past the end/, 'repeat too long');
  refused(dynHeader(new Bits(), 287, 1, { 8: 1, 18: 1 }).put(0, 16).done(), /too many literal\/length codes \(287\)/, 'HLIT 287');
  refused(dynHeader(new Bits(), 257, 31, { 8: 1, 18: 1 }).put(0, 16).done(), /too many distance codes \(31\)/, 'HDIST 31');
  refused(new Uint8Array(0), /unexpected end of input/, 'empty input');
  // a non-final block and nothing after it
  refused(new Uint8Array([0x00, 0x00, 0x00, 0xff, 0xff]), /unexpected end of input/, 'no final block');
});

test('every truncation of a valid stream throws a ConvNextError', () => {
  const text = textLike(3000, 11);
  const streams: [string, Uint8Array][] = [
    ['zlib level 6 (dynamic)', new Uint8Array(zlib.deflateRawSync(text))],
    ['zlib fixed', new Uint8Array(zlib.deflateRawSync(text, { strategy: zlib.constants.Z_FIXED }))],
    ['ours level 1', deflateRaw(text)],
    ['ours level 0', deflateRaw(text.subarray(0, 300), { level: 0 })],
    ['two stored blocks', deflateRaw(randomBytes(65600, 3), { level: 0 })],
  ];
  for (const [name, s] of streams) {
    const stride = s.length > 4000 ? 97 : 1;
    for (let n = 0; n < s.length; n += stride) assertOneLineError(() => inflateRaw(s.subarray(0, n)), /end of input|corrupt deflate stream/);
    assert.ok(inflateRaw(s).length > 0, name);
  }
  const z = new Uint8Array(zlib.deflateSync(text));
  for (let n = 0; n < z.length; n++) assertOneLineError(() => inflateZlib(z.subarray(0, n)), /corrupt (zlib|deflate) stream/);
});

test('zlib container errors', () => {
  const text = textLike(2000, 12);
  const z = new Uint8Array(zlib.deflateSync(text));
  const bad = z.slice();
  bad[bad.length - 1] ^= 1;
  assertOneLineError(() => inflateZlib(bad), /Adler-32 0x[0-9a-f]{8} of the data, the stream says 0x[0-9a-f]{8}/);
  assertOneLineError(() => inflateZlib(concat(new Uint8Array([0x79, 0x5d]), z.subarray(2))), /compression method 9/);
  assertOneLineError(() => inflateZlib(concat(new Uint8Array([0x78, 0x9d]), z.subarray(2))), /header check/);
  assertOneLineError(() => inflateZlib(concat(new Uint8Array([0x88, 0x98]), z.subarray(2))), /window size/);
  assertOneLineError(() => inflateZlib(concat(new Uint8Array([0x78, 0xbb]), z.subarray(2))), /preset dictionary/);
  assertOneLineError(() => inflateZlib(new Uint8Array([0x78])), /shorter than its 2-byte header/);
});

test('maxOutputLength and expectedLength', () => {
  const text = textLike(100000, 13);
  for (const c of [deflateRaw(text), deflateRaw(text, { level: 0 }), new Uint8Array(zlib.deflateRawSync(text))]) {
    same(inflateRaw(c, { maxOutputLength: text.length }), text, 'at the limit');
    assertOneLineError(() => inflateRaw(c, { maxOutputLength: text.length - 1 }), /exceeds the limit of 99999 bytes/);
    assertOneLineError(() => inflateRaw(c, { maxOutputLength: 0 }), /exceeds the limit of 0 bytes/);
    // a wrong hint still gives the stream's real bytes
    same(inflateRaw(c, { expectedLength: 10 }), text, 'small hint');
    same(inflateRaw(c, { expectedLength: text.length + 12345 }), text, 'large hint');
    // an absurd hint is capped by what the input can inflate to (no 1e12-byte allocation)
    same(inflateRaw(c, { expectedLength: 1e12 }), text, 'absurd hint');
    assertOneLineError(() => inflateRaw(c, { expectedLength: 1e12, maxOutputLength: 5000 }), /exceeds the limit of 5000 bytes/);
  }
  // a "zip bomb": 64 MiB of zeros in ~65 kB; refused at 1 MiB without inflating it all
  const bomb = new Uint8Array(zlib.deflateRawSync(new Uint8Array(64 << 20), { level: 9 }));
  assertOneLineError(() => inflateRaw(bomb, { maxOutputLength: 1 << 20 }), /exceeds the limit of 1048576 bytes/);
  assertOneLineError(() => inflateRaw(text, { maxOutputLength: -1 }), /maxOutputLength must be a non-negative integer/);
  assertOneLineError(() => inflateRaw(text, { expectedLength: 1.5 }), /expectedLength must be a non-negative integer/);
  assertOneLineError(() => inflateRaw([1, 2] as unknown as Uint8Array), /must be a Uint8Array/);
  assertOneLineError(() => deflateRaw(text, { level: 6 as 1 }), /level must be 0 or 1/);
});

test('fuzz: 2000 mutated streams decode or throw ConvNextError', (t) => {
  const text = textLike(4000, 21);
  const bases = [
    new Uint8Array(zlib.deflateRawSync(text)),
    new Uint8Array(zlib.deflateRawSync(text, { strategy: zlib.constants.Z_FIXED })),
    deflateRaw(text),
    deflateRaw(plotScanlines(64, 48)),
    new Uint8Array(zlib.deflateSync(text)),
  ];
  const r = rng(12345);
  let decoded = 0;
  let refusedCount = 0;
  const t0 = performance.now();
  for (let i = 0; i < 2000; i++) {
    const k = i % bases.length;
    let m = bases[k].slice();
    const kind = r();
    if (kind < 0.5) {
      const flips = 1 + ((r() * 4) | 0);
      for (let f = 0; f < flips; f++) {
        // mostly in the first bytes (block headers, code lengths), sometimes anywhere
        const p = r() < 0.6 ? (r() * Math.min(m.length, 64)) | 0 : (r() * m.length) | 0;
        m[p] ^= 1 << ((r() * 8) | 0);
      }
    } else if (kind < 0.7) {
      m = m.subarray(0, (r() * m.length) | 0);
    } else if (kind < 0.85) {
      const p = (r() * m.length) | 0;
      m[p] = (r() * 256) | 0;
      m = m.subarray(0, p + 1 + ((r() * (m.length - p)) | 0));
    } else {
      // a random run of bytes in the middle
      const p = (r() * m.length) | 0;
      for (let j = p; j < Math.min(m.length, p + 8); j++) m[j] = (r() * 256) | 0;
    }
    try {
      if (k === 4) inflateZlib(m, { maxOutputLength: 1 << 20 });
      else inflateRaw(m, { maxOutputLength: 1 << 20 });
      decoded++;
    } catch (err) {
      if (!(err instanceof ConvNextError)) throw new Error(`mutation ${i}: ${err instanceof Error ? err.stack : String(err)}`);
      assert.ok(!/[\r\n]/.test(err.message));
      refusedCount++;
    }
  }
  // pure random inputs too
  for (let i = 0; i < 500; i++) {
    try {
      inflateRaw(randomBytes(1 + (i % 200), 1000 + i), { maxOutputLength: 1 << 20 });
      decoded++;
    } catch (err) {
      if (!(err instanceof ConvNextError)) throw err;
      refusedCount++;
    }
  }
  t.diagnostic(`fuzz: ${decoded} decoded, ${refusedCount} refused, ${(performance.now() - t0).toFixed(0)} ms`);
});

function bestMs(fn: () => void, reps: number): number {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

test('throughput and compression ratios (printed, not asserted)', (t) => {
  const text = textLike(8 << 20, 31);
  const z6 = new Uint8Array(zlib.deflateRawSync(text, { level: 6 }));
  same(inflateRaw(z6), text, 'text');
  const mb = text.length / 1e6;
  const ours = bestMs(() => inflateRaw(z6), 5);
  const oursHint = bestMs(() => inflateRaw(z6, { expectedLength: text.length }), 5);
  const native = bestMs(() => zlib.inflateRawSync(z6), 5);
  t.diagnostic(`inflate 8 MiB text-like (zlib level 6, ratio ${(text.length / z6.length).toFixed(2)}): inflateRaw ${(mb / (ours / 1e3)).toFixed(0)} MB/s, ` +
    `with expectedLength ${(mb / (oursHint / 1e3)).toFixed(0)} MB/s, zlib.inflateRawSync ${(mb / (native / 1e3)).toFixed(0)} MB/s`);
  const ourDeflate = bestMs(() => deflateRaw(text), 1);
  const ourRaw = deflateRaw(text);
  const zDeflate = bestMs(() => zlib.deflateRawSync(text, { level: 6 }), 1);
  const z1 = zlib.deflateRawSync(text, { level: 1 });
  t.diagnostic(`deflate 8 MiB text-like: deflateRaw level 1 ${(mb / (ourDeflate / 1e3)).toFixed(0)} MB/s ratio ${(text.length / ourRaw.length).toFixed(3)}; ` +
    `zlib level 6 ${(mb / (zDeflate / 1e3)).toFixed(0)} MB/s ratio ${(text.length / z6.length).toFixed(3)}; zlib level 1 ratio ${(text.length / z1.length).toFixed(3)}`);
  const ourInflateOurs = bestMs(() => inflateRaw(ourRaw), 3);
  t.diagnostic(`inflateRaw of deflateRaw's output: ${(mb / (ourInflateOurs / 1e3)).toFixed(0)} MB/s`);
  const rnd = randomBytes(8 << 20, 77);
  const zr = new Uint8Array(zlib.deflateRawSync(rnd, { level: 6 }));
  t.diagnostic(`inflate 8 MiB random (stored blocks): ${(8.388608 / (bestMs(() => inflateRaw(zr), 3) / 1e3)).toFixed(0)} MB/s`);

  for (const [W, H] of [[640, 480], [1200, 800]]) {
    const raw = plotScanlines(W, H);
    const sizes = {
      ours0: deflateZlib(raw, { level: 0 }).length,
      ours1: deflateZlib(raw).length,
      z1: zlib.deflateSync(raw, { level: 1 }).length,
      z6: zlib.deflateSync(raw, { level: 6 }).length,
      z9: zlib.deflateSync(raw, { level: 9 }).length,
    };
    same(new Uint8Array(zlib.inflateSync(deflateZlib(raw))), raw, 'plot');
    const ms = bestMs(() => deflateZlib(raw), 3);
    t.diagnostic(`plot-like ${W}x${H} RGB scanlines (${raw.length} bytes): deflateZlib level 1 ${sizes.ours1} bytes (ratio ${(raw.length / sizes.ours1).toFixed(1)}, ${ms.toFixed(1)} ms), ` +
      `zlib level 1 ${sizes.z1}, level 6 ${sizes.z6} (ratio ${(raw.length / sizes.z6).toFixed(1)}), level 9 ${sizes.z9}; ours/zlib6 = ${(sizes.ours1 / sizes.z6).toFixed(3)}; level 0 ${sizes.ours0}`);
  }
});
