// Exactly-once delivery: the records of whole PostgreSQL transactions and the offset record that
// covers them go to Kafka in one Kafka transaction, so a read_committed consumer sees both or
// neither, and a restart (which reads the offset with read_committed) resumes exactly after what
// was committed. Nothing committed is ever produced again, and nothing aborted is ever seen.
//
// The Sink contract holds with "durable" meaning "committed": a marker placed with mark() is a
// boundary, a point where the pipeline's position is consistent (a PostgreSQL commit, a position
// inside a large transaction, the end of a snapshot batch). A Kafka transaction ends only at a
// boundary: records pushed after the last boundary belong to the same Kafka transaction as the
// ones before it, so the sink seals a transaction only when nothing was pushed since the last
// boundary (the pipeline is at that boundary right now). At commit time the markers of the
// transaction run first (the position moves over it in memory), the commit hook turns that
// position into the offset record, the record goes into the transaction, and only once Kafka has
// committed does the hook's `committed` run (the stored offset moves, the LSN is confirmed to
// PostgreSQL). If the commit fails, the run fails and restarts from the committed offset: the
// in-memory position that moved early is thrown away with it.
//
// Transactions are committed one after the other (the next one starts when the previous one is
// committed), and sealed when the previous commit is done and the open one has reached its size
// bound or its age bound (group commit: under load they grow, when idle they are committed after
// `lingerMs`). A boundary comes at least every few thousand changes, so a transaction stays far
// below transaction.timeout.ms.
import { CompressionTypes, Partitioners, type Producer, type Transaction, type Kafka } from 'kafkajs';
import { UserError, causeChain } from '../errors.ts';
import { Batcher, type OutRecord } from './batcher.ts';

/** Largest Kafka send; Kafka refuses record batches above message.max.bytes (1 MiB by default). */
const MAX_BATCH_BYTES = 900 * 1024;

/** Kafka's transaction.timeout.ms for pgcdc's producer: the broker aborts a transaction open longer. */
export const TRANSACTION_TIMEOUT_MS = 60_000;

/** What goes into a transaction right before its commit, and what to do once it is committed. */
export interface CommitHook {
  (): { record: OutRecord; committed: () => void } | null;
}

/** A sink whose durability unit is a Kafka transaction (see checkpoint.ts for how it is used). */
export interface TransactionalSink {
  readonly transactional: true;
  /** Called at every commit, after the transaction's markers ran: the offset record to add. */
  onCommit(hook: CommitHook): void;
  /** Commits what is pushed so far if the pipeline is at a boundary; else at the next boundary. */
  requestCommit(): Promise<void>;
}

/** The stable transactional.id of a connector: a second worker on it fences the first. */
export function transactionalId(connector: string, slot: string): string {
  return `pgcdc-${connector}-${slot}`;
}

/**
 * A transactional producer: idempotent, one request in flight (kafkajs requires both), acks=all
 * on every send. kafkajs initialises the producer id (and with it fences an older producer of the
 * same id) on the first transaction; ExactlyOnceSink.fence() does that at start.
 */
export function transactionalProducer(kafka: Kafka, id: string): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    transactionalId: id,
    transactionTimeout: TRANSACTION_TIMEOUT_MS,
    // Right after a commit the coordinator is still writing its markers, and the next
    // transaction's first AddPartitionsToTxn is refused with CONCURRENT_TRANSACTIONS for a few
    // milliseconds: retried after the client's 300 ms backoff, that wait was most of the latency.
    // The same unlimited retries as the idempotent producer, from 10 ms up to 10 s.
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 10, maxRetryTime: 10_000 },
  });
}

/** Another producer with our transactional.id took over, or the broker expired our transaction. */
export class ProducerFenced extends UserError {
  override name = 'ProducerFenced';
}

const FENCED_TYPES = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'TRANSACTIONAL_ID_NOT_FOUND']);

/** True when `err` (or what it wraps) is Kafka saying our producer epoch is no longer current. */
export function isFenced(err: unknown): boolean {
  for (
    let e = err as { type?: unknown; code?: unknown; cause?: unknown; originalError?: unknown }, i = 0;
    e && i < 8;
    i++
  ) {
    if (typeof e.type === 'string' && FENCED_TYPES.has(e.type)) return true;
    // PRODUCER_FENCED (90) is newer than kafkajs's error table.
    if (e.code === 90) return true;
    e = (e.cause ?? e.originalError) as typeof e;
  }
  return false;
}

export function fencedError(err: unknown, id: string): ProducerFenced {
  return new ProducerFenced(
    `Kafka fenced this worker's transactional producer (transactional.id ${id}): another worker started on the same connector and slot, or a transaction stayed open longer than ${TRANSACTION_TIMEOUT_MS / 1000} s; this worker stops (${causeChain(err)})`,
    { cause: err },
  );
}

export interface ExactlyOnceOptions {
  compression?: 'none' | 'gzip';
  maxInFlightBytes: number;
  maxInFlightRecords?: number;
  /** Seal at the first boundary once the open transaction holds this many bytes (or records). */
  maxTransactionBytes: number;
  maxTransactionRecords: number;
  /** Seal at the first boundary once the open transaction is this old (ms). */
  lingerMs: number;
  /** The transactional.id, for messages. */
  id: string;
  /** Called once with the first failure; the sink accepts nothing after it. */
  onError: (err: Error) => void;
}

interface OpenTransaction {
  batcher: Batcher;
  /** Begun on the first send (or at commit for a transaction that holds only the offset). */
  kafka: Promise<Transaction> | null;
  markers: Array<() => void>;
  records: number;
  bytes: number;
  /** Records pushed since the last marker: while any, this transaction cannot end here. */
  tail: number;
  openedAt: number;
}

export class ExactlyOnceSink implements TransactionalSink {
  readonly transactional = true;
  #producer: Producer;
  #opts: ExactlyOnceOptions;
  #compression: CompressionTypes;
  #hook: CommitHook = () => null;
  #open: OpenTransaction | null = null;
  /** Sealed transactions not yet committed, oldest first. */
  #sealed: OpenTransaction[] = [];
  /** Settles when the last sealed transaction is committed; rejects after a failure. */
  #committed: Promise<void> = Promise.resolve();
  #commitWanted = false;
  #failed: Error | null = null;
  #timer: NodeJS.Timeout;
  committedTransactions = 0;
  abortedTransactions = 0;

  constructor(producer: Producer, opts: ExactlyOnceOptions) {
    this.#producer = producer;
    this.#opts = opts;
    this.#compression = opts.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
    // An idle pipeline at a boundary is committed by age, not only when the next change comes.
    this.#timer = setInterval(() => this.#maybeSeal(), Math.max(5, Math.floor(opts.lingerMs / 4)));
    this.#timer.unref();
  }

  get failure(): Error | null {
    return this.#failed;
  }

  get inFlightBytes(): number {
    let n = this.#open?.batcher.inFlightBytes ?? 0;
    for (const t of this.#sealed) n += t.batcher.inFlightBytes;
    return n;
  }

  onCommit(hook: CommitHook): void {
    this.#hook = hook;
  }

  /**
   * Initialises the producer id: Kafka fences any older producer of this transactional.id, aborts
   * its open transaction and finishes one it was committing. Call before reading the offset, so the
   * read sees every transaction of the previous worker decided.
   */
  async fence(): Promise<void> {
    try {
      const tx = await this.#producer.transaction();
      await tx.abort();
    } catch (err) {
      throw isFenced(err) ? fencedError(err, this.#opts.id) : err;
    }
  }

  async push(record: OutRecord): Promise<void> {
    if (this.#failed) throw this.#failed;
    const tx = (this.#open ??= this.#newTransaction());
    const size = (record.key?.length ?? 0) + (record.value?.length ?? 0) + record.topic.length + 16;
    tx.records++;
    tx.bytes += size;
    tx.tail++;
    await tx.batcher.push(record);
  }

  mark(onDurable: () => void): void {
    if (this.#failed) return;
    const tx = (this.#open ??= this.#newTransaction());
    tx.markers.push(onDurable);
    tx.tail = 0;
    this.#maybeSeal();
  }

  async requestCommit(): Promise<void> {
    if (this.#failed) return;
    this.#commitWanted = true;
    this.#open ??= this.#newTransaction();
    this.#maybeSeal();
    await this.#committed;
  }

  /**
   * Commits everything up to the last boundary and waits for it. Records pushed after the last
   * boundary cannot be committed (no position covers them), so their transaction is aborted: a
   * read_committed consumer never sees it and the next start produces it again.
   */
  async flush(): Promise<void> {
    if (this.#failed) throw this.#failed;
    const tx = this.#open;
    if (tx && tx.tail > 0) {
      this.#open = null;
      await this.#committed;
      await this.#abort(tx);
    } else if (tx) {
      this.#commitWanted = true;
      this.#maybeSeal();
    }
    await this.#committed;
    if (this.#failed) throw this.#failed;
  }

  /** Stops the age timer (the producer is disconnected by its owner). */
  close(): void {
    clearInterval(this.#timer);
  }

  #newTransaction(): OpenTransaction {
    const tx: OpenTransaction = {
      kafka: null,
      markers: [],
      records: 0,
      bytes: 0,
      tail: 0,
      openedAt: Date.now(),
      batcher: new Batcher(
        async (batch) => {
          const kafka = await this.#begin(tx);
          await kafka.sendBatch({
            acks: -1,
            compression: this.#compression,
            topicMessages: [...batch].map(([topic, records]) => ({
              topic,
              messages: records.map((r) => ({ key: r.key, value: r.value, headers: r.headers })),
            })),
          });
        },
        {
          maxInFlightBytes: this.#opts.maxInFlightBytes,
          maxInFlightRecords: this.#opts.maxInFlightRecords,
          maxBatchBytes: MAX_BATCH_BYTES,
          onError: (e) => this.#fail(e),
        },
      ),
    };
    return tx;
  }

  /**
   * The Kafka transaction of the open `tx`, begun once every sealed transaction is committed
   * (kafkajs allows one transaction at a time per producer).
   */
  #begin(tx: OpenTransaction): Promise<Transaction> {
    tx.kafka ??= this.#committed.then(() => {
      if (this.#failed) throw this.#failed;
      return this.#producer.transaction();
    });
    return tx.kafka;
  }

  #maybeSeal(): void {
    const tx = this.#open;
    if (!tx || tx.tail > 0 || this.#failed) return;
    const full = tx.bytes >= this.#opts.maxTransactionBytes || tx.records >= this.#opts.maxTransactionRecords;
    const old = Date.now() - tx.openedAt >= this.#opts.lingerMs;
    // While a commit is under way the open transaction keeps growing (group commit), unless full.
    if (!full && this.#sealed.length > 0) return;
    if (!full && !old && !this.#commitWanted) return;
    if (tx.records === 0 && tx.markers.length === 0 && !this.#commitWanted) return;
    this.#commitWanted = false;
    this.#open = null;
    this.#sealed.push(tx);
    const committing = this.#committed.then(() => this.#commit(tx));
    this.#committed = committing;
    committing.then(
      () => {
        this.#sealed.shift();
        this.#maybeSeal();
      },
      (err: unknown) => this.#fail(err instanceof Error ? err : new Error(String(err))),
    );
  }

  async #commit(tx: OpenTransaction): Promise<void> {
    if (this.#failed) throw this.#failed;
    // The position moves over this transaction; the hook turns it into the offset record, which
    // rides in the same send as the transaction's last records (one round trip less per commit).
    for (const m of tx.markers) m();
    const offset = this.#hook();
    if (!tx.kafka && !offset) return;
    // Every transaction sealed before this one is committed (commits are chained), so one that
    // holds only the offset may begin here.
    tx.kafka ??= this.#producer.transaction();
    if (offset) await tx.batcher.push(offset.record);
    await tx.batcher.flush();
    await (await tx.kafka).commit();
    this.committedTransactions++;
    offset?.committed();
  }

  async #abort(tx: OpenTransaction): Promise<void> {
    try {
      await tx.batcher.flush();
      if (tx.kafka) await (await tx.kafka).abort();
      this.abortedTransactions++;
    } catch (err) {
      this.#fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = isFenced(err) ? fencedError(err, this.#opts.id) : err;
    clearInterval(this.#timer);
    this.#committed.catch(() => undefined);
    this.#opts.onError(this.#failed);
  }
}
