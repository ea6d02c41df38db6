/** Interleaved 8-bit pixels to RGB (platform-neutral: the Node and the browser decoders share it). */
import { ConvNextError } from '../errors.js';

/** 1 (grey), 2 (grey + alpha), 3 or 4 (RGBA) interleaved channels -> RGB. */
export function toRgb(src: Uint8Array, pixels: number, channels: number): Uint8Array {
  if (channels === 3) return new Uint8Array(src.buffer, src.byteOffset, pixels * 3);
  const out = new Uint8Array(pixels * 3);
  if (channels === 1 || channels === 2) {
    for (let i = 0, j = 0; i < pixels; i++, j += channels) {
      const v = src[j];
      out[i * 3] = v;
      out[i * 3 + 1] = v;
      out[i * 3 + 2] = v;
    }
  } else if (channels === 4) {
    for (let i = 0; i < pixels; i++) {
      out[i * 3] = src[i * 4];
      out[i * 3 + 1] = src[i * 4 + 1];
      out[i * 3 + 2] = src[i * 4 + 2];
    }
  } else {
    throw new ConvNextError(`unsupported image with ${channels} channels`);
  }
  return out;
}
