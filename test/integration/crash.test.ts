// Crash safety: the worker is SIGKILLed at random moments (during the snapshot and while
// streaming) under a continuous write load; after a final run the topic, replayed per key,
// equals the table. Also: SIGTERM drains, writes the offset and exits 0.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite } from '../support/connectors.ts';
import { spawnWorker, exited } from '../support/cli.ts';
import { eventually, pgClient, replayByKey, uniqueName, workerEnv } from '../support/pipeline.ts';

describe('crash safety', () => {
  const { db, reader } = stackSuite();

  test('SIGKILL five times under load: the topic replayed per key equals the table', async () => {
    const name = uniqueName('kill');
    const table = `${name}_t`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL, note text)`);
    await db.query(`INSERT INTO ${table} SELECT g, 0, 'seed' FROM generate_series(1, 30000) g`);
    const env = workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_SNAPSHOT_BATCH_SIZE: '1000',
    });

    let writing = true;
    let nextId = 30001;
    let writes = 0;
    const writer = (async () => {
      const w = await pgClient();
      try {
        while (writing) {
          const id = nextId++;
          await w.query('BEGIN');
          await w.query(`INSERT INTO ${table} VALUES ($1, 0, 'new')`, [id]);
          await w.query(`UPDATE ${table} SET v = v + 1 WHERE id = $1`, [1 + ((id * 7919) % 30000)]);
          if (id % 5 === 0) await w.query(`DELETE FROM ${table} WHERE id = $1`, [id - 3]);
          await w.query('COMMIT');
          writes++;
        }
      } finally {
        await w.end();
      }
    })();

    // Kill points: the first early (likely inside the snapshot), the rest spread over streaming.
    const delays = [700, 2500, 3100, 1900, 4200];
    for (const delay of delays) {
      const { child } = spawnWorker(env);
      await new Promise((r) => setTimeout(r, delay + Math.floor(Math.random() * 800)));
      child.kill('SIGKILL');
      await exited(child);
    }
    // Enough writes for the replay check to mean something, however slow the machine is (a
    // count reached in a fixed time would be a speed threshold); a failed writer ends the wait.
    let writerDone = false;
    void writer.finally(() => (writerDone = true)).catch(() => {});
    while (writes <= 100 && !writerDone) await new Promise((r) => setTimeout(r, 50));
    writing = false;
    await writer;
    assert.ok(writes > 100, `the write load ran (${writes} transactions)`);

    const final = spawnWorker(env);
    const { rows } = await db.query<{ id: number; v: number; note: string }>(
      `SELECT id, v, note FROM ${table}`,
    );
    const expected = new Map(rows.map((r) => [String(r.id), r]));
    await eventually(
      'topic replayed per key to equal the table',
      async () => {
        const state = replayByKey(await reader.read(`${name}.public.${table}`), (k) => String(k.id));
        if (state.size !== expected.size) return undefined;
        for (const [k, row] of expected) {
          const got = state.get(k);
          if (!got || got.v !== row.v || got.note !== row.note) return undefined;
        }
        return true;
      },
      120_000,
    );
    final.child.kill('SIGTERM');
    assert.equal(await exited(final.child), 0, `graceful stop exits 0; output:\n${final.output()}`);
  });

  test('a bad configuration is refused with every problem named and no stack trace', async () => {
    const { child, output } = spawnWorker({
      PGCDC_NAME: 'x',
      PGCDC_POSTGRES_PORT: 'abc',
      PGCDC_SNAPSHOT_MODE: 'sometimes',
      PGCDC_KAFKA_BROKERS: '127.0.0.1:1',
    });
    const code = await exited(child);
    assert.equal(code, 2);
    const text = output();
    for (const field of ['postgres.port', 'snapshot.mode', 'postgres.host', 'registry.url']) {
      assert.match(text, new RegExp(field.replace('.', '\\.')), `names ${field}`);
    }
    assert.doesNotMatch(text, /\n\s+at /, 'no stack trace');
  });
});
