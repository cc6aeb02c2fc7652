// Multi-dimensional arrays: refused with the way out by default (the Avro type is a
// one-dimensional array), carried as PostgreSQL's array text with avro.arrayHandling=string.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { eventually, uniqueName } from '../support/pipeline.ts';

describe('arrays', () => {
  const { db, reader } = stackSuite();

  test('a two-dimensional value stops the default connector with the way out; arrayHandling=string carries it', async () => {
    const name = uniqueName('arr');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, m int[])`);
    await db.query(`INSERT INTO ${t} VALUES (1, '{{1,2},{3,NULL}}')`);

    const refused = startConnector(name, { PGCDC_TABLES_INCLUDE: `public.${t}` });
    const err = await refused.running.then(
      () => assert.fail('the connector should stop'),
      (e: Error) => e,
    );
    assert.match(err.message, new RegExp(`${t}.*m|m.*${t}`), 'names the table and column');
    assert.match(err.message, /avro\.arrayHandling=string/);

    const asText = startConnector(`${name}_s`, {
      PGCDC_TABLES_INCLUDE: `public.${t}`,
      PGCDC_AVRO_ARRAY_HANDLING: 'string',
    });
    await streaming(asText);
    const records = await eventually('the row as array text', async () => {
      const r = await reader.read(`${name}_s.public.${t}`);
      return r.length === 1 ? r : undefined;
    });
    assert.equal(records[0]!.value!.after!.m, '{{1,2},{3,NULL}}');
  });
});
