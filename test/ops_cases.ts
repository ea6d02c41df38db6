// Calls every backend must refuse with the op table's words (test/ops.test.ts, test/wasm/backends.test.ts).
import { Act, type Kernels } from '../src/kernels/types.js';

export const BAD_CALLS: [string, (k: Kernels) => void, RegExp][] = [
  ['a short output', (k) => k.gelu(new Float32Array(8), new Float32Array(4), 8), /\bgelu: y is too short: needs 8 elements, has 4$/],
  ['a non-integer size', (k) => k.gelu(new Float32Array(8), new Float32Array(8), 1.5), /\bgelu: n must be an integer >= 0, got 1.5$/],
  ['GRN offsets not from 0', (k) => k.grnForward(new Float32Array(12), Int32Array.of(1, 3), 3, new Float32Array(3), new Float32Array(3), 1e-6, new Float32Array(12), new Float32Array(3), new Float32Array(3)), /\bgrnForward: offsets must start at 0 \(got 1\)$/],
  ['decreasing GRN offsets', (k) => k.grnForward(new Float32Array(12), Int32Array.of(0, 3, 2), 3, new Float32Array(3), new Float32Array(3), 1e-6, new Float32Array(12), new Float32Array(6), new Float32Array(6)), /\bgrnForward: offsets must be non-decreasing/],
  ['an even depthwise kernel', (k) => k.dwconvForward(new Float32Array(12), 1, 2, 2, 3, 4, new Float32Array(48), null, new Float32Array(12)), /\bdwconvForward: K must be a positive odd integer$/],
  ['GELU with accumulate', (k) => k.gemm(false, false, 2, 2, 2, new Float32Array(4), 2, new Float32Array(4), 2, new Float32Array(4), 2, true, null, Act.Gelu, null), /\bgemm: accumulate and GELU cannot be combined$/],
  ['a short lda', (k) => k.gemm(false, false, 3, 4, 3, new Float32Array(9), 2, new Float32Array(12), 4, new Float32Array(12), 4, false, null, Act.None, null), /\bgemm: lda must be >= 3$/],
  ['an index past the rows', (k) => k.gatherRows(new Float32Array(6), Int32Array.of(0, 2), 3, new Float32Array(6)), /\bgatherRows: idx\[1\] = 2 is outside \[0, 2\)$/],
  ['a label past the classes', (k) => k.smoothTargets(Int32Array.of(0, 5), 2, 5, 0.1, new Float32Array(10)), /\bsmoothTargets: labels\[1\] = 5 is outside \[0, 5\)$/],
  ['a host array where an index table goes', (k) => k.scatterRows(new Float32Array(3), new Float32Array(1) as unknown as Int32Array, 3, new Float32Array(3)), /\bscatterRows: idx must be an Int32Array or an index table$/],
  ['a bias-correction of 0', (k) => k.adamw(new Float32Array(2), new Float32Array(2), new Float32Array(2), new Float32Array(2), 2, 1e-3, 0.9, 0.999, 1e-8, 0, 0, 1), /\badamw: bc1 must be in \(0, 1\]$/],
];
