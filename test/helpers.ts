import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConvNextError } from '../src/errors.js';
import { type TensorData } from '../src/io/safetensors.js';
import { readSafetensors, readSafetensorsWithMetadata } from '../src/io/safetensors_file.js';

/** The reference tensors copied from ../shared/reference (made with timm, HF and the official code). */
export const REF = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'reference');
export const SMALL_TIMM = path.join(REF, 'small_timm.safetensors');

/** max |ours - want| / max(max |want|, floor): the fixtures' tolerance measure (NaN when ours has a NaN). */
export function relErr(ours: Float32Array, want: Float32Array, floor = 1e-30): number {
  assert.equal(ours.length, want.length, 'length');
  let m = 0;
  let r = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(ours[i] - want[i]);
    if (!(d <= m)) m = d; // also catches NaN
    r = Math.max(r, Math.abs(want[i]));
  }
  return m / Math.max(r, floor);
}

/** Asserts relErr(got, want) <= tol. */
export function assertClose(got: Float32Array, want: Float32Array, tol: number, what: string, floor = 1e-30): void {
  const e = relErr(got, want, floor);
  assert.ok(e <= tol, `${what}: relative error ${e} > ${tol}`);
}

/** The bit patterns of a float32 array (for bit-exact comparisons, NaN payloads included). */
export function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** The same shape and the same bits. */
export function assertSameTensor(actual: TensorData | undefined, expected: TensorData, name: string): void {
  assert.ok(actual, `${name} missing`);
  assert.deepEqual(actual.shape, expected.shape, `${name} shape`);
  assert.deepEqual(bits(actual.data), bits(expected.data), `${name} values`);
}

/** Asserts that `fn` throws a one-line ConvNextError whose message matches every pattern. */
export function assertOneLineError(fn: () => unknown, ...patterns: RegExp[]): string {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConvNextError, `expected a ConvNextError, got ${caught instanceof Error ? caught.stack : String(caught)}`);
  const msg = caught.message;
  assert.ok(!/[\r\n]/.test(msg), `message is not one line: ${JSON.stringify(msg)}`);
  for (const p of patterns) assert.match(msg, p);
  return msg;
}

/** small_timm's timm parameters (the fixture's `param.*` tensors, without the prefix). */
export function smallTimmParams(): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const [k, t] of readSafetensors(SMALL_TIMM)) if (k.startsWith('param.')) out.set(k.slice('param.'.length), t);
  return out;
}

/**
 * Central finite differences of the scalar L() at `count` coordinates (chosen by pick(n)) of
 * each target array, against its analytic gradient (null: skipped); the error is relative
 * to the largest gradient entry (at least 1e-3).
 */
export function assertFiniteDifferences(label: string, targets: [string, Float32Array, Float32Array | null][], L: () => number,
  pick: (n: number) => number, { eps = 1e-2, tol = 2e-2, count = 12 } = {}): void {
  for (const [tn, arr, grad] of targets) {
    if (!grad) continue;
    let maxAbs = 0;
    for (const g of grad) maxAbs = Math.max(maxAbs, Math.abs(g));
    for (let c = 0; c < count; c++) {
      const i = pick(arr.length);
      const old = arr[i];
      arr[i] = old + eps; const lp = L();
      arr[i] = old - eps; const lm = L();
      arr[i] = old;
      const num = (lp - lm) / (2 * eps);
      const err = Math.abs(num - grad[i]) / Math.max(maxAbs, 1e-3);
      assert.ok(err < tol, `${label} d/d${tn}[${i}]: numeric ${num} vs analytic ${grad[i]} (rel ${err.toExponential(2)})`);
    }
  }
}

/** sum a[i] * b[i] in double precision. */
export function dot64(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Every tensor bit for bit and the metadata (but the recorded command line) equal; returns the tensor names. */
export function assertSameCheckpoint(a: string, b: string): string[] {
  const x = readSafetensorsWithMetadata(a);
  const y = readSafetensorsWithMetadata(b);
  const names = [...x.tensors.keys()];
  assert.deepEqual([...y.tensors.keys()].sort(), [...names].sort(), `${b}: tensor names`);
  for (const n of names) {
    const t = x.tensors.get(n)!;
    const u = y.tensors.get(n)!;
    assert.deepEqual(u.shape, t.shape, `${n} shape`);
    assert.deepEqual(bits(u.data), bits(t.data), `${b}: ${n} differs from the uninterrupted run`);
  }
  const meta = (m: Record<string, string>) => Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'args'));
  assert.deepEqual(meta(y.metadata), meta(x.metadata), `${b}: metadata`);
  return names;
}
