// Checkpoint interop (issue 3): official .pt and FCMAE checkpoints, Hugging Face directories,
// shards and pytorch_model.bin, timm, the convert / inspect commands end to end, lossless
// round trips, and the ONNX export run by onnxruntime-node against our logits.
// Run: node --import tsx --test test/interop.test.ts
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { timmUsesConvMlp, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { exportCheckpoint, loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint_file.js';
import { applyFcmaeTransform, mapFcmaeNames, toSparseKernel } from '../src/io/fcmae.js';
import { exportOnnx, onnxRoot } from '../src/io/onnx.js';
import { type TensorData } from '../src/io/safetensors.js';
import { openSafetensors, readSafetensors, writeSafetensors } from '../src/io/safetensors_file.js';
import { writeTorchCheckpoint } from '../src/io/torch_file.js';
import { openZipBuffer, ZipWriter } from '../src/io/zip.js';
import { makeConfig } from '../src/model/config.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { assertOneLineError, assertSameTensor, bits, REF, relErr, SMALL_TIMM, smallTimmParams } from './helpers.js';
import { cpu } from './backend.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SMALL_PT = path.join(REF, 'small_official.pt');
const HF_DIR = path.join(REF, 'small_hf');
const FCMAE_PT = path.join(REF, 'fcmae_small_official.pt');
const FCMAE_ST = path.join(REF, 'fcmae_small.safetensors');

let tmp = '';
before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convnextv2-interop-')); });
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

const ref = readSafetensors(SMALL_TIMM);

async function logitsOf(ck: Pick<LoadedCheckpoint, 'config' | 'state'>, input: TensorData): Promise<Float32Array> {
  const m = new ConvNeXtV2(ck.config, { kernels: cpu });
  m.loadStateDict(ck.state);
  const out = await m.forward(input);
  assert.ok(out.logits);
  assert.deepEqual(out.logits.shape, [input.shape[0], ck.config.numClasses]);
  return out.logits.data;
}

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), ...args], {
    encoding: 'utf8', cwd: ROOT, env: { ...process.env, CONVNEXTV2_DEBUG: '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertCliError(r: { code: number | null; stderr: string }, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0], /^convnextv2: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

// ---------------------------------------------------------------------------------------------
// Reading the official and Hugging Face fixtures

test('small_official.pt gives small_timm\'s logits (both inputs)', async () => {
  const ck = loadCheckpoint(SMALL_PT);
  assert.equal(ck.format, 'official');
  assert.equal(ck.container, 'torch');
  assert.equal(ck.stateDictKey, 'model');
  assert.equal(ck.config.numClasses, 10);
  assert.equal(ck.backbone, false);
  assert.deepEqual(ck.initialised, []);
  // Same weights as the timm fixture, bit for bit.
  for (const [k, t] of smallTimmParams()) assertSameTensor(ck.state.get(k), t, k);
  for (const i of [0, 1]) {
    const err = relErr(await logitsOf(ck, ref.get(`input.${i}.pixel_values`)!), ref.get(`output.${i}.logits`)!.data);
    assert.ok(err <= 1e-4, `input ${i}: relative error ${err}`);
  }
});

test('small_hf/ gives its expected logits; its final norm uses layer_norm_eps 1e-12', async () => {
  const ck = loadCheckpoint(HF_DIR);
  assert.equal(ck.format, 'hf');
  assert.equal(ck.config.headNormEps, 1e-12);
  // Its config.json's id2label holds transformers' placeholders (LABEL_0, ...): no class names.
  assert.equal(ck.labels, undefined);
  const exp = readSafetensors(path.join(HF_DIR, 'expected.safetensors'));
  const err = relErr(await logitsOf(ck, exp.get('input.0.pixel_values')!), exp.get('output.0.logits')!.data);
  assert.ok(err <= 1e-4, `relative error ${err}`);
});

test('HF sharded index and pytorch_model.bin load like model.safetensors (config.json applied)', () => {
  const base = loadCheckpoint(HF_DIR);
  const r = openSafetensors(path.join(HF_DIR, 'model.safetensors'));
  const names = r.names();
  const all = new Map(names.map((n) => [n, r.getTensor(n)]));
  r.close();
  const cfg = fs.readFileSync(path.join(HF_DIR, 'config.json'));
  // Two safetensors shards + index.
  const sharded = path.join(tmp, 'hf-sharded');
  fs.mkdirSync(sharded);
  fs.writeFileSync(path.join(sharded, 'config.json'), cfg);
  const half = Math.floor(names.length / 2);
  const shards = [names.slice(0, half), names.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((list, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(path.join(sharded, file), list.map((n) => [n, all.get(n)!] as const), { format: 'pt' });
    for (const n of list) weightMap[n] = file;
  });
  fs.writeFileSync(path.join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 664000 }, weight_map: weightMap }));
  // pytorch_model.bin: a torch.save zip of the bare state dict.
  const bin = path.join(tmp, 'hf-bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'config.json'), cfg);
  writeTorchCheckpoint(path.join(bin, 'pytorch_model.bin'), all);
  for (const [dir, container] of [[sharded, 'safetensors-sharded'], [bin, 'torch']] as const) {
    const ck = loadCheckpoint(dir);
    assert.equal(ck.format, 'hf', dir);
    assert.equal(ck.container, container);
    assert.equal(ck.config.headNormEps, 1e-12, 'config.json read');
    assert.deepEqual(ck.labels, base.labels);
    for (const [k, t] of base.state) assertSameTensor(ck.state.get(k), t, `${container}: ${k}`);
  }
  // Hostile or broken indexes: one-line errors.
  const idx = path.join(sharded, 'model.safetensors.index.json');
  const bad = (wm: unknown, re: RegExp) => {
    fs.writeFileSync(idx, JSON.stringify({ weight_map: wm }));
    assertOneLineError(() => loadCheckpoint(sharded), re);
  };
  bad({ [names[0]]: '../small_official.pt' }, /not a plain file name/);
  bad({ [names[0]]: '/etc/passwd' }, /not a plain file name/);
  bad({ [names[0]]: 'model-00001-of-00002.safetensors', nope: 'model-00001-of-00002.safetensors' }, /lacks tensor nope/);
  bad({ [names[0]]: 'missing.safetensors' }, /missing\.safetensors: no such file/);
  bad([], /no "weight_map" object/);
  fs.writeFileSync(idx, '{"weight_map": ');
  assertOneLineError(() => loadCheckpoint(sharded), /not valid JSON/);
});

test('official .pt with model and model_ema: ema chooses model_ema; records kept; errors', () => {
  const params = loadCheckpoint(SMALL_PT);
  // Build {"model": sd, "model_ema": sd * 2, "epoch": 7} in official names.
  const exported = path.join(tmp, 'both.pt');
  const sd = new Map([...loadCheckpointAsOfficial(params)]);
  const ema = new Map([...sd].map(([k, t]) => [k, { shape: t.shape, data: t.data.map((v) => v * 2) }]));
  writeTorchCheckpoint(exported, { model: sd, model_ema: ema, epoch: 7, optimizer: { state: new Map(), param_groups: [] } });
  const plain = loadCheckpoint(exported);
  const withEma = loadCheckpoint(exported, { ema: true });
  assert.equal(plain.stateDictKey, 'model');
  assert.equal(withEma.stateDictKey, 'model_ema');
  assert.deepEqual(plain.records?.epoch, 7);
  assert.ok(plain.records && 'model_ema' in plain.records && 'optimizer' in plain.records);
  const w = 'stages.2.blocks.1.mlp.fc1.weight';
  assertSameTensor(plain.state.get(w), params.state.get(w)!, w);
  assert.equal(withEma.state.get(w)!.data[5], params.state.get(w)!.data[5] * 2);
  assertOneLineError(() => loadCheckpoint(SMALL_PT, { ema: true }), /holds no EMA weights/);
  assertOneLineError(() => loadCheckpoint(path.join(HF_DIR, 'model.safetensors'), { ema: true }), /EMA weights are read from/);
});

/** Canonical -> official names via an official safetensors export. */
function loadCheckpointAsOfficial(ck: LoadedCheckpoint): Map<string, TensorData> {
  const file = path.join(tmp, `official-${Math.random().toString(36).slice(2)}.safetensors`);
  exportCheckpoint(file, ck, { naming: 'official' });
  return readSafetensors(file);
}

// ---------------------------------------------------------------------------------------------
// Official FCMAE pre-training checkpoints

test('sparse kernel reordering follows remap_checkpoint_keys: k = col*K + row (hand-made kernels)', () => {
  // A strided view with torch semantics, to replay permute / reshape / transpose literally.
  interface View { shape: number[]; strides: number[]; data: Float32Array }
  const contiguous = (shape: number[], data: Float32Array): View => {
    const strides = shape.map((_d, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    return { shape, strides, data };
  };
  const permute = (v: View, perm: number[]): View => ({ shape: perm.map((p) => v.shape[p]), strides: perm.map((p) => v.strides[p]), data: v.data });
  const materialise = (v: View): Float32Array => {
    const n = v.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    const idx = new Array<number>(v.shape.length).fill(0);
    for (let o = 0; o < n; o++) {
      out[o] = v.data[idx.reduce((a, x, d) => a + x * v.strides[d], 0)];
      for (let d = v.shape.length - 1; d >= 0; d--) { if (++idx[d] < v.shape[d]) break; idx[d] = 0; }
    }
    return out;
  };
  const reshape = (v: View, shape: number[]): View => contiguous(shape, materialise(v));
  const transpose = (v: View, a: number, b: number): View => {
    const perm = v.shape.map((_d, i) => i);
    [perm[a], perm[b]] = [perm[b], perm[a]];
    return permute(v, perm);
  };
  // Depthwise: v [K*K, C] -> v.permute(1, 0).reshape(C, 1, K, K).transpose(3, 2).
  for (const K of [3, 7]) {
    const C = 5;
    const src = Float32Array.from({ length: K * K * C }, (_v, i) => i + 0.25);
    const official = materialise(transpose(reshape(permute(contiguous([K * K, C], src), [1, 0]), [C, 1, K, K]), 3, 2));
    const ours = applyFcmaeTransform({ transform: 'dwconv', shape: [C, 1, K, K], kernel: K }, src);
    assert.deepEqual(bits(ours), bits(official), `depthwise K=${K}`);
    // Spelled out: W[c, 0, row, col] = kernel[col*K + row, c].
    for (const [c, r, q] of [[0, 0, 1], [2, 1, 0], [4, K - 1, 2]]) assert.equal(ours[c * K * K + r * K + q], src[(q * K + r) * C + c]);
    const back = toSparseKernel({ shape: [C, 1, K, K], data: ours }, true);
    assert.deepEqual(back.shape, [K * K, C]);
    assert.deepEqual(bits(back.data), bits(src));
  }
  // Standard: v [K*K, Cin, Cout] -> v.permute(2, 1, 0).reshape(Cout, Cin, K, K).transpose(3, 2).
  const K = 2;
  const Cin = 3;
  const Cout = 4;
  const src = Float32Array.from({ length: K * K * Cin * Cout }, (_v, i) => -i - 0.5);
  const official = materialise(transpose(reshape(permute(contiguous([K * K, Cin, Cout], src), [2, 1, 0]), [Cout, Cin, K, K]), 3, 2));
  const ours = applyFcmaeTransform({ transform: 'conv', shape: [Cout, Cin, K, K], kernel: K }, src);
  assert.deepEqual(bits(ours), bits(official));
  assert.equal(ours[((1 * Cin + 2) * K + 0) * K + 1], src[((1 * K + 0) * Cin + 2) * Cout + 1]);
  assert.deepEqual(bits(toSparseKernel({ shape: [Cout, Cin, K, K], data: ours }, false).data), bits(src));
  // Names, as remap_checkpoint_keys: encoder. dropped, ln / linear levels dropped, kernel -> weight.
  const m = mapFcmaeNames([
    ['encoder.stages.1.0.dwconv.kernel', [49, 32]], ['encoder.stages.1.0.dwconv.bias', [1, 32]],
    ['encoder.stages.1.0.norm.ln.weight', [32]], ['encoder.stages.1.0.pwconv1.linear.weight', [128, 32]],
    ['encoder.stages.1.0.grn.gamma', [1, 128]], ['encoder.downsample_layers.2.1.kernel', [4, 32, 48]],
    ['encoder.downsample_layers.2.0.ln.bias', [32]], ['decoder.0.grn.beta', [1, 1, 1, 8]], ['mask_token', [1, 8, 1, 1]], ['other', [1]],
  ], '', 'test');
  assert.deepEqual(m.encoder.map((e) => [e.name, e.shape, e.transform]), [
    ['stages.1.0.dwconv.weight', [32, 1, 7, 7], 'dwconv'], ['stages.1.0.dwconv.bias', [32], 'none'],
    ['stages.1.0.norm.weight', [32], 'none'], ['stages.1.0.pwconv1.weight', [128, 32], 'none'],
    ['stages.1.0.grn.gamma', [1, 1, 1, 128], 'none'], ['downsample_layers.2.1.weight', [48, 32, 2, 2], 'conv'],
    ['downsample_layers.2.0.bias', [32], 'none'],
  ]);
  assert.deepEqual(m.decoder.map((e) => [e.name, e.shape]), [['fcmae.decoder.0.grn.beta', [8]], ['fcmae.mask_token', [1, 8, 1, 1]]]);
  assert.deepEqual(m.unused, ['other']);
});

test('fcmae_small_official.pt loads as a backbone + FCMAE parts equal to fcmae_small.safetensors after mapping', async () => {
  const pt = loadCheckpoint(FCMAE_PT, { extra: true });
  const st = loadCheckpoint(FCMAE_ST, { prefix: 'param.', allowUnexpected: true, extra: true });
  for (const ck of [pt, st]) {
    assert.equal(ck.format, 'fcmae');
    assert.equal(ck.naming, 'official');
    assert.equal(ck.backbone, true);
    assert.equal(ck.config.numClasses, 0);
    assert.deepEqual(ck.config.depths, [2, 2, 2, 2]);
    assert.deepEqual(ck.config.dims, [16, 32, 48, 64]);
    assert.deepEqual(ck.initialised, ['head.norm.weight', 'head.norm.bias']);
    assert.ok(ck.state.get('head.norm.weight')!.data.every((v) => v === 1));
    assert.ok(ck.state.get('head.norm.bias')!.data.every((v) => v === 0));
    assert.deepEqual({ ...ck.fcmae, normPixLoss: undefined }, { decoderDim: 32, decoderDepth: 1, patchSize: 32, decoderKernelSize: 7, maskRatio: 0.6, inputSize: 128, normPixLoss: undefined });
  }
  assert.equal(st.fcmae?.normPixLoss, true, 'from the safetensors metadata');
  assert.equal(pt.records?.epoch, 799);
  assert.equal((pt.records?.args as Record<string, unknown>).__class__, 'argparse.Namespace');
  // Encoder and decoder parts: bit-identical between the two files, in dense layouts.
  assert.deepEqual([...pt.state.keys()], [...st.state.keys()]);
  for (const [k, t] of st.state) assertSameTensor(pt.state.get(k), t, k);
  assert.deepEqual(pt.extraNames, st.extraNames);
  assert.equal(pt.extra?.size, 15);
  for (const [k, t] of st.extra!) assertSameTensor(pt.extra!.get(k), t, k);
  assert.deepEqual(pt.state.get('stages.1.blocks.0.conv_dw.weight')!.shape, [32, 1, 7, 7]);
  assert.deepEqual(pt.state.get('stages.3.downsample.1.weight')!.shape, [64, 48, 2, 2]);
  assert.deepEqual(pt.extra!.get('fcmae.decoder.0.grn.gamma')!.shape, [128]);
  assert.deepEqual(pt.extra!.get('fcmae.pred.weight')!.shape, [3072, 32, 1, 1]);
  // Values against the raw sparse tensors of the fixture, by the documented rule.
  const raw = readSafetensors(FCMAE_ST);
  const kern = raw.get('param.encoder.stages.1.0.dwconv.kernel')!;
  const dw = pt.state.get('stages.1.blocks.0.conv_dw.weight')!.data;
  for (const [c, r, q] of [[0, 0, 0], [3, 1, 5], [31, 6, 2]]) assert.equal(dw[c * 49 + r * 7 + q], kern.data[(q * 7 + r) * 32 + c]);
  const ds = raw.get('param.encoder.downsample_layers.2.1.kernel')!; // [4, 32, 48]
  const w = pt.state.get('stages.2.downsample.1.weight')!.data; // [48, 32, 2, 2]
  for (const [o, i, r, q] of [[0, 0, 0, 1], [47, 31, 1, 0], [5, 7, 1, 1]]) assert.equal(w[((o * 32 + i) * 2 + r) * 2 + q], ds.data[((q * 2 + r) * 32 + i) * 48 + o]);
  assertSameTensor(pt.state.get('stages.0.blocks.1.mlp.grn.weight'), { shape: [64], data: raw.get('param.encoder.stages.0.1.grn.gamma')!.data }, 'grn');
  assertSameTensor(pt.state.get('stages.1.downsample.1.bias'), { shape: [32], data: raw.get('param.encoder.downsample_layers.1.1.bias')!.data }, 'bias');
  // The backbone runs; saved as ours it keeps the decoder and the 'initialised' note.
  const m = new ConvNeXtV2(pt.config, { kernels: cpu });
  m.loadStateDict(pt.state);
  const y = await m.forward(raw.get('input.pixel_values')!);
  assert.equal(y.logits, null);
  assert.deepEqual(y.preLogits.shape, [2, 64]);
  const ours = path.join(tmp, 'fcmae-ours.safetensors');
  saveCheckpoint(ours, { config: pt.config, state: pt.state, extra: pt.extra, initialised: pt.initialised, fcmae: pt.fcmae });
  const back = loadCheckpoint(ours, { extra: true });
  assert.equal(back.format, 'convnextv2');
  assert.deepEqual(back.fcmae, pt.fcmae);
  assert.deepEqual(back.initialised, pt.initialised);
  for (const [k, t] of pt.extra!) assertSameTensor(back.extra!.get(k), t, k);
  // Broken FCMAE files: a decoder part missing, a kernel of the wrong size.
  const parts = new Map([...raw].filter(([k]) => k.startsWith('param.')).map(([k, t]) => [k.slice(6), t]));
  const noPred = new Map([...parts].filter(([k]) => k !== 'pred.bias'));
  writeSafetensors(path.join(tmp, 'nopred.safetensors'), noPred);
  assertOneLineError(() => loadCheckpoint(path.join(tmp, 'nopred.safetensors')), /FCMAE checkpoint lacks fcmae\.pred\.bias/);
  const badKernel = new Map(parts);
  badKernel.set('encoder.stages.0.0.dwconv.kernel', { shape: [48, 16], data: new Float32Array(48 * 16) });
  writeSafetensors(path.join(tmp, 'badkernel.safetensors'), badKernel);
  assertOneLineError(() => loadCheckpoint(path.join(tmp, 'badkernel.safetensors')), /encoder\.stages\.0\.0\.dwconv\.kernel has shape \[48,16\]: 48 kernel offsets is not a square/);
});

// ---------------------------------------------------------------------------------------------
// Round trips and exports

test('timm -> hf -> official (.pt) -> ours -> timm is bit-exact (library and CLI)', () => {
  const params = smallTimmParams();
  const timmIn = path.join(tmp, 'rt-timm.safetensors');
  writeSafetensors(timmIn, params);
  assert.equal(timmUsesConvMlp({ depths: [2, 2, 2, 2], dims: [16, 32, 48, 64] }), false, 'custom sizes: Linear, timm\'s default');
  assert.equal(timmUsesConvMlp(makeConfig('nano')), true);
  assert.equal(timmUsesConvMlp(makeConfig('tiny')), false);
  const steps: Array<[string, string]> = [['hf', 'rt-hf'], ['official', 'rt-official.pt'], ['ours', 'rt-ours.safetensors'], ['timm', 'rt-back.safetensors']];
  let prev = timmIn;
  for (const [to, name] of steps) {
    const out = path.join(tmp, name);
    const r = cli('convert', '--checkpoint', prev, '--to', to, '--output', out, '--json');
    assert.equal(r.code, 0, r.stderr);
    const rec = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(rec.to, to);
    assert.equal(rec.verified, true);
    prev = out;
  }
  // The HF directory is what transformers expects.
  const cfg = JSON.parse(fs.readFileSync(path.join(tmp, 'rt-hf', 'config.json'), 'utf8'));
  assert.equal(cfg.layer_norm_eps, 1e-6);
  assert.equal(cfg.model_type, 'convnextv2');
  assert.deepEqual(cfg.architectures, ['ConvNextV2ForImageClassification']);
  assert.equal(Object.keys(cfg.id2label).length, 10);
  const pre = JSON.parse(fs.readFileSync(path.join(tmp, 'rt-hf', 'preprocessor_config.json'), 'utf8'));
  assert.equal(pre.image_processor_type, 'ConvNextImageProcessor');
  assert.equal(pre.crop_pct, 0.875);
  assert.deepEqual(pre.size, { shortest_edge: 224 });
  assert.deepEqual(pre.image_mean, [0.485, 0.456, 0.406]);
  assert.ok(readSafetensors(path.join(tmp, 'rt-hf', 'model.safetensors')).has('convnextv2.encoder.stages.0.layers.0.grn.weight'));
  // The official .pt: {"model": state dict}, GRN as [1,1,1,C], byte-compatible with small_official.pt.
  const pt = path.join(tmp, 'rt-official.pt');
  assert.deepEqual(fs.readFileSync(pt).subarray(0, 2), Buffer.from('PK'));
  const official = loadCheckpoint(pt);
  assert.equal(official.stateDictKey, 'model');
  // Back in timm form: same names, shapes (Linear MLP) and bits as the input.
  const back = readSafetensors(path.join(tmp, 'rt-back.safetensors'));
  assert.equal(back.size, params.size);
  for (const [k, t] of params) assertSameTensor(back.get(k), t, k);
  // --format safetensors for official; --conv-mlp for timm.
  const ost = path.join(tmp, 'rt-official.safetensors');
  assert.equal(cli('convert', '--checkpoint', timmIn, '--to', 'official', '--format', 'safetensors', '--output', ost).code, 0);
  assert.deepEqual(readSafetensors(ost).get('stages.0.0.grn.gamma')?.shape, [1, 1, 1, 64]);
  const conv = path.join(tmp, 'rt-conv.safetensors');
  assert.equal(cli('convert', '--checkpoint', ost, '--to', 'timm', '--conv-mlp', '--output', conv).code, 0);
  assert.deepEqual(readSafetensors(conv).get('stages.0.blocks.0.mlp.fc1.weight')?.shape, [64, 16, 1, 1]);
  for (const [k, t] of loadCheckpoint(conv).state) assertSameTensor(t, loadCheckpoint(timmIn).state.get(k)!, k);
});

test('HF export of a backbone is a bare ConvNextV2Model; official export of an FCMAE encoder loads back', () => {
  const fc = loadCheckpoint(FCMAE_PT);
  const dir = path.join(tmp, 'bb-hf');
  exportCheckpoint(dir, fc, { naming: 'hf' });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.deepEqual(cfg.architectures, ['ConvNextV2Model']);
  assert.equal(cfg.id2label, undefined);
  const names = openSafetensors(path.join(dir, 'model.safetensors')).names();
  assert.ok(names.includes('embeddings.patch_embeddings.weight') && names.includes('layernorm.weight'));
  const back = loadCheckpoint(dir);
  assert.equal(back.config.numClasses, 0);
  for (const [k, t] of fc.state) assertSameTensor(back.state.get(k), t, k);
  const pt = path.join(tmp, 'bb.pt');
  exportCheckpoint(pt, fc, { naming: 'official', container: 'torch' });
  const b2 = loadCheckpoint(pt);
  assert.equal(b2.format, 'official');
  assert.ok(!b2.state.has('head.fc.weight'));
  for (const [k, t] of fc.state) assertSameTensor(b2.state.get(k), t, k);
});

type Ort = typeof import('onnxruntime-node');
async function loadOrt(): Promise<Ort | undefined> {
  try {
    return await import('onnxruntime-node');
  } catch {
    return undefined;
  }
}

test('ONNX export of small_timm run by onnxruntime-node matches our logits (64x64 and 96x128)', async (t) => {
  const ort = await loadOrt();
  if (!ort) {
    t.skip('onnxruntime-node is not installed');
    return;
  }
  const ck = loadCheckpoint(SMALL_TIMM, { prefix: 'param.', allowUnexpected: true });
  const run = async (file: string, input: TensorData, output: string): Promise<Float32Array> => {
    const sess = await ort.InferenceSession.create(file);
    try {
      assert.deepEqual(sess.inputNames, ['pixel_values']);
      assert.deepEqual(sess.outputNames, [output]);
      const r = await sess.run({ pixel_values: new ort.Tensor('float32', input.data, input.shape) });
      return r[output].data as Float32Array;
    } finally {
      await sess.release();
    }
  };
  const file = path.join(tmp, 'small.onnx');
  assert.deepEqual(exportOnnx(file, ck), [file]);
  // The file decodes with the schema: opset 17, dynamic batch / height / width.
  const Model = onnxRoot().lookupType('onnx.ModelProto');
  const msg = Model.toObject(Model.decode(fs.readFileSync(file)), { longs: Number }) as {
    opset_import: Array<{ version: number }>; graph: { input: Array<{ name: string; type: { tensor_type: { shape: { dim: Array<{ dim_param?: string; dim_value?: number }> } } } }>; node: Array<{ op_type: string }> };
  };
  assert.equal(msg.opset_import[0].version, 17);
  assert.deepEqual(msg.graph.input[0].type.tensor_type.shape.dim, [{ dim_param: 'batch' }, { dim_value: 3 }, { dim_param: 'height' }, { dim_param: 'width' }]);
  const ops = new Set(msg.graph.node.map((n) => n.op_type));
  for (const op of ['Conv', 'LayerNormalization', 'MatMul', 'Erf', 'ReduceL2', 'ReduceMean', 'Gemm']) assert.ok(ops.has(op), op);
  for (const i of [0, 1]) {
    const x = ref.get(`input.${i}.pixel_values`)!;
    const ours = await logitsOf(ck, x);
    const onnx = await run(file, x, 'logits');
    const err = relErr(onnx, ours);
    assert.ok(err <= 1e-4, `input ${i}: ONNX vs ours ${err}`);
    assert.ok(relErr(onnx, ref.get(`output.${i}.logits`)!.data) <= 1e-4);
  }
  // Opset 18 (axes as inputs) with external data.
  const ext = path.join(tmp, 'small-ext.onnx');
  assert.deepEqual(exportOnnx(ext, ck, { opset: 18, externalData: true }), [ext, `${ext}.data`]);
  assert.ok(fs.statSync(ext).size < 100_000, 'weights are outside');
  const x1 = ref.get('input.1.pixel_values')!;
  assert.ok(relErr(await run(ext, x1, 'logits'), await logitsOf(ck, x1)) <= 1e-4);
  // A backbone (the FCMAE encoder) exports pre_logits.
  const fc = loadCheckpoint(FCMAE_PT);
  const bb = path.join(tmp, 'backbone.onnx');
  exportOnnx(bb, fc);
  const m = new ConvNeXtV2(fc.config, { kernels: cpu });
  m.loadStateDict(fc.state);
  const x0 = ref.get('input.0.pixel_values')!;
  assert.ok(relErr(await run(bb, x0, 'pre_logits'), (await m.forward(x0)).preLogits.data) <= 1e-4);
});

// ---------------------------------------------------------------------------------------------
// The commands end to end

test('convert and inspect: FCMAE to ours, official .pt to onnx, inspect text and --json, one-line errors', () => {
  const ours = path.join(tmp, 'cli-fcmae.safetensors');
  let r = cli('convert', '--checkpoint', FCMAE_PT, '--to', 'ours', '--output', ours);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /head\.norm\.weight, head\.norm\.bias not in the input/);
  const st = readSafetensors(ours);
  assert.deepEqual(st.get('fcmae.decoder.0.grn.gamma')?.shape, [128]);
  const onnx = path.join(tmp, 'cli.onnx');
  r = cli('convert', '--checkpoint', SMALL_PT, '--to', 'onnx', '--output', onnx, '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!).files, [onnx]);
  assert.ok(fs.statSync(onnx).size > 600_000);
  r = cli('inspect', '--checkpoint', ours);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^format: +convnextv2/m);
  assert.match(r.stdout, /^fcmae: +decoder dim 32, depth 1, patch 32/m);
  r = cli('inspect', '--checkpoint', FCMAE_PT, '--json');
  assert.equal(r.code, 0, r.stderr);
  const rec = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(rec.format, 'fcmae');
  assert.equal(rec.container, 'torch');
  assert.equal(rec.params, 165440);
  assert.equal(rec.numClasses, 0);
  assert.equal(rec.records.epoch, 799);
  assert.equal(rec.records.args.mask_ratio, 0.6);
  assert.equal(rec.extraTensors['fcmae.'], 15);
  r = cli('inspect', '--checkpoint', HF_DIR);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^classes: +10$/m);
  assert.match(r.stdout, /head norm eps 1e-12/);
  r = cli('inspect', '--checkpoint', SMALL_PT, '--json');
  assert.equal(r.code, 0, r.stderr);
  const small = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.deepEqual([small.format, small.stateDictKey, small.params, small.numClasses, small.model], ['official', 'model', 166090, 10, null]);

  // Bad input: one line, exit 1; bad usage: exit 2.
  assertCliError(cli('convert', '--checkpoint', path.join(tmp, 'missing.pt'), '--to', 'ours', '--output', path.join(tmp, 'x.safetensors')), 1, /missing\.pt: no such file/);
  assertCliError(cli('inspect', '--checkpoint', path.join(tmp, 'missing')), 1, /missing: no such file/);
  assertCliError(cli('convert', '--checkpoint', SMALL_PT, '--to', 'keras', '--output', path.join(tmp, 'x')), 2, /--to must be one of/);
  assertCliError(cli('convert', '--checkpoint', SMALL_PT, '--to', 'hf', '--format', 'pt', '--output', path.join(tmp, 'x')), 2, /--format pt does not apply to --to hf/);
  assertCliError(cli('convert', '--checkpoint', SMALL_PT, '--to', 'ours', '--output', tmp), 1, /is a directory/);
  assertCliError(cli('convert', '--checkpoint', SMALL_PT, '--to', 'ours', '--output', path.join(tmp, 'x.safetensors'), '--ema'), 1, /holds no EMA weights/);
  const truncated = path.join(tmp, 'truncated.pt');
  fs.writeFileSync(truncated, fs.readFileSync(SMALL_PT).subarray(0, 300_000));
  assertCliError(cli('inspect', '--checkpoint', truncated), 1, /truncated\.pt/);
  // A storage missing from the zip, and one shorter than its tensor.
  const zr = openZipBuffer(fs.readFileSync(SMALL_PT), 'small_official.pt');
  const rebuilt = (edit: (name: string, data: Uint8Array) => Uint8Array | null): Buffer => {
    const parts: Uint8Array[] = [];
    const w = new ZipWriter((b) => parts.push(b.slice()));
    for (const e of zr.entries) {
      const d = edit(e.name, zr.read(e));
      if (d) w.add(e.name, d);
    }
    w.finish();
    return Buffer.concat(parts);
  };
  const noStorage = path.join(tmp, 'nostorage.pt');
  fs.writeFileSync(noStorage, rebuilt((n, d) => (n === 'archive/data/3' ? null : d)));
  assertCliError(cli('convert', '--checkpoint', noStorage, '--to', 'hf', '--output', path.join(tmp, 'nostorage-hf')), 1, /nostorage\.pt: storage data\/3 is missing from the archive/);
  const shortStorage = path.join(tmp, 'short.pt');
  fs.writeFileSync(shortStorage, rebuilt((n, d) => (n === 'archive/data/5' ? d.subarray(0, d.length - 4) : d)));
  assertCliError(cli('inspect', '--checkpoint', shortStorage), 1, /short\.pt: storage data\/5 has \d+ bytes, tensor needs \d+/);
  assert.ok(!fs.existsSync(path.join(tmp, 'nostorage-hf')));
  // A .pt whose pickle calls os.system: refused before anything runs.
  const marker = path.join(tmp, 'pwned');
  const cmd = `touch ${marker}`;
  const pkl = Buffer.from(`\x80\x02cos\nsystem\nX${String.fromCharCode(cmd.length, 0, 0, 0)}${cmd}\x85R.`, 'latin1');
  const chunks: Uint8Array[] = [];
  const zw = new ZipWriter((b) => chunks.push(b.slice()));
  zw.add('archive/data.pkl', pkl);
  zw.add('archive/version', Buffer.from('3\n'));
  zw.finish();
  const evil = path.join(tmp, 'evil.pt');
  fs.writeFileSync(evil, Buffer.concat(chunks));
  for (const args of [['inspect', '--checkpoint', evil], ['convert', '--checkpoint', evil, '--to', 'onnx', '--output', path.join(tmp, 'evil.onnx')]]) {
    assertCliError(cli(...args), 1, /evil\.pt: data\.pkl: refused global os\.system/);
  }
  assert.ok(!fs.existsSync(marker), 'the command ran');
  assert.ok(!fs.existsSync(path.join(tmp, 'evil.onnx')));
});
