// The PostgreSQL version matrix: for each major, a throwaway server of that version
// (deploy/local/pg-versions.ts, binaries from the npm registry) and one combined scenario
// against Kafka and the registry of the stack: snapshot, insert/update/delete, a sample of types
// (snapshot and stream must agree on every value), a generated column, a publication with a row
// filter and a column list (15+), publish_generated_columns (18), and a stop and restart that
// resumes from the stored offset without a new snapshot.
//
// Which majors: PGCDC_PG_MATRIX=14,15,16,17,18 (or "all"); by default 14, 16, 17 and 18 — the
// rest of the suite already runs on the stack's Debian 15.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Connector } from '../../src/pipeline/connector.ts';
import { createLogger } from '../../src/worker/log.ts';
import { runPreflight } from '../../src/postgres/preflight.ts';
import { formatLine } from '../../src/postgres/preflight/result.ts';
import { PG_MAJORS, startMatrixServer, type MatrixServer } from '../../deploy/local/pg-versions.ts';
import {
  TopicReader,
  eventually,
  uniqueName,
  workerConfig,
  type DecodedRecord,
  serverEnv,
} from '../support/pipeline.ts';

const log = createLogger({ connector: 'test', level: 'warn', format: 'json' });

export function matrixMajors(env = process.env.PGCDC_PG_MATRIX): number[] {
  if (!env) return [14, 16, 17, 18];
  if (env === 'all') return PG_MAJORS;
  return env.split(',').map((v) => Number(v.trim()));
}

const TYPES = `id int PRIMARY KEY, i8 int8, n numeric(10,2), f8 float8, b bool, t text, d date,
  ts timestamp, tz timestamptz, iv interval, u uuid, j jsonb, by bytea, a text[], e mood,
  g int GENERATED ALWAYS AS (id * 2) STORED`;
const SAMPLE = `9007199254740993, 12.50, 1.5e300, true, 'ünï ''q''', '2024-02-29',
  '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+02', '1 day 02:03:04', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"k": [1, 2.5, null]}', '\\x00ff', '{x,"y z",NULL}', 'sad'`;

const opsOf = (records: DecodedRecord[]) =>
  records.map((r) => (r.value ? `${r.value.op}${String(r.key!.id)}` : `tomb${String(r.key!.id)}`));

describe('PostgreSQL version matrix', { concurrency: false }, () => {
  const reader = new TopicReader();
  const servers: MatrixServer[] = [];
  after(async () => {
    for (const s of servers) await s.remove();
  });

  for (const major of matrixMajors()) {
    test(`PostgreSQL ${major}: snapshot, changes, types, filtered publication, restart resume`, async () => {
      const server = await startMatrixServer(major);
      servers.push(server);
      const version = (await server.query<{ v: string }>("SELECT current_setting('server_version') AS v"))
        .rows[0]!.v;
      assert.match(version, new RegExp(`^${major}\\.`));
      const name = uniqueName(`pg${major}`);
      const typed = `${name}_types`;
      const plain = `${name}_rows`;
      const pub = `${name}_pub`;
      await server.query(`CREATE TYPE mood AS ENUM ('happy', 'sad')`);
      await server.query(`CREATE TABLE ${typed} (${TYPES})`);
      await server.query(`CREATE TABLE ${plain} (id int PRIMARY KEY, v text, secret text)`);
      await server.query(`INSERT INTO ${typed} VALUES (1, ${SAMPLE})`);
      // id 200 is outside the row filter of 15+: not read by the snapshot either.
      await server.query(`INSERT INTO ${plain} VALUES (1, 'a', 's1'), (2, 'b', 's2'), (200, 'z', 'sz')`);
      // The user's own publication, with what this version adds to publications.
      const options = major >= 18 ? ` WITH (publish_generated_columns = stored)` : '';
      // 15+: a column list (without `secret`) and a row filter.
      const filtered = major >= 15 ? ` (id, v) WHERE (id < 100)` : '';
      await server.query(`CREATE PUBLICATION ${pub} FOR TABLE ${typed}, ${plain}${filtered}${options}`);

      const env = {
        ...serverEnv(server),
        PGCDC_TABLES_INCLUDE: `public.${typed},public.${plain}`,
        PGCDC_PUBLICATION_NAME: pub,
        PGCDC_PUBLICATION_AUTO_CREATE: 'false',
      };
      // pgcdc check: what this version supports, the publication's filters, failover readiness.
      const report = await runPreflight(workerConfig(name, env));
      const lines = report.results.map(formatLine);
      const line = (re: RegExp) => lines.find((l) => re.test(l)) ?? `(none matches ${String(re)})`;
      assert.ok(report.passed, lines.join('\n'));
      console.log(
        lines
          .filter((l) => /server supports|publication filters|failover/.test(l))
          .map((l) => `PGCDC_CHECK pg${major}: ${l}`)
          .join('\n'),
      );
      assert.match(line(/failover slots/), major >= 17 ? /: supported/ : /not before PostgreSQL 17/);
      assert.match(line(/generated columns in publications/), major >= 18 ? /: supported/ : /not before/);
      assert.match(line(/row filters and column lists/), major >= 15 ? /: supported/ : /not before/);
      assert.match(line(/two-phase/), major >= 15 ? /: supported/ : /not before/);
      if (major >= 15) {
        assert.match(
          line(/^ok\s+publication filters/),
          /row filter WHERE \(id < 100\).*column list \(id, v\)/,
        );
      }
      if (major >= 18) assert.match(line(/^ok\s+publication filters/), /publishes generated columns/);
      assert.match(
        line(/^\w+\s+failover/),
        major >= 17
          ? /^ok .*created with FAILOVER true at start/
          : /^ok .*has no failover slots.*slot no longer exists/,
      );
      const typedTopic = `${name}.public.${typed}`;
      const plainTopic = `${name}.public.${plain}`;
      const run = async (during: () => Promise<void>) => {
        const c = new Connector(workerConfig(name, env), log);
        const running = c.run();
        let failure: unknown;
        running.catch((err: unknown) => (failure = err));
        await eventually('streaming', async () =>
          failure ? true : c.state === 'STREAMING' ? true : undefined,
        );
        if (failure) throw failure as Error;
        await during();
        await c.stop();
        await running;
      };

      await run(async () => {
        await server.query(`INSERT INTO ${typed} VALUES (2, ${SAMPLE})`);
        await server.query(`INSERT INTO ${plain} VALUES (3, 'c', 's3')`);
        // Filtered out by the row filter on 15+: never streamed.
        await server.query(`INSERT INTO ${plain} VALUES (100, 'x', 'sx')`);
        await server.query(`UPDATE ${plain} SET v = 'B' WHERE id = 2`);
        await server.query(`DELETE FROM ${plain} WHERE id = 1`);
        await eventually('the changes', async () =>
          (await reader.read(plainTopic)).length >= 5 && (await reader.read(typedTopic)).length >= 2
            ? true
            : undefined,
        );
      });
      if (major >= 17) {
        // slot.failover defaults to on where the server has failover slots.
        const slot = await server.query<{ failover: boolean }>(
          `SELECT failover FROM pg_replication_slots WHERE slot_type = 'logical'`,
        );
        assert.deepEqual(
          slot.rows.map((r) => r.failover),
          [true],
        );
      }
      // Written while the connector is down: read after the restart, from the stored offset.
      await server.query(`INSERT INTO ${plain} VALUES (4, 'd', 's4')`);
      await server.query(`UPDATE ${typed} SET t = 'after restart' WHERE id = 2`);
      await run(async () => {
        await eventually('the changes made while stopped', async () =>
          (await reader.read(plainTopic)).length >= 6 && (await reader.read(typedTopic)).length >= 3
            ? true
            : undefined,
        );
      });

      const plainRecords = await reader.read(plainTopic);
      // r1 r2 (snapshot), c3, u2, d1 + tombstone, then c4 after the restart: no second snapshot.
      assert.deepEqual(
        opsOf(plainRecords),
        major >= 15
          ? ['r1', 'r2', 'c3', 'u2', 'd1', 'tomb1', 'c4']
          : ['r1', 'r2', 'r200', 'c3', 'c100', 'u2', 'd1', 'tomb1', 'c4'],
      );
      if (major >= 15) {
        // The column list holds in the snapshot as in the stream: `secret` is never published.
        for (const r of plainRecords) if (r.value?.after) assert.equal('secret' in r.value.after, false);
      } else {
        assert.equal(plainRecords[0]!.value!.after!.secret, 's1');
      }
      assert.equal(plainRecords.find((r) => r.value?.op === 'u')!.value!.after!.v, 'B');
      const typedRecords = await reader.read(typedTopic);
      assert.deepEqual(opsOf(typedRecords), ['r1', 'c2', 'u2']);
      const snap = { ...typedRecords[0]!.value!.after! };
      const streamed = { ...typedRecords[1]!.value!.after! };
      assert.equal(snap.id, 1);
      assert.equal(streamed.id, 2);
      delete snap.id;
      delete streamed.id;
      if (major >= 18) {
        // publish_generated_columns = stored: pgoutput sends the generated column, and the
        // snapshot reads what the publication sends.
        assert.equal(streamed.g, 4);
        assert.equal(snap.g, 2);
        delete streamed.g;
        delete snap.g;
      }
      assert.deepEqual(
        streamed,
        snap,
        `PostgreSQL ${major}: the stream and the snapshot encode values alike`,
      );
      assert.equal(snap.n, '12.50');
      assert.equal(snap.i8, 9007199254740993n);
      assert.equal(snap.t, "ünï 'q'");
      // Before 18 pgoutput never sends generated columns, and the snapshot does not read them.
      if (major < 18) assert.equal('g' in snap, false);
      assert.equal(typedRecords[2]!.value!.after!.t, 'after restart');
    });
  }
});
