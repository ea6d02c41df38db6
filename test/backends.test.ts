// Backends are created explicitly, by the registry, and nothing else loads one: importing the
// package loads no native addon (.node), no WebAssembly module and no GPU; `createBackend`
// loads exactly what it names; a model is refused without one (no process-wide default).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { makeConfig } from '../src/model/config.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { FCMAE } from '../src/fcmae/fcmae.js';
import { cpu } from './backend.js';

const ROOT = new URL('..', import.meta.url).pathname;

/** Runs an ES module snippet in a fresh Node at the package root; returns what it printed as JSON. */
function probe(body: string): { dlopen: string[]; wasm: number; mapped: string[]; extra?: unknown } {
  const src = `
    const dlopen = [];
    const orig = process.dlopen;
    process.dlopen = function (m, file, ...rest) { dlopen.push(file); return orig.call(this, m, file, ...rest); };
    let wasm = 0;
    for (const k of ['compile', 'instantiate', 'compileStreaming', 'instantiateStreaming']) {
      const f = WebAssembly[k];
      if (f) WebAssembly[k] = (...a) => { wasm++; return f.apply(WebAssembly, a); };
    }
    const M = WebAssembly.Module;
    WebAssembly.Module = function (...a) { wasm++; return new M(...a); };
    const { readFileSync } = await import('node:fs');
    const mapped = () => [...new Set(readFileSync('/proc/self/maps', 'utf8').split('\\n').map((l) => l.trim().split(/\\s+/).slice(5).join(' ')).filter((f) => /\\.node$/.test(f)))];
    let extra;
    ${body}
    console.log(JSON.stringify({ dlopen, wasm, mapped: mapped(), extra }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', src], {
    cwd: ROOT, encoding: 'utf8', env: { ...process.env, CONVNEXTV2_KERNELS: undefined, CONVNEXTV2_ISA: undefined },
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { dlopen: string[]; wasm: number; mapped: string[]; extra?: unknown };
}

test("import('convnextv2') loads no .node file, no WebAssembly module and no GPU package", () => {
  const r = probe(`const lib = await import('convnextv2'); extra = typeof lib.createBackend;`);
  assert.equal(r.extra, 'function', 'the package resolved to its own dist/index.js');
  assert.deepEqual(r.dlopen, [], 'no addon was dlopened');
  assert.deepEqual(r.mapped.filter((f) => f.includes('convnextv2') || f.includes('sharp') || f.includes('webgpu') || f.includes('mpi')), [], 'no .node mapped');
  assert.equal(r.wasm, 0, 'no WebAssembly module compiled');
});

test("the probe sees a load: createBackend('native') dlopens the addon, and only that", () => {
  const r = probe(`const lib = await import('convnextv2'); const k = await lib.createBackend('native'); extra = k.name;`);
  assert.equal(r.extra, 'native');
  assert.equal(r.dlopen.length, 1, `one addon: ${r.dlopen.join(', ')}`);
  assert.match(r.dlopen[0], /convnextv2\.node$/);
  assert.equal(r.wasm, 0);
});

test('the CLI loads no kernels for a command that computes nothing (inspect)', () => {
  const r = probe(`
    process.argv = [process.argv[0], 'main.js', 'inspect', '--checkpoint', '${join(ROOT, 'test/fixtures/reference/small_official.pt')}', '--json'];
    const w = process.stdout.write.bind(process.stdout); let out = '';
    process.stdout.write = (s) => { out += s; return true; };
    await import('${join(ROOT, 'dist/cli/main.js')}');
    await new Promise((r) => setTimeout(r, 200));
    process.stdout.write = w;
    extra = out.trim().split('\\n').pop().slice(0, 1);`);
  assert.equal(r.extra, '{', 'inspect printed its JSON');
  assert.deepEqual(r.dlopen, [], 'inspect dlopened nothing');
});

test('a model or FCMAE without a backend is one clear error, not a hidden default', () => {
  const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 3 });
  assert.throws(() => new ConvNeXtV2(cfg, undefined as never), /ConvNeXtV2: no backend given: pass \{ kernels: await createBackend\('cpu'\) \}/);
  assert.throws(() => new ConvNeXtV2(cfg, { seed: 1 } as never), /ConvNeXtV2: no backend given/);
  assert.throws(() => new FCMAE(makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }), { decoderDim: 16 }, {} as never), /FCMAE: no backend given/);
  assert.equal(new ConvNeXtV2(cfg, { kernels: cpu }).kernels, cpu);
});
