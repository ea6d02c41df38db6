/**
 * A progress bar on stderr: `label [=====>    ] 37/100 12.3 img/s ETA 0:42 loss 1.234`.
 * Redraws in place on a TTY (at most 10 times a second); elsewhere (a log file, a pipe) prints
 * a line every 30 s and the finished bar. `Progress.quiet` (the CLI's --quiet) prints nothing.
 */
export class Progress {
  /** No progress output at all (set once by the CLI for --quiet). */
  static quiet = false;
  private readonly start = performance.now();
  private lastDraw = performance.now();
  private readonly tty = process.stderr.isTTY === true;

  constructor(private readonly label: string, private total: number, private readonly unit = 'it') {}

  /** Draws the finished bar at `done` (fewer than the total: the rest was skipped). */
  finish(done: number): void {
    this.total = done;
    this.update(done);
  }

  update(done: number, extra: Record<string, string | number> = {}, items = done): void {
    if (Progress.quiet) return;
    const now = performance.now();
    const final = done >= this.total;
    if (!final && now - this.lastDraw < (this.tty ? 100 : 30_000)) return;
    this.lastDraw = now;
    const secs = (now - this.start) / 1000;
    const rate = items / Math.max(secs, 1e-9);
    const eta = done > 0 ? (secs * (this.total - done)) / done : 0;
    const width = 24;
    const fill = Math.min(width, Math.round((done / this.total) * width));
    const bar = '='.repeat(Math.max(0, fill - 1)) + (fill > 0 ? (final ? '=' : '>') : '') + ' '.repeat(width - fill);
    // A value not known yet (NaN: a device backend's loss before its first read) is left out.
    const ex = Object.entries(extra).filter(([, v]) => !(typeof v === 'number' && Number.isNaN(v))).map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v) : v}`).join(' ');
    const line = `${this.label} [${bar}] ${done}/${this.total} ${rate.toFixed(1)} ${this.unit}/s ${final ? 'in' : 'ETA'} ${clock(final ? secs : eta)} ${ex}`;
    if (this.tty) process.stderr.write(`\r\x1b[K${line}${final ? '\n' : ''}`);
    else process.stderr.write(line + '\n');
  }
}

function fmt(v: number): string {
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(2);
  return v.toFixed(Math.abs(v) < 1 ? 4 : 3);
}

function clock(s: number): string {
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}
