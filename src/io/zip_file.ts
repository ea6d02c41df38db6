/** Zip archives on disk (Node): positioned reads from a file descriptor, over ./zip.ts. */
import * as fs from 'node:fs';
import { ConvNextError } from '../errors.js';
import { fsReason } from './fs_errors.js';
import './codecs_node.js';
import { type ByteSource, READ_CHUNK, Reader, type ZipReader } from './zip.js';

function fdSource(fd: number, size: number): ByteSource {
  return {
    size,
    readExact(pos, into) {
      let done = 0;
      while (done < into.length) {
        const n = fs.readSync(fd, into, done, Math.min(READ_CHUNK, into.length - done), pos + done);
        if (n <= 0) return false;
        done += n;
      }
      return true;
    },
    close() { fs.closeSync(fd); },
  };
}


/** Opens a zip archive for positioned reads. Call `close()` when done. */
export function openZip(path: string): ZipReader {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    throw new ConvNextError(`${path}: ${fsReason(err)}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw new ConvNextError(`${path}: is a directory, not a zip archive`);
    return new Reader(path, fdSource(fd, st.size));
  } catch (err) {
    fs.closeSync(fd);
    if (err instanceof ConvNextError) throw err;
    throw new ConvNextError(`${path}: ${fsReason(err)}`);
  }
}

