// ./dev demo — from a fresh clone to records in Kafka:
// brings up the local stack, creates a demo table with a few rows, runs the pgcdc worker,
// makes some changes, and prints the records as a registry-driven consumer decodes them.
import { stackUp } from '../deploy/local/stack.ts';
import { Connector } from '../src/pipeline/connector.ts';
import { createLogger } from '../src/worker/log.ts';
import { TopicReader, eventually, pgClient, uniqueName, workerConfig } from '../test/support/pipeline.ts';

const say = (text: string) => process.stdout.write(`${text}\n`);

function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

async function main(): Promise<void> {
  say(
    '• starting the local stack (PostgreSQL, Kafka, Apicurio Registry) — the first time takes a few minutes',
  );
  const env = await stackUp();
  Object.assign(process.env, env);

  const name = uniqueName('demo');
  const table = 'demo_orders';
  const db = await pgClient();
  await db.query(`DROP TABLE IF EXISTS ${table}`);
  await db.query(
    `CREATE TABLE ${table} (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), placed_at timestamptz DEFAULT now())`,
  );
  await db.query(
    `INSERT INTO ${table} (id, customer, amount) VALUES (1, 'ada', 12.50), (2, 'grace', 99.99), (3, 'linus', 5.00)`,
  );
  say(`• created table public.${table} with 3 rows`);

  const config = workerConfig(name, {
    PGCDC_TABLES_INCLUDE: `public.${table}`,
    PGCDC_LOG_LEVEL: 'info',
    PGCDC_SLOT_DROP_ON_STOP: 'true',
  });
  const connector = new Connector(config, createLogger({ connector: name, level: 'info', format: 'pretty' }));
  const running = connector.run();
  running.catch(() => undefined);
  await eventually(
    'the initial load',
    async () => (connector.state === 'STREAMING' ? true : undefined),
    120_000,
  );
  say('• pgcdc took the initial load and is streaming; making changes…');

  await db.query(`INSERT INTO ${table} (id, customer, amount) VALUES (4, 'barbara', 42.00)`);
  await db.query(`UPDATE ${table} SET amount = 13.75 WHERE id = 1`);
  await db.query(`DELETE FROM ${table} WHERE id = 3`);
  await db.end();

  const topic = `${name}.public.${table}`;
  const reader = new TopicReader();
  const records = await eventually('the changes in Kafka', async () => {
    const r = await reader.read(topic);
    return r.length >= 7 ? r : undefined;
  });
  await connector.stop();
  await running;

  say(`\n• topic ${topic} — ${records.length} records, decoded with the schemas in the registry:`);
  for (const r of records) {
    const key = show(r.key);
    if (!r.value) {
      say(`  key=${key}  (tombstone)`);
      continue;
    }
    const v = r.value;
    say(
      `  op=${v.op}  key=${key}  before=${show(v.before)}  after=${show(v.after)}  lsn=${String(v.source.lsn)}`,
    );
  }
  say(`\nThe stack keeps running: ./dev stack env prints its settings, ./dev stack down stops it.`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
