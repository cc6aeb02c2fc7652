// "Acknowledged" means in Kafka, on the topology users run: three brokers, RF 3,
// min.insync.replicas 2. Each fault hits each phase of the pipeline — the initial load, steady
// streaming, and a 200,000-row transaction — while pgcdc runs. Afterwards every topic is replayed
// per key by a consumer that shares no code with pgcdc's producer path (kafkajs consumer + avsc +
// the registry's REST API, test/support/pipeline.ts) and compared with the table:
//   - nothing lost: every seeded row and every committed change is in the topic;
//   - per-key order: a key's changes, duplicates removed, come in commit order;
//   - the topic replayed per key equals the table.
// Duplicates and the longest stall of the topic are printed per scenario (the note's figures).
//
// The leaders are placed so that the kafkajs retry bug this suite guards against can bite: the
// table's partition 0 is led by broker 1 and fails over to broker 2, which also leads the
// offsets topic and partition 1 — the broker that already answered the first attempt.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Kafka, logLevel } from 'kafkajs';
import type pg from 'pg';
import { Worker } from '../../src/worker/worker.ts';
import { createLogger } from '../../src/worker/log.ts';
import {
  TopicReader,
  dropTestSlots,
  eventually,
  newPgClient,
  pgClient,
  uniqueName,
  workerConfig,
  type DecodedRecord,
} from '../support/pipeline.ts';
import * as cluster from '../support/cluster.ts';

const A = 1; // leads the table's partition 0
const B = 2; // leads the offsets topic and the table's partition 1; partition 0 fails over to it
const C = 3; // leads the table's partition 2

interface Ctx {
  table: string;
  topic: string;
  offsetsTopic: string;
  slot: string;
  db: pg.Client;
}

interface Fault {
  name: string;
  /** Before pgcdc starts. */
  prepare?(ctx: Ctx): Promise<void>;
  /** In the middle of the phase. */
  inject(ctx: Ctx): Promise<void>;
  /** Once the phase's work is under way again (restart what was stopped). */
  heal?(ctx: Ctx): Promise<void>;
}

const confirmedFlush = async (ctx: Ctx): Promise<string | null> =>
  (
    await ctx.db.query<{ lsn: string | null }>(
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [ctx.slot],
    )
  ).rows[0]?.lsn ?? null;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long a fault lasts before it is healed (a stopped broker restarted): past the 4 s broker session, so leaders move. */
const HOLD_MS = 5000;

const faults: Fault[] = [
  {
    name: 'kill -9 of the broker leading the table partition',
    inject: () => cluster.killNode(A),
    heal: () => cluster.startNode(A),
  },
  {
    name: 'kill -9 of the broker leading the offsets topic',
    inject: () => cluster.killNode(B),
    heal: () => cluster.startNode(B),
  },
  {
    name: 'controlled shutdown of the table partition leader',
    inject: () => cluster.stopNode(A),
    heal: () => cluster.startNode(A),
  },
  {
    name: 'preferred-leader election',
    // Broker 2 becomes the preferred replica while broker 1 still leads; the election moves it.
    prepare: (ctx) => cluster.reassign(ctx.topic, 0, [B, A, C]),
    inject: async (ctx) => {
      await cluster.preferredLeaderElection(ctx.topic, 0);
      assert.equal(await cluster.leaderOf(ctx.topic, 0), B, 'the election moved the leader');
    },
  },
  {
    name: 'partition reassignment away from the leader',
    inject: async (ctx) => {
      await cluster.reassign(ctx.topic, 0, [C, B]);
      assert.notEqual(await cluster.leaderOf(ctx.topic, 0), A, 'the reassignment moved the leader');
    },
  },
  {
    name: 'ISR below min.insync.replicas (acks=all refused)',
    inject: async (ctx) => {
      // Raised while all three replicas are in sync (nothing refused yet), then one goes away.
      for (const t of [ctx.topic, ctx.offsetsTopic])
        await cluster.setTopicConfig(t, 'min.insync.replicas', '3');
      await cluster.killNode(C);
      // Nothing can be acknowledged now, so nothing may be confirmed to PostgreSQL.
      await sleep(3000);
      const before = await confirmedFlush(ctx);
      await sleep(9000);
      assert.equal(await confirmedFlush(ctx), before, 'no LSN confirmed while Kafka refuses every write');
    },
    heal: async (ctx) => {
      await cluster.startNode(C);
      await cluster.waitHealthy([ctx.topic, ctx.offsetsTopic]);
      for (const t of [ctx.topic, ctx.offsetsTopic])
        await cluster.setTopicConfig(t, 'min.insync.replicas', '2');
    },
  },
];

/** What the test itself committed, to prove nothing was lost: key → the v values written, in order. */
type Written = Map<number, { vs: number[]; deleted: boolean }>;

interface Outcome {
  records: number;
  duplicates: number;
  maxStallMs: number;
  restarts: number;
}

/** Polls the topic's high watermark: the longest time, from the fault on, that it stood still. */
function stallWatch(topic: string, worker: Worker) {
  const admin = new Kafka({
    clientId: 'pgcdc-stall-watch',
    brokers: cluster.brokers().split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 1000 },
  }).admin();
  const samples: Array<{ t: number; hw: bigint }> = [];
  const connectors = new Set<unknown>();
  let stop = false;
  const loop = (async () => {
    await admin.connect();
    while (!stop) {
      connectors.add(worker.connector);
      try {
        const offsets = await admin.fetchTopicOffsets(topic);
        samples.push({ t: Date.now(), hw: offsets.reduce((s, o) => s + BigInt(o.high), 0n) });
      } catch {
        // a broker is down: the next sample will do
      }
      await sleep(250);
    }
    await admin.disconnect().catch(() => undefined);
  })();
  return {
    async result(from: number): Promise<{ maxStallMs: number; restarts: number }> {
      stop = true;
      await loop;
      const final = samples.at(-1)?.hw ?? 0n;
      let last = from;
      let prev = samples.filter((s) => s.t <= from).at(-1)?.hw ?? 0n;
      let maxStallMs = 0;
      for (const s of samples.filter((x) => x.t > from)) {
        if (s.hw > prev) {
          maxStallMs = Math.max(maxStallMs, s.t - last);
          last = s.t;
          prev = s.hw;
          if (s.hw === final) break;
        }
      }
      return { maxStallMs, restarts: connectors.size - 1 };
    },
  };
}

const log = createLogger({ connector: 'durability', level: 'warn', format: 'json' });

describe('durability on three brokers', () => {
  const db = newPgClient();
  const reader = new TopicReader();
  const results: string[] = [];
  before(async () => {
    await db.connect();
    await cluster.waitHealthy([]);
  });
  after(async () => {
    await db.end();
    await dropTestSlots();
    process.stdout.write(
      `\n# durability figures (scenario | records | duplicates | longest stall | restarts)\n`,
    );
    for (const r of results) process.stdout.write(`# ${r}\n`);
  });

  async function scenario(phase: 'initial load' | 'streaming' | '200k-row transaction', fault: Fault) {
    const name = uniqueName('dur');
    const table = `${name}_t`;
    const ctx: Ctx = {
      table,
      topic: `${name}.public.${table}`,
      offsetsTopic: `${name}-offsets`,
      slot: '',
      db,
    };
    await cluster.waitHealthy([]);
    await cluster.createTopic(ctx.topic, [
      [A, B, C],
      [B, A, C],
      [C, A, B],
    ]);
    await cluster.createTopic(
      ctx.offsetsTopic,
      [[B, A, C]],
      [
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'min.insync.replicas', value: '2' },
      ],
    );
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL, note text)`);
    const seeded = phase === 'initial load' ? 100_000 : 2_000;
    await db.query(`INSERT INTO ${table} SELECT g, 0, 'seed' FROM generate_series(1, ${seeded}) g`);
    await fault.prepare?.(ctx);

    const config = workerConfig(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_TOPICS_PARTITIONS: '3',
      PGCDC_KAFKA_BROKERS: cluster.brokers(),
      PGCDC_OFFSETS_COMMIT_INTERVAL_MS: '100',
      PGCDC_SNAPSHOT_BATCH_SIZE: '2000',
    });
    ctx.slot = config.slot.name;
    const worker = new Worker(config, log, { failureGraceMs: null });
    const running = worker.run();
    const watch = stallWatch(ctx.topic, worker);
    const written: Written = new Map();
    let injectedAt = 0;
    let writing = true;
    let writer: Promise<void> = Promise.resolve();

    try {
      if (phase === 'initial load') {
        await eventually('the initial load to be under way', async () =>
          worker.connector.stats.recordsProduced >= 20_000 ? true : undefined,
        );
        assert.equal(worker.connector.snapshot.state, 'running', 'the fault hits the initial load');
        injectedAt = Date.now();
        await fault.inject(ctx);
        await sleep(HOLD_MS);
        await fault.heal?.(ctx);
        await eventually(
          'streaming after the load',
          async () => (worker.connector.state === 'STREAMING' ? true : undefined),
          180_000,
        );
      } else if (phase === 'streaming') {
        await eventually('streaming', async () =>
          worker.connector.state === 'STREAMING' ? true : undefined,
        );
        let v = 0;
        let nextId = seeded + 1;
        let txs = 0;
        writer = (async () => {
          const w = await pgClient();
          try {
            while (writing) {
              const id = nextId++;
              const updated = 1 + ((id * 7919) % seeded);
              const insV = ++v;
              const updV = ++v;
              await w.query('BEGIN');
              await w.query(`INSERT INTO ${table} VALUES ($1, $2, 'new')`, [id, insV]);
              await w.query(`UPDATE ${table} SET v = $2 WHERE id = $1`, [updated, updV]);
              const del = id % 5 === 0 ? id - 3 : null;
              if (del !== null) await w.query(`DELETE FROM ${table} WHERE id = $1`, [del]);
              await w.query('COMMIT');
              const at = (k: number) => written.get(k) ?? written.set(k, { vs: [], deleted: false }).get(k)!;
              at(id).vs.push(insV);
              if (!at(updated).deleted) at(updated).vs.push(updV);
              if (del !== null) at(del).deleted = true;
              txs++;
            }
          } finally {
            await w.end();
          }
        })();
        await eventually('the write load to run', async () => (txs >= 100 ? true : undefined));
        injectedAt = Date.now();
        await fault.inject(ctx);
        await sleep(HOLD_MS);
        await fault.heal?.(ctx);
        await sleep(3000);
        writing = false;
        await writer;
      } else {
        await eventually('streaming', async () =>
          worker.connector.state === 'STREAMING' ? true : undefined,
        );
        const before = worker.connector.stats.changes;
        await db.query(
          `INSERT INTO ${table} SELECT g, g, 'big' FROM generate_series(${seeded + 1}, ${seeded + 200_000}) g`,
        );
        await eventually('the transaction to be half-way into Kafka', async () =>
          worker.connector.stats.changes - before >= 30_000 ? true : undefined,
        );
        assert.ok(worker.connector.stats.changes - before < 200_000, 'the fault hits the transaction');
        injectedAt = Date.now();
        await fault.inject(ctx);
        await sleep(HOLD_MS);
        await fault.heal?.(ctx);
      }

      // The same table, read back from Kafka alone.
      const { rows } = await db.query<{ id: number; v: number }>(`SELECT id, v FROM ${table}`);
      const expected = new Map(rows.map((r) => [r.id, r.v]));
      let records: DecodedRecord[] = [];
      await eventually(
        'the topic replayed per key to equal the table',
        async () => {
          records = await reader.read(ctx.topic);
          const state = replay(records);
          if (state.size !== expected.size) return undefined;
          for (const [id, v] of expected) if (state.get(id) !== v) return undefined;
          return true;
        },
        180_000,
      );
      const { maxStallMs, restarts } = await watch.result(injectedAt);
      const outcome = check(records, seeded, phase, written);
      outcome.maxStallMs = maxStallMs;
      outcome.restarts = restarts;
      results.push(
        `${phase} × ${fault.name} | ${outcome.records} | ${outcome.duplicates} | ${maxStallMs} ms | ${restarts}`,
      );
    } finally {
      writing = false;
      await writer.catch(() => undefined);
      await watch.result(injectedAt || Date.now()).catch(() => undefined);
      await worker.stop();
      await running;
      await cluster.waitHealthy([]);
      await db.query(`DROP TABLE IF EXISTS ${table}`);
      await cluster
        .withAdmin((a) => a.deleteTopics({ topics: [ctx.topic, ctx.offsetsTopic] }))
        .catch(() => undefined);
    }
  }

  for (const phase of ['initial load', 'streaming', '200k-row transaction'] as const) {
    for (const fault of faults) {
      test(`${phase}: ${fault.name} — nothing lost, per-key order kept`, { timeout: 600_000 }, () =>
        scenario(phase, fault),
      );
    }
  }
});

/** Last value per key (a delete or tombstone removes it). */
function replay(records: DecodedRecord[]): Map<number, number> {
  const state = new Map<number, number>();
  for (const r of records) {
    if (!r.key) continue;
    const id = Number(r.key.id);
    if (!r.value || r.value.op === 'd') state.delete(id);
    else if (r.value.after) state.set(id, Number(r.value.after.v));
  }
  return state;
}

/** Nothing lost, per-key order, duplicates counted. */
function check(records: DecodedRecord[], seeded: number, phase: string, written: Written): Outcome {
  const perKey = new Map<number, Array<{ op: string; lsn: string; v: number | null }>>();
  let duplicates = 0;
  const seen = new Set<string>();
  for (const r of records) {
    if (!r.key || !r.value) continue; // tombstones carry nothing to check
    const id = Number(r.key.id);
    const identity = `${id}|${r.value.op}|${String(r.value.source.lsn)}`;
    if (seen.has(identity)) {
      duplicates++;
      continue;
    }
    seen.add(identity);
    const after = r.value.after;
    const list = perKey.get(id) ?? perKey.set(id, []).get(id)!;
    list.push({ op: r.value.op, lsn: String(r.value.source.lsn), v: after ? Number(after.v) : null });
  }
  // Every seeded row was read (op r) or, for the phases that start after the load, was read too.
  for (let id = 1; id <= seeded; id++) {
    const changes = perKey.get(id);
    assert.ok(
      changes?.some((c) => c.op === 'r'),
      `seeded row ${id} is in the topic (${phase})`,
    );
  }
  if (phase === '200k-row transaction') {
    for (let id = seeded + 1; id <= seeded + 200_000; id++) {
      assert.ok(
        perKey.get(id)?.some((c) => c.op === 'c' && c.v === id),
        `row ${id} of the transaction is in the topic`,
      );
    }
  }
  for (const [id, w] of written) {
    const vs = (perKey.get(id) ?? []).filter((c) => c.v !== null).map((c) => c.v!);
    for (const v of w.vs) assert.ok(vs.includes(v), `change v=${v} of key ${id} is in the topic`);
    if (w.deleted)
      assert.ok(
        perKey.get(id)?.some((c) => c.op === 'd'),
        `the delete of key ${id} is in the topic`,
      );
  }
  // Per-key order: the values a key took, in topic order, only grow (the writer's v is monotonic).
  for (const [id, changes] of perKey) {
    const vs = changes.filter((c) => c.v !== null).map((c) => c.v!);
    for (let i = 1; i < vs.length; i++) {
      assert.ok(vs[i]! >= vs[i - 1]!, `key ${id}: changes out of order (${vs.join(', ')})`);
    }
  }
  return { records: records.length, duplicates, maxStallMs: 0, restarts: 0 };
}
