// `pgcdc offsets [show|reset] [--config FILE] [--yes]`: the connector's stored position in the
// offsets topic. `reset` forgets it (a tombstone for the connector's key), so the next start takes
// a new snapshot on a new slot — the deliberate way to "start from zero".
import { loadConfig } from '../config/load.ts';
import { UserError } from '../errors.ts';
import { connectKafka, durableProducer, kafkaClient } from '../kafka/client.ts';
import { OffsetStore } from '../kafka/offsets.ts';

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
  const producer = durableProducer(kafka);
  await connectKafka(producer, config.kafka);
  try {
    await store.reset(producer);
  } finally {
    await producer.disconnect();
  }
  process.stdout.write(`stored offset forgotten (${where}): the next start takes a new snapshot\n`);
  return 0;
}
