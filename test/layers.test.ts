// Data flows one way (../shared/DESIGN.md): each folder of src/ imports only the folders below
// it. Read from the sources' import statements (static and dynamic), so a new import against the
// flow fails here with the file and the line, instead of surfacing as a cycle later.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const SRC = new URL('../src/', import.meta.url).pathname;

// What each layer may import, besides itself and the base modules (errors, tensor, rng).
// model/config.ts is the configuration every layer above the model reads; io may read it.
const ALLOWED: Record<string, string[]> = {
  kernels: [],
  nn: ['kernels'],
  model: ['kernels', 'nn'],
  data: [],
  io: ['data', 'model/config.ts'],
  viz: ['io'],
  parallel: ['kernels', 'nn'],
  train: ['kernels', 'nn', 'model', 'parallel', 'data', 'io'],
  fcmae: ['kernels', 'nn', 'model', 'train', 'parallel', 'data', 'io', 'viz'],
  analysis: ['kernels', 'nn', 'model', 'viz', 'io', 'data'],
  cli: ['*'],
};
const BASE = new Set(['errors.ts', 'tensor.ts', 'rng.ts']);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** [line, target path relative to src/] of each relative import in `file`. */
function imports(file: string): [number, string][] {
  const out: [number, string][] = [];
  readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    for (const m of line.matchAll(/(?:from\s+|import\s*\(\s*|^import\s+)'(\.{1,2}\/[^']+)'/g)) {
      out.push([i + 1, relative(SRC, resolve(dirname(file), m[1].replace(/\.js$/, '.ts')))]);
    }
  });
  return out;
}

test('imports follow the layers: kernels import nothing above them, and no layer imports one above it', () => {
  const bad: string[] = [];
  let checked = 0;
  for (const file of files(SRC)) {
    const from = relative(SRC, file);
    const layer = from.includes('/') ? from.split('/')[0] : null;
    for (const [line, to] of imports(file)) {
      checked++;
      if (to.startsWith('..')) {
        bad.push(`${from}:${line} imports ${to}, outside src/`);
        continue;
      }
      const toLayer = to.includes('/') ? to.split('/')[0] : null;
      if (layer === null) continue; // the entry points (index.ts, web.ts) export every layer
      if (toLayer === null) {
        if (!BASE.has(to)) bad.push(`${from}:${line} imports the entry ${to}`);
        continue;
      }
      if (toLayer === layer) continue;
      const allowed = ALLOWED[layer];
      assert.ok(allowed, `src/${layer}/ has no entry in the layer table of this test`);
      if (!allowed.includes('*') && !allowed.includes(toLayer) && !allowed.includes(to)) bad.push(`${from}:${line} imports ${to} (${layer} may import ${allowed.join(', ') || 'nothing above it'})`);
    }
  }
  assert.ok(checked > 200, `read ${checked} imports`);
  assert.deepEqual(bad, []);
});

test('the layer check sees a violation (a kernel file importing the model would be reported)', () => {
  const probe = join(SRC, 'kernels', 'host.ts');
  const found = imports(probe);
  assert.ok(found.length > 0 && found.every(([, t]) => t.startsWith('kernels/') || BASE.has(t)), `host.ts imports: ${found.map(([, t]) => t).join(', ')}`);
  // The parser reads the three import forms.
  const lines = ["import { a } from '../model/x.js';", "const m = await import('../train/y.js');", "import '../io/z.js';"];
  const tmp = lines.join('\n');
  const got = tmp.split('\n').flatMap((l) => [...l.matchAll(/(?:from\s+|import\s*\(\s*|^import\s+)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]));
  assert.deepEqual(got, ['../model/x.js', '../train/y.js', '../io/z.js']);
});
