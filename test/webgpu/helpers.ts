// Shared by the WebGPU kernel tests: the backend (or why there is none), deterministic random
// inputs, device tensors at odd offsets, and the error measure of test/kernels.test.ts.
import { after, type TestContext } from 'node:test';
import { createWebGPUKernels, type WebGPUKernels } from '../../src/kernels/webgpu/device.js';
import type { GpuTensor } from '../../src/kernels/webgpu/tensor.js';
import { assertClose, relErr } from '../helpers.js';
import { FCMAE } from '../../src/fcmae/fcmae.js';
import { loadCheckpoint } from '../../src/io/checkpoint_file.js';
import { readSafetensors } from '../../src/io/safetensors_file.js';
import type { Kernels } from '../../src/kernels/types.js';

const FIX = new URL('../fixtures/reference/', import.meta.url).pathname;

/** fcmae_small (the official checkpoint, encoder and decoder) on `k`, with its reference tensors. */
export function fcmaeSmall(k: Kernels) {
  const ref = readSafetensors(FIX + 'fcmae_small.safetensors');
  const ck = loadCheckpoint(FIX + 'fcmae_small_official.pt', { extra: true });
  const m = new FCMAE(ck.config, { decoderDim: ck.fcmae!.decoderDim, decoderDepth: ck.fcmae!.decoderDepth, normPixLoss: true }, { kernels: k });
  m.encoderModel.loadStateDict(ck.state);
  m.loadDecoderState(ck.extra!);
  return { m, ref, config: ck.config };
}

/** The WebGPU kernels, or null and the reason (no package, no adapter); destroyed after the file's tests. */
export async function openWebGPU(): Promise<{ k: WebGPUKernels | null; reason: string }> {
  try {
    const k = await createWebGPUKernels();
    after(() => k.destroy());
    return { k, reason: '' };
  } catch (e) {
    return { k: null, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** Skips the test when there is no backend; returns it otherwise. */
export function need(t: TestContext, g: { k: WebGPUKernels | null; reason: string }): WebGPUKernels | null {
  if (!g.k) t.skip(`no WebGPU adapter: ${g.reason}`);
  return g.k;
}

// Deterministic random numbers (mulberry32), as test/kernels.test.ts.
let seed = 12345;
export function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
export function randInt(lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}
export function rnd(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

export { relErr };

/** The fixtures' measure (test/helpers.ts), at 1e-4 by default. */
export function close(got: Float32Array, want: Float32Array, what: string, tol = 1e-4, floor = 1e-30): void {
  assertClose(got, want, tol, what, floor);
}

/**
 * A device copy of `src` at an odd offset inside a larger allocation, NaN around it (a view,
 * as the layers' arenas hand out). `pad` floats before it.
 */
export function dev(k: WebGPUKernels, src: Float32Array | number, pad = 3): GpuTensor {
  const data = typeof src === 'number' ? new Float32Array(src) : src;
  const all = k.memory.alloc(data.length + 2 * pad + 1);
  k.write(all, new Float32Array(all.length).fill(Number.NaN));
  const v = all.subarray(pad, pad + data.length);
  k.write(v, data);
  return v;
}
