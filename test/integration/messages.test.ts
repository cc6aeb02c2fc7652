// Logical decoding messages (op 'm' on <prefix>.message) and the transaction metadata topic
// (BEGIN/END on <prefix>.transaction, the transaction block in each change), end to end on the
// stack: both off by default, pgcdc's own heartbeat message never published.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { eventually, uniqueName } from '../support/pipeline.ts';

interface MessageValue {
  op: string;
  source: { txId: bigint | null; lsn: bigint; schema: string; table: string };
  message: { prefix: string; content: Buffer };
}
interface TxValue {
  status: string;
  id: string;
  event_count: bigint | null;
  data_collections: Array<{ data_collection: string; event_count: bigint }> | null;
}
interface Block {
  id: string;
  total_order: bigint;
  data_collection_order: bigint;
}

/** Decoded Avro records as plain JSON values (longs as numbers) for deep comparisons. */
const plain = (v: unknown): unknown =>
  JSON.parse(JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? Number(x) : x)));

describe('logical decoding messages and transaction metadata', () => {
  const { db, reader } = stackSuite();

  test('enabled: op m in WAL order (transactional ones inside their transaction), BEGIN/END with counts, the block in each change; no heartbeat published', async () => {
    const name = uniqueName('msg');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    const w = startConnector(name, {
      PGCDC_TABLES_INCLUDE: `public.${t}`,
      PGCDC_TOPICS_MESSAGE_EVENTS: 'true',
      PGCDC_TOPICS_TRANSACTION_METADATA: 'true',
    });
    await streaming(w);
    await db.query(`SELECT pg_logical_emit_message(false, 'app', 'outside')`);
    await db.query('BEGIN');
    await db.query(`INSERT INTO ${t} VALUES (1)`);
    await db.query(`SELECT pg_logical_emit_message(true, 'app', 'inside')`);
    await db.query(`INSERT INTO ${t} VALUES (2)`);
    await db.query('COMMIT');
    await db.query(`SELECT pg_logical_emit_message(false, 'pgcdc-heartbeat', '')`);
    await db.query(`SELECT pg_logical_emit_message(false, 'app', 'last')`);

    const messages = await eventually('three op m events', async () => {
      const r = await reader.read(`${name}.message`);
      return r.length >= 3 ? r : undefined;
    });
    const txs = await eventually('BEGIN and END', async () => {
      const r = await reader.read(`${name}.transaction`);
      return r.length >= 2 ? r : undefined;
    });
    const changes = await eventually('two changes', async () => {
      const r = await reader.read(`${name}.public.${t}`);
      return r.length >= 2 ? r : undefined;
    });
    await w.connector.stop();
    await w.running;

    const m = messages.map((r) => r.value as unknown as MessageValue);
    assert.deepEqual(
      m.map((v) => `${v.op} ${v.message.prefix}:${v.message.content.toString()}`),
      ['m app:outside', 'm app:inside', 'm app:last'],
      'heartbeat never published; messages in WAL order',
    );
    assert.deepEqual(
      plain(messages.map((r) => r.key)),
      messages.map(() => ({ prefix: 'app' })),
    );
    assert.equal(m[0]!.source.txId, null, 'a non-transactional message has no transaction');
    assert.notEqual(m[1]!.source.txId, null, 'a transactional message names its transaction');
    assert.equal(m[1]!.source.table, '');

    const tx = txs.map((r) => r.value as unknown as TxValue);
    assert.deepEqual(
      tx.map((v) => v.status),
      ['BEGIN', 'END'],
    );
    assert.equal(tx[0]!.id, tx[1]!.id);
    assert.equal(tx[0]!.id, `${m[1]!.source.txId}:${tx[0]!.id.split(':')[1]}`, 'id is txId:LSN');
    assert.equal(tx[0]!.event_count, null);
    assert.equal(tx[1]!.event_count, 2n);
    assert.deepEqual(plain(tx[1]!.data_collections), [{ data_collection: `public.${t}`, event_count: 2 }]);
    assert.deepEqual(plain(txs[0]!.key), { id: tx[0]!.id });

    const blocks = changes.map((r) => (r.value as unknown as { transaction: Block }).transaction);
    assert.deepEqual(plain(blocks), [
      { id: tx[0]!.id, total_order: 1, data_collection_order: 1 },
      { id: tx[0]!.id, total_order: 2, data_collection_order: 2 },
    ]);
  });

  test('by default: no message topic, no transaction topic, transaction block null', async () => {
    const name = uniqueName('msgoff');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    const w = startConnector(name, { PGCDC_TABLES_INCLUDE: `public.${t}` });
    await streaming(w);
    await db.query(`SELECT pg_logical_emit_message(false, 'app', 'outside')`);
    await db.query(`SELECT pg_logical_emit_message(true, 'app', 'inside')`);
    await db.query(`INSERT INTO ${t} VALUES (1)`);
    const changes = await eventually('the insert', async () => {
      const r = await reader.read(`${name}.public.${t}`);
      return r.length >= 1 ? r : undefined;
    });
    await w.connector.stop();
    await w.running;
    assert.deepEqual(await reader.read(`${name}.message`), []);
    assert.deepEqual(await reader.read(`${name}.transaction`), []);
    assert.equal((changes[0]!.value as unknown as { transaction: unknown }).transaction, null);
  });

  test('a graceful stop inside a 1,000-row transaction: one BEGIN, one END counting 1,000, orders 1..1000 without a gap', async () => {
    const name = uniqueName('txmid');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, pad text)`);
    const extra = {
      PGCDC_TABLES_INCLUDE: `public.${t}`,
      PGCDC_TOPICS_TRANSACTION_METADATA: 'true',
      // Few records in flight, so the transaction takes many Kafka round trips to get through.
      PGCDC_KAFKA_MAX_IN_FLIGHT_RECORDS: '5',
    };
    const topic = `${name}.public.${t}`;
    let w = startConnector(name, extra);
    await streaming(w);
    await db.query(`INSERT INTO ${t} SELECT g, repeat('x', 200) FROM generate_series(1, 1000) g`);
    await new Promise((r) => setTimeout(r, 50));
    await w.connector.stop();
    await w.running;
    const atStop = (await reader.read(topic)).length;
    assert.ok(
      atStop > 0 && atStop < 1000,
      `the stop fell inside the transaction (${atStop} of 1000 in Kafka)`,
    );

    w = startConnector(name, extra);
    await streaming(w);
    const txs = await eventually('END', async () => {
      const r = await reader.read(`${name}.transaction`);
      return r.some((x) => (x.value as unknown as TxValue).status === 'END') ? r : undefined;
    });
    const changes = await eventually('the rest of the transaction', async () => {
      const r = await reader.read(topic);
      return r.length >= 1000 ? r : undefined;
    });
    await w.connector.stop();
    await w.running;
    const tx = txs.map((r) => r.value as unknown as TxValue);
    assert.deepEqual(
      tx.map((v) => v.status),
      ['BEGIN', 'END'],
      `no second BEGIN after the restart (stopped at ${atStop})`,
    );
    assert.equal(tx[1]!.event_count, 1000n);
    const orders = changes.map((r) =>
      Number((r.value as unknown as { transaction: Block }).transaction.total_order),
    );
    assert.deepEqual(
      orders,
      Array.from({ length: 1000 }, (_, i) => i + 1),
    );
  });
});
