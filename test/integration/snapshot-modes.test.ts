// snapshot.mode on the real stack: initial_only, never, always, and what happens when the stored
// position is no longer in the slot (initial refuses with the way out; when_needed snapshots again).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite } from '../support/connectors.ts';
import { Connector } from '../../src/pipeline/connector.ts';
import { defaultSlotName } from '../../src/config/names.ts';
import { createLogger } from '../../src/worker/log.ts';
import {
  eventually,
  replayByKey,
  uniqueName,
  workerConfig,
  type DecodedRecord,
} from '../support/pipeline.ts';

const log = createLogger({ connector: 'test', level: 'warn', format: 'json' });

const ops = (records: DecodedRecord[]) =>
  records.map((r) => (r.value ? `${r.value.op}${String(r.key!.id)}` : `tomb${String(r.key!.id)}`));

describe('snapshot modes', () => {
  const { db, reader } = stackSuite();

  async function table(name: string): Promise<{ table: string; topic: string; env: Record<string, string> }> {
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${t} VALUES (1, 'a'), (2, 'b')`);
    return { table: t, topic: `${name}.public.${t}`, env: { PGCDC_TABLES_INCLUDE: `public.${t}` } };
  }

  /** Runs a connector until it is streaming (or finishes by itself), then stops it gracefully. */
  async function runOnce(
    name: string,
    env: Record<string, string>,
    during?: () => Promise<void>,
  ): Promise<void> {
    const c = new Connector(workerConfig(name, env), log);
    const running = c.run();
    let finished = false;
    running.then(
      () => (finished = true),
      () => (finished = true),
    );
    await eventually('streaming or finished', async () =>
      c.state === 'STREAMING' || finished ? true : undefined,
    );
    if (during) await during();
    await c.stop();
    await running;
  }

  test('initial_only: takes the snapshot and stops by itself; a second run has nothing to do', async () => {
    const name = uniqueName('io');
    const { table: t, topic, env } = await table(name);
    const c = new Connector(workerConfig(name, { ...env, PGCDC_SNAPSHOT_MODE: 'initial_only' }), log);
    await c.run();
    assert.equal(c.state, 'STOPPED');
    await db.query(`INSERT INTO ${t} VALUES (3, 'c')`);
    const again = new Connector(workerConfig(name, { ...env, PGCDC_SNAPSHOT_MODE: 'initial_only' }), log);
    await again.run();
    assert.equal(again.state, 'STOPPED');
    assert.deepEqual(ops(await reader.read(topic)), ['r1', 'r2']);
  });

  test('never: no snapshot, only the changes from the start on', async () => {
    const name = uniqueName('nv');
    const { table: t, topic, env } = await table(name);
    await runOnce(name, { ...env, PGCDC_SNAPSHOT_MODE: 'never' }, async () => {
      await db.query(`INSERT INTO ${t} VALUES (3, 'c')`);
      await eventually('the change', async () =>
        (await reader.read(topic)).length === 1 ? true : undefined,
      );
    });
    assert.deepEqual(ops(await reader.read(topic)), ['c3']);
  });

  test('always: every start takes a new snapshot, and nothing between the runs is lost', async () => {
    const name = uniqueName('al');
    const { table: t, topic, env } = await table(name);
    const always = { ...env, PGCDC_SNAPSHOT_MODE: 'always' };
    await runOnce(name, always);
    await db.query(`UPDATE ${t} SET v = 'B' WHERE id = 2`);
    await runOnce(name, always);
    assert.deepEqual(ops(await reader.read(topic)), ['r1', 'r2', 'r1', 'r2']);
    const last = (await reader.read(topic)).at(-1)!;
    assert.equal(last.value!.after!.v, 'B', 'the second snapshot holds the change made in between');
  });

  test('a slot that lost the stored position: initial refuses with the way out, when_needed snapshots again', async () => {
    const name = uniqueName('wn');
    const { table: t, topic, env } = await table(name);
    await runOnce(name, env);
    // Someone drops the slot while the worker is down: the changes in between are gone from WAL.
    await db.query('SELECT pg_drop_replication_slot($1)', [defaultSlotName(name)]);
    await db.query(`INSERT INTO ${t} VALUES (3, 'c')`);

    const refused = new Connector(workerConfig(name, env), log);
    await assert.rejects(refused.run(), (err: Error) => {
      assert.equal(err.name, 'UserError');
      assert.match(err.message, /no longer exists/);
      assert.match(err.message, /snapshot\.mode=when_needed/);
      return true;
    });

    await runOnce(name, { ...env, PGCDC_SNAPSHOT_MODE: 'when_needed' });
    assert.deepEqual(ops(await reader.read(topic)), ['r1', 'r2', 'r1', 'r2', 'r3']);
  });

  for (const method of ['chunked', 'exported'] as const) {
    const what =
      method === 'chunked'
        ? 'the next start goes on after the last chunk on the same slot'
        : 'the next start takes it again from the beginning';
    test(`a stop during the ${method} snapshot: ${what}, then streams`, async () => {
      const name = uniqueName('is');
      const t = `${name}_t`;
      await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, v text)`);
      await db.query(`INSERT INTO ${t} SELECT g, 'v' || g FROM generate_series(1, 30000) g`);
      const env = {
        PGCDC_TABLES_INCLUDE: `public.${t}`,
        PGCDC_SNAPSHOT_BATCH_SIZE: '200',
        PGCDC_SNAPSHOT_METHOD: method,
      };
      const topic = `${name}.public.${t}`;

      const first = new Connector(workerConfig(name, env), log);
      const running = first.run();
      await eventually('part of the snapshot', async () =>
        (first.stats.snapshotRows[`public.${t}`] ?? 0) > 0 ? true : undefined,
      );
      await first.stop();
      await running;
      assert.equal(
        first.position.snapshot?.state,
        'running',
        'the stored offset says the snapshot is unfinished',
      );
      const readBefore = (await reader.read(topic)).filter((r) => r.value?.op === 'r').length;
      assert.ok(readBefore < 30000, `the stop landed inside the snapshot (${readBefore} rows read)`);

      await db.query(`INSERT INTO ${t} VALUES (30001, 'after')`);
      await runOnce(name, env, async () => {
        await db.query(`UPDATE ${t} SET v = 'changed' WHERE id = 1`);
        await eventually('the change after the snapshot', async () => {
          const recs = await reader.read(topic);
          return recs.some((r) => r.value?.op === 'u') ? true : undefined;
        });
      });
      const records = await reader.read(topic);
      const state = replayByKey(records, (k) => String(k.id));
      assert.equal(state.size, 30001);
      assert.equal(state.get('1')?.v, 'changed');
      assert.equal(state.get('30001')?.v, 'after');
      const reads = records.filter((r) => r.value?.op === 'r').length;
      if (method === 'exported') {
        assert.ok(
          reads >= readBefore + 30001,
          `the second snapshot read every row again (${reads} reads in all)`,
        );
      } else {
        // The insert made while stopped streams as a create; it may be read once more by its chunk.
        assert.ok(
          reads <= 30001 + 200,
          `rows read once, but for the chunk in flight at the stop (${reads} reads)`,
        );
      }
    });
  }
});
