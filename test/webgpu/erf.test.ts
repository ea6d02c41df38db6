// The WGSL erf approximation: within 1e-6 of a double-precision erf over a dense grid, both
// as the same formula in float32 arithmetic on the host and as the GPU evaluates it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { erf } from '../../src/kernels/reference.js';
import { erfF32 } from '../../src/kernels/webgpu/wgsl/common.js';
import { dev, need, openWebGPU } from './helpers.js';

const g = await openWebGPU();

/** x in [-8, 8] by 1e-4, plus the extremes and a few special points. */
function grid(): Float32Array {
  const xs: number[] = [];
  for (let i = -80000; i <= 80000; i++) xs.push(i * 1e-4);
  xs.push(1e-30, -1e-30, 1e-7, -1e-7, 20, -20, 1e30, -1e30, 3.4e38, -3.4e38, Infinity, -Infinity);
  return Float32Array.from(xs);
}

function maxError(got: (i: number) => number, xs: Float32Array): { err: number; at: number } {
  let err = 0;
  let at = 0;
  for (let i = 0; i < xs.length; i++) {
    const e = Math.abs(got(i) - erf(xs[i]));
    if (!(e <= err)) {
      err = e;
      at = xs[i];
    }
  }
  return { err, at };
}

test('erf approximation in float32 arithmetic (host, Math.fround) is within 1e-6', () => {
  const xs = grid();
  const { err, at } = maxError((i) => erfF32(xs[i]), xs);
  assert.ok(err <= 1e-6, `max |erf error| ${err} at ${at}`);
  // Odd, and near 0 relatively accurate (GELU's small inputs).
  for (const x of [1e-6, 1e-3, 0.1, 0.5, 2]) assert.equal(erfF32(-x), -erfF32(x));
  assert.ok(Math.abs(erfF32(1e-6) / erf(1e-6) - 1) < 1e-6);
});

test('webgpu erf is within 1e-6 on the same grid', async (t) => {
  const k = need(t, g);
  if (!k) return;
  const xs = grid();
  const dx = dev(k, xs);
  const dy = dev(k, xs.length);
  k.erf(dx, dy, xs.length);
  const ys = await k.read(dy);
  const { err, at } = maxError((i) => ys[i], xs);
  assert.ok(err <= 1e-6, `max |erf error| on the GPU ${err} at ${at}`);
  // And close to the host evaluation of the same formula (FMA contraction and division may differ by an ulp or two).
  let d = 0;
  for (let i = 0; i < xs.length; i++) d = Math.max(d, Math.abs(ys[i] - erfF32(xs[i])));
  assert.ok(d <= 3e-7, `GPU vs host formula ${d}`);
});
