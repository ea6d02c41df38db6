/** torch.save checkpoints on disk (Node): read with positioned reads, written atomically, over ./torch.ts. */
import * as fs from 'node:fs';
import { ConvNextError } from '../errors.js';
import { fsReason } from './fs_errors.js';
import { writeAllSync, writeFileAtomicSync } from './atomic.js';
import { checkHead, readFromZip, type TorchReadOptions, type TorchWritable, type TorchWriteOptions, writeTorchZip } from './torch.js';
import type { PickleValue } from './pickle.js';
import { openZip } from './zip_file.js';

/**
 * Reads a `torch.save` checkpoint: the unpickled object tree with every tensor as a contiguous
 * float32 {@link TensorData} (dicts as Maps, tuples as frozen arrays, argparse Namespaces and
 * other plain objects as inert {@link PickleRecord}s). Nothing from the file is executed; every
 * problem is a one-line ConvNextError naming the file.
 */
export function readTorchCheckpoint(path: string, opts: TorchReadOptions = {}): PickleValue {
  let head: Uint8Array;
  let size: number;
  try {
    const st = fs.statSync(path);
    if (st.isDirectory()) throw new ConvNextError(`${path}: is a directory, not a PyTorch checkpoint`);
    size = st.size;
    const fd = fs.openSync(path, 'r');
    try {
      head = new Uint8Array(Math.min(size, 512));
      const n = fs.readSync(fd, head, 0, head.length, 0);
      head = head.subarray(0, n);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    if (err instanceof ConvNextError) throw err;
    throw new ConvNextError(`${path}: ${fsReason(err)}`);
  }
  checkHead(path, head, size);
  const zip = openZip(path);
  try {
    return readFromZip(path, zip, opts);
  } finally {
    zip.close();
  }
}

/**
 * Writes `obj` as a torch.save checkpoint (e.g. `{model: new Map([[name, tensor], ...])}` for
 * `torch.load(f)["model"]`), atomically: a temporary file in the same folder, fsynced, renamed
 * over `path`, then the folder fsynced. Tensors are written as float32 FloatStorages.
 */
export function writeTorchCheckpoint(path: string, obj: TorchWritable, opts: TorchWriteOptions = {}): void {
  writeFileAtomicSync(path, (fd) => writeTorchZip((b) => writeAllSync(fd, b), obj, path, opts));
}
