// The recipe a user relies on, pinned against the official code (facebookresearch/ConvNeXt-V2:
// main_finetune.py, main_pretrain.py, optim_factory.py, engine_*.py, datasets.py; timm 0.3.2's
// add_weight_decay, Mixup, ModelEma, drop_path). Each test says which official line it pins.
// The expected values are written out here, or derived from the official names and shapes in
// the reference checkpoints (test/fixtures/reference), never from the code under test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from '../src/cli/args.js';
import { finetune, finetuneSettings, RECIPES } from '../src/cli/finetune.js';
import { pretrain, pretrainSettings } from '../src/cli/pretrain.js';
import { openDataset } from '../src/data/dataset.js';
import { DataLoader } from '../src/data/loader.js';
import { cutmixBox, Mixup } from '../src/data/mixup.js';
import { parseRandAugment, RAND_INCREASING_TRANSFORMS } from '../src/data/randaugment.js';
import {
  centerCrop, compileTransform, evalResize, evalTransform, hflip, IMAGENET_MEAN, IMAGENET_STD, randomErasing,
  randomResizedCrop, randomResizedCropParams, resize, resizeShortSide, toNormalizedCHW,
} from '../src/data/transforms.js';
import { randAugment } from '../src/data/randaugment.js';
import type { Image } from '../src/data/image.js';
import { FCMAE, FCMAE_DEFAULTS } from '../src/fcmae/fcmae.js';
import { detectFcmae, mapFcmaeNames } from '../src/io/fcmae.js';
import { planCanonical, toCanonical } from '../src/io/checkpoint.js';
import { loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint_file.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { findStateDict } from '../src/io/torch.js';
import { readTorchCheckpoint } from '../src/io/torch_file.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { Block } from '../src/model/block.js';
import { makeConfig, modelFromFlags, type ConvNeXtV2Config } from '../src/model/config.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { Arena } from '../src/nn/arena.js';
import { Param } from '../src/nn/param.js';
import { Rng } from '../src/rng.js';
import { ADAMW_DEFAULTS, AdamW } from '../src/train/adamw.js';
import { ModelEma } from '../src/train/ema.js';
import { FinetuneEngine } from '../src/train/finetune_engine.js';
import { finetuneParamGroups, pretrainParamGroups } from '../src/train/param_groups.js';
import type { TensorData } from '../src/io/safetensors.js';
import { REF, smallTimmParams } from './helpers.js';

const CLI = new URL('../dist/cli/main.js', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'cnx-recipe-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const sum = (a: readonly number[]) => a.reduce((x, y) => x + y, 0);
const shapesOf = (m: ReadonlyMap<string, TensorData>) => [...m].map(([k, t]) => [k, t.shape] as const);

// ---- the official rules, on the official names --------------------------------------------

/** optim_factory.get_parameter_groups: no decay for 1-D, `.bias`, `.gamma`, `.beta` (fine-tuning). */
const officialFinetuneNoDecay = (name: string, shape: readonly number[]) =>
  shape.length === 1 || name.endsWith('.bias') || name.endsWith('.gamma') || name.endsWith('.beta');
/** timm 0.3.2 add_weight_decay: no decay for 1-D or `.bias` (pre-training). */
const officialPretrainNoDecay = (name: string, shape: readonly number[]) => shape.length === 1 || name.endsWith('.bias');

/** optim_factory.get_num_layer_for_convnext_single on an official name. */
function officialLayerSingle(name: string, depths: readonly number[]): number {
  const [head, s, b] = name.split('.');
  if (head === 'downsample_layers') return sum(depths.slice(0, +s)) + 1;
  if (head === 'stages') return sum(depths.slice(0, +s)) + +b + 1;
  return sum(depths) + 1;
}
/** optim_factory.get_num_layer_for_convnext (12 groups) on an official name. */
function officialLayerGroup(name: string): number {
  const [head, s0, b0] = name.split('.');
  const s = +s0;
  if (head === 'downsample_layers') return s === 0 ? 0 : s === 1 || s === 2 ? s + 1 : 12;
  if (head === 'stages') return s <= 1 ? s + 1 : s === 2 ? 3 + Math.floor(+b0 / 3) : 12;
  return 13;
}
/** main_finetune.py's LayerDecayValueAssigner values: decay ** (num_layers + 1 - id). */
const officialScale = (id: number, numLayers: number, decay: number) => decay ** (numLayers + 1 - id);

/** Our canonical name -> [official fine-tune name, its shape in the official file]. */
function officialNames(file: string): Map<string, [string, number[]]> {
  const sd = findStateDict(readTorchCheckpoint(file), 'model', file);
  const plan = planCanonical(shapesOf(sd), { naming: 'official' });
  return new Map(plan.entries.map((e) => [e.name, [e.source, [...sd.get(e.source)!.shape]]]));
}

/** Our FCMAE parameter name -> [official FCMAE name, its shape], from fcmae_small.safetensors. */
function officialFcmaeNames(): Map<string, [string, number[]]> {
  const file = join(REF, 'fcmae_small.safetensors');
  const sd = new Map([...readSafetensors(file)].filter(([k]) => k.startsWith('param.')));
  const map = mapFcmaeNames(shapesOf(sd), detectFcmae(sd.keys(), file)!, file);
  const plan = planCanonical(map.encoder.map((e) => [e.name, e.shape] as const), { naming: 'official', allowUnexpected: true, initialise: ['head.norm.weight', 'head.norm.bias'] });
  const bySource = new Map(map.encoder.map((e) => [e.name, e.source]));
  const out = new Map<string, [string, number[]]>();
  for (const e of plan.entries) {
    const src = bySource.get(e.source)!;
    out.set(e.name, [src.slice('param.'.length), [...sd.get(src)!.shape]]);
  }
  for (const e of map.decoder) out.set(e.name, [e.source.slice('param.'.length), [...sd.get(e.source)!.shape]]);
  return out;
}

function groupOf(groups: ReturnType<typeof finetuneParamGroups>, p: Param) {
  const g = groups.filter((x) => x.params.includes(p));
  assert.equal(g.length, 1, `${p.name} is in exactly one group`);
  return g[0];
}

// ---- parameter groups ----------------------------------------------------------------------

test('fine-tuning groups (the CLI builder): weight decay and layer-wise lr scale of every parameter, as optim_factory on the official names and shapes', () => {
  for (const [file, block] of [['small_official.pt', 'v2'], ['small_v1_official.pt', 'v1']] as const) {
    const official = officialNames(join(REF, file));
    const cfg = makeConfig({ depths: [2, 2, 2, 2], dims: [16, 32, 48, 64] }, { numClasses: 10, block });
    const model = new ConvNeXtV2(cfg, { kernels: new ReferenceKernels() });
    for (const type of ['single', 'group'] as const) {
      const st = finetuneSettings(parseArgs(['--data', 'synthetic', ...['--weight-decay', '0.3', '--layer-decay', '0.7', '--layer-decay-type', type]], finetune.flags, 'finetune'));
      const groups = finetuneParamGroups(model.params, cfg.depths, st.groups);
      assert.equal(model.params.length, official.size, `${file}: every parameter has an official name`);
      for (const p of model.params) {
        const [name, shape] = official.get(p.name)!;
        const g = groupOf(groups, p);
        assert.equal(g.weightDecay, officialFinetuneNoDecay(name, shape) ? 0 : 0.3, `${file}: weight decay of ${p.name} (official ${name} [${shape}])`);
        const want = type === 'single' ? officialScale(officialLayerSingle(name, cfg.depths), 8, 0.7) : officialScale(officialLayerGroup(name), 12, 0.7);
        assert.ok(Math.abs(g.lrScale - want) <= 1e-15, `${file} ${type}: lr scale of ${p.name} (official ${name}) ${g.lrScale}, want ${want}`);
      }
    }
  }
  // The 12 groups of Base-like depths (stage 2 split in threes), on names only.
  const cfg = makeConfig({ depths: [3, 3, 27, 3], dims: [8, 8, 8, 8] }, { numClasses: 2 });
  const model = new ConvNeXtV2(cfg, { kernels: new ReferenceKernels() });
  const st = finetuneSettings(parseArgs(['--data', 'synthetic', ...['--recipe', 'base']], finetune.flags, 'finetune'));
  const groups = finetuneParamGroups(model.params, cfg.depths, st.groups);
  const toOfficial = (n: string) => n.replace(/^stem\./, 'downsample_layers.0.').replace(/^stages\.(\d+)\.downsample\./, 'downsample_layers.$1.')
    .replace(/^stages\.(\d+)\.blocks\.(\d+)\./, 'stages.$1.$2.').replace(/^head\.norm\./, 'norm.').replace(/^head\.fc\./, 'head.');
  for (const p of model.params) {
    assert.ok(Math.abs(groupOf(groups, p).lrScale - officialScale(officialLayerGroup(toOfficial(p.name)), 12, 0.6)) < 1e-15, `base: ${p.name}`);
  }
  // Layer decay 1 (the default): every scale is 1 (main_finetune.py builds no assigner).
  const flat = finetuneParamGroups(model.params, cfg.depths, finetuneSettings(parseArgs(['--data', 'synthetic', ...[]], finetune.flags, 'finetune')).groups);
  assert.ok(flat.every((g) => g.lrScale === 1) && flat.length === 2);
});

test('pre-training groups (the CLI builder): weight decay of every encoder and decoder parameter, as timm add_weight_decay on the official FCMAE names and shapes (GRN and the mask token are decayed)', () => {
  const official = officialFcmaeNames();
  const cfg = makeConfig({ depths: [2, 2, 2, 2], dims: [16, 32, 48, 64] }, { numClasses: 0 });
  const fcmae = new FCMAE(cfg, { decoderDim: 32, decoderDepth: 1 }, { kernels: new ReferenceKernels() });
  const st = pretrainSettings(parseArgs(['--data', 'synthetic', ...['--weight-decay', '0.07']], pretrain.flags, 'pretrain'));
  const groups = pretrainParamGroups(fcmae.params, st.weightDecay);
  assert.equal(fcmae.params.length, official.size, 'every trained parameter has an official FCMAE name');
  let decayedGrn = 0;
  for (const p of fcmae.params) {
    const [name, shape] = official.get(p.name) ?? assert.fail(`${p.name}: no official FCMAE tensor`);
    const g = groupOf(groups, p);
    assert.equal(g.lrScale, 1, p.name);
    assert.equal(g.weightDecay, officialPretrainNoDecay(name, shape) ? 0 : 0.07, `weight decay of ${p.name} (official ${name} [${shape}])`);
    if (/grn/.test(name) && g.weightDecay > 0) decayedGrn++;
  }
  assert.equal(decayedGrn, 2 * 8 + 2, 'GRN gamma and beta of the 8 encoder blocks and the decoder block are decayed');
});

// ---- the optimizer as the CLI runs it: what one step does to the weights ----------------------

function cli(args: string[]): { epochs: Record<string, number>[] } {
  const r = spawnSync('node', [CLI, ...args, '--quiet', '--json'], { encoding: 'utf8', env: { ...process.env, CONVNEXTV2_THREADS: '1' } });
  assert.equal(r.status, 0, `${args[0]}: exit ${r.status}\n${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { epochs: Record<string, number>[] };
}

/**
 * torch.optim.AdamW step t of one tensor (p *= 1 - lr wd; p -= lr / bc1 * m / (sqrt(v / bc2) + eps))
 * in float64 from float32 states: the expected weights and, from the moments, the gradient the
 * step saw. Returns the worst error in units of the tolerance (<= 1 passes).
 */
function adamwStepError(p0: Float32Array, p1: Float32Array, m0: Float32Array | null, v0: Float32Array | null, m1: Float32Array, v1: Float32Array,
  t: number, lr: number, wd: number, betas: [number, number], eps = 1e-8): { weights: number; moments: number } {
  const [b1, b2] = betas;
  let weights = 0, moments = 0;
  for (let i = 0; i < p0.length; i++) {
    const mPrev = m0 ? m0[i] : 0, vPrev = v0 ? v0[i] : 0;
    const g = (m1[i] - b1 * mPrev) / (1 - b1);
    const dg = 2e-7 * (Math.abs(m1[i]) + Math.abs(mPrev)) / (1 - b1);
    const vWant = b2 * vPrev + (1 - b2) * g * g;
    const vTol = 1e-6 * (v1[i] + b2 * vPrev) + 2 * (1 - b2) * Math.abs(g) * dg + 1e-38;
    moments = Math.max(moments, Math.abs(v1[i] - vWant) / vTol);
    const want = p0[i] * (1 - lr * wd) - (lr / (1 - b1 ** t)) * m1[i] / (Math.sqrt(v1[i] / (1 - b2 ** t)) + eps);
    const tol = 4e-7 * Math.abs(p0[i]) + 1e-5 * lr;
    weights = Math.max(weights, Math.abs(p1[i] - want) / tol);
  }
  return { weights, moments };
}

test('finetune as run: one step from a checkpoint equals AdamW(0.9, 0.999) at lr = blr x batch x update-freq / 256, with the official decay and layer scale per parameter', () => {
  const out = join(work, 'ft-step');
  const blr = 0.2, B = 4, uf = 2, wd = 0.3, ld = 0.8;
  // small_timm's weights (every tensor random and non-zero, so decay shows everywhere) as a 10-class classifier.
  const init = join(work, 'small.safetensors');
  const { state: p0, config } = toCanonical(smallTimmParams());
  saveCheckpoint(init, { config, state: p0 });
  // 8 images = 2 microbatches of 4 = one optimizer step; no warm-up, so it runs at the peak lr.
  cli(['finetune', '--init', init, '--data', 'synthetic', '--input-size', '32', '--batch-size', String(B), '--update-freq', String(uf), '--limit', '8',
    '--val-limit', '4', '--epochs', '1', '--warmup-epochs', '0', '--blr', String(blr), '--weight-decay', String(wd), '--layer-decay', String(ld),
    '--aa', 'none', '--reprob', '0', '--workers', '0', '--out', out]);
  const ck = loadCheckpoint(join(out, 'checkpoint-last.safetensors'), { extra: true });
  const official = officialNames(join(REF, 'small_official.pt'));
  const lr = (blr * B * uf) / 256;
  let checked = 0;
  for (const [name, t0] of p0) {
    const [oname, oshape] = official.get(name)!;
    const scale = officialScale(officialLayerSingle(oname, [2, 2, 2, 2]), 8, ld);
    const e = adamwStepError(t0.data, ck.state.get(name)!.data, null, null, ck.extra!.get(`optimizer.m.${name}`)!.data, ck.extra!.get(`optimizer.v.${name}`)!.data,
      1, lr * scale, officialFinetuneNoDecay(oname, oshape) ? 0 : wd, [0.9, 0.999]);
    assert.ok(e.moments <= 1, `${name}: the moments are not those of betas (0.9, 0.999): ${e.moments.toFixed(1)} x the tolerance`);
    assert.ok(e.weights <= 1, `${name}: the weights are not one AdamW step at lr ${(lr * scale).toExponential(3)}, decay ${officialFinetuneNoDecay(oname, oshape) ? 0 : wd}: ${e.weights.toFixed(1)} x the tolerance`);
    checked++;
  }
  assert.equal(checked, official.size);
});

test('pretrain as run: the second step equals AdamW(0.9, 0.95) at the cosine lr, with the official FCMAE decay per parameter (encoder, decoder, GRN, mask token)', () => {
  const out = join(work, 'pt-step');
  const blr = 0.64, B = 4, wd = 0.5, E = 2;
  const args = ['pretrain', '--depths', '2,2,2,2', '--dims', '16,32,48,64', '--decoder-embed-dim', '32', '--decoder-depth', '1', '--data', 'synthetic',
    '--input-size', '64', '--batch-size', String(B), '--limit', String(B), '--epochs', String(E), '--warmup-epochs', '0', '--blr', String(blr),
    '--weight-decay', String(wd), '--workers', '0', '--vis-images', '1', '--out', out];
  cli([...args, '--stop-after', '1']);
  copyFileSync(join(out, 'checkpoint-last.safetensors'), join(work, 'pt-step-1.safetensors'));
  cli(['pretrain', '--resume', '--out', out]);
  const a = readSafetensors(join(work, 'pt-step-1.safetensors'));
  const b = readSafetensors(join(out, 'checkpoint-last.safetensors'));
  const official = officialFcmaeNames();
  // Step 2 starts epoch 2 (fraction 1 of 2): lr x 0.5 (1 + cos(pi / 2)), min lr 0.
  const lr = ((blr * B) / 256) * 0.5 * (1 + Math.cos(Math.PI / 2));
  let checked = 0;
  for (const [name, [oname, oshape]] of official) {
    const get = (f: Map<string, TensorData>, k: string) => (f.get(k) ?? assert.fail(`no ${k} in the checkpoint`)).data;
    const e = adamwStepError(get(a, name), get(b, name), get(a, `optimizer.m.${name}`), get(a, `optimizer.v.${name}`), get(b, `optimizer.m.${name}`), get(b, `optimizer.v.${name}`),
      2, lr, officialPretrainNoDecay(oname, oshape) ? 0 : wd, [0.9, 0.95]);
    assert.ok(e.moments <= 1, `${name}: the moments are not those of betas (0.9, 0.95): ${e.moments.toFixed(1)} x the tolerance`);
    assert.ok(e.weights <= 1, `${name}: the weights are not AdamW step 2 at lr ${lr}, decay ${officialPretrainNoDecay(oname, oshape) ? 0 : wd}: ${e.weights.toFixed(1)} x the tolerance`);
    checked++;
  }
  assert.equal(checked, official.size);
});

// ---- defaults: the CLI's and the library's ----------------------------------------------------

test('finetune defaults are main_finetune.py\'s; --recipe SIZE is TRAINING.md\'s', () => {
  const st = finetuneSettings(parseArgs(['--data', 'synthetic', ...[]], finetune.flags, 'finetune'));
  const { flags, ...rest } = st;
  assert.ok(flags instanceof Map);
  assert.deepEqual(rest, {
    data: 'synthetic', model: 'atto', block: 'v2', epochs: 100, batchSize: 64, updateFreq: 1, inputSize: 224, seed: 0,
    dropPath: 0, headInitScale: 0.001, blr: 5e-4, lr: undefined, minLr: 1e-6, warmupEpochs: 20, warmupSteps: -1,
    optimizer: { betas: [0.9, 0.999], eps: 1e-8 },
    groups: { weightDecay: 0.05, layerDecay: 1, layerDecayType: 'single' },
    smoothing: 0.1, mixup: null,
    transform: { kind: 'train', scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic', hflip: 0.5, autoAugment: 'rand-m9-mstd0.5-inc1', reprob: 0.25, remode: 'pixel', recount: 1 },
    cropPct: 0.875, ema: null, clipGrad: undefined,
  });
  // TRAINING.md: atto (and femto/pico/nano), tiny, base (and large/huge).
  const atto = { blr: 2e-4, epochs: 600, warmupEpochs: 0, groups: { weightDecay: 0.3, layerDecay: 0.9, layerDecayType: 'single' }, dropPath: 0.1, smoothing: 0.2, mixup: null, ema: { decay: 0.9999, eval: true } };
  const tiny = { blr: 8e-4, epochs: 300, warmupEpochs: 40, groups: { weightDecay: 0.05, layerDecay: 0.9, layerDecayType: 'single' }, dropPath: 0.2, smoothing: 0.1, ema: { decay: 0.9999, eval: true } };
  const base = { blr: 6.25e-4, epochs: 100, warmupEpochs: 20, groups: { weightDecay: 0.05, layerDecay: 0.6, layerDecayType: 'group' }, dropPath: 0.1, smoothing: 0.1, ema: { decay: 0.9999, eval: true } };
  const mix = (s: number) => ({ mixupAlpha: 0.8, cutmixAlpha: 1, prob: 1, switchProb: 0.5, mode: 'batch', labelSmoothing: s });
  for (const [size, want] of [['atto', atto], ['femto', atto], ['pico', atto], ['nano', atto], ['tiny', { ...tiny, mixup: mix(0.1) }],
    ['base', { ...base, mixup: mix(0.1) }], ['large', { ...base, mixup: mix(0.1) }], ['huge', { ...base, mixup: mix(0.1) }]] as const) {
    const r = finetuneSettings(parseArgs(['--data', 'synthetic', ...['--recipe', size]], finetune.flags, 'finetune'));
    for (const [k, v] of Object.entries(want)) assert.deepEqual((r as unknown as Record<string, unknown>)[k], v, `--recipe ${size}: ${k}`);
    assert.equal(r.transform.reprob, 0.25, `--recipe ${size}: reprob`);
  }
  assert.deepEqual(Object.keys(RECIPES).sort(), ['atto', 'base', 'femto', 'huge', 'large', 'nano', 'pico', 'tiny']);
  // Explicit flags override the recipe; the mixup flags reach timm's Mixup by their own names.
  const r = finetuneSettings(parseArgs(['--data', 'synthetic', ...['--recipe', 'tiny', '--blr', '1e-3', '--mixup-prob', '0.7', '--mixup-switch-prob', '0.2', '--model-ema-decay', '0.99']], finetune.flags, 'finetune'));
  assert.equal(r.blr, 1e-3);
  assert.deepEqual(r.mixup, { mixupAlpha: 0.8, cutmixAlpha: 1, prob: 0.7, switchProb: 0.2, mode: 'batch', labelSmoothing: 0.1 });
  assert.deepEqual(r.ema, { decay: 0.99, eval: true });
  // --opt-betas, --opt-eps, --warmup-steps, --clip-grad, --aa none.
  const o = finetuneSettings(parseArgs(['--data', 'synthetic', ...['--opt-betas', '0.8,0.9', '--opt-eps', '1e-6', '--warmup-steps', '7', '--clip-grad', '2', '--aa', 'none', '--model-ema']], finetune.flags, 'finetune'));
  assert.deepEqual([o.optimizer, o.warmupSteps, o.clipGrad, o.transform.autoAugment, o.ema], [{ betas: [0.8, 0.9], eps: 1e-6 }, 7, 2, '', { decay: 0.9999, eval: false }]);
});

test('pretrain defaults are main_pretrain.py\'s (mask 0.6 of 32 px patches, decoder 1 x 512, norm-pix loss, AdamW 0.9/0.95, blr 1.5e-4, wd 0.05, 40 warm-up epochs, RandomResizedCrop 0.2-1 + flip)', () => {
  const st = pretrainSettings(parseArgs(['--data', 'synthetic', ...[]], pretrain.flags, 'pretrain'));
  assert.deepEqual(st, {
    data: 'synthetic', model: 'atto', block: 'v2', epochs: 800, batchSize: 64, updateFreq: 1, inputSize: 224, seed: 0,
    fcmae: { patchSize: 32, maskRatio: 0.6, normPixLoss: true, decoderDepth: 1, decoderDim: 512, grnStats: 'batch', initStyle: 'timm' },
    mode: 'sparse', blr: 1.5e-4, lr: undefined, minLr: 0, warmupEpochs: 40, weightDecay: 0.05,
    optimizer: { betas: [0.9, 0.95], eps: 1e-8 },
    transform: { kind: 'train', scale: [0.2, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic', hflip: 0.5 },
  });
  // No RandAugment, no erasing in pre-training: the compiled transform is crop + flip + normalise.
  const img = testImage(80, 60, 3);
  const ours = compileTransform({ ...st.transform, size: 32 });
  for (let seed = 0; seed < 4; seed++) {
    const got = new Float32Array(3 * 32 * 32);
    ours(img, new Rng(seed), got, 0);
    const rng = new Rng(seed);
    const want = toNormalizedCHW(hflip(randomResizedCrop(img, 32, rng, { scale: [0.2, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic' }), rng, 0.5));
    assert.deepEqual(got, want, `seed ${seed}`);
  }
  // The encoder the command builds has no drop path (SparseConvNeXtV2's drop_path_rate 0).
  assert.equal(modelFromFlags('atto', undefined, undefined, { numClasses: 0 }).dropPathRate, 0);
});

test('library defaults: configs, FCMAE, AdamW, Mixup, transforms and erasing are the official ones where a caller leaves them out', () => {
  assert.deepEqual(makeConfig('atto'), {
    depths: [2, 2, 6, 2], dims: [40, 80, 160, 320], numClasses: 1000, inChans: 3, dropPathRate: 0, headInitScale: 1,
    layerNormEps: 1e-6, headNormEps: 1e-6, kernelSize: 7, block: 'v2',
  });
  assert.deepEqual(FCMAE_DEFAULTS, { decoderDim: 512, decoderDepth: 1, patchSize: 32, maskRatio: 0.6, normPixLoss: false, grnStats: 'batch', initStyle: 'timm' });
  assert.deepEqual(ADAMW_DEFAULTS, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.05 });
  // timm Mixup(): prob 1, switch_prob 0.5, correct_lam, label_smoothing 0.1: defaults equal the explicit values, draw for draw.
  const explicit = new Mixup({ mixupAlpha: 0.8, cutmixAlpha: 1, prob: 1, switchProb: 0.5, correctLam: true, labelSmoothing: 0.1, numClasses: 5 });
  const implicit = new Mixup({ mixupAlpha: 0.8, cutmixAlpha: 1, numClasses: 5 });
  for (let s = 0; s < 20; s++) {
    const x = Float32Array.from({ length: 2 * 3 * 8 * 8 }, (_v, i) => i), y = x.slice();
    const labels = Int32Array.of(1, 3);
    assert.deepEqual(implicit.apply(x, labels, 3, 8, 8, new Rng(s)), explicit.apply(y, labels, 3, 8, 8, new Rng(s)), `mixup draw ${s}`);
  }
  // randomResizedCrop, the train transform, the eval transform and RandomErasing.
  const img = testImage(90, 70, 1);
  for (let s = 0; s < 6; s++) {
    assert.deepEqual(randomResizedCrop(img, 24, new Rng(s)), randomResizedCrop(img, 24, new Rng(s), { scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic' }), `crop ${s}`);
    assert.deepEqual(randomResizedCropParams(90, 70, new Rng(s)), randomResizedCropParams(90, 70, new Rng(s), [0.08, 1], [3 / 4, 4 / 3]));
    const a = new Float32Array(3 * 24 * 24), b = new Float32Array(3 * 24 * 24);
    compileTransform({ kind: 'train', size: 24 })(img, new Rng(s), a, 0);
    compileTransform({ kind: 'train', size: 24, scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic', hflip: 0.5, reprob: 0 })(img, new Rng(s), b, 0);
    assert.deepEqual(a, b, `train transform ${s}`);
    const e1 = Float32Array.from({ length: 3 * 20 * 20 }, () => 0.5), e2 = e1.slice();
    randomErasing(e1, 3, 20, 20, new Rng(s), { probability: 1 });
    randomErasing(e2, 3, 20, 20, new Rng(s), { probability: 1, mode: 'const', minArea: 0.02, maxArea: 1 / 3, minAspect: 0.3, maxAspect: 1 / 0.3, minCount: 1, maxCount: 1 });
    assert.deepEqual(e1, e2, `erasing ${s}`);
  }
  assert.deepEqual(evalTransform(img, 32), toNormalizedCHW(centerCrop(resizeShortSide(img, 36), 32)), 'evalTransform: crop pct 0.875 (floor(32 / 0.875) = 36)');
  const c = new Float32Array(3 * 32 * 32);
  compileTransform({ kind: 'eval', size: 32 })(img, new Rng(0), c, 0);
  assert.deepEqual(c, evalTransform(img, 32, 0.875));
});

// ---- transforms ---------------------------------------------------------------------------------

/** An image with distinct values per channel and position. */
function testImage(width: number, height: number, seed: number): Image {
  const rng = new Rng(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(rng.uniform() * 256);
  return { width, height, data, label: 0 };
}

test('fine-tuning transform (the CLI spec): RandomResizedCrop 0.08-1 at 3/4-4/3 bicubic, flip 0.5, RandAugment m9 mstd0.5 inc1, normalise, random erasing 0.25 pixel mode, in timm\'s order', () => {
  const st = finetuneSettings(parseArgs(['--data', 'synthetic', ...[]], finetune.flags, 'finetune'));
  const S = 32;
  const run = compileTransform({ ...st.transform, size: S });
  const ra = parseRandAugment('rand-m9-mstd0.5-inc1', { size: S });
  assert.deepEqual({ ...ra, ops: [...ra.ops] }, {
    ops: [...RAND_INCREASING_TRANSFORMS], numLayers: 2, magnitude: 9, magnitudeStd: 0.5, magnitudeMax: 10, prob: 0.5,
    fill: [124, 116, 104], translatePct: 0.45, interpolation: 'bicubic',
  });
  const img = testImage(75, 50, 2);
  for (let seed = 0; seed < 6; seed++) {
    const got = new Float32Array(3 * S * S);
    run(img, new Rng(seed), got, 0);
    const rng = new Rng(seed);
    let x = randomResizedCrop(img, S, rng, { scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic' });
    x = hflip(x, rng, 0.5);
    x = randAugment(x, rng, ra);
    const want = toNormalizedCHW(x);
    randomErasing(want, 3, S, S, rng, { probability: 0.25, mode: 'pixel', maxCount: 1 });
    assert.deepEqual(got, want, `seed ${seed}`);
  }
});

test('RandomResizedCrop draws (torchvision get_params): area fraction uniform on the scale range, log aspect uniform on the ratio range (seeded, 4 standard errors)', () => {
  // Scale [0.08, 0.5] on a square: every first try fits, so the accepted draws are the proposals.
  const n = 4000, lo = 0.08, hi = 0.5;
  const rng = new Rng(7);
  let area = 0, area2 = 0, logr = 0, minA = 1, maxA = 0;
  for (let i = 0; i < n; i++) {
    const p = randomResizedCropParams(2000, 2000, rng, [lo, hi], [3 / 4, 4 / 3]);
    const a = (p.width * p.height) / 4e6;
    area += a; area2 += a * a; logr += Math.log(p.width / p.height);
    minA = Math.min(minA, a); maxA = Math.max(maxA, a);
  }
  const mean = area / n, sd = (hi - lo) / Math.sqrt(12);
  assert.ok(Math.abs(mean - (lo + hi) / 2) < 4 * sd / Math.sqrt(n), `mean area fraction ${mean} (uniform on [${lo}, ${hi}]: ${(lo + hi) / 2})`);
  assert.ok(Math.abs(area2 / n - mean * mean - sd * sd) < 0.1 * sd * sd, `area variance ${area2 / n - mean * mean} (want ${sd * sd})`);
  assert.ok(minA > lo - 0.002 && minA < lo + 0.005 && maxA > hi - 0.005 && maxA < hi + 0.002, `area range [${minA}, ${maxA}]`);
  assert.ok(Math.abs(logr / n) < 4 * (Math.log(4 / 3) / Math.sqrt(3)) / Math.sqrt(n), `mean log aspect ${logr / n}`);
});

test('random erasing (timm, pixel mode): p 0.25, one box of area 2%-33% and aspect 0.3-3.3, filled with N(0, 1) (seeded, statistical)', () => {
  const st = finetuneSettings(parseArgs(['--data', 'synthetic', ...[]], finetune.flags, 'finetune'));
  const H = 64, W = 64, n = 2000;
  const rng = new Rng(3);
  let erased = 0, fill = 0, fill2 = 0, count = 0;
  for (let i = 0; i < n; i++) {
    const x = new Float32Array(3 * H * W).fill(100);
    randomErasing(x, 3, H, W, rng, { probability: st.transform.reprob!, mode: st.transform.remode, maxCount: st.transform.recount });
    let k = 0;
    for (let j = 0; j < H * W; j++) if (x[j] !== 100) { k++; fill += x[j]; fill2 += x[j] * x[j]; count++; }
    if (k > 0) {
      erased++;
      assert.ok(k >= 0.02 * H * W * 0.8 && k <= (H * W) / 3 * 1.1, `erased area ${k / (H * W)}`);
      for (let c = 1; c < 3; c++) for (let j = 0; j < H * W; j++) assert.equal(x[c * H * W + j] !== 100, x[j] !== 100, 'every channel of the box');
    }
  }
  const p = erased / n;
  assert.ok(Math.abs(p - 0.25) < 4 * Math.sqrt(0.25 * 0.75 / n), `erased ${p} of the images (want 0.25)`);
  assert.ok(Math.abs(fill / count) < 0.01 && Math.abs(fill2 / count - 1) < 0.02, `fill mean ${fill / count}, var ${fill2 / count}`);
});

test('normalisation: ImageNet mean and std for each of the three channels, in float32 as torchvision', () => {
  assert.deepEqual([...IMAGENET_MEAN], [0.485, 0.456, 0.406]);
  assert.deepEqual([...IMAGENET_STD], [0.229, 0.224, 0.225]);
  const mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225];
  const data = new Uint8Array(3 * 256);
  for (let v = 0; v < 256; v++) for (let c = 0; c < 3; c++) data[v * 3 + c] = (v + 85 * c) % 256;
  const img: Image = { width: 256, height: 1, data, label: 0 };
  const f = Math.fround;
  for (const out of [toNormalizedCHW(img), evalTransform({ ...img, width: 16, height: 16 }, 16, 1)]) {
    const n = out.length / 3;
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < n; p++) {
        const v = data[p * 3 + c];
        assert.equal(out[c * n + p], f(f(f(v / 255) - f(mean[c])) / f(std[c])), `channel ${c}, value ${v}`);
      }
    }
  }
  // What the CLI's data loader hands the model for an evaluation batch: the same numbers.
  const ds = openDataset('synthetic:32', 'val', { limit: 2 });
  const l = new DataLoader(ds, { batchSize: 2, transform: { kind: 'eval', size: 32, cropPct: 1 }, workers: 0 });
  return (async () => {
    try {
      for await (const b of l.epoch(0)) {
        const want = toNormalizedCHW(await ds.load(1));
        assert.deepEqual(b.pixels.data.subarray(3 * 32 * 32), want, 'the loader normalises with ImageNet mean and std');
      }
    } finally {
      await l.close();
    }
  })();
});

test('evaluation transform: short side to floor(size / 0.875) then centre crop below 384 px (crop 1.0: a warp at 384 and above), as datasets.build_transform', () => {
  const img = testImage(120, 90, 4);
  // Default crop pct 0.875: 224 -> 256 (the official 224 / 256); here 64 -> 73.
  assert.deepEqual(evalResize(img, 64), centerCrop(resizeShortSide(img, 73), 64));
  assert.notDeepEqual(evalResize(img, 64), evalResize(img, 64, 1));
  assert.deepEqual(evalResize(img, 64, 0.9), centerCrop(resizeShortSide(img, 71), 64));
  assert.equal(Math.floor(224 / 0.875), 256);
  // 384 and above: Resize((size, size)) whatever the crop pct.
  const big = testImage(500, 400, 5);
  assert.deepEqual(evalResize(big, 384), resize(big, 384, 384));
  assert.deepEqual(evalResize(big, 384, 0.5), resize(big, 384, 384));
  // The CLI's evaluation defaults: finetune --crop-pct and eval's fallback when a checkpoint records none.
  assert.equal(finetuneSettings(parseArgs(['--data', 'synthetic', ...[]], finetune.flags, 'finetune')).cropPct, 0.875);
});

// ---- drop path ------------------------------------------------------------------------------------

test('stochastic depth: block i of n gets rate x i / (n - 1) (timm/official torch.linspace(0, rate, n)), dropped per sample with that probability, kept ones scaled by 1 / (1 - rate)', () => {
  const rate = 0.3;
  for (const depths of [[2, 2, 6, 2], [1, 0, 3, 1], [3, 3, 9, 3]]) {
    const m = new ConvNeXtV2(makeConfig({ depths, dims: [8, 8, 8, 8] }, { numClasses: 0, dropPathRate: rate }), { kernels: new ReferenceKernels() });
    const n = sum(depths);
    const rates = m.stages.flatMap((s) => s.blocks).map((b) => b.dropPath);
    assert.equal(rates.length, n);
    rates.forEach((r, i) => assert.ok(Math.abs(r - Math.fround((rate * i) / (n - 1))) < 1e-7, `depths ${depths}: block ${i} rate ${r}, want ${(rate * i) / (n - 1)}`));
  }
  // One block, 4000 samples of 1x1: the branch is dropped for ~rate of them; kept ones are scaled.
  const k = new ReferenceKernels();
  const C = 2, N = 4000, p = 0.35;
  const rng = new Rng(11);
  const param = (name: string, shape: number[]) => {
    const x = new Param(name, shape, false);
    for (let i = 0; i < x.size; i++) x.data[i] = rng.normal() * 0.5;
    return x;
  };
  const params = new Map<string, Param>();
  const get = (n: string) => {
    const shapes: Record<string, number[]> = {
      'conv_dw.weight': [C, 1, 7, 7], 'conv_dw.bias': [C], 'norm.weight': [C], 'norm.bias': [C], 'mlp.fc1.weight': [4 * C, C], 'mlp.fc1.bias': [4 * C],
      'mlp.grn.weight': [4 * C], 'mlp.grn.bias': [4 * C], 'mlp.fc2.weight': [C, 4 * C], 'mlp.fc2.bias': [C],
    };
    if (!params.has(n)) params.set(n, param(n, shapes[n]));
    return params.get(n)!;
  };
  const x = Float32Array.from({ length: N * C }, () => rng.normal());
  const shared = new Arena();
  const eval0 = Float32Array.from(new Block(get, C, 7, 1e-6, 0).forward(k, x, N, 1, 1, { train: false, shared, cache: false }) as Float32Array);
  const block = new Block(get, C, 7, 1e-6, p);
  const y = block.forward(k, x, N, 1, 1, { train: true, rng: new Rng(5), shared, cache: false }) as Float32Array;
  let dropped = 0;
  for (let i = 0; i < N; i++) {
    const isDropped = y[i * C] === x[i * C] && y[i * C + 1] === x[i * C + 1];
    if (isDropped) { dropped++; continue; }
    for (let c = 0; c < C; c++) {
      const want = x[i * C + c] + (eval0[i * C + c] - x[i * C + c]) / (1 - p);
      assert.ok(Math.abs(y[i * C + c] - want) < 1e-4 * (1 + Math.abs(want)), `sample ${i}: kept branch scaled by 1 / (1 - ${p})`);
    }
  }
  assert.ok(Math.abs(dropped / N - p) < 4 * Math.sqrt(p * (1 - p) / N), `dropped ${dropped / N} of the samples, want ${p}`);
});

// ---- EMA and the lr per step in the engine ------------------------------------------------------

test('FinetuneEngine with --update-freq 2: the EMA moves once per optimizer step (float64 reference of N updates), and each step\'s lr is adjust_learning_rate at its fractional epoch', async () => {
  const kernels = new ReferenceKernels();
  const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 8, 8, 8] }, { numClasses: 10 });
  const model = new ConvNeXtV2(cfg, { kernels, seed: 3 });
  const decay = 0.5; // large steps, so one update more or less shows
  const ema = new ModelEma(model.params, decay, kernels);
  const opt = new AdamW(model.params, { weightDecay: 0.05 });
  const ds = openDataset('synthetic:32', 'train', { limit: 24 });
  const batches = new DataLoader(ds, { batchSize: 2, transform: { kind: 'resize', size: 32 }, workers: 0, seed: 1, shuffle: true, dropLast: true });
  const schedule = { lr: 1e-2, minLr: 1e-4, warmupEpochs: 1.5, epochs: 2 };
  const engine = new FinetuneEngine({ model, opt, ema, batches, schedule, seed: 1, updateFreq: 2, evaluate: async () => ({ top1: 0, top5: 0, loss: 0 }) });
  const ema64 = new Map(model.params.map((p) => [p.name, Float64Array.from(p.data as Float32Array)]));
  const lrs: number[] = [];
  try {
    for (let epoch = 1; epoch <= 2; epoch++) {
      await engine.runEpoch(epoch, {
        afterBatch: (s) => {
          if (s.batch % 2 !== 0) return;
          lrs.push(s.lr);
          for (const p of model.params) {
            const e = ema64.get(p.name)!;
            const w = p.data as Float32Array;
            for (let i = 0; i < e.length; i++) e[i] = decay * e[i] + (1 - decay) * w[i];
          }
        },
      });
    }
  } finally {
    await batches.close();
  }
  assert.equal(engine.step, 12, '24 batches of 2 per... 12 batches an epoch, 6 steps an epoch');
  for (const p of model.params) {
    const got = ema.shadow.get(p.name) as Float32Array, want = ema64.get(p.name)!;
    let scale = 1e-12;
    for (const v of want) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * scale, `EMA of ${p.name}[${i}]: ${got[i]} vs ${want[i]} (after 12 updates)`);
  }
  // engine_finetune.py: at data_iter_step % update_freq == 0, lr = adjust_learning_rate(epoch + data_iter_step / len(data_loader)).
  const official = (e: number) => (e < 1.5 ? (1e-2 * e) / 1.5 : 1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + Math.cos((Math.PI * (e - 1.5)) / (2 - 1.5))));
  const want = Array.from({ length: 12 }, (_v, j) => official(Math.floor(j / 6) + ((j % 6) * 2) / 12));
  lrs.forEach((lr, j) => assert.ok(Math.abs(lr - want[j]) < 1e-15, `step ${j}: lr ${lr}, want ${want[j]}`));
});

// ---- mixup / cutmix -----------------------------------------------------------------------------

/** The Beta(a, a) CDF by Simpson's rule on the density (a >= 1 here: the density is bounded). */
function betaCdf(a: number): (x: number) => number {
  const n = 2000;
  const pdf = (x: number) => (x <= 0 || x >= 1 ? 0 : (x * (1 - x)) ** (a - 1));
  const cum = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    const x0 = i / n, x1 = (i + 1) / n;
    cum[i + 1] = cum[i] + ((x1 - x0) / 6) * (pdf(x0) + 4 * pdf((x0 + x1) / 2) + pdf(x1));
  }
  return (x) => {
    const t = Math.min(n, Math.max(0, x * n));
    const i = Math.min(n - 1, Math.floor(t));
    return (cum[i] + (cum[i + 1] - cum[i]) * (t - i)) / cum[n];
  };
}

/** Kolmogorov-Smirnov distance of a sample to a CDF. */
function ksDistance(xs: number[], cdf: (x: number) => number): number {
  const s = [...xs].sort((a, b) => a - b);
  let d = 0;
  s.forEach((x, i) => { d = Math.max(d, Math.abs(cdf(x) - i / s.length), Math.abs(cdf(x) - (i + 1) / s.length)); });
  return d;
}

test('Mixup (timm): --mixup-prob is the chance to mix at all, --mixup-switch-prob the chance of CutMix when both are on; lambda ~ Beta(alpha, alpha) of the one chosen (seeded, statistical)', () => {
  const st = finetuneSettings(parseArgs(['--data', 'synthetic', ...['--mixup', '5', '--cutmix', '1', '--mixup-prob', '0.6', '--mixup-switch-prob', '0.3', '--smoothing', '0']], finetune.flags, 'finetune'));
  const mix = new Mixup({ ...st.mixup!, numClasses: 4 });
  const n = 3000, H = 16, W = 16;
  const rng = new Rng(21);
  const lamMixup: number[] = [];
  let none = 0, cut = 0;
  const labels = Int32Array.of(0, 1);
  for (let i = 0; i < n; i++) {
    const x = new Float32Array(2 * H * W);
    const r = mix.apply(x, labels, 1, H, W, rng);
    if (r.kind === 'none') none++;
    else if (r.kind === 'cutmix') cut++;
    else lamMixup.push(r.lam);
    // The targets carry lam on the own label and 1 - lam on the partner's (smoothing 0 here).
    assert.ok(Math.abs(r.targets[0] - r.lam) < 1e-6 && Math.abs(r.targets[1] - (1 - r.lam)) < 1e-6, 'soft targets');
  }
  const mixed = n - none;
  assert.ok(Math.abs(mixed / n - 0.6) < 4 * Math.sqrt(0.24 / n), `mixed ${mixed / n} of the batches (--mixup-prob 0.6)`);
  assert.ok(Math.abs(cut / mixed - 0.3) < 4 * Math.sqrt(0.21 / mixed), `cutmix ${cut / mixed} of the mixed batches (--mixup-switch-prob 0.3)`);
  // Mixup's lambda: Beta(5, 5) (the mixup alpha, not the cutmix one: Beta(1, 1) is 0.2 away in KS distance).
  const d = ksDistance(lamMixup, betaCdf(5));
  assert.ok(d < 1.63 / Math.sqrt(lamMixup.length), `KS distance of mixup lambda to Beta(5, 5): ${d} over ${lamMixup.length} draws`);
  assert.ok(ksDistance(lamMixup, (x) => x) > 3 * 1.63 / Math.sqrt(lamMixup.length), 'the test tells Beta(5, 5) from Beta(1, 1)');
  // Each sample is mixed with the batch flipped (x.flip(0)): sample b with B - 1 - b, image and label.
  const four = new Mixup({ mixupAlpha: 1, cutmixAlpha: 0, labelSmoothing: 0, numClasses: 4 });
  const px = Float32Array.of(1, 2, 3, 4);
  const m4 = four.apply(px, Int32Array.of(0, 1, 2, 3), 1, 1, 1, new Rng(4));
  for (let b = 0; b < 4; b++) {
    assert.ok(Math.abs(px[b] - (m4.lam * (b + 1) + (1 - m4.lam) * (4 - b))) < 1e-5, `pixels of sample ${b} mixed with sample ${3 - b}`);
    assert.ok(Math.abs(m4.targets[b * 4 + (3 - b)] - (1 - m4.lam)) < 1e-6 && Math.abs(m4.targets[b * 4 + b] - m4.lam) < 1e-6, `targets of sample ${b}`);
  }
  // Mixup only: every mixed batch is mixup; cutmix only: every one is cutmix, lambda from the box.
  const only = (a: string[]) => new Mixup({ ...finetuneSettings(parseArgs(['--data', 'synthetic', ...a], finetune.flags, 'finetune')).mixup!, numClasses: 4 });
  const mo = only(['--mixup', '0.8']), co = only(['--cutmix', '1']);
  for (let i = 0; i < 50; i++) {
    assert.equal(mo.apply(new Float32Array(2 * H * W), labels, 1, H, W, rng).kind, 'mixup');
    const r = co.apply(new Float32Array(2 * H * W), labels, 1, H, W, rng);
    assert.equal(r.kind, 'cutmix');
  }
});

test('CutMix box (timm rand_bbox): side int(H sqrt(1 - lam)) centred at a uniform pixel, clipped; lambda corrected to the box area; the mean box area over many draws is its exact expectation', () => {
  const H = 40, W = 30, lam = 0.64; // cut ratio 0.6: 24 x 18
  const half = [Math.floor(Math.trunc(H * 0.6) / 2), Math.floor(Math.trunc(W * 0.6) / 2)];
  // E[clipped length] over a uniform centre, per axis (independent axes).
  const expLen = (n: number, h: number) => { let s = 0; for (let c = 0; c < n; c++) s += Math.min(c + h, n) - Math.max(c - h, 0); return s / n; };
  const expArea = expLen(H, half[0]) * expLen(W, half[1]);
  const rng = new Rng(9);
  const n = 6000;
  let area = 0, area2 = 0;
  for (let i = 0; i < n; i++) {
    const b = cutmixBox(H, W, lam, rng);
    const a = (b.yh - b.yl) * (b.xh - b.xl);
    assert.ok(b.yh - b.yl <= 2 * half[0] && b.xh - b.xl <= 2 * half[1] && b.yl >= 0 && b.xh <= W, 'box inside the image, side at most the cut');
    assert.equal(b.lam, 1 - a / (H * W), 'lambda from the clipped box');
    area += a; area2 += a * a;
  }
  const mean = area / n, se = Math.sqrt((area2 / n - mean * mean) / n);
  assert.ok(Math.abs(mean - expArea) < 4 * se, `mean box area ${mean}, expected ${expArea} (+- ${se.toFixed(2)})`);
  // A centre away from the edges: the whole 24 x 18 box.
  const fixed = { int: (m: number) => Math.floor(m / 2), uniform: () => 0.5 } as unknown as Rng;
  assert.deepEqual(cutmixBox(H, W, lam, fixed), { yl: 8, yh: 32, xl: 6, xh: 24, lam: 1 - (24 * 18) / (H * W) });
});

// ---- initialisation -----------------------------------------------------------------------------

test('initialisation: trunc_normal(std 0.02, cut at +-2) weights within their sampling error, zero biases, LN 1/0, GRN 0/0, head scaled by head_init_scale exactly', () => {
  const cfg = makeConfig('atto', { numClasses: 100 });
  const k = new ReferenceKernels();
  const one = new ConvNeXtV2({ ...cfg, headInitScale: 1 }, { kernels: k, seed: 2 });
  const scaled = new ConvNeXtV2({ ...cfg, headInitScale: 0.001 }, { kernels: k, seed: 2 });
  let n = 0, s1 = 0, s2 = 0, s4 = 0, maxAbs = 0;
  for (const p of one.params) {
    const d = p.data as Float32Array;
    if (/\.(weight)$/.test(p.name) && p.shape.length > 1) {
      for (const v of d) { n++; s1 += v; s2 += v * v; s4 += v ** 4; maxAbs = Math.max(maxAbs, Math.abs(v)); }
    } else if (/(stem\.1|downsample\.0|\.norm)\.weight$/.test(p.name)) {
      assert.ok(d.every((v) => v === 1), `${p.name}: ones`);
    } else {
      assert.ok(d.every((v) => v === 0), `${p.name}: zeros`);
    }
    const q = scaled.param(p.name).data as Float32Array;
    if (p.name.startsWith('head.fc.')) {
      d.forEach((v, i) => assert.equal(q[i], Math.fround(v * 0.001), `${p.name}[${i}] x head_init_scale`));
    } else {
      assert.deepEqual(q, d, `${p.name}: head_init_scale touches the head alone`);
    }
  }
  const std = Math.sqrt(s2 / n - (s1 / n) ** 2);
  // Sampling error of a normal's std: std / sqrt(2n); of its mean: std / sqrt(n).
  assert.ok(Math.abs(std - 0.02) < 4 * 0.02 / Math.sqrt(2 * n), `weight std ${std} over ${n} values (want 0.02 +- ${(4 * 0.02 / Math.sqrt(2 * n)).toExponential(1)})`);
  assert.ok(Math.abs(s1 / n) < 4 * 0.02 / Math.sqrt(n), `weight mean ${s1 / n}`);
  // Cut at +-2 absolute (timm's trunc_normal_(std=.02), a = -2, b = 2): effectively untruncated, kurtosis 3.
  const kurt = s4 / n / (s2 / n) ** 2;
  assert.ok(Math.abs(kurt - 3) < 4 * Math.sqrt(24 / n), `kurtosis ${kurt}: a normal's, not one cut at +-2 std (2.36)`);
  assert.ok(maxAbs < 0.2, `largest weight ${maxAbs}`);
});
