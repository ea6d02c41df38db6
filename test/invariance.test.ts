// Thread and ISA invariance of what users compare across machines: evaluation logits, and
// the sparse FCMAE loss and every gradient. For each instruction-set path this CPU has, 1, 2,
// 3 and 5 threads give the same bits (reductions run in a fixed order whatever the thread
// count); the paths agree with each other and with the TypeScript reference within 1e-4.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { FCMAE } from '../src/fcmae/fcmae.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { NativeKernels, nativeAvailable } from '../src/kernels/native.js';
import type { Kernels } from '../src/kernels/types.js';
import { makeConfig } from '../src/model/config.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { Rng } from '../src/rng.js';
import { bits, relErr } from './helpers.js';
import { cpu } from './backend.js';

assert.ok(nativeAvailable(), 'the native addon must load (build it with npm run build)');
const nk = new NativeKernels();
const ISAS = nk.supportedIsas();
const THREADS = [1, 2, 3, 5];
const before = { isa: nk.isa, threads: nk.threads };
after(() => {
  nk.setIsa(before.isa as 'avx512' | 'avx2' | 'portable');
  nk.setThreads(before.threads);
});

const rng = new Rng(2024);
const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => rng.normal() * s);

/** Runs `f` with the reference kernels, then each ISA at each thread count; checks bits per ISA and closeness across. */
async function invariant(what: string, f: (k: Kernels) => Map<string, Float32Array> | Promise<Map<string, Float32Array>>): Promise<void> {
  const want = await f(new ReferenceKernels());
  for (const isa of ISAS) {
    nk.setIsa(isa);
    let first: Map<string, Float32Array> | null = null;
    for (const t of THREADS) {
      nk.setThreads(t);
      const got = await f(nk);
      if (!first) {
        first = got;
        for (const [name, w] of want) assert.ok(relErr(got.get(name)!, w) <= 1e-4, `${what} ${isa}: ${name} vs reference ${relErr(got.get(name)!, w)}`);
        continue;
      }
      for (const [name, a] of first) assert.deepEqual(bits(got.get(name)!), bits(a), `${what} ${isa}: ${name} with ${t} threads differs from 1 thread`);
    }
  }
}

test('evaluation logits: bit-identical for 1, 2, 3, 5 threads on every ISA; ISAs agree with the reference', async () => {
  const cfg = makeConfig({ depths: [1, 1, 2, 1], dims: [24, 48, 72, 96] }, { numClasses: 11 });
  const state = await new ConvNeXtV2(cfg, { kernels: cpu, seed: 4 }).stateDict();
  // Non-trivial GRN and biases, so every term of the block counts.
  for (const [name, t] of state) if (/grn|bias/.test(name)) t.data.set(randn(t.data.length, 0.3));
  const x = { shape: [4, 3, 96, 80], data: randn(4 * 3 * 96 * 80) };
  await invariant('eval', async (k) => {
    const m = new ConvNeXtV2(cfg, { kernels: k });
    m.loadStateDict(state);
    const out = await m.forward(x);
    return new Map([['logits', out.logits!.data], ['pre_logits', out.preLogits.data]]);
  });
});

test('sparse FCMAE loss and every gradient: bit-identical for 1, 2, 3, 5 threads on every ISA; ISAs agree with the reference', async () => {
  const cfg = makeConfig({ depths: [1, 2, 1, 1], dims: [16, 32, 48, 64] }, { numClasses: 0 });
  const x = { shape: [3, 3, 128, 96], data: randn(3 * 3 * 128 * 96) };
  const mask = { shape: [3, 12], data: Float32Array.from({ length: 36 }, (_, i) => ((i * 7) % 5 < 3 ? 1 : 0)) };
  let init: Map<string, Float32Array> | null = null;
  await invariant('FCMAE', async (k) => {
    const f = new FCMAE(cfg, { decoderDim: 32, normPixLoss: true }, { seed: 3, kernels: k });
    if (!init) {
      for (const p of f.params) if (/grn/.test(p.name)) p.data.set(randn(p.size, 0.5));
      init = new Map(f.params.map((p) => [p.name, Float32Array.from(p.data)]));
    } else {
      for (const p of f.params) p.data.set(init.get(p.name)!);
    }
    f.zeroGrad();
    const out = await f.forward(x, mask, { mode: 'sparse' });
    f.backward();
    const r = new Map<string, Float32Array>([['loss', Float32Array.of(out.loss)], ['pred', Float32Array.from(out.pred.data)]]);
    for (const p of f.params) if (!p.name.startsWith('head.')) r.set(`grad.${p.name}`, Float32Array.from(p.grad));
    return r;
  });
});
