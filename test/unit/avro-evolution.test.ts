// Schema-change descriptions (src/avro/diff.ts) and the timePrecision option.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Relation } from '../../src/change/event.ts';
import {
  buildSchemas,
  planColumn,
  builtinTypeLookup,
  type AvroOptions,
  type AvroSchemaObject,
} from '../../src/avro/index.ts';
import { describeSchemaChange } from '../../src/avro/diff.ts';
import { microsToMillis } from '../../src/avro/values.ts';
import { noneCommand } from '../../src/pipeline/encoder.ts';

const rel = (cols: Array<[string, number, boolean?]>): Relation => ({
  oid: 1,
  schema: 'public',
  table: 't',
  replicaIdentity: 'default',
  columns: cols.map(([name, typeOid, isKey]) => ({ name, typeOid, typeMod: -1, isKey: isKey ?? false })),
});
const schemas = (cols: Array<[string, number, boolean?]>) => buildSchemas(rel(cols), { topicPrefix: 'p' });

test('describeSchemaChange names the column and the change', () => {
  const v1 = schemas([
    ['id', 23, true],
    ['v', 23],
    ['s', 25],
    ['gone', 25],
  ]);
  const v2 = schemas([
    ['id', 23, true],
    ['v', 25],
    ['s2', 25],
    ['added', 20],
  ]);
  assert.deepEqual(describeSchemaChange(v1.value, v2.value, 'value'), [
    'column s renamed to s2',
    'column gone dropped',
    'column v: int → string',
    'column added added (long)',
  ]);
  assert.deepEqual(describeSchemaChange(v1.value, v1.value, 'value'), []);
  const k2 = schemas([
    ['id', 23, true],
    ['k', 25, true],
  ]);
  assert.deepEqual(describeSchemaChange(v1.key, k2.key, 'key'), ['key columns (id) → (id, k)']);
});

test('timePrecision millis: Time int and Timestamp longs, floored; Debezium infinity sentinels', () => {
  const plan = (oid: number, options: AvroOptions = { timePrecision: 'millis' }) =>
    planColumn({ name: 'c', typeOid: oid, typeMod: -1, isKey: false }, builtinTypeLookup(oid), options);
  assert.deepEqual(plan(1083).schema, {
    type: 'int',
    'connect.version': 1,
    'connect.name': 'io.debezium.time.Time',
  });
  assert.equal(plan(1083).convert('23:59:59.999999'), 86_399_999);
  assert.equal((plan(1114).schema as AvroSchemaObject)['connect.name'], 'io.debezium.time.Timestamp');
  assert.equal(plan(1114).convert('1969-12-31 23:59:59.999999'), -1n, 'floored, not truncated toward 0');
  assert.equal(plan(1114).convert('infinity'), 9223372036825200n);
  const avroMillis = { timePrecision: 'millis', typeMode: 'avro' } as const;
  assert.equal(plan(1184, avroMillis).convert('1970-01-01 00:00:00.001999+00'), 1n);
  assert.equal((plan(1184, avroMillis).schema as AvroSchemaObject).logicalType, 'timestamp-millis');
  assert.equal(microsToMillis(-1000n), -1n);
  assert.equal(microsToMillis(-1001n), -2n);
  assert.equal(
    (plan(1083, {}).schema as AvroSchemaObject)['connect.name'],
    'io.debezium.time.MicroTime',
    'adaptive by default: time without a declared precision is microseconds',
  );
});

test('the way out of an incompatible change, per registry', () => {
  assert.match(
    noneCommand('http://r:8080/apis/ccompat/v7', 'a.b-value'),
    /apis\/registry\/v3\/groups\/default\/artifacts\/a\.b-value\/rules/,
  );
  assert.match(noneCommand('http://r:8081', 'a.b-value'), /PUT .*http:\/\/r:8081\/config\/a\.b-value/);
});
