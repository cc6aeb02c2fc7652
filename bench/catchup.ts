// CPU cost per change of the streaming path, stage by stage: a backlog of pgbench transactions
// (1 insert + 1 update + 1 delete on the benchmark table, as the stream scenario) written while
// no worker runs, then drained by a worker started on it. Measured in CPU, not wall time, so other
// work on the machine does not move the figure much: the worker's CPU seconds (from /proc) between
// its first record and its last, per change; with --profile also a V8 CPU profile whose samples
// are attributed to the stage of their nearest pgcdc or dependency frame.
//
//   node bench/catchup.ts [--changes 150000] [--repeat 3] [--profile] [--out bench/results]
//
// Prints a Markdown table; writes <out>/catchup-<timestamp>.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stackUp } from '../deploy/local/stack.ts';
import { silenceKafkajsTimeoutWarning } from '../deploy/local/process.ts';
import { uniqueName } from '../test/support/pipeline.ts';
import {
  CHANGES_PER_TX,
  RECORDS_PER_TX,
  ROOT,
  createStreamTable,
  dropSlotIfExists,
  kafka,
  note,
  now,
  pgClient,
  pgbench,
  publicationName,
  sleep,
  slotName,
  startWorker,
  topicRecords,
  waitForActiveSlot,
  workerEnv,
  writeStreamScript,
} from './lib.ts';
import { deleteTopics } from './lib.ts';
import { summarize, type CpuProfile } from './report.ts';

/** Stages of the streaming path, by the file a function lives in. */
export function stageOf(url: string, functionName: string): string | null {
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(program)') return 'V8 (program)';
  if (url.includes('/node_modules/pg-logical-replication/') || url.includes('/node_modules/pg-protocol/'))
    return 'read (replication socket, pg-protocol)';
  if (url.includes('/node_modules/pg/')) return 'read (replication socket, pg-protocol)';
  if (
    url.includes('/src/postgres/replication/stream.ts') ||
    url.includes('/src/postgres/replication/wire.ts')
  )
    return 'read (replication socket, pg-protocol)';
  if (url.includes('/src/postgres/replication/pgoutput.ts')) return 'decode (pgoutput)';
  if (url.includes('/src/pipeline/transactions.ts') || url.includes('/src/pipeline/connector.ts'))
    return 'change events (transactions, connector)';
  // pgcdc's own avsc writers are encoding, not conversion.
  if (url.includes('/src/avro/writers.ts')) return 'encode (avsc, Confluent frame)';
  if (url.includes('/src/avro/')) return 'convert (src/avro: values, envelope)';
  if (url.includes('/node_modules/avsc/')) return 'encode (avsc, Confluent frame)';
  if (url.includes('/src/pipeline/encoder.ts') || url.includes('/src/registry/'))
    return 'encode (avsc, Confluent frame)';
  if (url.includes('/src/pipeline/checkpoint.ts') || url.includes('/src/kafka/offsets.ts'))
    return 'checkpoint';
  if (url.includes('/src/kafka/') || url.includes('/src/pipeline/sink.ts'))
    return 'produce (batcher, sink, kafkajs)';
  if (url.includes('/node_modules/kafkajs/')) return 'produce (batcher, sink, kafkajs)';
  if (url.includes('/src/')) return 'other pgcdc';
  return null; // Node.js core and builtins: charged to the caller's stage
}

/** Stages of the initial load: the snapshot reader and the load's own pipeline, then as streaming. */
export function snapshotStageOf(url: string, functionName: string): string | null {
  if (
    url.includes('/src/postgres/snapshot/') ||
    url.includes('/node_modules/pg/') ||
    url.includes('/node_modules/pg-protocol/')
  )
    return 'read (snapshot reader, pg driver)';
  if (
    url.includes('/src/pipeline/chunked-load.ts') ||
    url.includes('/src/pipeline/chunks.ts') ||
    url.includes('/src/pipeline/snapshot.ts') ||
    url.includes('/src/pipeline/connector.ts')
  )
    return 'load pipeline (chunks, connector)';
  return stageOf(url, functionName);
}

/**
 * Self time by stage: a sample in Node.js core (Buffer, streams, timers) counts for the nearest
 * frame above it that has a stage, so Buffer allocations made by avsc count as encoding. Samples
 * count from the first one in `startStage` (the worker's start is not the path measured).
 */
export function stageProfile(
  profile: CpuProfile,
  classify: (url: string, functionName: string) => string | null = stageOf,
  startStage = 'decode (pgoutput)',
): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes as Array<CpuProfile['nodes'][number] & { children?: number[] }>) {
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const stageCache = new Map<number, string>();
  const stageFor = (id: number): string => {
    const cached = stageCache.get(id);
    if (cached) return cached;
    let s: string | null = null;
    for (let cur: number | undefined = id; cur !== undefined && s === null; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      s = classify(f.url, f.functionName);
    }
    const stage = s ?? 'Node.js core (no caller in a stage)';
    stageCache.set(id, stage);
    return stage;
  };
  const out = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const from = Math.max(
    0,
    samples.findIndex((id) => stageFor(id) === startStage),
  );
  for (let i = from; i < samples.length; i++) {
    const stage = stageFor(samples[i]!);
    out.set(stage, (out.get(stage) ?? 0) + Math.max(0, deltas[i] ?? 0));
  }
  return out;
}

interface Run {
  changes: number;
  seconds: number;
  changesPerSec: number;
  workerCpuSeconds: number;
  cpuUsPerChange: number;
  /** The worker's peak RSS (VmHWM) over its life, start and drain. */
  peakRssMiB: number;
  loadAverage: number;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      changes: { type: 'string' },
      repeat: { type: 'string' },
      profile: { type: 'boolean' },
      out: { type: 'string' },
      clients: { type: 'string' },
    },
    strict: true,
  });
  const changesWanted = Number(values.changes ?? 150_000);
  const repeat = Number(values.repeat ?? 3);
  const clients = Number(values.clients ?? 8);
  const outDir = path.resolve(values.out ?? path.join(ROOT, 'bench/results'));
  fs.mkdirSync(outDir, { recursive: true });
  silenceKafkajsTimeoutWarning();
  Object.assign(process.env, await stackUp());
  const db = await pgClient();
  db.on('error', (err) => note(`PostgreSQL connection error: ${err.message}`));
  const admin = kafka('pgcdc-bench-catchup').admin();
  await admin.connect();
  const name = uniqueName('bcatch');
  const table = `${name}_t`;
  const topic = `${name}.public.${table}`;
  const pub = publicationName(name);
  const txPerClient = Math.max(1, Math.round(changesWanted / CHANGES_PER_TX / clients));
  const profileDir = path.join(outDir, `catchup-${name}-cpuprofile`);
  const runs: Run[] = [];
  const stages = new Map<string, number>();
  let profiledChanges = 0;
  let profiledCpuUsPerChange = NaN;
  try {
    await createStreamTable(db, table, 10_000, Math.ceil(txPerClient * clients * (repeat + 1) * 1.2) + 1000);
    const script = writeStreamScript(outDir, table, 10_000);
    await db.query(`CREATE PUBLICATION ${pub} FOR TABLE ${table}`);
    const env = workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_SNAPSHOT_MODE: 'never',
      PGCDC_PUBLICATION_NAME: pub,
      PGCDC_OFFSETS_COMMIT_INTERVAL_MS: '1000',
      PGCDC_HTTP_PORT: '0',
    });
    // The slot and the offset: a first worker that streams nothing.
    const w0 = startWorker(env);
    await waitForActiveSlot(db, slotName(name), w0);
    await w0.stop();
    let expected = 0;
    for (let r = 0; r <= repeat; r++) {
      const profiled = r === repeat;
      if (profiled && !values.profile) break;
      const backlog = await pgbench(script, { transactionsPerClient: txPerClient, clients });
      const changes = backlog.transactions * CHANGES_PER_TX;
      expected += backlog.transactions * RECORDS_PER_TX;
      const before = await topicRecords(admin, topic);
      const loadAverage = os.loadavg()[0]!;
      const w = startWorker(
        env,
        profiled
          ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--cpu-prof-interval=500'] }
          : {},
      );
      let first: { t: number; cpu: number; n: number } | null = null;
      while (true) {
        const n = await topicRecords(admin, topic);
        if (n > before && !first) first = { t: now(), cpu: w.cpuSeconds(), n };
        if (n >= expected) break;
        if (w.child.exitCode !== null) throw new Error(`worker exited:\n${w.output()}`);
        await sleep(50);
      }
      const t1 = now();
      const cpu1 = w.cpuSeconds();
      const peakRssMiB = w.peakRssMiB();
      await w.stop();
      // Changes drained between the first record seen and the last (records → changes at 3:4).
      const measured = ((expected - first!.n) * CHANGES_PER_TX) / RECORDS_PER_TX;
      const run: Run = {
        changes,
        seconds: (t1 - first!.t) / 1000,
        changesPerSec: measured / ((t1 - first!.t) / 1000),
        workerCpuSeconds: cpu1 - first!.cpu,
        cpuUsPerChange: ((cpu1 - first!.cpu) * 1e6) / measured,
        peakRssMiB,
        loadAverage,
      };
      note(`${profiled ? 'profiled ' : ''}catch-up: ${JSON.stringify(run)}`);
      if (profiled) {
        const file = fs.readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'))!;
        const prof = JSON.parse(fs.readFileSync(path.join(profileDir, file), 'utf8')) as CpuProfile;
        for (const [k, v] of stageProfile(prof)) stages.set(k, v);
        profiledChanges = changes;
        profiledCpuUsPerChange = run.cpuUsPerChange;
      } else runs.push(run);
    }
  } finally {
    await dropSlotIfExists(db, slotName(name));
    await db.query(`DROP PUBLICATION IF EXISTS ${pub}`).catch(() => undefined);
    await db.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    await deleteTopics(admin, `${name}.`);
    await deleteTopics(admin, `${name}-offsets`);
    await db.end();
    await admin.disconnect();
  }
  const s = (k: keyof Run) => summarize(runs.map((r) => r[k]));
  const f = (x: { median: number; min: number; max: number }, d = 0) =>
    `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;
  const lines = [
    `Catch-up of ${runs[0]?.changes.toLocaleString('en-US') ?? '?'} changes, ${runs.length} runs, median (min–max); load average at the runs' starts ${runs.map((r) => r.loadAverage.toFixed(1)).join(', ')}`,
    '',
    `- worker CPU per change: ${f(s('cpuUsPerChange'), 1)} µs`,
    `- worker peak RSS: ${f(s('peakRssMiB'), 0)} MiB`,
    `- changes/s (wall, first → last record): ${f(s('changesPerSec'))}`,
  ];
  if (stages.size > 0) {
    // Sampled time is wall time while the thread runs or waits to be scheduled: on a shared
    // machine it overstates CPU. The stages' shares are taken from it and applied to the worker's
    // measured CPU per change (from /proc) of the same run.
    const busy = [...stages].filter(([k]) => k !== 'idle').reduce((a, [, v]) => a + v, 0);
    lines.push(
      '',
      `Profiled run (${profiledChanges.toLocaleString('en-US')} changes; worker CPU ${profiledCpuUsPerChange.toFixed(1)} µs per change under the profiler): ` +
        'share of the busy samples from the first decoded message on, and that share of the measured CPU',
      '',
      '| Stage | µs per change | Share |',
      '| --- | --- | --- |',
      ...[...stages]
        .filter(([k]) => k !== 'idle')
        .sort((a, b) => b[1] - a[1])
        .map(
          ([k, us]) =>
            `| ${k} | ${((us / busy) * profiledCpuUsPerChange).toFixed(2)} | ${((us / busy) * 100).toFixed(1)} % |`,
        ),
      `| total | ${profiledCpuUsPerChange.toFixed(2)} | 100 % |`,
    );
  }
  const md = `${lines.join('\n')}\n`;
  const stamp = new Date()
    .toISOString()
    .replaceAll(':', '-')
    .replace(/\.\d+Z$/, 'Z');
  fs.writeFileSync(
    path.join(outDir, `catchup-${stamp}.json`),
    `${JSON.stringify({ runs, stages: Object.fromEntries(stages), profiledChanges, profiledCpuUsPerChange, profileDir }, null, 2)}\n`,
  );
  process.stdout.write(md);
  return 0;
}

if (import.meta.url === new URL(process.argv[1] ?? '', 'file://').href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`catchup: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
