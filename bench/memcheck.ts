// Is the worker's memory bounded by its configuration, not by the size of a transaction?
// One transaction of N rows through a `pgcdc run` child whose V8 heap is capped
// (--max-old-space-size), reporting its peak RSS (VmHWM). Run it with two sizes and compare:
//   node bench/memcheck.ts <heap MB> <rows> ['{"PGCDC_KAFKA_MAX_IN_FLIGHT_BYTES":"8MiB"}'] [snapshot]
// With `snapshot`, the rows exist before the worker starts and go through the initial load.
// (the stack's PGCDC_* settings exported; MEMCHECK_ENTRY=dist/cli/main.js for the compiled worker).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Kafka, logLevel } from 'kafkajs';
import { pgClient, uniqueName, workerEnv } from '../test/support/pipeline.ts';

const heapMb = process.argv[2] ?? '128';
const rows = Number(process.argv[3] ?? 1_000_000);
const name = uniqueName('mem');
const t = `${name}_t`;
const db = await pgClient();
await db.query(
  `CREATE TABLE ${t} (id int8 PRIMARY KEY, a int, b text, c numeric(12,2), d timestamptz, e jsonb)`,
);
const snapshot = process.argv[5] === 'snapshot';
const extra = JSON.parse(process.argv[4] ?? '{}') as Record<string, string>;
if (snapshot) {
  await db.query(
    `INSERT INTO ${t} SELECT g, g, repeat('x', 50 + g % 100), g * 1.25, now(), jsonb_build_object('k', g) FROM generate_series(1, ${rows}) g`,
  );
}
const env = workerEnv(name, {
  PGCDC_TABLES_INCLUDE: `public.${t}`,
  PGCDC_LOG_LEVEL: 'warn',
  PGCDC_HTTP_PORT: '0',
  ...extra,
});
const child = spawn(
  process.execPath,
  [
    `--max-old-space-size=${heapMb}`,
    '--disable-warning=TimeoutNegativeWarning',
    process.env.MEMCHECK_ENTRY ?? 'src/cli/main.ts',
    'run',
  ],
  {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  },
);
const spawnedAt = Date.now();
const hwm = () =>
  Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const kafka = new Kafka({ brokers: env.PGCDC_KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });
const admin = kafka.admin();
await admin.connect();
const topic = `${name}.public.${t}`;
const count = async () => {
  if (!(await admin.listTopics()).includes(topic)) return 0;
  return (await admin.fetchTopicOffsets(topic)).reduce((s, p) => s + Number(p.high), 0);
};
await new Promise((r) => setTimeout(r, 4000));
console.log(`idle after start: peak RSS ${hwm().toFixed(0)} MiB`);
const t0 = Date.now();
if (!snapshot)
  await db.query(
    `INSERT INTO ${t} SELECT g, g, repeat('x', 50 + g % 100), g * 1.25, now(), jsonb_build_object('k', g) FROM generate_series(1, ${rows}) g`,
  );
while ((await count()) < rows) {
  if (child.exitCode !== null) throw new Error(`worker exited ${child.exitCode}`);
  await new Promise((r) => setTimeout(r, 500));
}
console.log(
  `heap cap ${heapMb} MB ${JSON.stringify(extra)}: ${rows} rows (${snapshot ? 'initial load' : 'one transaction'}) drained in ${((Date.now() - (snapshot ? spawnedAt : t0)) / 1000).toFixed(1)} s, worker peak RSS ${hwm().toFixed(0)} MiB`,
);
child.kill('SIGTERM');
await new Promise((r) => child.once('exit', r));
await db.query(`SELECT pg_drop_replication_slot('pgcdc_${name}')`).catch(() => undefined);
await db.query(`DROP TABLE ${t}`);
await db.end();
await admin.disconnect();
