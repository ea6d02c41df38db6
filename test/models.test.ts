// `convnextv2 models` (through dist/cli/main.js): every size, with parameter and multiply-add
// counts that agree with the official README's table (counted from our configs, not copied),
// the paper's top-1, and hub ids of the forms that load by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseHubId } from '../src/io/hub.js';

const MAIN = join(new URL('..', import.meta.url).pathname, 'dist/cli/main.js');
// The official README (ImageNet-1K fine-tuned models): #params (M) and FLOPs (G) as printed there.
const OFFICIAL: Record<string, [number, number]> = {
  atto: [3.7, 0.55], femto: [5.2, 0.78], pico: [9.1, 1.37], nano: [15.6, 2.45], tiny: [28.6, 4.47], base: [89, 15.4], large: [198, 34.4], huge: [660, 115],
};

test('models: each size with the official parameter and FLOP counts (to their rounding), the paper top-1 and loadable hub ids', () => {
  const r = spawnSync(process.execPath, [MAIN, 'models', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const rec = JSON.parse(lines.pop()!) as { models: { name: string; params: number; gmacs_224: number; paper_top1: number; hub: Record<string, string> }[] };
  assert.deepEqual(rec.models.map((m) => m.name), Object.keys(OFFICIAL));
  for (const m of rec.models) {
    const [p, f] = OFFICIAL[m.name];
    const digits = (v: number) => (v < 10 ? 2 : v < 100 ? 1 : 0);
    assert.ok(Math.abs(m.params / 1e6 - p) <= (p < 80 ? 0.05 : 0.5), `${m.name}: ${m.params} parameters, the README says ${p}M`);
    assert.ok(Math.abs(m.gmacs_224 - f) <= 0.5 * 10 ** -digits(f) + 1e-9 || Math.abs(m.gmacs_224 - f) / f < 0.005, `${m.name}: ${m.gmacs_224} GMACs, the README says ${f}G`);
    assert.ok(m.paper_top1 > 70 && m.paper_top1 < 90);
    for (const id of Object.values(m.hub)) assert.ok(parseHubId(id), `${id} is a hub id`);
    assert.ok(lines.some((l) => l.startsWith(`${m.name} `) && l.includes(m.hub.hf) && l.includes(`${m.paper_top1.toFixed(1)}%`)), `a table row for ${m.name}`);
  }
  // Top-1 rises with size, as in the paper.
  assert.deepEqual(rec.models.map((m) => m.paper_top1), [...rec.models.map((m) => m.paper_top1)].sort((a, b) => a - b));
});
