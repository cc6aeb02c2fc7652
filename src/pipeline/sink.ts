// The seam between the pipeline and Kafka. Accepted is not durable: push() only *accepts* a
// record (it may still be lost with the process); a marker placed with mark() runs once Kafka has
// acknowledged every record pushed before it. Positions move only inside such markers (see
// checkpoint.ts), so nothing downstream of the sink can be confirmed before it is durable.
import type { Producer } from 'kafkajs';
import { CompressionTypes } from 'kafkajs';
import { Batcher, type OutRecord } from '../kafka/batcher.ts';

export type { OutRecord };

export interface Sink {
  /** Accepts a record; resolves once there is room for it (backpressure), not when it is durable. */
  push(record: OutRecord): Promise<void>;
  /** Runs `onDurable` once every record pushed so far is acknowledged; never after a failure. */
  mark(onDurable: () => void): void;
  /** Resolves when everything pushed so far is acknowledged; rejects on a send failure. */
  flush(): Promise<void>;
  /** The send failure that ended the sink, if any: it accepts nothing after it. */
  readonly failure: Error | null;
  /** Bytes accepted and not yet acknowledged. */
  readonly inFlightBytes: number;
}

/** Largest Kafka send; Kafka refuses record batches above message.max.bytes (1 MiB by default). */
const MAX_BATCH_BYTES = 900 * 1024;

/** The sink onto a kafkajs producer: one acks=all send in flight at a time (see Batcher). */
export function kafkaSink(
  producer: Producer,
  opts: {
    compression?: 'none' | 'gzip';
    maxInFlightBytes: number;
    maxInFlightRecords?: number;
    onError: (err: Error) => void;
  },
): Sink {
  const compression = opts.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
  return new Batcher(
    async (batch) => {
      await producer.sendBatch({
        acks: -1,
        compression,
        // An OutRecord is a kafkajs message already (key, value, headers; kafkajs ignores `topic`):
        // no second object per record.
        topicMessages: [...batch].map(([topic, messages]) => ({ topic, messages })),
      });
    },
    {
      maxInFlightBytes: opts.maxInFlightBytes,
      maxInFlightRecords: opts.maxInFlightRecords,
      maxBatchBytes: MAX_BATCH_BYTES,
      onError: opts.onError,
    },
  );
}
