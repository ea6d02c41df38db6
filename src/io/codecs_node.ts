/**
 * Node's zlib behind ./codecs.ts: native CRC-32 (Node 20.15+ / 22.2+; the TypeScript one
 * otherwise), inflate and deflate. Imported for its effect by the Node edges.
 */
import * as zlib from 'node:zlib';
import { setCodecs } from './codecs.js';

type Crc32Fn = (data: Uint8Array, value?: number) => number;
const nativeCrc32 = (zlib as unknown as { crc32?: Crc32Fn }).crc32;

setCodecs({
  ...(nativeCrc32 ? { crc32: (bytes: Uint8Array, crc: number) => nativeCrc32(bytes, crc) >>> 0 } : {}),
  inflateRaw: (data, size) => {
    const out = zlib.inflateRawSync(data, { maxOutputLength: Math.max(1, size) });
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  },
  deflateZlib: (data) => new Uint8Array(zlib.deflateSync(data, { level: 9 })),
});
