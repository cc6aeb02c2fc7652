// How a connector stops and what it leaves behind: a graceful stop in the middle of a
// transaction repeats nothing on the next start; initial_only leaves no slot; slot.dropOnStop
// means the next start snapshots again; the offsets endpoint's position is the stored one; and the
// streaming offset record does not grow with the number of tables.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Kafka, logLevel } from 'kafkajs';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { Connector } from '../../src/pipeline/connector.ts';
import { defaultSlotName } from '../../src/config/names.ts';
import { OffsetStore } from '../../src/kafka/offsets.ts';
import { createLogger } from '../../src/worker/log.ts';
import { eventually, stackSettings, uniqueName, workerConfig } from '../support/pipeline.ts';

const log = createLogger({ connector: 'test', level: 'warn', format: 'json' });

function offsetStore(name: string): OffsetStore {
  const kafka = new Kafka({ brokers: stackSettings().brokers.split(','), logLevel: logLevel.NOTHING });
  return new OffsetStore(kafka, `${name}-offsets`, { connector: name, slot: defaultSlotName(name) });
}

describe('stops', () => {
  const { db, reader } = stackSuite();

  const slotExists = async (slot: string) =>
    (await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount === 1;

  test('a graceful stop in the middle of a 1,000-row transaction: the next start repeats nothing', async () => {
    const name = uniqueName('midtx');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, pad text)`);
    // Few records in flight, so the transaction takes many Kafka round trips to get through.
    const extra = { PGCDC_TABLES_INCLUDE: `public.${t}`, PGCDC_KAFKA_MAX_IN_FLIGHT_RECORDS: '5' };
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
    assert.equal(w.connector.position.txSeq, atStop, 'the stored position is inside the transaction');

    w = startConnector(name, extra);
    await streaming(w);
    const all = await eventually('the rest of the transaction', async () => {
      const r = await reader.read(topic);
      return r.length >= 1000 ? r : undefined;
    });
    await db.query(`INSERT INTO ${t} VALUES (1001, 'after')`);
    await eventually('a later change', async () =>
      (await reader.read(topic)).some((r) => r.value?.after?.id === 1001) ? true : undefined,
    );
    await w.connector.stop();
    await w.running;
    const ids = (await reader.read(topic)).map((r) => Number(r.key!.id));
    assert.equal(ids.length, 1001, `nothing twice (${all.length} records before the last insert)`);
    assert.equal(new Set(ids).size, 1001);
  });

  test('initial_only leaves no replication slot behind (checked before any cleanup hook)', async () => {
    const name = uniqueName('ionly');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${t} VALUES (1), (2)`);
    const c = new Connector(
      workerConfig(name, { PGCDC_TABLES_INCLUDE: `public.${t}`, PGCDC_SNAPSHOT_MODE: 'initial_only' }),
      log,
    );
    await c.run();
    assert.equal(c.state, 'STOPPED');
    assert.equal((await reader.read(`${name}.public.${t}`)).length, 2);
    assert.equal(await slotExists(defaultSlotName(name)), false, 'no slot holds WAL after initial_only');
  });

  test('slot.dropOnStop: the slot is dropped on a graceful stop and the next start snapshots again', async () => {
    const name = uniqueName('dos');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${t} VALUES (1), (2)`);
    const extra = { PGCDC_TABLES_INCLUDE: `public.${t}`, PGCDC_SLOT_DROP_ON_STOP: 'true' };
    let w = startConnector(name, extra);
    await streaming(w);
    await w.connector.stop();
    await w.running;
    assert.equal(await slotExists(defaultSlotName(name)), false, 'dropped on stop');

    w = startConnector(name, extra);
    await streaming(w);
    await w.connector.stop();
    await w.running;
    const ops = (await reader.read(`${name}.public.${t}`)).map((r) => r.value?.op);
    assert.deepEqual(ops, ['r', 'r', 'r', 'r'], 'the second start took a new snapshot');
  });

  test('the stored position is what the offsets topic holds, and the streaming offset is small', async () => {
    const name = uniqueName('stored');
    const tables = Array.from({ length: 30 }, (_, i) => `${name}_t${i}`);
    for (const t of tables) await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    const w = startConnector(name, {
      PGCDC_TABLES_INCLUDE: tables.map((t) => `public.${t}`).join(','),
      PGCDC_OFFSETS_COMMIT_INTERVAL_MS: '60000',
    });
    await streaming(w);
    const store = offsetStore(name);
    const storedAtStream = await store.read();
    assert.deepEqual(
      w.connector.storedPosition,
      storedAtStream,
      'storedPosition is the record the offsets topic holds',
    );
    assert.deepEqual(Object.keys(storedAtStream!.snapshot!).sort(), ['consistentPoint', 'method', 'state']);
    assert.equal(storedAtStream!.snapshot!.state, 'done');

    // A change moves the in-memory position; the offset is written only every 60 s here.
    await db.query(`INSERT INTO ${tables[0]} VALUES (1)`);
    await eventually('the durable position to move', async () =>
      w.connector.position.lsn !== storedAtStream!.lsn ? true : undefined,
    );
    assert.deepEqual(w.connector.storedPosition, storedAtStream, 'not ahead of the offsets topic');
    await w.connector.stop();
    await w.running;
    const final = await store.read();
    assert.deepEqual(w.connector.storedPosition, final, 'after the stop: the final stored offset');
    assert.ok(JSON.stringify(final).length < 200, `a constant-size record: ${JSON.stringify(final)}`);
  });
  test('a stop while the replication stream is starting ends the run cleanly, not as a failure', async () => {
    // The stop lands between the 'streaming' line and the stream being up (connecting,
    // START_REPLICATION in flight), at several delays: a stop there once ended a worker with exit
    // code 1 and no reason (the connection it closed was reported as the run's failure).
    const name = uniqueName('stopstart');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${t} VALUES (1)`);
    const extra = { PGCDC_TABLES_INCLUDE: `public.${t}` };
    const first = startConnector(name, extra);
    await streaming(first);
    await first.connector.stop();
    await first.running;
    for (const delayMs of [0, 0, 1, 2, 5, 10, 20, 40]) {
      let connector: Connector | null = null;
      const out = new Writable({
        write(chunk: Buffer, _enc, cb) {
          if (chunk.toString().includes('"message":"streaming"'))
            setTimeout(() => void connector!.stop(), delayMs);
          cb();
        },
      });
      connector = new Connector(
        workerConfig(name, extra),
        createLogger({ connector: name, level: 'info', format: 'json', out }),
      );
      // It once hung here: the stream connected after the stop and streamed on, unread.
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the run did not end within 20 s of the stop')), 20_000);
      });
      await assert.doesNotReject(
        Promise.race([connector.run(), hung]).finally(() => clearTimeout(timer)),
        `a stop ${delayMs} ms after the 'streaming' line`,
      );
    }
  });
});
