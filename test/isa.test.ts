// Instruction-set paths on this CPU: every native entry point in a child process per path
// (test/isa_checks.ts; test/emulated/ runs the same checks on a CPU without AVX-512), and the
// nominal-peak model of src/kernels/cpu.ts on CPUs we know.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flopsPerCycle, nominalPeak, type CpuInfo, type NativeIsa } from '../src/kernels/cpu.js';
import { isaChecks } from './isa_checks.js';

isaChecks('this CPU', []);

const cpu = (vendor: string, family: number, model: number, brand = '', physicalCores = 2): CpuInfo =>
  ({ vendor, brand, family, model, logicalCpus: physicalCores, physicalCores, isas: ['avx512', 'avx2', 'portable'] });
const AMD = 'AuthenticAMD', INTEL = 'GenuineIntel';

test('FLOPs per cycle per core: the ISA\'s lanes times the FMA pipes of the microarchitecture', () => {
  const cases: [string, CpuInfo, NativeIsa, number][] = [
    ['Zen 3 (EPYC 7B13), AVX2', cpu(AMD, 0x19, 0x01, 'AMD EPYC 7B13'), 'avx2', 32],
    ['Zen 3, portable (SSE: 2 multiply + 2 add pipes)', cpu(AMD, 0x19, 0x01), 'portable', 16],
    ['Zen 4 (EPYC 9004), AVX-512 as two 256-bit halves', cpu(AMD, 0x19, 0x11, 'AMD EPYC 9554'), 'avx512', 32],
    ['Zen 4, AVX2', cpu(AMD, 0x19, 0x11), 'avx2', 32],
    ['Zen 5 server (EPYC 9005, family 26 model 2), AVX-512 full width', cpu(AMD, 0x1a, 0x02, 'AMD EPYC'), 'avx512', 64],
    ['Zen 5 mobile (Strix Point), AVX-512 as halves', cpu(AMD, 0x1a, 0x24), 'avx512', 32],
    ['Zen 1 (EPYC 7001), AVX2 as two 128-bit halves', cpu(AMD, 0x17, 0x01), 'avx2', 16],
    ['Zen 2 (EPYC 7002), AVX2', cpu(AMD, 0x17, 0x31), 'avx2', 32],
    ['Emerald Rapids, AVX-512', cpu(INTEL, 6, 0xcf, 'INTEL(R) XEON(R) PLATINUM 8581C'), 'avx512', 64],
    ['Emerald Rapids, AVX2', cpu(INTEL, 6, 0xcf), 'avx2', 32],
    ['Emerald Rapids, portable (Golden Cove: 3 FP ports)', cpu(INTEL, 6, 0xcf), 'portable', 12],
    ['Skylake-SP Gold 6148, AVX-512', cpu(INTEL, 6, 0x55, 'Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz'), 'avx512', 64],
    ['Skylake-SP Silver 4114: one 512-bit FMA', cpu(INTEL, 6, 0x55, 'Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz'), 'avx512', 32],
    ['Skylake-SP Gold 5118: one 512-bit FMA', cpu(INTEL, 6, 0x55, 'Intel(R) Xeon(R) Gold 5118 CPU @ 2.30GHz'), 'avx512', 32],
    ['Skylake-SP Gold 5122: two', cpu(INTEL, 6, 0x55, 'Intel(R) Xeon(R) Gold 5122 CPU @ 3.60GHz'), 'avx512', 64],
    ['Skylake-SP, portable', cpu(INTEL, 6, 0x55), 'portable', 8],
    ['Tiger Lake client: one 512-bit FMA', cpu(INTEL, 6, 0x8c), 'avx512', 32],
    ['Rocket Lake: one 512-bit FMA', cpu(INTEL, 6, 0xa7), 'avx512', 32],
    ['a Sapphire Rapids VM that reports model 0xa7 (AMX gives it away): two', { ...cpu(INTEL, 6, 0xa7), flags: ['avx512f', 'amx_tile'] }, 'avx512', 64],
    ['Haswell, AVX2', cpu(INTEL, 6, 0x3c, 'Intel(R) Core(TM) i7-4910MQ CPU @ 2.90GHz'), 'avx2', 32],
  ];
  for (const [what, c, isa, want] of cases) assert.equal(flopsPerCycle(c, isa).flops, want, what);
});

test('nominal peak: cores in use (threads, at most the physical cores) x FLOP/cycle x clock', () => {
  const zen3 = cpu(AMD, 0x19, 0x01, 'AMD EPYC 7B13');
  const p = nominalPeak(zen3, 'avx2', 2, 3.0);
  assert.equal(p.gflops, 2 * 32 * 3.0);
  assert.equal(p.cores, 2);
  assert.match(p.basis, /^2 core\(s\) x 32 FLOP\/cycle \(2 FMA x 8 lanes\) x 3\.00 GHz/);
  // The figure: two Zen 3 cores with AVX2 give about half of "nominal 400".
  assert.ok(p.gflops < 220);
  assert.equal(nominalPeak(zen3, 'avx2', 8, 3.0).cores, 2, 'threads beyond the physical cores add no FMA pipes');
  assert.equal(nominalPeak(zen3, 'avx2', 1, 3.0).gflops, 96);
  const smt = { ...zen3, logicalCpus: 4, physicalCores: 2 };
  assert.equal(nominalPeak(smt, 'avx2', 4, 3.0).cores, 2, 'SMT siblings share the pipes');
  const noClock = nominalPeak(zen3, 'avx2', 2, 0);
  assert.ok(Number.isNaN(noClock.gflops));
  assert.match(noClock.basis, /unknown clock/);
});
