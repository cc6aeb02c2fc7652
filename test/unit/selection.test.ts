// The one selection and key rule, as pure decisions.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { keyColumns, selectTables, selector, tableKey } from '../../src/capture/selection.ts';
import {
  publicationChecks,
  type PublicationFacts,
  type RoleFacts,
  type TableFacts,
} from '../../src/postgres/preflight/rules.ts';

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

describe('publication advice for partitioned tables (pgcdc check)', () => {
  const table = (partitioned: boolean): TableFacts => ({
    schema: 'public',
    table: partitioned ? 'm' : 'o',
    sqlName: partitioned ? 'public.m' : 'public.o',
    sqlSchema: 'public',
    partitioned,
    owner: 'u',
    owned: true,
    canSelect: true,
    schemaUsage: true,
    primaryKey: ['id'],
    replicaIdentity: 'default',
    estimatedRows: 0,
    sizeBytes: null,
  });
  const role: RoleFacts = {
    user: 'u',
    sqlUser: 'u',
    database: 'd',
    superuser: true,
    replication: true,
    rdsReplication: false,
    inheritedReplicationRoles: [],
    createOnDatabase: true,
  };
  const pub = (exists: boolean, viaRoot: boolean): PublicationFacts => ({
    name: 'p',
    sqlName: 'p',
    exists,
    allTables: false,
    owned: true,
    tables: new Set([tableKey({ schema: 'public', table: 'm' })]),
    viaRoot,
    publishes: { insert: true, update: true, delete: true, truncate: true },
  });

  it('creates the publication with publish_via_partition_root when a selected table is partitioned', () => {
    const [r] = publicationChecks(pub(false, false), [table(true)], role, false);
    assert.match(
      r!.fix!,
      /CREATE PUBLICATION p FOR TABLE public\.m WITH \(publish_via_partition_root = true\);/,
    );
    const [plain] = publicationChecks(pub(false, false), [table(false)], role, false);
    assert.doesNotMatch(plain!.fix!, /publish_via_partition_root/);
  });

  it('refuses an existing publication that publishes partitions under their own names (without autoCreate)', () => {
    const out = publicationChecks(pub(true, false), [table(true)], role, false);
    const line = out.find((r) => /under their own names/.test(r.message));
    assert.equal(line?.status, 'failed');
    assert.equal(line?.fix, 'ALTER PUBLICATION p SET (publish_via_partition_root = true);');
    assert.equal(
      publicationChecks(pub(true, true), [table(true)], role, false).some((r) => r.status === 'failed'),
      false,
    );
  });
});
