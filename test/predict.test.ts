// eval / predict / embed end to end on a tiny checkpoint: JSON records, class names from the
// checkpoint, a one-line error naming a corrupt or non-image file, and the shipped CLI's
// labels, probabilities, features and top-1 against the library's own computation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveCheckpoint } from '../src/io/checkpoint_file.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { makeConfig } from '../src/model/config.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { SYNTHETIC_CLASSES } from '../src/data/synthetic.js';
import { encodePng } from '../src/viz/png.js';
import { decodeImage } from '../src/data/image.js';
import { evalTransform } from '../src/data/transforms.js';
import { openDataset } from '../src/data/dataset.js';
import { DataLoader } from '../src/data/loader.js';
import type { Tensor } from '../src/tensor.js';
import { cpu } from './backend.js';

const ROOT = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-predict-'));
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { encoding: 'utf8' });

const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 10 });
const ckpt = join(dir, 'tiny.safetensors');
saveCheckpoint(ckpt, { config: cfg, state: await new ConvNeXtV2(cfg, { kernels: cpu, seed: 1 }).stateDict(), labels: [...SYNTHETIC_CLASSES], metadata: { input_size: '64' } });
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

// ---- the shipped CLI against the library -----------------------------------------------------

const dist = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'dist/cli/main.js'), ...args], { encoding: 'utf8' });
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);

/** The library's own path, written out: decode, resize + centre crop, normalise, forward, softmax (float64). */
async function libraryPredict(model: ConvNeXtV2, files: string[], S: number, cropPct: number): Promise<{ probs: number[][]; features: Tensor }> {
  const x = new Float32Array(files.length * 3 * S * S);
  for (const [i, f] of files.entries()) evalTransform(await decodeImage(f), S, cropPct, x, i * 3 * S * S);
  const { logits, preLogits } = await model.forward({ shape: [files.length, 3, S, S], data: x });
  const K = logits!.shape[1];
  const probs = files.map((_, i) => {
    const row = Array.from(logits!.data.subarray(i * K, (i + 1) * K));
    const mx = Math.max(...row);
    const e = row.map((v) => Math.exp(v - mx));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  });
  return { probs, features: preLogits };
}

test('predict, embed and eval (dist/cli/main.js) give the library\'s labels, probabilities, features and top-1', async () => {
  const model = new ConvNeXtV2(cfg, { kernels: cpu, seed: 1 });
  const png2 = join(dir, 'img2.png');
  writeFileSync(png2, encodePng({ width: 50, height: 70, channels: 3, data: Uint8Array.from({ length: 50 * 70 * 3 }, (_, i) => (i * 13 + (i >> 7)) % 256) }));
  const files = [png, png2];
  for (const [S, crop] of [[64, 0.875], [48, 1]] as const) {
    const { probs: want, features } = await libraryPredict(model, files, S, crop);
    const r = dist('predict', '--checkpoint', ckpt, ...files, '--top-k', '4', '--input-size', String(S), '--crop-pct', String(crop), '--json');
    assert.equal(r.status, 0, r.stderr);
    const rec = lastJson(r.stdout) as { predictions: { file: string; top: { index: number; label: string; probability: number }[] }[] };
    rec.predictions.forEach((p, i) => {
      assert.equal(p.file, files[i]);
      const order = want[i].map((v, k) => [v, k] as const).sort((a, b) => b[0] - a[0]).slice(0, 4);
      assert.deepEqual(p.top.map((t) => t.index), order.map(([, k]) => k), `${S} px image ${i}: top-4 classes`);
      assert.deepEqual(p.top.map((t) => t.label), order.map(([, k]) => SYNTHETIC_CLASSES[k]));
      p.top.forEach((t, j) => assert.ok(Math.abs(t.probability - order[j][0]) <= 1e-6, `${S} px image ${i} rank ${j}: ${t.probability} vs ${order[j][0]}`));
    });
    const feats = join(dir, `features-${S}.safetensors`);
    const e = dist('embed', '--checkpoint', ckpt, '--output', feats, '--input-size', String(S), '--crop-pct', String(crop), ...files);
    assert.equal(e.status, 0, e.stderr);
    const got = readSafetensors(feats).get('features')!;
    assert.deepEqual(got.shape, features.shape);
    assert.deepEqual(got.data, features.data, `${S} px: embed = the library's pre-logits`);
  }
  // eval: the library's count of top-1 hits and its mean cross-entropy over the same images.
  const ds = openDataset('synthetic', 'val', { limit: 40 });
  const loader = new DataLoader(ds, { batchSize: 16, transform: { kind: 'eval', size: 64, cropPct: 0.875 }, workers: 0 });
  let hits = 0, n = 0, loss = 0;
  const conf = new Array<number>(100).fill(0);
  for await (const b of loader.epoch(0)) {
    const logits = (await model.forward(b.pixels)).logits!;
    const K = logits.shape[1];
    for (let i = 0; i < b.labels.length; i++) {
      const row = Array.from(logits.data.subarray(i * K, (i + 1) * K));
      const mx = Math.max(...row);
      if (row.indexOf(mx) === b.labels[i]) hits++;
      conf[b.labels[i] * K + row.indexOf(mx)]++;
      loss += mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0)) - row[b.labels[i]];
      n++;
    }
  }
  await loader.close();
  const r = dist('eval', '--checkpoint', ckpt, '--data', 'synthetic', '--limit', '40', '--input-size', '64', '--crop-pct', '0.875', '--json');
  assert.equal(r.status, 0, r.stderr);
  const rec = lastJson(r.stdout) as { top1: number; loss: number; images: number };
  assert.equal(rec.images, n);
  assert.equal(Math.round((rec.top1 * n) / 100), hits, `eval top-1 ${rec.top1}% of ${n} = ${hits} hits`);
  assert.ok(Math.abs(rec.loss - loss / n) <= 1e-5 * (loss / n), `eval loss ${rec.loss} vs ${loss / n}`);
  // The report: a progress bar, per-class top-1 and the confusion matrix as text (10 classes),
  // and as files beside the checkpoint; the matrix is the library's argmax counts.
  assert.match(r.stderr, /^eval val \[=+\] 40\/40 /m);
  const text = r.stdout.split('\n');
  const at = text.indexOf('confusion matrix (rows: true class, columns: predicted class):');
  assert.ok(at > 0, r.stdout);
  assert.equal(text.filter((l) => /^\s+\d \S+\s+\d+\.\d\d%  of \d+$/.test(l)).length, 10, 'a per-class line for each class');
  const rows = text.slice(at + 3, at + 13).map((l) => l.split('|')[1].trim().split(/\s+/).map(Number));
  assert.deepEqual(rows.flat(), conf, 'the text matrix is the library\'s');
  const csvRows = readFileSync(join(dir, 'confusion-val.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  assert.deepEqual(csvRows[0], ['true \\ predicted', ...SYNTHETIC_CLASSES]);
  assert.deepEqual(csvRows.slice(1).map((c) => c[0]), [...SYNTHETIC_CLASSES]);
  assert.deepEqual(csvRows.slice(1).flatMap((c) => c.slice(1).map(Number)), conf, 'the CSV matrix is the library\'s');
  const perClass = readFileSync(join(dir, 'per-class-val.csv'), 'utf8').trim().split('\n');
  assert.equal(perClass[0], 'index,label,images,top1');
  perClass.slice(1).forEach((l, k) => {
    const [idx, label, images, top1] = l.split(',');
    const row = conf.slice(k * 10, k * 10 + 10);
    assert.deepEqual([Number(idx), label, Number(images)], [k, SYNTHETIC_CLASSES[k], row.reduce((a, v) => a + v, 0)]);
    assert.ok(Math.abs(Number(top1) - (100 * row[k]) / Number(images)) < 1e-3);
  });
  const pngBytes = readFileSync(join(dir, 'confusion-val.png'));
  assert.deepEqual([...pngBytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
});

test('predict (dist/cli/main.js) takes folders and globs, in batches with a progress bar; --csv and --jsonl hold the same top-k; a corrupt file is skipped', () => {
  const photos = join(dir, 'photos');
  const made: string[] = [];
  for (const [sub, n] of [['a', 3], ['b/deeper', 2], ['c', 2]] as const) {
    mkdirSync(join(photos, sub), { recursive: true });
    for (let i = 0; i < n; i++) {
      const f = join(photos, sub, `im${i}.png`);
      writeFileSync(f, encodePng({ width: 36 + i, height: 30, channels: 3, data: Uint8Array.from({ length: (36 + i) * 30 * 3 }, (_, j) => (j * (5 + i) + sub.length * 31) % 256) }));
      made.push(f);
    }
  }
  writeFileSync(join(photos, 'c', 'broken.JPG'), 'not a jpeg at all');
  writeFileSync(join(photos, 'c', 'readme.txt'), 'not an image, not an image extension');
  const csv = join(dir, 'predictions.csv');
  const r = dist('predict', '--checkpoint', ckpt, photos, '--top-k', '3', '--batch-size', '2', '--csv', csv, '--jsonl');
  assert.equal(r.status, 1, `a skipped file makes exit 1: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; top: { index: number; label: string; probability: number }[] });
  assert.deepEqual(lines.map((l) => l.file), [...made].sort(), 'every image of the folder, recursively, sorted; the text file left out');
  assert.ok(lines.every((l) => l.top.length === 3));
  const err = r.stderr.trim().split('\n');
  assert.ok(err.some((l) => /^convnextv2: warning: skipping .*broken\.JPG: /.test(l)), r.stderr);
  assert.ok(err.some((l) => /^images \[=+\] 8\/8 /.test(l)), `a finished progress bar: ${r.stderr}`);
  // The CSV: a header, then path and the top-k labels and probabilities, as in the JSON lines.
  const rows = readFileSync(csv, 'utf8').trim().split('\n');
  assert.equal(rows[0], 'path,label_1,probability_1,label_2,probability_2,label_3,probability_3');
  assert.equal(rows.length, 1 + made.length);
  rows.slice(1).forEach((row, i) => {
    const cells = row.split(',');
    assert.equal(cells[0], lines[i].file);
    lines[i].top.forEach((t, j) => {
      assert.equal(cells[1 + 2 * j], t.label);
      assert.ok(Math.abs(Number(cells[2 + 2 * j]) - t.probability) < 1e-5);
    });
  });
  // One batch of all: the same classes and probabilities (batching changes nothing per image).
  const whole = dist('predict', '--checkpoint', ckpt, ...made, '--top-k', '3', '--json', '--quiet');
  assert.equal(whole.status, 0, whole.stderr);
  const all = lastJson(whole.stdout) as { predictions: { file: string; top: { index: number; probability: number }[] }[] };
  all.predictions.forEach((p) => {
    const b = lines.find((l) => l.file === p.file)!;
    assert.deepEqual(b.top.map((t) => t.index), p.top.map((t) => t.index));
    b.top.forEach((t, j) => assert.ok(Math.abs(t.probability - p.top[j].probability) <= 1e-6));
  });
  // A glob the shell did not expand: its matches, sorted.
  const g = dist('predict', '--checkpoint', ckpt, join(photos, '**', 'im0.png'), '--jsonl', '--quiet');
  assert.equal(g.status, 0, g.stderr);
  assert.deepEqual(g.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { file: string }).file), made.filter((f) => f.endsWith('im0.png')).sort());
});
