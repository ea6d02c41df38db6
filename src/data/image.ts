/**
 * The decoded image every data set yields, and decoding with sharp (libvips: JPEG, PNG, WebP,
 * and more), shaped like torchvision's `Image.open(f).convert('RGB')`: EXIF orientation
 * applied, grey replicated to three channels, alpha dropped (not composited), 8 bits.
 */
import { open, stat } from 'node:fs/promises';
import { ConvNextError, errorLine } from '../errors.js';
import { toRgb } from './rgb.js';

export { toRgb } from './rgb.js';

/** An 8-bit RGB image, HWC (row-major, 3 bytes per pixel), and its class index. */
export interface Image {
  width: number;
  height: number;
  /** RGB bytes, length width * height * 3. */
  data: Uint8Array;
  /** Class index, -1 when unlabelled. */
  label: number;
  /** Where it came from, for files. */
  path?: string;
}

/** A file that cannot be read or decoded (missing, unreadable, corrupt, truncated, not an image). */
export class CorruptImageError extends ConvNextError {
  readonly path: string;
  readonly reason: string;
  constructor(path: string, reason: string) {
    super(`cannot decode image ${path}: ${reason}`);
    this.name = 'CorruptImageError';
    this.path = path;
    this.reason = reason;
  }
}

type SharpModule = typeof import('sharp');
let sharpModule: Promise<SharpModule['default']> | undefined;

/** Loads sharp once (lazily: data sets without files never need it). */
export function loadSharp(): Promise<SharpModule['default']> {
  sharpModule ??= import('sharp').then((m) => m.default);
  return sharpModule;
}


/**
 * Decodes an image file (or its bytes; then `path` names it in errors) into 8-bit RGB.
 * Truncated or corrupt data raises a CorruptImageError naming the file.
 */
export async function decodeImage(input: string | Uint8Array, label = -1, path?: string): Promise<Image> {
  const name = path ?? (typeof input === 'string' ? input : '<bytes>');
  const sharp = await loadSharp();
  let data: Buffer;
  let info: { width: number; height: number; channels: number };
  try {
    const r = await sharp(input, { failOn: 'error' })
      .rotate() // EXIF orientation
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    data = r.data;
    info = r.info;
  } catch (err) {
    // Missing, unreadable, truncated or not an image: all are "this file cannot be used".
    throw new CorruptImageError(name, await undecodableReason(input, err));
  }
  return { width: info.width, height: info.height, data: toRgb(data, info.width * info.height, info.channels), label, path };
}


/** The format a file's first bytes name, if one we decode. */
function formatOf(head: Uint8Array): string | undefined {
  const at = (i: number, ...b: number[]) => b.every((v, k) => head[i + k] === v);
  if (at(0, 0xff, 0xd8, 0xff)) return 'JPEG';
  if (at(0, 0x89, 0x50, 0x4e, 0x47)) return 'PNG';
  if (at(0, 0x47, 0x49, 0x46, 0x38)) return 'GIF';
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return 'WebP';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'TIFF';
  if (at(4, 0x66, 0x74, 0x79, 0x70)) return 'AVIF';
  return undefined;
}

/**
 * Why a file could not be decoded, in our words rather than libvips' (its text goes with
 * CONVNEXTV2_DEBUG=1): missing, a folder, empty, not an image, or a truncated or corrupt file
 * of the format its first bytes name.
 */
async function undecodableReason(input: string | Uint8Array, err: unknown): Promise<string> {
  let head: Uint8Array;
  if (typeof input === 'string') {
    const st = await stat(input).catch(() => null);
    if (!st) return 'no such file';
    if (st.isDirectory()) return 'is a folder, not an image';
    try {
      const f = await open(input, 'r');
      try {
        const { bytesRead, buffer } = await f.read(new Uint8Array(16), 0, 16, 0);
        head = buffer.subarray(0, bytesRead);
      } finally {
        await f.close();
      }
    } catch (e) {
      return `cannot be read (${errorLine(e, 80)})`;
    }
  } else head = input.subarray(0, 16);
  const debug = process.env.CONVNEXTV2_DEBUG === '1' ? ` [${errorLine(err)}]` : '';
  if (head.length === 0) return `an empty file${debug}`;
  const format = formatOf(head);
  if (!format) return `not an image (JPEG, PNG, WebP, GIF, TIFF or AVIF)${debug}`;
  return `truncated or corrupt ${format} data${debug}`;
}
