// Failover slots (PostgreSQL 17+): a primary and a physical standby with sync_replication_slots
// (deploy/local/pg-versions.ts), pgcdc given both as a host list. While pgcdc streams and rows
// are written, the primary crashes and the standby is promoted: the worker reconnects to the new
// primary, finds its slot there (synced from the old one) and resumes from its stored offset.
// Every row the new primary holds is in Kafka, nothing else is, and there is no second snapshot.
//
// Which majors: PGCDC_PG_FAILOVER=17,18 (default 17).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runPreflight } from '../../src/postgres/preflight.ts';
import { formatLine } from '../../src/postgres/preflight/result.ts';
import { PostgresEndpoint } from '../../src/postgres/connection.ts';
import { Worker } from '../../src/worker/worker.ts';
import { createLogger } from '../../src/worker/log.ts';
import { defaultSlotName } from '../../src/config/names.ts';
import { startMatrixServer, type MatrixServer } from '../../deploy/local/pg-versions.ts';
import {
  TopicReader,
  eventually,
  uniqueName,
  workerConfig,
  type DecodedRecord,
} from '../support/pipeline.ts';

const log = createLogger({ connector: 'test', level: 'warn', format: 'json' });
const majors = (process.env.PGCDC_PG_FAILOVER ?? '17')
  .split(',')
  .map(Number)
  .filter((v) => v > 0);
/** Before failover slots: the documented fallback, snapshot.mode=when_needed. */
const oldMajors = (process.env.PGCDC_PG_FAILOVER_OLD ?? '16')
  .split(',')
  .map(Number)
  .filter((v) => v > 0);

const ids = (records: DecodedRecord[]) =>
  records.filter((r) => r.value && r.value.op !== 'd').map((r) => Number(r.value!.after!.id));

/** Inserts one row per transaction until stopped or the server goes away; returns the ids it tried. */
function writer(server: MatrixServer, table: string, from: number) {
  let stop = false;
  let next = from;
  const done = (async () => {
    while (!stop) {
      try {
        await server.query(`INSERT INTO ${table} VALUES ($1, 'w')`, [next]);
      } catch {
        return; // the server is gone: whether this row committed is for the new primary to say
      }
      next++;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  return {
    async stop(): Promise<void> {
      stop = true;
      await done;
    },
  };
}

describe('failover slots', { concurrency: false }, () => {
  const reader = new TopicReader();
  const servers: MatrixServer[] = [];
  after(async () => {
    for (const s of servers) await s.remove();
  });

  for (const major of majors) {
    test(`PostgreSQL ${major}: promotion of the standby while pgcdc streams, 0 lost, no new snapshot`, async () => {
      const primary = await startMatrixServer(major);
      servers.push(primary);
      const name = uniqueName(`fo${major}`);
      const table = `${name}_t`;
      const slot = defaultSlotName(name);
      await primary.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
      await primary.query(`INSERT INTO ${table} SELECT g, 'seed' FROM generate_series(1, 100) g`);
      const standby = await primary.standby();
      servers.push(standby);

      const config = workerConfig(name, {
        // libpq-style host list: the first that is a primary is used.
        PGCDC_POSTGRES_HOST: `127.0.0.1:${primary.port},127.0.0.1:${standby.port}`,
        PGCDC_POSTGRES_USER: primary.user,
        PGCDC_POSTGRES_PASSWORD: primary.password,
        PGCDC_POSTGRES_DATABASE: primary.database,
        PGCDC_TABLES_INCLUDE: `public.${table}`,
      });
      // The standby first in the list: it is skipped (pg_is_in_recovery), the primary is used.
      const reversed = new PostgresEndpoint({
        ...config.postgres,
        host: `127.0.0.1:${standby.port},127.0.0.1:${primary.port}`,
      });
      await (await reversed.connect()).end();
      assert.equal(reversed.target.port, primary.port);
      // pgcdc check before the slot exists: the standby of the list is ready to sync it; a list
      // without a primary is a connection failure that `run` waits out (transient).
      const before = (await runPreflight(config)).results;
      assert.match(
        before.filter((r) => r.id === 'failover').map(formatLine)[0] ?? '',
        new RegExp(
          `^ok .*created with FAILOVER true at start; 127\\.0\\.0\\.1:${standby.port} is a standby set to sync it`,
        ),
      );
      const noPrimary = workerConfig(name, {
        PGCDC_POSTGRES_HOST: `127.0.0.1:${standby.port},127.0.0.1:1`,
        PGCDC_POSTGRES_USER: primary.user,
        PGCDC_POSTGRES_PASSWORD: primary.password,
        PGCDC_POSTGRES_DATABASE: primary.database,
      });
      const onlyStandby = (await runPreflight(noPrimary)).results.find((r) => r.id === 'connection');
      assert.equal(onlyStandby?.status, 'failed');
      assert.equal(onlyStandby?.transient, true);
      assert.match(
        onlyStandby?.message ?? '',
        /no primary among postgres\.host: 127\.0\.0\.1:\d+ \(a standby\)/,
      );
      const worker = new Worker(config, log, { failureGraceMs: null });
      const outcome = worker.run();
      const topic = `${name}.public.${table}`;
      try {
        await eventually('streaming', async () =>
          worker.state === 'STREAMING' || worker.failure ? true : undefined,
        );
        assert.equal(worker.failure, null, worker.failure?.message);
        const failover = await primary.query<{ failover: boolean }>(
          'SELECT failover FROM pg_replication_slots WHERE slot_name = $1',
          [slot],
        );
        assert.equal(failover.rows[0]?.failover, true, 'the slot is a failover slot');

        let w = writer(primary, table, 1001);
        // The standby's copy of the slot: synced and persistent (a temporary one is not yet usable).
        await eventually(
          'the slot synced to the standby',
          async () => {
            const r = await standby.query<{ synced: boolean; temporary: boolean }>(
              'SELECT synced, temporary FROM pg_replication_slots WHERE slot_name = $1',
              [slot],
            );
            return r.rows[0]?.synced && !r.rows[0].temporary ? true : undefined;
          },
          90_000,
        );
        // pgcdc check, given the host list: the standby's copy is synced, the settings are right.
        const report = await runPreflight(config);
        const failoverLine = report.results.filter((r) => r.id === 'failover').map(formatLine);
        console.log(failoverLine.join('\n'));
        assert.match(
          failoverLine[0] ?? '',
          new RegExp(
            `^ok .*slot ${slot} is a failover slot, synced to 127\\.0\\.0\\.1:${standby.port}; synchronized_standby_slots = standby_slot`,
          ),
        );
        await eventually('changes in Kafka', async () =>
          ids(await reader.read(topic)).some((id) => id > 1001) ? true : undefined,
        );

        await primary.crash();
        await w.stop();
        await standby.promote();
        w = writer(standby, table, 5001);
        await new Promise((r) => setTimeout(r, 1000));
        await w.stop();

        const inDatabase = (
          await standby.query<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`)
        ).rows.map((r) => Number(r.id));
        assert.ok(
          inDatabase.some((id) => id >= 5001),
          'rows written to the new primary',
        );
        const got = await eventually(
          'every row of the new primary in Kafka',
          async () => {
            const have = new Set(ids(await reader.read(topic)));
            return inDatabase.every((id) => have.has(id)) ? have : undefined;
          },
          120_000,
        );
        const lost = inDatabase.filter((id) => !got.has(id));
        const extra = [...got].filter((id) => !inDatabase.includes(id));
        const records = await reader.read(topic);
        const snapshotRecords = records.filter((r) => r.value?.op === 'r').length;
        console.log(
          `PGCDC_FAILOVER pg${major}: ${inDatabase.length} rows on the new primary, ${records.length} records, ` +
            `${lost.length} lost, ${extra.length} not on the new primary, ${snapshotRecords} snapshot records, ` +
            `${worker.reconnect?.attempts ?? 0} reconnect attempts`,
        );
        assert.deepEqual(lost, []);
        // synchronized_standby_slots: pgcdc never received a change the standby did not have.
        assert.deepEqual(extra, []);
        assert.equal(snapshotRecords, 100, 'one snapshot only');
        assert.equal(worker.failure, null);
      } finally {
        await worker.stop();
        await outcome;
      }
    });
  }
  for (const major of oldMajors) {
    test(`PostgreSQL ${major}: the promoted standby has no slot; snapshot.mode=when_needed takes a new snapshot`, async () => {
      const primary = await startMatrixServer(major);
      servers.push(primary);
      const name = uniqueName(`fw${major}`);
      const table = `${name}_t`;
      await primary.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
      await primary.query(`INSERT INTO ${table} SELECT g, 'seed' FROM generate_series(1, 100) g`);
      const standby = await primary.standby();
      servers.push(standby);
      const config = workerConfig(name, {
        PGCDC_POSTGRES_HOST: `127.0.0.1:${primary.port},127.0.0.1:${standby.port}`,
        PGCDC_POSTGRES_USER: primary.user,
        PGCDC_POSTGRES_PASSWORD: primary.password,
        PGCDC_POSTGRES_DATABASE: primary.database,
        PGCDC_TABLES_INCLUDE: `public.${table}`,
        PGCDC_SNAPSHOT_MODE: 'when_needed',
      });
      const worker = new Worker(config, log, { failureGraceMs: null });
      const outcome = worker.run();
      const topic = `${name}.public.${table}`;
      try {
        await eventually('streaming', async () =>
          worker.state === 'STREAMING' || worker.failure ? true : undefined,
        );
        await primary.query(`INSERT INTO ${table} VALUES (1001, 'before')`);
        await eventually('the change in Kafka', async () =>
          ids(await reader.read(topic)).includes(1001) ? true : undefined,
        );
        // Replicated to the standby before the crash, so the new primary has it.
        await eventually('the standby caught up', async () =>
          (await standby.query(`SELECT 1 FROM ${table} WHERE id = 1001`)).rowCount === 1 ? true : undefined,
        );
        await primary.crash();
        await standby.promote();
        await standby.query(`INSERT INTO ${table} VALUES (5001, 'after')`);
        const records = await eventually(
          'a second snapshot from the new primary',
          async () => {
            const r = await reader.read(topic);
            return r.filter((x) => x.value?.op === 'r').length >= 100 + 102 ? r : undefined;
          },
          120_000,
        );
        const snapshots = records.filter((r) => r.value?.op === 'r').length;
        console.log(
          `PGCDC_FAILOVER pg${major} when_needed: ${records.length} records, ${snapshots} snapshot records (100 + a new snapshot of 102 rows)`,
        );
        assert.equal(snapshots, 202);
        assert.equal(worker.failure, null);
      } finally {
        await worker.stop();
        await outcome;
      }
    });
  }
});
