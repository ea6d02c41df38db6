#!/usr/bin/env node
/**
 * `convnextv2 <command> [flags]`. Every command shares --threads, --quiet, --json and --help;
 * `convnextv2 --version`, `convnextv2 help CMD`. Errors print one line `convnextv2: <what>:
 * <why>` on stderr (with --json also `{"error": ..., "exit_code": ...}` as stdout's last line)
 * and exit 1 (bad input) or 2 (usage); CONVNEXTV2_DEBUG=1 adds the stack trace.
 */
import '../io/codecs_node.js';
import { ConvNextError } from '../errors.js';
import { type BackendChoice, createBackend, type Kernels } from '../kernels/index.js';
import { resolveCheckpointArg } from '../io/hub.js';
import { didYouMean, formatHelp, parseArgs } from './args.js';
import type { CommandContext } from './command.js';
import { packageVersion } from './info.js';
import { COMMANDS, COMMON } from './commands.js';
import { Progress } from './progress.js';
import { activeComm, connect, launchInfo } from '../parallel/mpi.js';

function usage(): string {
  const lines = ['usage: convnextv2 <command> [flags]', '', 'commands:'];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(10)} ${c.summary}`);
  lines.push('', "'convnextv2 help <command>' (or '<command> --help') lists a command's flags; 'convnextv2 --version' prints the version.");
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  let [name, ...rest] = argv;
  if (name === '--version' || name === '-V') {
    process.stdout.write(`convnextv2 ${packageVersion()}\n`);
    return 0;
  }
  if (name === 'help' && rest.length > 0) {
    if (rest.length > 1) throw new ConvNextError(`help: give one command, got '${rest.join(' ')}'`, 2);
    [name, rest] = [rest[0], ['--help']];
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    const near = didYouMean(name, COMMANDS.map((c) => c.name));
    throw new ConvNextError(`unknown command '${name}' (${near ? `did you mean '${near}'? ` : ''}see 'convnextv2 --help')`, 2);
  }
  const specs = { ...cmd.flags, ...COMMON };
  const args = parseArgs(rest, specs, cmd.name);
  if (args.bool('help')) {
    process.stdout.write(formatHelp(cmd.usage, specs, cmd.examples) + '\n');
    return 0;
  }
  if (!cmd.positionals && args.positionals.length > 0) {
    throw new ConvNextError(`${cmd.name}: unexpected argument '${args.positionals[0]}' (flags start with --; see 'convnextv2 help ${cmd.name}')`, 2);
  }
  const envThreads = process.env.CONVNEXTV2_THREADS;
  if (envThreads !== undefined && envThreads !== '' && !/^[1-9][0-9]*$/.test(envThreads.trim())) {
    throw new ConvNextError(`CONVNEXTV2_THREADS=${envThreads}: must be a positive integer`, 2);
  }
  const threads = args.number('threads');
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) throw new ConvNextError('--threads must be a positive integer', 2);
  const device = args.flags.get('device') ?? 'cpu';
  if (device !== 'cpu' && device !== 'webgpu' && device !== 'auto') {
    throw new ConvNextError(`--device ${String(device)}: use cpu, webgpu or auto`, 2);
  }
  // The command's backend, made when it first asks (convert, inspect and the like load no kernels).
  let backend: Promise<Kernels> | null = null;
  // A software WebGPU adapter (lavapipe, SwiftShader) is said once: correct, but slower than the CPU kernels.
  const makeBackend = () => (backend ??= createBackend(device as BackendChoice, { threads }).then((k) => {
    if (device === 'webgpu' && (k as { software?: boolean }).software && (launchInfo()?.rank ?? 0) === 0) {
      process.stderr.write(`convnextv2: note: ${k.capabilities().description} is a software WebGPU adapter, a CPU emulation: correct, but slower than --device cpu\n`);
    }
    return k;
  }));
  // A CONVNEXTV2_ISA or CONVNEXTV2_KERNELS that cannot be used is refused before any work (one line, exit 2).
  if (process.env.CONVNEXTV2_ISA || process.env.CONVNEXTV2_KERNELS) await makeBackend();
  Progress.quiet = args.bool('quiet');
  // Under an MPI launcher: the data-parallel commands connect; rank 0 alone prints.
  const launch = launchInfo();
  let lead = true;
  if (launch && launch.size > 1) {
    if (cmd.name !== 'finetune' && cmd.name !== 'pretrain') {
      throw new ConvNextError(`${cmd.name}: started as rank ${launch.rank} of ${launch.size} by ${launch.launcher}: only finetune and pretrain run data-parallel (run it without mpirun)`, 2);
    }
    const timeout = args.number('mpi-timeout');
    if (timeout !== undefined && !(timeout > 0)) throw new ConvNextError(`--mpi-timeout ${timeout}: must be a positive number of seconds`, 2);
    lead = connect({ timeoutSeconds: timeout }).rank === 0;
    if (!lead) Progress.quiet = true;
  }
  // Weights by name (facebook/convnextv2-atto-1k-224, timm/..., hf-hub:...): the Hugging Face cache's snapshot folder.
  for (const flag of ['checkpoint', 'init']) {
    const v = args.flags.get(flag);
    if (typeof v === 'string') args.flags.set(flag, await resolveCheckpointArg(v, (l) => process.stderr.write(l + '\n')));
    else if (Array.isArray(v)) args.flags.set(flag, await Promise.all(v.map((x) => resolveCheckpointArg(x, (l) => process.stderr.write(l + '\n')))));
  }
  let exitCode = 0;
  const ctx: CommandContext = {
    out: (line) => { if (lead) process.stdout.write(line + '\n'); },
    err: (line) => process.stderr.write(line + '\n'),
    setExitCode: (code) => { exitCode = Math.max(exitCode, code); },
    backend: makeBackend,
  };
  const result = await cmd.run(args, ctx);
  if (args.bool('json') && result && lead) process.stdout.write(JSON.stringify(result) + '\n');
  return exitCode;
}

// Output piped into `head` and the like: stop quietly when the reader goes away.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

// A command whose work can no longer progress (a promise nothing will settle) would let the
// event loop drain and exit 0: report it as the failure it is.
let finished = false;
process.on('beforeExit', () => {
  if (finished) return;
  finished = true;
  process.stderr.write('convnextv2: internal error: the command stopped before finishing\n');
  process.exitCode = 1;
});

main(process.argv.slice(2)).then(
  (code) => { finished = true; process.exitCode = code; },
  (e: unknown) => {
    finished = true;
    const debug = process.env.CONVNEXTV2_DEBUG === '1';
    // With --json (before a bare --), the error is also the last line of stdout, as a JSON object.
    const argv = process.argv.slice(2);
    const dash = argv.indexOf('--');
    const json = (dash < 0 ? argv : argv.slice(0, dash)).includes('--json');
    const report = (message: string, exitCode: number) => {
      if (json) process.stdout.write(JSON.stringify({ error: `convnextv2: ${message}`, exit_code: exitCode }) + '\n');
    };
    // A rank of a data-parallel job names itself, and ends the whole job (the others would wait in a collective).
    const comm = activeComm();
    const who = comm && comm.size > 1 ? `rank ${comm.rank}: ` : '';
    if (e instanceof ConvNextError) {
      process.stderr.write(`convnextv2: ${who}${e.message}\n`);
      if (debug && e.stack) process.stderr.write(e.stack + '\n');
      report(e.message, e.exitCode);
      process.exitCode = e.exitCode;
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      process.stderr.write(`convnextv2: ${who}${msg.split('\n')[0]}\n`);
      if (debug && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
      report(msg.split('\n')[0], 1);
      process.exitCode = 1;
    }
    if (comm && comm.size > 1) comm.abort(Number(process.exitCode));
  },
);
