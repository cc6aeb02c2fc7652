// The limits pgcdc is compared with, measured in the same run on the same data:
// - PostgreSQL's raw read rate: COPY (SELECT * FROM t) TO STDOUT through psql (text format, the
//   same text the snapshot reads);
// - the pg driver alone: pgcdc's own snapshot reader (readTable: cursor + FETCH, rows as text
//   arrays) without encoding or Kafka;
// - Avro encoding alone: compileRelation + envelopeValue + toBuffer (key and value, Confluent
//   framed) over the rows read as text, timed without the reading;
// - Kafka's raw write rate: the same number of records of the same average key/value size, with
//   kafkajs as pgcdc uses it (idempotent, acks=-1, ~900 KiB sendBatch, one in flight); and the
//   acknowledgement latency of a one-record send (the floor of commit → in Kafka).
import { CompressionTypes } from 'kafkajs';
import type pg from 'pg';
import type { Relation } from '../src/change/event.ts';
import { compileRelation, envelopeValue, toAvroKey, type CompiledRelation } from '../src/avro/envelope.ts';
import { relationFromCatalog } from '../src/postgres/catalog.ts';
import { connect } from '../src/postgres/connection.ts';
import { readTable } from '../src/postgres/snapshot/reader.ts';
import { snapshotEvent } from '../src/pipeline/snapshot.ts';
import { TypeCatalog } from '../src/postgres/types.ts';
import { confluentFrame } from '../src/registry/registry.ts';
import { percentile, type Metrics } from './report.ts';
import { workerConfig } from '../test/support/pipeline.ts';
import { PG_BIN, kafka, now, pgToolEnv, run, stackSettings } from './lib.ts';

const MiB = 1024 * 1024;

export async function copyBaseline(table: string, rows: number): Promise<Metrics> {
  const t0 = now();
  const r = await run(`${PG_BIN}/psql`, ['-X', '-q', '-c', `COPY (SELECT * FROM ${table}) TO STDOUT`], {
    env: pgToolEnv(),
  });
  const seconds = (now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`psql COPY failed: ${r.stderr}`);
  return {
    copySeconds: seconds,
    copyRowsPerSec: rows / seconds,
    copyMiBPerSec: r.bytes / MiB / seconds,
    copyBytes: r.bytes,
  };
}

export interface EncodeResult {
  metrics: Metrics;
  avgKeyBytes: number;
  avgValueBytes: number;
}

/** A connection with pgcdc's own settings (text values, session options, as the worker reads),
 * the table's relation, and its compiled Avro types. */
export async function openBenchTable(
  table: string,
  applicationName: string,
): Promise<{ db: pg.Client; relation: Relation; compiled: CompiledRelation }> {
  const db = await connect(workerConfig('bench').postgres, { applicationName });
  try {
    const relation = await relationFromCatalog(db, { schema: 'public', table });
    const types = new TypeCatalog(db);
    await types.load(relation.columns.map((c) => c.typeOid));
    const compiled = compileRelation(relation, {
      topicPrefix: 'bench',
      typeLookup: types.lookup,
      database: stackSettings().pgDatabase,
    });
    return { db, relation, compiled };
  } catch (err) {
    await db.end();
    throw err;
  }
}

/** Reads the table with pgcdc's reader and encodes every row as pgcdc would; times both apart. */
export async function readAndEncodeBaseline(table: string, batchSize: number): Promise<EncodeResult> {
  const { db, relation, compiled } = await openBenchTable(table, 'pgcdc-bench-read');
  try {
    const nowMicros = BigInt(Date.now()) * 1000n;
    let rows = 0;
    let keyBytes = 0;
    let valueBytes = 0;
    let encodeMs = 0;
    await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const t0 = now();
    for await (const batch of readTable(db, relation, batchSize)) {
      const e0 = now();
      for (const row of batch) {
        const event = snapshotEvent(relation, row, 0n, nowMicros, rows);
        const key = toAvroKey(relation, row, compiled);
        const k = confluentFrame(1, compiled.keyType!.toBuffer(key));
        const v = confluentFrame(2, compiled.valueType.toBuffer(envelopeValue(event, compiled)));
        keyBytes += k.length;
        valueBytes += v.length;
        rows++;
      }
      encodeMs += now() - e0;
    }
    const totalMs = now() - t0;
    await db.query('COMMIT');
    const readMs = totalMs - encodeMs;
    const payload = keyBytes + valueBytes;
    return {
      metrics: {
        readRowsPerSec: rows / (readMs / 1000),
        avroRowsPerSec: rows / (encodeMs / 1000),
        avroMiBPerSec: payload / MiB / (encodeMs / 1000),
        avgRecordBytes: payload / rows,
      },
      avgKeyBytes: keyBytes / rows,
      avgValueBytes: valueBytes / rows,
    };
  } finally {
    await db.end();
  }
}

/** kafkajs write rate for `count` records of the given sizes, the way pgcdc's batcher sends. */
export async function kafkaBaseline(
  topic: string,
  count: number,
  keyBytes: number,
  valueBytes: number,
): Promise<Metrics> {
  const k = kafka('pgcdc-bench-baseline');
  const admin = k.admin();
  await admin.connect();
  const producer = k.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] });
    // Distinct keys and varied bytes (no compression is used, so content does not matter for size).
    const value = Buffer.alloc(Math.max(1, Math.round(valueBytes)), 0x61);
    const keyLen = Math.max(1, Math.round(keyBytes));
    const perBatch = Math.max(1, Math.floor((900 * 1024) / (keyLen + value.length + topic.length + 16)));
    const t0 = now();
    let sent = 0;
    while (sent < count) {
      const n = Math.min(perBatch, count - sent);
      const messages = new Array(n);
      for (let i = 0; i < n; i++) {
        const key = Buffer.alloc(keyLen);
        key.writeUIntBE((sent + i) % 2 ** 40, 0, Math.min(keyLen, 5));
        messages[i] = { key, value };
      }
      await producer.sendBatch({
        acks: -1,
        compression: CompressionTypes.None,
        topicMessages: [{ topic, messages }],
      });
      sent += n;
    }
    const seconds = (now() - t0) / 1000;
    // Acknowledgement latency of a single small record (acks=all), the floor of "commit → in Kafka".
    const lat: number[] = [];
    for (let i = 0; i < 200; i++) {
      const s = now();
      await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages: [{ key: 'k', value }] }] });
      lat.push(now() - s);
    }
    return {
      kafkaRecordsPerSec: count / seconds,
      kafkaMiBPerSec: (count * (keyLen + value.length)) / MiB / seconds,
      kafkaAckP50Ms: percentile(lat, 50),
      kafkaAckP99Ms: percentile(lat, 99),
    };
  } finally {
    await producer.disconnect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  }
}
