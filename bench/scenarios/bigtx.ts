// 4. Large transaction: one INSERT … SELECT generate_series of N rows in a single transaction
// while the worker streams. Measured: commit → all N records acknowledged in Kafka, and the
// worker's peak RSS after a transaction of N/10 rows and after one of N rows (if memory grew
// with transaction size, the second would be about ten times the first).
// Baseline: PostgreSQL decoding the same WAL itself (pg_logical_slot_get_binary_changes with
// pgoutput on a second slot created before the load; no network, no client).
import { uniqueName } from '../../test/support/pipeline.ts';
import type { Metrics } from '../report.ts';
import {
  CpuWatch,
  createTable,
  fillTable,
  kafkaPid,
  now,
  pgDecodeRate,
  publicationName,
  slotName,
  slotPid,
  startWorker,
  waitForActiveSlot,
  waitForRecords,
  workerEnv,
} from '../lib.ts';
import { cleanUp, type Context } from './common.ts';

export async function bigtxRun(ctx: Context): Promise<Metrics> {
  const name = uniqueName('bbig');
  const table = `${name}_t`;
  const topic = `${name}.public.${table}`;
  const pub = publicationName(name);
  const baseSlot = `${name}_decode`;
  const small = Math.max(1, Math.round(ctx.rows / 10));
  await createTable(ctx.db, table);
  await ctx.db.query(`CREATE PUBLICATION ${pub} FOR TABLE ${table}`);
  await ctx.db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [baseSlot]);
  const cpu = new CpuWatch();
  const w = startWorker(
    workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_SNAPSHOT_MODE: 'never',
      PGCDC_PUBLICATION_NAME: pub,
      ...ctx.workerSettings,
    }),
  );
  try {
    await waitForActiveSlot(ctx.db, slotName(name), w);
    cpu.watch('worker', w.pid);
    cpu.watch('postgres', await slotPid(ctx.db, slotName(name)));
    cpu.watch('kafka', kafkaPid());
    const idleRss = w.peakRssMiB();

    // A transaction of N/10 rows first: the peak RSS it leads to is the reference.
    await fillTable(ctx.db, table, 1, small);
    await waitForRecords(ctx.admin, topic, small, { worker: w });
    const smallRss = w.peakRssMiB();

    cpu.mark();
    const t0 = now();
    await fillTable(ctx.db, table, small + 1, ctx.rows);
    const committed = now();
    const done = await waitForRecords(ctx.admin, topic, small + ctx.rows, { worker: w });
    const util = cpu.utilisation();
    const drain = (done - committed) / 1000;
    const metrics: Metrics = {
      insertSeconds: (committed - t0) / 1000,
      drainSeconds: drain,
      totalSeconds: (done - t0) / 1000,
      rowsPerSecAfterCommit: ctx.rows / drain,
      idleRssMiB: idleRss,
      peakRssSmallTxMiB: smallRss,
      peakRssMiB: w.peakRssMiB(),
      cpuSeconds: w.cpuSeconds(),
      workerCpuUtil: util.worker ?? NaN,
      postgresCpuUtil: util.postgres ?? NaN,
      kafkaCpuUtil: util.kafka ?? NaN,
    };
    const code = await w.stop();
    if (code !== 0) throw new Error(`worker exited ${code}:\n${w.output()}`);
    const decode = await pgDecodeRate(ctx.db, baseSlot, pub);
    metrics.pgDecodeRowsPerSec = (small + ctx.rows) / decode.seconds;
    metrics.pgDecodeMessages = decode.messages;
    return metrics;
  } finally {
    cpu.close();
    await w.stop();
    await cleanUp(ctx, name, [baseSlot]);
    await ctx.db.query(`DROP TABLE IF EXISTS ${table}`);
  }
}
