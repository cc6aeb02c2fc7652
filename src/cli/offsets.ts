// `pgcdc offsets [show|reset] [--config FILE] [--yes]`: the connector's stored position in the
// offsets topic. `reset` forgets it (a tombstone for the connector's key), so the next start takes
// a new snapshot on a new slot (the old slot, which the offset vouched for, is dropped) — the
// deliberate way to "start from zero".
import { loadConfig } from '../config/load.ts';
import { UserError } from '../errors.ts';
import { connectKafka, durableProducer, kafkaClient } from '../kafka/client.ts';
import { OffsetStore } from '../kafka/offsets.ts';
import { connectForChecks, formatLine } from '../postgres/preflight.ts';
import { dropSlot, slotInfo } from '../postgres/replication/slot.ts';

export async function offsetsCommand(opts: {
  action: string | undefined;
  file: string | undefined;
  env: NodeJS.ProcessEnv;
  args: string[];
  yes: boolean;
}): Promise<number> {
  const action = opts.action ?? 'show';
  if (action !== 'show' && action !== 'reset') {
    throw new UserError(
      `offsets: unknown action '${action}'; use 'pgcdc offsets show' or 'pgcdc offsets reset --yes'`,
    );
  }
  const config = loadConfig({ file: opts.file, env: opts.env, args: opts.args });
  const kafka = kafkaClient(config.kafka);
  const store = new OffsetStore(kafka, config.offsets.topic, {
    connector: config.name,
    slot: config.slot.name,
  });
  const where = `connector ${config.name}, slot ${config.slot.name}, topic ${config.offsets.topic}`;
  if (action === 'show') {
    const offset = await store.read();
    if (!offset) {
      process.stdout.write(`no stored offset (${where}): the next start takes the initial snapshot\n`);
      return 0;
    }
    process.stdout.write(
      `${JSON.stringify({ connector: config.name, slot: config.slot.name, offset }, null, 2)}\n`,
    );
    return 0;
  }
  if (!opts.yes) {
    throw new UserError(
      `offsets reset forgets the stored position (${where}); the next start takes a new snapshot. Add --yes to do it`,
    );
  }
  // The slot holds the position the offset described. pgcdc drops only a slot its stored offset
  // vouches for, so forgetting the offset forgets the slot too (else the next start refuses it).
  const opened = await connectForChecks(config, { applicationName: 'pgcdc-offsets' });
  if ('result' in opened) {
    throw new UserError(`offsets reset needs PostgreSQL to drop the slot: ${formatLine(opened.result)}`);
  }
  const { client, endpoint } = opened;
  try {
    const slot = await slotInfo(client, config.slot.name);
    if (slot?.active) {
      throw new UserError(
        `offsets reset: replication slot ${config.slot.name} is in use (pid ${slot.activePid}); stop the worker first`,
      );
    }
    const owned = slot !== null && (await store.read()) !== null;
    const producer = durableProducer(kafka);
    await connectKafka(producer, config.kafka);
    try {
      await store.reset(producer);
    } finally {
      await producer.disconnect();
    }
    if (owned) await dropSlot(client, config.slot.name);
    process.stdout.write(
      `stored offset forgotten${owned ? ` and replication slot ${config.slot.name} dropped` : ''} (${where}): the next start takes a new snapshot\n`,
    );
    return 0;
  } finally {
    await client.end().catch(() => undefined);
    await endpoint.close().catch(() => undefined);
  }
}
