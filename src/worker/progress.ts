// Initial-load progress. On a terminal: a live block under the logs, one line per table being
// read (rows done / estimated, rate, ETA) and a total, redrawn every second. Otherwise: a log line
// every 10 seconds. Rows are those Kafka has acknowledged; estimates come from pg_class.reltuples,
// so a percentage can pass 100 on a table that grew since it was last analyzed.
import type { SnapshotProgress } from '../pipeline/connector.ts';
import type { Logger } from './log.ts';
import type { Worker } from './worker.ts';

export interface TableRate {
  rows: number;
  estimatedRows: number;
  done: boolean;
  /** Rows per second (smoothed); null before two samples. */
  rate: number | null;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(sec).padStart(2, '0')}s`
      : `${sec}s`;
}

/** Seconds left at `rate`, or null when unknown (no rate, no estimate, or already past it). */
export function eta(t: { rows: number; estimatedRows: number; rate: number | null }): number | null {
  if (!t.rate || t.rate <= 0 || t.estimatedRows <= 0) return null;
  const left = t.estimatedRows - t.rows;
  return left > 0 ? left / t.rate : null;
}

/** One line for a table: `public.orders  12,345 / 50,000 rows  24.7%  3,210 rows/s  ETA 12s`. */
export function formatTableLine(table: string, t: TableRate): string {
  const est = t.estimatedRows > 0 ? ` / ${fmtInt(t.estimatedRows)}` : '';
  const pct =
    t.estimatedRows > 0 && !t.done ? `  ${Math.min(100, (100 * t.rows) / t.estimatedRows).toFixed(1)}%` : '';
  if (t.done) return `  ${table}  ${fmtInt(t.rows)} rows  done`;
  const rate = t.rate !== null ? `  ${fmtInt(t.rate)} rows/s` : '';
  const left = eta(t);
  return `  ${table}  ${fmtInt(t.rows)}${est} rows${pct}${rate}${left !== null ? `  ETA ${formatDuration(left)}` : ''}`;
}

/** The block drawn on a terminal: a total line, then the tables being read (at most `maxTables`). */
export function formatProgress(tables: Record<string, TableRate>, maxTables = 6): string[] {
  const entries = Object.entries(tables);
  const done = entries.filter(([, t]) => t.done).length;
  const rows = entries.reduce((a, [, t]) => a + t.rows, 0);
  const est = entries.reduce((a, [, t]) => a + Math.max(t.estimatedRows, t.done ? t.rows : 0), 0);
  const rate = entries.reduce((a, [, t]) => a + (t.done ? 0 : (t.rate ?? 0)), 0);
  const total = eta({ rows, estimatedRows: est, rate });
  const lines = [
    `snapshot: ${done}/${entries.length} tables, ${fmtInt(rows)}${est > 0 ? ` / ~${fmtInt(est)}` : ''} rows` +
      (rate > 0 ? `, ${fmtInt(rate)} rows/s` : '') +
      (total !== null ? `, ETA ${formatDuration(total)}` : ''),
  ];
  const active = entries.filter(([, t]) => !t.done && (t.rows > 0 || t.estimatedRows > 0));
  for (const [name, t] of active.slice(0, maxTables)) lines.push(formatTableLine(name, t));
  if (active.length > maxTables) lines.push(`  … ${active.length - maxTables} more`);
  return lines;
}

/** Tracks rows per table between samples and smooths the rate. */
export class RateTracker {
  #prev = new Map<string, { rows: number; at: number; rate: number | null }>();

  sample(snapshot: SnapshotProgress, now = Date.now()): Record<string, TableRate> {
    const out: Record<string, TableRate> = {};
    for (const [name, t] of Object.entries(snapshot.tables)) {
      const prev = this.#prev.get(name);
      let rate: number | null = prev?.rate ?? null;
      if (prev && now > prev.at) {
        const instant = ((t.rows - prev.rows) * 1000) / (now - prev.at);
        rate = rate === null ? instant : 0.7 * rate + 0.3 * instant;
      }
      this.#prev.set(name, { rows: t.rows, at: now, rate });
      out[name] = { rows: t.rows, estimatedRows: t.estimatedRows, done: t.done, rate: t.done ? null : rate };
    }
    return out;
  }
}

export class ProgressReporter {
  #worker: Worker;
  #log: Logger;
  #interactive: boolean;
  #timer: NodeJS.Timeout | null = null;
  #tracker = new RateTracker();
  #tracked: unknown = null;
  #drawn = false;

  constructor(worker: Worker, log: Logger, opts: { interactive?: boolean; intervalMs?: number } = {}) {
    this.#worker = worker;
    this.#log = log;
    this.#interactive = opts.interactive ?? log.interactive === true;
    const every = opts.intervalMs ?? (this.#interactive ? 1_000 : 10_000);
    this.#timer = setInterval(() => this.#tick(), every);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#drawn) this.#log.status?.(null);
    this.#drawn = false;
  }

  #tick(): void {
    const c = this.#worker.connector;
    if (c !== this.#tracked) {
      this.#tracked = c;
      this.#tracker = new RateTracker();
    }
    if (c.snapshot.state !== 'running') {
      if (this.#drawn) this.#log.status?.(null);
      this.#drawn = false;
      return;
    }
    const tables = this.#tracker.sample(c.snapshot);
    if (this.#interactive) {
      this.#log.status?.(formatProgress(tables));
      this.#drawn = true;
      return;
    }
    const [total] = formatProgress(tables, 0);
    this.#log.info(total!, {
      tables: Object.fromEntries(
        Object.entries(tables)
          .filter(([, t]) => !t.done && (t.rows > 0 || t.estimatedRows > 0))
          .map(([name, t]) => [
            name,
            {
              rows: t.rows,
              estimatedRows: t.estimatedRows,
              rowsPerSecond: t.rate === null ? null : Math.round(t.rate),
              etaSeconds: eta(t) === null ? null : Math.round(eta(t)!),
            },
          ]),
      ),
    });
  }
}
