// A standard Avro reader as a consumer: Apache Avro's Python implementation (installed by
// scripts/python-avro.sh into .cache), logical types on, decoding the raw Confluent-framed values
// of a topic with the writer schemas from the registry. Unlike the test reader (avsc without
// logical types), it fails on a value its logical type promises but cannot hold.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { stackSettings } from './pipeline.ts';

const root = path.join(import.meta.dirname, '..', '..');
let python: string | undefined;

/** The venv's python with `avro` installed (first call installs it). */
export function pythonAvro(): string {
  python ??= execFileSync('bash', [path.join(root, 'scripts', 'python-avro.sh')], {
    encoding: 'utf8',
  }).trim();
  return python;
}

export type PythonDecoded = { ok: true; value: Record<string, unknown> } | { ok: false; error: string };

export interface RawRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

/** Every record of `topic` (from the beginning to its current end), undecoded, in offset order. */
export async function rawRecords(topic: string): Promise<RawRecord[]> {
  const kafka = new Kafka({ brokers: stackSettings().brokers.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<number, bigint>();
  try {
    for (const o of await admin.fetchTopicOffsets(topic)) {
      if (BigInt(o.high) > BigInt(o.low)) ends.set(o.partition, BigInt(o.high));
    }
  } finally {
    await admin.disconnect();
  }
  const out: Array<{ p: number; o: bigint; r: RawRecord }> = [];
  if (ends.size === 0) return [];
  const consumer = kafka.consumer({ groupId: `pgcdc-test-py-${randomUUID()}` });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            const headers: Record<string, string> = {};
            for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
            out.push({
              p: partition,
              o: BigInt(message.offset),
              r: { key: message.key, value: message.value, headers },
            });
            const end = ends.get(partition);
            if (end !== undefined && BigInt(message.offset) + 1n >= end) ends.delete(partition);
            if (ends.size === 0) resolve();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  out.sort((a, b) => a.p - b.p || (a.o < b.o ? -1 : a.o > b.o ? 1 : 0));
  return out.map((x) => x.r);
}

/** Decodes every value record of `topic` with Python's avro; one result per record, in order. */
export async function decodeTopicWithPython(topic: string): Promise<PythonDecoded[]> {
  const registry = stackSettings().registryUrl;
  const schemas = new Map<number, string>();
  const items: Array<{ schema: string; data: string }> = [];
  for (const { value: v } of await rawRecords(topic)) {
    if (!v) continue; // a tombstone
    if (v[0] !== 0 || v.length < 5)
      throw new Error(`${topic}: a value without the Confluent wire-format header`);
    const id = v.readUInt32BE(1);
    let schema = schemas.get(id);
    if (schema === undefined) {
      const res = await fetch(`${registry}/schemas/ids/${id}`);
      if (!res.ok) throw new Error(`schema ${id}: HTTP ${res.status}`);
      schema = ((await res.json()) as { schema: string }).schema;
      schemas.set(id, schema);
    }
    items.push({ schema, data: v.subarray(5).toString('hex') });
  }
  const file = path.join(os.tmpdir(), `pgcdc-py-${randomUUID()}.json`);
  fs.writeFileSync(file, JSON.stringify(items));
  try {
    const out = execFileSync(pythonAvro(), [path.join(import.meta.dirname, 'avro_decode.py'), file], {
      encoding: 'utf8',
      maxBuffer: 512 * 1024 * 1024,
    });
    return out
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as PythonDecoded);
  } finally {
    fs.rmSync(file, { force: true });
  }
}
