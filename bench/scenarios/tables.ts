// 5. Many small tables: N tables of 10 rows each in one schema; a worker starts on the schema and is
// measured from its start until it streams and its initial load is complete (its 'snapshot
// completed' line: every row acknowledged by Kafka). What this costs per table is the start's fixed
// work (topic, subjects, catalog queries), not rows: it must stay flat in N.
// Afterwards, a table created while streaming gets a row: the lazy per-table path (new topic and
// subjects on its first change), timed commit → first record in Kafka.
import { uniqueName } from '../../test/support/pipeline.ts';
import type { Metrics } from '../report.ts';
import {
  assertAlive,
  note,
  now,
  sleep,
  slotName,
  startWorker,
  topicRecords,
  waitForActiveSlot,
  waitForRecords,
  workerEnv,
} from '../lib.ts';
import { cleanUp, type Context } from './common.ts';

export const ROWS_PER_TABLE = 10;
const TIMEOUT_MS = 30 * 60_000;

export async function tablesRun(ctx: Context, tables: number): Promise<Metrics> {
  const name = uniqueName('btab');
  const schema = name.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  await ctx.db.query(`CREATE SCHEMA ${schema}`);
  try {
    // One server-side loop: N round trips from here would cost more than the tables themselves.
    await ctx.db.query(`
      DO $$
      BEGIN
        FOR i IN 1..${tables} LOOP
          EXECUTE format('CREATE TABLE ${schema}.t%s (id bigint PRIMARY KEY, name text NOT NULL,
            amount numeric(12,2), created_at timestamptz NOT NULL DEFAULT now())', i);
          EXECUTE format('INSERT INTO ${schema}.t%s SELECT g, ''row '' || g, g * 1.25,
            timestamptz ''2024-01-01 00:00:00+00'' + g * interval ''1 hour''
            FROM generate_series(1, ${ROWS_PER_TABLE}) g', i);
        END LOOP;
      END $$`);
    const w = startWorker(
      workerEnv(name, {
        PGCDC_POSTGRES_SCHEMAS: schema,
        ...ctx.workerSettings,
        // The 'streaming' and 'snapshot completed' lines are the moments measured (the slot is
        // also active while the snapshot is exported, so its state alone would not do).
        PGCDC_LOG_LEVEL: 'info',
      }),
    );
    // The exported load streams after it; the chunked load (issue 13) streams first and reads the
    // tables beside the stream: the figure is the moment both are true.
    let streamingAt = NaN;
    let loadedAt = NaN;
    let seen = '';
    w.child.stderr!.on('data', (d: Buffer) => {
      // The new chunk with the end of the previous one (a marker may straddle them); lines can be
      // long (the completed line lists every table), so the check comes before the trim.
      const text = seen + d.toString();
      if (Number.isNaN(streamingAt) && text.includes('"message":"streaming"')) streamingAt = now();
      if (Number.isNaN(loadedAt) && text.includes('"message":"snapshot completed"')) loadedAt = now();
      seen = text.slice(-64);
    });
    const warnings: string[] = [];
    w.child.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (/"level":"(warn|error)"/.test(line) && warnings.length < 50) warnings.push(line.slice(0, 400));
      }
    });
    try {
      while (Number.isNaN(streamingAt) || Number.isNaN(loadedAt)) {
        assertAlive(w);
        if (now() - w.startedAt > TIMEOUT_MS)
          throw new Error(`${tables} tables: not streaming after the timeout`);
        await sleep(20);
      }
      await waitForActiveSlot(ctx.db, slotName(name), w, 60_000);
      const seconds = (Math.max(streamingAt, loadedAt) - w.startedAt) / 1000;
      const cpuSeconds = w.cpuSeconds();
      const peakRssMiB = w.peakRssMiB();
      // Every row acknowledged (the load waited for it; checked, not assumed).
      const names = Array.from({ length: tables }, (_, i) => `${name}.${schema}.t${i + 1}`);
      const records = await countRecords(ctx, names);
      if (records < tables * ROWS_PER_TABLE) {
        throw new Error(`${tables} tables: ${records} of ${tables * ROWS_PER_TABLE} records in Kafka`);
      }
      // More than written: the load (or part of it) ran twice, e.g. after a restart inside the worker.
      if (records > tables * ROWS_PER_TABLE) {
        note(
          `${tables} tables: ${records - tables * ROWS_PER_TABLE} duplicates; warnings: ${warnings.slice(0, 5).join(' | ')}`,
        );
      }
      // A table created while streaming: its topic and subjects are made on its first change.
      const late = `${schema}.late`;
      await ctx.db.query(`CREATE TABLE ${late} (id bigint PRIMARY KEY, name text NOT NULL)`);
      // The publication is FOR TABLE …: the new table joins it as a user would add it.
      await ctx.db.query(
        `ALTER PUBLICATION ${name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}_pub ADD TABLE ${late}`,
      );
      const t0 = now();
      await ctx.db.query(`INSERT INTO ${late} VALUES (1, 'late')`);
      await waitForRecords(ctx.admin, `${name}.${late}`, 1, { worker: w, timeoutMs: 60_000, pollMs: 20 });
      const lateTableMs = now() - t0;
      assertAlive(w);
      const code = await w.stop();
      if (code !== 0) note(`tables worker ${name} exited ${code}:\n${w.output().slice(-2000)}`);
      return {
        tables,
        seconds,
        streamingSeconds: (streamingAt - w.startedAt) / 1000,
        loadSeconds: (loadedAt - w.startedAt) / 1000,
        perTableMs: (seconds * 1000) / tables,
        cpuSeconds,
        workerCpuUtil: cpuSeconds / seconds,
        peakRssMiB,
        records,
        duplicates: records - tables * ROWS_PER_TABLE,
        warnings: warnings.length,
        lateTableMs,
      };
    } finally {
      await w.stop();
      await sleep(0);
      await cleanUp(ctx, name);
    }
  } finally {
    await ctx.db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
  }
}

/**
 * Records in all `topics`, one topic at a time: concurrent fetchTopicOffsets calls on one kafkajs
 * admin lose topics from its metadata (topicRecords then reads 0; seen as 930 of 1000 for a load
 * that had all 1000 in Kafka). A topic still short is read again for a few seconds.
 */
async function countRecords(ctx: Context, topics: string[]): Promise<number> {
  const counts = new Map<string, number>();
  const deadline = now() + 15_000;
  let todo = topics;
  while (todo.length > 0) {
    for (const t of todo) counts.set(t, Math.max(counts.get(t) ?? 0, await topicRecords(ctx.admin, t)));
    todo = topics.filter((t) => (counts.get(t) ?? 0) < ROWS_PER_TABLE);
    if (todo.length === 0 || now() > deadline) break;
    await sleep(500);
  }
  return [...counts.values()].reduce((a, b) => a + b, 0);
}
