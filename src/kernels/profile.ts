/**
 * A Kernels wrapper that times every call, for `bench --profile`: total milliseconds and
 * call counts per kernel (GEMMs split into forward / input-gradient / weight-gradient by
 * their transposes), plus the time spent outside kernels (TypeScript, allocation, data).
 */
import type { Kernels } from './types.js';

export interface ProfileRow {
  kernel: string;
  calls: number;
  ms: number;
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
          let key = prop;
          if (prop === 'gemm') key = args[0] ? 'gemm (weight grad)' : (args[15] as { aScale?: unknown } | undefined)?.aScale ? 'gemm (GRN folded, residual)' : args[11] || (args[15] as { residual?: unknown } | undefined)?.residual ? 'gemm (residual/accumulate)' : args[13] ? 'gemm+gelu' : 'gemm';
          const t = performance.now();
          const r = fn.apply(target, args);
          const dt = performance.now() - t;
          const row = rows.get(key) ?? { kernel: key, calls: 0, ms: 0 };
          row.calls++;
          row.ms += dt;
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
