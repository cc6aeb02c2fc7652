// capture.method xmin against the local stack (docs/xmin.md, docs/performance.md "xmin"):
//
//   node bench/xmin.ts [--rows N] [--repeat K] [--chunk-rows C] [--out bench/results]
//
// On the benchmark table (bench/lib.ts, N rows) and beside the COPY baseline of the same run:
// - full poll: an xmin worker's first poll (no cursor: every row), worker start → Kafka holds N
//   records, as the initial-load scenario measures the snapshot;
// - the xmin reader alone: the same key-ordered chunks (readChunk, src/pipeline/xmin.ts) read
//   with nothing encoded or sent, every row and then a poll that finds nothing changed — what
//   every idle poll costs the server, however few rows changed.
// Writes <out>/xmin-<timestamp>.json and prints a Markdown table with the load average.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stackUp } from '../deploy/local/stack.ts';
import { silenceKafkajsTimeoutWarning } from '../deploy/local/process.ts';
import { relationFromCatalog } from '../src/postgres/catalog.ts';
import { connect } from '../src/postgres/connection.ts';
import { parseSnapshot, xminRange } from '../src/capture/xmin.ts';
import { readChunk } from '../src/pipeline/xmin.ts';
import { uniqueName, workerConfig } from '../test/support/pipeline.ts';
import { copyBaseline } from './baselines.ts';
import {
  ROOT,
  assertAlive,
  createTable,
  deleteTopics,
  fillTable,
  kafka,
  note,
  now,
  pgClient,
  sleep,
  startWorker,
  topicRecords,
  workerEnv,
} from './lib.ts';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (xs: number[]): string =>
  `${Math.round(median(xs)).toLocaleString('en-US')} (${Math.round(Math.min(...xs)).toLocaleString('en-US')}–${Math.round(Math.max(...xs)).toLocaleString('en-US')})`;

/** The xmin reader alone over the whole table: every row (cursor null), or from a fresh cursor. */
async function readerAlone(
  table: string,
  chunkRows: number,
  from: 'all' | 'now',
): Promise<{ seconds: number; rows: number }> {
  const db = await connect(workerConfig('bench').postgres, { applicationName: 'pgcdc-bench-xmin' });
  try {
    const relation = await relationFromCatalog(db, { schema: 'public', table });
    let cursor: bigint | null = null;
    if (from === 'now') {
      const { rows } = await db.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s');
      cursor = parseSnapshot(rows[0]!.s).xmin;
    }
    const t0 = now();
    let after: Array<string | null> | null = null;
    let total = 0;
    for (;;) {
      await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const { rows } = await db.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s');
      const snap = parseSnapshot(rows[0]!.s);
      // An idle poll on a busy server: a range of one xid that no row of the table has (an
      // empty range skips the query, which only a server with no transaction at all would).
      const range = cursor === null ? 'all' : xminRange(cursor, snap.xmax + 1n);
      const chunk: { rows: number; lastKey: Array<string | null> | null; exhausted: boolean } =
        range === null
          ? { rows: 0, lastKey: null, exhausted: true }
          : await readChunk(db, relation, {
              range,
              after,
              xmax: snap.xmax,
              chunkRows,
              chunkBytes: 8 * 1024 * 1024,
              publish: async () => undefined,
              interrupted: () => false,
            });
      await db.query('COMMIT');
      total += chunk.rows;
      if (chunk.lastKey) after = chunk.lastKey;
      if (chunk.exhausted) break;
    }
    return { seconds: (now() - t0) / 1000, rows: total };
  } finally {
    await db.end();
  }
}

/** An xmin worker's first poll: start → the topic holds every row. */
async function fullPoll(table: string, rows: number, chunkRows: number): Promise<number> {
  const name = uniqueName('bxmin');
  const topic = `${name}.public.${table}`;
  const admin = kafka().admin();
  await admin.connect();
  const w = startWorker(
    workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_CAPTURE_METHOD: 'xmin',
      PGCDC_CAPTURE_XMIN_POLL_INTERVAL_MS: '3600000',
      PGCDC_CAPTURE_XMIN_CHUNK_ROWS: String(chunkRows),
      PGCDC_HTTP_PORT: '0',
    }),
  );
  try {
    while ((await topicRecords(admin, topic)) < rows) {
      assertAlive(w);
      await sleep(100);
    }
    return rows / ((now() - w.startedAt) / 1000);
  } finally {
    await w.stop();
    await deleteTopics(admin, `${name}.`);
    await deleteTopics(admin, `${name}-offsets`);
    await admin.disconnect();
  }
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rows: { type: 'string', default: '1000000' },
      repeat: { type: 'string', default: '3' },
      'chunk-rows': { type: 'string', default: '10000' },
      out: { type: 'string', default: path.join(ROOT, 'bench/results') },
    },
  });
  const rows = Number(values.rows);
  const repeat = Number(values.repeat);
  const chunkRows = Number(values['chunk-rows']);
  silenceKafkajsTimeoutWarning();
  Object.assign(process.env, await stackUp());
  const db = await pgClient();
  const table = uniqueName('bench_xmin');
  const loadBefore = os.loadavg();
  const runs: Record<string, number[]> = { copy: [], full: [], reader: [], idle: [] };
  try {
    note(`filling ${table} with ${rows} rows`);
    await createTable(db, table);
    await fillTable(db, table, 1, rows);
    await db.query(`VACUUM ANALYZE ${table}`);
    for (let i = 0; i < repeat; i++) {
      note(`repetition ${i + 1} of ${repeat}`);
      runs.copy!.push(Number((await copyBaseline(table, rows)).copyRowsPerSec));
      const all = await readerAlone(table, chunkRows, 'all');
      runs.reader!.push(all.rows / all.seconds);
      const idle = await readerAlone(table, chunkRows, 'now');
      runs.idle!.push(idle.seconds * 1000);
      runs.full!.push(await fullPoll(table, rows, chunkRows));
    }
  } finally {
    await db.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    await db.end();
  }
  const loadAfter = os.loadavg();
  const load = `load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')} before, ${loadAfter.map((l) => l.toFixed(2)).join(' ')} after; ${os.cpus().length} cores`;
  const md = [
    `xmin poll over the benchmark table, ${rows.toLocaleString('en-US')} rows, capture.xmin.chunkRows ${chunkRows}, median of ${repeat} (min–max); ${load}`,
    '',
    '| What | Figure | Baseline (same run) | Ratio |',
    '| --- | --- | --- | --- |',
    `| Full poll (no cursor): worker start → all acked | ${fmt(runs.full!)} rows/s | PG COPY TO STDOUT (psql): ${fmt(runs.copy!)} rows/s | ${Math.round((100 * median(runs.full!)) / median(runs.copy!))} % |`,
    `| xmin reader alone (key chunks, every row, nothing sent) | ${fmt(runs.reader!)} rows/s | PG COPY TO STDOUT (psql): ${fmt(runs.copy!)} rows/s | ${Math.round((100 * median(runs.reader!)) / median(runs.copy!))} % |`,
    `| Idle poll (nothing changed since the cursor): scan of the table | ${fmt(runs.idle!)} ms | – | – |`,
  ].join('\n');
  process.stdout.write(`${md}\n`);
  fs.mkdirSync(values.out!, { recursive: true });
  const file = path.join(values.out!, `xmin-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(
    file,
    `${JSON.stringify({ command: `node bench/xmin.ts ${argv.join(' ')}`, rows, repeat, chunkRows, loadBefore, loadAfter, cores: os.cpus().length, runs }, null, 2)}\n`,
  );
  note(`wrote ${file}`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
