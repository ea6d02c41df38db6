/**
 * safetensors files on disk (Node): the lazy file reader, whole-file reads and the atomic
 * writer, over the platform-neutral format code of ./safetensors.ts.
 */
import * as fs from 'node:fs';
import { ConvNextError } from '../errors.js';
import { fsReason } from './fs_errors.js';
import { writeAllSync, writeFileAtomicSync } from './atomic.js';
import {
  type ByteSource, checkPrefix, f32Bytes, fail, layout, parseHeader, READ_CHUNK, Reader, type SafetensorsReader, type TensorData, type TensorsInput,
} from './safetensors.js';

const describeFsError = (err: unknown) => fsReason(err, { EISDIR: 'is a directory, not a safetensors file' });

/**
 * Opens a safetensors file, reading and validating only its header. Tensor data is read on
 * demand with positioned reads. Call `close()` when done.
 */
export function openSafetensors(path: string): SafetensorsReader {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    fail(path, describeFsError(err));
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) fail(path, 'is a directory, not a safetensors file');
    const size = st.size;
    const readExact = (pos: number, len: number): Uint8Array => {
      const out = new Uint8Array(len);
      let done = 0;
      while (done < len) {
        const n = fs.readSync(fd, out, done, Math.min(READ_CHUNK, len - done), pos + done);
        if (n <= 0) fail(path, 'file ended while reading its header (truncated?)');
        done += n;
      }
      return out;
    };
    const first = readExact(0, Math.min(64, size));
    const n = checkPrefix(path, first.subarray(0, Math.min(8, size)), size, first);
    const header = readExact(8, n);
    const parsed = parseHeader(path, header, 8 + n, size - 8 - n);
    const src: ByteSource = {
      read: (pos, length, into) => fs.readSync(fd, into, 0, length, pos),
      close: () => fs.closeSync(fd),
    };
    return new Reader(path, size, src, parsed);
  } catch (err) {
    fs.closeSync(fd);
    if (err instanceof ConvNextError) throw err;
    fail(path, describeFsError(err));
  }
}

/** Reads every tensor of a safetensors file, converted to float32, in file order. */
export function readSafetensors(path: string): Map<string, TensorData> {
  return readSafetensorsWithMetadata(path).tensors;
}

/** Like {@link readSafetensors}, also returning the metadata. */
export function readSafetensorsWithMetadata(path: string): { tensors: Map<string, TensorData>; metadata: Record<string, string> } {
  const r = openSafetensors(path);
  try {
    const tensors = new Map<string, TensorData>();
    for (const t of r.tensors) tensors.set(t.name, r.getTensor(t.name));
    return { tensors, metadata: { ...r.metadata } };
  } finally {
    r.close();
  }
}

/**
 * Writes `tensors` as F32 (in the order given) and `metadata` to a safetensors file,
 * atomically: a temporary file in the same folder, fsynced, renamed over `path`, the folder
 * fsynced. Data is streamed from the arrays; nothing is copied into one big buffer.
 */
export function writeSafetensors(path: string, tensors: TensorsInput, metadata?: Readonly<Record<string, string>>): void {
  const l = layout(tensors, metadata, path);
  writeFileAtomicSync(path, (fd) => {
    writeAllSync(fd, l.header);
    for (const it of l.items) writeAllSync(fd, f32Bytes(it.data));
  });
}
