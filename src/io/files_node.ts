/** Node's file system as a {@link FileSet}: lazy safetensors reads, torch.save zips read in place. */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { ConvNextError } from '../errors.js';
import { fsReason } from './fs_errors.js';
import type { FileSet } from './files.js';
import { openSafetensors } from './safetensors_file.js';
import { readTorchCheckpoint } from './torch_file.js';

const why = (err: unknown) => fsReason(err, { ENOENT: 'no such file or directory' });

export const nodeFiles: FileSet = {
  kind(path) {
    try {
      const st = fs.statSync(path);
      return st.isDirectory() ? 'dir' : 'file';
    } catch {
      return null;
    }
  },
  size(path) {
    try {
      return fs.statSync(path).size;
    } catch (err) {
      throw new ConvNextError(`${path}: ${why(err)}`);
    }
  },
  head(path, n) {
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (err) {
      throw new ConvNextError(`checkpoint ${path}: ${why(err)}`);
    }
    try {
      const b = new Uint8Array(n);
      const got = fs.readSync(fd, b, 0, n, 0);
      return b.subarray(0, got);
    } catch (err) {
      throw new ConvNextError(`checkpoint ${path}: ${why(err)}`);
    } finally {
      fs.closeSync(fd);
    }
  },
  readText(path) {
    try {
      return fs.readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConvNextError(`${path}: ${why(err)}`);
    }
  },
  openSafetensors,
  readTorch: readTorchCheckpoint,
  join: nodePath.join,
  dirname: nodePath.dirname,
  basename: nodePath.basename,
};
