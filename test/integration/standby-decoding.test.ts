// Logical decoding on a standby (PostgreSQL 16+): pgcdc pointed at a physical standby
// (deploy/local/pg-versions.ts) creates its slot and exported snapshot there and streams the
// primary's changes as they are replayed. The publication is created on the primary (a standby
// is read-only). `pgcdc check` warns about the standby instead of refusing it.
//
// Which majors: PGCDC_PG_STANDBY=16,17,18 (default 16).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Connector } from '../../src/pipeline/connector.ts';
import { createLogger } from '../../src/worker/log.ts';
import { defaultSlotName } from '../../src/config/names.ts';
import { runPreflight } from '../../src/postgres/preflight.ts';
import { formatLine } from '../../src/postgres/preflight/result.ts';
import { startMatrixServer, type MatrixServer } from '../../deploy/local/pg-versions.ts';
import { TopicReader, eventually, serverEnv, uniqueName, workerConfig } from '../support/pipeline.ts';

const log = createLogger({ connector: 'test', level: 'warn', format: 'json' });
const majors = (process.env.PGCDC_PG_STANDBY ?? '16')
  .split(',')
  .map(Number)
  .filter((v) => v > 0);

describe('logical decoding on a standby', { concurrency: false }, () => {
  const reader = new TopicReader();
  const servers: MatrixServer[] = [];
  after(async () => {
    for (const s of servers) await s.remove();
  });

  for (const major of majors) {
    test(`PostgreSQL ${major}: snapshot and stream from a standby`, async () => {
      const primary = await startMatrixServer(major);
      servers.push(primary);
      const name = uniqueName(`sb${major}`);
      const table = `${name}_t`;
      await primary.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
      await primary.query(`INSERT INTO ${table} VALUES (1, 'a'), (2, 'b')`);
      await primary.query(`CREATE PUBLICATION ${name}_pub FOR TABLE ${table}`);
      const standby = await primary.standby();
      servers.push(standby);
      await eventually('the table on the standby', async () =>
        (await standby.query(`SELECT to_regclass('${table}') AS t`)).rows[0]?.t ? true : undefined,
      );
      const env = {
        ...serverEnv(standby),
        PGCDC_TABLES_INCLUDE: `public.${table}`,
        PGCDC_PUBLICATION_NAME: `${name}_pub`,
        PGCDC_PUBLICATION_AUTO_CREATE: 'false',
      };
      const report = await runPreflight(workerConfig(name, env));
      const lines = report.results.map(formatLine);
      assert.ok(report.passed, lines.join('\n'));
      assert.match(
        lines.find((l) => /\bprimary\b/.test(l.slice(0, 40))) ?? '',
        /^warning .*connected to a standby/,
      );

      // A slot on a standby waits for the primary's next running-transactions record (written
      // every 15 s by the background writer); asking for one makes the start quick.
      const nudge = setInterval(
        () => void primary.query('SELECT pg_log_standby_snapshot()').catch(() => undefined),
        500,
      );
      const c = new Connector(workerConfig(name, env), log);
      const running = c.run();
      let failure: unknown;
      running.catch((err: unknown) => (failure = err));
      try {
        await eventually('streaming', async () => (failure || c.state === 'STREAMING' ? true : undefined));
        assert.equal(failure, undefined, String(failure));
        const slot = await standby.query('SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1', [
          defaultSlotName(name),
        ]);
        assert.equal(slot.rows[0]?.slot_type, 'logical', 'the slot lives on the standby');
        await primary.query(`INSERT INTO ${table} VALUES (3, 'c')`);
        await primary.query(`UPDATE ${table} SET v = 'B' WHERE id = 2`);
        const topic = `${name}.public.${table}`;
        const records = await eventually('the primary changes, decoded on the standby', async () => {
          const r = await reader.read(topic);
          return r.length >= 4 ? r : undefined;
        });
        assert.deepEqual(
          records.map((r) => `${r.value!.op}${String(r.key!.id)}`),
          ['r1', 'r2', 'c3', 'u2'],
        );
      } finally {
        clearInterval(nudge);
        await c.stop();
        await running.catch(() => undefined);
      }
    });
  }
});
