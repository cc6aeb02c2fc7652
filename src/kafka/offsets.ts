// The connector's position lives in a compacted Kafka topic, keyed by connector and slot, so it
// travels with the data it describes and survives the worker's pod.
import { randomUUID } from 'node:crypto';
import type { Kafka, Producer } from 'kafkajs';
import type { Topics } from './topics.ts';

export interface TableProgress {
  rows: number;
  done: boolean;
}

export interface SnapshotState {
  /** 'running' until every selected table has been read and acknowledged. */
  state: 'running' | 'done';
  /** The slot's consistent point that the snapshot was read at (X/Y). */
  consistentPoint: string;
  tables: Record<string, TableProgress>;
}

export interface OffsetRecord {
  /** Everything committed before this LSN (X/Y) is durable in Kafka; streaming resumes here. */
  lsn: string;
  /** Within the transaction whose commit LSN is txCommitLsn, the first txSeq changes are durable too. */
  txCommitLsn?: string;
  txSeq?: number;
  snapshot?: SnapshotState;
  /** Wall-clock time the offset was written (ms). */
  ts_ms: number;
}

export interface OffsetKey {
  connector: string;
  slot: string;
}

export const offsetKey = (k: OffsetKey): string => JSON.stringify({ connector: k.connector, slot: k.slot });

export class OffsetStore {
  readonly topic: string;
  #kafka: Kafka;
  #key: string;

  constructor(kafka: Kafka, topic: string, key: OffsetKey) {
    this.#kafka = kafka;
    this.topic = topic;
    this.#key = offsetKey(key);
  }

  async ensureTopic(topics: Topics): Promise<void> {
    await topics.ensure(this.topic, [
      { name: 'cleanup.policy', value: 'compact' },
      { name: 'min.compaction.lag.ms', value: '60000' },
    ]);
  }

  /** The latest offset for our key: reads the topic from the beginning to its current end. */
  async read(): Promise<OffsetRecord | null> {
    const admin = this.#kafka.admin();
    await admin.connect();
    let remaining: Map<number, bigint>;
    try {
      if (!(await admin.listTopics()).includes(this.topic)) return null;
      const partitions = await admin.fetchTopicOffsets(this.topic);
      // Partitions with nothing left to read (empty, or everything already removed) are skipped.
      remaining = new Map(
        partitions.filter((p) => BigInt(p.high) > BigInt(p.low)).map((p) => [p.partition, BigInt(p.high)]),
      );
    } finally {
      await admin.disconnect();
    }
    if (remaining.size === 0) return null;

    let latest: OffsetRecord | null = null;
    // A throwaway group that never commits: it only reads, and Kafka forgets it once it is empty.
    const consumer = this.#kafka.consumer({ groupId: `pgcdc-offsets-reader-${randomUUID()}` });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: this.topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              for (const m of batch.messages) {
                if (m.key?.toString() === this.#key) {
                  latest = m.value ? (JSON.parse(m.value.toString()) as OffsetRecord) : null;
                }
              }
              const end = remaining.get(batch.partition);
              if (end !== undefined && BigInt(batch.highWatermark) >= end) {
                const last = batch.messages.at(-1);
                if (!last || BigInt(last.offset) + 1n >= end) remaining.delete(batch.partition);
              }
              if (remaining.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }
    return latest;
  }

  /** The record to push through the batcher; it is durable when the batcher says so. */
  record(offset: OffsetRecord): { topic: string; key: Buffer; value: Buffer } {
    return { topic: this.topic, key: Buffer.from(this.#key), value: Buffer.from(JSON.stringify(offset)) };
  }

  /** Forgets the position (a tombstone for our key): the next start snapshots again. */
  async reset(producer: Producer): Promise<void> {
    await producer.send({
      topic: this.topic,
      acks: -1,
      messages: [{ key: Buffer.from(this.#key), value: null }],
    });
  }
}
