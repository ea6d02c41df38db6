/**
 * A small flag parser for the CLI conventions (DESIGN.md): kebab-case flags, `--x value` or
 * `--x=value`, booleans as `--x` / `--no-x`, positionals kept in order. Unknown flags are a
 * usage error (exit code 2).
 */
import { ConvNextError } from '../errors.js';

/** `list`: a repeatable string flag; every occurrence adds a value. */
export type FlagKind = 'string' | 'number' | 'int' | 'boolean' | 'list';

export interface FlagSpec {
  kind: FlagKind;
  help: string;
  default?: string | number | boolean;
  /** For string flags: the value when the flag is given without one (e.g. `--resume`). */
  implicit?: string;
  /** For boolean flags: false when `--no-x` means nothing (`--help`, `--json`); help then shows `--x` alone. */
  negatable?: boolean;
}

export type FlagSpecs = Record<string, FlagSpec>;

/** Edit distance (insertions, deletions, substitutions, and swaps of neighbours: `--epcohs`). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate closest to `name` when it is close enough to be a slip (at most a third of its
 * letters wrong, at least one allowed), else undefined; ties go to the first candidate.
 */
export function didYouMean(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const dist = editDistance(name, c);
    if (dist < bestD) [best, bestD] = [c, dist];
  }
  return best;
}
export type FlagValue = string | number | boolean | string[] | undefined;

export class ParsedArgs {
  /** `explicit`: the flags given on the command line (the rest hold defaults); `command` names errors. */
  constructor(readonly flags: Map<string, FlagValue>, readonly positionals: string[], readonly explicit: ReadonlySet<string> = new Set(),
    readonly command = '') {}

  has(name: string): boolean {
    return this.flags.get(name) !== undefined;
  }

  string(name: string): string | undefined {
    const v = this.flags.get(name);
    return v === undefined ? undefined : String(v);
  }

  /** The values of a repeatable (`list`) flag, in command-line order (empty when absent). */
  list(name: string): string[] {
    const v = this.flags.get(name);
    return Array.isArray(v) ? [...v] : v === undefined ? [] : [String(v)];
  }

  requireString(name: string): string {
    const v = this.string(name);
    if (v === undefined || v === '') throw new ConvNextError(`${this.command ? `${this.command}: ` : ''}missing --${name}`, 2);
    return v;
  }

  number(name: string): number | undefined {
    const v = this.flags.get(name);
    return v === undefined ? undefined : Number(v);
  }

  requireNumber(name: string): number {
    const v = this.number(name);
    if (v === undefined) throw new ConvNextError(`${this.command ? `${this.command}: ` : ''}missing --${name}`, 2);
    return v;
  }

  bool(name: string): boolean {
    return this.flags.get(name) === true;
  }
}

export function parseArgs(argv: string[], specs: FlagSpecs, command: string): ParsedArgs {
  const flags = new Map<string, FlagValue>();
  const positionals: string[] = [];
  const explicit = new Set<string>();
  const explicitList = new Set<string>();
  for (const [name, s] of Object.entries(specs)) flags.set(name, s.default);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    let name = a.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = specs[name];
    if (!spec && name.startsWith('no-') && specs[name.slice(3)]?.kind === 'boolean' && specs[name.slice(3)].negatable !== false && value === undefined) {
      flags.set(name.slice(3), false);
      explicit.add(name.slice(3));
      continue;
    }
    if (spec) explicit.add(name);
    if (!spec) {
      const near = didYouMean(name, Object.keys(specs));
      throw new ConvNextError(`${command}: unknown flag --${name} (${near ? `did you mean --${near}? ` : ''}see 'convnextv2 ${command} --help')`, 2);
    }
    if (spec.kind === 'boolean') {
      if (value !== undefined && value !== 'true' && value !== 'false') {
        throw new ConvNextError(`${command}: --${name} takes no value`, 2);
      }
      flags.set(name, value !== 'false');
      continue;
    }
    if (value === undefined) {
      const nextArg = argv[i + 1];
      if (spec.implicit !== undefined && (nextArg === undefined || nextArg.startsWith('--'))) {
        flags.set(name, spec.implicit);
        continue;
      }
      value = argv[++i];
      if (value === undefined) throw new ConvNextError(`${command}: --${name} needs a value`, 2);
      if (value.startsWith('--')) throw new ConvNextError(`${command}: --${name} needs a value (got the flag ${value}; write --${name}=${value} for a value that starts with --)`, 2);
    }
    if (spec.kind === 'list') {
      const prev = flags.get(name);
      flags.set(name, Array.isArray(prev) && explicitList.has(name) ? [...prev, value] : [value]);
      explicitList.add(name);
    } else if (spec.kind === 'number' || spec.kind === 'int') {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n) || (spec.kind === 'int' && !Number.isInteger(n))) {
        throw new ConvNextError(`${command}: --${name} expects ${spec.kind === 'int' ? 'an integer' : 'a number'}, got '${value}'`, 2);
      }
      flags.set(name, n);
    } else {
      flags.set(name, value);
    }
  }
  return new ParsedArgs(flags, positionals, explicit, command);
}

export function formatHelp(usage: string, specs: FlagSpecs, examples: readonly string[] = []): string {
  const lines = [`usage: ${usage}`, '', 'flags:'];
  for (const [name, s] of Object.entries(specs)) {
    const flag = s.kind === 'boolean'
      ? (s.negatable === false ? `--${name}` : `--${name} / --no-${name}`)
      : `--${name} <${s.kind === 'string' || s.kind === 'list' ? 'value' : s.kind}>${s.kind === 'list' ? '...' : ''}`;
    const def = s.default !== undefined ? ` (default ${String(s.default)})` : '';
    lines.push(`  ${flag.padEnd(34)} ${s.help}${def}`);
  }
  if (examples.length > 0) lines.push('', 'examples:', ...examples.map((e) => `  ${e}`));
  return lines.join('\n');
}
