// Accepted is not durable. Records handed to push() are accepted; a marker placed with mark()
// becomes durable only when Kafka has acknowledged every record pushed before it. Checkpoints
// (offset records, LSN confirmations) hang off those markers, nothing else.
//
// One send is in flight at a time, so batches are acknowledged in the order they were pushed
// and per-key order holds without relying on producer retries keeping order. While a batch is
// in flight the next one fills up, so throughput comes from batch size, not concurrency.
// A send function that itself sends one batch at a time, in the order it was given them, and
// gives up on every later batch once one failed (the producer thread, producer-thread.ts) may
// be handed several (maxInFlightBatches): they queue there instead of here, and the thread
// never waits for this thread to notice an acknowledgement before it sends the next one.
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
  /**
   * Batches handed to `send` before the first is acknowledged (default 1). More than 1 only for
   * a send that sends them one at a time in order and fails every batch after a failed one.
   */
  maxInFlightBatches?: number;
}

interface Batch {
  records: Map<string, OutRecord[]>;
  bytes: number;
  count: number;
  markers: Array<() => void>;
  /** Acknowledged, waiting for the batches before it to be. */
  acked: boolean;
}

const newBatch = (): Batch => ({ records: new Map(), bytes: 0, count: 0, markers: [], acked: false });

export class Batcher {
  #send: SendBatch;
  #opts: BatcherOptions;
  #filling: Batch = newBatch();
  /** Batches waiting behind the one in flight (each at most maxBatchBytes). */
  #queued: Batch[] = [];
  /** Handed to send and not yet acknowledged, oldest first. */
  #inFlight: Batch[] = [];
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
    if (this.#idle()) {
      onDurable();
      return;
    }
    if (this.#filling.count === 0) {
      // Nothing new since the last sealed batch: the marker rides on that one.
      const last = this.#queued.at(-1) ?? this.#inFlight.at(-1);
      last!.markers.push(onDurable);
      return;
    }
    this.#filling.markers.push(onDurable);
  }

  /** Resolves when everything pushed so far is acknowledged; rejects on a send failure. */
  flush(): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#idle()) return Promise.resolve();
    return new Promise((resolve, reject) => this.#idleWaiters.push({ resolve, reject }));
  }

  #seal(): void {
    if (this.#filling.count === 0) return;
    this.#queued.push(this.#filling);
    this.#filling = newBatch();
  }

  #idle(): boolean {
    return this.#filling.count === 0 && this.#queued.length === 0 && this.#inFlight.length === 0;
  }

  #pump(): void {
    const max = this.#opts.maxInFlightBatches ?? 1;
    while (this.#inFlight.length < max && !this.#failed) {
      // A partly filled batch goes out only when nothing is in flight: otherwise it keeps filling.
      if (this.#queued.length === 0 && this.#inFlight.length === 0) this.#seal();
      const batch = this.#queued.shift();
      if (!batch) return;
      this.#inFlight.push(batch);
      this.#send(batch.records).then(
        () => this.#acknowledged(batch),
        (err: unknown) => this.#fail(err instanceof Error ? err : new Error(String(err))),
      );
    }
  }

  #acknowledged(batch: Batch): void {
    if (this.#failed) return;
    batch.acked = true;
    // In push order: a batch's markers run only once every batch before it is acknowledged too.
    while (this.#inFlight[0]?.acked) {
      const done = this.#inFlight.shift()!;
      this.#bytes -= done.bytes;
      this.#records -= done.count;
      this.acknowledgedRecords += done.count;
      for (const m of done.markers) m();
    }
    this.#wake();
    this.#pump();
    if (this.#idle()) {
      for (const w of this.#idleWaiters.splice(0)) w.resolve();
    }
  }

  #fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = err;
    this.#inFlight = [];
    this.#wake();
    for (const w of this.#idleWaiters.splice(0)) w.reject(err);
    this.#opts.onError(err);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}
