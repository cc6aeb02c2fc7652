// 1. Initial load: a worker starts on a table of N rows; measured from the worker's start until
// Kafka holds all N records (topic high watermark = N, i.e. every record acknowledged).
import path from 'node:path';
import { uniqueName } from '../../test/support/pipeline.ts';
import type { Metrics } from '../report.ts';
import {
  CpuWatch,
  assertAlive,
  backendPid,
  kafkaPid,
  note,
  now,
  sleep,
  startWorker,
  topicLogBytes,
  topicRecords,
  workerEnv,
} from '../lib.ts';
import { cleanUp, type Context } from './common.ts';

const MiB = 1024 * 1024;

export async function snapshotRun(
  ctx: Context,
  opts: { profileDir?: string } = {},
): Promise<{ metrics: Metrics; profileDir?: string }> {
  const name = uniqueName('bsnap');
  const topic = `${name}.public.${ctx.table}`;
  const cpu = new CpuWatch();
  cpu.watch('kafka', kafkaPid());
  const w = startWorker(
    workerEnv(name, { PGCDC_TABLES_INCLUDE: `public.${ctx.table}`, ...ctx.workerSettings }),
    opts.profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] } : {},
  );
  cpu.watch('worker', w.pid, true);
  try {
    let firstAt = NaN;
    while (true) {
      const n = await topicRecords(ctx.admin, topic);
      if (n > 0 && Number.isNaN(firstAt)) firstAt = now();
      if (n >= ctx.rows) break;
      assertAlive(w);
      // The snapshot's PostgreSQL backend (a new process: its CPU counts from zero).
      cpu.watch('postgres', await backendPid(ctx.db, `pgcdc-${name}-snapshot`), true);
      await sleep(100);
    }
    const doneAt = now();
    const seconds = (doneAt - w.startedAt) / 1000;
    const used = cpu.used();
    const bytes = topicLogBytes(topic);
    const metrics: Metrics = {
      seconds,
      rowsPerSec: ctx.rows / seconds,
      kafkaMiBPerSec: bytes / MiB / seconds,
      kafkaBytes: bytes,
      firstRecordSec: (firstAt - w.startedAt) / 1000,
      peakRssMiB: w.peakRssMiB(),
      cpuSeconds: w.cpuSeconds(),
      workerCpuUtil: (used.worker ?? NaN) / seconds,
      postgresCpuUtil: (used.postgres ?? NaN) / seconds,
      kafkaCpuUtil: (used.kafka ?? NaN) / seconds,
    };
    // The figures are taken; a failed graceful stop is reported, not turned into a lost run.
    const code = await w.stop();
    metrics.workerExitCode = code ?? -1;
    if (code !== 0)
      note(`snapshot worker ${name} exited ${code} after the measurement:\n${w.output().slice(-2000)}`);
    return { metrics, ...(opts.profileDir ? { profileDir: path.resolve(opts.profileDir) } : {}) };
  } finally {
    cpu.close();
    await w.stop();
    await cleanUp(ctx, name);
  }
}
