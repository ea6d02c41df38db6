/**
 * A Kernels wrapper that times every call, for `bench --profile`: total milliseconds and
 * call counts per kernel, labelled and counted in FLOPs by the op table (GEMMs split into
 * forward / residual / weight-gradient rows), plus the time outside kernels (TypeScript,
 * allocation, data).
 */
import { namedArgs, OP_BY_NAME } from './ops.js';
import type { Kernels } from './types.js';

export interface ProfileRow {
  kernel: string;
  calls: number;
  ms: number;
  /** Floating-point operations of these calls (the op table's count; 0 where it has none). */
  flops: number;
}

export class KernelProfiler {
  private readonly rows = new Map<string, ProfileRow>();
  readonly kernels: Kernels;

  constructor(inner: Kernels) {
    const rows = this.rows;
    const handler: ProxyHandler<Kernels> = {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function' || typeof prop !== 'string') return v;
        const fn = v as (...a: unknown[]) => unknown;
        return (...args: unknown[]) => {
          // The row: the op table's label of the call, read from its named arguments.
          const spec = OP_BY_NAME.get(prop);
          const named = spec && namedArgs(spec, args);
          const key = spec?.label && named ? spec.label(named as Readonly<Record<string, number>>) : prop;
          const t = performance.now();
          const r = fn.apply(target, args);
          const dt = performance.now() - t;
          const row = rows.get(key) ?? { kernel: key, calls: 0, ms: 0, flops: 0 };
          row.calls++;
          row.ms += dt;
          row.flops += spec?.flops && named ? spec.flops(named as Readonly<Record<string, number>>) : 0;
          rows.set(key, row);
          return r;
        };
      },
    };
    this.kernels = new Proxy(inner, handler);
  }

  reset(): void {
    this.rows.clear();
  }

  /** Rows sorted by time, and the kernels' total. */
  report(): { rows: ProfileRow[]; totalMs: number } {
    const rows = [...this.rows.values()].sort((a, b) => b.ms - a.ms);
    return { rows, totalMs: rows.reduce((a, r) => a + r.ms, 0) };
  }
}
