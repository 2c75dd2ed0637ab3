/**
 * A progress line for long work: step, loss parts, throughput and ETA. On a terminal it redraws one
 * line; elsewhere (CI, pipes) it prints a line every `every` steps so logs stay readable.
 */

export interface ProgressOptions {
  total: number;
  /** Unit of throughput (e.g. 'patches'). */
  unit: string;
  /** Items processed per step (e.g. the batch size). */
  perStep: number;
  stream?: NodeJS.WriteStream;
  /** Print every N steps when not on a terminal. */
  every?: number;
  /** What a step is called in the line (default 'step'). */
  label?: string;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export class Progress {
  private readonly start = performance.now();
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private lastLen = 0;

  constructor(private readonly o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
  }

  /** Builds the line for `done` steps with named values (loss parts, router health). */
  line(done: number, values: Record<string, number | string>): string {
    const elapsed = (performance.now() - this.start) / 1000;
    const rate = (done * this.o.perStep) / Math.max(elapsed, 1e-9);
    const eta = done > 0 ? (elapsed / done) * (this.o.total - done) : NaN;
    const width = 20;
    const filled = Math.round((done / this.o.total) * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const rateText = rate >= 1e5 ? `${(rate / 1e6).toFixed(2)} M` : `${rate.toFixed(1)} `;
    const vals = Object.entries(values)
      .map(([k, v]) => `${k} ${typeof v === 'number' ? (Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : v.toFixed(4)) : v}`)
      .join(' | ');
    const head = `${bar} ${this.o.label ?? 'step'} ${done}/${this.o.total}`;
    return `${head}${vals ? ` | ${vals}` : ''} | ${rateText}${this.o.unit}/s | ${formatDuration(elapsed)} elapsed, ETA ${formatDuration(eta)}`;
  }

  update(done: number, values: Record<string, number | string>): void {
    const text = this.line(done, values);
    if (this.tty) {
      this.stream.write(`\r${text}${' '.repeat(Math.max(0, this.lastLen - text.length))}`);
      this.lastLen = text.length;
    } else if (done === this.o.total || done % (this.o.every ?? 10) === 0) {
      this.stream.write(`${text}\n`);
    }
  }

  /** Prints a message on its own line without breaking the bar. */
  log(message: string): void {
    if (this.tty && this.lastLen > 0) this.stream.write('\n');
    this.lastLen = 0;
    this.stream.write(`${message}\n`);
  }

  done(): void {
    if (this.tty && this.lastLen > 0) this.stream.write('\n');
    this.lastLen = 0;
  }
}
