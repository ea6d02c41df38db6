/**
 * What every WGSL kernel module shares: how a kernel is declared (its uniform parameters and
 * storage buffers, from which its WGSL declarations are generated so that the TypeScript side
 * packs exactly the struct the shader reads), and the math prelude (erf, GELU).
 *
 * Conventions of every kernel:
 * - Every storage buffer is bound whole, as `array<f32>` or `array<i32>`, read_write (so that
 *   views of one allocation may be bound to several arguments of one dispatch); a tensor's
 *   element offset in its buffer is a `u32` parameter (`P.oX` for buffer `x`).
 * - Workgroups are numbered linearly, `wid.x + wid.y * nwg.x` (`groupIndex`), as the grid is
 *   folded into two dimensions of at most 65535 groups.
 * - No float atomics: every reduction is sequential or a fixed tree within a workgroup.
 */

export type ParamType = 'u32' | 'i32' | 'f32';
export type ParamSpec = Readonly<Record<string, ParamType>>;
export type BufferSpec = Readonly<Record<string, 'f32' | 'i32'>>;

/** A compute kernel: its parameters (a uniform struct `P`), storage buffers (in binding order) and code. */
export interface KernelDef<Pm extends ParamSpec = ParamSpec, Bf extends BufferSpec = BufferSpec> {
  readonly name: string;
  readonly params: Pm;
  readonly buffers: Bf;
  /** WGSL: helper functions and `@compute fn main`, using the generated declarations and `WG` (the workgroup size). */
  readonly code: string;
  /** Threads per workgroup (1D), the WGSL constant `WG`. */
  readonly wg: number;
}

export function kernel<Pm extends ParamSpec, Bf extends BufferSpec>(def: KernelDef<Pm, Bf>): KernelDef<Pm, Bf> {
  return def;
}

/**
 * erf for f32 (WGSL has none): the rational minimax form of Eigen's and XLA's float erf, on x
 * clamped to [-4, 4] (erf(4) rounds to 1 in f32), x * p(x^2) / q(x^2), p of degree 6 and q of
 * degree 4 in x^2.
 * Max absolute error about 4e-7 in f32 arithmetic (test/webgpu/erf.test.ts).
 * Coefficients from the highest power down.
 */
export const ERF_NUM = [
  -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
  -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02,
] as const;
export const ERF_DEN = [
  -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
  -1.42647390514189e-02,
] as const;
export const ERF_CLAMP = 4;

/** The same formula in float32 arithmetic on the host (Math.fround after every operation), for the tests. */
export function erfF32(x0: number): number {
  const f = Math.fround;
  const x = f(Math.max(-ERF_CLAMP, Math.min(ERF_CLAMP, x0)));
  const x2 = f(x * x);
  let p = f(ERF_NUM[0]);
  for (let i = 1; i < ERF_NUM.length; i++) p = f(f(x2 * p) + f(ERF_NUM[i]));
  p = f(x * p);
  let q = f(ERF_DEN[0]);
  for (let i = 1; i < ERF_DEN.length; i++) q = f(f(x2 * q) + f(ERF_DEN[i]));
  return f(p / q);
}

function horner(v: string, coeffs: readonly number[]): string {
  const lines = [`var ${v}: f32 = ${coeffs[0].toExponential(14)};`];
  for (let i = 1; i < coeffs.length; i++) lines.push(`  ${v} = ${v} * x2 + ${coeffs[i].toExponential(14)};`);
  return lines.join('\n');
}

/** erf, exact-erf GELU and its derivative. */
export const MATH_WGSL = /* wgsl */ `
const SQRT1_2: f32 = 0.70710678118654752;
const INV_SQRT_2PI: f32 = 0.39894228040143268;

fn erf_f32(x0: f32) -> f32 {
  let x = clamp(x0, -${ERF_CLAMP}.0, ${ERF_CLAMP}.0);
  let x2 = x * x;
  ${horner('p', ERF_NUM)}
  ${horner('q', ERF_DEN)}
  return x * p / q;
}

fn gelu_f(x: f32) -> f32 {
  return 0.5 * x * (1.0 + erf_f32(x * SQRT1_2));
}

fn gelu_grad(x: f32) -> f32 {
  return 0.5 * (1.0 + erf_f32(x * SQRT1_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}
`;

/**
 * A fixed-order tree reduction over a workgroup's WG threads (one value each), as WGSL:
 * `fn NAME(lid: u32, v: T) -> T`, with its own workgroup array; every thread gets the result.
 * The tree is the same on every run, so the sums are repeatable.
 */
export function treeReduce(name: string, type: string, combine: (a: string, b: string) => string): string {
  const red = `${name}_red`;
  return /* wgsl */ `
var<workgroup> ${red}: array<${type}, WG>;

fn ${name}(lid: u32, v: ${type}) -> ${type} {
  ${red}[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { ${red}[lid] = ${combine(`${red}[lid]`, `${red}[lid + s]`)}; }
    workgroupBarrier();
  }
  let r = ${red}[0];
  workgroupBarrier();
  return r;
}
`;
}

export const SUM = (a: string, b: string): string => `${a} + ${b}`;

/** The linear workgroup index and the first thread of a grid folded into 2D. */
export const INDEX_WGSL = /* wgsl */ `
fn groupIndex(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}
`;

/**
 * The full WGSL of a kernel: its uniform struct, its buffers, the preludes and its code.
 * WebGPU forbids two writable bindings of overlapping ranges of one buffer in a dispatch, and
 * views of one allocation are common (arenas, in-place updates), so each distinct GPUBuffer is
 * bound once: `slots[i]` is the binding of the i-th declared buffer, and its indexing `name[`
 * in the code is rewritten to that binding's `bindN[` (buffer names are only ever indexed).
 */
export function assemble(def: KernelDef, slots: readonly number[]): string {
  const fields = Object.entries(def.params).map(([k, t]) => `  ${k}: ${t},`);
  if (fields.length === 0) fields.push('  _unused: u32,');
  const names = Object.keys(def.buffers);
  const count = Math.max(-1, ...slots) + 1;
  const types: string[] = new Array<string>(count);
  names.forEach((n, i) => {
    const t = def.buffers[n];
    if (types[slots[i]] !== undefined && types[slots[i]] !== t) throw new Error(`webgpu ${def.name}: one buffer bound as ${types[slots[i]]} and ${t}`);
    types[slots[i]] = t;
  });
  const decls = types.map((t, j) => `@group(0) @binding(${j}) var<storage, read_write> bind${j}: array<${t}>;`);
  let code = def.code;
  names.forEach((n, i) => {
    code = code.replace(new RegExp(`\\b${n}\\[`, 'g'), `bind${slots[i]}[`);
  });
  return [
    `const WG: u32 = ${def.wg}u;`,
    `struct Params {\n${fields.join('\n')}\n}`,
    ...decls,
    `@group(0) @binding(${count}) var<uniform> P: Params;`,
    MATH_WGSL,
    INDEX_WGSL,
    code,
  ].join('\n');
}

/** Packs parameter values into the uniform struct's bytes (every field 4 bytes, in order, size a multiple of 16). */
export function packParams(spec: ParamSpec, values: Readonly<Record<string, number>>): ArrayBuffer {
  const keys = Object.keys(spec);
  const buf = new ArrayBuffer(Math.max(16, Math.ceil((keys.length * 4) / 16) * 16));
  const dv = new DataView(buf);
  keys.forEach((k, i) => {
    const v = values[k];
    if (v === undefined) throw new Error(`webgpu: parameter ${k} missing`);
    const t = spec[k];
    if (t === 'f32') dv.setFloat32(i * 4, v, true);
    else {
      if (!Number.isInteger(v)) throw new Error(`webgpu: parameter ${k} must be an integer, got ${v}`);
      if (t === 'u32') {
        if (v < 0 || v > 0xffffffff) throw new Error(`webgpu: parameter ${k} = ${v} is outside u32`);
        dv.setUint32(i * 4, v, true);
      } else {
        if (v < -0x80000000 || v > 0x7fffffff) throw new Error(`webgpu: parameter ${k} = ${v} is outside i32`);
        dv.setInt32(i * 4, v, true);
      }
    }
  });
  return buf;
}
