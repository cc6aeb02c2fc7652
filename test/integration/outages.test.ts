// Outages longer than the clients' own retries, ridden out in-process by the Worker (the code path
// `pgcdc run` uses): Kafka down for 70 s (a throwaway broker, SIGKILLed and started again: the
// shared stack's broker is not touched) and the schema registry unreachable at start (a TCP
// proxy in front of the shared registry, closed and then opened). Each time the connector reports
// RECONNECTING (status, readiness, one warn line per attempt), never FAILED, and once the
// dependency is back every row written meanwhile reaches Kafka. The time from "dependency back"
// to "a transaction acknowledged by Kafka" is printed (PGCDC_RECOVERY lines), not asserted.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import type { Kafka } from 'kafkajs';
import { UserError } from '../../src/errors.ts';
import { Registry } from '../../src/registry/registry.ts';
import { createLogger, type Logger } from '../../src/worker/log.ts';
import { Worker, type WorkerState } from '../../src/worker/worker.ts';
import { stackSuite } from '../support/connectors.ts';
import { freePort } from '../support/cli.ts';
import {
  eventually,
  pgClient,
  stackSettings,
  TopicReader,
  uniqueName,
  workerConfig,
} from '../support/pipeline.ts';
import { ThrowawayKafka } from '../support/throwaway-kafka.ts';

/** How long the broker stays down; PGCDC_TEST_OUTAGE_MS measures a longer outage (the note's figures). */
const OUTAGE_MS = Number(process.env.PGCDC_TEST_OUTAGE_MS ?? 70_000);

type Line = Record<string, unknown> & { level: string; message: string; time: string };

function capturingLogger(): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const out = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Line);
      cb();
    },
  });
  return { log: createLogger({ connector: 'outage', level: 'info', format: 'json', out }), lines };
}

/** Writes one single-row transaction every 100 ms until stopped; the ids written. */
function writer(table: string, firstId: number): { stop(): Promise<number[]> } {
  let on = true;
  const ids: number[] = [];
  const done = (async () => {
    const db = await pgClient();
    try {
      for (let id = firstId; on; id++) {
        await db.query(`INSERT INTO ${table} VALUES ($1, 'w')`, [id]);
        ids.push(id);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await db.end();
    }
  })();
  return {
    stop: async () => {
      on = false;
      await done;
      return ids;
    },
  };
}

/** Every state the worker passes through, sampled every 100 ms. */
function stateLog(worker: Worker): { seen: Set<WorkerState>; stop(): void } {
  const seen = new Set<WorkerState>();
  const t = setInterval(() => seen.add(worker.state), 100);
  return { seen, stop: () => clearInterval(t) };
}

/** The time of the first transaction Kafka acknowledges after `since` (records flowing again). */
function firstDurableAfter(worker: Worker): (since: number) => Promise<number> {
  const acks: number[] = [];
  worker.addObserver({ onDurable: () => acks.push(Date.now()) });
  return (since) =>
    eventually(
      'a transaction acknowledged after the recovery',
      async () => acks.find((t) => t >= since),
      120_000,
    );
}

function ids(records: Awaited<ReturnType<TopicReader['read']>>): number[] {
  return records.map((r) => Number((r.key as { id?: number } | null)?.id));
}

/** No two kafkajs lines with the same text within their 10 s window (the rate limit holds). */
function assertNoFlood(lines: Line[]): void {
  const last = new Map<string, number>();
  for (const l of lines.filter((x) => x.component === 'kafkajs')) {
    const t = Date.parse(l.time);
    const prev = last.get(l.message);
    assert.ok(
      prev === undefined || t - prev >= 9_900,
      `kafkajs line repeated within its window: ${l.message}`,
    );
    last.set(l.message, t);
  }
}

describe('outages longer than the clients retry', () => {
  const { db, reader } = stackSuite();
  let k: ThrowawayKafka;

  before(async () => {
    k = await ThrowawayKafka.start();
  });
  after(async () => {
    await k?.destroy();
  });

  test(`Kafka down ${OUTAGE_MS / 1000} s: RECONNECTING, not FAILED; every row written meanwhile arrives once Kafka is back`, async () => {
    const name = uniqueName('kdown');
    const table = `${name}_t`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'seed' FROM generate_series(1, 200) g`);
    const { log, lines } = capturingLogger();
    const config = workerConfig(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_KAFKA_BROKERS: k.brokers,
    });
    const worker = new Worker(config, log, { failureGraceMs: null });
    const durableAfter = firstDurableAfter(worker);
    const outcome = worker.run();
    const states = stateLog(worker);
    const topic = `${name}.public.${table}`;
    const local = new TopicReader();
    (local as { kafka: Kafka }).kafka = k.client();
    let w: ReturnType<typeof writer> | null = null;
    try {
      await eventually(
        'the snapshot in Kafka',
        async () => ((await local.read(topic)).length >= 200 ? true : undefined),
        120_000,
      );
      w = writer(table, 1001);
      await eventually('streaming', async () => (worker.state === 'STREAMING' ? true : undefined));

      await k.kill();
      const downAt = Date.now();
      // Past kafkajs's retry budget: the produce fails for good, the worker must reconnect, not fail.
      await eventually(
        'the worker to report RECONNECTING',
        async () => (worker.state === 'RECONNECTING' || worker.failure ? true : undefined),
        180_000,
      );
      assert.equal(worker.failure, null, `the connector failed: ${worker.failure?.message}`);
      const status = worker.status() as {
        connector: { state: string };
        reconnect?: { state: string; lastError: string; attempts: number };
      };
      assert.equal(status.connector.state, 'RESTARTING');
      assert.equal(status.reconnect?.state, 'reconnecting');
      assert.match(
        status.reconnect?.lastError ?? '',
        /Kafka 127\.0\.0\.1:\d+ unreachable or lost|ECONNREFUSED|Connection error/,
      );
      const ready = worker.readiness();
      assert.equal(ready.ready, false);
      assert.match(ready.reason ?? '', /reconnecting \(attempt \d+/);
      const remaining = OUTAGE_MS - (Date.now() - downAt);
      if (remaining > 0) await new Promise((r) => setTimeout(r, remaining));
      assert.equal(worker.failure, null);

      await k.resume();
      const backAt = Date.now();
      const flowingAt = await durableAfter(backAt);
      const written = await w.stop();
      w = null;
      const reconnected = lines.find((l) => l.message.startsWith('reconnected'));
      console.log(
        `PGCDC_RECOVERY kafka: down ${((backAt - downAt) / 1000).toFixed(1)} s, records flowing ${((flowingAt - backAt) / 1000).toFixed(1)} s after the broker answered` +
          ` (reconnected line ${reconnected ? ((Date.parse(reconnected.time) - backAt) / 1000).toFixed(1) : '?'} s), ${worker.reconnect?.attempts ?? '?'} attempts`,
      );

      const expected = [...Array.from({ length: 200 }, (_, i) => i + 1), ...written];
      const got = await eventually(
        'every row in Kafka',
        async () => {
          const have = new Set(ids(await local.read(topic)));
          return expected.every((id) => have.has(id)) ? have : undefined;
        },
        120_000,
      );
      assert.equal(expected.filter((id) => !got.has(id)).length, 0);
      const all = ids(await local.read(topic));
      console.log(
        `PGCDC_RECOVERY kafka: ${expected.length} rows, ${all.length} records, ${all.length - new Set(all).size} duplicates`,
      );

      assert.ok(!states.seen.has('FAILED'), `states seen: ${[...states.seen].join(',')}`);
      assert.ok(states.seen.has('RECONNECTING'));
      const attempts = lines.filter((l) => l.message.startsWith('connection lost; restarting'));
      assert.ok(attempts.length >= 1);
      // One line per attempt, numbered: no more lines than attempts.
      assert.deepEqual(
        attempts.map((l) => l.attempt),
        attempts.map((_, i) => i + 1),
      );
      assert.ok(attempts.every((l) => l.stack === undefined && typeof l.reason === 'string'));
      assertNoFlood(lines);
      assert.ok(
        lines.some((l) => l.component === 'kafkajs' && l.level === 'warn'),
        'kafkajs lines reach the log',
      );
    } finally {
      states.stop();
      await w?.stop();
      await worker.stop();
      const { failure } = await outcome;
      assert.equal(failure, null);
    }
  });

  test('registry unreachable at start: RECONNECTING (not a configuration error); the snapshot arrives once it is back', async () => {
    const name = uniqueName('rdown');
    const table = `${name}_t`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'seed' FROM generate_series(1, 100) g`);
    const upstream = new URL(stackSettings().registryUrl);
    const port = await freePort();
    // Nothing listens on the port yet: connections are refused, as for a registry that is down.
    const proxy = net.createServer((client) => {
      const up = net.connect(Number(upstream.port), upstream.hostname);
      client.pipe(up).pipe(client);
      up.on('error', () => client.destroy());
      client.on('error', () => up.destroy());
    });
    const { log, lines } = capturingLogger();
    const config = workerConfig(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_REGISTRY_URL: `http://127.0.0.1:${port}${upstream.pathname}`,
    });
    const worker = new Worker(config, log, { failureGraceMs: null });
    const durableAfter = firstDurableAfter(worker);
    const states = stateLog(worker);
    const outcome = worker.run();
    const topic = `${name}.public.${table}`;
    let w: ReturnType<typeof writer> | null = null;
    try {
      await eventually(
        'the worker to report RECONNECTING',
        async () => (worker.state === 'RECONNECTING' || worker.failure ? true : undefined),
        120_000,
      );
      assert.equal(worker.failure, null, `the connector failed: ${worker.failure?.message}`);
      const status = worker.status() as { reconnect?: { lastError: string } };
      assert.match(
        status.reconnect?.lastError ?? '',
        new RegExp(`schema registry http://127\\.0\\.0\\.1:${port}.* is unreachable \\(ECONNREFUSED\\)`),
      );
      w = writer(table, 1001);
      // Down across several attempts.
      await eventually(
        'three attempts',
        async () => ((worker.reconnect?.attempts ?? 0) >= 3 ? true : undefined),
        120_000,
      );
      assert.equal(worker.failure, null);

      await new Promise<void>((resolve) => proxy.listen(port, '127.0.0.1', resolve));
      const backAt = Date.now();
      const flowingAt = await durableAfter(backAt);
      console.log(
        `PGCDC_RECOVERY registry: records flowing ${((flowingAt - backAt) / 1000).toFixed(1)} s after the registry was reachable, ${worker.reconnect?.attempts ?? '?'} attempts`,
      );
      await eventually('streaming', async () => (worker.state === 'STREAMING' ? true : undefined));
      const written = await w.stop();
      w = null;
      const expected = [...Array.from({ length: 100 }, (_, i) => i + 1), ...written];
      await eventually(
        'every row in Kafka',
        async () => {
          const have = new Set(ids(await reader.read(topic)));
          return expected.every((id) => have.has(id)) ? true : undefined;
        },
        120_000,
      );
      assert.ok(!states.seen.has('FAILED'), `states seen: ${[...states.seen].join(',')}`);
      assert.ok(
        lines.some(
          (l) =>
            l.message.startsWith('connection lost; restarting') && /schema registry/.test(String(l.reason)),
        ),
      );
    } finally {
      states.stop();
      await w?.stop();
      await worker.stop();
      await outcome;
      await new Promise((r) => proxy.close(r));
    }
  });

  test('a registry URL with no registry API behind it (HTTP 404) is the user’s: one line naming registry.url', async () => {
    const upstream = new URL(stackSettings().registryUrl);
    const registry = new Registry({ url: `${upstream.origin}/not-the-api` });
    await assert.rejects(registry.register(uniqueName('s'), '"string"'), (err: Error) => {
      assert.ok(err instanceof UserError, `${err.name}: ${err.message}`);
      assert.match(err.message, /HTTP 404 .*check registry\.url/);
      return true;
    });
  });
});
