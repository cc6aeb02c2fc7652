// The idempotent producer on a thread of its own (kafka.producerThread, on by default). kafkajs's
// record encoding (varints, CRC32C, murmur2, the request buffers) was a third of the worker's CPU
// on its single thread (docs/performance.md); here it runs on the second core while the pipeline's
// thread reads, converts and encodes the next batch.
//
// Nothing about durability changes: the Batcher still has one batch in flight and runs its
// markers only when this sendBatch resolves, which the thread answers only when kafkajs's acks=all
// sendBatch resolved. A batch crosses as one transferred buffer (thread-wire.ts), not as records;
// a failure comes back as the kafkajs error it was (name, type, code, causes), so the connector
// classifies and describes it as before. kafkajs's log lines and retries are posted back to the
// connector's logger and metrics. If the thread dies, every send in flight and every later one
// fails with one line saying so: the connector fails, and nothing after the last acknowledged
// batch was confirmed.
import { Worker } from 'node:worker_threads';
import { causeChain } from '../errors.ts';
import type { LogLevel, Logger } from '../worker/log.ts';
import type { OutRecord } from './batcher.ts';
import type { KafkaSettings } from './client.ts';
import { fromWireError, packBatch, transferList, type PackedBatch, type WireError } from './thread-wire.ts';

export type ToProducer =
  | { op: 'connect'; id: number }
  | { op: 'send'; id: number; batch: PackedBatch }
  | { op: 'disconnect'; id: number };

export type FromProducer =
  | { op: 'done'; id: number }
  | { op: 'failed'; id: number; error: WireError }
  | { op: 'log'; level: LogLevel; msg: string; ctx?: Record<string, unknown> }
  | { op: 'retry' };

/** The entry beside this file: .ts when run from source (type stripping), .js when compiled. */
const entry = new URL(
  import.meta.url.endsWith('.ts') ? './producer-worker.ts' : './producer-worker.js',
  import.meta.url,
);

export class ProducerThread {
  #worker: Worker;
  #pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #next = 1;
  /** Why the thread can take no more work (it died, or was disconnected). */
  #dead: Error | null = null;

  constructor(
    settings: KafkaSettings,
    opts: { compression?: 'none' | 'gzip'; log?: Logger; onRetry?: () => void } = {},
  ) {
    const { log, onRetry } = opts;
    this.#worker = new Worker(entry, {
      workerData: { settings, compression: opts.compression ?? 'none', logged: log !== undefined },
      name: 'pgcdc-producer',
    });
    this.#worker.on('message', (m: FromProducer) => {
      switch (m.op) {
        case 'done':
          return this.#settle(m.id, null);
        case 'failed':
          return this.#settle(m.id, fromWireError(m.error));
        case 'log':
          return log?.[m.level](m.msg, m.ctx);
        case 'retry':
          return onRetry?.();
      }
    });
    this.#worker.on('error', (err) =>
      this.#die(new Error(`Kafka producer thread failed: ${causeChain(err)}`, { cause: err })),
    );
    this.#worker.on('exit', (code) => this.#die(new Error(`Kafka producer thread exited (code ${code})`)));
  }

  connect(): Promise<void> {
    return this.#call((id) => ({ op: 'connect', id }));
  }

  /** Resolves when Kafka acknowledged every record of `batch` (acks=all), as kafkajs's sendBatch. */
  sendBatch(batch: Map<string, OutRecord[]>): Promise<void> {
    const packed = packBatch(batch);
    return this.#call((id) => ({ op: 'send', id, batch: packed }), transferList(packed));
  }

  /** Disconnects the producer and ends the thread; never rejects. */
  async disconnect(): Promise<void> {
    if (!this.#dead) await this.#call((id) => ({ op: 'disconnect', id })).catch(() => undefined);
    this.#dead ??= new Error('Kafka producer thread disconnected');
    await this.#worker.terminate();
  }

  /** Ends the thread at once, as a crash would (tests use it for the thread's fault path). */
  terminate(): Promise<number> {
    return this.#worker.terminate();
  }

  #call(message: (id: number) => ToProducer, transfer: ArrayBuffer[] = []): Promise<void> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage(message(id), transfer);
    });
  }

  #settle(id: number, err: Error | null): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (err) p.reject(err);
    else p.resolve();
  }

  #die(err: Error): void {
    this.#dead ??= err;
    for (const p of this.#pending.values()) p.reject(this.#dead);
    this.#pending.clear();
  }
}
