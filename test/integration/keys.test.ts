// One key rule for the snapshot and the stream: with REPLICA IDENTITY USING INDEX on a table that
// also has a primary key, every record of a row (snapshot read, update, delete) has the same key,
// the index's columns, so they land on the same partition.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { eventually, uniqueName } from '../support/pipeline.ts';

describe('key rule', () => {
  const { db, reader } = stackSuite();

  test('REPLICA IDENTITY USING INDEX with a primary key: snapshot and stream key by the index', async () => {
    const name = uniqueName('key');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, code text NOT NULL, v text)`);
    await db.query(`CREATE UNIQUE INDEX ${t}_code ON ${t} (code)`);
    await db.query(`ALTER TABLE ${t} REPLICA IDENTITY USING INDEX ${t}_code`);
    await db.query(`INSERT INTO ${t} VALUES (1, 'a', 'x'), (2, 'b', 'y')`);
    const w = startConnector(name, { PGCDC_TABLES_INCLUDE: `public.${t}` });
    await streaming(w);
    await db.query(`UPDATE ${t} SET v = 'z' WHERE id = 1`);
    await db.query(`DELETE FROM ${t} WHERE id = 2`);
    const topic = `${name}.public.${t}`;
    const records = await eventually('the update and the delete', async () => {
      const r = await reader.read(topic);
      return r.some((x) => x.value?.op === 'd') ? r : undefined;
    });
    await w.connector.stop();
    await w.running;
    const keys = records.map((r) => `${r.value?.op ?? 'tombstone'} ${JSON.stringify(r.key)} p${r.partition}`);
    const byCode = (code: string) => records.filter((r) => r.key?.code === code).map((r) => r.partition);
    assert.deepEqual(
      records.map((r) => Object.keys(r.key!).sort().join(',')),
      records.map(() => 'code'),
      `every key is the index's column: ${keys.join('; ')}`,
    );
    assert.equal(new Set(byCode('a')).size, 1, 'row a: snapshot read and update on one partition');
    assert.equal(new Set(byCode('b')).size, 1, 'row b: snapshot read, delete and tombstone on one partition');
    assert.equal(byCode('a').length, 2);
    assert.equal(byCode('b').length, 3);
  });
});
