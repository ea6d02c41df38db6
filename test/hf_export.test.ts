// Hugging Face export (`convert --to hf`, exportCheckpoint): config.json and
// preprocessor_config.json against real hub files (test/fixtures/hf, see its README) and
// transformers' own defaults, and the exported folder loading back to the same logits.
// A key missing from config.json is not an error in transformers: it silently takes the
// default (layer_norm_eps 1e-12, image_size 224, mean/std 0.5, size 384, ...), so these tests
// check that every key transformers reads is written, with the right type and value.
// Run: node --import tsx --test test/hf_export.test.ts
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { exportCheckpoint, loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint_file.js';
import { type TensorData } from '../src/io/safetensors.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { bits, REF, relErr, SMALL_TIMM } from './helpers.js';
import { cpu } from './backend.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIX = path.join(ROOT, 'test', 'fixtures', 'hf');
const HF_DIR = path.join(REF, 'small_hf');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };
const readJson = (f: string): JsonObject => JSON.parse(fs.readFileSync(f, 'utf8')) as JsonObject;

/** A real hub config.json of a ConvNextV2ForImageClassification (transformers 4.33.3). */
const HUB_CONFIG = readJson(path.join(FIX, 'hub_convnextv2_tiny_config.json'));
/** facebook/convnextv2-base-22k-224's preprocessor_config.json. */
const FB_PRE = readJson(path.join(FIX, 'facebook_convnextv2_preprocessor_config.json'));
/** What save_pretrained (transformers 5.17) wrote for the small reference model. */
const SMALL_HF_CONFIG = readJson(path.join(HF_DIR, 'config.json'));
/** ConvNextV2Config / ConvNextImageProcessor __init__ defaults, from transformers' source. */
const DEFAULTS = readJson(path.join(FIX, 'transformers_defaults.json')) as {
  ConvNextV2Config: { init: JsonObject; computed: string[] };
  ConvNextImageProcessor: { init: JsonObject };
};

/**
 * Keys of the real config.json files that our export may leave out, and why that is safe:
 * none of them changes the model transformers builds or what it computes.
 */
const MAY_BE_ABSENT: Readonly<Record<string, string>> = {
  _name_or_path: 'the repo the model was loaded from (bookkeeping of save_pretrained)',
  transformers_version: 'bookkeeping of save_pretrained',
  torch_dtype: 'bookkeeping; weights load as stored (float32)',
  dtype: 'transformers 5 name of torch_dtype',
  problem_type: 'set by the Trainer when fine-tuning; inferred from the labels when absent',
  stage_names: 'recomputed by ConvNextV2Config.__init__ from depths (the file value is overwritten)',
  out_features: 'backbone outputs; absent means the last stage, checked below to be what the hub files hold',
  out_indices: 'backbone outputs; absent means the last stage, checked below to be what the hub files hold',
};

let tmp = '';
let small: LoadedCheckpoint;
let smallHfDir = '';
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convnextv2-hfexport-'));
  small = loadCheckpoint(SMALL_TIMM, { prefix: 'param.', allowUnexpected: true });
  smallHfDir = path.join(tmp, 'small-hf');
  exportCheckpoint(smallHfDir, small, { naming: 'hf' });
});
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

/** The JSON kind of a value: integers and other numbers apart, element kinds of arrays. */
function kind(v: Json | undefined): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `array<${[...new Set(v.map(kind))].join('|')}>`;
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Like kind(), but 0.0 / 1.0 (JSON floats read back as integers) count as numbers. */
const sameKind = (ours: Json | undefined, real: Json | undefined): boolean => {
  const norm = (s: string) => s.replace(/integer/g, 'number');
  return norm(kind(ours)) === norm(kind(real));
};

function hfFiles(dir: string): { config: JsonObject; pre: JsonObject } {
  return { config: readJson(path.join(dir, 'config.json')), pre: readJson(path.join(dir, 'preprocessor_config.json')) };
}

/** Every key of `real` is in `ours` with a value of the same JSON kind (MAY_BE_ABSENT aside). */
function assertHasKeysOf(ours: JsonObject, real: JsonObject, what: string): void {
  for (const [k, v] of Object.entries(real)) {
    if (!(k in ours)) {
      assert.ok(k in MAY_BE_ABSENT, `${what}: our config.json lacks '${k}' (the real one has ${JSON.stringify(v)}); transformers would use its default`);
      continue;
    }
    assert.ok(sameKind(ours[k], v), `${what}: '${k}' is ${kind(ours[k])} (${JSON.stringify(ours[k])}), the real file has ${kind(v)}`);
  }
}

function assertLabelMaps(config: JsonObject, names: readonly string[]): void {
  const id2label = config.id2label as JsonObject;
  const label2id = config.label2id as JsonObject;
  assert.equal(kind(id2label), 'object');
  assert.equal(kind(label2id), 'object');
  assert.deepEqual(Object.keys(id2label), names.map((_n, i) => String(i)), 'id2label keys are "0".."n-1" (strings, in order)');
  for (const [k, v] of Object.entries(id2label)) {
    assert.equal(typeof v, 'string', `id2label["${k}"] is a string`);
    assert.equal(v, names[Number(k)], `id2label["${k}"]`);
    assert.ok(Object.prototype.hasOwnProperty.call(label2id, v as string), `label2id has its own key ${JSON.stringify(v)}`);
    assert.equal(label2id[v as string], Number(k), `label2id[${JSON.stringify(v)}] inverts id2label`);
  }
  assert.equal(Object.keys(label2id).length, names.length, 'label2id has one entry per class');
  for (const [l, i] of Object.entries(label2id)) {
    assert.ok(Number.isSafeInteger(i), `label2id[${JSON.stringify(l)}] is an integer`);
    assert.equal(id2label[String(i)], l, `id2label[label2id[${JSON.stringify(l)}]]`);
  }
}

async function logits(ck: Pick<LoadedCheckpoint, 'config' | 'state'>, input: TensorData): Promise<Float32Array> {
  const m = new ConvNeXtV2(ck.config, { kernels: cpu });
  m.loadStateDict(ck.state);
  const out = await m.forward(input);
  assert.ok(out.logits);
  return out.logits.data;
}

test('config.json: every key of a real hub ConvNextV2 config and of save_pretrained\'s, with its type; the values transformers needs', async () => {
  const { config } = hfFiles(smallHfDir);
  assertHasKeysOf(config, HUB_CONFIG, 'vs the hub config.json');
  assertHasKeysOf(config, SMALL_HF_CONFIG, 'vs small_hf/config.json (transformers 5.17)');
  // Every ConvNextV2Config.__init__ argument is written, except the backbone outputs, whose
  // default (the last stage) is what the real files hold.
  for (const k of Object.keys(DEFAULTS.ConvNextV2Config.init)) {
    if (k === 'out_features' || k === 'out_indices') continue;
    assert.ok(k in config, `config.json lacks ConvNextV2Config's '${k}' (transformers would use ${JSON.stringify(DEFAULTS.ConvNextV2Config.init[k])})`);
  }
  for (const real of [HUB_CONFIG, SMALL_HF_CONFIG]) {
    assert.deepEqual(real.out_features, ['stage4']);
    assert.deepEqual(real.out_indices, [4]);
    assert.deepEqual(real.stage_names, ['stem', 'stage1', 'stage2', 'stage3', 'stage4']);
  }
  assert.ok(config.out_features === undefined || JSON.stringify(config.out_features) === '["stage4"]', 'out_features, if written, is the last stage');
  assert.ok(config.out_indices === undefined || JSON.stringify(config.out_indices) === '[4]', 'out_indices, if written, is the last stage');

  // Values that must be exactly these for transformers to build this model.
  assert.equal(config.model_type, 'convnextv2');
  assert.deepEqual(config.architectures, ['ConvNextV2ForImageClassification']);
  assert.equal(config.num_stages, 4);
  assert.equal(config.patch_size, 4);
  assert.equal(config.num_channels, 3);
  assert.equal(config.hidden_act, 'gelu');
  assert.equal(config.image_size, 224, 'no recorded input size: 224');
  assert.equal(config.initializer_range, 0.02);
  assert.equal(config.drop_path_rate, small.config.dropPathRate);
  assert.deepEqual(config.depths, [2, 2, 2, 2]);
  assert.deepEqual(config.hidden_sizes, [16, 32, 48, 64]);
  assert.equal(config.layer_norm_eps, small.config.headNormEps, 'layer_norm_eps is the final (head) norm eps');
  assert.equal(config.layer_norm_eps, 1e-6);
  assertLabelMaps(config, Array.from({ length: 10 }, (_v, i) => `LABEL_${i}`));

  // A backbone (no classifier): a ConvNextV2Model with the same keys, no label maps.
  const bbDir = path.join(tmp, 'bb-hf');
  const bb = new ConvNeXtV2({ ...small.config, numClasses: 0 }, { kernels: cpu });
  exportCheckpoint(bbDir, { config: bb.config, state: await bb.stateDict() }, { naming: 'hf' });
  const bbConfig = hfFiles(bbDir).config;
  assert.deepEqual(bbConfig.architectures, ['ConvNextV2Model']);
  const { id2label: _a, label2id: _b, ...hubNoLabels } = HUB_CONFIG;
  assertHasKeysOf(bbConfig, hubNoLabels, 'backbone vs the hub config.json');
  assert.deepEqual(Object.keys(bbConfig).sort(), Object.keys(config).filter((k) => k !== 'id2label' && k !== 'label2id').sort());
});

test('preprocessor_config.json: facebook\'s file for 224 px evaluation, every key transformers reads', () => {
  const { pre } = hfFiles(smallHfDir);
  // Byte-for-byte the same values as the official repo's processor (key order aside).
  assert.deepEqual(pre, FB_PRE);
  // Spelled out, so a failure says which value is off.
  assert.equal(pre.image_processor_type, 'ConvNextImageProcessor');
  assert.deepEqual(pre.size, { shortest_edge: 224 });
  assert.equal(pre.crop_pct, 0.875);
  assert.equal(pre.resample, 3, 'bicubic (PIL.Image.BICUBIC)');
  assert.deepEqual(pre.image_mean, [0.485, 0.456, 0.406]);
  assert.deepEqual(pre.image_std, [0.229, 0.224, 0.225]);
  assert.equal(pre.rescale_factor, 1 / 255);
  assert.equal(pre.do_resize, true);
  assert.equal(pre.do_rescale, true);
  assert.equal(pre.do_normalize, true);
  // Where transformers' default differs from ImageNet evaluation, leaving the key out would be wrong.
  for (const [k, dflt] of Object.entries(DEFAULTS.ConvNextImageProcessor.init)) {
    assert.ok(k in pre, `preprocessor_config.json lacks '${k}' (transformers' default ${JSON.stringify(dflt)})`);
    assert.ok(sameKind(pre[k], FB_PRE[k]), `'${k}' is ${kind(pre[k])}, facebook's is ${kind(FB_PRE[k])}`);
  }
});

test('a recorded input size becomes image_size and size.shortest_edge (CLI convert --to hf; 384 px: a warp)', () => {
  // One of our checkpoints trained at 160 px with crop 0.95 (metadata input_size / crop_pct).
  const ours = path.join(tmp, 'trained160.safetensors');
  saveCheckpoint(ours, { config: small.config, state: small.state, metadata: { input_size: '160', crop_pct: '0.95' } });
  const out = path.join(tmp, 'trained160-hf');
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'convert', '--checkpoint', ours, '--to', 'hf', '--output', out], {
    encoding: 'utf8', cwd: ROOT, env: { ...process.env, CONVNEXTV2_DEBUG: '' },
  });
  assert.equal(r.status, 0, r.stderr);
  const { config, pre } = hfFiles(out);
  assert.equal(config.image_size, 160);
  assert.deepEqual(pre.size, { shortest_edge: 160 });
  assert.equal(pre.crop_pct, 0.95);
  const dflt = hfFiles(smallHfDir);
  assert.deepEqual(Object.keys(config).sort(), Object.keys(dflt.config).sort(), 'the same keys as at 224 px');
  assert.deepEqual({ ...pre, size: FB_PRE.size, crop_pct: FB_PRE.crop_pct }, FB_PRE, 'only size and crop_pct differ from facebook\'s');
  assertHasKeysOf(config, HUB_CONFIG, 'trained at 160 px');
  // And it reads back as 160 px / 0.95.
  assert.deepEqual(loadCheckpoint(out).preprocessing, { inputSize: 160, cropPct: 0.95 });

  // 384 px (facebook/convnextv2-*-384): transformers warps to size x size, crop_pct unused.
  const d384 = path.join(tmp, 'p384-hf');
  exportCheckpoint(d384, small, { naming: 'hf', preprocessing: { inputSize: 384, cropPct: 1 } });
  const h384 = hfFiles(d384);
  assert.equal(h384.config.image_size, 384);
  assert.deepEqual(h384.pre.size, { shortest_edge: 384 });
});

test('id2label / label2id: string keys "0".."n-1", inverse maps, names kept (also names like __proto__)', () => {
  const names = ['cat', 'dog', '__proto__', 'constructor', 'toString', '7', 'hasOwnProperty', 'a "quoted" name', 'émigré', 'x y'];
  const dir = path.join(tmp, 'named-hf');
  exportCheckpoint(dir, small, { naming: 'hf', labels: names });
  const text = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
  const { config } = hfFiles(dir);
  assertLabelMaps(config, names);
  assert.match(text, /"__proto__": 2/, 'the __proto__ label is written as a key');
  assertHasKeysOf(config, HUB_CONFIG, 'named classes');
  // The hub fixture's maps follow the same rules (string ids; label2id its inverse).
  assertLabelMaps(HUB_CONFIG, ['1', '2', '3', '4']);
  assert.deepEqual(loadCheckpoint(dir).labels, names);
  // Labels of the wrong count are not used: transformers' placeholders instead.
  const dir2 = path.join(tmp, 'miscount-hf');
  exportCheckpoint(dir2, small, { naming: 'hf', labels: ['a', 'b'] });
  assertLabelMaps(hfFiles(dir2).config, Array.from({ length: 10 }, (_v, i) => `LABEL_${i}`));
});

test('the exported folder loads back to the same logits; a transformers folder re-exports to its own config values', async () => {
  const ref = readSafetensors(SMALL_TIMM);
  const input = ref.get('input.0.pixel_values')!;
  const back = loadCheckpoint(smallHfDir);
  assert.equal(back.naming, 'hf');
  assert.deepEqual(back.config, small.config);
  const got = await logits(back, input);
  assert.deepEqual(bits(got), bits(await logits(small, input)), 'bit-identical to the model that was exported');
  const e = relErr(got, ref.get('output.0.logits')!.data);
  assert.ok(e <= 1e-4, `timm reference logits: relative error ${e}`);

  // small_hf (save_pretrained, layer_norm_eps 1e-12) -> ours -> hf: config values as transformers wrote them.
  const hf = loadCheckpoint(HF_DIR);
  const dir = path.join(tmp, 'small-hf-again');
  exportCheckpoint(dir, hf, { naming: 'hf', labels: hf.labels });
  const { config } = hfFiles(dir);
  assertHasKeysOf(config, SMALL_HF_CONFIG, 're-exported small_hf');
  for (const [k, v] of Object.entries(SMALL_HF_CONFIG)) {
    if (k in MAY_BE_ABSENT) continue;
    assert.deepEqual(config[k], v, `re-exported config.json '${k}'`);
  }
  assert.equal(config.layer_norm_eps, 1e-12, 'the head norm eps of the transformers model survives');
  const expected = readSafetensors(path.join(HF_DIR, 'expected.safetensors'));
  const again = loadCheckpoint(dir);
  assert.equal(again.config.headNormEps, 1e-12);
  const e2 = relErr(await logits(again, expected.get('input.0.pixel_values')!), expected.get('output.0.logits')!.data);
  assert.ok(e2 <= 1e-4, `transformers reference logits after re-export: relative error ${e2}`);
});
