// The connector's position lives in a compacted Kafka topic, keyed by connector and slot, so it
// travels with the data it describes and survives the worker's pod.
import { randomUUID } from 'node:crypto';
import type { Kafka, Producer } from 'kafkajs';
import { ConnectionLost, UserError, causeChain, failureKind } from '../errors.ts';
import type { Topics } from './topics.ts';

/** How long reading the stored offset (group join included) may take before it fails with one line. */
export const OFFSET_READ_DEADLINE_MS = 60_000;
/** The throwaway consumer groups that read the offsets topic; the principal needs READ on this prefix. */
export const OFFSET_READER_GROUP_PREFIX = 'pgcdc-offsets-reader-';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

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

  /**
   * Compacted, and min.insync.replicas = min(2, replication factor): an offset acknowledged with
   * acks=all is then on two brokers whenever the cluster has them, whatever the broker default.
   */
  async ensureTopic(topics: Topics): Promise<void> {
    const rf = await topics.replicationFactor();
    await topics.ensure(this.topic, [
      { name: 'cleanup.policy', value: 'compact' },
      { name: 'min.compaction.lag.ms', value: '60000' },
      { name: 'min.insync.replicas', value: String(Math.min(2, rf)) },
    ]);
  }

  /**
   * The latest offset for our key: reads the topic from the beginning to its current end.
   *
   * kafkajs reads only through a consumer group, so this joins a throwaway one (prefix
   * OFFSET_READER_GROUP_PREFIX, never committed): the principal needs READ on the topic and READ
   * on that group prefix. A failed join is not a rejection in kafkajs but a `crash` event (and,
   * when kafkajs thinks it retriable, a silent restart), so the crash events are listened to and
   * the whole read has a deadline: it fails with one line naming topic, group and fix instead of
   * waiting forever.
   */
  async read(opts: { deadlineMs?: number } = {}): Promise<OffsetRecord | null> {
    const deadlineMs = opts.deadlineMs ?? OFFSET_READ_DEADLINE_MS;
    const admin = this.#kafka.admin();
    let remaining: Map<number, bigint>;
    try {
      await admin.connect();
      if (!(await admin.listTopics()).includes(this.topic)) return null;
      const partitions = await admin.fetchTopicOffsets(this.topic);
      // Partitions with nothing left to read (empty, or everything already removed) are skipped.
      remaining = new Map(
        partitions.filter((p) => BigInt(p.high) > BigInt(p.low)).map((p) => [p.partition, BigInt(p.high)]),
      );
    } catch (err) {
      throw this.#readError(err, null);
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    if (remaining.size === 0) return null;

    let latest: OffsetRecord | null = null;
    const groupId = `${OFFSET_READER_GROUP_PREFIX}${randomUUID()}`;
    const consumer = this.#kafka.consumer({ groupId });
    const outcome = Promise.withResolvers<void>();
    let lastCrash: unknown = null;
    const removeCrashListener = consumer.on(consumer.events.CRASH, (event) => {
      lastCrash = event.payload.error;
      // kafkajs restarts the consumer itself after a retriable crash; the deadline bounds that.
      if (!event.payload.restart) outcome.reject(this.#readError(event.payload.error, groupId));
    });
    const timer = setTimeout(
      () => outcome.reject(this.#deadlineError(groupId, lastCrash, deadlineMs)),
      deadlineMs,
    );
    try {
      const reading = (async () => {
        await consumer.connect();
        await consumer.subscribe({ topic: this.topic, fromBeginning: true });
        await consumer.run({
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
            if (remaining.size === 0) outcome.resolve();
          },
        });
      })();
      reading.catch((err: unknown) => outcome.reject(this.#readError(err, groupId)));
      await outcome.promise;
    } finally {
      clearTimeout(timer);
      removeCrashListener();
      // A consumer whose broker is gone can take long to leave its group: never wait on it for more.
      await Promise.race([consumer.disconnect().catch(() => undefined), sleep(5_000)]);
    }
    return latest;
  }

  /**
   * What `pgcdc check` verifies: the read pgcdc run makes at start, with the same group prefix.
   * Before the topic exists (the first run creates it and reads nothing), only the group
   * coordinator's answer for the prefix is checked (it needs DESCRIBE, which READ implies).
   */
  async checkRead(deadlineMs: number): Promise<{ topicExists: boolean; stored: OffsetRecord | null }> {
    const admin = this.#kafka.admin();
    let topicExists: boolean;
    try {
      await admin.connect();
      topicExists = (await admin.listTopics()).includes(this.topic);
      if (!topicExists) await admin.fetchOffsets({ groupId: `${OFFSET_READER_GROUP_PREFIX}check` });
    } catch (err) {
      throw this.#readError(err, topicExists! === false ? `${OFFSET_READER_GROUP_PREFIX}check` : null);
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    return { topicExists, stored: topicExists ? await this.read({ deadlineMs }) : null };
  }

  /** What to grant, in one phrase (docs/security.md "Kafka ACLs"). */
  #grant(): string {
    return `grant READ and DESCRIBE on topic ${this.topic} and READ on consumer groups with prefix ${OFFSET_READER_GROUP_PREFIX} (docs/security.md "Kafka ACLs")`;
  }

  #readError(err: unknown, groupId: string | null): Error {
    const where = `reading the stored offset from topic ${this.topic}${groupId ? ` (consumer group ${groupId})` : ''}`;
    const kind = failureKind(err);
    if (kind === 'user') {
      return new UserError(`${where} was refused: ${causeChain(err)}; ${this.#grant()}`, { cause: err });
    }
    if (kind === 'connection')
      return new ConnectionLost(`${where} failed: ${causeChain(err)}`, { cause: err });
    return new Error(`${where} failed: ${causeChain(err)}`, { cause: err });
  }

  #deadlineError(groupId: string, lastCrash: unknown, deadlineMs: number): Error {
    if (lastCrash && failureKind(lastCrash) === 'user') return this.#readError(lastCrash, groupId);
    const why = lastCrash ? `last error: ${causeChain(lastCrash)}` : 'kafkajs reported no error';
    // Retried by the worker: a coordinator that is still loading passes; a missing ACL keeps
    // failing with this line, which says what to grant.
    return new ConnectionLost(
      `reading the stored offset from topic ${this.topic} (consumer group ${groupId}) did not finish within ${deadlineMs / 1000} s (${why}); check that the brokers and the group coordinator are reachable, and ${this.#grant()}`,
      lastCrash instanceof Error ? { cause: lastCrash } : undefined,
    );
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
