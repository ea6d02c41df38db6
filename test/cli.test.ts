// The CLI end to end: `forward` reproduces small_timm's logits; bad input ends with one line
// on stderr and a non-zero exit, never a stack trace; `bench --json` prints its record last.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import sharp from 'sharp';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors_file.js';
import { cpu as backend } from './backend.js';
import { cpuInfo, cpuName, flopsPerCycle } from '../src/kernels/cpu.js';
import { NativeKernels } from '../src/kernels/native.js';
import { forwardMacs } from '../src/model/flops.js';
import { makeConfig } from '../src/model/config.js';
import { relErr } from './helpers.js';

const ROOT = new URL('..', import.meta.url).pathname;
const FIX = join(ROOT, 'test/fixtures/reference');
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-cli-'));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
    encoding: 'utf8', cwd: ROOT, env: { ...process.env, CONVNEXTV2_DEBUG: '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertOneLineError(r: { code: number | null; stderr: string }, pattern: RegExp) {
  assert.notEqual(r.code, 0, 'non-zero exit');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0], /^convnextv2: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

const ref = readSafetensors(join(FIX, 'small_timm.safetensors'));
const input = join(dir, 'in.safetensors');
writeSafetensors(input, [['pixel_values', ref.get('input.1.pixel_values')!]]);
const ckpt = join(dir, 'small_timm_params.safetensors');
writeSafetensors(ckpt, [...ref].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v] as const));

test('forward reproduces timm logits and features from a timm checkpoint', () => {
  const out = join(dir, 'out.safetensors');
  const r = cli('forward', '--checkpoint', ckpt, '--input', input, '--output', out, '--features', '--json');
  assert.equal(r.code, 0, r.stderr);
  const last = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(last.images, 1);
  const got = readSafetensors(out);
  assert.ok(relErr(got.get('logits')!.data, ref.get('output.1.logits')!.data) <= 1e-4);
  assert.ok(relErr(got.get('pre_logits')!.data, ref.get('output.1.pre_logits')!.data) <= 1e-4);
  for (let s = 0; s < 4; s++) {
    assert.deepEqual(got.get(`stage${s}`)!.shape, ref.get(`output.1.stage${s}`)!.shape);
    assert.ok(relErr(got.get(`stage${s}`)!.data, ref.get(`output.1.stage${s}`)!.data) <= 1e-4);
  }
});

test('bad input: one-line errors, non-zero exit, no stack trace', () => {
  const out = join(dir, 'o.safetensors');
  assertOneLineError(cli('forward', '--checkpoint', join(dir, 'missing.safetensors'), '--input', input, '--output', out), /missing\.safetensors/);
  const notSt = join(dir, 'not.safetensors');
  writeFileSync(notSt, 'this is not a safetensors file at all');
  assertOneLineError(cli('forward', '--checkpoint', notSt, '--input', input, '--output', out), /not\.safetensors/);
  const whole = readFileSync(ckpt);
  const trunc = join(dir, 'trunc.safetensors');
  writeFileSync(trunc, whole.subarray(0, Math.floor(whole.length / 2)));
  assertOneLineError(cli('forward', '--checkpoint', trunc, '--input', input, '--output', out), /trunc\.safetensors/);
  // A header whose offsets point past the end of the file.
  const n = Number(whole.readBigUInt64LE(0));
  const header = JSON.parse(whole.subarray(8, 8 + n).toString('utf8'));
  const firstKey = Object.keys(header).find((k) => k !== '__metadata__')!;
  header[firstKey].data_offsets = [whole.length * 4, whole.length * 4 + header[firstKey].data_offsets[1] - header[firstKey].data_offsets[0]];
  const hb = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  const past = join(dir, 'past.safetensors');
  writeFileSync(past, Buffer.concat([len, hb, whole.subarray(8 + n)]));
  assertOneLineError(cli('forward', '--checkpoint', past, '--input', input, '--output', out), /past\.safetensors/);
  // A header claiming 1 TB.
  const huge = Buffer.from(whole);
  huge.writeBigUInt64LE(1n << 40n, 0);
  const hugeFile = join(dir, 'huge.safetensors');
  writeFileSync(hugeFile, huge);
  assertOneLineError(cli('forward', '--checkpoint', hugeFile, '--input', input, '--output', out), /huge\.safetensors/);
  // An input tensor of the wrong rank.
  const rank3 = join(dir, 'rank3.safetensors');
  writeSafetensors(rank3, [['pixel_values', { shape: [3, 64, 64], data: new Float32Array(3 * 64 * 64) }]]);
  assertOneLineError(cli('forward', '--checkpoint', ckpt, '--input', rank3, '--output', out), /rank 4/);
  // A checkpoint tensor of the wrong shape names the tensor.
  const wrong = join(dir, 'wrong.safetensors');
  writeSafetensors(wrong, [...ref].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6),
    k === 'param.stages.1.blocks.0.mlp.fc2.bias' ? { shape: [31], data: new Float32Array(31) } : v] as const));
  assertOneLineError(cli('forward', '--checkpoint', wrong, '--input', input, '--output', out), /stages\.1\.blocks\.0\.mlp\.fc2\.bias/);
  // Usage errors exit 2.
  const u = cli('forward', '--checkpoint', ckpt, '--bogus');
  assert.equal(u.code, 2);
  assertOneLineError(u, /unknown flag --bogus/);
  assertOneLineError(cli('nonsense'), /unknown command/);
});

test('bench --json: a consistent record as its last line (rate, FLOPs of the model at that size, threads, ISA)', () => {
  const r = cli('bench', '--model', 'atto', '--mode', 'train', '--batch-size', '2', '--input-size', '64', '--warmup', '1', '--iters', '3', '--json');
  assert.equal(r.code, 0, r.stderr);
  const rec = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.deepEqual([rec.model, rec.mode, rec.batch_size, rec.input_size, rec.iterations], ['atto', 'train', 2, 64, 3]);
  assert.ok(rec.ms_per_batch > 0 && rec.ms_per_batch_mean > 0);
  assert.ok(Math.abs(rec.images_per_second - (2 * 1000) / rec.ms_per_batch) <= 0.02 * rec.images_per_second, 'images/s = batch / median time');
  // Training counts 3x the forward's multiply-adds, 2 FLOPs each.
  const gf = (3 * 2 * forwardMacs(makeConfig('atto'), 64, 64)) / 1e9;
  assert.ok(Math.abs(rec.gflops_per_image - gf) <= 0.005, `${rec.gflops_per_image} GFLOP/image vs ${gf}`);
  assert.ok(Math.abs(rec.gflops_per_second - rec.gflops_per_image * rec.images_per_second) <= 0.02 * rec.gflops_per_second);
  assert.ok(rec.peak_rss_mb > 20 && rec.peak_rss_mb < 4096, `${rec.peak_rss_mb} MB`);
  const nk = new NativeKernels();
  assert.deepEqual([rec.kernels, rec.isa, rec.threads], ['native', nk.isa, nk.threads]);
  assert.match(r.stdout, new RegExp(`^atto train batch 2 @64px: ${rec.images_per_second} images/s`, 'm'));
});

test('bench --mode kernels: a row per GEMM and depthwise shape, against a measured peak', () => {
  const r = cli('bench', '--mode', 'kernels', '--batch-size', '1', '--input-size', '64', '--seconds', '0.4', '--json');
  assert.equal(r.code, 0, r.stderr);
  const rec = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.ok(rec.measuredPeak > 0 && rec.copyGbps > 0);
  // 4 stages x (6 GEMMs + 3 depthwise)
  assert.equal(rec.rows.length, 36);
  for (const row of rec.rows) assert.ok(row.gflops > 0 && Number.isFinite(row.gflops), JSON.stringify(row));
  assert.deepEqual(rec.rows[0].shape, [16 * 16, 160, 40]);
  assert.match(r.stdout, /\| 1 \| pwconv1 fwd \(bias\+GELU\) \| 256 x 160 x 40 \|/);
  // The nominal peak: this CPU's FLOP/cycle for the ISA in use x cores x the measured clock.
  const cpu = cpuInfo(new NativeKernels());
  const fpc = flopsPerCycle(cpu, rec.isa);
  assert.equal(rec.nominal.flopsPerCycle, fpc.flops);
  assert.equal(rec.nominal.cores, Math.min(rec.threads, cpu.physicalCores));
  assert.ok(rec.nominal.ghz > 0.5 && rec.nominal.ghz < 10, `clock ${rec.nominal.ghz} GHz`);
  assert.ok(Math.abs(rec.nominal.gflops - rec.nominal.cores * fpc.flops * rec.nominal.ghz) < 1e-6 * rec.nominal.gflops);
  assert.equal(rec.nominal_peak, rec.nominal.gflops);
  assert.equal(rec.cpu, cpuName(cpu));
  const head = r.stdout.split('\n');
  assert.equal(head[0], `${cpuName(cpu)}, ${rec.isa}, ${rec.threads} thread(s).`);
  assert.match(head[1], new RegExp(`nominal: [0-9.]+ GFLOP/s = ${rec.nominal.cores} core\\(s\\) x ${fpc.flops} FLOP/cycle \\(${fpc.basis.replace(/[()]/g, '\\$&')}\\) x [0-9.]+ GHz`));
  // --peak replaces the nominal figure; a bad one is a usage error.
  const p = cli('bench', '--mode', 'kernels', '--batch-size', '1', '--input-size', '32', '--seconds', '0.2', '--peak', '123', '--json');
  assert.equal(p.code, 0, p.stderr);
  assert.equal(JSON.parse(p.stdout.trim().split('\n').pop()!).nominal_peak, 123);
  assert.match(p.stdout, /nominal: 123\.0 GFLOP\/s \(--peak\)/);
  assertOneLineError(cli('bench', '--mode', 'kernels', '--peak', '0'), /--peak must be positive/);
});

test('conventions: --version, help CMD, stray arguments, CONVNEXTV2_THREADS, --json errors, no --no-help', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = cli('--version');
  assert.equal(v.code, 0);
  assert.equal(v.stdout, `convnextv2 ${pkg.version}\n`);
  const h = cli('help', 'eval');
  assert.equal(h.code, 0, h.stderr);
  assert.equal(h.stdout, cli('eval', '--help').stdout);
  assert.match(h.stdout, /^ {2}--help {2,}show this help$/m);
  assert.doesNotMatch(h.stdout, /--no-help|--no-json|--no-quiet/);
  assertOneLineError(cli('inspect', 'stray.safetensors'), /inspect: unexpected argument 'stray\.safetensors'/);
  const t = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'info'], { encoding: 'utf8', env: { ...process.env, CONVNEXTV2_THREADS: 'abc' } });
  assert.equal(t.status, 2);
  assert.equal(t.stderr, 'convnextv2: CONVNEXTV2_THREADS=abc: must be a positive integer\n');
  // With --json an error is also a JSON object, the last line of stdout.
  const e = cli('eval', '--checkpoint', join(dir, 'missing.safetensors'), '--data', 'synthetic', '--json');
  assert.equal(e.code, 1);
  assert.deepEqual(JSON.parse(e.stdout.trim().split('\n').pop()!), { error: `convnextv2: checkpoint ${join(dir, 'missing.safetensors')}: no such file or directory`, exit_code: 1 });
  const u = cli('bench', '--mode', 'nope', '--json');
  assert.equal(u.code, 2);
  assert.equal(JSON.parse(u.stdout.trim().split('\n').pop()!).exit_code, 2);
});

test('progress on stderr: one line per finished bar when stderr is not a terminal, none with --quiet', () => {
  const run = (out: string, ...extra: string[]) => cli('pretrain', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--decoder-embed-dim', '16', '--data', 'synthetic', '--input-size', '64',
    '--batch-size', '8', '--limit', '32', '--epochs', '2', '--warmup-epochs', '0', '--workers', '0', '--vis-images', '1', '--out', join(dir, out), ...extra);
  const a = run('progress');
  assert.equal(a.code, 0, a.stderr);
  const bars = a.stderr.trim().split('\n');
  assert.equal(bars.length, 2, a.stderr);
  bars.forEach((l, i) => assert.match(l, new RegExp(`^epoch ${i + 1}/2 \\[=+\\] 4/4 .* in 0:\\d\\d loss`)));
  const q = run('quiet', '--quiet');
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stderr, '');
});

test('errors that say what is wrong: what a file is, folders for files, sizes, skipped images, resume of a pre-training run', async () => {
  const png = join(ROOT, 'docs', 'grn-ablation-cosine.png');
  const bad = join(dir, 'bad.jpg');
  writeFileSync(bad, 'not a jpeg');
  const onnx = join(dir, 'model.onnx');
  assert.equal(cli('convert', '--checkpoint', ckpt, '--to', 'onnx', '--output', onnx).code, 0);
  assertOneLineError(cli('inspect', '--checkpoint', onnx), /checkpoint .*model\.onnx: is an ONNX model, not a checkpoint \(safetensors, a torch\.save \.pt\/\.pth\/\.bin, or a Hugging Face folder\)/);
  assertOneLineError(cli('inspect', '--checkpoint', png), /grn-ablation-cosine\.png: is a PNG image, not a checkpoint/);
  assertOneLineError(cli('forward', '--checkpoint', ckpt, '--input', png, '--output', join(dir, 'o.safetensors')), /grn-ablation-cosine\.png: is a PNG image, not a safetensors file/);
  assertOneLineError(cli('eval', '--checkpoint', ckpt, '--data', png), /grn-ablation-cosine\.png: is a file, not a folder/);
  const empty = join(dir, 'no-images');
  mkdirSync(empty, { recursive: true });
  writeFileSync(join(empty, 'notes.txt'), 'not an image');
  assertOneLineError(cli('predict', '--checkpoint', ckpt, empty), /no-images: a folder with no images in it \(jpg, jpeg, png, webp, gif, tif, tiff, avif, searched recursively\)$/);
  assertOneLineError(cli('predict', '--checkpoint', ckpt, join(dir, 'nothing-*.jpg')), /nothing-\*\.jpg: matches no file$/);
  const zero = cli('predict', '--checkpoint', ckpt, '--input-size', '0', png);
  assert.equal(zero.code, 2);
  assertOneLineError(zero, /--input-size 0: must be an integer of at least 32/);
  const topk = cli('predict', '--checkpoint', ckpt, '--top-k', '0', png);
  assert.equal(topk.code, 2);
  assertOneLineError(topk, /--top-k 0: must be a positive integer/);
  assertOneLineError(cli('convert', '--checkpoint', ckpt, '--to', 'ours', '--output', join(dir, 'no', 'such', 'x.safetensors')), /--output .*x\.safetensors: the folder .*no\/such does not exist/);
  const fcmae = join(ROOT, 'test/fixtures/reference/fcmae_small_official.pt');
  assertOneLineError(cli('finetune', '--resume', fcmae, '--out', join(dir, 'ft-from-fcmae')), /is a pre-training checkpoint, not a fine-tuning run: start from it with --init/);
  // An unreadable image among good ones: the good one is classified, a warning names the bad one, exit 1.
  const p = cli('predict', '--checkpoint', ckpt, '--input-size', '64', png, bad, '--json');
  assert.equal(p.code, 1, p.stderr);
  assert.match(p.stderr, /^convnextv2: warning: skipping .*bad\.jpg: not an image \(JPEG, PNG, WebP, GIF, TIFF or AVIF\)$/m);
  const rec = JSON.parse(p.stdout.trim().split('\n').pop()!) as { predictions: { file: string }[]; skipped: { file: string }[] };
  assert.deepEqual(rec.predictions.map((r) => r.file), [png]);
  assert.deepEqual(rec.skipped.map((r) => r.file), [bad]);
  assertOneLineError(cli('predict', '--checkpoint', ckpt, bad), /^convnextv2: cannot decode image .*bad\.jpg: not an image \(JPEG, PNG, WebP, GIF, TIFF or AVIF\)$/);
  // Truncated files, a missing one: our words, never libvips' text.
  const jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 10, b: 10 } } }).jpeg().toBuffer();
  const cut = join(dir, 'cut.jpg');
  writeFileSync(cut, jpeg.subarray(0, jpeg.length >> 1));
  assertOneLineError(cli('predict', '--checkpoint', ckpt, cut), /^convnextv2: cannot decode image .*cut\.jpg: truncated or corrupt JPEG data$/);
  const cutPng = join(dir, 'cut.png');
  writeFileSync(cutPng, readFileSync(png).subarray(0, 200));
  assertOneLineError(cli('predict', '--checkpoint', ckpt, cutPng), /^convnextv2: cannot decode image .*cut\.png: truncated or corrupt PNG data$/);
  assertOneLineError(cli('predict', '--checkpoint', ckpt, join(dir, 'gone.png')), /^convnextv2: cannot decode image .*gone\.png: no such file$/);
});

test('no silent fallbacks: a split the data set does not name is said', () => {
  const r = cli('eval', '--checkpoint', ckpt, '--data', 'synthetic', '--split', 'test', '--limit', '8', '--input-size', '64');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^convnextv2: warning: synthetic has no separate test part: using its val part/m);
  const v = cli('eval', '--checkpoint', ckpt, '--data', 'synthetic', '--split', 'val', '--limit', '8', '--input-size', '64');
  assert.equal(v.code, 0, v.stderr);
  assert.doesNotMatch(v.stderr, /warning/);
});

test('class names: ImageNet-1k for a 1000-class head without names (predict, eval --json, HF id2label); LABEL_N is no name; --labels FILE', async () => {
  const { ConvNeXtV2 } = await import('../src/model/convnextv2.js');
  const { makeConfig } = await import('../src/model/config.js');
  const { saveCheckpoint, loadCheckpoint } = await import('../src/io/checkpoint_file.js');
  const { IMAGENET_1K_CLASSES } = await import('../src/data/imagenet.js');
  assert.equal(IMAGENET_1K_CLASSES.length, 1000);
  assert.deepEqual([IMAGENET_1K_CLASSES[0], IMAGENET_1K_CLASSES[1], IMAGENET_1K_CLASSES[999]], ['tench, Tinca tinca', 'goldfish, Carassius auratus', 'toilet tissue, toilet paper, bathroom tissue']);
  const m = new ConvNeXtV2(makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 1000 }), { kernels: backend, seed: 1 });
  const k1000 = join(dir, 'k1000.safetensors');
  saveCheckpoint(k1000, { config: m.config, state: await m.stateDict() });
  const png = join(ROOT, 'docs', 'grn-ablation-cosine.png');
  const p = cli('predict', '--checkpoint', k1000, '--input-size', '64', '--top-k', '3', png, '--json');
  assert.equal(p.code, 0, p.stderr);
  const top = (JSON.parse(p.stdout.trim().split('\n').pop()!) as { predictions: { top: { index: number; label: string }[] }[] }).predictions[0].top;
  for (const t of top) assert.equal(t.label, IMAGENET_1K_CLASSES[t.index]);
  // The HF export carries them as id2label; transformers' LABEL_N placeholders read back as no names.
  const hf = join(dir, 'k1000-hf');
  assert.equal(cli('convert', '--checkpoint', k1000, '--to', 'hf', '--output', hf).code, 0);
  const cfg = JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')) as { id2label: Record<string, string>; label2id: Record<string, number> };
  assert.equal(cfg.id2label['0'], 'tench, Tinca tinca');
  assert.equal(cfg.id2label['999'], IMAGENET_1K_CLASSES[999]);
  const placeholders = { ...cfg, id2label: Object.fromEntries(Object.keys(cfg.id2label).map((i) => [i, `LABEL_${i}`])) };
  writeFileSync(join(hf, 'config.json'), JSON.stringify(placeholders));
  assert.equal(loadCheckpoint(hf).labels, undefined);
  // --labels FILE: one name a line, the count must match.
  const few = join(dir, 'few.txt');
  writeFileSync(few, 'a\nb\n');
  assertOneLineError(cli('predict', '--checkpoint', k1000, '--labels', few, png), /--labels .*few\.txt: 2 names for a model with 1000 classes/);
  const many = join(dir, 'many.txt');
  writeFileSync(many, Array.from({ length: 1000 }, (_, i) => `thing ${i}`).join('\n'));
  const q = cli('predict', '--checkpoint', k1000, '--input-size', '64', '--labels', many, png, '--json');
  assert.equal(q.code, 0, q.stderr);
  const qt = (JSON.parse(q.stdout.trim().split('\n').pop()!) as { predictions: { top: { index: number; label: string }[] }[] }).predictions[0].top;
  for (const t of qt) assert.equal(t.label, `thing ${t.index}`);
  // eval --json: per-class top-1 under the data set's names when the checkpoint has none.
  const e = cli('eval', '--checkpoint', ckpt, '--data', 'synthetic', '--limit', '16', '--input-size', '64', '--json');
  assert.equal(e.code, 0, e.stderr);
  const rec = JSON.parse(e.stdout.trim().split('\n').pop()!) as { labels: string; per_class: { label: string; images: number; top1: number }[] };
  assert.equal(rec.per_class.reduce((s, c) => s + c.images, 0), 16);
  for (const c of rec.per_class) assert.ok(typeof c.label === 'string' && c.top1 >= 0 && c.top1 <= 100);
});
