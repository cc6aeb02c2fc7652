// Releasing a connector's position on purpose (heartbeat.walCriticalAction=stop): the stored offset
// is forgotten, then the replication slot dropped, so the server can recycle the WAL the slot held.
// The same order as slot.dropOnStop and `pgcdc offsets reset`: without its slot an offset describes
// nothing, and a slot without an offset is one pgcdc refuses to drop on the next start.
// Runs after the connector has stopped (its walsender must be gone before the slot can be dropped),
// on connections of its own: the connector's are closed by then, and Kafka may be the reason the
// slot fell behind, so each step is bounded and reported rather than awaited forever.
import type { PgcdcConfig } from '../config/types.ts';
import { causeChain } from '../errors.ts';
import { connectKafka, durableProducer, kafkaClient } from '../kafka/client.ts';
import { OffsetStore } from '../kafka/offsets.ts';
import { connectForChecks, formatLine } from '../postgres/preflight.ts';
import { dropSlot } from '../postgres/replication/slot.ts';
import type { Logger } from '../worker/log.ts';

export interface ReleaseOutcome {
  /** null: done; otherwise why not. */
  offsetError: string | null;
  slotError: string | null;
}

/** Kafka: seconds when it is up; when it is down, kafkajs's own retries would take a minute. */
const KAFKA_TIMEOUT_MS = 10_000;
/** dropSlot waits up to 10 s for our walsender to go away. */
const SLOT_TIMEOUT_MS = 30_000;

function within<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export async function releaseSlot(
  config: Pick<PgcdcConfig, 'name' | 'postgres' | 'ssh' | 'kafka' | 'offsets' | 'slot'>,
  log: Logger,
): Promise<ReleaseOutcome> {
  const out: ReleaseOutcome = { offsetError: null, slotError: null };
  const kafka = kafkaClient(config.kafka, { log });
  const producer = durableProducer(kafka);
  try {
    const store = new OffsetStore(kafka, config.offsets.topic, {
      connector: config.name,
      slot: config.slot.name,
    });
    const forget = async () => {
      await connectKafka(producer, config.kafka);
      await store.reset(producer);
    };
    await within('forgetting the offset in Kafka', forget(), KAFKA_TIMEOUT_MS);
  } catch (err) {
    out.offsetError = causeChain(err);
  } finally {
    await producer.disconnect().catch(() => undefined);
  }
  const opened = await connectForChecks(config, { applicationName: `pgcdc-${config.name}-release`, log });
  if ('result' in opened) {
    out.slotError = formatLine(opened.result);
    return out;
  }
  try {
    await within('dropping the slot', dropSlot(opened.client, config.slot.name), SLOT_TIMEOUT_MS);
  } catch (err) {
    out.slotError = causeChain(err);
  } finally {
    await opened.client.end().catch(() => undefined);
    await opened.endpoint.close().catch(() => undefined);
  }
  return out;
}
