// Weights by name from the local Hugging Face cache (issue 12 item 12): caches laid out as
// huggingface_hub writes them (blobs, snapshot symlinks, refs), for a transformers repository
// and a timm one, resolved offline by the library and the CLI. The download path (no cache
// entry, HF_HUB_OFFLINE unset) needs the network and is not run here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedSnapshot, hubCacheDir, parseHubId, resolveCheckpointArg } from '../src/io/hub.js';
import { loadCheckpoint } from '../src/io/checkpoint_file.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors_file.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { REF, relErr, smallTimmParams } from './helpers.js';
import { cpu } from './backend.js';

const ROOT = new URL('..', import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), 'convnextv2-hub-'));
const cache = join(root, 'hub');

/** Writes `files` (name -> source path) as huggingface_hub does: blobs by content hash, snapshot symlinks, refs/REF. */
function cacheRepo(repo: string, files: Record<string, string>, refs: string[] = ['main']): string {
  const dir = join(cache, `models--${repo.replace('/', '--')}`);
  const commit = createHash('sha1').update(repo).digest('hex');
  mkdirSync(join(dir, 'blobs'), { recursive: true });
  mkdirSync(join(dir, 'snapshots', commit), { recursive: true });
  mkdirSync(join(dir, 'refs'), { recursive: true });
  for (const [name, src] of Object.entries(files)) {
    const sha = createHash('sha256').update(readFileSync(src)).digest('hex');
    copyFileSync(src, join(dir, 'blobs', sha));
    symlinkSync(join('..', '..', 'blobs', sha), join(dir, 'snapshots', commit, name));
  }
  for (const r of refs) writeFileSync(join(dir, 'refs', r), commit);
  return commit;
}

const HF = join(REF, 'small_hf');
const hfCommit = cacheRepo('facebook/convnextv2-small-test', {
  'config.json': join(HF, 'config.json'), 'model.safetensors': join(HF, 'model.safetensors'),
}, ['main', 'v1.0']);
const timmWeights = join(root, 'timm-model.safetensors');
writeSafetensors(timmWeights, [...smallTimmParams()]);
const timmConfig = join(root, 'timm-config.json');
writeFileSync(timmConfig, JSON.stringify({ architecture: 'convnextv2_small_test', num_classes: 10, num_features: 64, pretrained_cfg: { input_size: [3, 96, 96], crop_pct: 0.95, mean: [0.485, 0.456, 0.406] } }));
cacheRepo('timm/convnextv2_small.test_in1k', { 'config.json': timmConfig, 'model.safetensors': timmWeights });

test('hub ids: ORG/NAME[@REV] and hf-hub:ORG/NAME; a local path always wins', () => {
  assert.deepEqual(parseHubId('facebook/convnextv2-atto-1k-224'), { repo: 'facebook/convnextv2-atto-1k-224', revision: 'main' });
  assert.deepEqual(parseHubId('hf-hub:timm/convnextv2_atto.fcmae_ft_in1k'), { repo: 'timm/convnextv2_atto.fcmae_ft_in1k', revision: 'main' });
  assert.deepEqual(parseHubId('timm/convnextv2_atto.fcmae_ft_in1k@v2'), { repo: 'timm/convnextv2_atto.fcmae_ft_in1k', revision: 'v2' });
  assert.equal(parseHubId('model.safetensors'), null);
  assert.equal(parseHubId('runs/ft/checkpoint-last.safetensors'), null);
  assert.equal(parseHubId('test/fixtures'), null, 'an existing local folder');
  assert.throws(() => parseHubId('hf-hub:not a repo'), /not a Hugging Face repository id/);
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/x/hub' }), '/x/hub');
  assert.equal(hubCacheDir({ HF_HOME: '/y' }), join('/y', 'hub'));
  assert.match(hubCacheDir({ HOME: '/home/u' }), /huggingface[\\/]hub$/);
});

test('a transformers repository in the cache: refs, commit and snapshot resolve offline; same weights as the folder', async () => {
  process.env.HF_HUB_CACHE = cache;
  process.env.HF_HUB_OFFLINE = '1';
  const snap = await resolveCheckpointArg('facebook/convnextv2-small-test');
  assert.equal(snap, join(cache, 'models--facebook--convnextv2-small-test', 'snapshots', hfCommit));
  assert.equal(await resolveCheckpointArg('facebook/convnextv2-small-test@v1.0'), snap);
  assert.equal(await resolveCheckpointArg(`facebook/convnextv2-small-test@${hfCommit}`), snap);
  assert.equal(cachedSnapshot({ repo: 'facebook/convnextv2-small-test', revision: 'nope' }, cache), null);
  const a = loadCheckpoint(snap);
  const b = loadCheckpoint(HF);
  assert.equal(a.format, 'hf');
  assert.deepEqual(a.config, b.config);
  for (const [k, t] of b.state) assert.deepEqual(a.state.get(k)!.data, t.data, k);
  await assert.rejects(resolveCheckpointArg('facebook/not-cached'), /facebook\/not-cached is not in the Hugging Face cache .*HF_HUB_OFFLINE is set/);
});

test('a timm repository in the cache: timm naming and head norm eps, pretrained_cfg preprocessing; logits match timm', async () => {
  process.env.HF_HUB_CACHE = cache;
  process.env.HF_HUB_OFFLINE = '1';
  const ck = loadCheckpoint(await resolveCheckpointArg('hf-hub:timm/convnextv2_small.test_in1k'));
  assert.equal(ck.naming, 'timm');
  assert.deepEqual(ck.preprocessing, { inputSize: 96, cropPct: 0.95 });
  const m = new ConvNeXtV2(ck.config, { kernels: cpu });
  m.loadStateDict(ck.state);
  const ref = readSafetensors(join(REF, 'small_timm.safetensors'));
  const out = await m.forward(ref.get('input.1.pixel_values')!);
  assert.ok(relErr(out.logits!.data, ref.get('output.1.logits')!.data) <= 1e-4);
});

test('the CLI takes hub ids for --checkpoint and --init, offline, with one-line errors', () => {
  const env = { ...process.env, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1', CONVNEXTV2_DEBUG: '' };
  const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { encoding: 'utf8', env });
  const r = run('inspect', '--checkpoint', 'timm/convnextv2_small.test_in1k', '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim().split('\n').pop()!).numClasses, 10);
  const e = run('inspect', '--checkpoint', 'facebook/convnextv2-atto-1k-224');
  assert.equal(e.status, 1);
  assert.equal(e.stderr.trim().split('\n').length, 1, e.stderr);
  assert.match(e.stderr, /^convnextv2: facebook\/convnextv2-atto-1k-224: not a local path, and facebook\/convnextv2-atto-1k-224 is not in the Hugging Face cache/);
  // HF_HOME/hub is the cache when HF_HUB_CACHE is unset.
  const viaHome = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'inspect', '--checkpoint', 'facebook/convnextv2-small-test'],
    { encoding: 'utf8', env: { ...env, HF_HUB_CACHE: '', HF_HOME: root } });
  assert.equal(viaHome.status, 0, viaHome.stderr);
});

test('predict on an HF-cache id and a timm id of a 1000-class checkpoint prints ImageNet names', async () => {
  const { makeConfig } = await import('../src/model/config.js');
  const { exportCheckpoint } = await import('../src/io/checkpoint_file.js');
  const { IMAGENET_1K_CLASSES } = await import('../src/data/imagenet.js');
  // A small random-weight stand-in for facebook/convnextv2-atto-1k-224 and timm/convnextv2_atto.fcmae_ft_in1k.
  const m = new ConvNeXtV2(makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 1000 }), { kernels: cpu, seed: 2 });
  const hfDir = join(root, 'k1000-hf');
  exportCheckpoint(hfDir, { config: m.config, state: await m.stateDict() }, { naming: 'hf' });
  // As transformers' save_pretrained writes a model without names: LABEL_N placeholders.
  const cfg = JSON.parse(readFileSync(join(hfDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  cfg.id2label = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [String(i), `LABEL_${i}`]));
  writeFileSync(join(hfDir, 'config.json'), JSON.stringify(cfg));
  cacheRepo('facebook/convnextv2-tiny-1k-standin', { 'config.json': join(hfDir, 'config.json'), 'model.safetensors': join(hfDir, 'model.safetensors') });
  const timmFile = join(root, 'k1000-timm.safetensors');
  exportCheckpoint(timmFile, { config: m.config, state: await m.stateDict() }, { naming: 'timm' });
  const tcfg = join(root, 'k1000-timm-config.json');
  writeFileSync(tcfg, JSON.stringify({ architecture: 'convnextv2_standin', num_classes: 1000, pretrained_cfg: { input_size: [3, 64, 64], crop_pct: 0.875 } }));
  cacheRepo('timm/convnextv2_standin.fcmae_ft_in1k', { 'config.json': tcfg, 'model.safetensors': timmFile });
  const env = { ...process.env, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1', CONVNEXTV2_DEBUG: '' };
  const png = join(ROOT, 'docs', 'grn-ablation-cosine.png');
  for (const id of ['facebook/convnextv2-tiny-1k-standin', 'hf-hub:timm/convnextv2_standin.fcmae_ft_in1k']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'predict', '--checkpoint', id, '--input-size', '64', '--top-k', '3', png, '--json'], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    const top = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { predictions: { top: { index: number; label: string }[] }[] }).predictions[0].top;
    assert.equal(top.length, 3);
    for (const t of top) {
      assert.equal(t.label, IMAGENET_1K_CLASSES[t.index], id);
      assert.ok(r.stdout.includes(t.label), `${id}: the text output names ${t.label}`);
    }
  }
});
