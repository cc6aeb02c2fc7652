// The one selection and key rule, as pure decisions.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { keyColumns, selectTables, selector } from '../../src/capture/selection.ts';

const t = (schema: string, table: string) => ({ schema, table });

describe('selection', () => {
  const all = [t('public', 'a'), t('public', 'b'), t('sales', 'orders'), t('a.b', 'c'), t('a', 'b.c')];

  it('takes every table of the schemas when include is empty, minus exclude', () => {
    const { selected, missing } = selectTables(all, {
      schemas: ['public', 'sales'],
      include: [],
      exclude: [t('public', 'b')],
    });
    assert.deepEqual(selected, [t('public', 'a'), t('sales', 'orders')]);
    assert.deepEqual(missing, []);
  });

  it('takes include in its order, ignores schemas, reports missing entries', () => {
    const { selected, missing } = selectTables(all, {
      schemas: ['public'],
      include: [t('sales', 'orders'), t('public', 'a'), t('public', 'nope')],
      exclude: [],
    });
    assert.deepEqual(selected, [t('sales', 'orders'), t('public', 'a')]);
    assert.deepEqual(missing, [t('public', 'nope')]);
  });

  it('tells "a.b"."c" from "a"."b.c"', () => {
    const selects = selector({ schemas: [], include: [t('a.b', 'c')], exclude: [] });
    assert.equal(selects(t('a.b', 'c')), true);
    assert.equal(selects(t('a', 'b.c')), false);
  });

  it('the stream predicate and the snapshot list agree', () => {
    const sel = { schemas: ['public'], include: [], exclude: [t('public', 'a')] };
    const selects = selector(sel);
    assert.deepEqual(all.filter(selects), selectTables(all, sel).selected);
  });
});

describe('key rule', () => {
  it('keys by the replica identity index under USING INDEX, even with a primary key', () => {
    assert.deepEqual(keyColumns('index', ['id'], ['code']), ['code']);
  });
  it('keys by the primary key otherwise', () => {
    assert.deepEqual(keyColumns('default', ['id'], []), ['id']);
    assert.deepEqual(keyColumns('full', ['id', 'region'], []), ['id', 'region']);
    assert.deepEqual(keyColumns('nothing', ['id'], []), ['id']);
  });
  it('has no key without a primary key or identity index', () => {
    assert.deepEqual(keyColumns('full', [], []), []);
  });
});
