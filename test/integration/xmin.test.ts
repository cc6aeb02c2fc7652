// capture.method xmin on the real stack (docs/xmin.md): inserts and updates arrive as op r reads
// (deletes do not), a transaction open across a poll is read by the next poll, the topics, keys
// and subjects are CDC's own, a worker killed mid-table resumes after its last acknowledged chunk,
// a large table is read in chunks within the row and byte bounds, and a standby of a server
// without wal_level=logical is read as well as a primary.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Kafka, logLevel } from 'kafkajs';
import { Connector } from '../../src/pipeline/connector.ts';
import { OffsetStore, type OffsetRecord } from '../../src/kafka/offsets.ts';
import { runPreflight } from '../../src/postgres/preflight.ts';
import { checkCommand } from '../../src/cli/check.ts';
import { discoverCommand } from '../../src/cli/discover.ts';
import { formatLine } from '../../src/postgres/preflight/result.ts';
import { createLogger } from '../../src/worker/log.ts';
import { failureKind } from '../../src/errors.ts';
import { defaultSlotName } from '../../src/config/names.ts';
import { startMatrixServer, type MatrixServer } from '../../deploy/local/pg-versions.ts';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { capturingLogger } from '../support/log-capture.ts';
import { exited, spawnWorker } from '../support/cli.ts';
import {
  eventually,
  pgClient,
  replayByKey,
  stackSettings,
  uniqueName,
  workerConfig,
  workerEnv,
  type DecodedRecord,
  serverEnv,
} from '../support/pipeline.ts';

/** 16 by default: CI installs its binaries for the standby-decoding test already; 14 and 15 work too. */
const STANDBY_MAJOR = Number(process.env.PGCDC_PG_XMIN_STANDBY ?? '16');
const XMIN = { PGCDC_CAPTURE_METHOD: 'xmin', PGCDC_CAPTURE_XMIN_POLL_INTERVAL_MS: '300' };

function kafka(): Kafka {
  return new Kafka({ brokers: stackSettings().brokers.split(','), logLevel: logLevel.NOTHING });
}

/** Records in the topic (its end offset), without reading them. */
async function topicEnd(topic: string): Promise<number> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic)) return 0;
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((n, o) => n + Number(o.high), 0);
  } finally {
    await admin.disconnect();
  }
}

async function storedOffset(name: string): Promise<OffsetRecord | null> {
  return new OffsetStore(kafka(), `${name}-offsets`, { connector: name, slot: defaultSlotName(name) }).read();
}

const ids = (records: DecodedRecord[]) => records.map((r) => Number(r.key!.id));

describe('capture.method xmin', () => {
  const { db, reader } = stackSuite();
  const servers: MatrixServer[] = [];
  /** The standby test's servers, for the recovery-conflict test after it. */
  let pair: { primary: MatrixServer; standby: MatrixServer } | null = null;
  after(async () => {
    for (const s of servers) await s.remove();
  });

  test('inserts and updates arrive as reads, deletes do not, an open transaction is read by the next poll; CDC subjects', async () => {
    const name = uniqueName('xm');
    const table = `${name}_t`;
    const topic = `${name}.public.${table}`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
    const w = startConnector(name, { ...XMIN, PGCDC_TABLES_INCLUDE: `public.${table}` });
    await streaming(w);
    await eventually('the first poll', async () =>
      (await reader.read(topic)).length >= 3 ? true : undefined,
    );

    // A transaction that holds an xid across polls, older than the changes committed after it.
    const open = await pgClient();
    try {
      await open.query('BEGIN');
      await open.query(`INSERT INTO ${table} VALUES (100, 'open across polls')`);
      await db.query(`INSERT INTO ${table} VALUES (4, 'd')`);
      await db.query(`UPDATE ${table} SET v = 'A' WHERE id = 1`);
      await db.query(`DELETE FROM ${table} WHERE id = 2`);
      await eventually('the insert and the update', async () => {
        const r = await reader.read(topic);
        return r.some((x) => x.key!.id === 4) && r.some((x) => x.value?.after?.v === 'A') ? true : undefined;
      });
      // One more poll after them, still without the open transaction's row.
      await db.query(`INSERT INTO ${table} VALUES (5, 'marker')`);
      await eventually('a later poll', async () =>
        (await reader.read(topic)).some((x) => x.key!.id === 5) ? true : undefined,
      );
      assert.ok(!ids(await reader.read(topic)).includes(100), 'not committed yet: not visible');
      await open.query('COMMIT');
    } finally {
      await open.end();
    }
    const records = await eventually('the row of the transaction that was open', async () => {
      const r = await reader.read(topic);
      return ids(r).includes(100) ? r : undefined;
    });
    await w.connector.stop();
    await w.running;

    for (const r of records) {
      assert.ok(r.value, 'no tombstones');
      assert.equal(r.value.op, 'r');
      assert.equal(r.value.source.snapshot, 'incremental');
      assert.equal(r.value.before, null);
      assert.equal(r.value.source.lsn, null, 'no LSN');
      assert.equal(typeof r.value.source.xmin, 'bigint', 'source.xmin: the row version xid8');
      assert.equal(BigInt(r.value.source.txId as bigint), (r.value.source.xmin as bigint) % (1n << 32n));
    }
    const state = replayByKey(records, (k) => String(k.id));
    assert.deepEqual([...state.keys()].sort(), ['1', '100', '2', '3', '4', '5'], 'the deleted row 2 stays');
    assert.equal(state.get('1')!.v, 'A');

    // A CDC connector on the same table and prefix registers nothing new: same subjects, same schemas.
    const cdc = startConnector(uniqueName('xmcdc'), {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_TOPICS_PREFIX: name,
    });
    await streaming(cdc);
    await db.query(`UPDATE ${table} SET v = 'via cdc' WHERE id = 3`);
    await eventually('the CDC update in the same topic', async () =>
      (await reader.read(topic)).some((x) => x.value?.op === 'u') ? true : undefined,
    );
    await cdc.connector.stop();
    await cdc.running;
    const registry = stackSettings().registryUrl;
    for (const subject of [`${topic}-key`, `${topic}-value`]) {
      const res = await fetch(`${registry}/subjects/${encodeURIComponent(subject)}/versions`);
      assert.deepEqual(await res.json(), [1], `${subject}: one schema for xmin and CDC`);
    }
  });

  test('check asks only what xmin needs and states the trade-offs; discover estimates each scan', async () => {
    const name = uniqueName('xmck');
    const keyed = `${name}_k`;
    const keyless = `${name}_nokey`;
    await db.query(`CREATE TABLE ${keyed} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${keyed} SELECT g, 'v' FROM generate_series(1, 2000) g`);
    await db.query(`ANALYZE ${keyed}`);
    await db.query(`CREATE TABLE ${keyless} (v text)`);
    const env = workerEnv(name, { ...XMIN, PGCDC_TABLES_INCLUDE: `public.${keyed}, public.${keyless}` });
    let text = '';
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    const code = await checkCommand({ env, args: [], fix: false, json: false, out });
    assert.equal(code, 2, text);
    assert.match(text, /^failed +primary key +public\.\S+_nokey has no primary key; .*fix: add one/m);
    assert.match(text, /^ok +capture method +capture\.method xmin/m);
    assert.doesNotMatch(
      text,
      /^\w+ +(wal_level|replication privilege|publication|replica identity|wal senders) /m,
    );
    assert.match(text, /deletes are not captured/);

    text = '';
    assert.equal(await discoverCommand({ env, args: [], json: true, out }), 0);
    const d = JSON.parse(text) as {
      tables: Array<{ table: string; xminScan?: { heapBytes: number; rows: number } }>;
    };
    const scan = d.tables.find((t) => t.table === keyed)?.xminScan;
    assert.equal(scan?.rows, 2000);
    assert.ok(scan.heapBytes > 0);
  });

  test('a large table is read in chunks within capture.xmin.chunkRows and chunkBytes', async () => {
    const name = uniqueName('xmbig');
    const table = `${name}_t`;
    const rows = 6000;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, pad text NOT NULL)`);
    await db.query(`INSERT INTO ${table} SELECT g, repeat('x', 200) FROM generate_series(1, ${rows}) g`);
    let logText = '';
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logText += chunk.toString();
        cb();
      },
    });
    const log = createLogger({ connector: name, level: 'debug', format: 'json', out });
    const chunkBytes = 64 * 1024;
    const c = new Connector(
      workerConfig(name, {
        ...XMIN,
        PGCDC_TABLES_INCLUDE: `public.${table}`,
        PGCDC_CAPTURE_XMIN_CHUNK_ROWS: '1000',
        PGCDC_CAPTURE_XMIN_CHUNK_BYTES: String(chunkBytes),
      }),
      log,
    );
    const running = c.run();
    running.catch(() => undefined);
    try {
      const records = await eventually('every row', async () => {
        const r = await reader.read(`${name}.public.${table}`);
        return new Set(ids(r)).size === rows ? r : undefined;
      });
      assert.equal(records.length, rows, 'each row once');
    } finally {
      await c.stop();
      await running;
    }
    const chunks = logText
      .split('\n')
      .filter((l) => l.includes('"xmin chunk"'))
      .map((l) => JSON.parse(l) as { rows: number; bytes: number });
    const rowBytes = 200 + String(rows).length;
    assert.ok(chunks.length >= Math.floor((rows * 200) / chunkBytes), `${chunks.length} chunks`);
    for (const ch of chunks) {
      assert.ok(ch.rows <= 1000, `chunk of ${ch.rows} rows`);
      assert.ok(ch.bytes < chunkBytes + rowBytes, `chunk of ${ch.bytes} bytes`);
    }
  });

  test('a stored cursor the server is behind is announced in one line and the table read again', async () => {
    const name = uniqueName('xmrs');
    const table = `${name}_t`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'v' FROM generate_series(1, 50) g`);
    // A cursor from another server (or a backup restored behind it): far ahead of this one.
    const store = new OffsetStore(kafka(), `${name}-offsets`, {
      connector: name,
      slot: defaultSlotName(name),
    });
    const admin = kafka().admin();
    const producer = kafka().producer();
    await admin.connect();
    await producer.connect();
    try {
      await admin.createTopics({
        topics: [{ topic: `${name}-offsets`, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }],
        waitForLeaders: true,
      });
      const r = store.record({
        lsn: '0/0',
        xmin: { [`public.${table}`]: { from: String(1n << 60n) } },
        ts_ms: 0,
      });
      await producer.send({ topic: r.topic, acks: -1, messages: [{ key: r.key, value: r.value }] });
    } finally {
      await producer.disconnect();
      await admin.disconnect();
    }
    const { log, lines } = capturingLogger(name);
    const c = new Connector(workerConfig(name, { ...XMIN, PGCDC_TABLES_INCLUDE: `public.${table}` }), log);
    const running = c.run();
    running.catch(() => undefined);
    try {
      await eventually('every row, read again', async () => {
        const r = await reader.read(`${name}.public.${table}`);
        return new Set(ids(r)).size === 50 ? true : undefined;
      });
    } finally {
      await c.stop();
      await running;
    }
    const resync = lines()
      .split('\n')
      .filter((l) => l.includes('cannot be trusted'));
    assert.equal(resync.length, 1, lines());
    assert.match(
      resync[0]!,
      /ahead of the server's next transaction id .*reading the whole table again \(resync\)/,
    );
  });

  test('a worker killed mid-table resumes after its last acknowledged chunk, losing no row', async () => {
    const name = uniqueName('xmkill');
    const table = `${name}_t`;
    const topic = `${name}.public.${table}`;
    const rows = 40_000;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'row ' || g FROM generate_series(1, ${rows}) g`);
    const env = workerEnv(name, {
      ...XMIN,
      // One poll in the test's time: later polls would read nothing new anyway.
      PGCDC_CAPTURE_XMIN_POLL_INTERVAL_MS: '600000',
      PGCDC_CAPTURE_XMIN_CHUNK_ROWS: '500',
      // One small send at a time: slow enough for the kill to land mid-table on a fast machine.
      PGCDC_KAFKA_MAX_IN_FLIGHT_RECORDS: '100',
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_HTTP_PORT: '0',
    });
    const first = spawnWorker(env);
    first.child.once('exit', (code) => {
      if (code !== null) console.error(`worker exited ${code}: ${first.output()}`);
    });
    // Killed once a few chunks are in Kafka (offsets are written every 200 ms), well before the end.
    await eventually('a few chunks in Kafka', async () =>
      (await topicEnd(topic)) >= 3000 ? true : undefined,
    );
    first.child.kill('SIGKILL');
    await exited(first.child);
    const killedAt = await topicEnd(topic);
    const mid = (await storedOffset(name))!.xmin![`public.${table}`]!;
    assert.ok(mid.after && mid.next, `stored mid-table: ${JSON.stringify(mid)}`);
    assert.ok(killedAt < rows, `killed before the table was read (${killedAt} records)`);

    const second = spawnWorker(env);
    await eventually(
      'the poll finished',
      async () => {
        const o = await storedOffset(name);
        const c = o?.xmin?.[`public.${table}`];
        return c?.from && !c.next ? true : undefined;
      },
      90_000,
    );
    second.child.kill('SIGTERM');
    assert.equal(await exited(second.child), 0, second.output());
    const records = await reader.read(topic);
    assert.equal(new Set(ids(records)).size, rows, 'every row');
    assert.ok(
      records.length - killedAt < rows,
      `resumed mid-table: ${records.length - killedAt} records after the restart`,
    );
  });

  test(`a PostgreSQL ${STANDBY_MAJOR} standby of a server without logical decoding: checked and read`, async () => {
    const primary = await startMatrixServer(STANDBY_MAJOR, { settings: ['wal_level = replica'] });
    servers.push(primary);
    const name = uniqueName('xmsb');
    const table = `${name}_t`;
    await primary.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await primary.query(`INSERT INTO ${table} VALUES (1, 'a'), (2, 'b')`);
    const standby = await primary.standby();
    servers.push(standby);
    pair = { primary, standby };
    await eventually('the table on the standby', async () =>
      (await standby.query(`SELECT to_regclass('${table}') AS t`)).rows[0]?.t ? true : undefined,
    );
    const env = {
      ...XMIN,
      ...serverEnv(standby),
      PGCDC_TABLES_INCLUDE: `public.${table}`,
    };
    const report = await runPreflight(workerConfig(name, env));
    const lines = report.results.map(formatLine);
    assert.ok(report.passed, lines.join('\n'));
    const logical = [
      'wal_level',
      'replication',
      'replication_slots',
      'wal_senders',
      'publication',
      'replica_identity',
    ];
    assert.deepEqual(
      report.results.filter((r) => logical.includes(r.id)),
      [],
      "none of logical decoding's checks",
    );

    const w = startConnector(name, env);
    await streaming(w);
    const topic = `${name}.public.${table}`;
    await eventually('the standby rows', async () =>
      (await reader.read(topic)).length >= 2 ? true : undefined,
    );
    await primary.query(`INSERT INTO ${table} VALUES (3, 'c')`);
    await primary.query(`UPDATE ${table} SET v = 'B' WHERE id = 2`);
    const records = await eventually('the primary changes, read on the standby', async () => {
      const r = await reader.read(topic);
      return r.some((x) => x.value?.after?.v === 'B') && ids(r).includes(3) ? r : undefined;
    });
    await w.connector.stop();
    await w.running;
    const state = replayByKey(records, (k) => String(k.id));
    assert.deepEqual([...state].map(([k, v]) => `${k}${String(v.v)}`).sort(), ['1a', '2B', '3c']);
  });
  test('a chunk the standby cancels (recovery conflict) is a lost connection, and the next run reads on', async () => {
    assert.ok(pair, 'the standby test ran');
    const { primary, standby } = pair;
    const name = uniqueName('xmcf');
    const table = `${name}_t`;
    const topic = `${name}.public.${table}`;
    const rows = 20_000;
    await primary.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await primary.query(`INSERT INTO ${table} SELECT g, repeat('x', 100) FROM generate_series(1, ${rows}) g`);
    await eventually('the table on the standby', async () =>
      (await standby.query(`SELECT count(*)::int AS n FROM ${table}`).catch(() => null))?.rows[0]?.n === rows
        ? true
        : undefined,
    );
    // Vacuum replayed from the primary now cancels any standby query whose snapshot needs what it removed.
    await standby.reload(['hot_standby_feedback = off', 'max_standby_streaming_delay = 0']);
    const env = {
      ...XMIN,
      ...serverEnv(standby),
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      // One slow chunk: a send of 20 records at a time keeps its snapshot open for seconds.
      PGCDC_CAPTURE_XMIN_CHUNK_ROWS: String(rows),
      PGCDC_KAFKA_MAX_IN_FLIGHT_RECORDS: '20',
    };
    const c = new Connector(
      workerConfig(name, env),
      createLogger({ connector: name, level: 'error', format: 'json' }),
    );
    let failure: unknown = null;
    const running = c.run().catch((err: unknown) => (failure = err));
    try {
      await eventually('the chunk under way', async () => ((await topicEnd(topic)) > 0 ? true : undefined));
      for (let i = 0; i < 40 && !failure; i++) {
        await primary.query(`UPDATE ${table} SET v = v || 'y' WHERE id % 10 = ${i % 10}`);
        await primary.query(`VACUUM ${table}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    } finally {
      await c.stop();
      await running;
    }
    assert.ok(failure, 'the standby cancelled the chunk');
    assert.equal(failureKind(failure), 'connection', String(failure));
    assert.match(
      String((failure as Error).message),
      /^the standby cancelled an xmin chunk.*hot_standby_feedback = on/,
    );

    await standby.reload(['hot_standby_feedback = on', 'max_standby_streaming_delay = 30s']);
    const again = startConnector(name, env);
    await streaming(again);
    await eventually('every row after the restart', async () =>
      new Set(ids(await reader.read(topic))).size === rows ? true : undefined,
    );
    await again.connector.stop();
    await again.running;
  });
});
