// Pure logic of the benchmark report: summaries of repeated measurements (median and spread),
// percentiles, ratios against baselines, the CPU-profile digest and the Markdown table.
// No I/O here, so test/unit/bench-report.test.ts covers it without the stack.

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median and min–max of repeated measurements (NaN/undefined values are ignored). */
export function summarize(values: ReadonlyArray<number | undefined>): Summary {
  const v = values
    .filter((x): x is number => typeof x === 'number' && Number.isFinite(x))
    .sort((a, b) => a - b);
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = v.length >> 1;
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, n: v.length };
}

/** Nearest-rank percentile (p in 0..100) of an unsorted sample; NaN when empty. */
export function percentile(values: ReadonlyArray<number>, p: number): number {
  if (values.length === 0) return NaN;
  const v = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * v.length);
  return v[Math.min(v.length, Math.max(1, rank)) - 1]!;
}

/** a / b, or NaN when either side is unknown or b is 0. */
export function ratio(a: number, b: number): number {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return NaN;
  return a / b;
}

/** Metrics of one repetition of a scenario or baseline, by name. */
export type Metrics = Record<string, number>;

/** Every metric that appears in the runs, summarised across them. */
export function summarizeRuns(runs: ReadonlyArray<Metrics>): Record<string, Summary> {
  const keys = new Set(runs.flatMap((r) => Object.keys(r)));
  return Object.fromEntries([...keys].sort().map((k) => [k, summarize(runs.map((r) => r[k]))]));
}

export interface TableRow {
  scenario: string;
  figure: string;
  unit: string;
  value: Summary;
  /** The limit this figure is compared with, measured in the same run on the same data. */
  baseline?: { name: string; value: Summary; unit: string };
  /** value.median / baseline.value.median. */
  ratio?: number;
  bottleneck?: string;
}

export interface RowSpec {
  scenario: string;
  figure: string;
  unit: string;
  metric: string;
  /** Where the metric lives: a scenario name or 'baselines'. */
  from: string;
  baseline?: { name: string; from: string; metric: string; unit: string };
  bottleneck?: string;
}

/** Builds table rows from summaries (`sums[from][metric]`); rows whose metric is missing are skipped. */
export function buildRows(
  specs: ReadonlyArray<RowSpec>,
  sums: Record<string, Record<string, Summary> | undefined>,
): TableRow[] {
  const rows: TableRow[] = [];
  for (const s of specs) {
    const value = sums[s.from]?.[s.metric];
    if (!value || value.n === 0) continue;
    const row: TableRow = { scenario: s.scenario, figure: s.figure, unit: s.unit, value };
    if (s.baseline) {
      const b = sums[s.baseline.from]?.[s.baseline.metric];
      if (b && b.n > 0) {
        row.baseline = { name: s.baseline.name, value: b, unit: s.baseline.unit };
        row.ratio = ratio(value.median, b.median);
      }
    }
    if (s.bottleneck) row.bottleneck = s.bottleneck;
    rows.push(row);
  }
  return rows;
}

/** A number with about three significant digits and thousands separators: 12,345 / 123 / 1.23 / 0.0123. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a === 0) return '0';
  return x.toPrecision(3);
}

/** "median (min–max)"; just the median when there is one run or no spread. */
export function fmtSummary(s: Summary): string {
  if (s.n <= 1 || s.min === s.max) return fmt(s.median);
  return `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
}

const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

/** A ratio as a percentage, or as a multiple from 10× up (latencies against their floor). */
export function fmtRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return '–';
  return r >= 10 ? `${fmt(r)}×` : `${(r * 100).toFixed(0)} %`;
}

export function markdownTable(rows: ReadonlyArray<TableRow>): string {
  const out = [
    '| Scenario | Figure | pgcdc: median (min–max) | Baseline (limit) | Ratio | Bottleneck |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of rows) {
    const baseline = r.baseline
      ? `${r.baseline.name}: ${fmtSummary(r.baseline.value)} ${r.baseline.unit}`
      : '–';
    const ratioText = fmtRatio(r.ratio);
    out.push(
      `| ${cell(r.scenario)} | ${cell(r.figure)} | ${fmtSummary(r.value)} ${cell(r.unit)} | ${cell(baseline)} | ${ratioText} | ${cell(r.bottleneck ?? '–')} |`,
    );
  }
  return out.join('\n');
}

// ---- CPU profile digest ----------------------------------------------------------------------

/** The parts of V8's .cpuprofile JSON this digest reads. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    hitCount?: number;
  }>;
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileEntry {
  name: string;
  category: string;
  selfMs: number;
  percent: number;
}

export interface ProfileDigest {
  totalMs: number;
  top: ProfileEntry[];
  /** Self time by category (GC, Avro, pg driver, kafkajs, …), descending. */
  categories: Array<{ category: string; selfMs: number; percent: number }>;
}

/** Which part of the program a function belongs to, from its script URL and name. */
export function categorize(url: string, functionName: string): string {
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(idle)') return 'idle (waiting for I/O)';
  if (functionName === '(program)') return 'V8/native (program)';
  if (functionName === '(root)') return 'V8/native (program)';
  if (url.includes('/node_modules/avsc/')) return 'Avro (avsc)';
  if (url.includes('/node_modules/kafkajs/')) return 'kafkajs';
  if (url.includes('/node_modules/pg-logical-replication/')) return 'pg-logical-replication';
  if (url.includes('/node_modules/pg-protocol/') || url.includes('/node_modules/pg/'))
    return 'pg driver (protocol, rows)';
  if (url.includes('/node_modules/')) return 'other dependencies';
  if (url.includes('/src/avro/writers.ts')) return 'Avro (avsc)'; // pgcdc's own avsc writers
  if (url.includes('/src/avro/')) return 'pgcdc Avro conversion (src/avro)';
  if (url.includes('/src/postgres/')) return 'pgcdc PostgreSQL (src/postgres)';
  if (url.includes('/src/kafka/')) return 'pgcdc batcher (src/kafka)';
  if (url.includes('/src/')) return 'pgcdc other (src/)';
  if (url.startsWith('node:') || url === '') return 'Node.js core / builtins';
  return 'other';
}

const shortUrl = (url: string): string => {
  const i = url.search(/\/(node_modules|src)\//);
  return i >= 0 ? url.slice(i + 1) : url.replace(/^file:\/\//, '');
};

/** Self time per function (summed over call sites) and per category, from sample timings. */
export function digestProfile(profile: CpuProfile, topN = 20): ProfileDigest {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length > 0 && deltas.length === samples.length) {
    // timeDeltas[i] is the time before sample i; attribute each interval to the sample that ends it.
    for (let i = 0; i < samples.length; i++) {
      const id = samples[i]!;
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, deltas[i]!));
    }
  } else {
    const total = profile.endTime - profile.startTime;
    const hits = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
    for (const n of profile.nodes) selfUs.set(n.id, ((n.hitCount ?? 0) / hits) * total);
  }
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const byFn = new Map<string, ProfileEntry>();
  const byCat = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const category = categorize(url, functionName);
    const name = url
      ? `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}`
      : functionName || '(anonymous)';
    const e = byFn.get(name) ?? { name, category, selfMs: 0, percent: 0 };
    e.selfMs += us / 1000;
    byFn.set(name, e);
    byCat.set(category, (byCat.get(category) ?? 0) + us / 1000);
  }
  const totalMs = totalUs / 1000;
  const pct = (ms: number) => (totalMs > 0 ? (ms / totalMs) * 100 : 0);
  const top = [...byFn.values()]
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, topN)
    .map((e) => ({ ...e, percent: pct(e.selfMs) }));
  const categories = [...byCat]
    .map(([category, selfMs]) => ({ category, selfMs, percent: pct(selfMs) }))
    .sort((a, b) => b.selfMs - a.selfMs);
  return { totalMs, top, categories };
}

export function markdownProfile(d: ProfileDigest, topN = 15): string {
  const lines = [
    `Total sampled: ${fmt(d.totalMs / 1000)} s`,
    '',
    '| Category | Self time | Share |',
    '| --- | --- | --- |',
    ...d.categories.map(
      (c) => `| ${cell(c.category)} | ${fmt(c.selfMs / 1000)} s | ${c.percent.toFixed(1)} % |`,
    ),
    '',
    '| Function (self time) | Category | Self time | Share |',
    '| --- | --- | --- | --- |',
    ...d.top
      .slice(0, topN)
      .map(
        (e) =>
          `| \`${cell(e.name)}\` | ${cell(e.category)} | ${fmt(e.selfMs / 1000)} s | ${e.percent.toFixed(1)} % |`,
      ),
  ];
  return lines.join('\n');
}

/** Which resource a measured interval was bound by, from CPU use of the processes involved (cores). */
export function boundBy(cpu: { worker: number; postgres?: number; kafka?: number }, cores: number): string {
  const parts = [`worker ${(cpu.worker * 100).toFixed(0)} %`];
  if (cpu.postgres !== undefined) parts.push(`PG ${(cpu.postgres * 100).toFixed(0)} %`);
  if (cpu.kafka !== undefined) parts.push(`Kafka ${(cpu.kafka * 100).toFixed(0)} %`);
  const total = cpu.worker + (cpu.postgres ?? 0) + (cpu.kafka ?? 0);
  let verdict: string;
  if (cpu.worker >= 0.8) verdict = 'worker CPU (one thread saturated)';
  else if ((cpu.postgres ?? 0) >= 0.85) verdict = 'PostgreSQL backend CPU';
  else if (total >= cores * 0.85) verdict = `machine CPU (${cores} cores shared)`;
  else verdict = 'waiting (latency-bound: round trips / acks)';
  return `${verdict}; ${parts.join(', ')}`;
}
