/**
 * Image decoding in a browser (a page or a Worker): `createImageBitmap` decodes the file (any
 * format the browser reads: JPEG, PNG, WebP, GIF's first frame, AVIF, ...), an
 * `OffscreenCanvas` hands back its pixels, and the alpha channel is dropped, giving the same
 * 8-bit RGB {@link Image} the Node decoder (sharp, ./image.ts) gives: EXIF orientation applied,
 * no colour-profile conversion. For an opaque PNG the bytes are exactly sharp's; a JPEG may
 * differ by a unit here and there (another IDCT), and semi-transparent pixels differ (a canvas
 * stores premultiplied alpha; sharp keeps the stored colour).
 *
 * Platform-neutral in its imports: the browser APIs are reached through `globalThis`, so the
 * module type-checks and bundles without the DOM library and fails with a clear error where
 * they are missing (Node).
 */
import { ConvNextError, errorLine } from '../errors.js';
import type { Image } from './image.js';
import { toRgb } from './rgb.js';

/** The most pixels decoded (about 8000 x 8000): a bigger image is refused before it fills memory. */
export const MAX_DECODE_PIXELS = 64 * 1024 * 1024;

interface Bitmap {
  readonly width: number;
  readonly height: number;
  close(): void;
}
interface Context2D {
  drawImage(image: Bitmap, dx: number, dy: number): void;
  getImageData(sx: number, sy: number, sw: number, sh: number): { data: Uint8ClampedArray };
}
interface BrowserImageApis {
  createImageBitmap?: (source: Blob, options?: Record<string, string>) => Promise<Bitmap>;
  OffscreenCanvas?: new (width: number, height: number) => { getContext(kind: '2d', options?: Record<string, unknown>): Context2D | null };
}

/**
 * Decodes an image file (a `File` or `Blob`) into 8-bit RGB, HWC. `name` (default the file's
 * name) names it in errors; a file that is not an image, or is corrupt or truncated, raises a
 * ConvNextError `cannot decode image NAME: ...`.
 */
export async function decodeImageBlob(blob: Blob, label = -1, name?: string): Promise<Image> {
  const what = name ?? ((blob as { name?: unknown }).name as string | undefined) ?? '<blob>';
  const g = globalThis as unknown as BrowserImageApis;
  if (typeof g.createImageBitmap !== 'function' || typeof g.OffscreenCanvas !== 'function') {
    throw new ConvNextError(`cannot decode image ${what}: this runtime has no createImageBitmap / OffscreenCanvas (decode with sharp in Node: decodeImage)`);
  }
  if (blob.size === 0) throw new ConvNextError(`cannot decode image ${what}: empty file`);
  let bitmap: Bitmap;
  try {
    bitmap = await g.createImageBitmap(blob, { imageOrientation: 'from-image', premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  } catch (e) {
    throw new ConvNextError(`cannot decode image ${what}: not an image the browser can read, or corrupt (${errorLine(e, 120)})`);
  }
  try {
    const { width, height } = bitmap;
    if (width < 1 || height < 1) throw new ConvNextError(`cannot decode image ${what}: it has no pixels`);
    if (width * height > MAX_DECODE_PIXELS) throw new ConvNextError(`cannot decode image ${what}: ${width}x${height} is over ${MAX_DECODE_PIXELS / (1024 * 1024)} megapixels`);
    const ctx = new g.OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true, alpha: true });
    if (!ctx) throw new ConvNextError(`cannot decode image ${what}: no 2D canvas`);
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    const data = toRgb(new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.length), width * height, 4);
    return { width, height, data, label, path: what };
  } finally {
    bitmap.close();
  }
}
