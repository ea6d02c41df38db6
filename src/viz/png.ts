/**
 * A dependency-free PNG encoder: 8-bit RGB or RGBA, one IDAT compressed with the zlib codec of
 * io/codecs.ts (Node's zlib when installed, else the TypeScript deflate), a per-row filter
 * chosen by the usual minimum-sum-of-absolute-differences heuristic. The file writer is
 * ./png_file.ts (Node).
 */
import { codecs } from '../io/codecs.js';
import { concatBytes } from '../io/bytes.js';
import { crc32 } from '../io/zip.js';

export interface RasterImage {
  width: number;
  height: number;
  /** 3 (RGB) or 4 (RGBA) interleaved bytes per pixel. */
  channels: 3 | 4;
  data: Uint8Array;
}

/** CRC-32 (ISO 3309, as PNG and zlib use): the one of src/io/zip.ts (zlib's native one when Node has it). */
export { crc32 };

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Encodes an image as PNG bytes. */
/**
 * The filtered scanlines PNG compresses: per row a filter byte (none, sub, up, average or
 * Paeth, the one with the least sum of absolute differences) and the filtered bytes.
 */
export function filterScanlines(img: RasterImage): Uint8Array {
  const { width: W, height: H, channels: C, data } = img;
  if (!(Number.isInteger(W) && Number.isInteger(H) && W > 0 && H > 0)) throw new RangeError(`bad PNG size ${W}x${H}`);
  if (C !== 3 && C !== 4) throw new RangeError(`PNG channels must be 3 or 4, not ${String(C)}`);
  if (data.length !== W * H * C) throw new RangeError(`PNG data has ${data.length} bytes, expected ${W * H * C}`);
  const stride = W * C;
  const raw = new Uint8Array(H * (stride + 1));
  const cand = [0, 1, 2, 3, 4].map(() => new Uint8Array(stride));
  for (let y = 0; y < H; y++) {
    const row = data.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? data.subarray((y - 1) * stride, y * stride) : null;
    let best = 0;
    let bestScore = Infinity;
    for (let f = 0; f < 5; f++) {
      const o = cand[f];
      let score = 0;
      for (let i = 0; i < stride; i++) {
        const a = i >= C ? row[i - C] : 0;
        const b = prev ? prev[i] : 0;
        const c = prev && i >= C ? prev[i - C] : 0;
        const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : paeth(a, b, c);
        const v = (row[i] - pred) & 0xff;
        o[i] = v;
        score += v < 128 ? v : 256 - v;
      }
      if (score < bestScore) {
        bestScore = score;
        best = f;
      }
    }
    raw[y * (stride + 1)] = best;
    raw.set(cand[best], y * (stride + 1) + 1);
  }
  return raw;
}

export function encodePng(img: RasterImage): Uint8Array {
  const { width: W, height: H, channels: C } = img;
  const raw = filterScanlines(img);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, W);
  dv.setUint32(4, H);
  ihdr[8] = 8; // bit depth
  ihdr[9] = C === 3 ? 2 : 6; // colour type: truecolour (+ alpha)
  ihdr[10] = 0; // deflate
  ihdr[11] = 0; // adaptive filtering
  ihdr[12] = 0; // no interlace
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', codecs().deflateZlib(raw)),
    chunk('IEND', new Uint8Array(0)),
  ];
  return concatBytes(parts);
}
