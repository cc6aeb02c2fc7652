// The initial load by method (issue 13): the exported-snapshot load beside the chunked (DBLog)
// load at snapshot.parallelism 1, 2 and 4, on the benchmark's table, with PostgreSQL's COPY as the
// baseline; then peak RSS on wide rows (1 MiB of text each), where a row-count bound alone holds
// whatever the rows weigh.
//
//   node bench/snapshot-methods.ts [--rows 300000] [--repeat 3] [--tables 1] [--wide-rows 1000]
//
// Each run is the bench's snapshot scenario (bench/scenarios/snapshot.ts): from the worker's start
// until Kafka holds every record. Prints a markdown table (medians, min–max) and the load average.
import os from 'node:os';
import { parseArgs } from 'node:util';
import { stackUp } from '../deploy/local/stack.ts';
import { silenceKafkajsTimeoutWarning } from '../deploy/local/process.ts';
import { uniqueName } from '../test/support/pipeline.ts';
import { copyBaseline } from './baselines.ts';
import { createTable, fillTable, kafka, note, pgClient } from './lib.ts';
import { snapshotRun } from './scenarios/snapshot.ts';
import type { Context } from './scenarios/common.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string' },
    repeat: { type: 'string' },
    'wide-rows': { type: 'string' },
  },
});
const rows = Number(values.rows ?? 300_000);
const repeat = Number(values.repeat ?? 3);
const wideRows = Number(values['wide-rows'] ?? 1000);

const VARIANTS: Array<{ name: string; settings: Record<string, string> }> = [
  { name: 'exported snapshot', settings: { PGCDC_SNAPSHOT_METHOD: 'exported' } },
  {
    name: 'chunked, parallelism 1',
    settings: { PGCDC_SNAPSHOT_METHOD: 'chunked', PGCDC_SNAPSHOT_PARALLELISM: '1' },
  },
  {
    name: 'chunked, parallelism 2',
    settings: { PGCDC_SNAPSHOT_METHOD: 'chunked', PGCDC_SNAPSHOT_PARALLELISM: '2' },
  },
  {
    name: 'chunked, parallelism 4',
    settings: { PGCDC_SNAPSHOT_METHOD: 'chunked', PGCDC_SNAPSHOT_PARALLELISM: '4' },
  },
];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (xs: number[], digits = 0): string =>
  `${median(xs).toLocaleString('en-US', { maximumFractionDigits: digits })} (${Math.min(...xs).toLocaleString('en-US', { maximumFractionDigits: digits })}–${Math.max(...xs).toLocaleString('en-US', { maximumFractionDigits: digits })})`;

silenceKafkajsTimeoutWarning();
Object.assign(process.env, await stackUp());
const db = await pgClient();
const admin = kafka('pgcdc-bench-admin').admin();
await admin.connect();
const base: Omit<Context, 'rows' | 'table'> = {
  db,
  admin,
  outDir: 'bench/results',
  cores: os.availableParallelism(),
  workerSettings: {
    PGCDC_OFFSETS_COMMIT_INTERVAL_MS: '1000',
    PGCDC_LOG_LEVEL: 'warn',
    PGCDC_LOG_FORMAT: 'json',
    PGCDC_HTTP_PORT: '0',
  },
  stream: { rates: [], stepSeconds: 0, clients: 0, backlogChanges: 0 },
  latency: { rate: 0, seconds: 0, clients: 0 },
  keepTopics: false,
};
const lines: string[] = [];
try {
  const table = uniqueName('bench_methods');
  await createTable(db, table);
  await fillTable(db, table, 1, rows);
  await db.query(`VACUUM ANALYZE ${table}`);
  const copy: number[] = [];
  for (let i = 0; i < repeat; i++) copy.push((await copyBaseline(table, rows)).copyRowsPerSec as number);
  lines.push(
    `| method | rows/s | peak RSS MiB |`,
    `| --- | --- | --- |`,
    `| COPY … TO STDOUT (baseline) | ${fmt(copy)} | – |`,
  );
  for (const v of VARIANTS) {
    const rate: number[] = [];
    const rss: number[] = [];
    for (let i = 0; i < repeat; i++) {
      note(`${v.name}: run ${i + 1}/${repeat}`);
      const { metrics } = await snapshotRun({
        ...base,
        rows,
        table,
        workerSettings: { ...base.workerSettings, ...v.settings },
      });
      rate.push(metrics.rowsPerSec as number);
      rss.push(metrics.peakRssMiB as number);
    }
    lines.push(`| ${v.name} | ${fmt(rate)} | ${fmt(rss)} |`);
  }
  await db.query(`DROP TABLE ${table}`);

  // Wide rows: the row bound alone (the exported load holds two fetches of snapshot.batchSize
  // rows) against the chunk's byte budget.
  const wide = uniqueName('bench_wide');
  await db.query(`CREATE TABLE ${wide} (id int PRIMARY KEY, body text)`);
  await db.query(
    `INSERT INTO ${wide} SELECT g, repeat(md5(g::text), 32768) FROM generate_series(1, ${wideRows}) g`,
  );
  lines.push(
    '',
    `| ${wideRows.toLocaleString('en-US')} rows × 1 MiB | seconds | peak RSS MiB |`,
    `| --- | --- | --- |`,
  );
  const unbounded = {
    name: 'exported snapshot, no byte bound (as in 0.2)',
    settings: { PGCDC_SNAPSHOT_METHOD: 'exported', PGCDC_SNAPSHOT_CHUNK_BYTES: String(64 * 1024 ** 3) },
  };
  for (const v of [unbounded, VARIANTS[0]!, VARIANTS[2]!]) {
    note(`wide rows, ${v.name}`);
    const { metrics } = await snapshotRun({
      ...base,
      rows: wideRows,
      table: wide,
      workerSettings: { ...base.workerSettings, ...v.settings },
    });
    lines.push(
      `| ${v.name}${v === unbounded ? '' : ' (defaults)'} | ${(metrics.seconds as number).toFixed(1)} | ${(metrics.peakRssMiB as number).toFixed(0)} |`,
    );
  }
  await db.query(`DROP TABLE ${wide}`);
} finally {
  await admin.disconnect();
  await db.end();
}
process.stdout.write(
  `${lines.join('\n')}\n\nload average ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}, ${rows.toLocaleString('en-US')} rows, ${repeat} runs each\n`,
);
