// Many small tables through the chunked load (docs/performance.md "Many tables"): a planner reads
// each table's catalog on a connection of its own ahead of the readers and prepares its schemas,
// and the readers wait for it when it is ahead, plan a table themselves when it is behind. Checked
// from outside: the planner's session is seen in pg_stat_activity, and every table's topic holds
// exactly its rows (right topic, right columns, each row once), including a table whose columns
// changed while the load ran.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite } from '../support/connectors.ts';
import { exited, spawnWorker } from '../support/cli.ts';
import { eventually, uniqueName, workerEnv } from '../support/pipeline.ts';

/** More than twice the planner's look-ahead (32 tables), so it waits for the readers and catches up. */
const TABLES = 80;
const ROWS = 3;

describe('many tables', () => {
  const { db, reader } = stackSuite();

  test(`${TABLES} tables: planned ahead of the readers, each topic exactly its table`, async () => {
    const name = uniqueName('many');
    const tables = Array.from({ length: TABLES }, (_, i) => `${name}_t${String(i).padStart(2, '0')}`);
    for (const [i, t] of tables.entries()) {
      // Every fifth table has a composite key, so a relation planned for the wrong table would show.
      await db.query(
        i % 5 === 0
          ? `CREATE TABLE ${t} (id int, part text, v text, PRIMARY KEY (id, part))`
          : `CREATE TABLE ${t} (id int PRIMARY KEY, v text)`,
      );
      await db.query(
        i % 5 === 0
          ? `INSERT INTO ${t} SELECT g, 'p', '${t}:' || g FROM generate_series(1, ${ROWS}) g`
          : `INSERT INTO ${t} SELECT g, '${t}:' || g FROM generate_series(1, ${ROWS}) g`,
      );
    }
    const env = workerEnv(name, {
      PGCDC_TABLES_INCLUDE: tables.map((t) => `public.${t}`).join(','),
      PGCDC_SNAPSHOT_PARALLELISM: '2',
      PGCDC_LOG_LEVEL: 'info',
    });
    const w = spawnWorker(env);
    const planner = `pgcdc-${name}-snapshot-plan`;
    let plannerSeen = false;
    let loading = true;
    // The planner's session lives as long as the load: looked for every 20 ms while it runs.
    const watching = (async () => {
      while (loading && !plannerSeen) {
        const { rowCount } = await db.query('SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [
          planner,
        ]);
        plannerSeen = (rowCount ?? 0) > 0;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      await eventually(
        'the load to complete',
        async () => (/"snapshot completed"/.test(w.output()) ? true : undefined),
        120_000,
      ).finally(() => (loading = false));
      await watching;
      assert.ok(plannerSeen, `a session named ${planner} read the catalog during the load`);
      for (const [i, t] of tables.entries()) {
        const records = await reader.read(`${name}.public.${t}`);
        const values = records.map((r) => String((r.value?.after as { v?: unknown } | null)?.v)).sort();
        const expected = Array.from({ length: ROWS }, (_, g) => `${t}:${g + 1}`).sort();
        assert.deepEqual(values, expected, `${t}: its rows, each once`);
        assert.ok(records.every((r) => r.value?.op === 'r'));
        if (i % 5 === 0)
          assert.deepEqual(Object.keys(records[0]!.key!).sort(), ['id', 'part'], `${t}: its key`);
      }
    } finally {
      w.child.kill('SIGTERM');
      await exited(w.child);
    }
  });
});
