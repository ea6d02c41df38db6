/**
 * The files a checkpoint is read from, behind one interface, so the loaders do not depend on
 * where bytes live: Node's file system (./files_node.ts: lazy positioned reads, files over
 * 2 GiB) or files held in memory ({@link memoryFiles}: a browser's File objects read into
 * Uint8Arrays, a download, a test). Paths use '/' and are relative to the set's root.
 */
import { ConvNextError } from '../errors.js';
import { parseSafetensorsBuffer, type SafetensorsReader } from './safetensors.js';
import { readTorchCheckpointBuffer, type TorchReadOptions } from './torch.js';
import type { PickleValue } from './pickle.js';

export interface FileSet {
  /** 'file', 'dir', or null when there is nothing at `path`. */
  kind(path: string): 'file' | 'dir' | null;
  /** Size in bytes of a file. */
  size(path: string): number;
  /** The first `n` bytes (fewer for a shorter file); a one-line error when it cannot be read. */
  head(path: string, n: number): Uint8Array;
  /** A file as UTF-8 text. */
  readText(path: string): string;
  openSafetensors(path: string): SafetensorsReader;
  readTorch(path: string, opts?: TorchReadOptions): PickleValue;
  join(dir: string, name: string): string;
  dirname(path: string): string;
  basename(path: string): string;
}

/** '/'-joined path helpers (what memory sets use; Node's are node:path). */
export const posixPath = {
  join: (dir: string, name: string): string => (dir === '' || dir === '.' ? name : `${dir.replace(/\/+$/, '')}/${name}`),
  dirname: (p: string): string => {
    const i = p.replace(/\/+$/, '').lastIndexOf('/');
    return i < 0 ? '.' : i === 0 ? '/' : p.slice(0, i);
  },
  basename: (p: string): string => p.replace(/\/+$/, '').split('/').pop() ?? '',
};

/**
 * Files held in memory: `{ 'model.safetensors': bytes, 'config.json': bytes }` (an HF folder
 * given as its files), or one file. The root ('' or '.') is a folder holding them; a name with
 * '/' puts the file in a folder.
 */
export function memoryFiles(files: ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>>): FileSet {
  const map = new Map<string, Uint8Array>(files instanceof Map ? files : Object.entries(files));
  const norm = (p: string) => p.replace(/^\.\//, '').replace(/\/+$/, '');
  const get = (p: string): Uint8Array => {
    const b = map.get(norm(p));
    if (!b) throw new ConvNextError(`${p}: no such file${map.size ? ` (have ${[...map.keys()].slice(0, 8).join(', ')})` : ''}`);
    return b;
  };
  return {
    kind: (p) => {
      const n = norm(p);
      if (map.has(n)) return 'file';
      if (n === '' || n === '.') return 'dir';
      return [...map.keys()].some((k) => k.startsWith(`${n}/`)) ? 'dir' : null;
    },
    size: (p) => get(p).byteLength,
    head: (p, n) => get(p).subarray(0, n),
    readText: (p) => new TextDecoder().decode(get(p)),
    openSafetensors: (p) => parseSafetensorsBuffer(get(p), p),
    readTorch: (p, opts) => readTorchCheckpointBuffer(get(p), p, opts),
    ...posixPath,
  };
}
