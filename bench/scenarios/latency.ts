// 3. Streaming latency at a fixed moderate rate. The table's topic is created beforehand with
// message.timestamp.type=LogAppendTime, so each record's Kafka timestamp is the moment the broker
// appended it (≈ acknowledged); source.ts_ms in the envelope is the transaction's commit time in
// PostgreSQL. A consumer in the bench process records when each record became visible to it.
//   commit → appended in Kafka:  record timestamp − source.ts_ms
//   commit → visible to a consumer: receive time − source.ts_ms
// (All on one host, one clock; source.ts_ms has millisecond resolution.)
import { randomUUID } from 'node:crypto';
import { RegistryDecoder, uniqueName, type Envelope } from '../../test/support/pipeline.ts';
import { percentile, type Metrics } from '../report.ts';
import {
  CHANGES_PER_TX,
  CpuWatch,
  RECORDS_PER_TX,
  createStreamTable,
  kafka,
  kafkaPid,
  pgbench,
  publicationName,
  slotName,
  slotPid,
  sleep,
  stackSettings,
  startWorker,
  topicRecords,
  waitForActiveSlot,
  waitForRecords,
  workerEnv,
  writeStreamScript,
} from '../lib.ts';
import { cleanUp, type Context } from './common.ts';

const UPDATABLE = 10_000;
/** Records committed in the first second are left out (connections, schema registration, JIT warm-up). */
const WARMUP_MS = 1000;

export async function latencyRun(ctx: Context): Promise<Metrics> {
  const name = uniqueName('blat');
  const table = `${name}_t`;
  const topic = `${name}.public.${table}`;
  const { rate, seconds, clients } = ctx.latency;
  await createStreamTable(
    ctx.db,
    table,
    UPDATABLE,
    Math.ceil((rate / CHANGES_PER_TX) * seconds * 1.3) + 1000,
  );
  const script = writeStreamScript(ctx.outDir, table, UPDATABLE);
  await ctx.admin.createTopics({
    waitForLeaders: true,
    topics: [
      {
        topic,
        numPartitions: 1,
        configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }],
      },
    ],
  });
  const cpu = new CpuWatch();
  const w = startWorker(
    workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_SNAPSHOT_MODE: 'never',
      PGCDC_PUBLICATION_NAME: publicationName(name),
      ...ctx.workerSettings,
    }),
  );
  const consumer = kafka('pgcdc-bench-latency').consumer({
    groupId: `pgcdc-bench-${randomUUID()}`,
    maxWaitTimeInMs: 100,
  });
  const decoder = new RegistryDecoder(stackSettings().registryUrl);
  const append: number[] = [];
  const visible: number[] = [];
  let consumed = 0;
  try {
    await waitForActiveSlot(ctx.db, slotName(name), w);
    cpu.watch('worker', w.pid);
    cpu.watch('postgres', await slotPid(ctx.db, slotName(name)));
    cpu.watch('kafka', kafkaPid());
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    let from = Infinity;
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const received = Date.now();
        for (const m of batch.messages) {
          consumed++;
          if (!m.value) continue;
          const env = (await decoder.decode(m.value)) as Envelope;
          const commitMs = Number(env.source.ts_ms as bigint);
          if (commitMs < from) continue;
          append.push(Number(m.timestamp) - commitMs);
          visible.push(received - commitMs);
        }
      },
    });
    await joined;
    await sleep(500);
    cpu.mark();
    from = Date.now() + WARMUP_MS;
    const bench = await pgbench(script, { tps: rate / CHANGES_PER_TX, seconds, clients });
    const util = cpu.utilisation();
    const total = bench.transactions * RECORDS_PER_TX;
    await waitForRecords(ctx.admin, topic, total, { worker: w, timeoutMs: 120_000 });
    const deadline = Date.now() + 60_000;
    while (consumed < total && Date.now() < deadline) await sleep(100);
    return {
      changesPerSec: (bench.transactions * CHANGES_PER_TX) / seconds,
      samples: append.length,
      appendP50Ms: percentile(append, 50),
      appendP95Ms: percentile(append, 95),
      appendP99Ms: percentile(append, 99),
      appendMaxMs: percentile(append, 100),
      visibleP50Ms: percentile(visible, 50),
      visibleP95Ms: percentile(visible, 95),
      visibleP99Ms: percentile(visible, 99),
      visibleMaxMs: percentile(visible, 100),
      workerCpuUtil: util.worker ?? NaN,
      postgresCpuUtil: util.postgres ?? NaN,
      kafkaCpuUtil: util.kafka ?? NaN,
      peakRssMiB: w.peakRssMiB(),
      recordsInTopic: await topicRecords(ctx.admin, topic),
    };
  } finally {
    cpu.close();
    await consumer.disconnect().catch(() => undefined);
    await w.stop();
    await cleanUp(ctx, name);
    await ctx.db.query(`DROP TABLE IF EXISTS ${table}`);
  }
}
