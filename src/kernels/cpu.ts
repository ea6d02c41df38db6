/**
 * The CPU the native kernels run on, and the nominal fp32 peak of each instruction-set path
 * on it: cores in use x FLOPs per cycle per core (the path's vector width and the FMA pipes
 * this microarchitecture gives it) x the core clock measured now. `bench --mode kernels`
 * prints it beside the FMA peak measured in the same run; `convnextv2 info` and `.ci/run`
 * print what was detected.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { CpuId, NativeKernels } from './native.js';

import type { NativeIsa } from './types.js';

export type { NativeIsa };

/** cpuid's identity (vendor 'GenuineIntel' / 'AuthenticAMD', brand string, display family and model) and the cores. */
export interface CpuInfo extends CpuId {
  /** Logical CPUs, and physical cores (SMT siblings share FMA pipes; Linux only, else logical). */
  logicalCpus: number;
  physicalCores: number;
  /** The paths this CPU and build support, best first. */
  isas: NativeIsa[];
  /** The kernel's feature flags ('amx_tile', ...; Linux /proc/cpuinfo), when known. */
  flags?: string[];
}

function procCpuinfo(): string | null {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
}

/** Physical cores from /proc/cpuinfo (distinct physical id / core id pairs), else null. */
function physicalCoresLinux(text: string | null): number | null {
  if (text === null) return null;
  const cores = new Set<string>();
  for (const block of text.split(/\n\s*\n/)) {
    const phys = /^physical id\s*:\s*(\d+)/m.exec(block)?.[1];
    const core = /^core id\s*:\s*(\d+)/m.exec(block)?.[1];
    if (phys !== undefined && core !== undefined) cores.add(`${phys}:${core}`);
  }
  return cores.size > 0 ? cores.size : null;
}

export function cpuInfo(k: NativeKernels): CpuInfo {
  const id = k.cpuInfo();
  const logicalCpus = availableParallelism();
  const text = procCpuinfo();
  const flags = text === null ? undefined : /^flags\s*:\s*(.*)$/m.exec(text)?.[1].trim().split(/\s+/);
  return {
    ...id,
    logicalCpus,
    physicalCores: Math.min(logicalCpus, physicalCoresLinux(text) ?? logicalCpus),
    isas: k.supportedIsas(),
    flags,
  };
}

/** 'AMD EPYC 7B13 (AuthenticAMD family 25 model 1)'. */
export function cpuName(c: CpuInfo): string {
  return `${c.brand || 'unknown CPU'} (${c.vendor || 'no cpuid'} family ${c.family} model ${c.model})`;
}

export interface FlopsPerCycle {
  /** fp32 FLOPs per cycle per core (an FMA counts 2). */
  flops: number;
  /** How: '2 FMA x 16 lanes'. */
  basis: string;
}

const LANES: Record<NativeIsa, number> = { avx512: 16, avx2: 8, portable: 4 };

// Intel cores (family 6 models) with one 512-bit FMA pipe: Ice Lake, Tiger Lake and Rocket
// Lake client parts (a hypervisor may report one of these models for a Sapphire Rapids or
// later Xeon, which has two: AMX, only on those Xeons, tells them apart). Skylake/Cascade Lake Xeons (model 0x55) have one too in Silver, Bronze
// and most Gold 5xxx parts (not the 5122 / 5222).
const INTEL_ONE_512_FMA = new Set([0x7d, 0x7e, 0x8c, 0x8d, 0xa7]);
// Intel P-cores from Golden Cove on (Alder/Raptor/Meteor/Arrow/Lunar Lake, Sapphire/Emerald/
// Granite Rapids): a third FP port for adds, so SSE multiplies and adds issue 3 a cycle.
const INTEL_GOLDEN_COVE_ON = new Set([0x97, 0x9a, 0xb7, 0xba, 0xbf, 0xaa, 0xac, 0xc5, 0xc6, 0xbd, 0x8f, 0xcf, 0xad, 0xae]);

/**
 * fp32 FLOPs per cycle per core of a path on this CPU, from its microarchitecture: AVX-512 and
 * AVX2 issue two FMAs a cycle on current Intel and AMD server cores, except where the 512-bit
 * or 256-bit datapath is half width (Zen 4 and mobile Zen 5 run 512-bit FMAs as two 256-bit
 * halves; Zen 1 runs 256-bit ones as two 128-bit halves; the Intel parts above have one 512-bit
 * FMA pipe). The portable path is SSE without FMA: a multiply and an add per multiply-add, on
 * two FP pipes (older Intel), three (Golden Cove on) or four (two multiply, two add: AMD Zen).
 */
export function flopsPerCycle(cpu: CpuInfo, isa: NativeIsa): FlopsPerCycle {
  const amd = cpu.vendor === 'AuthenticAMD' || cpu.vendor === 'HygonGenuine';
  const intel = cpu.vendor === 'GenuineIntel';
  const lanes = LANES[isa];
  if (isa === 'portable') {
    const ops = amd && cpu.family >= 0x17 ? 4 : intel && cpu.family === 6 && INTEL_GOLDEN_COVE_ON.has(cpu.model) ? 3 : 2;
    return { flops: ops * lanes, basis: `${ops / 2} multiply-add pairs x ${lanes} lanes (SSE, no FMA)` };
  }
  let fmas = 2;
  if (isa === 'avx512') {
    if (amd && cpu.family === 0x19) fmas = 1;
    if (amd && cpu.family === 0x1a && ((cpu.model >= 0x20 && cpu.model <= 0x2f) || (cpu.model >= 0x60 && cpu.model <= 0x7f))) fmas = 1;
    const amx = cpu.flags?.includes('amx_tile') ?? false;
    if (intel && cpu.family === 6 && INTEL_ONE_512_FMA.has(cpu.model) && !amx) fmas = 1;
    if (intel && cpu.family === 6 && cpu.model === 0x55 && /Silver|Bronze|Gold 5(?!1?22)\d{3}/.test(cpu.brand)) fmas = 1;
  } else if (amd && cpu.family === 0x17 && cpu.model < 0x30) {
    fmas = 1;
  }
  return { flops: 2 * fmas * lanes, basis: `${fmas} FMA x ${lanes} lanes` };
}

export interface NominalPeak {
  /** GFLOP/s: cores x flopsPerCycle x ghz. */
  gflops: number;
  /** Cores in use: the threads, at most the physical cores. */
  cores: number;
  flopsPerCycle: number;
  /** The core clock measured in this run (GHz). */
  ghz: number;
  /** '2 cores x 64 FLOP/cycle (2 FMA x 16 lanes) x 3.74 GHz (measured clock)'. */
  basis: string;
}

/** NaN GFLOP/s where the clock could not be measured (ghz 0: not x86). */
export function nominalPeak(cpu: CpuInfo, isa: NativeIsa, threads: number, ghz: number): NominalPeak {
  const f = flopsPerCycle(cpu, isa);
  const cores = Math.max(1, Math.min(threads, cpu.physicalCores));
  if (!(ghz > 0)) {
    return { gflops: NaN, cores, flopsPerCycle: f.flops, ghz: NaN, basis: `${cores} core(s) x ${f.flops} FLOP/cycle (${f.basis}) x unknown clock (not measurable here: pass --peak)` };
  }
  return {
    gflops: cores * f.flops * ghz,
    cores,
    flopsPerCycle: f.flops,
    ghz,
    basis: `${cores} core(s) x ${f.flops} FLOP/cycle (${f.basis}) x ${ghz.toFixed(2)} GHz (clock measured in this run)`,
  };
}
