// Accepted is not durable. Records handed to push() are accepted; a marker placed with mark()
// becomes durable only when Kafka has acknowledged every record pushed before it. Checkpoints
// (offset records, LSN confirmations) hang off those markers, nothing else.
//
// One send is in flight at a time, so batches are acknowledged in the order they were pushed
// and per-key order holds without relying on producer retries keeping order. While a batch is
// in flight the next one fills up, so throughput comes from batch size, not concurrency.
// Bytes accepted but not yet acknowledged are bounded: push() waits when the bound is reached,
// which pauses whoever reads from PostgreSQL (backpressure instead of buffering).

export interface OutRecord {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, string>;
}

export type SendBatch = (batch: Map<string, OutRecord[]>) => Promise<void>;

export interface BatcherOptions {
  maxInFlightBytes: number;
  /** Bound on records accepted and not yet acknowledged (whichever bound is hit first applies). */
  maxInFlightRecords?: number;
  /** Upper bound of one send; Kafka refuses record batches above message.max.bytes (1 MiB by default). */
  maxBatchBytes: number;
  /** Called once with the first send failure; the batcher accepts nothing after it. */
  onError: (err: Error) => void;
}

interface Batch {
  records: Map<string, OutRecord[]>;
  bytes: number;
  count: number;
  markers: Array<() => void>;
}

const newBatch = (): Batch => ({ records: new Map(), bytes: 0, count: 0, markers: [] });

export class Batcher {
  #send: SendBatch;
  #opts: BatcherOptions;
  #filling: Batch = newBatch();
  /** Batches waiting behind the one in flight (each at most maxBatchBytes). */
  #queued: Batch[] = [];
  #inFlight: Batch | null = null;
  #bytes = 0;
  #records = 0;
  #failed: Error | null = null;
  #waiters: Array<() => void> = [];
  #idleWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  acknowledgedRecords = 0;

  constructor(send: SendBatch, opts: BatcherOptions) {
    this.#send = send;
    this.#opts = opts;
  }

  /** Bytes accepted and not yet acknowledged by Kafka. */
  get inFlightBytes(): number {
    return this.#bytes;
  }

  get failure(): Error | null {
    return this.#failed;
  }

  /** Accepts a record; resolves once there is room for it under maxInFlightBytes. */
  async push(record: OutRecord): Promise<void> {
    const maxRecords = this.#opts.maxInFlightRecords ?? Infinity;
    while ((this.#bytes >= this.#opts.maxInFlightBytes || this.#records >= maxRecords) && !this.#failed) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#failed) throw this.#failed;
    const size = (record.key?.length ?? 0) + (record.value?.length ?? 0) + record.topic.length + 16;
    if (this.#filling.bytes > 0 && this.#filling.bytes + size > this.#opts.maxBatchBytes) this.#seal();
    let list = this.#filling.records.get(record.topic);
    if (!list) this.#filling.records.set(record.topic, (list = []));
    list.push(record);
    this.#filling.bytes += size;
    this.#filling.count++;
    this.#bytes += size;
    this.#records++;
    this.#pump();
  }

  /**
   * Runs `onDurable` once every record pushed so far is acknowledged. After a send failure it
   * never runs: records pushed before it may be lost, so nothing may be checkpointed past them,
   * even when nothing is pending any more (the failed batch was dropped from the queue).
   */
  mark(onDurable: () => void): void {
    if (this.#failed) return;
    if (this.#filling.count === 0 && this.#queued.length === 0 && this.#inFlight === null) {
      onDurable();
      return;
    }
    if (this.#filling.count === 0) {
      // Nothing new since the last sealed batch: the marker rides on that one.
      const last = this.#queued.at(-1) ?? this.#inFlight;
      last!.markers.push(onDurable);
      return;
    }
    this.#filling.markers.push(onDurable);
  }

  /** Resolves when everything pushed so far is acknowledged; rejects on a send failure. */
  flush(): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#filling.count === 0 && this.#queued.length === 0 && this.#inFlight === null)
      return Promise.resolve();
    return new Promise((resolve, reject) => this.#idleWaiters.push({ resolve, reject }));
  }

  #seal(): void {
    if (this.#filling.count === 0) return;
    this.#queued.push(this.#filling);
    this.#filling = newBatch();
  }

  #pump(): void {
    if (this.#inFlight || this.#failed) return;
    if (this.#queued.length === 0) this.#seal();
    const batch = this.#queued.shift();
    if (!batch) return;
    this.#inFlight = batch;
    this.#send(batch.records).then(
      () => this.#acknowledged(batch),
      (err: unknown) => this.#fail(err instanceof Error ? err : new Error(String(err))),
    );
  }

  #acknowledged(batch: Batch): void {
    this.#inFlight = null;
    this.#bytes -= batch.bytes;
    this.#records -= batch.count;
    this.acknowledgedRecords += batch.count;
    for (const m of batch.markers) m();
    this.#wake();
    this.#pump();
    if (!this.#inFlight && this.#filling.count === 0 && this.#queued.length === 0) {
      for (const w of this.#idleWaiters.splice(0)) w.resolve();
    }
  }

  #fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = err;
    this.#inFlight = null;
    this.#wake();
    for (const w of this.#idleWaiters.splice(0)) w.reject(err);
    this.#opts.onError(err);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}
