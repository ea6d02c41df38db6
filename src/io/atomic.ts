/**
 * Atomic file replacement: write a temporary file in the target's folder, fsync it, rename it
 * over the target, then fsync the folder. A reader (or a crash) sees the old file or the new
 * one, never a partial file.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConvNextError, errorLine } from '../errors.js';

/** Largest chunk handed to one `fs.writeSync` call. */
const WRITE_CHUNK = 64 * 1024 * 1024;

/** Writes all of `bytes` at the current position of `fd`, looping over partial writes. */
export function writeAllSync(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.byteLength) {
    const len = Math.min(WRITE_CHUNK, bytes.byteLength - off);
    const n = fs.writeSync(fd, bytes, off, len);
    if (n <= 0) throw new Error('write returned 0 bytes');
    off += n;
  }
}


/**
 * Replaces `path` atomically with what `write(fd)` writes into a fresh temporary file next to
 * it. `write` must write sequentially from the start (e.g. with {@link writeAllSync}).
 * Failures raise a ConvNextError (`cannot write <path>: <why>`) and leave no temporary file.
 */
export function writeFileAtomicSync(path: string, write: (fd: number) => void): void {
  const target = nodePath.resolve(path);
  const dir = nodePath.dirname(target);
  const tmp = nodePath.join(dir, `.${nodePath.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
  } catch (err) {
    throw new ConvNextError(`cannot write ${path}: ${errorLine(err)}`);
  }
  try {
    try {
      write(fd);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, target);
  } catch (err) {
    try { fs.unlinkSync(tmp); } catch { /* already gone */ }
    if (err instanceof ConvNextError) throw err;
    throw new ConvNextError(`cannot write ${path}: ${errorLine(err)}`);
  }
  fsyncDir(dir);
}

/** Writes `bytes` to `path` atomically. */
export function writeBytesAtomicSync(path: string, bytes: Uint8Array): void {
  writeFileAtomicSync(path, (fd) => writeAllSync(fd, bytes));
}

/** fsyncs a folder so a rename inside it is durable; a no-op where folders cannot be opened (Windows). */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Some platforms and file systems cannot open or fsync a folder; the rename still happened.
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EACCES' && code !== 'ENOTSUP') {
      throw new ConvNextError(`cannot sync folder ${dir}: ${errorLine(err)}`);
    }
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
