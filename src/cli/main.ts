#!/usr/bin/env node
/**
 * `convnextv2 <command> [flags]`. Every command shares --threads, --json and --help. Errors
 * print one line `convnextv2: <what>: <why>` on stderr and exit 1 (bad input) or 2 (usage);
 * CONVNEXTV2_DEBUG=1 adds the stack trace.
 */
import { ConvNextError } from '../errors.js';
import { getKernels, setThreads } from '../kernels/index.js';
import { formatHelp, parseArgs, type FlagSpecs } from './args.js';
import { bench } from './bench.js';
import type { Command, CommandContext } from './command.js';
import { convert } from './convert.js';
import { demo } from './demo.js';
import { forward } from './forward.js';
import { fcmaeLoss } from './fcmae_loss.js';
import { pretrain } from './pretrain.js';
import { finetune } from './finetune.js';
import { evalCommand } from './eval.js';
import { predict, embed } from './predict.js';
import { inspect } from './inspect.js';
import { analyze } from './analyze.js';
import { info } from './info.js';

const COMMANDS: Command[] = [forward, pretrain, finetune, evalCommand, predict, embed, fcmaeLoss, bench, demo, convert, inspect, analyze, info];

const COMMON: FlagSpecs = {
  threads: { kind: 'int', help: 'worker threads (default: CONVNEXTV2_THREADS or all cores)' },
  json: { kind: 'boolean', help: 'print one JSON object as the last line of stdout' },
  help: { kind: 'boolean', help: 'show this help' },
};

function usage(): string {
  const lines = ['usage: convnextv2 <command> [flags]', '', 'commands:'];
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(10)} ${c.summary}`);
  lines.push('', "'convnextv2 <command> --help' lists a command's flags.");
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) throw new ConvNextError(`unknown command '${name}' (see 'convnextv2 --help')`, 2);
  const specs = { ...cmd.flags, ...COMMON };
  const args = parseArgs(rest, specs, cmd.name);
  if (args.bool('help')) {
    process.stdout.write(formatHelp(cmd.usage, specs) + '\n');
    return 0;
  }
  // A CONVNEXTV2_ISA that cannot be used is refused before any work (one line, exit 2).
  if (process.env.CONVNEXTV2_ISA) getKernels();
  const threads = args.number('threads');
  if (threads !== undefined) {
    if (!Number.isInteger(threads) || threads < 1) throw new ConvNextError('--threads must be a positive integer', 2);
    setThreads(threads);
  }
  const ctx: CommandContext = {
    out: (line) => process.stdout.write(line + '\n'),
    err: (line) => process.stderr.write(line + '\n'),
  };
  const result = await cmd.run(args, ctx);
  if (args.bool('json') && result) process.stdout.write(JSON.stringify(result) + '\n');
  return 0;
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
    if (e instanceof ConvNextError) {
      process.stderr.write(`convnextv2: ${e.message}\n`);
      if (debug && e.stack) process.stderr.write(e.stack + '\n');
      process.exitCode = e.exitCode;
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      process.stderr.write(`convnextv2: ${msg.split('\n')[0]}\n`);
      if (debug && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
      process.exitCode = 1;
    }
  },
);
