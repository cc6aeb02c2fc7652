// The local stack works with the libraries pgcdc uses: kafkajs on Kafka 4.x,
// @kafkajs/confluent-schema-registry on Apicurio's ccompat API, and pg on PostgreSQL (logical
// replication slot with an exported snapshot, TLS, client certificates). Everything connects for
// real, so each test fails when its server is down.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SchemaType } from '@kafkajs/confluent-schema-registry';
import type { Kafka } from 'kafkajs';
import { kafka, pgClient, registry, uniqueName } from '../support/stack.ts';

const TIMEOUT = 90_000;

/** Creates a one-partition topic and waits for its leader. */
async function createTopic(client: Kafka, topic: string): Promise<void> {
  const admin = client.admin();
  await admin.connect();
  try {
    assert.equal(
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true }),
      true,
    );
  } finally {
    await admin.disconnect();
  }
}

/** Reads `topic` from the beginning until a message with value `until` arrives; returns all values. */
async function consumeUntil(
  client: Kafka,
  topic: string,
  until: string,
  readUncommitted = false,
): Promise<string[]> {
  const consumer = client.consumer({ groupId: uniqueName('g'), readUncommitted, maxWaitTimeInMs: 200 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    const values: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no '${until}' on ${topic}; got ${values.join(',')}`)),
        60_000,
      );
      consumer
        .run({
          eachMessage: async ({ message }) => {
            const value = message.value?.toString() ?? '';
            values.push(value);
            if (value === until) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
    return values;
  } finally {
    await consumer.disconnect();
  }
}

describe('kafka (kafkajs)', { timeout: TIMEOUT }, () => {
  test('creates a topic, produces and consumes', async () => {
    const client = kafka();
    const topic = uniqueName('plain');
    await createTopic(client, topic);
    const producer = client.producer();
    await producer.connect();
    try {
      await producer.send({
        topic,
        messages: [
          { key: 'k1', value: 'one' },
          { key: 'k2', value: 'two' },
        ],
      });
    } finally {
      await producer.disconnect();
    }
    assert.deepEqual(await consumeUntil(client, topic, 'two'), ['one', 'two']);
  });

  test('idempotent producer', async () => {
    const client = kafka();
    const topic = uniqueName('idem');
    await createTopic(client, topic);
    const producer = client.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      for (let i = 0; i < 3; i++) {
        const [meta] = await producer.send({ topic, acks: -1, messages: [{ value: `m${i}` }] });
        assert.equal(meta?.errorCode, 0);
        assert.equal(meta?.baseOffset, String(i));
      }
    } finally {
      await producer.disconnect();
    }
    assert.deepEqual(await consumeUntil(client, topic, 'm2'), ['m0', 'm1', 'm2']);
  });

  test('transactions: a read_committed consumer sees the committed one, not the aborted one', async () => {
    const client = kafka();
    const topic = uniqueName('txn');
    await createTopic(client, topic);
    const producer = client.producer({
      transactionalId: uniqueName('txid'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    try {
      const committed = await producer.transaction();
      await committed.send({ topic, messages: [{ value: 'committed' }] });
      await committed.commit();
      const aborted = await producer.transaction();
      await aborted.send({ topic, messages: [{ value: 'aborted' }] });
      await aborted.abort();
      const end = await producer.transaction();
      await end.send({ topic, messages: [{ value: 'end' }] });
      await end.commit();
    } finally {
      await producer.disconnect();
    }
    assert.deepEqual(await consumeUntil(client, topic, 'end'), ['committed', 'end']);
    // The aborted record really was written: a read_uncommitted consumer sees it.
    assert.deepEqual(await consumeUntil(client, topic, 'end', true), ['committed', 'aborted', 'end']);
  });
});

describe(
  'schema registry (@kafkajs/confluent-schema-registry on Apicurio ccompat)',
  { timeout: TIMEOUT },
  () => {
    test('registers, evolves compatibly, refuses an incompatible schema, encodes the wire format', async () => {
      const reg = registry();
      const subject = `${uniqueName('orders')}-value`;
      const v1 = {
        type: 'record',
        name: 'Order',
        namespace: 'pgcdc.test',
        fields: [
          { name: 'id', type: 'long' },
          { name: 'note', type: 'string' },
        ],
      };
      const v2 = { ...v1, fields: [...v1.fields, { name: 'qty', type: 'int', default: 1 }] };
      const bad = { ...v1, fields: [{ name: 'id', type: 'string' }, v1.fields[1]] };
      const avro = (schema: object) => ({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }) as const;

      const { id: id1 } = await reg.register(avro(v1), { subject });
      const { id: id2 } = await reg.register(avro(v2), { subject });
      assert.notEqual(id1, id2);
      assert.equal(await reg.getLatestSchemaId(subject), id2);

      await assert.rejects(reg.register(avro(bad), { subject }), (err: Error & { status?: number }) => {
        assert.equal(err.status, 409, `expected HTTP 409, got ${err.status}: ${err.message}`);
        return true;
      });
      assert.equal(await reg.getLatestSchemaId(subject), id2);

      const encoded = await reg.encode(id2, { id: 42, note: 'hello', qty: 3 });
      assert.equal(encoded[0], 0, 'magic byte');
      assert.equal(encoded.readInt32BE(1), id2, 'schema id, big-endian');
      assert.ok(encoded.length > 5);
      assert.deepEqual({ ...(await reg.decode(encoded)) }, { id: 42, note: 'hello', qty: 3 });
      // A v1 payload decodes with its own writer schema (what a consumer of old messages does).
      const old = await reg.encode(id1, { id: 7, note: 'old' });
      assert.equal(old.readInt32BE(1), id1);
      assert.deepEqual({ ...(await reg.decode(old)) }, { id: 7, note: 'old' });
    });
  },
);

describe('postgres (pg)', { timeout: TIMEOUT }, () => {
  test('replication slot with an exported snapshot: the snapshot excludes later rows, the slot has them', async () => {
    const table = uniqueName('snap');
    const slot = uniqueName('slot');
    const publication = uniqueName('pub');
    const admin = await pgClient();
    try {
      await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
      await admin.query(`INSERT INTO ${table} VALUES (1, 'before')`);
      await admin.query(`CREATE PUBLICATION ${publication} FOR TABLE ${table}`);

      const repl = await pgClient({ replication: 'database' });
      try {
        const created = await repl.query(
          `CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput (SNAPSHOT 'export')`,
        );
        const row = created.rows[0] as { slot_name: string; consistent_point: string; snapshot_name: string };
        assert.equal(row.slot_name, slot);
        assert.match(row.consistent_point, /^[0-9A-F]+\/[0-9A-F]+$/);
        assert.match(row.snapshot_name, /^[0-9A-F]+-[0-9A-F]+-\d+$/);

        await admin.query(`INSERT INTO ${table} VALUES (2, 'after')`); // after the slot's consistent point

        const reader = await pgClient();
        try {
          await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
          await reader.query(`SET TRANSACTION SNAPSHOT '${row.snapshot_name}'`);
          const seen = await reader.query(`SELECT id, v FROM ${table} ORDER BY id`);
          assert.deepEqual(seen.rows, [{ id: 1, v: 'before' }]);
          await reader.query('COMMIT');
        } finally {
          await reader.end();
        }
        const now = await admin.query(`SELECT count(*)::int AS n FROM ${table}`);
        assert.equal((now.rows[0] as { n: number }).n, 2);
      } finally {
        await repl.end(); // the exported snapshot lives until then
      }

      // The row the snapshot did not see is in the slot's stream (an 'I'nsert message of pgoutput).
      await waitSlotInactive(admin, slot);
      let kinds = '';
      for (let i = 0; i < 50 && !kinds.includes('I'); i++) {
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100)); // decoding sees flushed WAL only
        const changes = await admin.query(
          `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
             'proto_version', '1', 'publication_names', $2)`,
          [slot, publication],
        );
        kinds = changes.rows.map((r: { data: Buffer }) => String.fromCharCode(r.data[0] ?? 0)).join('');
      }
      assert.match(kinds, /^B.*I.*C$/, `expected Begin, Insert, Commit; got '${kinds}'`);
    } finally {
      await waitSlotInactive(admin, slot).catch(() => {});
      await admin.query(
        'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      await admin.query(`DROP PUBLICATION IF EXISTS ${publication}`);
      await admin.query(`DROP TABLE IF EXISTS ${table}`);
      await admin.end();
    }
  });

  test('TLS: verified server certificate, and client-certificate login as pgcdc_cert', async () => {
    const tls = await pgClient({ tls: true });
    try {
      const r = await tls.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.equal((r.rows[0] as { ssl: boolean }).ssl, true);
    } finally {
      await tls.end();
    }
    const cert = await pgClient({ clientCert: true });
    try {
      const r = await cert.query('SELECT current_user AS u');
      assert.equal((r.rows[0] as { u: string }).u, 'pgcdc_cert');
    } finally {
      await cert.end();
    }
  });
});

async function waitSlotInactive(client: Awaited<ReturnType<typeof pgClient>>, slot: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await client.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    if (r.rowCount === 0 || !(r.rows[0] as { active: boolean }).active) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`replication slot ${slot} still active`);
}
