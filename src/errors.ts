/**
 * The one error type the library throws for bad input (files, shapes, flags). The CLI prints
 * its message as one line (`convnextv2: <message>`) and exits with `exitCode`.
 */
export class ConvNextError extends Error {
  /** 1 for bad input (files, data), 2 for bad usage (flags). */
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'ConvNextError';
    this.exitCode = exitCode;
  }
}

/** Throws a ConvNextError unless `cond` holds. */
export function check(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new ConvNextError(typeof message === 'function' ? message() : message);
}

/** Text on one line for an error message: whitespace runs (newlines included) become one space, control characters '?', cut at `max`. */
export function oneLine(text: string, max = 200): string {
  const t = text.replace(/[\u0000-\u0008\u000e-\u001f\u007f-\u009f]/g, '?').replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

/** An error's message (or the thrown value) on one line (see oneLine). */
export function errorLine(err: unknown, max = 200): string {
  return oneLine(err instanceof Error ? err.message : String(err), max);
}

/** Refuses option keys a function does not know (a misspelt `decoderEmbedDim` must not be ignored). */
export function checkKnownKeys(what: string, given: object, known: readonly string[]): void {
  const unknown = Object.keys(given).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new ConvNextError(`${what}: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')} (known: ${known.join(', ')})`, 2);
}
