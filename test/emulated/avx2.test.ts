// The native kernels on a CPU with AVX2 and no AVX-512, on any x86 machine: valgrind runs the
// code on its own CPU model, whose cpuid has AVX2 and FMA but not AVX-512, and stops a process
// with SIGILL at the first AVX-512 instruction (as such a CPU would). `npm run test:emulated`;
// needs valgrind (apt-get install -y valgrind). Runs:
// - the entry-point checks of test/isa_checks.ts: AVX-512 must be refused, never entered;
// - the model against timm (forward and every gradient) and FCMAE against the official code
//   on the default kernels there (AVX2): exact on that kind of machine too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, child, isaChecks, runNode } from '../isa_checks.js';

const VALGRIND = ['valgrind', '--tool=none', '-q'];
const have = spawnSync('valgrind', ['--version'], { encoding: 'utf8' });
assert.equal(have.status, 0, 'valgrind is needed for this suite: apt-get install -y valgrind');

test('valgrind emulates a CPU without AVX-512 (so the suite exercises the lacking path)', (t) => {
  const rep = child(VALGRIND, 'env');
  t.diagnostic(`emulated CPU: ${rep.cpu?.brand}; supported: ${rep.supported?.join(', ')} (${have.stdout.trim()})`);
  assert.deepEqual(rep.supported, ['avx2', 'portable'], `this valgrind exposes ${rep.supported?.join(', ')}: it cannot stand in for an AVX2-only CPU`);
  assert.equal(rep.active, 'avx2');
});

isaChecks('emulated AVX2-only CPU', VALGRIND);

/** Runs one test file directly (node:test in-process, so valgrind sees its kernels) and returns its TAP counts. */
function tapRun(file: string, pattern: string): { pass: number; fail: number; out: string } {
  // Without the parent runner's NODE_TEST_CONTEXT the file reports in plain TAP.
  const r = runNode(VALGRIND, ['--test-reporter', 'tap', '--test-name-pattern', pattern, join(ROOT, file)], { NODE_TEST_CONTEXT: undefined });
  const count = (k: string) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
  return { pass: count('pass'), fail: count('fail'), out: r.stdout + r.stderr };
}

test('emulated AVX2-only CPU: small_timm forward and every gradient match timm on the default kernels (native/avx2)', () => {
  const r = tapRun('test/model.test.ts', 'default kernels');
  assert.equal(r.fail, 0, r.out.slice(-4000));
  assert.equal(r.pass, 2, r.out.slice(-4000));
  assert.match(r.out, /ok \d+ - small_timm forward matches timm \(default kernels: native\/avx2\)/);
});

test('emulated AVX2-only CPU: FCMAE loss, predictions and gradients match the official code (sparse and dense encoders)', () => {
  const r = tapRun('test/fcmae.test.ts', 'match the reference');
  assert.equal(r.fail, 0, r.out.slice(-4000));
  assert.equal(r.pass, 4, r.out.slice(-4000));
});
