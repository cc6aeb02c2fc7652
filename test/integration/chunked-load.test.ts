// The chunked (DBLog) initial load under kill -9 (src/pipeline/chunked-load.ts): the worker is
// SIGKILLed again and again while it loads several tables in small chunks, under concurrent
// inserts, updates, deletes and primary-key updates. Every kill lands after the load has begun and
// before it is done (the worker's own log says so). Afterwards each topic, replayed per key,
// equals its table: no ghost row (a key the table no longer has), none lost, and completed chunks
// are not read again (the rows read stay within one chunk per table per kill of the table sizes).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { stackSuite } from '../support/connectors.ts';
import { exited, spawnWorker } from '../support/cli.ts';
import { eventually, pgClient, replayByKey, uniqueName, workerEnv } from '../support/pipeline.ts';
import type { DecodedRecord } from '../support/pipeline.ts';
import { defaultSlotName } from '../../src/config/names.ts';

const KILLS = Number(process.env.PGCDC_TEST_CHUNK_KILLS ?? 30);
// PGCDC_TEST_CHUNK_METHOD=exported runs the same kills against the exported-snapshot load, which
// restarts from zero on a new slot: it shows the ghost rows this test exists to rule out.
const METHOD = process.env.PGCDC_TEST_CHUNK_METHOD ?? 'chunked';
const CHUNK = 20;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Rows of the table keyed as replayByKey keys the topic. */
async function tableState(
  db: pg.Client,
  table: string,
  key: (r: Record<string, unknown>) => string,
): Promise<Map<string, Record<string, unknown>>> {
  const { rows } = await db.query<Record<string, unknown>>(`SELECT * FROM ${table}`);
  return new Map(rows.map((r) => [key(r), r]));
}

/** Differences between the replayed topic and the table: ghosts (in the topic only), lost, stale. */
function compare(
  topic: Map<string, Record<string, unknown>>,
  table: Map<string, Record<string, unknown>>,
  fields: string[],
): { ghosts: string[]; lost: string[]; stale: string[] } {
  const ghosts = [...topic.keys()].filter((k) => !table.has(k));
  const lost = [...table.keys()].filter((k) => !topic.has(k));
  const stale = [...table].filter(([k, row]) => {
    const got = topic.get(k);
    return got !== undefined && fields.some((f) => String(got[f]) !== String(row[f]));
  });
  return { ghosts, lost, stale: stale.map(([k]) => k) };
}

/**
 * What a supervisor's restart backoff gives: the killed worker's walsender has let the slot go
 * (the server notices the dead connection only when it next reads or writes it).
 */
async function slotReleased(db: pg.Client, slot: string): Promise<void> {
  await eventually(
    `slot ${slot} released`,
    async () => {
      const { rows } = await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active', [
        slot,
      ]);
      return rows.length === 0 ? true : undefined;
    },
    90_000,
  );
}

const reads = (records: DecodedRecord[]): number => records.filter((r) => r.value?.op === 'r').length;

describe('chunked initial load', () => {
  const { db, reader } = stackSuite();

  test(`SIGKILL ${KILLS} times during a chunked load of six tables under writes: each topic replays to its table`, async () => {
    const name = uniqueName('chunkkill');
    const t = {
      int: `${name}_int`,
      comp: `${name}_comp`,
      text: `${name}_text`,
      nokey: `${name}_nokey`,
      empty: `${name}_empty`,
      one: `${name}_one`,
    };
    const sizes = { int: 36_000, comp: 12_000, text: 9_000, nokey: 300 };
    await db.query(`CREATE TABLE ${t.int} (id int PRIMARY KEY, v int NOT NULL, note text)`);
    await db.query(`INSERT INTO ${t.int} SELECT g, 0, 'seed' FROM generate_series(1, ${sizes.int}) g`);
    await db.query(`CREATE TABLE ${t.comp} (a int, b text, v int NOT NULL, PRIMARY KEY (a, b))`);
    await db.query(
      `INSERT INTO ${t.comp} SELECT g / 3, 'k' || (g % 3), 0 FROM generate_series(0, ${sizes.comp - 1}) g`,
    );
    // Text keys whose byte order differs from their collation order would be read out of order by
    // a reader that compared them the wrong way: the keyset comparison uses the column's collation.
    await db.query(`CREATE TABLE ${t.text} (code text PRIMARY KEY, v int NOT NULL)`);
    await db.query(
      `INSERT INTO ${t.text} SELECT (ARRAY['a','B','ä','Z','_'])[1 + g % 5] || md5(g::text), 0 FROM generate_series(1, ${sizes.text}) g`,
    );
    await db.query(`CREATE TABLE ${t.nokey} (x int, y text)`);
    await db.query(`ALTER TABLE ${t.nokey} REPLICA IDENTITY FULL`);
    await db.query(`INSERT INTO ${t.nokey} SELECT g, 'n' || g FROM generate_series(1, ${sizes.nokey}) g`);
    await db.query(`CREATE TABLE ${t.empty} (id int PRIMARY KEY)`);
    await db.query(`CREATE TABLE ${t.one} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${t.one} VALUES (1, 'only')`);

    const env = workerEnv(name, {
      PGCDC_TABLES_INCLUDE: Object.values(t)
        .map((x) => `public.${x}`)
        .join(','),
      PGCDC_SNAPSHOT_BATCH_SIZE: String(CHUNK),
      PGCDC_SNAPSHOT_PARALLELISM: '2',
      PGCDC_SNAPSHOT_METHOD: METHOD,
      PGCDC_LOG_LEVEL: 'info',
    });

    // The writer: every kind of change, on the keyed tables, all the time.
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      const w = await pgClient();
      let n = 0;
      try {
        while (writing) {
          n++;
          const r = (m: number) => 1 + ((n * 7919) % m);
          await w.query('BEGIN');
          await w.query(`INSERT INTO ${t.int} VALUES ($1, 0, 'new') ON CONFLICT DO NOTHING`, [sizes.int + n]);
          await w.query(`UPDATE ${t.int} SET v = v + 1 WHERE id = $1`, [r(sizes.int)]);
          if (n % 3 === 0) await w.query(`DELETE FROM ${t.int} WHERE id = $1`, [r(sizes.int + n)]);
          // A primary-key update: the row moves to a key range that may or may not be read yet.
          if (n % 4 === 0) {
            await w.query(`UPDATE ${t.int} SET id = id + 1000000 WHERE id = $1`, [r(sizes.int)]);
          }
          await w.query(`UPDATE ${t.comp} SET v = v + 1 WHERE a = $1`, [r(sizes.comp / 3) - 1]);
          if (n % 5 === 0)
            await w.query(`DELETE FROM ${t.comp} WHERE a = $1 AND b = 'k1'`, [r(sizes.comp / 3)]);
          await w.query(
            `UPDATE ${t.text} SET v = v + 1 WHERE code = (SELECT min(code) FROM ${t.text} WHERE v < $1)`,
            [n % 7],
          );
          if (n % 6 === 0) {
            await w.query(`DELETE FROM ${t.text} WHERE code = (SELECT max(code) FROM ${t.text} WHERE v = 0)`);
          }
          await w.query('COMMIT');
          writes++;
        }
      } finally {
        await w.end();
      }
    })();

    // Each kill waits until the worker reports the load (re)started, then lands at a random moment.
    let killsDuringLoad = 0;
    const slot = defaultSlotName(name);
    for (let i = 0; i < KILLS; i++) {
      await slotReleased(db, slot);
      const worker = spawnWorker(env);
      const begun = await eventually(
        'the worker reports the chunked load',
        async () => {
          const out = worker.output();
          if (/"snapshot completed"/.test(out)) return 'completed';
          return /"(chunked snapshot (started|resumed)|snapshot started)"/.test(out) ? 'loading' : undefined;
        },
        60_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; the worker printed:\n${worker.output().slice(-3000)}`);
      });
      if (begun === 'completed') break;
      await sleep(Math.floor(Math.random() * 300));
      const out = worker.output();
      worker.child.kill('SIGKILL');
      await exited(worker.child);
      if (!/"snapshot completed"/.test(out)) killsDuringLoad++;
    }
    writing = false;
    await writer;

    await slotReleased(db, slot);
    const final = spawnWorker(env);
    await eventually(
      'the load completes',
      async () => (/"snapshot completed"/.test(final.output()) ? true : undefined),
      120_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; the worker printed:\n${final.output().slice(-4000)}`);
    });
    // A last change after the load, so the replay waits for a stream that has caught up.
    await db.query(`UPDATE ${t.one} SET v = 'after'`);

    const intKey = (k: Record<string, unknown>) => String(k.id);
    const compKey = (k: Record<string, unknown>) => `${String(k.a)}/${String(k.b)}`;
    const textKey = (k: Record<string, unknown>) => String(k.code);
    const topicOf = (table: string) => `${name}.public.${table}`;
    await eventually(
      'the last change is in its topic',
      async () => {
        const one = replayByKey(await reader.read(topicOf(t.one)), intKey);
        return one.get('1')?.v === 'after' ? true : undefined;
      },
      120_000,
    );
    final.child.kill('SIGTERM');
    assert.equal(
      await exited(final.child),
      0,
      `graceful stop exits 0; output:\n${final.output().slice(-2000)}`,
    );

    const records = {
      int: await reader.read(topicOf(t.int)),
      comp: await reader.read(topicOf(t.comp)),
      text: await reader.read(topicOf(t.text)),
      nokey: await reader.read(topicOf(t.nokey)),
      empty: await reader.read(topicOf(t.empty)),
      one: await reader.read(topicOf(t.one)),
    };
    const results = {
      int: compare(replayByKey(records.int, intKey), await tableState(db, t.int, intKey), ['v', 'note']),
      comp: compare(replayByKey(records.comp, compKey), await tableState(db, t.comp, compKey), ['v']),
      text: compare(replayByKey(records.text, textKey), await tableState(db, t.text, textKey), ['v']),
      one: compare(replayByKey(records.one, intKey), await tableState(db, t.one, intKey), ['v']),
    };
    const readCounts = { int: reads(records.int), comp: reads(records.comp), text: reads(records.text) };
    const summary = JSON.stringify({
      writes,
      killsDuringLoad,
      readCounts,
      results: Object.fromEntries(
        Object.entries(results).map(([k, r]) => [
          k,
          {
            ghosts: r.ghosts.length,
            lost: r.lost.length,
            stale: r.stale.length,
            sample: [...r.ghosts, ...r.lost, ...r.stale].slice(0, 5),
          },
        ]),
      ),
    });
    console.log(`# chunked load under kills: ${summary}`);

    assert.ok(writes > 100, `the write load ran (${writes} transactions)`);
    assert.ok(killsDuringLoad >= Math.min(KILLS, 30), `kills during the load: ${killsDuringLoad}`);
    for (const [table, r] of Object.entries(results)) {
      assert.deepEqual(
        { ghosts: r.ghosts.length, lost: r.lost.length, stale: r.stale.length },
        { ghosts: 0, lost: 0, stale: 0 },
        `${table}: ${summary}`,
      );
    }
    // Completed chunks are not read again: at most the chunk in flight of each table per kill,
    // plus the rows the writer inserted or moved before their range was read.
    const slack = (killsDuringLoad + 1) * CHUNK;
    assert.ok(readCounts.int <= sizes.int + writes * 2 + slack, `rows read of ${t.int}: ${readCounts.int}`);
    assert.ok(readCounts.comp <= sizes.comp + slack, `rows read of ${t.comp}: ${readCounts.comp}`);
    assert.ok(readCounts.text <= sizes.text + slack, `rows read of ${t.text}: ${readCounts.text}`);
    // A table without a key is read in one pass (again after a kill): every row is there.
    const nokeyRows = new Set(
      records.nokey.filter((r) => r.value?.op === 'r').map((r) => JSON.stringify(r.value!.after)),
    );
    assert.equal(nokeyRows.size, sizes.nokey, 'every row of the key-less table');
    assert.equal(records.empty.length, 0, 'the empty table has no records');
  });
});
