/** Helpers for run folders: the per-epoch log (one JSON record per line). */
import { existsSync, readFileSync } from 'node:fs';
import { writeBytesAtomicSync } from '../io/atomic.js';

/** Keeps the log records of epochs <= `epoch` (a resumed run rewrites the later ones). */
export function keepLogUpTo(path: string, epoch: number): void {
  if (!existsSync(path)) return;
  const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const keep = lines.filter((l) => {
    try {
      return (JSON.parse(l) as { epoch: number }).epoch <= epoch;
    } catch {
      return false;
    }
  });
  writeBytesAtomicSync(path, Buffer.from(keep.map((l) => l + '\n').join('')));
}

/** The records of a run's log.jsonl. */
export function readLog<T = Record<string, number>>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as T);
}
