// ConvNeXt V1 against an independent reference (issue 13 item 6): timm's own
// `timm.models.convnext.ConvNeXt(use_grn=False, ls_init_value=1e-6)` with random per-channel
// LayerScale gammas (test/fixtures/reference/small_v1.safetensors, made by
// tools/make_v1_fixture.py) and the same weights in the official facebookresearch/ConvNeXt
// naming (small_v1_official.pt). Both load as `block: 'v1'`; stage outputs, pre-logits, logits
// and every gradient agree within 1e-4 relative error (max |ours - ref| / max |ref|), on the
// default kernels and the reference kernels.
// Run: node --import tsx --test test/v1.test.ts
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { exportCheckpoint, loadCheckpoint } from '../src/io/checkpoint_file.js';
import { type TensorData } from '../src/io/safetensors.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { openTensorSource } from '../src/io/sources.js';
import { nodeFiles } from '../src/io/files_node.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import type { Kernels } from '../src/kernels/types.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { assertSameTensor, REF, relErr } from './helpers.js';
import { cpu } from './backend.js';

const V1 = path.join(REF, 'small_v1.safetensors');
const V1_PT = path.join(REF, 'small_v1_official.pt');
const ref = readSafetensors(V1);
const get = (k: string): TensorData => {
  const t = ref.get(k);
  if (!t) throw new Error(`fixture lacks ${k}`);
  return t;
};
const timmCk = loadCheckpoint(V1, { prefix: 'param.', allowUnexpected: true });
const officialCk = loadCheckpoint(V1_PT);
const paramNames = [...ref.keys()].filter((n) => n.startsWith('param.')).map((n) => n.slice('param.'.length));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convnextv2-v1-'));
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

/** The largest relative error seen per kind of tensor (printed at the end, for the record). */
const worst = new Map<string, number>();
function check(kind: string, ours: Float32Array, want: Float32Array, what: string): void {
  const e = relErr(ours, want);
  worst.set(kind, Math.max(worst.get(kind) ?? 0, e));
  assert.ok(e <= 1e-4, `${what}: relative error ${e}`);
}
after(() => {
  console.log(`# max relErr: ${[...worst].map(([k, e]) => `${k} ${e.toExponential(2)}`).join(', ')}`);
});

function model(ck: Pick<LoadedCheckpoint, 'config' | 'state'>, k: Kernels): ConvNeXtV2 {
  const m = new ConvNeXtV2(ck.config, { kernels: k });
  m.loadStateDict(ck.state);
  return m;
}

test('timm and official V1 names load as block v1, the same config and identical parameters', () => {
  for (const [label, ck] of [['timm', timmCk], ['official', officialCk]] as const) {
    assert.equal(ck.config.block, 'v1', label);
    assert.equal(ck.naming, label);
    assert.deepEqual(ck.config.depths, [2, 2, 2, 2], label);
    assert.deepEqual(ck.config.dims, [16, 32, 48, 64], label);
    assert.equal(ck.config.numClasses, 10, label);
    assert.deepEqual(ck.initialised, [], label);
  }
  assert.equal(officialCk.container, 'torch');
  assert.equal(officialCk.stateDictKey, 'model');
  assert.deepEqual(officialCk.config, timmCk.config);
  // Every timm parameter of the fixture is a model parameter: the LayerScale gammas, no GRN.
  assert.deepEqual([...timmCk.state.keys()].sort(), [...paramNames].sort());
  assert.equal(paramNames.filter((n) => n.endsWith('.gamma')).length, 8);
  assert.ok(!paramNames.some((n) => n.includes('grn')));
  for (const n of paramNames) {
    assertSameTensor(timmCk.state.get(n), get(`param.${n}`), `timm ${n}`);
    assertSameTensor(officialCk.state.get(n), get(`param.${n}`), `official ${n}`);
  }
  // The gammas are random per channel, with both signs: a LayerScale of 1 or |gamma| cannot pass.
  const g = get('param.stages.2.blocks.1.gamma').data;
  assert.ok(g.some((v) => v < -0.5) && g.some((v) => v > 0.5) && new Set(g).size === g.length);
});

const backends: [string, Kernels][] = [['default', cpu], ['reference', new ReferenceKernels()]];

for (const [label, k] of backends) {
  test(`V1 forward matches timm: stages, pre-logits, logits, both inputs, timm and official names (${label} kernels: ${k.name}/${k.isa})`, async () => {
    for (const [naming, ck] of [['timm', timmCk], ['official', officialCk]] as const) {
      const m = model(ck, k);
      for (const i of [0, 1]) {
        const out = await m.forward(get(`input.${i}.pixel_values`), { stages: 'NCHW' });
        const logits = get(`output.${i}.logits`), pre = get(`output.${i}.pre_logits`);
        assert.deepEqual(out.logits!.shape, logits.shape, 'logits shape');
        check('logits', out.logits!.data, logits.data, `${naming} input ${i} logits`);
        assert.deepEqual(out.preLogits.shape, pre.shape, 'pre_logits shape');
        check('pre_logits', out.preLogits.data, pre.data, `${naming} input ${i} pre_logits`);
        assert.equal(out.stages!.length, 4);
        out.stages!.forEach((s, si) => {
          const want = get(`output.${i}.stage${si}`);
          assert.deepEqual(s.shape, want.shape, `stage${si} shape`);
          check('stages', s.data, want.data, `${naming} input ${i} stage${si}`);
        });
      }
    }
  });

  test(`V1 gradients match timm for every parameter (gammas included) and the input (${label} kernels)`, async () => {
    const m = model(timmCk, k);
    m.zeroGrad();
    await m.forward(get('input.0.pixel_values'), { cache: true });
    const dx = m.backward(get('grad.R').data, true)!;
    const dxNchw = new Float32Array(dx.length);
    k.nhwcToNchw(dx, 2, 64, 64, 3, dxNchw);
    check('grad.input', dxNchw, get('grad.input').data, 'grad.input');
    let checked = 0;
    for (const p of m.params) {
      check(p.name.endsWith('.gamma') ? 'grad.gamma' : 'grad.params', p.grad, get(`grad.${p.name}`).data, `grad.${p.name}`);
      checked++;
    }
    assert.equal(checked, paramNames.length);
    assert.equal(checked, [...ref.keys()].filter((n) => n.startsWith('grad.') && n !== 'grad.R' && n !== 'grad.input').length);
  });
}

// Round trips through ours / timm / official safetensors are in test/analysis.test.ts; the
// official torch.save container for V1 is checked here against the official fixture itself.
test('exporting the V1 fixture as an official .pt gives small_v1_official.pt\'s names, shapes and values', () => {
  const file = path.join(tmp, 'v1_official.pt');
  exportCheckpoint(file, { config: timmCk.config, state: timmCk.state }, { naming: 'official', container: 'torch' });
  const listing = (f: string) => {
    const src = openTensorSource(nodeFiles, f);
    try {
      return new Map(src.tensors.map((t) => [t.name, { shape: t.shape, data: src.get(t.name) }]));
    } finally {
      src.close();
    }
  };
  const ours = listing(file), theirs = listing(V1_PT);
  assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
  assert.ok(theirs.has('stages.3.1.gamma') && theirs.has('downsample_layers.0.1.weight') && theirs.has('head.weight'));
  for (const [n, t] of theirs) assertSameTensor(ours.get(n), t, n);
  const back = loadCheckpoint(file);
  assert.equal(back.config.block, 'v1');
  for (const n of paramNames) assertSameTensor(back.state.get(n), get(`param.${n}`), n);
});
