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
