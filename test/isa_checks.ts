// The instruction-set checks shared by test/isa.test.ts (this CPU as it is) and
// test/emulated/avx2.test.ts (under valgrind, whose CPU has AVX2 and no AVX-512): for every
// path, the CPU has or lacks, a child process calls every native entry point once and must
// exit normally; a path the CPU lacks is refused with one clear error, by setIsa, by
// CONVNEXTV2_ISA and by the CLI. A path's code run on a CPU without it ends the child with
// SIGILL, which fails these tests (it did before the fix: supportedIsas() built the AVX-512
// kernel table, whose fill function stores with zmm registers, before asking the CPU).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = new URL('..', import.meta.url).pathname;
export const ALL_ISAS = ['avx512', 'avx2', 'portable'] as const;

export interface ChildReport {
  requested: string;
  active: string | null;
  supported: string[] | null;
  rejected: string | null;
  loadError: string | null;
  cpu: { vendor: string; brand: string; family: number; model: number } | null;
  sums: Record<string, number>;
  missing?: string[];
}

/** Runs `node --import tsx <args>` behind `wrap` (e.g. valgrind); the process must end by itself, not by a signal. */
export function runNode(wrap: string[], args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 600_000): SpawnSyncReturns<string> {
  const cmd = [...wrap, process.execPath, '--import', 'tsx', ...args];
  const r = spawnSync(cmd[0], cmd.slice(1), {
    encoding: 'utf8', cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 << 20,
    env: { ...process.env, CONVNEXTV2_ISA: undefined, CONVNEXTV2_KERNELS: undefined, CONVNEXTV2_DEBUG: undefined, ...env },
  });
  assert.ifError(r.error);
  assert.equal(r.signal, null, `${args.join(' ')} was killed by ${r.signal} (stderr: ${r.stderr.slice(-2000)})`);
  return r;
}

export function child(wrap: string[], arg: string, env: Record<string, string | undefined> = {}): ChildReport {
  const r = runNode(wrap, [join(ROOT, 'test/isa_child.ts'), arg], env);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let rep: ChildReport;
  try {
    rep = JSON.parse(last) as ChildReport;
  } catch {
    assert.fail(`child ${arg} printed no report (exit ${r.status}): ${r.stdout.slice(-500)} ${r.stderr.slice(-2000)}`);
  }
  assert.deepEqual(rep.missing ?? [], [], 'every addon export is called by test/isa_child.ts');
  assert.equal(r.status, 0, `child ${arg} exit ${r.status}: ${r.stderr.slice(-2000)}`);
  return rep;
}

/** The checks; returns the paths the CPU (as the children see it) supports, once known. */
export function isaChecks(label: string, wrap: string[]): { supported: () => string[] } {
  let supported: string[] = [];
  const reports = new Map<string, ChildReport>();

  test(`${label}: every native entry point on every path, supported or not; none ends in a signal`, (t) => {
    for (const isa of ALL_ISAS) {
      const rep = child(wrap, isa);
      reports.set(isa, rep);
      supported = rep.supported!;
      if (supported.includes(isa)) {
        assert.equal(rep.rejected, null, `${isa} is supported: setIsa must take it`);
        assert.equal(rep.active, isa);
      } else {
        const brand = rep.cpu!.brand;
        assert.equal(rep.rejected, `setIsa: ISA '${isa}' is not supported by this CPU (${brand || 'unknown CPU'}; supported: ${supported.join(', ')})`);
        assert.equal(rep.active, supported[0], 'a refused path leaves the active one in place');
        t.diagnostic(`${isa}: lacking, refused: ${rep.rejected}`);
      }
    }
    assert.equal(supported.at(-1), 'portable');
    t.diagnostic(`CPU ${reports.get('portable')!.cpu!.brand}: supported ${supported.join(', ')}`);
    // Each path computed the same thing (to float32 rounding): no entry point is a no-op.
    const base = reports.get('portable')!.sums;
    for (const isa of ALL_ISAS) {
      for (const [fn, v] of Object.entries(reports.get(isa)!.sums)) {
        assert.ok(Math.abs(v - base[fn]) <= 1e-4 * Math.max(1, Math.abs(base[fn])), `${fn} on ${reports.get(isa)!.active}: ${v} vs portable ${base[fn]}`);
      }
    }
  });

  test(`${label}: CONVNEXTV2_ISA takes a supported path and refuses the others at load`, () => {
    for (const isa of ALL_ISAS) {
      const rep = child(wrap, 'env', { CONVNEXTV2_ISA: isa });
      if (supported.includes(isa)) {
        assert.equal(rep.loadError, null);
        assert.equal(rep.active, isa);
      } else {
        assert.match(rep.loadError ?? '', new RegExp(`^CONVNEXTV2_ISA: ISA '${isa}' is not supported by this CPU \\(.*; supported: ${supported.join(', ')}\\)$`));
      }
    }
    assert.equal(child(wrap, 'env', { CONVNEXTV2_ISA: 'avx1' }).loadError, "CONVNEXTV2_ISA: unknown ISA 'avx1' (expected avx512, avx2 or portable)");
  });

  test(`${label}: the CLI with CONVNEXTV2_ISA: a lacking or unknown path is one line and exit 2; info names the CPU and the path`, () => {
    const main = join(ROOT, 'src/cli/main.ts');
    for (const isa of [...ALL_ISAS, 'avx1']) {
      const r = runNode(wrap, [main, 'info', '--json'], { CONVNEXTV2_ISA: isa });
      if (supported.includes(isa)) {
        assert.equal(r.status, 0, r.stderr);
        const rec = JSON.parse(r.stdout.trim().split('\n').pop()!) as { isa: string; cpu: { brand: string; isas: string[] } };
        assert.equal(rec.isa, isa);
        assert.deepEqual(rec.cpu.isas, supported);
        assert.match(r.stdout, new RegExp(`ISA ${isa} \\(CONVNEXTV2_ISA=${isa}; supported: ${supported.join(', ')}\\)`));
      } else {
        assert.equal(r.status, 2, `${isa}: exit ${r.status}\n${r.stderr}`);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0], new RegExp(`^convnextv2: CONVNEXTV2_ISA: (ISA '${isa}' is not supported by this CPU|unknown ISA '${isa}')`));
      }
    }
  });

  return { supported: () => supported };
}
