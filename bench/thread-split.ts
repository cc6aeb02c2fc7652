// The ceiling of splitting the initial load across two threads, measured before building it:
// a `worker_threads` thread reads the benchmark table (pgcdc's readTable), converts and encodes
// every row (compileRelation + envelopeValue + pgcdc's FrameWriter) and hands packed
// ~900 KiB batches to the main thread, which only sends them with kafkajs (patched, idempotent,
// acks=-1, one request in flight). The same steps on one thread are the comparison. Neither has
// pgcdc's pipeline (events, batcher bookkeeping, offsets, metrics): both figures are upper bounds.
//   eval "$(./dev stack env)"; node bench/thread-split.ts [--rows N] [--repeat K] [--queue Q]
// --queue: packed batches the thread may hand over before the main thread has sent them.
// PGCDC_SPLIT_FETCH=N: rows per FETCH (10,000 by default, as snapshot.batchSize).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { CompressionTypes, type Message } from 'kafkajs';
import { envelopeValue, toAvroKey } from '../src/avro/envelope.ts';
import { readTable } from '../src/postgres/snapshot/reader.ts';
import { FrameWriter } from '../src/registry/registry.ts';
import { snapshotEvent } from '../src/pipeline/snapshot.ts';
import { openBenchTable } from './baselines.ts';
import { createTable, fillTable, kafka, now, pgClient } from './lib.ts';

const BATCH_BYTES = 900 * 1024;
/** Rows per FETCH: pgcdc's snapshot.batchSize default, or PGCDC_SPLIT_FETCH. */
const FETCH = Number(process.env.PGCDC_SPLIT_FETCH ?? 10_000);

interface Packed {
  /** Keys and values back to back. */
  bytes: ArrayBuffer;
  /** Per record: key length, value length. */
  lengths: Int32Array;
}

/** Reads and encodes the table; hands each ~900 KiB of records to `emit` (awaited). */
async function readAndEncode(table: string, emit: (p: Packed) => Promise<void>): Promise<number> {
  const { db, relation, compiled } = await openBenchTable(table, 'pgcdc-bench-split');
  try {
    const micros = BigInt(Date.now()) * 1000n;
    const frames = new FrameWriter(); // as pgcdc's encoder frames its records
    let rows = 0;
    let buf = Buffer.allocUnsafe(2 * BATCH_BYTES);
    let used = 0;
    let lengths: number[] = [];
    const flush = async () => {
      const bytes = new ArrayBuffer(used);
      new Uint8Array(bytes).set(buf.subarray(0, used));
      const packed = { bytes, lengths: Int32Array.from(lengths) };
      used = 0;
      lengths = [];
      await emit(packed);
    };
    await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    for await (const batch of readTable(db, relation, FETCH)) {
      for (const row of batch) {
        const event = snapshotEvent(relation, row, 0n, micros, rows);
        const k = frames.frame(1, compiled.keyType!, toAvroKey(relation, row, compiled));
        const v = frames.frame(2, compiled.valueType, envelopeValue(event, compiled));
        if (used + k.length + v.length > buf.length)
          buf = Buffer.concat([buf.subarray(0, used)], 2 * (used + k.length + v.length));
        used += k.copy(buf, used);
        used += v.copy(buf, used);
        lengths.push(k.length, v.length);
        rows++;
        if (used >= BATCH_BYTES) await flush();
      }
    }
    if (used > 0) await flush();
    await db.query('COMMIT');
    return rows;
  } finally {
    await db.end();
  }
}

/** The machine's CPU time so far (all cores), busy and total, from /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

function messages(p: Packed): Message[] {
  const out = new Array<Message>(p.lengths.length / 2);
  let at = 0;
  for (let i = 0; i < out.length; i++) {
    const kl = p.lengths[2 * i]!;
    const vl = p.lengths[2 * i + 1]!;
    out[i] = { key: Buffer.from(p.bytes, at, kl), value: Buffer.from(p.bytes, at + kl, vl) };
    at += kl + vl;
  }
  return out;
}

if (!isMainThread) {
  // The reading thread: packs and transfers; waits for credit when `queue` batches are unsent.
  const { table, queue } = workerData as { table: string; queue: number };
  let credit = queue;
  let creditWaitMs = 0;
  let wake: (() => void) | null = null;
  parentPort!.on('message', () => {
    credit++;
    wake?.();
  });
  const rows = await readAndEncode(table, async (p) => {
    const w0 = now();
    while (credit === 0) await new Promise<void>((r) => (wake = r));
    creditWaitMs += now() - w0;
    wake = null;
    credit--;
    parentPort!.postMessage(p, [p.bytes]);
  });
  const cpu = process.threadCpuUsage();
  parentPort!.postMessage({ done: rows, cpuMicros: cpu.user + cpu.system, creditWaitMs });
  parentPort!.close();
} else {
  const { values } = parseArgs({
    options: { rows: { type: 'string' }, repeat: { type: 'string' }, queue: { type: 'string' } },
  });
  const n = Number(values.rows ?? 300_000);
  const repeat = Number(values.repeat ?? 3);
  const queue = Number(values.queue ?? 4);
  const table = `bench_split_${process.pid}`;
  const db = await pgClient();
  await createTable(db, table);
  await fillTable(db, table, 1, n);
  await db.query(`VACUUM ANALYZE ${table}`);

  const k = kafka('pgcdc-bench-split');
  const admin = k.admin();
  await admin.connect();
  const producer = k.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  const send = (topic: string, p: Packed) =>
    producer.sendBatch({
      acks: -1,
      compression: CompressionTypes.None,
      topicMessages: [{ topic, messages: messages(p) }],
    });

  async function oneThread(topic: string): Promise<number> {
    let inFlight: Promise<unknown> = Promise.resolve();
    const rows = await readAndEncode(table, async (p) => {
      await inFlight; // one send in flight, as pgcdc's batcher; the next batch is encoded meanwhile
      inFlight = send(topic, p);
    });
    await inFlight;
    return rows;
  }

  /** CPU of the reading thread in the last two-thread run (µs). */
  let threadCpu = 0;
  /** How long the reading thread waited for the main thread to take its batches (ms). */
  let threadWaitMs = 0;
  async function twoThreads(topic: string): Promise<number> {
    const worker = new Worker(new URL(import.meta.url), { workerData: { table, queue } });
    const waiting: Packed[] = [];
    let rows = -1;
    let wake: (() => void) | null = null;
    const failed = new Promise<never>((_, reject) => worker.once('error', reject));
    worker.on('message', (m: Packed | { done: number; cpuMicros: number; creditWaitMs: number }) => {
      if ('done' in m) {
        rows = m.done;
        threadCpu = m.cpuMicros;
        threadWaitMs = m.creditWaitMs;
      } else waiting.push(m);
      wake?.();
    });
    const sender = (async () => {
      while (true) {
        const p = waiting.shift();
        if (p) {
          await send(topic, p);
          worker.postMessage(1);
        } else if (rows >= 0) return rows;
        else await new Promise<void>((r) => (wake = r));
      }
    })();
    const r = await Promise.race([sender, failed]);
    await worker.terminate();
    return r;
  }

  const results: Record<
    string,
    Array<{
      rowsPerSec: number;
      cpuUsPerRow: number;
      mainUsPerRow: number;
      threadUsPerRow: number;
      seconds: number;
    }>
  > = {
    'one thread': [],
    'two threads': [],
  };
  const topics: string[] = [];
  for (let rep = 0; rep < repeat; rep++) {
    // Alternating, so both see the machine's speed of the moment.
    for (const [name, f] of [
      ['one thread', oneThread],
      ['two threads', twoThreads],
    ] as const) {
      const topic = `bench_split_${Date.now()}`;
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] });
      // KRaft may answer CreateTopics before every broker knows the topic: wait until a send works.
      for (let i = 0; ; i++) {
        try {
          await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages: [] }] });
          break;
        } catch (err) {
          if (i === 50) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const c0 = process.cpuUsage();
      const m0 = process.threadCpuUsage();
      const s0 = machineTicks();
      const t0 = now();
      const rows = await f(topic);
      const seconds = (now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      const m = process.threadCpuUsage(m0);
      const s1 = machineTicks();
      const machineBusy = `${Math.round((100 * (s1.busy - s0.busy)) / (s1.total - s0.total))} %`;
      // Every send was acknowledged (acks=-1): the topic holds exactly one record per row.
      const inKafka = (await admin.fetchTopicOffsets(topic)).reduce((a, o) => a + Number(o.high), 0);
      if (rows !== n || inKafka !== n)
        throw new Error(`${name}: ${rows} rows read and ${inKafka} records in Kafka, of ${n}`);
      const r = {
        rowsPerSec: Math.round(rows / seconds),
        cpuUsPerRow: Number(((c.user + c.system) / rows).toFixed(2)),
        mainUsPerRow: Number(((m.user + m.system) / rows).toFixed(2)),
        threadUsPerRow: name === 'two threads' ? Number((threadCpu / rows).toFixed(2)) : 0,
        seconds,
      };
      results[name]!.push(r);
      const busy = (us: number) => `${Math.round((us * rows) / 1e4 / seconds)} %`;
      console.log(
        `${rep + 1} ${name.padEnd(12)} ${r.rowsPerSec} rows/s; CPU per row: process ${r.cpuUsPerRow} µs, main thread ${r.mainUsPerRow} µs (${busy(r.mainUsPerRow)} busy)` +
          (r.threadUsPerRow
            ? `, reading thread ${r.threadUsPerRow} µs (${busy(r.threadUsPerRow)} busy, ${Math.round(threadWaitMs / 10 / seconds)} % waiting for the main thread)`
            : '') +
          `; machine ${machineBusy} busy`,
      );
      topics.push(topic); // deleted at the end: the producer refreshes the metadata of every topic it sent to
    }
  }
  for (const [name, rs] of Object.entries(results)) {
    const rates = rs.map((r) => r.rowsPerSec).sort((a, b) => a - b);
    const cpu = rs.map((r) => r.cpuUsPerRow).sort((a, b) => a - b);
    console.log(
      `${name.padEnd(12)} median ${rates[rates.length >> 1]} rows/s (${rates[0]}–${rates.at(-1)}), CPU ${cpu[cpu.length >> 1]} µs per row`,
    );
  }
  await producer.disconnect();
  await admin.deleteTopics({ topics }).catch(() => undefined);
  await admin.disconnect();
  await db.query(`DROP TABLE ${table}`);
  await db.end();
}
