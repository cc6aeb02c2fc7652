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
  /**
   * The key (text values) of the last acknowledged row: a resumed load reads after it (the chunked
   * load, and the exported-snapshot load with exactly-once delivery).
   */
  lastKey?: Array<string | null>;
}

export interface SnapshotState {
  /** 'running' until every selected table has been read and acknowledged. */
  state: 'running' | 'done';
  /**
   * chunked: read in key chunks while streaming (src/pipeline/chunked-load.ts), the slot confirmed
   * as usual meanwhile; absent: inside the slot's exported snapshot (the slot waits for it).
   */
  method?: 'chunked';
  /** An on-demand re-read (POST /connectors/<name>/snapshot): its rows are marked 'incremental'. */
  incremental?: boolean;
  /** On-demand: an extra row filter (SQL) per table. */
  filters?: Record<string, string>;
  /** The slot's consistent point that the snapshot was read at (X/Y); 0/0 before the slot exists. */
  consistentPoint: string;
  /**
   * Rows acknowledged per table while the snapshot runs. Left out once it is done, so the
   * streaming offset stays small and of constant size whatever the number of tables.
   */
  tables?: Record<string, TableProgress>;
}

/** capture.method xmin: one table's cursor (docs/xmin.md). Absent for a table: read every row. */
export interface XminTableCursor {
  /** xid8 (decimal): the poll reads the rows whose xmin is at or after it; absent: every row. */
  from?: string;
  /** While a poll of the table is under way: the cursor it leaves when it is done (xid8). */
  next?: string;
  /** While a poll is under way: the key (text values) of its last acknowledged row; it resumes after it. */
  after?: Array<string | null>;
}

export interface OffsetRecord {
  /** Everything committed before this LSN (X/Y) is durable in Kafka; streaming resumes here. */
  lsn: string;
  /** Within the transaction whose commit LSN is txCommitLsn, the first txSeq changes are durable too. */
  txCommitLsn?: string;
  txSeq?: number;
  snapshot?: SnapshotState;
  /** capture.method xmin: the cursor per table (schema.table); lsn stays 0/0. */
  xmin?: Record<string, XminTableCursor>;
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
      // kafkajs answers [] when its metadata lacks the topic's partitions for a moment (a topic
      // created a moment ago, a metadata refresh that failed); that is not "nothing stored", which
      // would send the connector into a new snapshot or a refusal: ask again, then fail retriably.
      let partitions = await admin.fetchTopicOffsets(this.topic);
      for (let attempt = 1; partitions.length === 0 && attempt < 5; attempt++) {
        await sleep(200 * attempt);
        partitions = await admin.fetchTopicOffsets(this.topic);
      }
      if (partitions.length === 0)
        throw new ConnectionLost(
          `the offsets topic ${this.topic} exists but Kafka reported no partitions for it`,
        );
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

    const groupId = `${OFFSET_READER_GROUP_PREFIX}${randomUUID()}`;
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const attempt = await this.#readThroughGroup(groupId, remaining, deadline, deadlineMs);
      if ('latest' in attempt) return attempt.latest;
      const crash = attempt.noCoordinator;
      // kafkajs gives up on a group whose coordinator no broker names, and hides why: a broker
      // still electing one (passes in seconds) or GROUP_AUTHORIZATION_FAILED (does not). Try again
      // until the deadline; past it, with the brokers answering, it is the missing ACL.
      if (Date.now() + 1_000 >= deadline) {
        throw (await this.#brokersAnswer())
          ? new UserError(
              `reading the stored offset from topic ${this.topic} (consumer group ${groupId}): no broker named a group coordinator within ${deadlineMs / 1000} s although the brokers answer (${causeChain(crash)}); the principal most likely lacks READ on the group (Kafka answers GROUP_AUTHORIZATION_FAILED, kafkajs does not pass it on): ${this.#grant()}`,
              { cause: crash },
            )
          : this.#readError(crash, groupId);
      }
      await sleep(1_000);
    }
  }

  /** One consumer run over the topic: the record, or the coordinator failure kafkajs crashed with. */
  async #readThroughGroup(
    groupId: string,
    ends: Map<number, bigint>,
    deadline: number,
    /** The whole read's deadline, as configured: what the error names. */
    totalMs: number,
  ): Promise<{ latest: OffsetRecord | null } | { noCoordinator: Error }> {
    const remaining = new Map(ends);
    let latest: OffsetRecord | null = null;
    const consumer = this.#kafka.consumer({ groupId });
    const outcome = Promise.withResolvers<Error | null>();
    let lastCrash: unknown = null;
    const removeCrashListener = consumer.on(consumer.events.CRASH, (event) => {
      const error = event.payload.error;
      lastCrash = error;
      // kafkajs restarts the consumer itself after a retriable crash; the deadline bounds that.
      if (event.payload.restart) return;
      if (error.name === 'KafkaJSGroupCoordinatorNotFound') outcome.resolve(error);
      else outcome.reject(this.#readError(error, groupId));
    });
    // The end is judged on every fetched batch, also one that held only transaction markers or
    // aborted records (exactly-once mode): kafkajs hands those to no eachBatch, and a batch's last
    // data record is not the partition's last offset when a commit marker follows it.
    const removeBatchListener = consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
      const { partition, lastOffset } = event.payload as { partition: number; lastOffset: string };
      const end = remaining.get(partition);
      if (end !== undefined && BigInt(lastOffset) + 1n >= end) remaining.delete(partition);
      if (remaining.size === 0) outcome.resolve(null);
    });
    const timer = setTimeout(
      () => outcome.reject(this.#deadlineError(groupId, lastCrash, totalMs)),
      Math.max(0, deadline - Date.now()),
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
          },
        });
      })();
      reading.catch((err: unknown) => outcome.reject(this.#readError(err, groupId)));
      const noCoordinator = await outcome.promise;
      return noCoordinator ? { noCoordinator } : { latest };
    } finally {
      clearTimeout(timer);
      removeCrashListener();
      removeBatchListener();
      // A consumer whose broker is gone can take long to leave its group: never wait on it for more.
      await Promise.race([consumer.disconnect().catch(() => undefined), sleep(5_000)]);
    }
  }

  async #brokersAnswer(): Promise<boolean> {
    const admin = this.#kafka.admin({ retry: { retries: 0 } });
    try {
      await admin.connect();
      return (await admin.describeCluster()).brokers.length > 0;
    } catch {
      return false;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
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
      if ((err as Error).name === 'KafkaJSGroupCoordinatorNotFound') {
        throw new UserError(
          `no broker named a group coordinator for consumer group ${OFFSET_READER_GROUP_PREFIX}check although the brokers answer; the principal most likely lacks READ on the group: ${this.#grant()}`,
          { cause: err },
        );
      }
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
