// Three backends in one process: one model on native, one on wasm and one on the reference,
// made by the registry, with the same weights (timm's small_timm checkpoint), give the same
// logits (<= 1e-5) and the reference's (<= 1e-4); each model's parameters live on its own backend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createBackend } from '../../src/kernels/index.js';
import { loadCheckpoint } from '../../src/io/checkpoint_file.js';
import { readSafetensors } from '../../src/io/safetensors_file.js';
import { ConvNeXtV2 } from '../../src/model/convnextv2.js';
import { relErr, SMALL_TIMM } from '../helpers.js';
import { BAD_CALLS } from '../ops_cases.js';

test('one model on native, one on wasm, one on the reference, in one process: the same logits (1e-5)', async () => {
  const [native, wasm, reference] = await Promise.all([createBackend('native'), createBackend('wasm', { threads: 2 }), createBackend('reference')]);
  assert.deepEqual([native.name, wasm.name, reference.name], ['native', 'wasm', 'reference']);
  const ref = readSafetensors(SMALL_TIMM);
  const x = { shape: ref.get('input.0.pixel_values')!.shape, data: ref.get('input.0.pixel_values')!.data };
  const want = ref.get('output.0.logits')!.data;
  const loaded = loadCheckpoint(SMALL_TIMM, { prefix: 'param.', allowUnexpected: true });
  const models = [native, wasm, reference].map((kernels) => {
    const m = new ConvNeXtV2(loaded.config, { kernels });
    m.loadStateDict(loaded.state);
    return m;
  });
  assert.equal(models[1].params[0].memory.kind, 'wasm', 'the wasm model\'s parameters are in wasm memory');
  const logits = await Promise.all(models.map(async (m) => Float32Array.from((await m.forward(x)).logits!.data)));
  assert.ok(relErr(logits[1], logits[0]) <= 1e-5, `wasm vs native ${relErr(logits[1], logits[0])}`);
  assert.ok(relErr(logits[2], logits[0]) <= 1e-5, `reference vs native ${relErr(logits[2], logits[0])}`);
  for (const l of logits) assert.ok(relErr(l, want) <= 1e-4, 'timm\'s logits');
});

test("the registry's wasm backend refuses the op table's bad calls with its words, and floors patchify as native does", async () => {
  const [wasm, native] = await Promise.all([createBackend('wasm', { threads: 1 }), createBackend('native')]);
  for (const [what, call, msg] of BAD_CALLS) assert.throws(() => call(wasm), msg, `wasm: ${what}`);
  // 5x6 with patch 2: a 2x3 grid, the last row of pixels dropped (before, wasm refused the size).
  const x = Float32Array.from({ length: 2 * 5 * 6 * 3 }, (_, i) => Math.sin(i));
  const cols = [wasm, native].map((k) => {
    const c = new Float32Array(2 * 2 * 3 * 3 * 4);
    k.patchify(x, 2, 5, 6, 3, 2, c);
    return c;
  });
  assert.deepEqual(cols[0], cols[1]);
});
