/** Why a file operation failed, in a few words for one-line errors (Node). */
import { oneLine } from '../errors.js';

/** 'no such file', 'is a directory', 'permission denied', else the system's message; `say` words a code for its caller. */
export function fsReason(err: unknown, say: { ENOENT?: string; EISDIR?: string } = {}): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOENT') return say.ENOENT ?? 'no such file';
  if (code === 'EISDIR') return say.EISDIR ?? 'is a directory';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return oneLine(err instanceof Error ? err.message : String(err));
}
