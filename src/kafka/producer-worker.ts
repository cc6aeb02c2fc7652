// The producer thread's entry (see producer-thread.ts): one kafkajs client and idempotent
// producer, driven by messages from the pipeline's thread. It only encodes and sends; every
// decision (what is durable, what fails the connector, what is logged) stays on the other side.
import { parentPort, workerData } from 'node:worker_threads';
import { CompressionTypes } from 'kafkajs';
import { durableProducer, kafkaClient, type KafkaSettings } from './client.ts';
import type { LogLevel, Logger } from '../worker/log.ts';
import { toWireError, unpackBatch, type PackedBatch } from './thread-wire.ts';
import type { FromProducer, ToProducer } from './producer-thread.ts';

const port = parentPort!;
const { settings, compression, logged } = workerData as {
  settings: KafkaSettings;
  compression: 'none' | 'gzip';
  logged: boolean;
};
const post = (m: FromProducer): void => port.postMessage(m);

const line =
  (level: LogLevel) =>
  (msg: string, ctx?: Record<string, unknown>): void =>
    post({ op: 'log', level, msg, ...(ctx && { ctx }) });
const log: Logger = { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };

const kafka = kafkaClient(settings, { onRetry: () => post({ op: 'retry' }), ...(logged && { log }) });
const producer = durableProducer(kafka);
const codec = compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;

async function handle(m: ToProducer): Promise<void> {
  switch (m.op) {
    case 'connect':
      return producer.connect();
    case 'send':
      await producer.sendBatch({
        acks: -1,
        compression: codec,
        topicMessages: unpackBatch(m.batch as PackedBatch),
      });
      return;
    case 'disconnect':
      return producer.disconnect();
  }
}

// One message at a time, in order: kafkajs's idempotent producer has one request in flight, and
// the pipeline may hand over several batches (Batcher maxInFlightBatches). After a failed send
// no later batch is sent: they would land after a gap, ahead of the records a restart sends again.
let chain: Promise<void> = Promise.resolve();
let sendFailed: unknown = null;
port.on('message', (m: ToProducer) => {
  chain = chain.then(async () => {
    try {
      if (m.op === 'send' && sendFailed !== null) throw sendFailed;
      await handle(m);
      post({ op: 'done', id: m.id });
    } catch (err) {
      if (m.op === 'send') sendFailed ??= err;
      post({ op: 'failed', id: m.id, error: toWireError(err) });
    }
  });
});
