// A read_committed consumer written for the exactly-once tests, sharing no code with pgcdc: plain
// kafkajs (isolation level read_committed, said explicitly) and the registry decoder. It reads a
// topic from its beginning to the end the brokers report and judges the end on every fetched
// batch, so batches that hold only transaction markers or aborted records end the read too.
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { RegistryDecoder, stackSettings, type DecodedRecord, type Envelope } from './pipeline.ts';

export class CommittedReader {
  readonly kafka: Kafka;
  readonly registry: RegistryDecoder;

  constructor(brokers: string = stackSettings().brokers) {
    this.kafka = new Kafka({
      brokers: brokers.split(','),
      clientId: 'pgcdc-test-committed-reader',
      logLevel: logLevel.NOTHING,
    });
    this.registry = new RegistryDecoder(stackSettings().registryUrl);
  }

  /**
   * Every committed record of `topic`, decoded, in partition then offset order. Waits while a
   * transaction is open on the topic (read_committed stops before it), up to `timeoutMs`.
   */
  async read(topic: string, timeoutMs = 120_000): Promise<DecodedRecord[]> {
    const raw = await this.readRaw(topic, timeoutMs);
    const out: DecodedRecord[] = [];
    for (const r of raw) {
      out.push({
        partition: r.partition,
        offset: r.offset,
        key: r.key ? ((await this.registry.decode(r.key)) as Record<string, unknown>) : null,
        value: r.value ? ((await this.registry.decode(r.value)) as Envelope) : null,
      });
    }
    return out;
  }

  async readRaw(
    topic: string,
    timeoutMs = 120_000,
  ): Promise<Array<{ partition: number; offset: string; key: Buffer | null; value: Buffer | null }>> {
    const admin = this.kafka.admin();
    await admin.connect();
    let ends: Map<number, bigint>;
    try {
      if (!(await admin.listTopics()).includes(topic)) return [];
      const offsets = await admin.fetchTopicOffsets(topic);
      ends = new Map(
        offsets.filter((o) => BigInt(o.high) > BigInt(o.low)).map((o) => [o.partition, BigInt(o.high)]),
      );
    } finally {
      await admin.disconnect();
    }
    const raw: Array<{ partition: number; offset: string; key: Buffer | null; value: Buffer | null }> = [];
    if (ends.size === 0) return raw;
    const consumer = this.kafka.consumer({ groupId: `pgcdc-test-${randomUUID()}`, readUncommitted: false });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      const done = Promise.withResolvers<void>();
      const timer = setTimeout(
        () =>
          done.reject(new Error(`reading ${topic} read_committed did not reach its end in ${timeoutMs} ms`)),
        timeoutMs,
      );
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        const { partition, lastOffset } = e.payload as { partition: number; lastOffset: string };
        const end = ends.get(partition);
        if (end !== undefined && BigInt(lastOffset) + 1n >= end) ends.delete(partition);
        if (ends.size === 0) done.resolve();
      });
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) {
              raw.push({ partition: batch.partition, offset: m.offset, key: m.key, value: m.value });
            }
          },
        })
        .catch((e: unknown) => done.reject(e as Error));
      try {
        await done.promise;
      } finally {
        clearTimeout(timer);
      }
    } finally {
      await consumer.disconnect();
    }
    raw.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
    return raw;
  }
}

export interface Verdict {
  records: number;
  duplicates: string[];
  lost: string[];
  disorder: string[];
}

/**
 * Checks a table's topic (rows keyed by id with an int column v that every update adds 1 to): per key, the first record is a read or a create with v = 0, every update
 * adds exactly 1, nothing follows a delete; a record seen twice is a duplicate (the same change:
 * key, op and LSN; for reads, key and op), a step over a value is a loss.
 */
export function verdict(records: DecodedRecord[], table: Map<string, number>): Verdict {
  const out: Verdict = { records: records.length, duplicates: [], lost: [], disorder: [] };
  const seen = new Set<string>();
  const last = new Map<string, number | 'deleted'>();
  for (const r of records) {
    if (!r.key || !r.value) continue; // tombstones
    const key = String(r.key.id);
    const { op, after, source } = r.value;
    const id = op === 'r' ? `${key}|r` : `${key}|${op}|${String(source.lsn)}`;
    if (seen.has(id)) {
      out.duplicates.push(id);
      continue;
    }
    seen.add(id);
    const prev = last.get(key);
    const v = after ? Number(after.v) : null;
    if (op === 'r' || op === 'c') {
      if (prev !== undefined) out.disorder.push(`${key}: ${op} after ${String(prev)}`);
      last.set(key, v!);
    } else if (op === 'u') {
      if (prev === undefined || prev === 'deleted') out.disorder.push(`${key}: update after ${String(prev)}`);
      else if (v !== prev + 1) (v! > prev + 1 ? out.lost : out.disorder).push(`${key}: v ${prev} -> ${v}`);
      last.set(key, v!);
    } else if (op === 'd') {
      last.set(key, 'deleted');
    }
  }
  for (const [key, v] of table) {
    const got = last.get(key);
    if (got !== v) out.lost.push(`${key}: table v=${v}, topic ${String(got)}`);
  }
  for (const [key, v] of last)
    if (v !== 'deleted' && !table.has(key)) out.disorder.push(`${key}: not in table`);
  return out;
}
