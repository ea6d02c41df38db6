/**
 * The op table: every kernel of the Kernels interface declared once, with named arguments (kind,
 * whether null is allowed, the elements each tensor must hold as a function of the sizes), the
 * rules that tie them together, its profiler label and its FLOP count. `validateOp` is the one
 * validator: the registry (index.ts) puts it in front of every backend it makes, and the native
 * and wasm kernels in front of themselves however they are made, so native, wasm, webgpu and
 * the reference refuse the same calls with the same one-line message (`<op>: <argument> <why>`).
 * The compiled ops' bindings (native/ops.h) check only the kinds of the values: the sizes checked
 * here are what keeps the native kernels inside their arrays.
 *
 * Argument kinds: `bool`; `int` (an integer >= 0); `num` (any number); `in` / `out` / `inout`
 * (a float32 tensor: a host Float32Array or the backend's DeviceTensor); `idx` (masks, gathers,
 * segment offsets: a host Int32Array, or an index table of the backend, checked by its host
 * values); `mask` (a host Float32Array); `extras` (gemm's
 * GemmExtras object). A trailing `?` allows null (and, for the last arguments, absence).
 */
import { ConvNextError } from '../errors.js';
import type { Kernels } from './types.js';

export type ArgKind = 'bool' | 'int' | 'num' | 'in' | 'out' | 'inout' | 'idx' | 'mask' | 'extras';

export interface ArgSpec {
  name: string;
  kind: ArgKind;
  nullable: boolean;
}

/** The arguments of one call by name (the positional call mapped through the op's ArgSpecs). */
export type OpArgs = Record<string, unknown>;
type Sizes = Record<string, number>;
/** The named arguments as the rules read them: sizes and flags as numbers, tensors through casts. */
type A = Readonly<Record<string, number>>;

export interface OpSpec {
  name: string;
  args: ArgSpec[];
  /** The elements each tensor argument needs (absent: any length, e.g. a whole buffer). */
  sizes?: (a: A) => Sizes;
  /** Rules beyond kinds and sizes; returns why the call is wrong, or null. */
  check?: (a: A) => string | null;
  /** The profiler's row (default: the op's name). */
  label?: (a: A) => string;
  /** Floating-point operations of the call (multiply-add = 2), for GFLOP/s in profiles. */
  flops?: (a: A) => number;
}

/** Elements spanned by a rows x cols matrix with row stride ld. */
const extent = (rows: number, cols: number, ld: number) => (rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0);

function parse(sig: string): ArgSpec[] {
  return sig.trim().split(/\s+/).map((s) => {
    const [name, k] = s.split(':');
    const nullable = k.endsWith('?');
    return { name, kind: (nullable ? k.slice(0, -1) : k) as ArgKind, nullable };
  });
}

const nhwc = (a: A) => a.N * a.H * a.W * a.C;
const taps = (a: A) => a.K * a.K * a.C;
const oddK = (a: A) => (a.K >= 1 && a.K % 2 === 1 ? null : 'K must be a positive odd integer');

/** Segments of GRN: offsets[0] == 0, non-decreasing; S = offsets.length - 1 segments over offsets[S] rows. */
function segments(a: A): string | null {
  const o = a.offsets as unknown as Int32Array;
  if (o.length < 1) return 'offsets must hold at least one entry';
  if (o[0] !== 0) return `offsets must start at 0 (got ${o[0]})`;
  for (let i = 1; i < o.length; i++) if (o[i] < o[i - 1]) return `offsets must be non-decreasing (offsets[${i}] = ${o[i]} < ${o[i - 1]})`;
  return null;
}
const segRows = (a: A) => {
  const o = a.offsets as unknown as Int32Array;
  return o.length ? o[o.length - 1] : 0;
};
const segCount = (a: A) => Math.max(0, (a.offsets as unknown as Int32Array).length - 1);

/** Every idx value in [lo, hi) (or negative, where `negative` allows it). */
function indicesIn(idx: Int32Array, hi: number, name: string, negative: boolean): string | null {
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i];
    if (v >= hi || (!negative && v < 0)) return `${name}[${i}] = ${v} is outside [0, ${hi})`;
  }
  return null;
}

/** The sparse rows kernels: idx [S] dense positions in [0, N*H*W), rowOf [N*H*W]. */
function rowsCheck(a: A): string | null {
  const k = oddK(a);
  if (k) return k;
  const idx = a.idx as unknown as Int32Array;
  return indicesIn(idx.subarray(0, Math.min(idx.length, a.S)), a.N * a.H * a.W, 'idx', false);
}

const op = (name: string, sig: string, rest: Omit<OpSpec, 'name' | 'args'> = {}): OpSpec => ({ name, args: parse(sig), ...rest });

export const OPS: readonly OpSpec[] = [
  op('gemm', 'transA:bool transB:bool M:int N:int K:int A:in lda:int B:in ldb:int C:out ldc:int accumulate:bool bias:in? act:int preact:out? extras:extras?', {
    sizes: (a) => {
      const e = (a.extras ?? {}) as unknown as { aScale?: unknown; aScaleRows?: number; sqGroupRows?: number };
      const aRows = a.transA ? a.K : a.M, aCols = a.transA ? a.M : a.K;
      const bRows = a.transB ? a.N : a.K, bCols = a.transB ? a.K : a.N;
      const out = extent(a.M, a.N, a.ldc);
      return {
        A: extent(aRows, aCols, a.lda), B: extent(bRows, bCols, a.ldb), C: out, bias: a.N, preact: out, residual: out,
        aScale: Math.ceil(a.M / (e.aScaleRows ?? 1)) * a.K, aShift: a.K, sqSums: Math.floor(a.M / (e.sqGroupRows ?? 1)) * a.N,
      };
    },
    check: (a) => {
      const aRows = a.transA ? a.K : a.M, aCols = a.transA ? a.M : a.K;
      const bRows = a.transB ? a.N : a.K, bCols = a.transB ? a.K : a.N;
      if (aRows > 0 && aCols > 0 && a.lda < aCols) return `lda must be >= ${aCols}`;
      if (bRows > 0 && bCols > 0 && a.ldb < bCols) return `ldb must be >= ${bCols}`;
      if (a.M > 0 && a.N > 0 && a.ldc < a.N) return 'ldc must be >= N';
      if (a.act !== 0 && a.act !== 1) return 'act must be 0 (none) or 1 (gelu)';
      if (a.accumulate && a.act === 1) return 'accumulate and GELU cannot be combined';
      const e = a.extras as unknown as { aScale?: unknown; aScaleRows?: number; residual?: unknown; sqSums?: unknown; sqGroupRows?: number } | null | undefined;
      if (!e) return null;
      if (e.aScale != null) {
        if (a.transA) return 'aScale needs A not transposed';
        if (e.aScaleRows !== undefined && !(Number.isInteger(e.aScaleRows) && e.aScaleRows >= 1)) return 'aScaleRows must be an integer >= 1';
      }
      if (e.residual != null && a.accumulate) return 'residual and accumulate cannot be combined';
      if (e.sqSums != null) {
        const g = e.sqGroupRows ?? 1;
        if (!(Number.isInteger(g) && g >= 1)) return 'sqGroupRows must be an integer >= 1';
        if (a.M % g !== 0) return 'sqGroupRows must divide M';
      }
      return null;
    },
    label: (a) => {
      const e = a.extras as unknown as { aScale?: unknown; residual?: unknown } | null | undefined;
      if (a.transA) return 'gemm (weight grad)';
      if (e?.aScale) return 'gemm (GRN folded, residual)';
      if (a.accumulate || e?.residual) return 'gemm (residual/accumulate)';
      return a.act === 1 ? 'gemm+gelu' : 'gemm';
    },
    flops: (a) => 2 * a.M * a.N * a.K,
  }),
  op('colSum', 'x:in M:int N:int out:out accumulate:bool', { sizes: (a) => ({ x: a.M * a.N, out: a.N }), flops: (a) => a.M * a.N }),
  op('dwconvForward', 'x:in N:int H:int W:int C:int K:int weight:in bias:in? y:out', {
    sizes: (a) => ({ x: nhwc(a), weight: taps(a), bias: a.C, y: nhwc(a) }), check: oddK, flops: (a) => 2 * nhwc(a) * a.K * a.K,
  }),
  op('dwconvBackwardInput', 'dy:in N:int H:int W:int C:int K:int weight:in dx:out accumulate:bool', {
    sizes: (a) => ({ dy: nhwc(a), weight: taps(a), dx: nhwc(a) }), check: oddK, flops: (a) => 2 * nhwc(a) * a.K * a.K,
  }),
  op('dwconvBackwardWeight', 'dy:in x:in N:int H:int W:int C:int K:int dweight:inout dbias:inout?', {
    sizes: (a) => ({ dy: nhwc(a), x: nhwc(a), dweight: taps(a), dbias: a.C }), check: oddK, flops: (a) => 2 * nhwc(a) * a.K * a.K,
  }),
  op('dwconvForwardRows', 'x:in rowOf:idx idx:idx S:int N:int H:int W:int C:int K:int weight:in bias:in? y:out', {
    sizes: (a) => ({ x: a.S * a.C, rowOf: a.N * a.H * a.W, idx: a.S, weight: taps(a), bias: a.C, y: a.S * a.C }),
    check: rowsCheck, flops: (a) => 2 * a.S * a.C * a.K * a.K,
  }),
  op('dwconvBackwardInputRows', 'dy:in rowOf:idx idx:idx S:int N:int H:int W:int C:int K:int weight:in dx:out accumulate:bool', {
    sizes: (a) => ({ dy: a.S * a.C, rowOf: a.N * a.H * a.W, idx: a.S, weight: taps(a), dx: a.S * a.C }),
    check: rowsCheck, flops: (a) => 2 * a.S * a.C * a.K * a.K,
  }),
  op('dwconvBackwardWeightRows', 'dy:in x:in rowOf:idx idx:idx S:int N:int H:int W:int C:int K:int dweight:inout dbias:inout?', {
    sizes: (a) => ({ dy: a.S * a.C, x: a.S * a.C, rowOf: a.N * a.H * a.W, idx: a.S, dweight: taps(a), dbias: a.C }),
    check: rowsCheck, flops: (a) => 2 * a.S * a.C * a.K * a.K,
  }),
  op('layerNormForward', 'x:in M:int C:int gamma:in beta:in eps:num y:out mean:out rstd:out', {
    sizes: (a) => ({ x: a.M * a.C, gamma: a.C, beta: a.C, y: a.M * a.C, mean: a.M, rstd: a.M }), flops: (a) => 8 * a.M * a.C,
  }),
  op('layerNormBackward', 'dy:in x:in mean:in rstd:in gamma:in M:int C:int dx:out accumulate:bool dgamma:inout dbeta:inout', {
    sizes: (a) => ({ dy: a.M * a.C, x: a.M * a.C, mean: a.M, rstd: a.M, gamma: a.C, dx: a.M * a.C, dgamma: a.C, dbeta: a.C }), flops: (a) => 12 * a.M * a.C,
  }),
  op('grnForward', 'x:in offsets:idx C:int gamma:in beta:in eps:num y:out? gx:out nx:out sqSums:in?', {
    sizes: (a) => ({ x: segRows(a) * a.C, gamma: a.C, beta: a.C, y: segRows(a) * a.C, gx: segCount(a) * a.C, nx: segCount(a) * a.C, sqSums: segCount(a) * a.C }),
    check: segments, flops: (a) => 5 * segRows(a) * a.C,
  }),
  op('grnBackward', 'dy:in x:in offsets:idx C:int gamma:in eps:num gx:in nx:in dx:out dgamma:inout dbeta:inout geluPre:in? dbias:inout?', {
    sizes: (a) => ({
      dy: segRows(a) * a.C, x: segRows(a) * a.C, gamma: a.C, gx: segCount(a) * a.C, nx: segCount(a) * a.C, dx: segRows(a) * a.C,
      dgamma: a.C, dbeta: a.C, geluPre: segRows(a) * a.C, dbias: a.C,
    }),
    check: segments, label: (a) => (a.geluPre ? 'grnBackward+gelu' : 'grnBackward'), flops: (a) => 10 * segRows(a) * a.C,
  }),
  op('gelu', 'x:in y:out n:int', { sizes: (a) => ({ x: a.n, y: a.n }) }),
  op('geluBackward', 'dy:in x:in dx:out n:int', { sizes: (a) => ({ dy: a.n, x: a.n, dx: a.n }) }),
  op('avgPoolForward', 'x:in N:int HW:int C:int y:out', { sizes: (a) => ({ x: a.N * a.HW * a.C, y: a.N * a.C }) }),
  op('avgPoolBackward', 'dy:in N:int HW:int C:int dx:out', { sizes: (a) => ({ dy: a.N * a.C, dx: a.N * a.HW * a.C }) }),
  op('softmaxCrossEntropy', 'logits:in targets:in N:int K:int dlogits:out? loss:out gradScale:num', {
    sizes: (a) => ({ logits: a.N * a.K, targets: a.N * a.K, dlogits: a.N * a.K, loss: 1 }),
  }),
  op('patchify', 'x:in N:int H:int W:int C:int P:int cols:out', {
    sizes: (a) => ({ x: nhwc(a), cols: a.P >= 1 ? a.N * Math.floor(a.H / a.P) * Math.floor(a.W / a.P) * a.C * a.P * a.P : 0 }),
    check: (a) => (a.P >= 1 ? null : 'P must be an integer >= 1'),
  }),
  op('unpatchify', 'dcols:in N:int H:int W:int C:int P:int dx:out', {
    sizes: (a) => ({ dx: nhwc(a), dcols: a.P >= 1 ? a.N * Math.floor(a.H / a.P) * Math.floor(a.W / a.P) * a.C * a.P * a.P : 0 }),
    check: (a) => (a.P >= 1 ? null : 'P must be an integer >= 1'),
  }),
  op('nchwToNhwc', 'src:in N:int C:int H:int W:int dst:out', { sizes: (a) => ({ src: nhwc(a), dst: nhwc(a) }) }),
  op('nhwcToNchw', 'src:in N:int H:int W:int C:int dst:out', { sizes: (a) => ({ src: nhwc(a), dst: nhwc(a) }) }),
  op('addScaled', 'x:in branch:in scale:in N:int rowsPerSample:int C:int out:out', {
    sizes: (a) => ({ x: a.N * a.rowsPerSample * a.C, branch: a.N * a.rowsPerSample * a.C, scale: a.N, out: a.N * a.rowsPerSample * a.C }),
  }),
  op('adamw', 'p:inout g:in m:inout v:inout n:int lr:num beta1:num beta2:num eps:num weightDecay:num bc1:num bc2:num', {
    sizes: (a) => ({ p: a.n, g: a.n, m: a.n, v: a.n }),
    check: (a) => (a.bc1 > 0 && a.bc1 <= 1 ? (a.bc2 > 0 && a.bc2 <= 1 ? null : 'bc2 must be in (0, 1]') : 'bc1 must be in (0, 1]'),
    flops: (a) => 12 * a.n,
  }),
  op('write', 'dst:out src:mask offset:int?', {
    check: (a) => ((a.offset ?? 0) + (a.src as unknown as Float32Array).length <= (a.dst as unknown as { length: number }).length ? null : 'src does not fit in dst at offset'),
  }),
  op('fill', 't:out value:num'),
  op('copy', 'src:in dst:out', { check: (a) => ((a.dst as unknown as { length: number }).length >= (a.src as unknown as { length: number }).length ? null : 'dst is shorter than src') }),
  op('transpose', 'src:in B:int R:int C:int dst:out accumulate:bool', { sizes: (a) => ({ src: a.B * a.R * a.C, dst: a.B * a.R * a.C }) }),
  op('scaleRows', 'x:in R:int C:int s:in out:out accumulate:bool', { sizes: (a) => ({ x: a.R * a.C, s: a.R, out: a.R * a.C }) }),
  op('rowDot', 'a:in b:in R:int C:int out:out accumulate:bool', { sizes: (a) => ({ a: a.R * a.C, b: a.R * a.C, out: a.R }) }),
  op('scale', 'x:inout n:int s:num', { sizes: (a) => ({ x: a.n }) }),
  op('sumSquares', 'x:in n:int out:out accumulate:bool', { sizes: (a) => ({ x: a.n, out: 1 }) }),
  op('clipByNorm', 'x:inout n:int sumSq:in maxNorm:num', { sizes: (a) => ({ x: a.n, sumSq: 1 }) }),
  op('grnScale', 'nx:in S:int C:int gamma:in out:out', { sizes: (a) => ({ nx: a.S * a.C, gamma: a.C, out: a.S * a.C }) }),
  op('gatherRows', 'src:in idx:idx C:int dst:out', {
    sizes: (a) => ({ dst: (a.idx as unknown as Int32Array).length * a.C }),
    check: (a) => (a.C >= 1 ? indicesIn(a.idx as unknown as Int32Array, Math.floor((a.src as unknown as { length: number }).length / a.C), 'idx', true) : 'C must be >= 1'),
  }),
  op('scatterRows', 'src:in idx:idx C:int dst:out', {
    sizes: (a) => ({ src: (a.idx as unknown as Int32Array).length * a.C }),
    check: (a) => (a.C >= 1 ? indicesIn(a.idx as unknown as Int32Array, Math.floor((a.dst as unknown as { length: number }).length / a.C), 'idx', true) : 'C must be >= 1'),
  }),
  op('fcmaeLoss', 'x:in N:int H:int W:int C:int p:int norm:bool pred:in mask:mask target:out dpred:out loss:out patchStats:out?', {
    sizes: (a) => {
      const L = a.p >= 1 ? Math.floor(a.H / a.p) * Math.floor(a.W / a.p) : 0;
      const P = a.p * a.p * a.C;
      return { x: nhwc(a), pred: a.N * L * P, mask: a.N * L, target: a.N * L * P, dpred: a.N * L * P, loss: 1, patchStats: a.N * L * 2 };
    },
    check: (a) => (a.p >= 1 && a.H % a.p === 0 && a.W % a.p === 0 ? null : `${a.H}x${a.W} is not a multiple of the patch ${a.p}`),
  }),
  op('smoothTargets', 'labels:idx N:int K:int smoothing:num out:out', {
    sizes: (a) => ({ labels: a.N, out: a.N * a.K }),
    check: (a) => indicesIn((a.labels as unknown as Int32Array).subarray(0, a.N), a.K, 'labels', false),
  }),
  op('ema', 'shadow:inout w:in n:int decay:num', { sizes: (a) => ({ shadow: a.n, w: a.n }), flops: (a) => 3 * a.n }),
];

/**
 * The ops the C++ kernels implement: native/ops.h lists the same names (CNX_OPS, in this order)
 * with functions that take the op's arguments in the table's order, and both bindings (N-API,
 * wasm) are made from that list by the parameter types. NativeKernels and WasmKernels forward
 * each to it unchanged; {@link compiledSignature} is what each must declare (checked when a
 * backend is created, so a stale build fails with a clear message). gemm is bound by hand.
 */
export const COMPILED_OPS = [
  'colSum', 'dwconvForward', 'dwconvBackwardInput', 'dwconvBackwardWeight', 'dwconvForwardRows', 'dwconvBackwardInputRows',
  'dwconvBackwardWeightRows', 'layerNormForward', 'layerNormBackward', 'grnForward', 'grnBackward', 'gelu', 'geluBackward',
  'avgPoolForward', 'avgPoolBackward', 'patchify', 'unpatchify', 'nchwToNhwc', 'nhwcToNchw', 'addScaled', 'adamw',
] as const satisfies readonly (keyof Kernels)[];
export type CompiledOp = (typeof COMPILED_OPS)[number];

/**
 * The inner call of softmaxCrossEntropy, compiled too (host.ts's crossEntropy: it returns the
 * mean loss): not a Kernels op, so declared here beside the table.
 */
export const CROSS_ENTROPY: OpSpec = {
  name: 'crossEntropy', args: parse('logits:in targets:in N:int K:int dlogits:out?'),
  sizes: (a) => ({ logits: a.N * a.K, targets: a.N * a.K, dlogits: a.N * a.K }),
};

const CPP_KIND: Record<ArgKind, string> = { in: 'i', out: 'o', inout: 'o', idx: 'x', int: 'n', num: 'f', bool: 'b', mask: '?', extras: '?' };

/** The C++ signature an op's compiled function must have: one character per argument (native/ops.h). */
export function compiledSignature(spec: OpSpec): string {
  return spec.args.map((a) => CPP_KIND[a.kind]).join('');
}

/** Why a build's compiled ops (name -> signature) do not match the table, or null. */
export function compiledMismatch(signatures: Readonly<Record<string, string>>): string | null {
  for (const spec of [...COMPILED_OPS.map((n) => OP_BY_NAME.get(n)!), CROSS_ENTROPY]) {
    const have = signatures[spec.name];
    if (have === undefined) return `it has no op ${spec.name}`;
    if (have !== compiledSignature(spec)) return `its ${spec.name} takes (${have}), the op table says (${compiledSignature(spec)})`;
  }
  return null;
}

export const OP_BY_NAME: ReadonlyMap<string, OpSpec> = new Map(OPS.map((o) => [o.name, o]));

function isTensor(v: unknown): boolean {
  if (v instanceof Float32Array) return true;
  return typeof v === 'object' && v !== null && typeof (v as { device?: unknown }).device === 'string' && typeof (v as { length?: unknown }).length === 'number';
}

function isDeviceIndex(v: unknown): boolean {
  return typeof v === 'object' && v !== null && typeof (v as { device?: unknown }).device === 'string' && (v as { values?: unknown }).values instanceof Int32Array;
}

/** An index argument as the rules read it: its host values. */
function idxArg(v: unknown): unknown {
  return isDeviceIndex(v) ? (v as { values: Int32Array }).values : v;
}

/** The positional arguments of a call by name. */
export function namedArgs(spec: OpSpec, args: readonly unknown[]): OpArgs {
  const out: OpArgs = {};
  spec.args.forEach((s, i) => (out[s.name] = args[i]));
  return out;
}

// One reusable record of named arguments per op, so a check allocates nothing (0.4 us a call,
// against 0.85 with a fresh record and 2 with Object.entries): validation runs to its end before
// the kernel (which may call other ops) starts, so a record is never in use twice. It keeps the
// last call's arguments of each op referenced until the next call (views, a bounded set).
const scratch = new Map<OpSpec, OpArgs>();

/** Why the call is wrong (`<op>: <argument> <why>`), or null. */
export function opError(spec: OpSpec, args: readonly unknown[]): string | null {
  let named = scratch.get(spec);
  if (!named) scratch.set(spec, (named = {}));
  const specs = spec.args;
  // Index tables are checked by their host values (DeviceIndex.values).
  for (let i = 0; i < specs.length; i++) named[specs[i].name] = specs[i].kind === 'idx' ? idxArg(args[i]) : args[i];
  return check(spec, args, named as unknown as A);
}

function check(spec: OpSpec, args: readonly unknown[], a: A): string | null {
  const specs = spec.args;
  for (let i = 0; i < specs.length; i++) {
    const s = specs[i];
    const v: unknown = args[i];
    if (v === null || v === undefined) {
      if (s.nullable) continue;
      return `${s.name} is missing`;
    }
    switch (s.kind) {
      case 'bool':
        if (typeof v !== 'boolean') return `${s.name} must be a boolean`;
        break;
      case 'int':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return `${s.name} must be an integer >= 0, got ${String(v)}`;
        break;
      case 'num':
        if (typeof v !== 'number') return `${s.name} must be a number`;
        break;
      case 'idx':
        if (!(v instanceof Int32Array) && !isDeviceIndex(v)) return `${s.name} must be an Int32Array or an index table`;
        break;
      case 'mask':
        if (!(v instanceof Float32Array)) return `${s.name} must be a Float32Array on the host`;
        break;
      case 'extras':
        if (typeof v !== 'object') return `${s.name} must be an object`;
        break;
      default:
        if (!isTensor(v)) return `${s.name} must be a Float32Array or a backend tensor${s.nullable ? ' (or null)' : ''}`;
    }
  }
  const rule = spec.check?.(a) ?? null;
  if (rule) return rule;
  if (!spec.sizes) return null;
  const need = spec.sizes(a);
  const extras = (a.extras ?? null) as unknown as Record<string, unknown> | null;
  for (const name in need) {
    const own = name in a;
    const v = (own ? a[name] : extras?.[name]) as unknown as { length?: number } | null | undefined;
    if (v === null || v === undefined) continue;
    if (!own && !isTensor(v)) return `${name} must be a Float32Array or a backend tensor`;
    const n = need[name];
    if ((v.length ?? 0) < n) return `${name} is too short: needs ${n} elements, has ${v.length}`;
  }
  return null;
}

/** Throws the call's error as one line, exit code 1 (bad input to a kernel). */
export function validateOp(spec: OpSpec, args: readonly unknown[]): void {
  const e = opError(spec, args);
  if (e) throw new ConvNextError(`${spec.name}: ${e}`);
}

const CHECKED = Symbol('convnextv2.checked');

/**
 * `k` with every op of the table validated before it runs (the instance's methods are wrapped
 * in place; the backend's own code, and its internal calls, are unchanged). Idempotent.
 */
export function withChecks<K extends Kernels>(k: K): K {
  const target = k as K & { [CHECKED]?: true } & Record<string, unknown>;
  if (target[CHECKED]) return k;
  for (const spec of OPS) {
    const f = target[spec.name] as ((...a: unknown[]) => unknown) | undefined;
    if (typeof f !== 'function') continue;
    const inner = f.bind(k);
    Object.defineProperty(target, spec.name, {
      configurable: true, writable: true, enumerable: false,
      value: (...args: unknown[]) => {
        validateOp(spec, args);
        return inner(...args);
      },
    });
  }
  Object.defineProperty(target, CHECKED, { value: true });
  return k;
}
