// Every command's --help (through the shipped dist/cli/main.js) ends with two or three examples,
// and each example is a valid command line of that command: its flags exist and take values of
// their kind, and positionals appear only where the command takes them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from '../src/cli/args.js';
import { COMMANDS, COMMON } from '../src/cli/commands.js';

const MAIN = join(new URL('..', import.meta.url).pathname, 'dist/cli/main.js');

/** Splits a shell line the way the examples are written (a redirection ` > FILE` cut first): words, and "quoted words". */
const words = (line: string): string[] => [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]);

test('every command has two or three examples that --help ends with, each a valid line of the command', () => {
  for (const cmd of COMMANDS) {
    const n = cmd.examples.length;
    assert.ok(n >= 2 && n <= 3, `${cmd.name}: ${n} examples, not two or three`);
    const r = spawnSync(process.execPath, [MAIN, cmd.name, '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const tail = r.stdout.trimEnd().split('\n').slice(-(n + 1));
    assert.deepEqual(tail, ['examples:', ...cmd.examples.map((e) => `  ${e}`)], `${cmd.name} --help ends with its examples`);
    for (const e of cmd.examples) {
      const line = e.split(' > ')[0];
      const [prog, name, ...argv] = words(line);
      assert.deepEqual([prog, name], ['convnextv2', cmd.name], e);
      const args = parseArgs(argv, { ...cmd.flags, ...COMMON }, cmd.name);
      if (!cmd.positionals) assert.deepEqual(args.positionals, [], `${e}: ${cmd.name} takes no positionals`);
    }
  }
});
