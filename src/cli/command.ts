/** The shape of a CLI command: one file per command under src/cli/. */
import type { Kernels } from '../kernels/types.js';
import type { FlagSpecs, ParsedArgs } from './args.js';

export interface CommandContext {
  /** Prints a line to stdout (suppressed for the JSON-only parts when --json is set). */
  out(line: string): void;
  /** Prints a line to stderr. */
  err(line: string): void;
  /** The process ends with at least this exit code once the command has finished (e.g. 1 when some inputs were skipped). */
  setExitCode(code: number): void;
  /** The backend --device (and CONVNEXTV2_KERNELS, --threads) chose, created on the first call; the same one after. */
  backend(): Promise<Kernels>;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Two or three command lines that `--help` ends with (test/cli_help.test.ts parses each against the flags). */
  examples: string[];
  flags: FlagSpecs;
  /** What the command's positional arguments are (e.g. 'IMAGE...'); without it, positional arguments are a usage error. */
  positionals?: string;
  /** Returns a JSON-able record; with --json it is printed as the last line of stdout. */
  run(args: ParsedArgs, ctx: CommandContext): Promise<object | void> | object | void;
}
