// Faults on the replication connection, against the stack's PostgreSQL through a pass-through TCP
// proxy (test/support/tcp-proxy.ts): a connection that goes silent is noticed by the watchdog and
// the worker restarts from its stored offset without losing a row; bytes that are not valid
// replication messages fail the connector (FAILED, one error naming the LSN and the message) and
// never escape as an uncaught exception from the socket callback.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from '../../src/worker/worker.ts';
import { copyData, startTcpProxy, type ProxiedConnection, type TcpProxy } from '../support/tcp-proxy.ts';
import { Writer, encodeXLogData } from '../support/pgoutput-fixtures.ts';
import {
  TopicReader,
  dropTestSlots,
  eventually,
  pgClient,
  stackSettings,
  uniqueName,
  workerConfig,
} from '../support/pipeline.ts';
import { capturingLogger } from '../support/log-capture.ts';

describe('replication connection faults', () => {
  let proxy: TcpProxy;
  const reader = new TopicReader();

  before(async () => {
    const s = stackSettings();
    proxy = await startTcpProxy({ host: s.pgHost, port: s.pgPort });
  });
  after(async () => {
    await proxy?.close();
    await dropTestSlots();
  });

  /** A worker whose PostgreSQL connections all go through the proxy. */
  async function startWorker(name: string, table: string, extra: Record<string, string> = {}) {
    const { log, lines } = capturingLogger('replication-faults');
    const config = workerConfig(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_POSTGRES_HOST: proxy.host,
      PGCDC_POSTGRES_PORT: String(proxy.port),
      PGCDC_LOG_LEVEL: 'info',
      ...extra,
    });
    const worker = new Worker(config, log, { failureGraceMs: null });
    const outcome = worker.run();
    const topic = `${name}.public.${table}`;
    const ids = async (): Promise<Set<number>> =>
      new Set((await reader.read(topic)).map((r) => Number((r.value?.after as { id?: number } | null)?.id)));
    return { worker, outcome, lines, ids };
  }

  /** The replication connection the worker has open now (through the proxy). */
  async function replicationConnection(before: number): Promise<ProxiedConnection> {
    return eventually('the replication connection through the proxy', async () =>
      proxy.connections.slice(before).find((c) => c.replication && !c.closed && !c.frozen),
    );
  }

  test('a silent replication connection is detected; the worker restarts from its offset and no row is lost', async () => {
    const name = uniqueName('replsilent');
    const table = `${name}_t`;
    const db = await pgClient();
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'snap' FROM generate_series(1, 10) g`);
    const first = proxy.connections.length;
    const { worker, outcome, lines, ids } = await startWorker(name, table, {
      PGCDC_POSTGRES_REPLICATION_TIMEOUT_MS: '2000',
    });
    try {
      await eventually('snapshot', async () => ((await ids()).size >= 10 ? true : undefined));
      await eventually('streaming', async () => (worker.state === 'STREAMING' ? true : undefined));
      const repl = await replicationConnection(first);
      await db.query(`INSERT INTO ${table} VALUES (11, 'stream')`);
      await eventually('a streamed change', async () => ((await ids()).has(11) ? true : undefined));

      // Idle for longer than the timeout, with a server that volunteers no keepalive (the stack's
      // PostgreSQL sends some whenever other tests write WAL): the watchdog's keepalive request
      // keeps a healthy connection from being taken for a silent one.
      repl.keepalivesOnlyOnRequest();
      await new Promise((r) => setTimeout(r, 5000));
      assert.doesNotMatch(lines(), /connection lost/, 'no restart while the connection is healthy');
      assert.equal(repl.closed, false);

      repl.freeze();
      await db.query(`INSERT INTO ${table} SELECT g, 'while silent' FROM generate_series(12, 30) g`);
      await eventually('the worker noticed the silent connection', async () =>
        /connection lost; restarting the connector/.test(lines()) ? true : undefined,
      );
      assert.match(
        lines(),
        /replication connection silent for \d+\.\d s \(postgres\.replicationTimeoutMs = 2000\)/,
      );
      assert.match(lines(), /ended its walsender \(pid \d+\)/);
      const seen = await eventually(
        'the changes made while the connection was silent',
        async () => {
          const got = await ids();
          return got.size >= 30 ? got : undefined;
        },
        90_000,
      );
      for (let i = 1; i <= 30; i++) assert.ok(seen.has(i), `row ${i} arrived`);
      await eventually('streaming again', async () => (worker.state === 'STREAMING' ? true : undefined));
      const again = await replicationConnection(first);
      assert.notEqual(again.id, repl.id, 'a new replication connection');
      await db.query(`INSERT INTO ${table} VALUES (31, 'after')`);
      await eventually('a change after the recovery', async () => ((await ids()).has(31) ? true : undefined));
    } finally {
      await worker.stop();
      const { failure } = await outcome;
      assert.equal(failure, null);
      await db.query(`DROP TABLE IF EXISTS ${table}`);
      await db.end();
    }
  });

  test('every PostgreSQL connection goes silent at once: the restart is not held up by closing them, no row is lost', async () => {
    const name = uniqueName('allsilent');
    const table = `${name}_t`;
    const db = await pgClient();
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'snap' FROM generate_series(1, 10) g`);
    const first = proxy.connections.length;
    const { worker, outcome, lines, ids } = await startWorker(name, table, {
      PGCDC_POSTGRES_REPLICATION_TIMEOUT_MS: '2000',
    });
    try {
      await eventually('streaming', async () => (worker.state === 'STREAMING' ? true : undefined));
      await eventually('snapshot', async () => ((await ids()).size >= 10 ? true : undefined));
      // The query connection and the replication connection: a network that drops everything.
      const open = proxy.connections.slice(first).filter((c) => !c.closed);
      assert.ok(open.some((c) => c.replication) && open.some((c) => !c.replication));
      for (const c of open) c.freeze();
      await db.query(`INSERT INTO ${table} SELECT g, 'while silent' FROM generate_series(11, 30) g`);
      await eventually('the worker noticed the silent connection', async () =>
        /connection lost; restarting the connector/.test(lines()) ? true : undefined,
      );
      const seen = await eventually(
        'the changes made while every connection was silent',
        async () => {
          const got = await ids();
          return got.size >= 30 ? got : undefined;
        },
        90_000,
      );
      for (let i = 1; i <= 30; i++) assert.ok(seen.has(i), `row ${i} arrived`);
    } finally {
      await worker.stop();
      const { failure } = await outcome;
      assert.equal(failure, null);
      await db.query(`DROP TABLE IF EXISTS ${table}`);
      await db.end();
    }
  });

  const badMessages: Array<{ what: string; frame: () => Buffer; expect: RegExp }> = [
    {
      what: 'a pgoutput message the decoder refuses (Relation with a negative column count)',
      frame: () =>
        encodeXLogData({
          walStart: 0x1a2b3c8n,
          walEnd: 0x1a2b3c8n,
          sendTimeMicros: 0n,
          data: new Writer().byte('R').u32(1).cstring('public').cstring('t').byte('d').i16(-1).build(),
        }),
      expect: /^pgoutput decode failed at 0\/1A2B3C8 \(message 'R' Relation\): negative column count \(-1\)$/,
    },
    {
      what: 'a short XLogData frame',
      frame: () => Buffer.from('w12345'),
      expect:
        /^replication stream: bad CopyData frame( after [0-9A-F]+\/[0-9A-F]+)?: XLogData truncated: 6 bytes, header needs 25$/,
    },
    {
      what: 'a short keepalive frame',
      frame: () => Buffer.from('k1234567'),
      expect:
        /^replication stream: bad CopyData frame( after [0-9A-F]+\/[0-9A-F]+)?: Primary keepalive has 8 bytes, expected 18$/,
    },
  ];

  for (const bad of badMessages) {
    test(`${bad.what} fails the connector with a typed error, not the process`, async () => {
      const name = uniqueName('replbad');
      const table = `${name}_t`;
      const db = await pgClient();
      await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
      const first = proxy.connections.length;
      const { worker, outcome, lines, ids } = await startWorker(name, table);
      try {
        await eventually('streaming', async () => (worker.state === 'STREAMING' ? true : undefined));
        // A streamed change proves the connection is in replication (copy) mode: STREAMING is set
        // before START_REPLICATION (and the version query before it) has been answered, and a frame
        // slipped in earlier is an error of the pg client, not of the stream under test.
        await db.query(`INSERT INTO ${table} VALUES (1, 'streamed')`);
        await eventually('a streamed change', async () => ((await ids()).has(1) ? true : undefined));
        const repl = await replicationConnection(first);
        repl.injectToClient(copyData(bad.frame()));
        await eventually('FAILED', async () => (worker.state === 'FAILED' ? true : undefined));
        const failure = worker.failure!;
        assert.equal(failure.name, 'DataError');
        assert.equal((failure as { retriable?: unknown }).retriable, false);
        assert.match(failure.message, bad.expect);
        assert.doesNotMatch(lines(), /connection lost/, 'bad data is not taken for a lost connection');
        const failedLines = lines()
          .split('\n')
          .filter((l) => l.includes('connector failed'));
        assert.equal(failedLines.length, 1, 'one log line');
        assert.ok(failedLines[0]!.includes(failure.message.replaceAll('"', '\\"')), failedLines[0]);
      } finally {
        await worker.stop();
        await outcome;
        await db.query(`DROP TABLE IF EXISTS ${table}`);
        await db.end();
      }
    });
  }
});
