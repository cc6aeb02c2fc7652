// The pipeline end to end on the real stack: snapshot, streaming of every op, the envelope as a
// registry-driven consumer sees it, snapshot/stream consistency under concurrent writes, and a
// graceful restart that loses nothing and repeats nothing.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite, startConnector } from '../support/connectors.ts';
import { defaultSlotName } from '../../src/config/names.ts';
import { eventually, pgClient, replayByKey, uniqueName, type DecodedRecord } from '../support/pipeline.ts';

describe('pipeline', () => {
  const { db, reader } = stackSuite();

  test('snapshot, then insert/update/delete/truncate stream into per-table topics with the Debezium envelope', async () => {
    const name = uniqueName('pl');
    const t1 = `${name}_orders`;
    const t2 = `${name}_notes`;
    await db.query(
      `CREATE TABLE ${t1} (id int8 PRIMARY KEY, label text, amount numeric(12,2), at timestamptz, tags text[])`,
    );
    await db.query(`CREATE TABLE ${t2} (k text PRIMARY KEY, body text)`);
    await db.query(
      `INSERT INTO ${t1} SELECT g, 'row ' || g, g * 1.5, '2024-01-02 03:04:05.123456+00', ARRAY['a','b'] FROM generate_series(1, 50) g`,
    );
    await db.query(`INSERT INTO ${t2} VALUES ('x', 'hello'), ('y', 'world')`);

    const { connector, running } = startConnector(name, {
      PGCDC_TABLES_INCLUDE: `public.${t1}, public.${t2}`,
      PGCDC_TOPICS_TRUNCATE_EVENTS: 'true', // off by default, as in Debezium
      // One table after the other, so the markers' order below is the tables' order.
      PGCDC_SNAPSHOT_PARALLELISM: '1',
    });
    const topic1 = `${name}.public.${t1}`;
    const topic2 = `${name}.public.${t2}`;
    await eventually('snapshot rows in Kafka', async () =>
      (await reader.read(topic1)).length >= 50 ? true : undefined,
    );

    await db.query(
      `INSERT INTO ${t1} VALUES (9007199254740993, 'big', -0.01, '1999-12-31 23:59:59.999999+00', '{}')`,
    );
    await db.query(`UPDATE ${t1} SET label = 'changed' WHERE id = 1`);
    await db.query(`DELETE FROM ${t1} WHERE id = 2`);
    await db.query(`TRUNCATE ${t2}`);

    const records = await eventually('stream records', async () => {
      const r = await reader.read(topic1);
      return r.filter((x) => x.value?.op === 'd').length === 1 && r.length >= 54 ? r : undefined;
    });
    const t2records = await eventually('truncate event', async () => {
      const r = await reader.read(topic2);
      return r.some((x) => x.value?.op === 't') ? r : undefined;
    });
    await connector.stop();
    await running;

    const ops = (rs: DecodedRecord[]) => rs.map((r) => (r.value ? r.value.op : 'tombstone'));
    assert.deepEqual(ops(records).slice(0, 50), Array(50).fill('r'));
    assert.deepEqual(ops(records).slice(50), ['c', 'u', 'd', 'tombstone']);
    assert.deepEqual(ops(t2records), ['r', 'r', 't']);

    const snap = records.slice(0, 50);
    // Debezium's markers: the snapshot's first and last rows, each table's first and last.
    assert.deepEqual(
      [...snap, ...t2records.slice(0, 2)].map((r) => r.value!.source.snapshot),
      [
        'first',
        ...Array<string>(48).fill('true'),
        'last_in_data_collection',
        'first_in_data_collection',
        'last',
      ],
    );
    const first = snap.find((r) => Number(r.key!.id) === 1)!;
    assert.equal(first.value!.after!.label, 'row 1');
    assert.deepEqual(first.value!.after!.tags, ['a', 'b']);
    assert.equal(first.value!.after!.at, '2024-01-02T03:04:05.123456Z'); // io.debezium.time.ZonedTimestamp
    assert.equal(first.value!.source.table, t1);
    assert.equal(first.value!.source.schema, 'public');
    assert.equal(first.value!.source.connector, 'postgresql');

    const [c, u, d, tomb] = records.slice(50);
    assert.equal(c!.value!.after!.label, 'big');
    assert.equal(c!.value!.before, null);
    assert.equal(typeof c!.value!.source.txId, 'bigint');
    assert.equal(c!.key!.id, 9007199254740993n, 'int8 beyond 2^53 exact');
    assert.ok(Number(c!.value!.source.lsn) > 0);
    assert.equal(u!.value!.after!.label, 'changed');
    assert.equal(Number(u!.key!.id), 1);
    assert.equal(Number(d!.key!.id), 2);
    assert.equal(d!.value!.after, null);
    assert.equal(Number(d!.value!.before!.id), 2);
    assert.equal(tomb!.value, null);
    assert.equal(Number(tomb!.key!.id), 2);
  });

  test('a snapshot taken under concurrent writes meets the stream with no gap and no overlap', async () => {
    const name = uniqueName('cc');
    const table = `${name}_t`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL)`);
    await db.query(`INSERT INTO ${table} SELECT g, 0 FROM generate_series(1, 20000) g`);

    let writing = true;
    let nextId = 20001;
    const writer = (async () => {
      const w = await pgClient();
      try {
        while (writing) {
          const id = nextId++;
          await w.query(`INSERT INTO ${table} VALUES ($1, 0)`, [id]);
          await w.query(`UPDATE ${table} SET v = v + 1 WHERE id = $1`, [1 + (id % 20000)]);
        }
      } finally {
        await w.end();
      }
    })();

    // The exported snapshot's promise: each row read once, at one point, then the stream (the
    // chunked load's, test/integration/chunked-load.test.ts: the topic replays to the table).
    const { connector, running } = startConnector(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_SNAPSHOT_BATCH_SIZE: '500',
      PGCDC_SNAPSHOT_METHOD: 'exported',
    });
    await eventually('snapshot completed', async () => (connector.state === 'STREAMING' ? true : undefined));
    await new Promise((r) => setTimeout(r, 1000));
    writing = false;
    await writer;
    const { rows } = await db.query<{ id: number; v: number }>(`SELECT id, v FROM ${table}`);
    const expected = new Map(rows.map((r) => [String(r.id), r.v]));
    const topic = `${name}.public.${table}`;

    const records = await eventually('topic to match the table', async () => {
      const recs = await reader.read(topic);
      const state = replayByKey(recs, (k) => String(k.id));
      if (state.size !== expected.size) return undefined;
      for (const [k, v] of expected) if (state.get(k)?.v !== v) return undefined;
      return recs;
    });
    await connector.stop();
    await running;

    // Exactly once across the boundary: every row is read or created once, every update once.
    const created = new Map<string, number>();
    for (const r of records) {
      if (r.value && (r.value.op === 'r' || r.value.op === 'c')) {
        const k = String(r.key!.id);
        created.set(k, (created.get(k) ?? 0) + 1);
      }
    }
    assert.equal(created.size, expected.size);
    assert.ok(
      [...created.values()].every((n) => n === 1),
      'no row was both snapshotted and streamed as created',
    );
    const updates = records.filter((r) => r.value?.op === 'u').length;
    const totalBumps = rows.reduce((sum, r) => sum + r.v, 0);
    const snapshotBumps = records
      .filter((r) => r.value?.op === 'r')
      .reduce((sum, r) => sum + Number(r.value!.after!.v), 0);
    assert.equal(
      snapshotBumps + updates,
      totalBumps,
      'each update is in the snapshot or in the stream, not both',
    );
  });

  test('a graceful restart resumes from the stored offset: changes made while stopped arrive once', async () => {
    const name = uniqueName('rs');
    const table = `${name}_t`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} VALUES (1, 'a'), (2, 'b')`);
    const env = { PGCDC_TABLES_INCLUDE: `public.${table}` };
    const topic = `${name}.public.${table}`;

    let w = startConnector(name, env);
    await eventually('snapshot', async () => (w.connector.state === 'STREAMING' ? true : undefined));
    await db.query(`INSERT INTO ${table} VALUES (3, 'c')`);
    await eventually('first change', async () =>
      (await reader.read(topic)).length === 3 ? true : undefined,
    );
    await w.connector.stop();
    await w.running;
    const slot = await db.query<{ lsn: string }>(
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [defaultSlotName(name)],
    );
    assert.equal(slot.rows[0]?.lsn, w.connector.position.lsn, 'a graceful stop confirms the durable offset');

    await db.query(`INSERT INTO ${table} VALUES (4, 'd')`);
    await db.query(`UPDATE ${table} SET v = 'A' WHERE id = 1`);
    await db.query(`DELETE FROM ${table} WHERE id = 2`);

    w = startConnector(name, env);
    const records = await eventually('changes made while stopped', async () => {
      const r = await reader.read(topic);
      return r.length >= 7 ? r : undefined;
    });
    await new Promise((r) => setTimeout(r, 1000));
    const final = await reader.read(topic);
    await w.connector.stop();
    await w.running;
    assert.equal(final.length, records.length, 'nothing more arrived');
    assert.deepEqual(
      final.map((r) => (r.value ? `${r.value.op}${String(r.key!.id)}` : `tomb${String(r.key!.id)}`)),
      ['r1', 'r2', 'c3', 'c4', 'u1', 'd2', 'tomb2'],
      'no snapshot again, nothing lost, nothing twice',
    );
  });
});
