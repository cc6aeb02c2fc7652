// Partitioned tables as users point pgcdc at them: the parent is captured, every row (snapshot
// and stream, from partitions attached before or while streaming) lands on the parent's topic, a
// detached partition stops being captured, and the worker restarts on the publication it made.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { eventually, uniqueName, type DecodedRecord } from '../support/pipeline.ts';

const rows = (rs: DecodedRecord[]) =>
  rs
    .map((r) =>
      r.value ? `${r.value.op}:${String(r.key!.id)}:${String(r.value.source.table)}` : 'tombstone',
    )
    .sort();

describe('partitioned tables', () => {
  const { db, reader } = stackSuite();

  async function partitioned(schema: string, t: string): Promise<void> {
    await db.query(
      `CREATE TABLE ${schema}.${t} (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`,
    );
    await db.query(`CREATE TABLE ${schema}.${t}_eu PARTITION OF ${schema}.${t} FOR VALUES IN ('eu')`);
    await db.query(`CREATE TABLE ${schema}.${t}_us PARTITION OF ${schema}.${t} FOR VALUES IN ('us')`);
    await db.query(`INSERT INTO ${schema}.${t} VALUES (1, 'eu', 'a'), (2, 'us', 'b')`);
  }

  test('tables.include names the parent: snapshot, stream, attach and detach while streaming, restart', async () => {
    const name = uniqueName('part');
    const t = `${name}_p`;
    await partitioned('public', t);
    const extra = { PGCDC_TABLES_INCLUDE: `public.${t}` };
    const topic = `${name}.public.${t}`;

    let w = startConnector(name, extra);
    await streaming(w);
    await db.query(`INSERT INTO ${t} VALUES (3, 'eu', 'c'), (4, 'us', 'd')`);
    // A partition attached while streaming: its rows are the parent's.
    await db.query(`CREATE TABLE ${t}_asia (LIKE ${t} INCLUDING ALL)`);
    await db.query(`ALTER TABLE ${t} ATTACH PARTITION ${t}_asia FOR VALUES IN ('asia')`);
    await db.query(`INSERT INTO ${t} VALUES (5, 'asia', 'e')`);
    // A detached partition is an ordinary table of its own, outside the selection.
    await db.query(`ALTER TABLE ${t} DETACH PARTITION ${t}_us`);
    await db.query(`INSERT INTO ${t}_us VALUES (6, 'us', 'f')`);
    await db.query(`INSERT INTO ${t} VALUES (7, 'eu', 'g')`);
    await eventually('the stream on the parent topic', async () =>
      (await reader.read(topic)).some((r) => r.value?.after?.id === 7) ? true : undefined,
    );
    await w.connector.stop();
    await w.running;

    // The second start finds its publication as it left it.
    w = startConnector(name, extra);
    await streaming(w);
    await db.query(`INSERT INTO ${t} VALUES (8, 'asia', 'h')`);
    const all = await eventually('the change after the restart', async () => {
      const r = await reader.read(topic);
      return r.some((x) => x.value?.after?.id === 8) ? r : undefined;
    });
    await w.connector.stop();
    await w.running;

    assert.deepEqual(
      rows(all),
      [`r:1:${t}`, `r:2:${t}`, `c:3:${t}`, `c:4:${t}`, `c:5:${t}`, `c:7:${t}`, `c:8:${t}`].sort(),
      'every row once, on the parent topic with the parent as source.table; nothing of the detached partition',
    );
    for (const p of ['eu', 'us', 'asia']) {
      assert.deepEqual(await reader.read(`${name}.public.${t}_${p}`), [], `no topic for partition ${p}`);
    }
  });

  test('schema selection: the parent is captured, partitions are not tables of their own', async () => {
    const name = uniqueName('psch');
    const schema = name;
    await db.query(`CREATE SCHEMA ${schema}`);
    await partitioned(schema, 'm');
    const w = startConnector(name, { PGCDC_POSTGRES_SCHEMAS: schema });
    await streaming(w);
    await db.query(`INSERT INTO ${schema}.m VALUES (3, 'us', 'c')`);
    const topic = `${name}.${schema}.m`;
    const all = await eventually('the streamed row on the parent topic', async () => {
      const r = await reader.read(topic);
      return r.some((x) => x.value?.after?.id === 3) ? r : undefined;
    });
    await w.connector.stop();
    await w.running;
    assert.deepEqual(rows(all), ['c:3:m', 'r:1:m', 'r:2:m']);
    assert.deepEqual(await reader.read(`${name}.${schema}.m_us`), [], 'no topic for the partition');
  });

  test('a hand-made publication without publish_via_partition_root: refused with the fix, or fixed with autoCreate', async () => {
    const name = uniqueName('ppub');
    const t = `${name}_p`;
    await partitioned('public', t);
    const pub = `${name}_pub`;
    await db.query(`CREATE PUBLICATION ${pub} FOR TABLE ${t}`);
    const extra = { PGCDC_TABLES_INCLUDE: `public.${t}`, PGCDC_PUBLICATION_NAME: pub };
    const refused = startConnector(name, { ...extra, PGCDC_PUBLICATION_AUTO_CREATE: 'false' });
    await assert.rejects(
      refused.running,
      (err: Error) =>
        /publishes the partitions of .* under their own names/.test(err.message) &&
        err.message.includes(`ALTER PUBLICATION "${pub}" SET (publish_via_partition_root = true);`) &&
        !err.message.includes('\n'),
    );

    const w = startConnector(name, extra);
    await streaming(w);
    await db.query(`INSERT INTO ${t} VALUES (3, 'us', 'c')`);
    const topic = `${name}.public.${t}`;
    const all = await eventually('the streamed row on the parent topic', async () => {
      const r = await reader.read(topic);
      return r.some((x) => x.value?.after?.id === 3) ? r : undefined;
    });
    await w.connector.stop();
    await w.running;
    assert.deepEqual(rows(all), [`c:3:${t}`, `r:1:${t}`, `r:2:${t}`]);
    await db.query(`DROP PUBLICATION ${pub}`);
  });
});
