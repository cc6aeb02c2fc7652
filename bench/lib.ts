// Shared machinery of the benchmark: the worker as a child process with its CPU and peak RSS read
// from /proc, Kafka high watermarks, the benchmark table, pgbench, psql.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import type pg from 'pg';
import { pgClient, stackSettings, workerEnv } from '../test/support/pipeline.ts';

export { pgClient, stackSettings, workerEnv };

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLI = path.join(ROOT, 'src/cli/main.ts');
export const PG_BIN = process.env.PGCDC_PG_BIN ?? '/usr/lib/postgresql/15/bin';
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const now = (): number => performance.now();

/** Progress lines go to stderr, so stdout carries only the report. */
export function note(text: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

// ---- /proc --------------------------------------------------------------------------------------

const CLK_TCK = 100; // Linux USER_HZ; /proc/<pid>/stat times are in these ticks on every mainstream kernel.

/** CPU seconds (user + system) a process has used so far; NaN when it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** VmHWM (peak RSS) and VmRSS in MiB. */
export function memory(pid: number): { peakRssMiB: number; rssMiB: number } {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { peakRssMiB: kb('VmHWM') / 1024, rssMiB: kb('VmRSS') / 1024 };
  } catch {
    return { peakRssMiB: NaN, rssMiB: NaN };
  }
}

export function kafkaPid(): number | undefined {
  const dir = process.env.PGCDC_STACK_DIR ?? path.join(ROOT, '.stack');
  try {
    return Number(fs.readFileSync(path.join(dir, 'kafka', 'pid'), 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

// ---- the worker ---------------------------------------------------------------------------------

export interface Worker {
  child: ChildProcess;
  pid: number;
  startedAt: number;
  output: () => string;
  /** Peak RSS seen so far (the kernel's VmHWM, kept after exit from the last sample). */
  peakRssMiB: () => number;
  cpuSeconds: () => number;
  /** SIGTERM, wait for the exit (the worker drains and exits 0). */
  stop: () => Promise<number | null>;
}

export interface WorkerOptions {
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
}

const liveWorkers = new Set<ChildProcess>();
let signalsHooked = false;

/** If the benchmark itself is interrupted, its workers go too (they would hold their slots). */
function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      for (const c of liveWorkers) c.kill('SIGKILL');
      process.exit(130);
    });
  }
}

/**
 * Settings every worker gets on top of the scenario's (bench/run.ts --worker-env, or
 * PGCDC_BENCH_WORKER_ENV="KEY=VALUE,KEY=VALUE" for bench/catchup.ts and bench/memcheck.ts).
 * The scenario's own settings (topics, tables, slot) still win.
 */
function workerEnvOverrides(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (process.env.PGCDC_BENCH_WORKER_ENV ?? '').split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new Error(`PGCDC_BENCH_WORKER_ENV: ${pair} is not KEY=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** Starts `pgcdc run` as a child process configured by environment variables, as a user would. */
export function startWorker(env: Record<string, string>, opts: WorkerOptions = {}): Worker {
  hookSignals();
  let out = '';
  const startedAt = now();
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CLI, 'run'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      // bench/run.ts --heap-mb: the heap cap the chart sets (helm values nodeOptions).
      NODE_OPTIONS: [
        '--disable-warning=TimeoutNegativeWarning',
        ...(process.env.PGCDC_BENCH_HEAP_MB
          ? [`--max-old-space-size=${process.env.PGCDC_BENCH_HEAP_MB}`]
          : []),
        // bench/run.ts --chart-node-options: the chart's default nodeOptions (helm/pgcdc/values.yaml).
        ...(process.env.PGCDC_BENCH_NODE_OPTIONS ? [process.env.PGCDC_BENCH_NODE_OPTIONS] : []),
      ].join(' '),
      ...workerEnvOverrides(),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid!;
  liveWorkers.add(child);
  child.once('exit', () => liveWorkers.delete(child));
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  let peak = 0;
  let cpu = 0;
  const sample = () => {
    const m = memory(pid).peakRssMiB;
    if (Number.isFinite(m)) peak = Math.max(peak, m);
    const c = cpuSeconds(pid);
    if (Number.isFinite(c)) cpu = c;
  };
  const timer = setInterval(sample, 100);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      clearInterval(timer);
      resolve(code);
    });
  });
  return {
    child,
    pid,
    startedAt,
    output: () => out,
    peakRssMiB: () => {
      sample();
      return peak;
    },
    cpuSeconds: () => {
      sample();
      return cpu;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 40_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** Fails fast when the worker died (its output is in the error). */
export function assertAlive(w: Worker): void {
  if (w.child.exitCode !== null || w.child.signalCode !== null) {
    throw new Error(`worker exited (${w.child.exitCode ?? w.child.signalCode}):\n${w.output().slice(-4000)}`);
  }
}

// ---- Kafka ----------------------------------------------------------------------------------------

export function kafka(clientId = 'pgcdc-bench'): Kafka {
  return new Kafka({
    brokers: stackSettings().brokers.split(','),
    clientId,
    logLevel: logLevel.NOTHING,
  });
}

/** Records in a topic (sum of high watermarks); 0 when it does not exist yet. */
export async function topicRecords(admin: Admin, topic: string): Promise<number> {
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((s, o) => s + Number(o.high), 0);
  } catch {
    return 0;
  }
}

/**
 * Polls the topic's high watermark until it reaches `target`; returns the moment (performance.now())
 * it was first seen there. Checks the worker is alive; gives up after timeoutMs.
 */
export async function waitForRecords(
  admin: Admin,
  topic: string,
  target: number,
  opts: { worker?: Worker; timeoutMs?: number; pollMs?: number } = {},
): Promise<number> {
  const deadline = now() + (opts.timeoutMs ?? 30 * 60_000);
  let last = -1;
  while (true) {
    const n = await topicRecords(admin, topic);
    if (n >= target) return now();
    if (opts.worker) assertAlive(opts.worker);
    if (now() > deadline) throw new Error(`${topic}: ${n} of ${target} records after the timeout`);
    if (n !== last) last = n;
    await sleep(opts.pollMs ?? 100);
  }
}

/** Bytes of the topic's log segments on the local broker (records + batch headers), if readable. */
export function topicLogBytes(topic: string): number {
  const dir = path.join(process.env.PGCDC_STACK_DIR ?? path.join(ROOT, '.stack'), 'kafka', 'data');
  let total = 0;
  try {
    for (const d of fs.readdirSync(dir)) {
      if (!d.startsWith(`${topic}-`) || !/^\d+$/.test(d.slice(topic.length + 1))) continue;
      for (const f of fs.readdirSync(path.join(dir, d))) {
        if (f.endsWith('.log')) total += fs.statSync(path.join(dir, d, f)).size;
      }
    }
  } catch {
    return NaN;
  }
  return total || NaN;
}

export async function deleteTopics(admin: Admin, prefix: string): Promise<void> {
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
  if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => undefined);
}

// ---- PostgreSQL ---------------------------------------------------------------------------------

/**
 * The benchmark table: about a dozen realistic columns. `rowSql(g)` is the row for integer
 * expression g, shared by the bulk load (generate_series) and pgbench's inserts.
 */
export const TABLE_COLUMNS = `
  id          bigint PRIMARY KEY,
  account_id  integer NOT NULL,
  amount      numeric(12,2) NOT NULL,
  quantity    smallint NOT NULL,
  status      text NOT NULL,
  note        text,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz,
  paid        boolean NOT NULL,
  ref         uuid NOT NULL,
  attrs       jsonb,
  score       double precision,
  ship_date   date,
  sku         varchar(32) NOT NULL`;

export const rowSql = (g: string): string =>
  `${g}, ((${g} * 7919) % 100000)::int, ((${g} * 7919) % 10000000) / 100.0, (${g} % 500)::smallint,
   (ARRAY['new','paid','shipped','delivered','cancelled'])[1 + (${g} % 5)::int],
   CASE WHEN ${g} % 10 = 0 THEN NULL ELSE repeat(md5(${g}::text), 1 + (${g} % 6)::int) END,
   timestamptz '2024-01-01 00:00:00+00' + (${g} % 31536000) * interval '1 second',
   CASE WHEN ${g} % 3 = 0 THEN NULL ELSE timestamptz '2024-06-01 12:00:00.123456+00' + (${g} % 86400) * interval '1 second' END,
   ${g} % 2 = 0, md5(${g}::text)::uuid,
   jsonb_build_object('channel', (ARRAY['web','app','store'])[1 + (${g} % 3)::int], 'items', ${g} % 7, 'tags', jsonb_build_array('a', ${g} % 13)),
   (${g} % 1000) / 7.0, date '2024-01-01' + (${g} % 365)::int, 'SKU-' || lpad((${g} % 99991)::text, 8, '0')`;

export async function createTable(db: pg.Client, table: string): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS ${table}`);
  await db.query(`CREATE TABLE ${table} (${TABLE_COLUMNS})`);
}

/** Fills ids [from, from + count) with one INSERT … SELECT generate_series. */
export async function fillTable(db: pg.Client, table: string, from: number, count: number): Promise<void> {
  if (count <= 0) return;
  await db.query(
    `INSERT INTO ${table} SELECT ${rowSql('g')} FROM generate_series(${from}::bigint, ${from + count - 1}::bigint) g`,
  );
}

export async function tableBytes(db: pg.Client, table: string): Promise<{ heap: number; total: number }> {
  const { rows } = await db.query<{ heap: string; total: string }>(
    `SELECT pg_table_size($1::regclass)::text AS heap, pg_total_relation_size($1::regclass)::text AS total`,
    [table],
  );
  return { heap: Number(rows[0]!.heap), total: Number(rows[0]!.total) };
}

/** Waits until the worker's slot exists and is active (the worker is streaming). */
export async function waitForActiveSlot(
  db: pg.Client,
  slot: string,
  w: Worker,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = now() + timeoutMs;
  while (true) {
    const { rows } = await db.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    if (rows[0]?.active) return;
    assertAlive(w);
    if (now() > deadline) throw new Error(`slot ${slot} not active after ${timeoutMs} ms:\n${w.output()}`);
    await sleep(100);
  }
}

/** PID of the server process that serves a slot (the walsender), for its CPU. */
export async function slotPid(db: pg.Client, slot: string): Promise<number | undefined> {
  const { rows } = await db.query<{ pid: number | null }>(
    'SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  return rows[0]?.pid ?? undefined;
}

export async function backendPid(db: pg.Client, applicationName: string): Promise<number | undefined> {
  const { rows } = await db.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1',
    [applicationName],
  );
  return rows[0]?.pid;
}

export async function dropSlotIfExists(db: pg.Client, slot: string): Promise<void> {
  await db
    .query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [
      slot,
    ])
    .catch(() => undefined);
}

/** The slot and publication pgcdc derives from a connector name (docs/configuration.md). */
export const slotName = (name: string): string =>
  `pgcdc_${name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63);
export const publicationName = (name: string): string =>
  `${name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}_pub`.slice(0, 63);

/**
 * PostgreSQL's own logical decoding rate for what a slot holds: pgoutput run inside the server
 * (pg_logical_slot_get_binary_changes), no network, no client. Consumes the slot.
 */
export async function pgDecodeRate(
  db: pg.Client,
  slot: string,
  publication: string,
): Promise<{ seconds: number; messages: number; bytes: number }> {
  const t0 = now();
  const { rows } = await db.query<{ n: string; bytes: string | null }>(
    `SELECT count(*)::text AS n, sum(length(data))::text AS bytes
       FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`,
    [slot, publication],
  );
  return { seconds: (now() - t0) / 1000, messages: Number(rows[0]!.n), bytes: Number(rows[0]!.bytes ?? 0) };
}

// ---- external tools -------------------------------------------------------------------------------

export function pgToolEnv(): NodeJS.ProcessEnv {
  const s = stackSettings();
  return {
    ...process.env,
    PGHOST: s.pgHost,
    PGPORT: String(s.pgPort),
    PGUSER: s.pgUser,
    PGPASSWORD: s.pgPassword,
    PGDATABASE: s.pgDatabase,
    PGSSLMODE: 'disable',
  };
}

/** Runs a command; resolves with its stdout byte count (or text when keepText) and exit code. */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; keepText?: boolean } = {},
): Promise<{ code: number | null; bytes: number; text: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    let text = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
      if (opts.keepText) text += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, bytes, text, stderr }));
  });
}

export async function versions(db: pg.Client): Promise<{ postgres: string; kafka: string }> {
  const pgv = (await db.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
  let kafkaVersion = 'unknown';
  try {
    // The local stack runs Kafka from the jars in .cache/kafka-libs (deploy/local/kafka.ts).
    const jar = fs
      .readdirSync(path.join(ROOT, '.cache', 'kafka-libs'))
      .find((f) => /^kafka-server-\d/.test(f));
    kafkaVersion = /(\d+\.\d+\.\d+)/.exec(jar ?? '')?.[1] ?? 'unknown';
  } catch {
    // unknown
  }
  return { postgres: pgv, kafka: kafkaVersion };
}

// ---- CPU of the processes involved ------------------------------------------------------------------

/**
 * Follows the CPU seconds of a few processes (the worker, a PostgreSQL backend or walsender, the
 * Kafka broker) and gives each one's utilisation (cores) between mark() and the last sample.
 * A process that exits keeps its last sampled value.
 */
export class CpuWatch {
  #pids = new Map<string, number>();
  #last = new Map<string, number>();
  #base = new Map<string, number>();
  #t0 = now();
  #t1 = now();
  #timer: NodeJS.Timeout;

  constructor() {
    this.#timer = setInterval(() => this.sample(), 200);
  }

  watch(label: string, pid: number | undefined, fromZero = false): void {
    if (!pid || this.#pids.get(label) === pid) return;
    this.#pids.set(label, pid);
    const c = cpuSeconds(pid);
    this.#last.set(label, c);
    // A process born inside the interval (a new backend) counts from zero.
    this.#base.set(label, fromZero ? 0 : c);
  }

  sample(): void {
    this.#t1 = now();
    for (const [label, pid] of this.#pids) {
      const c = cpuSeconds(pid);
      if (Number.isFinite(c)) this.#last.set(label, c);
    }
  }

  /** Starts a new interval. */
  mark(): void {
    this.sample();
    this.#t0 = this.#t1;
    for (const [label, c] of this.#last) this.#base.set(label, c);
  }

  /** CPU seconds used in the interval, per label. */
  used(): Record<string, number> {
    this.sample();
    return Object.fromEntries([...this.#last].map(([l, c]) => [l, c - (this.#base.get(l) ?? c)]));
  }

  /** Cores used on average since mark(), per label. */
  utilisation(): Record<string, number> {
    const used = this.used();
    const seconds = (this.#t1 - this.#t0) / 1000;
    return Object.fromEntries(Object.entries(used).map(([l, c]) => [l, seconds > 0 ? c / seconds : NaN]));
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/** Runs pgbench with a script at a fixed rate; returns the transactions it committed. */
export async function pgbench(
  scriptFile: string,
  opts: { tps?: number; seconds?: number; transactionsPerClient?: number; clients: number },
): Promise<{ transactions: number; failed: number; output: string }> {
  const args = ['-n', '-M', 'prepared', '-c', String(opts.clients), '-j', String(Math.min(2, opts.clients))];
  // --rate: a fixed schedule; without it pgbench goes as fast as it can.
  if (opts.tps !== undefined) args.push('-R', String(Math.max(1, Math.round(opts.tps))));
  if (opts.transactionsPerClient !== undefined) args.push('-t', String(opts.transactionsPerClient));
  else args.push('-T', String(opts.seconds ?? 10));
  const r = await run(`${PG_BIN}/pgbench`, [...args, '-f', scriptFile], { env: pgToolEnv(), keepText: true });
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(r.text)?.[1] ?? NaN);
  const failed = Number(/number of failed transactions: (\d+)/.exec(r.text)?.[1] ?? 0);
  if (r.code !== 0 || !Number.isFinite(transactions)) {
    throw new Error(`pgbench failed (${r.code}): ${r.stderr.slice(-2000)}\n${r.text.slice(-2000)}`);
  }
  return { transactions, failed, output: r.text };
}

/**
 * A table for streaming load: `updatable` rows (ids 1..updatable) that are updated at random,
 * `deletable` rows (ids from 100,000,000) deleted one per transaction in order, inserts from
 * 1,000,000,000. Each pgbench transaction is exactly 1 insert + 1 update + 1 delete: 3 changes,
 * 4 Kafka records (the delete's tombstone).
 */
export async function createStreamTable(
  db: pg.Client,
  table: string,
  updatable: number,
  deletable: number,
): Promise<void> {
  await createTable(db, table);
  await fillTable(db, table, 1, updatable);
  await fillTable(db, table, 100_000_000, deletable);
  await db.query(`CREATE SEQUENCE ${table}_ins START 1000000000`);
  await db.query(`CREATE SEQUENCE ${table}_del START 100000000`);
  await db.query(`VACUUM ANALYZE ${table}`);
}

export const CHANGES_PER_TX = 3;
export const RECORDS_PER_TX = 4;

export function writeStreamScript(dir: string, table: string, updatable: number): string {
  const file = path.join(dir, `${table}.pgbench.sql`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    file,
    [
      `\\set uid random(1, ${updatable})`,
      'BEGIN;',
      // The local cluster runs with synchronous_commit=off (fast tests); production's default is on.
      // Off, the walsender only sees a commit after the WAL writer's next flush (wal_writer_delay, 200 ms).
      'SET LOCAL synchronous_commit = on;',
      `INSERT INTO ${table} SELECT ${rowSql('s.g').replaceAll('\n', ' ')} FROM (SELECT nextval('${table}_ins') AS g) s;`,
      `UPDATE ${table} SET amount = amount + 1, quantity = (quantity + 1) % 500, updated_at = now(), status = 'paid' WHERE id = :uid;`,
      `DELETE FROM ${table} WHERE id = (SELECT nextval('${table}_del'));`,
      'END;',
      '',
    ].join('\n'),
  );
  return file;
}
