import assert from 'node:assert/strict';

/** max |ours - want| / max |want|: the fixtures' tolerance measure. */
export function relErr(ours: Float32Array, want: Float32Array): number {
  assert.equal(ours.length, want.length, 'length');
  let m = 0;
  let r = 0;
  for (let i = 0; i < want.length; i++) {
    m = Math.max(m, Math.abs(ours[i] - want[i]));
    r = Math.max(r, Math.abs(want[i]));
  }
  return m / Math.max(r, 1e-30);
}
