// 2. Streaming throughput: pgbench drives transactions of 1 insert + 1 update + 1 delete at
// increasing fixed rates (steps); a step is sustained when the worker kept pace during it (records
// in Kafka during the step ≥ KEEP_PACE of what was generated) and, after pgbench stops, needs at
// most DRAIN_LIMIT_S to have every record of the step in Kafka (lag stayed bounded). Escalation
// stops at the first step that is not sustained or where pgbench could not reach the offered rate. The figure is the highest sustained
// changes/s. The WAL lag (pg_current_wal_lsn() − the slot's confirmed_flush_lsn) is sampled too.
// Baseline: PostgreSQL decoding the same changes itself (second slot, pg_logical_slot_get_binary_changes).
import { uniqueName } from '../../test/support/pipeline.ts';
import type { Metrics } from '../report.ts';
import {
  CHANGES_PER_TX,
  CpuWatch,
  RECORDS_PER_TX,
  createStreamTable,
  kafkaPid,
  note,
  now,
  pgDecodeRate,
  pgbench,
  publicationName,
  slotName,
  slotPid,
  sleep,
  startWorker,
  topicRecords,
  waitForActiveSlot,
  workerEnv,
  writeStreamScript,
  type Worker,
} from '../lib.ts';
import { cleanUp, type Context } from './common.ts';

export const DRAIN_LIMIT_S = 2;
/** Records in Kafka during a step / changes generated: at least this (the window includes pgbench's start). */
export const KEEP_PACE = 0.9;
const CATCH_UP_TIMEOUT_MS = 10 * 60_000;
const UPDATABLE = 10_000;

export interface StepResult {
  offeredChangesPerSec: number;
  generatedChangesPerSec: number;
  producedChangesPerSec: number;
  drainSeconds: number;
  maxWalLagBytes: number;
  workerCpuUtil: number;
  postgresCpuUtil: number;
  sustained: boolean;
  generatorLimited: boolean;
}

export async function streamRun(ctx: Context): Promise<{ metrics: Metrics; steps: StepResult[] }> {
  const name = uniqueName('bstr');
  const table = `${name}_t`;
  const topic = `${name}.public.${table}`;
  const pub = publicationName(name);
  const baseSlot = `${name}_decode`;
  const { rates, stepSeconds, clients } = ctx.stream;
  const deletable =
    Math.ceil(
      ((rates.reduce((a, b) => a + b, 0) * stepSeconds + ctx.stream.backlogChanges) / CHANGES_PER_TX) * 1.3,
    ) + 1000;
  await createStreamTable(ctx.db, table, UPDATABLE, deletable);
  const script = writeStreamScript(ctx.outDir, table, UPDATABLE);
  await ctx.db.query(`CREATE PUBLICATION ${pub} FOR TABLE ${table}`);
  await ctx.db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [baseSlot]);
  const cpu = new CpuWatch();
  const env = {
    PGCDC_TABLES_INCLUDE: `public.${table}`,
    PGCDC_SNAPSHOT_MODE: 'never',
    PGCDC_PUBLICATION_NAME: pub,
    ...ctx.workerSettings,
  };
  const w = startWorker(workerEnv(name, env));
  const steps: StepResult[] = [];
  let totalTx = 0;
  try {
    await waitForActiveSlot(ctx.db, slotName(name), w);
    cpu.watch('worker', w.pid);
    cpu.watch('postgres', await slotPid(ctx.db, slotName(name)));
    cpu.watch('kafka', kafkaPid());
    let expected = 0;
    for (const rate of rates) {
      const step = await runStep(ctx, w, cpu, {
        topic,
        slot: slotName(name),
        script,
        rate,
        stepSeconds,
        clients,
        expected,
      });
      totalTx += step.transactions;
      expected += step.transactions * RECORDS_PER_TX;
      steps.push(step.result);
      note(
        `stream ${rate}/s: generated ${step.result.generatedChangesPerSec.toFixed(0)}/s, produced ${step.result.producedChangesPerSec.toFixed(0)}/s, ` +
          `drain ${step.result.drainSeconds.toFixed(1)} s, worker CPU ${(step.result.workerCpuUtil * 100).toFixed(0)} %` +
          `${step.result.sustained ? '' : ' — NOT sustained'}${step.result.generatorLimited ? ' (generator limited)' : ''}`,
      );
      if (!step.result.sustained || step.result.generatorLimited) break;
    }
    const code = await w.stop();
    if (code !== 0) throw new Error(`worker exited ${code}:\n${w.output()}`);

    // Catch-up: a backlog written while the worker is stopped, then a new worker (it resumes from
    // its offset) drains it with no load competing for the CPU: the worker's own ceiling.
    const backlogTx = Math.max(1, Math.round(ctx.stream.backlogChanges / CHANGES_PER_TX / clients)) * clients;
    const gen0 = now();
    const backlog = await pgbench(script, { transactionsPerClient: backlogTx / clients, clients });
    const genSeconds = (now() - gen0) / 1000;
    totalTx += backlog.transactions;
    expected += backlog.transactions * RECORDS_PER_TX;
    const before = await topicRecords(ctx.admin, topic);
    const w2 = startWorker(workerEnv(name, { ...env }));
    let firstAt = NaN;
    let catchUp: { doneAt: number; peak: number; cpu: number };
    try {
      while (true) {
        const n = await topicRecords(ctx.admin, topic);
        if (n > before && Number.isNaN(firstAt)) firstAt = now();
        if (n >= expected) break;
        if (w2.child.exitCode !== null) throw new Error(`worker exited:\n${w2.output()}`);
        if (now() - w2.startedAt > CATCH_UP_TIMEOUT_MS) {
          throw new Error(
            `catch-up: ${n - before} of ${expected - before} records after ${CATCH_UP_TIMEOUT_MS} ms`,
          );
        }
        await sleep(100);
      }
      catchUp = { doneAt: now(), peak: w2.peakRssMiB(), cpu: w2.cpuSeconds() };
    } finally {
      await w2.stop();
    }
    const backlogChanges = backlog.transactions * CHANGES_PER_TX;
    const decode = await pgDecodeRate(ctx.db, baseSlot, pub);
    const sustained = steps.filter((s) => s.sustained);
    const best = sustained.reduce<StepResult | null>(
      (b, s) => (!b || s.generatedChangesPerSec > b.generatedChangesPerSec ? s : b),
      null,
    );
    const metrics: Metrics = {
      maxSustainedChangesPerSec: best?.generatedChangesPerSec ?? 0,
      maxSustainedRecordsPerSec: ((best?.generatedChangesPerSec ?? 0) * RECORDS_PER_TX) / CHANGES_PER_TX,
      workerCpuUtilAtMax: best?.workerCpuUtil ?? NaN,
      postgresCpuUtilAtMax: best?.postgresCpuUtil ?? NaN,
      maxWalLagBytesAtMax: best?.maxWalLagBytes ?? NaN,
      peakRssMiB: w.peakRssMiB(),
      // When a step was not sustained: the throughput the worker reached while falling behind.
      maxProducedChangesPerSec: Math.max(...steps.map((s) => s.producedChangesPerSec)),
      generatorLimited: steps.some((s) => s.generatorLimited) ? 1 : 0,
      pgDecodeChangesPerSec: (totalTx * CHANGES_PER_TX) / decode.seconds,
      backlogChanges,
      backlogGeneratorChangesPerSec: backlogChanges / genSeconds,
      catchUpSeconds: (catchUp.doneAt - w2.startedAt) / 1000,
      catchUpChangesPerSec: backlogChanges / ((catchUp.doneAt - firstAt) / 1000),
      catchUpWorkerCpuUtil: catchUp.cpu / ((catchUp.doneAt - w2.startedAt) / 1000),
      catchUpPeakRssMiB: catchUp.peak,
    };
    return { metrics, steps };
  } finally {
    cpu.close();
    await w.stop();
    await cleanUp(ctx, name, [baseSlot]);
    await ctx.db.query(`DROP TABLE IF EXISTS ${table}`);
  }
}

async function walLag(ctx: Context, slot: string): Promise<number> {
  const { rows } = await ctx.db.query<{ lag: string | null }>(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  return Number(rows[0]?.lag ?? NaN);
}

async function runStep(
  ctx: Context,
  w: Worker,
  cpu: CpuWatch,
  p: {
    topic: string;
    slot: string;
    script: string;
    rate: number;
    stepSeconds: number;
    clients: number;
    expected: number;
  },
): Promise<{ transactions: number; result: StepResult }> {
  const w0 = await topicRecords(ctx.admin, p.topic);
  cpu.mark();
  const t0 = now();
  let running = true;
  let maxLag = 0;
  const sampler = (async () => {
    while (running) {
      maxLag = Math.max(maxLag, await walLag(ctx, p.slot).catch(() => 0));
      await sleep(500);
    }
  })();
  const bench = await pgbench(p.script, {
    tps: p.rate / CHANGES_PER_TX,
    seconds: p.stepSeconds,
    clients: p.clients,
  });
  const t1 = now();
  const util = cpu.utilisation();
  const wEnd = await topicRecords(ctx.admin, p.topic);
  const target = p.expected + bench.transactions * RECORDS_PER_TX;
  // Drain: until every record of the step is in Kafka (or give up: clearly not sustained).
  const limit = Math.max(30, p.stepSeconds * 2) * 1000;
  let drained = now();
  while ((await topicRecords(ctx.admin, p.topic)) < target) {
    if (w.child.exitCode !== null) throw new Error(`worker exited:\n${w.output()}`);
    if (now() - t1 > limit) break;
    await sleep(100);
    drained = now();
  }
  running = false;
  await sampler;
  const drainSeconds = (drained - t1) / 1000;
  const generated = (bench.transactions * CHANGES_PER_TX) / p.stepSeconds;
  const produced = (((wEnd - w0) / RECORDS_PER_TX) * CHANGES_PER_TX) / ((t1 - t0) / 1000);
  const generatorLimited = generated < 0.9 * p.rate;
  return {
    transactions: bench.transactions,
    result: {
      offeredChangesPerSec: p.rate,
      generatedChangesPerSec: generated,
      producedChangesPerSec: produced,
      drainSeconds,
      maxWalLagBytes: maxLag,
      workerCpuUtil: util.worker ?? NaN,
      postgresCpuUtil: util.postgres ?? NaN,
      // Bounded lag: the worker kept pace during the step (not only caught up quickly after it;
      // on a shared machine a backlog built under load can drain fast once the load stops).
      sustained: drainSeconds <= DRAIN_LIMIT_S && produced >= KEEP_PACE * generated && bench.failed === 0,
      generatorLimited,
    },
  };
}
