// One owner per slot: a second worker with the same configuration is refused while the first
// holds the slot (also while its snapshot runs and the slot itself is inactive), and pgcdc never
// drops a slot that no stored offset of the connector vouches for.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { defaultSlotName } from '../../src/config/names.ts';
import { lockSlot } from '../../src/postgres/replication/slot.ts';
import { exited, spawnWorker } from '../support/cli.ts';
import { eventually, pgClient, uniqueName, workerEnv } from '../support/pipeline.ts';

describe('slot ownership', () => {
  const { db, reader } = stackSuite();

  test('a second worker on the same slot is refused with one line, during the snapshot and while streaming', async () => {
    const name = uniqueName('own');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${t} SELECT g, 'v' || g FROM generate_series(1, 3000) g`);
    const extra = { PGCDC_TABLES_INCLUDE: `public.${t}`, PGCDC_SNAPSHOT_BATCH_SIZE: '100' };
    const topic = `${name}.public.${t}`;

    const first = startConnector(name, extra);
    first.connector.pause();
    await eventually('the snapshot under way (and paused)', async () =>
      first.connector.state === 'SNAPSHOT' ? true : undefined,
    );
    const refused = startConnector(name, extra);
    await assert.rejects(refused.running, (err: Error) => {
      assert.equal(err.name, 'UserError');
      assert.match(err.message, /owned by another running pgcdc worker/);
      assert.doesNotMatch(err.message, /\n/, 'one line');
      return true;
    });
    first.connector.resume();
    await streaming(first);
    const again = startConnector(name, extra);
    await assert.rejects(again.running, /owned by another running pgcdc worker/);

    await db.query(`DELETE FROM ${t} WHERE id = 1`);
    const records = await eventually('the delete after the snapshot', async () => {
      const r = await reader.read(topic);
      return r.some((x) => x.value?.op === 'd') ? r : undefined;
    });
    await first.connector.stop();
    await first.running;
    const reads = records.filter((r) => r.value?.op === 'r').length;
    assert.equal(reads, 3000, 'one snapshot: the refused workers neither restarted it nor took the slot');
  });

  test('a slot pgcdc did not create is never dropped: the start is refused with the way out', async () => {
    const name = uniqueName('foreign');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    const slot = defaultSlotName(name);
    const created = await db.query<{ lsn: string }>(
      `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`,
      [slot],
    );
    const w = startConnector(name, { PGCDC_TABLES_INCLUDE: `public.${t}` });
    await assert.rejects(w.running, (err: Error) => {
      assert.equal(err.name, 'UserError');
      assert.match(err.message, /did not create it and will not drop it/);
      assert.ok(err.message.includes(`pg_drop_replication_slot('${slot}')`), err.message);
      return true;
    });
    const { rows } = await db.query<{ lsn: string }>(
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    assert.equal(rows[0]?.lsn, created.rows[0]!.lsn, 'the same slot, untouched');
    await db.query('SELECT pg_drop_replication_slot($1)', [slot]);
  });

  test("this worker's own abandoned session (a lost connection the server still keeps) does not lock it out", async () => {
    const slot = `${uniqueName('abandoned')}_slot`;
    const old = await pgClient();
    await lockSlot(old, slot);
    // The server keeps the backend (and the lock) while it sleeps; the client gives up on it.
    old.query('SELECT pg_sleep(60)').catch(() => undefined);
    old.on('error', () => undefined);
    (old as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const next = await pgClient();
    try {
      await lockSlot(next, slot);
      const other = await pgClient();
      try {
        await assert.rejects(lockSlot(other, slot), /owned by another running pgcdc worker/);
      } finally {
        await other.end();
      }
    } finally {
      await next.end();
    }
  });

  test('pgcdc run: a second worker with the same configuration exits 2 with one line naming the slot', async () => {
    const name = uniqueName('own2');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${t} VALUES (1)`);
    const env = workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${t}`,
      PGCDC_EXIT_ON_FAILURE_AFTER: '0',
      PGCDC_HTTP_PORT: '0',
    });
    const first = spawnWorker(env);
    await eventually('the first worker to load the table', async () =>
      (await reader.read(`${name}.public.${t}`)).length === 1 ? true : undefined,
    );
    // The start-up checks already refuse a slot in use while the first one streams; past them
    // (or during the first one's snapshot, when the slot is inactive) the lock refuses it.
    const second = spawnWorker(env, ['run', '--skip-checks']);
    assert.equal(await exited(second.child), 2, second.output());
    const errors = second
      .output()
      .split('\n')
      .filter((l) => l.includes('owned by another running pgcdc worker'));
    assert.ok(errors.length > 0, second.output());
    assert.match(errors[0]!, new RegExp(`replication slot ${defaultSlotName(name)} is owned`));
    assert.doesNotMatch(second.output(), /\n\s+at /, 'no stack trace');
    first.child.kill('SIGTERM');
    assert.equal(await exited(first.child), 0, first.output());
  });
});
