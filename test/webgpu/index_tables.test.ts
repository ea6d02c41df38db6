// Index tables on WebGPU (Kernels.indexTable): a mask's row maps, gathers and GRN's segment
// offsets uploaded once and passed to many calls give the same bits as host Int32Arrays sent
// with each call, a freed table is refused, and an FCMAE step passes every index argument of
// its sparse encoder as a table of the device, one per stage mask, not a host array per call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GpuIndex } from '../../src/kernels/webgpu/kernels.js';
import { dev, fcmaeSmall, need, openWebGPU, rnd } from './helpers.js';

const gpu = await openWebGPU();

test('an index table gives the bits of the host array it was made from; a freed one is refused', async (t) => {
  const k = need(t, gpu);
  if (!k) return;
  const C = 5, rows = 12;
  const src = dev(k, rnd(rows * C));
  const host = Int32Array.of(3, 0, 7, -1, 11);
  const table = k.indexTable(host);
  assert.ok(table instanceof GpuIndex && table.length === host.length);
  const a = k.memory.alloc(host.length * C), b = k.memory.alloc(host.length * C);
  k.gatherRows(src, host, C, a);
  k.gatherRows(src, table, C, b);
  assert.deepEqual(await k.read(b), await k.read(a), 'gatherRows');
  const d1 = k.memory.alloc(rows * C), d2 = k.memory.alloc(rows * C);
  k.scatterRows(a, host, C, d1);
  k.scatterRows(a, table, C, d2);
  assert.deepEqual(await k.read(d2), await k.read(d1), 'scatterRows');

  // GRN over unequal segments: forward statistics and output, and the backward, both ways.
  const off = Int32Array.of(0, 5, 12), S = 2;
  const offT = k.indexTable(off);
  const x = dev(k, rnd(rows * C)), g = dev(k, rnd(C)), bt = dev(k, rnd(C)), dy = dev(k, rnd(rows * C));
  const run = async (o: Int32Array | GpuIndex) => {
    const y = k.memory.alloc(rows * C), gx = k.memory.alloc(S * C), nx = k.memory.alloc(S * C);
    k.grnForward(x, o, C, g, bt, 1e-6, y, gx, nx);
    const dx = k.memory.alloc(rows * C), dg = k.memory.alloc(C), db = k.memory.alloc(C);
    k.grnBackward(dy, x, o, C, g, 1e-6, gx, nx, dx, dg, db);
    return Promise.all([y, gx, nx, dx, dg, db].map((v) => k.read(v)));
  };
  // Twice with the table: its chunk tables are made at the first call and reused.
  const [viaHost, viaTable, again] = [await run(off), await run(offT), await run(offT)];
  assert.deepEqual(viaTable, viaHost, 'GRN with an offsets table');
  assert.deepEqual(again, viaHost, 'GRN with the table a second time');

  // The checks read a table's host copy: a bad table is refused as a bad array is.
  assert.throws(() => k.gatherRows(src, k.indexTable(Int32Array.of(12)), C, b), /gatherRows: (idx\[0\] = 12|row index 12 at 0) is outside \[0, 12\)/);
  k.freeIndexTable(table);
  k.freeIndexTable(offT);
  assert.throws(() => k.gatherRows(src, table, C, b), /gatherRows: idx is an index table that has been freed/);
  assert.throws(() => k.grnForward(x, offT, C, g, bt, 1e-6, null, k.memory.alloc(S * C), k.memory.alloc(S * C)), /offsets is an index table that has been freed/);
});

test('an FCMAE step on webgpu passes its encoder\'s indices as tables of the device, made once per stage mask', async (t) => {
  const k = need(t, gpu);
  if (!k) return;
  const { m, ref, config } = fcmaeSmall(k);
  // Record every index argument of the ops that take one.
  const seen = new Map<string, unknown[]>();
  const ops: [string, number[]][] = [
    ['dwconvForwardRows', [1, 2]], ['dwconvBackwardInputRows', [1, 2]], ['dwconvBackwardWeightRows', [2, 3]],
    ['grnForward', [1]], ['grnBackward', [2]], ['gatherRows', [1]], ['scatterRows', [1]],
  ];
  const target = k as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved = ops.map(([name]) => [name, target[name]] as const);
  for (const [name, at] of ops) {
    const inner = target[name];
    target[name] = (...a: unknown[]) => {
      for (const i of at) (seen.get(name) ?? seen.set(name, []).get(name)!).push(a[i]);
      return inner.apply(k, a);
    };
  }
  try {
    m.zeroGrad();
    await m.forward(ref.get('input.pixel_values')!, ref.get('input.mask')!, { mode: 'sparse' });
    m.backward();
  } finally {
    for (const [name, f] of saved) target[name] = f;
  }
  const all = [...seen.values()].flat();
  assert.ok(all.length > 20, `${all.length} index arguments`);
  const host = all.filter((v) => !(v instanceof GpuIndex));
  assert.equal(host.length, 0, `${host.length} of ${all.length} index arguments were host arrays`);
  // rowOf of the four stage masks: four tables, each used by every block of its stage, forward and backward.
  const rowOf = new Set(seen.get('dwconvForwardRows')!.filter((_, i) => i % 2 === 0));
  assert.equal(rowOf.size, 4);
  const blocks = config.depths.reduce((s, d) => s + d, 0);
  assert.equal(seen.get('dwconvForwardRows')!.length / 2, blocks);
  m.dispose();
});
