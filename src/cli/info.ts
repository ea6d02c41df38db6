/**
 * `convnextv2 info`: what this machine runs the model with: the CPU (cpuid brand, vendor,
 * family, model, cores), the kernels (native addon or the TypeScript reference, and why), the
 * instruction-set path in use and those supported, threads. `--measure` adds, for each
 * supported path, the FMA peak measured now beside the nominal one (cores x FLOP/cycle x
 * the clock measured now): the two should agree within the machine's noise. The thing to paste
 * into a bug report; `.ci/run` prints it so a CI log says what was tested.
 */
import { readFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { autoChoice, nativeBackend } from '../kernels/index.js';
import { cpuInfo, cpuName, nominalPeak, type CpuInfo, type NativeIsa } from '../kernels/cpu.js';
import { addonPath, NativeKernels } from '../kernels/native.js';
import type { Command } from './command.js';

interface PeakRow {
  isa: NativeIsa;
  measured_gflops: number;
  nominal_gflops: number;
  nominal_basis: string;
}

/** The package's version (package.json beside src/ and dist/). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export const info: Command = {
  name: 'info',
  summary: 'show the CPU, kernels, instruction set, threads and GPU (--device) this machine runs with',
  usage: 'convnextv2 info [--measure] [--threads T] [--device cpu|webgpu|auto] [--json]',
  examples: [
    'convnextv2 info',
    'convnextv2 info --measure --json',
    'convnextv2 info --device auto',
  ],
  flags: {
    measure: { kind: 'boolean', help: 'measure the FMA peak and the clock of every supported instruction set (about 1 s each)' },
  },
  async run(args, ctx) {
    const k = await ctx.backend();
    const caps = k.capabilities();
    const nat = k instanceof NativeKernels ? { kernels: k, error: null } : await nativeBackend();
    const native = nat.kernels instanceof NativeKernels ? nat.kernels : null;
    const version = packageVersion();
    ctx.out(`convnextv2 ${version}, Node ${process.version} (${platform()} ${arch()})`);
    let cpu: CpuInfo | null = null;
    if (native) {
      cpu = cpuInfo(native);
      ctx.out(`CPU: ${cpuName(cpu)}, ${cpu.logicalCpus} logical CPU(s), ${cpu.physicalCores} physical core(s)`);
      const forced = process.env.CONVNEXTV2_ISA ? `CONVNEXTV2_ISA=${process.env.CONVNEXTV2_ISA}` : 'the best supported';
      if (k === native) ctx.out(`kernels: native (${addonPath}), ISA ${native.isa} (${forced}; supported: ${cpu.isas.join(', ')}), ${native.threads} thread(s)`);
    }
    if (k.name === 'reference') {
      const why = process.env.CONVNEXTV2_KERNELS === 'reference' ? 'CONVNEXTV2_KERNELS=reference' : `native addon unavailable: ${nat.error}`;
      ctx.out(`kernels: reference TypeScript (${why}), 1 thread`);
    } else if (k !== native && !caps.device) {
      ctx.out(`kernels: ${caps.description}${process.env.CONVNEXTV2_KERNELS ? ` (CONVNEXTV2_KERNELS=${process.env.CONVNEXTV2_KERNELS})` : ''}`);
    }
    if (caps.device) ctx.out(`device: ${k.name} on ${caps.description}${caps.f16 ? ', shader-f16' : ''} (--device)`);
    const auto = args.string('device') === 'auto' ? autoChoice() : null;
    if (auto) ctx.out(`device auto chose ${auto}`);
    const peaks: PeakRow[] = [];
    if (args.bool('measure') && native && cpu) {
      const active = native.isa as NativeIsa;
      try {
        for (const isa of cpu.isas) {
          native.setIsa(isa);
          const ghz0 = native.measureClock(0.2);
          const measured = native.measurePeak(0.6);
          const nominal = nominalPeak(cpu, isa, native.threads, Math.max(ghz0, native.measureClock(0.2)));
          peaks.push({ isa, measured_gflops: round(measured), nominal_gflops: round(nominal.gflops), nominal_basis: nominal.basis });
          ctx.out(`${isa}: FMA peak measured ${measured.toFixed(1)} GFLOP/s (${((100 * measured) / nominal.gflops).toFixed(0)}% of nominal); nominal ${nominal.gflops.toFixed(1)} = ${nominal.basis}`);
        }
      } finally {
        native.setIsa(active);
      }
    }
    return {
      version,
      node: process.version,
      platform: `${platform()} ${arch()}`,
      kernels: k.name,
      isa: k.isa,
      threads: k.threads,
      cpu: cpu && { ...cpu, flags: undefined },  // the feature list is long; /proc/cpuinfo has it
      ...(caps.device ? { device: caps.description } : {}),
      ...(auto ? { device_auto: auto } : {}),
      ...(peaks.length ? { peaks } : {}),
    };
  },
};

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
