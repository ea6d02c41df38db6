// Gradient checks of every layer's backward (the cases are in test/gradref.ts), two ways:
// 1. On the float64 reference kernels (ReferenceKernels({ float64: true })): the analytic
//    gradients against central differences of L = sum(y * R), R fixed and random, at EVERY
//    element of the input and of each parameter.
// 2. The float32 backends here (the native kernels on each instruction-set path this CPU has,
//    the float32 reference) against the float64 reference's analytic gradients, every element.
//    test/wasm/gradref.test.ts and test/webgpu/gradref.test.ts compare those backends the same way.
//
// Tolerances.
// (1) Central differences in float64 err by eps^2/6 |L'''| (truncation) plus about
//     u sum|y R| / eps (rounding, u = 1.1e-16). Worst |analytic - numeric| measured over every
//     element of every case, for gradients whose tensors reach 0.014 to 46: 2.9e-7 at eps 1e-4
//     (truncation), 9.8e-8 at 1e-5 (the model's truncation), 9.1e-9 at 3e-6, 2.3e-8 at 1e-6
//     (rounding). At eps = 3e-6 the bound |analytic - numeric| <= 1e-6 + 1e-6 |numeric| is
//     200x the worst error (error / bound 4.9e-3) and still catches a 0.1% error in any single
//     element above about 1e-3; every tensor's gradients must reach 1e-2 (minGrad), or atol
//     would say nothing (the model's official init, weights of std 0.02, left gradients of 1e-7:
//     the model case draws its weights at 1 / sqrt(fan_in)). Float32 differences could do none
//     of this: their rounding alone is 6e-8 sum|y R| / eps (the old check took 2e-2 of the
//     largest gradient at 12 random elements).
// (2) Float32 against the float64 reference: |got - want| <= rtol |want| + atol max |want|
//     (max over the tensor; the atol term is for elements made small by cancellation, whose
//     float32 error is relative to the terms summed), by depth (FLOAT32_TOL): one layer or
//     kernel 1e-5 / 1e-6, a block 1e-4 / 1e-5, the model 1e-4 / 1e-4 (the project's bar, 1e-4
//     of the max). Worst error / bound measured, reference float32, avx512, avx2, portable,
//     wasm, webgpu (lavapipe): layers 0.012, 0.050, 0.050, 0.059, 0.059, 0.082; blocks 0.011,
//     0.056, 0.050, 0.022, 0.029, 0.024; the model 0.017, 0.028, 0.029, 0.041, - (wasm refuses
//     33x38), 0.018, and on 32x64 0.011, 0.078, 0.089, 0.187, 0.186, 0.185. The model's float32
//     error comes from the native GEMMs' float32 sums (weight gradients are sums of terms of
//     random sign over every position: up to 2.5e-5 of the max at the stem).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { NativeKernels, nativeAvailable } from '../src/kernels/native.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import type { NativeIsa } from '../src/kernels/types.js';
import { Rng } from '../src/rng.js';
import {
  CASES, DROP_SEED, FLOAT32_TOL, type GradCase, assertFiniteDifferences64, assertMatchesReference64, referenceComparisonTests,
} from './gradref.js';

const FD = { eps: 3e-6, rtol: 1e-6, atol: 1e-6 };
const fd = (c: GradCase, k?: ReferenceKernels) => assertFiniteDifferences64(c, { ...FD, k });

// dx, dW and db of a Linear layer, and with the GELU fused into its GEMM's epilogue.
test('Linear and Linear+GELU: every gradient element matches float64 central differences', () => {
  fd(CASES.linear);
  fd(CASES.linearGelu);
});

// dx, dgamma, dbeta of LayerNorm over channels (mean and variance terms of dx included).
test('LayerNorm: every gradient element matches float64 central differences', () => {
  fd(CASES.layerNorm);
});

// The 7x7 depthwise convolution's dx, dweight (PyTorch layout, through the tap-major transpose)
// and dbias, on a dense map and on the visible rows of a masked one (the sparse FCMAE encoder).
test('depthwise 7x7 convolution, dense and on sparse rows: every gradient element matches float64 central differences', () => {
  fd(CASES.dwconv);
  fd(CASES.dwconvRows);
});

// The stem / downsampling convolution on a 9x7 map: the floored last row and column get 0.
test('patch convolution (stem / downsample), odd sizes floored: every gradient element matches float64 central differences', () => {
  fd(CASES.patchConv);
});

// GRN's statistics per image, and over segments of 3, 1 and 7 rows (a one-row segment: |x|).
test('GRN per image and over uneven segments: every gradient element matches float64 central differences', () => {
  fd(CASES.grnPerImage);
  fd(CASES.grnSegments);
});

// The kernels without layers: exact GELU, average pooling, and softmax cross-entropy with soft
// targets and a gradient scale other than 1/N (as with gradient accumulation).
test('GELU, average pooling and softmax cross-entropy: every gradient element matches float64 central differences', () => {
  fd(CASES.gelu);
  fd(CASES.avgPool);
  fd(CASES.crossEntropy);
});

// Whole V2 and V1 blocks (GRN's backward fused with fc1's GELU and bias; LayerScale folded into
// fc2), without and with drop path, whose seeded draw keeps one sample and drops the other.
test('V2 and V1 blocks, with and without drop path: every gradient element matches float64 central differences', () => {
  const r = new Rng(DROP_SEED);
  assert.deepEqual([r.uniform() < 0.5, r.uniform() < 0.5], [true, false], 'the drop-path draw keeps sample 0 and drops sample 1');
  for (const c of [CASES.blockV2, CASES.blockV2Drop, CASES.blockV1, CASES.blockV1Drop]) fd(c);
});

// The whole model: every element of the input's gradient and of every parameter's (6k).
test('the whole model: every element of the input and parameter gradients matches float64 central differences', () => {
  fd(CASES.model);
});

/** The reference kernels with LayerNorm's beta gradient 0.1% off in one channel: one wrong element. */
class OneWrongElement extends ReferenceKernels {
  override layerNormBackward(dy: Float32Array, x: Float32Array, mean: Float32Array, rstd: Float32Array, gamma: Float32Array, M: number, C: number,
    dx: Float32Array, accumulate: boolean, dgamma: Float32Array, dbeta: Float32Array): void {
    const before = dbeta[2];
    super.layerNormBackward(dy, x, mean, rstd, gamma, M, C, dx, accumulate, dgamma, dbeta);
    dbeta[2] = before + (dbeta[2] - before) * 1.001;
  }
}

// The checks are sharp enough: one gradient element 0.1% off fails both of them.
test('one gradient element 0.1% off fails the finite differences and the comparison with the float64 reference', async () => {
  assert.throws(() => fd(CASES.layerNorm, new OneWrongElement({ float64: true })),
    { message: /^LayerNorm d\/dbias: 1 of 7 elements off; worst \[2\]: analytic/ });
  await assert.rejects(assertMatchesReference64(CASES.layerNorm, new OneWrongElement(), 'one wrong element', FLOAT32_TOL.layer),
    { message: /^one wrong element LayerNorm d\/dbias: 1 of 7 elements off; worst \[2\]: one wrong element/ });
});

// Every float32 backend of this machine against the float64 reference, case by case.
referenceComparisonTests('reference float32', () => new ReferenceKernels());

if (!nativeAvailable()) {
  test('native kernels against the float64 reference', { skip: 'the native addon did not load (npm run build)' }, () => undefined);
} else {
  const nk = new NativeKernels();
  const initial = nk.isa as NativeIsa;
  after(() => nk.setIsa(initial));
  const isas = nk.supportedIsas();
  for (const isa of ['avx512', 'avx2', 'portable'] as const) {
    if (!isas.includes(isa)) test(`native ${isa} against the float64 reference`, { skip: `this CPU (${nk.cpuInfo().brand}) lacks ${isa}` }, () => undefined);
    else referenceComparisonTests(`native ${isa}`, () => nk, { use: () => nk.setIsa(isa) });
  }
}
