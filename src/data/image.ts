/**
 * The decoded image every data set yields, and decoding with sharp (libvips: JPEG, PNG, WebP,
 * and more), shaped like torchvision's `Image.open(f).convert('RGB')`: EXIF orientation
 * applied, grey replicated to three channels, alpha dropped (not composited), 8 bits.
 */
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
    throw new CorruptImageError(name, errorLine(err));
  }
  return { width: info.width, height: info.height, data: toRgb(data, info.width * info.height, info.channels), label, path };
}

