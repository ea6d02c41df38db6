/**
 * The byte codecs the readers and writers use: CRC-32, raw DEFLATE decoding (zip entries) and
 * zlib-container encoding (PNG). The defaults are the dependency-free TypeScript ones
 * (./flate.ts), so the library runs where Node's zlib does not (a browser); on Node,
 * ./codecs_node.ts installs zlib's native functions (same results, faster).
 */
import { deflateZlib, inflateRaw } from './flate.js';

export interface Codecs {
  /** CRC-32 (IEEE) of `bytes`, continuing from `crc` (0 to start). */
  crc32(bytes: Uint8Array, crc: number): number;
  /** Raw DEFLATE data to exactly `size` bytes (throws on corrupt data or any other size). */
  inflateRaw(data: Uint8Array, size: number): Uint8Array;
  /** `data` in the zlib container (RFC 1950), as PNG's IDAT holds it. */
  deflateZlib(data: Uint8Array): Uint8Array;
}

let table: Int32Array | undefined;
function jsCrc32(bytes: Uint8Array, crc: number): number {
  if (!table) {
    table = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c;
    }
  }
  const t = table;
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

let current: Codecs = {
  crc32: jsCrc32,
  inflateRaw: (data, size) => inflateRaw(data, { maxOutputLength: Math.max(1, size), expectedLength: size }),
  deflateZlib: (data) => deflateZlib(data),
};

/** The codecs in use. */
export function codecs(): Codecs {
  return current;
}

/** Replaces some codecs (the Node edge installs zlib's). */
export function setCodecs(c: Partial<Codecs>): void {
  current = { ...current, ...c };
}
