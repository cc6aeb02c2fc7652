// pgcdc benchmark against the local stack (started if needed):
//
//   npm run bench -- [--rows N] [--scenario snapshot|stream|latency|bigtx|all] [--repeat K]
//                    [--out bench/results] [--profile] [see --help for the rest]
//
// Writes <out>/<timestamp>.json (every run's figures, the environment and the configuration) and
// <out>/<timestamp>.md (the table, also printed). Progress goes to stderr. docs/performance.md
// explains the scenarios, the baselines and how to read the figures.
import { parse as parseYaml } from 'yaml';
import { snapshotStageOf, stageProfile } from './catchup.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { stackUp } from '../deploy/local/stack.ts';
import { silenceKafkajsTimeoutWarning } from '../deploy/local/process.ts';
import { uniqueName } from '../test/support/pipeline.ts';
import { copyBaseline, kafkaBaseline, readAndEncodeBaseline } from './baselines.ts';
import { ROOT, createTable, fillTable, kafka, note, pgClient, tableBytes, versions } from './lib.ts';
import {
  boundBy,
  buildRows,
  digestProfile,
  markdownProfile,
  markdownTable,
  summarizeRuns,
  type CpuProfile,
  type Metrics,
  type ProfileDigest,
  type RowSpec,
  type Summary,
} from './report.ts';
import { bigtxRun } from './scenarios/bigtx.ts';
import type { Context } from './scenarios/common.ts';
import { latencyRun } from './scenarios/latency.ts';
import { snapshotRun } from './scenarios/snapshot.ts';
import { DRAIN_LIMIT_S, KEEP_PACE, streamRun, type StepResult } from './scenarios/stream.ts';
import { tablesRun } from './scenarios/tables.ts';

const SCENARIOS = ['snapshot', 'stream', 'latency', 'bigtx', 'tables'] as const;
/** Scenarios that read the N-row table and are compared with the baselines. */
const ON_BASE_TABLE: ReadonlyArray<Scenario> = ['snapshot', 'stream', 'latency', 'bigtx'];
type Scenario = (typeof SCENARIOS)[number];

const USAGE = `npm run bench -- [options]
  --rows N              rows of the initial load and of the large transaction (default 1000000)
  --scenario S          snapshot, stream, latency, bigtx, tables, all, or a comma list (default all)
  --repeat K            repetitions (default 3 up to 1,000,000 rows, else 1)
  --out DIR             where the .json and .md go (default bench/results)
  --batch-size B        snapshot.batchSize of the worker (default 10000, pgcdc's default)
  --stream-rates LIST   offered changes/s of the streaming steps (default 1000,2000,4000,8000,16000,32000)
  --step-seconds S      duration of each streaming step (default 15)
  --latency-rate R      changes/s of the latency scenario (default 2000)
  --latency-seconds S   duration of the latency scenario (default 30)
  --clients C           pgbench connections (default 8)
  --backlog-changes M   changes written while the worker is stopped, then drained (default 300000)
  --profile             also run the snapshot once under node --cpu-prof and digest the profile
  --tables LIST         table counts of the tables scenario, 10 rows each (default 100,1000)
  --keep-topics         keep the benchmark topics (deleted by default)
  --delivery M          the worker's delivery.mode: at-least-once (default) or exactly-once
  --transaction-ms T    the worker's delivery.transactionMs (exactly-once; default pgcdc's)
  --heap-mb H           run every worker with --max-old-space-size=H (the chart's default is 256)
  --worker-env K=V,...  settings every worker gets (e.g. PGCDC_KAFKA_MAX_IN_FLIGHT_BYTES=16MiB)
  --chart-node-options  run every worker with the chart's default nodeOptions (helm/pgcdc/values.yaml)
`;

export interface BenchResult {
  startedAt: string;
  finishedAt: string;
  command: string;
  environment: Record<string, unknown>;
  config: Record<string, unknown>;
  runs: Record<string, Metrics[]>;
  summary: Record<string, Record<string, Summary>>;
  streamSteps: StepResult[][];
  profile?: {
    dir: string;
    file: string;
    digest: ProfileDigest;
    stages?: Array<{ stage: string; usPerRow: number; share: number }>;
  };
  table: ReturnType<typeof buildRows>;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rows: { type: 'string' },
      scenario: { type: 'string' },
      repeat: { type: 'string' },
      out: { type: 'string' },
      'batch-size': { type: 'string' },
      'stream-rates': { type: 'string' },
      'step-seconds': { type: 'string' },
      'latency-rate': { type: 'string' },
      'latency-seconds': { type: 'string' },
      clients: { type: 'string' },
      'backlog-changes': { type: 'string' },
      profile: { type: 'boolean' },
      'keep-topics': { type: 'boolean' },
      tables: { type: 'string' },
      delivery: { type: 'string' },
      'transaction-ms': { type: 'string' },
      'heap-mb': { type: 'string' },
      'worker-env': { type: 'string' },
      'chart-node-options': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const int = (v: string | undefined, d: number): number => {
    if (v === undefined) return d;
    const n = Number(v.replaceAll('_', '').replaceAll(',', ''));
    if (!Number.isInteger(n) || n <= 0) throw new Error(`not a positive integer: ${v}`);
    return n;
  };
  const rows = int(values.rows, 1_000_000);
  // Read by startWorker (lib.ts) for every worker of every scenario.
  if (values['heap-mb']) process.env.PGCDC_BENCH_HEAP_MB = String(int(values['heap-mb'], 256));
  if (values['worker-env']) process.env.PGCDC_BENCH_WORKER_ENV = values['worker-env'];
  if (values['chart-node-options']) process.env.PGCDC_BENCH_NODE_OPTIONS = chartNodeOptions();
  const repeat = int(values.repeat, rows <= 1_000_000 ? 3 : 1);
  const wanted = (values.scenario ?? 'all').split(',').map((s) => s.trim());
  const scenarios: Scenario[] = wanted.includes('all')
    ? [...SCENARIOS]
    : wanted.map((s) => {
        if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario ${s}\n${USAGE}`);
        return s as Scenario;
      });
  const outDir = path.resolve(values.out ?? path.join(ROOT, 'bench/results'));
  fs.mkdirSync(outDir, { recursive: true });
  const batchSize = int(values['batch-size'], 10_000);
  const tableCounts = (values.tables ?? '100,1000').split(',').map((n) => int(n, 0));
  // The tables scenario alone needs neither the N-row table nor the baselines measured on it.
  const onBaseTable = scenarios.some((s) => ON_BASE_TABLE.includes(s));

  silenceKafkajsTimeoutWarning();
  note('local stack: starting or reusing (deploy/local/stack.ts)');
  Object.assign(process.env, await stackUp());

  const startedAt = new Date();
  const stamp = startedAt
    .toISOString()
    .replaceAll(':', '-')
    .replace(/\.\d+Z$/, 'Z');
  const db = await pgClient();
  // A server restart (another engineer's `stack up`) must fail this run with an error, not crash it
  // past its clean-up.
  db.on('error', (err) => note(`PostgreSQL connection error: ${err.message}`));
  const admin = kafka('pgcdc-bench-admin').admin();
  await admin.connect();
  const cores = os.availableParallelism();
  const ctx: Context = {
    rows,
    table: uniqueName('bench_load'),
    db,
    admin,
    outDir,
    cores,
    workerSettings: {
      PGCDC_SNAPSHOT_BATCH_SIZE: String(batchSize),
      PGCDC_OFFSETS_COMMIT_INTERVAL_MS: '1000',
      PGCDC_LOG_LEVEL: 'warn',
      PGCDC_LOG_FORMAT: 'json',
      // Several workers may run at once (and other engineers' tests): no fixed HTTP port.
      PGCDC_HTTP_PORT: '0',
      PGCDC_DELIVERY_MODE: values.delivery ?? 'at-least-once',
      ...(values['transaction-ms'] ? { PGCDC_DELIVERY_TRANSACTION_MS: values['transaction-ms'] } : {}),
    },
    stream: {
      rates: (values['stream-rates'] ?? '1000,2000,4000,8000,16000,32000').split(',').map((r) => int(r, 0)),
      stepSeconds: int(values['step-seconds'], 15),
      clients: int(values.clients, 8),
      backlogChanges: int(values['backlog-changes'], 300_000),
    },
    latency: {
      rate: int(values['latency-rate'], 2000),
      seconds: int(values['latency-seconds'], 30),
      clients: int(values.clients, 8),
    },
    keepTopics: values['keep-topics'] ?? false,
  };

  const runs: Record<string, Metrics[]> = { baselines: [] };
  for (const s of scenarios) runs[s] = [];
  const streamSteps: StepResult[][] = [];
  let profile: BenchResult['profile'];
  const v = await versions(db);
  const environment = {
    cores,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverageAtStart: os.loadavg(),
    kernel: os.release(),
    node: process.version,
    postgres: v.postgres,
    kafka: v.kafka,
    packages: Object.fromEntries(
      ['kafkajs', 'pg', 'avsc', 'pg-logical-replication'].map((p) => [p, packageVersion(p)]),
    ),
    pgcdcCommit: gitCommit(),
    // The worker runs from the working tree: uncommitted changes to src/ are part of what was measured.
    uncommittedSrc: gitDirty(),
    note: 'PostgreSQL, Kafka, the registry, the worker and the load generator share this machine.',
  };

  try {
    if (onBaseTable) {
      note(`base table ${ctx.table}: ${rows.toLocaleString('en-US')} rows`);
      await createTable(db, ctx.table);
      await fillTable(db, ctx.table, 1, rows);
      await db.query(`VACUUM ANALYZE ${ctx.table}`);
    }
    const size = onBaseTable ? await tableBytes(db, ctx.table) : { heap: NaN, total: NaN };
    const dataSize = { tableBytes: size.heap, totalRelationBytes: size.total };

    for (let r = 1; r <= repeat; r++) {
      if (onBaseTable) {
        note(`repetition ${r}/${repeat}: baselines`);
        const copy = await copyBaseline(ctx.table, rows);
        const enc = await readAndEncodeBaseline(ctx.table, batchSize);
        const kb = await kafkaBaseline(
          `${uniqueName('bench_raw')}`,
          rows,
          enc.avgKeyBytes,
          enc.avgValueBytes,
        );
        runs.baselines!.push({ ...copy, ...enc.metrics, ...kb, tableMiB: size.heap / 2 ** 20 });
        note(`baselines: ${JSON.stringify(runs.baselines!.at(-1))}`);
      }
      for (const s of scenarios) {
        note(`repetition ${r}/${repeat}: ${s}`);
        if (s === 'snapshot') runs.snapshot!.push((await retried(s, () => snapshotRun(ctx))).metrics);
        if (s === 'bigtx') runs.bigtx!.push(await retried(s, () => bigtxRun(ctx)));
        if (s === 'latency') runs.latency!.push(await retried(s, () => latencyRun(ctx)));
        if (s === 'tables') {
          // One metrics record per repetition: each table count's figures under its own names.
          const m: Metrics = {};
          for (const n of tableCounts) {
            const one = await retried(`${s} ${n}`, () => tablesRun(ctx, n));
            note(`tables ${n}: ${JSON.stringify(one)}`);
            for (const [k, x] of Object.entries(one)) m[`${k}At${n}`] = x;
          }
          runs.tables!.push(m);
        }
        if (s === 'stream') {
          const res = await retried(s, () => streamRun(ctx));
          runs.stream!.push(res.metrics);
          streamSteps.push(res.steps);
        }
        note(
          `${s}: ${JSON.stringify(runs[s]!.at(-1), (_k, x: unknown) => (typeof x === 'number' ? Number(x.toPrecision(4)) : x))}`,
        );
      }
    }
    if (values.profile) {
      const dir = path.join(outDir, `${stamp}-cpuprofile`);
      note(`profiling the snapshot once (node --cpu-prof → ${dir})`);
      try {
        const profiled = await snapshotRun(ctx, { profileDir: dir });
        const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
        if (file) {
          const stages = stageProfile(
            JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile,
            snapshotStageOf,
            'read (snapshot reader, pg driver)',
          );
          const cpuUsPerRow = (profiled.metrics.cpuSeconds! * 1e6) / rows;
          profile = {
            dir,
            file,
            digest: digestCpuProfile(path.join(dir, file)),
            stages: stagesPerRow(stages, cpuUsPerRow),
          };
        }
      } catch (err) {
        note(`profiling failed (the measured runs are kept): ${String(err).slice(0, 2000)}`);
      }
    }

    const summary: Record<string, Record<string, Summary>> = {};
    for (const [k, list] of Object.entries(runs)) summary[k] = summarizeRuns(list);
    const table = buildRows(rowSpecs(summary, cores, profile?.digest, tableCounts), summary);
    const result: BenchResult = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      command: `npm run bench -- ${argv.join(' ')}`.trim(),
      environment,
      config: {
        rows,
        repeat,
        scenarios,
        snapshotBatchSize: batchSize,
        heapMb: process.env.PGCDC_BENCH_HEAP_MB ? Number(process.env.PGCDC_BENCH_HEAP_MB) : null,
        workerEnv: process.env.PGCDC_BENCH_WORKER_ENV ?? null,
        nodeOptions: process.env.PGCDC_BENCH_NODE_OPTIONS ?? null,
        worker: ctx.workerSettings,
        stream: {
          ...ctx.stream,
          changesPerTransaction: 3,
          drainLimitSeconds: DRAIN_LIMIT_S,
          keepPace: KEEP_PACE,
        },
        latency: ctx.latency,
        tables: { counts: tableCounts, rowsPerTable: 10 },
        dataSize,
        bytesNote:
          'MiB/s of the initial load = bytes of the topic log segments on the broker (records + batch headers) / seconds; ' +
          'the PostgreSQL table (heap + TOAST) size is in dataSize.',
      },
      runs,
      summary,
      streamSteps,
      ...(profile ? { profile } : {}),
      table,
    };
    const md = renderMarkdown(result);
    fs.writeFileSync(path.join(outDir, `${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
    fs.writeFileSync(path.join(outDir, `${stamp}.md`), md);
    process.stdout.write(`${md}\n`);
    note(`wrote ${path.join(outDir, `${stamp}.json`)} and .md`);
    return 0;
  } finally {
    await db.query(`DROP TABLE IF EXISTS ${ctx.table}`).catch(() => undefined);
    await db.end();
    await admin.disconnect();
  }
}

/**
 * The stack is shared: another engineer's tests may hold every replication slot for a moment
 * (max_replication_slots) or restart a server. A failed repetition is run again, twice at most.
 */
async function retried<T>(label: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= 3) throw err;
      note(
        `${label} failed (attempt ${attempt}), retrying in 10 s: ${String(err).split('\n').slice(0, 3).join(' ')}`,
      );
      await new Promise((r) => setTimeout(r, 10_000));
    }
  }
}

/** The chart's default NODE_OPTIONS, as a worker in Kubernetes runs with them. */
export function chartNodeOptions(): string {
  const values = parseYaml(fs.readFileSync(path.join(ROOT, 'helm/pgcdc/values.yaml'), 'utf8')) as {
    nodeOptions?: unknown;
  };
  if (typeof values.nodeOptions !== 'string' || !values.nodeOptions)
    throw new Error('helm/pgcdc/values.yaml has no nodeOptions');
  return values.nodeOptions;
}

/** Each stage's share of the busy samples (idle left out), and that share of `cpuUsPerRow`. */
export function stagesPerRow(
  stages: Map<string, number>,
  cpuUsPerRow: number,
): Array<{ stage: string; usPerRow: number; share: number }> {
  const busy = [...stages].filter(([k]) => k !== 'idle');
  const total = busy.reduce((a, [, v]) => a + v, 0);
  return busy
    .map(([stage, v]) => ({ stage, share: v / total, usPerRow: (v / total) * cpuUsPerRow }))
    .sort((a, b) => b.share - a.share);
}

export function digestCpuProfile(file: string): ProfileDigest {
  return digestProfile(JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile, 30);
}

export function rowSpecs(
  sums: Record<string, Record<string, Summary>>,
  cores: number,
  profile: ProfileDigest | undefined,
  tableCounts: ReadonlyArray<number> = [],
): RowSpec[] {
  const m = (from: string, k: string) => sums[from]?.[k]?.median;
  const bound = (from: string) =>
    sums[from]
      ? boundBy(
          {
            worker: m(from, 'workerCpuUtil') ?? m(from, 'workerCpuUtilAtMax') ?? NaN,
            postgres: m(from, 'postgresCpuUtil') ?? m(from, 'postgresCpuUtilAtMax'),
            kafka: m(from, 'kafkaCpuUtil'),
          },
          cores,
        )
      : undefined;
  const top = profile
    ? `; profile: ${profile.categories
        .filter((c) => !c.category.startsWith('idle'))
        .slice(0, 3)
        .map((c) => `${c.category} ${c.percent.toFixed(0)} %`)
        .join(', ')}`
    : '';
  const B = 'baselines';
  const snap = `${bound('snapshot') ?? ''}${top}`;
  return [
    {
      scenario: 'Initial load',
      figure: 'rows/s, start → all acked',
      unit: 'rows/s',
      from: 'snapshot',
      metric: 'rowsPerSec',
      baseline: { name: 'PG COPY TO STDOUT (psql)', from: B, metric: 'copyRowsPerSec', unit: 'rows/s' },
      bottleneck: snap,
    },
    {
      scenario: 'Initial load',
      figure: 'rows/s vs pg driver read alone',
      unit: 'rows/s',
      from: 'snapshot',
      metric: 'rowsPerSec',
      baseline: { name: 'readTable (node-pg, FETCH)', from: B, metric: 'readRowsPerSec', unit: 'rows/s' },
    },
    {
      scenario: 'Initial load',
      figure: 'rows/s vs Avro encoding alone',
      unit: 'rows/s',
      from: 'snapshot',
      metric: 'rowsPerSec',
      baseline: { name: 'envelope + toBuffer', from: B, metric: 'avroRowsPerSec', unit: 'rows/s' },
    },
    {
      scenario: 'Initial load',
      figure: 'records/s vs Kafka raw write',
      unit: 'records/s',
      from: 'snapshot',
      metric: 'rowsPerSec',
      baseline: {
        name: 'kafkajs sendBatch 900 KiB, acks=-1',
        from: B,
        metric: 'kafkaRecordsPerSec',
        unit: 'records/s',
      },
    },
    {
      scenario: 'Initial load',
      figure: 'MiB/s (topic log bytes)',
      unit: 'MiB/s',
      from: 'snapshot',
      metric: 'kafkaMiBPerSec',
      baseline: { name: 'Kafka raw write', from: B, metric: 'kafkaMiBPerSec', unit: 'MiB/s' },
    },
    {
      scenario: 'Initial load',
      figure: 'worker peak RSS',
      unit: 'MiB',
      from: 'snapshot',
      metric: 'peakRssMiB',
    },
    { scenario: 'Initial load', figure: 'worker CPU', unit: 's', from: 'snapshot', metric: 'cpuSeconds' },
    {
      scenario: 'Streaming',
      figure: 'max sustained changes/s (1 ins + 1 upd + 1 del per tx)',
      unit: 'changes/s',
      from: 'stream',
      metric: 'maxSustainedChangesPerSec',
      baseline: {
        name: 'PG pgoutput decoding in-server',
        from: 'stream',
        metric: 'pgDecodeChangesPerSec',
        unit: 'changes/s',
      },
      // The steps share the cores with pgbench and its backends: when the worker is far from one
      // core, the next step failed for lack of CPU on the machine, not in the worker.
      bottleneck:
        (m('stream', 'workerCpuUtilAtMax') ?? 1) < 0.6
          ? `machine CPU shared with the load generator (pgbench + its backends); worker ${((m('stream', 'workerCpuUtilAtMax') ?? NaN) * 100).toFixed(0)} %, PG walsender ${((m('stream', 'postgresCpuUtilAtMax') ?? NaN) * 100).toFixed(0)} %; the worker's own ceiling is the catch-up row`
          : bound('stream'),
    },
    {
      scenario: 'Streaming',
      figure: 'records/s at that rate vs Kafka raw write',
      unit: 'records/s',
      from: 'stream',
      metric: 'maxSustainedRecordsPerSec',
      baseline: { name: 'Kafka raw write', from: B, metric: 'kafkaRecordsPerSec', unit: 'records/s' },
    },
    {
      scenario: 'Streaming',
      figure: 'catch-up: backlog drained by a restarted worker',
      unit: 'changes/s',
      from: 'stream',
      metric: 'catchUpChangesPerSec',
      baseline: {
        name: 'PG pgoutput decoding in-server',
        from: 'stream',
        metric: 'pgDecodeChangesPerSec',
        unit: 'changes/s',
      },
      bottleneck: sums.stream
        ? boundBy({ worker: m('stream', 'catchUpWorkerCpuUtil') ?? NaN }, cores)
        : undefined,
    },
    { scenario: 'Streaming', figure: 'worker peak RSS', unit: 'MiB', from: 'stream', metric: 'peakRssMiB' },
    {
      scenario: 'Latency',
      figure: 'changes/s offered',
      unit: 'changes/s',
      from: 'latency',
      metric: 'changesPerSec',
      bottleneck: bound('latency'),
    },
    ...(['50', '95', '99'] as const).map((p) => ({
      scenario: 'Latency',
      figure: `p${p} commit → appended in Kafka`,
      unit: 'ms',
      from: 'latency',
      metric: `appendP${p}Ms`,
      ...(p !== '95'
        ? { baseline: { name: `Kafka 1-record ack p${p}`, from: B, metric: `kafkaAckP${p}Ms`, unit: 'ms' } }
        : {}),
    })),
    ...(['50', '95', '99'] as const).map((p) => ({
      scenario: 'Latency',
      figure: `p${p} commit → visible to a consumer`,
      unit: 'ms',
      from: 'latency',
      metric: `visibleP${p}Ms`,
    })),
    {
      scenario: 'Large transaction',
      figure: 'rows/s, commit → all acked',
      unit: 'rows/s',
      from: 'bigtx',
      metric: 'rowsPerSecAfterCommit',
      baseline: {
        name: 'PG pgoutput decoding in-server',
        from: 'bigtx',
        metric: 'pgDecodeRowsPerSec',
        unit: 'rows/s',
      },
      bottleneck: bound('bigtx'),
    },
    {
      scenario: 'Large transaction',
      figure: 'drain time after commit',
      unit: 's',
      from: 'bigtx',
      metric: 'drainSeconds',
    },
    ...tableCounts.flatMap((n): RowSpec[] => [
      {
        scenario: 'Many tables',
        figure: `${n.toLocaleString('en-US')} tables × 10 rows: start → streaming`,
        unit: 's',
        from: 'tables',
        metric: `secondsAt${n}`,
        bottleneck: sums.tables
          ? `worker ${((m('tables', `workerCpuUtilAt${n}`) ?? NaN) * 100).toFixed(0)} %`
          : undefined,
      },
      {
        scenario: 'Many tables',
        figure: `${n} tables: per table`,
        unit: 'ms',
        from: 'tables',
        metric: `perTableMsAt${n}`,
      },
      {
        scenario: 'Many tables',
        figure: `${n} tables: worker CPU`,
        unit: 's',
        from: 'tables',
        metric: `cpuSecondsAt${n}`,
      },
      {
        scenario: 'Many tables',
        figure: `${n} tables: a table created while streaming, insert → first record`,
        unit: 'ms',
        from: 'tables',
        metric: `lateTableMsAt${n}`,
      },
    ]),
    {
      scenario: 'Large transaction',
      figure: 'worker peak RSS after the N-row tx',
      unit: 'MiB',
      from: 'bigtx',
      metric: 'peakRssMiB',
      baseline: {
        name: 'peak RSS after an N/10-row tx',
        from: 'bigtx',
        metric: 'peakRssSmallTxMiB',
        unit: 'MiB',
      },
    },
  ];
}

export function renderMarkdown(r: BenchResult): string {
  const env = r.environment;
  const cfg = r.config;
  const lines = [
    `# pgcdc benchmark ${r.startedAt}`,
    '',
    `\`${r.command}\` — N = ${Number(cfg.rows).toLocaleString('en-US')} rows, ${String(cfg.repeat)} repetition(s), ` +
      `${String(env.cores)} cores (${String(env.cpuModel)}), Node ${String(env.node)}, PostgreSQL ${String(env.postgres)}, ` +
      `Kafka ${String(env.kafka)}; load average at start ${(env.loadAverageAtStart as number[]).map((x) => x.toFixed(2)).join(' ')}.`,
    '',
    markdownTable(r.table),
    '',
    `Ratio = pgcdc median / baseline median. ${String(cfg.bytesNote)}`,
  ];
  const steps = r.streamSteps;
  if (steps.length > 0) {
    lines.push(
      '',
      '## Streaming steps',
      '',
      '| Run | Offered | Generated | Produced during step | Drain after | Max WAL lag | Worker CPU | Sustained |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
    );
    steps.forEach((run, i) =>
      run.forEach((s) =>
        lines.push(
          `| ${i + 1} | ${s.offeredChangesPerSec} | ${s.generatedChangesPerSec.toFixed(0)} | ${s.producedChangesPerSec.toFixed(0)} | ${s.drainSeconds.toFixed(1)} s | ${(s.maxWalLagBytes / 1024).toFixed(0)} KiB | ${(s.workerCpuUtil * 100).toFixed(0)} % | ${s.sustained ? 'yes' : 'no'}${s.generatorLimited ? ' (generator limited)' : ''} |`,
        ),
      ),
    );
  }
  if (r.profile) {
    lines.push('', `## Snapshot CPU profile (${r.profile.file})`, '', markdownProfile(r.profile.digest));
    if (r.profile.stages) {
      lines.push(
        '',
        'CPU per row by stage (the profiled run: its samples from the first read on, their shares applied to its measured worker CPU per row, start included):',
        '',
        '| Stage | µs per row | Share |',
        '| --- | --- | --- |',
        ...r.profile.stages.map(
          (s) => `| ${s.stage} | ${s.usPerRow.toFixed(2)} | ${(s.share * 100).toFixed(1)} % |`,
        ),
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

function packageVersion(name: string): string {
  try {
    const p = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as {
      version: string;
    };
    return p.version;
  } catch {
    return 'unknown';
  }
}

function gitDirty(): string[] {
  try {
    return execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

if (import.meta.url === new URL(process.argv[1] ?? '', 'file://').href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
