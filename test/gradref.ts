// The layers of the gradient checks, built the same way on any backend, and the two checks made
// on them: central finite differences on the float64 reference kernels, every element
// (test/gradcheck.test.ts), and each backend's analytic gradients against the float64
// reference's, every element (native paths and the float32 reference in
// test/gradcheck.test.ts, test/wasm/gradref.test.ts, test/webgpu/gradref.test.ts).
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { type Buf, type Kernels, memoryOf } from '../src/kernels/types.js';
import { makeConfig } from '../src/model/config.js';
import { Block } from '../src/model/block.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { GRN } from '../src/model/grn.js';
import { Arena, type Buffers, clearArenas } from '../src/nn/arena.js';
import { DepthwiseConv } from '../src/nn/dwconv.js';
import { LayerNorm } from '../src/nn/layernorm.js';
import { Linear } from '../src/nn/linear.js';
import { Param } from '../src/nn/param.js';
import { PatchConv } from '../src/nn/patchconv.js';
import { Rng } from '../src/rng.js';

/** The oracle: the reference kernels with float64 tensors (ReferenceKernels' `float64` option). */
export const ref64 = new ReferenceKernels({ float64: true });

/** A layer (or a kernel pair) built on one backend: y = forward(x; params) and its backward. */
export interface Layer {
  /** The input whose gradient `backward` returns (null: none). */
  x: Buf | null;
  params: Param[];
  /** The output (kept for backward when `cache`). */
  forward(cache: boolean): Buf;
  /** dy (consumed) -> dx, the parameters' gradients accumulated. */
  backward(dy: Buf): Buf | null;
  /** The output gradient backward assumes whatever dy is (a loss's weight), instead of a random one. */
  fixedDy?: number[];
  dispose?(): void;
}

export interface GradCase {
  name: string;
  /** One layer or kernel (default), a block, or the model: sets the float32 tolerance (FLOAT32_TOL). */
  depth?: keyof typeof FLOAT32_TOL;
  build(b: Builder): Layer;
  /** Uses the sparse row kernels (Capabilities.sparseRows). */
  sparseRows?: boolean;
}

/** A hash of the case name: each case's values are its own and the same on every backend. */
function seedOf(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** n float32 values ~ offset + scale * N(0, 1) from rng. */
function normals(rng: Rng, n: number, scale = 1, offset = 0): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = offset + scale * rng.normal();
  return v;
}

/**
 * Makes a case's tensors in one backend's memory from seeded float32 values: the float64
 * reference and every float32 backend start from exactly the same numbers.
 */
export class Builder {
  readonly shared = new Arena();
  private readonly rng: Rng;
  private readonly made: Buf[] = [];
  private readonly params: Param[] = [];
  private readonly owned: object[] = [];

  constructor(readonly k: Kernels, seed: number) {
    this.rng = new Rng(seed);
  }

  /** n float32 values ~ offset + scale * N(0, 1). */
  values(n: number, scale = 1, offset = 0): Float32Array {
    return normals(this.rng, n, scale, offset);
  }

  int(n: number): number {
    return this.rng.int(n);
  }

  /** A tensor of the backend's memory holding `v` (or n zeros). */
  tensor(v: Float32Array | number): Buf {
    const n = typeof v === 'number' ? v : v.length;
    const t = memoryOf(this.k).alloc(n);
    if (typeof v !== 'number') this.k.write(t, v);
    this.made.push(t);
    return t;
  }

  /** A parameter of random values offset + scale N(0, 1). */
  param(name: string, shape: number[], scale = 0.5, offset = 0): Param {
    const p = new Param(name, shape, false, memoryOf(this.k));
    p.write(this.k, this.values(p.size, scale, offset));
    this.params.push(p);
    return p;
  }

  buffers(cache: boolean): Buffers {
    return { shared: this.shared, cache };
  }

  /** Registers a layer whose arenas dispose() clears. */
  own<T extends object>(o: T): T {
    this.owned.push(o);
    return o;
  }

  /** Returns everything to the backend's memory (wasm and webgpu memory is not garbage-collected). */
  dispose(): void {
    const mem = memoryOf(this.k);
    for (const o of this.owned) clearArenas(o);
    this.shared.clear();
    for (const t of this.made) mem.free(t);
    for (const p of this.params) p.dispose();
  }
}

/**
 * Builds case c on k and runs the cached forward, then the backward of the case's output
 * gradient (seeded random, or its fixedDy) from zeroed parameter gradients. done() disposes.
 */
function forwardBackward(c: GradCase, k: Kernels): { layer: Layer; R: Float32Array; dx: Buf | null; done: () => void } {
  const b = new Builder(k, seedOf(c.name));
  const layer = c.build(b);
  const done = () => { layer.dispose?.(); b.dispose(); };
  try {
    const y = layer.forward(true);
    const R = layer.fixedDy ? Float32Array.from(layer.fixedDy) : normals(new Rng(seedOf(c.name) + 1), y.length);
    assert.equal(R.length, y.length, `${c.name}: output gradient length`);
    for (const p of layer.params) k.fill(p.grad, 0);
    return { layer, R, dx: layer.backward(b.tensor(R)), done };
  } catch (e) {
    done();
    throw e;
  }
}

/** Case c's analytic gradients on k, host float64 copies by name ('input' first, then the parameters). */
export async function analyticGradients(c: GradCase, k: Kernels): Promise<Map<string, Float64Array>> {
  const { layer, dx, done } = forwardBackward(c, k);
  try {
    const grads = new Map<string, Float64Array>();
    if (layer.x && dx) grads.set('input', Float64Array.from((await k.read(dx)).subarray(0, layer.x.length)));
    for (const p of layer.params) grads.set(p.name, Float64Array.from(await k.read(p.grad)));
    return grads;
  } finally {
    done();
  }
}

/** The float64 reference's analytic gradients of a case (computed once). */
const refCache = new Map<string, Promise<Map<string, Float64Array>>>();
export function referenceGradients(c: GradCase): Promise<Map<string, Float64Array>> {
  let g = refCache.get(c.name);
  if (!g) refCache.set(c.name, (g = analyticGradients(c, ref64)));
  return g;
}

/** max |a[i]|. */
function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/**
 * Asserts |got[i] - want[i]| <= atol * scale + rtol * |want[i]| for every i (NaN fails), where
 * scale is max |want| (atolScale 'max') or 1; reports how many elements fail and the worst
 * (`names`: what got and want are). Returns the largest |got - want| / bound.
 */
export function assertElementwise(what: string, got: ArrayLike<number>, want: ArrayLike<number>,
  { rtol, atol, atolScale = 'max', names = ['got', 'want'] }: { rtol: number; atol: number; atolScale?: 'max' | 'one'; names?: [string, string] }): number {
  assert.equal(got.length, want.length, `${what}: length`);
  const s = atolScale === 'max' ? maxAbs(want) : 1;
  let bad = 0, worst = 0, worstRatio = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    const bound = atol * s + rtol * Math.abs(want[i]);
    if (!(d <= bound)) bad++; // also NaN
    const ratio = d === 0 ? 0 : Number.isNaN(d) ? Infinity : d / bound;
    if (ratio > worstRatio) { worstRatio = ratio; worst = i; }
  }
  if (bad > 0) {
    const i = worst;
    const scale = atolScale === 'max' ? ` * ${s.toExponential(2)} (max |${names[1]}|)` : '';
    assert.fail(`${what}: ${bad} of ${want.length} elements off; worst [${i}]: ${names[0]} ${got[i]}, ${names[1]} ${want[i]} ` +
      `(|diff| ${Math.abs(got[i] - want[i]).toExponential(2)} > ${atol}${scale} + ${rtol} |${names[1]}|)`);
  }
  return worstRatio;
}

/**
 * Central differences in float64 of L = sum(forward(x; params) * R) at every element of the
 * input and of each parameter against the analytic gradients of the float64 reference:
 * |analytic - numeric| <= atol + rtol |numeric|. L is evaluated by the inference forward
 * (cache false), so that forward is checked too. Each tensor's gradients must reach minGrad
 * (1e4 atol): an absolute tolerance says nothing about a tensor whose gradients are all far
 * below it. `k`: other float64 reference kernels (a mutant, to see that a wrong element is
 * caught). Returns the largest error / bound by tensor.
 */
export function assertFiniteDifferences64(c: GradCase, { eps, rtol, atol, k = ref64, minGrad = 1e4 * atol }:
  { eps: number; rtol: number; atol: number; k?: ReferenceKernels; minGrad?: number }): Map<string, number> {
  assert.ok(k.float64, 'finite differences need the float64 reference kernels');
  const { layer, R, dx, done } = forwardBackward(c, k);
  const ratios = new Map<string, number>();
  try {
    // The float64 arrays themselves (ReferenceKernels' float64 memory); copies of the
    // gradients, whose buffers the forwards below may reuse.
    const f64 = (a: Buf) => a as unknown as Float64Array;
    const targets: [string, Float64Array, Float64Array][] = [];
    if (layer.x && dx) targets.push(['input', f64(layer.x), f64(dx).slice(0, layer.x.length)]);
    for (const p of layer.params) targets.push([p.name, f64(p.data), f64(p.grad).slice()]);
    // The finite differences write the parameters' memory directly, so they count the writes (Param.version).
    const L = (): number => {
      for (const p of layer.params) p.writes.n++;
      const out = f64(layer.forward(false));
      let s = 0;
      for (let i = 0; i < R.length; i++) s += out[i] * R[i];
      return s;
    };
    for (const [name, arr, grad] of targets) {
      assert.ok(arr instanceof Float64Array && grad instanceof Float64Array, `${c.name} ${name}: not a float64 tensor`);
      const num = new Float64Array(arr.length);
      for (let i = 0; i < arr.length; i++) {
        const old = arr[i];
        arr[i] = old + eps; const lp = L();
        arr[i] = old - eps; const lm = L();
        arr[i] = old;
        num[i] = (lp - lm) / (2 * eps);
      }
      assert.ok(maxAbs(num) >= minGrad, `${c.name} d/d${name}: gradients up to ${maxAbs(num)} only, too small for atol ${atol}`);
      ratios.set(name, assertElementwise(`${c.name} d/d${name}`, grad, num, { rtol, atol, atolScale: 'one', names: ['analytic', 'central difference'] }));
    }
  } finally {
    done();
  }
  return ratios;
}

/**
 * Case c's analytic gradients on backend k against the float64 reference's, every element of
 * the input's and each parameter's: |got - want| <= rtol * |want| + atol * max |want|.
 */
export async function assertMatchesReference64(c: GradCase, k: Kernels, label: string, tol: { rtol: number; atol: number }): Promise<Map<string, number>> {
  const want = await referenceGradients(c);
  const got = await analyticGradients(c, k);
  assert.deepEqual([...got.keys()], [...want.keys()], `${label} ${c.name}: gradients`);
  const ratios = new Map<string, number>();
  for (const [name, w] of want) {
    ratios.set(name, assertElementwise(`${label} ${c.name} d/d${name}`, got.get(name)!, w, { ...tol, names: [label, 'float64 reference'] }));
  }
  return ratios;
}

// The cases. Small sizes: the finite differences run two forwards per element.

const linear = (gelu: boolean): GradCase => ({
  name: `Linear${gelu ? '+GELU' : ''}`,
  build(b) {
    const M = 7, I = 5, O = 6;
    const w = b.param('weight', [O, I]);
    const bias = b.param('bias', [O]);
    const lin = b.own(new Linear(w, bias, I, O, gelu));
    const x = b.tensor(b.values(M * I));
    return { x, params: [w, bias], forward: (c) => lin.forward(b.k, x, M, b.buffers(c)), backward: (dy) => lin.backward(b.k, dy, b.shared) };
  },
});

const layerNorm: GradCase = {
  name: 'LayerNorm',
  build(b) {
    const M = 6, C = 7;
    const g = b.param('weight', [C], 0.5, 1);
    const bias = b.param('bias', [C]);
    const ln = b.own(new LayerNorm(g, bias, C, 1e-6));
    const x = b.tensor(b.values(M * C, 2, 0.5));
    return { x, params: [g, bias], forward: (c) => ln.forward(b.k, x, M, b.buffers(c)), backward: (dy) => ln.backward(b.k, dy, b.shared) };
  },
};

const dwconv: GradCase = {
  name: 'depthwise 7x7 conv',
  build(b) {
    const N = 2, H = 5, W = 9, C = 3, K = 7;
    const w = b.param('weight', [C, 1, K, K]);
    const bias = b.param('bias', [C]);
    const conv = b.own(new DepthwiseConv(w, bias, C, K));
    const x = b.tensor(b.values(N * H * W * C));
    // backward adds into its second argument (the residual's gradient): a zeroed one.
    return { x, params: [w, bias], forward: (c) => conv.forward(b.k, x, N, H, W, b.buffers(c)), backward: (dy) => conv.backward(b.k, dy, b.tensor(N * H * W * C)) };
  },
};

/** The submanifold form on the visible rows of a 2 x 5 x 6 map (about half the positions, random). */
const dwconvRows: GradCase = {
  name: 'depthwise 7x7 conv, sparse rows',
  sparseRows: true,
  build(b) {
    const N = 2, H = 5, W = 6, C = 3, K = 7;
    const rowOf = new Int32Array(N * H * W).fill(-1);
    const idx: number[] = [];
    for (let p = 0; p < N * H * W; p++) if (b.int(2) === 1) { rowOf[p] = idx.length; idx.push(p); }
    const S = idx.length;
    const w = b.param('weight', [C, 1, K, K]);
    const bias = b.param('bias', [C]);
    const conv = b.own(new DepthwiseConv(w, bias, C, K));
    const x = b.tensor(b.values(S * C));
    const ix = Int32Array.from(idx);
    return {
      x, params: [w, bias],
      forward: (c) => conv.forwardRows(b.k, x, rowOf, ix, N, H, W, b.buffers(c)),
      backward: (dy) => conv.backwardRows(b.k, dy, b.tensor(S * C)),
    };
  },
};

/** H x W inputs; odd ones floor: the last row or column gets no output (zero input gradient there). */
const patchConv = (H: number, W: number): GradCase => ({
  name: `patch conv 2x2/2 on ${H}x${W}`,
  build(b) {
    const N = 2, Ci = 3, Co = 4, P = 2;
    const w = b.param('weight', [Co, Ci, P, P]);
    const bias = b.param('bias', [Co]);
    const conv = b.own(new PatchConv(w, bias, Ci, Co, P));
    const x = b.tensor(b.values(N * H * W * Ci));
    return { x, params: [w, bias], forward: (c) => conv.forward(b.k, x, N, H, W, b.buffers(c)), backward: (dy) => conv.backward(b.k, dy, b.shared) };
  },
});

const grn = (offsets: Int32Array, what: string): GradCase => ({
  name: `GRN ${what} [${offsets.join(',')}]`,
  build(b) {
    const C = 5;
    const g = b.param('weight', [C]);
    const beta = b.param('bias', [C]);
    const layer = b.own(new GRN(g, beta, C));
    const x = b.tensor(b.values(offsets[offsets.length - 1] * C));
    return { x, params: [g, beta], forward: (c) => layer.forward(b.k, x, offsets, b.buffers(c)), backward: (dy) => layer.backward(b.k, dy, b.shared) };
  },
});

const gelu: GradCase = {
  name: 'GELU',
  build(b) {
    const n = 13;
    const x = b.tensor(b.values(n, 2));
    const y = b.tensor(n);
    const dx = b.tensor(n);
    return {
      x, params: [],
      forward: () => { b.k.gelu(x, y, n); return y; },
      backward: (dy) => { b.k.geluBackward(dy, x, dx, n); return dx; },
    };
  },
};

const avgPool: GradCase = {
  name: 'average pooling',
  build(b) {
    const N = 2, HW = 5, C = 3;
    const x = b.tensor(b.values(N * HW * C));
    const y = b.tensor(N * C);
    const dx = b.tensor(N * HW * C);
    return {
      x, params: [],
      forward: () => { b.k.avgPoolForward(x, N, HW, C, y); return y; },
      backward: (dy) => { b.k.avgPoolBackward(dy, N, HW, C, dx); return dx; },
    };
  },
};

/**
 * Mean softmax cross-entropy with soft targets (label smoothing 0.25 on two rows, mixed
 * labels 0.25 / 0.75 on the third); gradScale 0.5 / N, as with two accumulation steps: the gradient of 0.5 * loss.
 */
const crossEntropy: GradCase = {
  name: 'softmax cross-entropy, soft targets',
  build(b) {
    const N = 3, K = 4;
    const t = new Float32Array(N * K);
    // Sums of exactly 1 in float32 (the gradient softmax - target assumes it).
    for (let i = 0; i < 2; i++) { t.fill(0.0625, i * K, (i + 1) * K); t[i * K + i] += 0.75; }
    t[2 * K + 1] = 0.25; t[2 * K + 3] = 0.75;
    const logits = b.tensor(b.values(N * K, 2));
    const targets = b.tensor(t);
    const loss = b.tensor(1);
    const dl = b.tensor(N * K);
    return {
      x: logits, params: [], fixedDy: [0.5],
      forward: () => { b.k.softmaxCrossEntropy(logits, targets, N, K, null, loss, 1 / N); return loss; },
      backward: () => { b.k.softmaxCrossEntropy(logits, targets, N, K, dl, loss, 0.5 / N); return dl; },
    };
  },
};

/**
 * A whole block (V2: dwconv, LayerNorm, Linear+GELU, GRN, Linear, residual; V1: LayerScale
 * instead of GRN); with drop path, the per-sample draw is fixed by reseeding before each
 * forward with DROP_SEED (at rate 0.5 it keeps the first sample, x2, and drops the second).
 */
export const DROP_SEED = 2;
const block = (kind: 'v2' | 'v1', dropPath: number): GradCase => ({
  name: `${kind} block, drop path ${dropPath}`,
  depth: 'block',
  build(b) {
    const N = 2, H = 4, W = 5, C = 4, E = 4 * C;
    const shapes: [string, number[], number?, number?][] = [
      ['conv_dw.weight', [C, 1, 7, 7], 0.4], ['conv_dw.bias', [C], 0.4], ['norm.weight', [C], 0.4, 1], ['norm.bias', [C], 0.4],
      ['mlp.fc1.weight', [E, C], 0.4], ['mlp.fc1.bias', [E], 0.4],
      ...(kind === 'v2' ? [['mlp.grn.weight', [E], 0.4], ['mlp.grn.bias', [E], 0.4]] as [string, number[], number][] : []),
      ['mlp.fc2.weight', [C, E], 0.4], ['mlp.fc2.bias', [C], 0.4],
      ...(kind === 'v1' ? [['gamma', [C], 0.4, 1]] as [string, number[], number, number][] : []),
    ];
    const ps = new Map(shapes.map(([n, s, sc, off]) => [n, b.param(n, s, sc, off)]));
    const blk = b.own(new Block((n) => ps.get(n)!, C, 7, 1e-6, dropPath, kind));
    const x = b.tensor(b.values(N * H * W * C));
    return {
      x, params: [...ps.values()],
      forward: (c) => blk.forward(b.k, x, N, H, W, { ...b.buffers(c), train: dropPath > 0, rng: new Rng(DROP_SEED) }),
      backward: (dy) => blk.backward(b.k, dy, b.shared),
      dispose: () => blk.mlp.dispose(),
    };
  },
});

/**
 * The whole model (one block a stage, dims 3..6, 3 classes) on an N x H x W x 3 input:
 * 33 x 38 floors odd sizes in the stem (33 -> 8) and a downsampling (9 -> 4). Every parameter
 * random: weights N(0, 1 / fan_in) (the official 0.02 std shrinks the gradients of the early
 * layers to 1e-7, below any absolute tolerance), norms' weights 1 + 0.3 N(0, 1), GRN and biases
 * 0.3 N(0, 1) (a fresh GRN is the identity, and gamma's gradient paths are zero).
 */
const model = (H: number, W: number): GradCase => ({
  name: `model on ${H}x${W}`,
  depth: 'model',
  build(b) {
    const N = 1;
    const m = new ConvNeXtV2(makeConfig({ depths: [1, 1, 1, 1], dims: [3, 4, 5, 6] }, { numClasses: 3 }), { kernels: b.k, seed: 3 });
    for (const p of m.params) {
      const fanIn = p.shape.slice(1).reduce((a, d) => a * d, 1);
      const norm = p.shape.length === 1 && p.name.endsWith('.weight') && !p.name.includes('grn');
      p.write(b.k, p.shape.length > 1 ? b.values(p.size, 1 / Math.sqrt(fanIn)) : b.values(p.size, 0.3, norm ? 1 : 0));
    }
    const x = b.tensor(b.values(N * H * W * 3));
    return {
      x, params: m.params,
      forward: (c) => m.forwardNHWC(x, N, H, W, { cache: c }).logits!,
      backward: (dy) => m.backward(dy, true),
      dispose: () => m.dispose(),
    };
  },
});

/** Every case, by name (the finite differences check each; every backend is compared on each). */
export const CASES = {
  linear: linear(false), linearGelu: linear(true), layerNorm, dwconv, dwconvRows, patchConv: patchConv(9, 7),
  grnPerImage: grn(GRN.perImage(2, 6), 'per image'), grnSegments: grn(Int32Array.from([0, 3, 4, 11]), 'uneven segments'),
  gelu, avgPool, crossEntropy,
  blockV2: block('v2', 0), blockV2Drop: block('v2', 0.5), blockV1: block('v1', 0), blockV1Drop: block('v1', 0.5),
  model: model(33, 38),
} satisfies Record<string, GradCase>;

/**
 * The same layers on sizes the patches divide (no floored border), for backends that refuse
 * others (wasm): the comparison with the float64 reference only (the code checked by finite
 * differences on the odd sizes).
 */
export const EVEN_CASES = { patchConv: patchConv(8, 6), model: model(32, 64) } satisfies Record<string, GradCase>;

/**
 * Float32 backends against the float64 reference, per element: |got - want| <= rtol |want| +
 * atol max |want| (max over the tensor), by how many float32 kernels the gradient went through
 * (see test/gradcheck.test.ts for the numbers measured).
 */
export const FLOAT32_TOL = {
  layer: { rtol: 1e-5, atol: 1e-6 },
  block: { rtol: 1e-4, atol: 1e-5 },
  model: { rtol: 1e-4, atol: 1e-4 },
};

/**
 * Registers one test per case (default: CASES) comparing backend kernels(t)'s gradients with the
 * float64 reference's, every element (FLOAT32_TOL by the case's depth). kernels(t) returns null after t.skip (no
 * device); `skip` gives a reason to skip a case; sparse-row cases are skipped where the backend
 * lacks those kernels. `use` runs before each (a native path).
 */
export function referenceComparisonTests(label: string, kernels: (t: TestContext) => Kernels | null,
  { use = () => {}, skip = () => null, cases = Object.values(CASES) }:
  { use?: () => void; skip?: (c: GradCase) => string | null; cases?: GradCase[] } = {}): void {
  for (const c of cases) {
    const reason = skip(c);
    test(`${label}: ${c.name}: every gradient element matches the float64 reference`, reason ? { skip: reason } : {}, async (t) => {
      const k = kernels(t);
      if (!k) return;
      if (c.sparseRows && !k.capabilities().sparseRows) return t.skip(`${label} has no sparse row kernels`);
      use();
      await assertMatchesReference64(c, k, label, FLOAT32_TOL[c.depth ?? 'layer']);
    });
  }
}
