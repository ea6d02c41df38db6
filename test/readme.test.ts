// The CLI reference's flag tables (docs/cli.md) and the CLI can never disagree: every row of
// every table under a `#### \`convnextv2 CMD\`` heading names a flag of that command with the
// CLI's default, in the command's order, and every flag of the command has its row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { finetune } from '../src/cli/finetune.js';
import { pretrain } from '../src/cli/pretrain.js';

const COMMANDS = [pretrain, finetune];

const CLI_DOC = readFileSync(new URL('../docs/cli.md', import.meta.url), 'utf8');

/** The flag tables: command name -> [flag, default cell] rows, in the page's order. */
function flagTables(): Map<string, [string, string][]> {
  const out = new Map<string, [string, string][]>();
  let current: [string, string][] | null = null;
  for (const line of CLI_DOC.split('\n')) {
    const h = /^#### `convnextv2 ([a-z-]+)`\s*$/.exec(line);
    if (h) {
      current = [];
      out.set(h[1], current);
      continue;
    }
    if (!current) continue;
    if (/^#/.test(line)) { current = null; continue; }
    const row = /^\| `--([a-z0-9-]+)` \| ([^|]*) \|/.exec(line);
    if (row) current.push([row[1], row[2].trim()]);
  }
  return out;
}

test('docs/cli.md flag tables: each row is a flag of its command with the CLI\'s default, and each flag has a row', () => {
  const tables = flagTables();
  assert.deepEqual([...tables.keys()].sort(), ['finetune', 'pretrain'], 'docs/cli.md has the pretrain and finetune tables');
  for (const [name, rows] of tables) {
    const cmd = COMMANDS.find((c) => c.name === name) ?? assert.fail(`docs/cli.md: a table for unknown command ${name}`);
    assert.deepEqual(rows.map(([f]) => f), Object.keys(cmd.flags), `${name}: the docs/cli.md rows are the command's flags, in its order`);
    for (const [flag, cell] of rows) {
      const spec = cmd.flags[flag];
      const want = spec.default ?? (spec.kind === 'boolean' ? false : undefined);
      const m = /^`(.*)`$/.exec(cell);
      if (want === undefined) {
        assert.equal(cell, '—', `${name} --${flag}: no default in the CLI, docs/cli.md says ${cell}`);
        continue;
      }
      assert.ok(m, `${name} --${flag}: docs/cli.md's default ${cell} is not a \`value\``);
      const v = m[1] === "''" ? '' : m[1];
      const got = spec.kind === 'number' || spec.kind === 'int' ? Number(v) : spec.kind === 'boolean' ? v === 'true' ? true : v === 'false' ? false : v : v;
      assert.equal(got, want, `${name} --${flag}: docs/cli.md says ${cell}, the CLI's default is ${String(want)}`);
    }
  }
});
