// eval / predict / embed end to end on a tiny checkpoint: JSON records, class names from the
// checkpoint, and a one-line error naming a corrupt or non-image file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveCheckpoint } from '../src/io/checkpoint.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { makeConfig } from '../src/model/config.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { SYNTHETIC_CLASSES } from '../src/data/synthetic.js';
import { encodePng } from '../src/viz/png.js';

const ROOT = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-predict-'));
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { encoding: 'utf8' });

const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 10 });
const ckpt = join(dir, 'tiny.safetensors');
saveCheckpoint(ckpt, { config: cfg, state: new ConvNeXtV2(cfg, { seed: 1 }).stateDict(), labels: [...SYNTHETIC_CLASSES], metadata: { input_size: '64' } });
const png = join(dir, 'img.png');
writeFileSync(png, encodePng({ width: 40, height: 30, channels: 3, data: Uint8Array.from({ length: 40 * 30 * 3 }, (_, i) => (i * 7) % 256) }));

test('predict: top-k with the checkpoint\'s class names; embed writes features', () => {
  const r = cli('predict', '--checkpoint', ckpt, png, png, '--top-k', '3', '--json');
  assert.equal(r.status, 0, r.stderr);
  const rec = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(rec.predictions.length, 2);
  assert.equal(rec.predictions[0].top.length, 3);
  assert.ok(SYNTHETIC_CLASSES.includes(rec.predictions[0].top[0].label));
  const sum = rec.predictions[0].top.reduce((a: number, t: { probability: number }) => a + t.probability, 0);
  assert.ok(sum > 0 && sum <= 1.000001);
  const out = join(dir, 'f.safetensors');
  assert.equal(cli('embed', '--checkpoint', ckpt, '--output', out, png).status, 0);
  assert.deepEqual(readSafetensors(out).get('features')!.shape, [1, 32]);
});

test('predict: a corrupt or non-image file is a one-line error naming the file', () => {
  const bad = join(dir, 'notes.jpg');
  writeFileSync(bad, 'this is text, not a JPEG');
  const r = cli('predict', '--checkpoint', ckpt, bad);
  assert.equal(r.status, 1);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^convnextv2: .*notes\.jpg/);
  const missing = cli('predict', '--checkpoint', ckpt, join(dir, 'nope.png'));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /nope\.png/);
});

test('eval --json: top1, top5, loss, images', () => {
  const r = cli('eval', '--checkpoint', ckpt, '--data', 'synthetic', '--limit', '40', '--json');
  assert.equal(r.status, 0, r.stderr);
  const rec = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(rec.images, 40);
  for (const k of ['top1', 'top5', 'loss']) assert.equal(typeof rec[k], 'number');
  assert.ok(rec.top5 >= rec.top1);
});
