// The op table (src/kernels/ops.ts): every kernel of the Kernels interface is declared there,
// with the names of its arguments in order; one validator refuses a bad call with the same line
// on every backend the registry makes (before this, wasm refused GRN offsets not starting at 0
// and patchify sizes the native kernels floor, and the checks' words differed); the profiler
// labels and counts FLOPs from it by argument name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createBackend } from '../src/kernels/index.js';
import { OPS, OP_BY_NAME, opError } from '../src/kernels/ops.js';
import { KernelProfiler } from '../src/kernels/profile.js';
import { Act, type Kernels } from '../src/kernels/types.js';
import { BAD_CALLS as bad } from './ops_cases.js';

const TYPES = new URL('../src/kernels/types.ts', import.meta.url).pathname;

/** The Kernels interface's methods and their parameter names, read from types.ts. */
function interfaceMethods(): Map<string, string[]> {
  const src = readFileSync(TYPES, 'utf8');
  const body = src.slice(src.indexOf('export interface Kernels {'));
  const out = new Map<string, string[]>();
  for (const m of body.matchAll(/^ {2}([a-zA-Z]+)\??\(([^)]*)\)\s*:/gm)) {
    const params = m[2].split(',').map((p) => p.trim()).filter(Boolean).map((p) => p.split(/[?:]/)[0].trim());
    out.set(m[1], params);
  }
  return out;
}

test('every kernel of the interface is in the op table, with the same argument names in the same order', () => {
  const methods = interfaceMethods();
  const notOps = new Set(['setThreads', 'destroy', 'packWeights', 'read', 'capabilities', 'indexTable', 'freeIndexTable']);
  assert.ok(methods.size > 35, `read ${methods.size} methods`);
  for (const [name, params] of methods) {
    if (notOps.has(name)) continue;
    const spec = OP_BY_NAME.get(name);
    assert.ok(spec, `${name} has no entry in the op table`);
    assert.deepEqual(spec.args.map((a) => a.name), params, `${name}: argument names`);
  }
  for (const o of OPS) assert.ok(methods.has(o.name), `op table entry ${o.name} is not a Kernels method`);
});


for (const name of ['native', 'reference', 'webgpu'] as const) {
  test(`the registry's ${name} backend refuses bad calls with the op table's words`, async (t) => {
    let k: Kernels;
    try {
      k = await createBackend(name);
    } catch (e) {
      // Only where the machine has no WebGPU adapter (CI installs lavapipe, so it runs there).
      if (name === 'webgpu') return t.skip(`no WebGPU adapter: ${e instanceof Error ? e.message : String(e)}`);
      throw e;
    }
    try {
      for (const [what, call, msg] of bad) assert.throws(() => call(k), msg, `${name}: ${what}`);
      // A good call still runs.
      const y = k.memory ? k.memory.alloc(4) : new Float32Array(4);
      k.gelu(Float32Array.of(0, 1, -1, 2), y, 4);
      const got = await k.read(y);
      assert.ok(Math.abs(got[1] - 0.8413447) < 1e-6, `${name}: gelu(1) = ${got[1]}`);
    } finally {
      k.destroy?.();
    }
  });
}

test('the validator accepts what the model does (sizes are minimums, views are fine) and says which argument is wrong', () => {
  const gemm = OP_BY_NAME.get('gemm')!;
  const A = new Float32Array(6), B = new Float32Array(6), C = new Float32Array(4);
  assert.equal(opError(gemm, [false, false, 2, 2, 3, A, 3, B, 2, C, 2, false, null, 0, null]), null);
  assert.equal(opError(gemm, [false, false, 2, 2, 3, A, 3, B, 2, C.subarray(1), 2, false, null, 0, null]), 'C is too short: needs 4 elements, has 3');
  assert.equal(opError(gemm, [false, false, 2, 2, 3, A, 3, B, 2, C, 2, false, null, 0, null, { residual: new Float32Array(2) }]), 'residual is too short: needs 4 elements, has 2');
  assert.equal(opError(gemm, [false, false, 2, 2, 3, A, 3, B, 2, C, 2, false, null, 0, null, { sqSums: new Float32Array(2), sqGroupRows: 3 }]), 'sqGroupRows must divide M');
  assert.equal(opError(gemm, [false, false, 2, 2, 3, A, 3, B, 2, C, 2, 'yes', null, 0, null]), 'accumulate must be a boolean');
});

test('the profiler labels calls and counts FLOPs from the op table by argument name', async () => {
  const p = new KernelProfiler(await createBackend('reference'));
  const k = p.kernels;
  const A = new Float32Array(6), B = new Float32Array(6), C = new Float32Array(4);
  k.gemm(false, false, 2, 2, 3, A, 3, B, 2, C, 2, false, null, Act.Gelu, new Float32Array(4));
  k.gemm(true, false, 2, 2, 3, A, 2, B, 2, C, 2, true, null, Act.None, null);
  k.dwconvForward(new Float32Array(12), 1, 2, 2, 3, 3, new Float32Array(27), null, new Float32Array(12));
  const rows = new Map(p.report().rows.map((r) => [r.kernel, r]));
  assert.deepEqual([...rows.keys()].sort(), ['dwconvForward', 'gemm (weight grad)', 'gemm+gelu']);
  assert.equal(rows.get('gemm+gelu')!.flops, 2 * 2 * 2 * 3);
  assert.equal(rows.get('dwconvForward')!.flops, 2 * 12 * 9);
});
