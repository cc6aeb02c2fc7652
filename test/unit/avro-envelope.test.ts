import { test } from 'node:test';
import assert from 'node:assert/strict';
import avsc from 'avsc';
import { UNCHANGED_TOAST, type ChangeEvent, type Column, type Relation } from '../../src/change/event.ts';
import { DataError } from '../../src/avro/errors.ts';
import {
  PGCDC_VERSION,
  buildSchemas,
  compileRelation,
  envelopeValue,
  toAvroKey,
  toAvroRow,
} from '../../src/avro/envelope.ts';
import type { PgTypeInfo } from '../../src/avro/types.ts';
import { decimalBytesToText } from '../../src/avro/values.ts';

const numericMod = (p: number, s: number): number => ((p << 16) | s) + 4;
const c = (name: string, typeOid: number, typeMod = -1, isKey = false): Column => ({
  name,
  typeOid,
  typeMod,
  isKey,
});

const mood: PgTypeInfo = {
  oid: 50001,
  name: 'mood',
  schema: 'public',
  kind: 'enum',
  enumLabels: ['sad', 'happy'],
};
const typeLookup = (oid: number): PgTypeInfo | undefined => (oid === 50001 ? mood : undefined);

function relation(): Relation {
  return {
    oid: 16384,
    schema: 'public',
    table: 'orders',
    replicaIdentity: 'default',
    columns: [
      c('id', 20, -1, true),
      c('region', 25, -1, true),
      c('amount', 1700, numericMod(20, 5)),
      c('qty', 23),
      c('note', 25),
      c('data', 17),
      c('tags', 1009),
      c('blobs', 1001),
      c('doc', 3802),
      c('created', 1184),
      c('day', 1082),
      c('mood', 50001),
      c('ratio', 701),
      c('ip', 869),
      c('a-b', 25),
      c('a_b', 25),
    ],
  };
}

const row = [
  '9223372036854775807',
  'eu',
  '-123.45000',
  '3',
  'hello',
  '\\x0102',
  '{x,"y,z",NULL}',
  '{"\\\\x01"}',
  '{"k": 1}',
  '2024-01-02 03:04:05.123456+00',
  '2024-01-02',
  'happy',
  'NaN',
  '10.0.0.1',
  'dash',
  'under',
];

type Rec = Record<string, unknown>;
interface Decoded {
  before: Rec;
  after: Rec;
  source: Rec;
  op: string;
  ts_ms: bigint | null;
  transaction: Rec | null;
}

const opts = { topicPrefix: 'pgcdc', database: 'shop', typeLookup };

test('schemas: names, key, nullable value fields with defaults, envelope shape', () => {
  const s = buildSchemas(relation(), opts);
  assert.equal(s.namespace, 'pgcdc.public.orders');
  assert.ok(s.key);
  assert.equal(s.key.name, 'Key');
  assert.equal(s.key.namespace, 'pgcdc.public.orders');
  assert.deepEqual(s.key.fields, [
    { name: 'id', type: 'long' },
    { name: 'region', type: 'string' },
  ]);
  const env = s.value;
  assert.equal(env.name, 'Envelope');
  assert.equal(env['connect.name'], 'pgcdc.public.orders.Envelope');
  const fields = env.fields as Array<{ name: string; type: unknown; default?: unknown }>;
  assert.deepEqual(
    fields.map((f) => f.name),
    ['before', 'after', 'source', 'op', 'ts_ms', 'ts_us', 'ts_ns', 'transaction'],
  );
  assert.equal(env['connect.version'], 2, "Debezium's Envelope schema version");
  const before = (fields[0]?.type as unknown[])[1] as {
    name: string;
    fields: Array<Record<string, unknown>>;
  };
  assert.equal(before.name, 'Value');
  assert.equal(fields[1]?.default, null);
  assert.deepEqual(fields[1]?.type, ['null', 'pgcdc.public.orders.Value']);
  for (const f of before.fields) {
    assert.equal((f.type as unknown[])[0], 'null');
    assert.equal(f.default, null);
  }
  assert.deepEqual(
    before.fields.map((f) => f.name),
    [
      'id',
      'region',
      'amount',
      'qty',
      'note',
      'data',
      'tags',
      'blobs',
      'doc',
      'created',
      'day',
      'mood',
      'ratio',
      'ip',
      'a_b_2',
      'a_b',
    ],
  );
  assert.equal(before.fields[14]?.['pg.name'], 'a-b');
  assert.equal(before.fields[15]?.['pg.name'], undefined);
  const source = fields[2]?.type as { name: string; namespace: string; fields: Array<{ name: string }> };
  assert.equal(`${source.namespace}.${source.name}`, 'io.debezium.connector.postgresql.Source');
  assert.deepEqual(
    source.fields.map((f) => f.name),
    [
      'version',
      'connector',
      'name',
      'ts_ms',
      'snapshot',
      'db',
      'sequence',
      'ts_us',
      'ts_ns',
      'schema',
      'table',
      'txId',
      'lsn',
      'xmin',
    ],
  );
});

test('schemas are deterministic (byte-identical JSON) and valid for avsc', () => {
  const a = buildSchemas(relation(), opts);
  const b = buildSchemas(structuredClone(relation()), { ...opts });
  assert.equal(JSON.stringify(a.value), JSON.stringify(b.value));
  assert.equal(JSON.stringify(a.key), JSON.stringify(b.key));
  // Plain avsc (no custom long) accepts them too: what a registry or consumer would parse.
  assert.doesNotThrow(() => avsc.Type.forSchema(a.value as avsc.Schema));
  assert.doesNotThrow(() => avsc.Type.forSchema(a.key as avsc.Schema));
});

test('key-less relation: null key schema and null key', () => {
  const rel: Relation = {
    ...relation(),
    columns: relation().columns.map((col) => ({ ...col, isKey: false })),
  };
  const compiled = compileRelation(rel, opts);
  assert.equal(compiled.schemas.key, null);
  assert.equal(compiled.keyType, null);
  assert.equal(toAvroKey(rel, row, compiled), null);
});

test('an envelope value encodes and decodes, values exact', () => {
  const rel = relation();
  const compiled = compileRelation(rel, { ...opts, options: { decimalHandling: 'precise' } });
  const event: ChangeEvent = {
    op: 'u',
    relation: rel,
    before: [
      '9223372036854775807',
      'eu',
      null,
      null,
      null,
      null,
      null,
      null,
      null,
      null,
      null,
      null,
      null,
      null,
      null,
      null,
    ],
    after: row,
    xid: 4242,
    lsn: 0x16b3748n,
    commitLsn: 0x16b3800n,
    commitTimeMicros: 1_704_164_645_123_456n,
    seq: 3,
    snapshot: 'false',
  };
  const value = envelopeValue(event, compiled, { nowMs: 1_704_164_646_000 });
  const decoded = compiled.valueType.fromBuffer(compiled.valueType.toBuffer(value)) as Decoded;
  assert.equal(decoded.op, 'u');
  assert.equal(decoded.ts_ms, 1_704_164_646_000n);
  assert.equal((decoded as unknown as Rec).ts_us, 1_704_164_646_000_000n);
  assert.equal((decoded as unknown as Rec).ts_ns, 1_704_164_646_000_000_000n);
  assert.equal(decoded.transaction, null);
  assert.deepEqual(
    { ...decoded.source },
    {
      version: PGCDC_VERSION,
      connector: 'postgresql',
      name: 'pgcdc',
      ts_ms: 1_704_164_645_123n,
      snapshot: 'false',
      db: 'shop',
      sequence: `["${0x16b3800}","${0x16b3748}"]`,
      ts_us: 1_704_164_645_123_456n,
      ts_ns: 1_704_164_645_123_456_000n,
      schema: 'public',
      table: 'orders',
      txId: 4242n,
      lsn: 0x16b3748n,
      xmin: null,
    },
  );
  const after = decoded.after;
  assert.equal(after.id, 9223372036854775807n);
  assert.equal(decimalBytesToText(after.amount as Buffer, 5), '-123.45000');
  assert.equal(after.qty, 3);
  assert.deepEqual(after.data, Buffer.from([1, 2]));
  assert.deepEqual(after.tags, ['x', 'y,z', null]);
  assert.deepEqual(after.blobs, [Buffer.from([1])]);
  assert.equal(after.doc, '{"k": 1}');
  assert.equal(after.created, '2024-01-02T03:04:05.123456Z');
  assert.equal(after.day, 19724);
  assert.equal(after.mood, 'happy');
  assert.ok(Number.isNaN(after.ratio as number));
  assert.equal(after.ip, '10.0.0.1');
  assert.equal(after.a_b_2, 'dash');
  assert.equal(after.a_b, 'under');
  assert.equal(decoded.before.id, 9223372036854775807n);
  assert.equal(decoded.before.amount, null);

  const key = toAvroKey(rel, row, compiled);
  assert.deepEqual(key, { id: 9223372036854775807n, region: 'eu' });
  assert.deepEqual({ ...(compiled.keyType?.fromBuffer(compiled.keyType.toBuffer(key)) as object) }, key);
});

test('snapshot read and delete envelopes', () => {
  const rel = relation();
  const compiled = compileRelation(rel, { ...opts, serverName: 'inventory' });
  const base = { relation: rel, lsn: 100n, commitLsn: 100n, commitTimeMicros: 5_000n, seq: 0 };
  const read = envelopeValue(
    { ...base, op: 'r', before: null, after: row, xid: null, snapshot: 'last' },
    compiled,
  );
  const decoded = compiled.valueType.fromBuffer(compiled.valueType.toBuffer(read)) as Decoded;
  assert.equal(decoded.source.snapshot, 'last');
  assert.equal(decoded.source.txId, null);
  assert.equal(decoded.source.name, 'inventory');
  assert.equal(decoded.source.ts_ms, 5n);
  const del = envelopeValue(
    { ...base, op: 'd', before: row, after: null, xid: 7, snapshot: 'false' },
    compiled,
    {
      transaction: { id: '7:100', totalOrder: 1n, dataCollectionOrder: 1n },
    },
  );
  const d = compiled.valueType.fromBuffer(compiled.valueType.toBuffer(del)) as Decoded;
  assert.equal(d.after, null);
  assert.equal(d.before.region, 'eu');
  assert.deepEqual({ ...d.transaction }, { id: '7:100', total_order: 1n, data_collection_order: 1n });
});

test('unchanged TOAST: placeholder per type, null and reported where not representable', () => {
  const rel = relation();
  const reported: string[] = [];
  const compiled = compileRelation(rel, {
    ...opts,
    options: { toastPlaceholder: '__unavailable' },
    onToastNull: (_r, col) => reported.push(col.name),
  });
  const toasted = row.map((v, i) => (i < 2 ? v : UNCHANGED_TOAST));
  const out = toAvroRow(rel, toasted, compiled);
  assert.equal(out.note, '__unavailable');
  assert.equal(out.doc, '__unavailable');
  assert.equal(out.mood, '__unavailable');
  assert.equal(out.ip, '__unavailable');
  assert.deepEqual(out.data, Buffer.from('__unavailable'));
  assert.deepEqual(out.tags, ['__unavailable']);
  assert.deepEqual(out.blobs, [Buffer.from('__unavailable')]);
  for (const name of ['amount', 'qty', 'day', 'ratio']) assert.equal(out[name], null, name);
  assert.deepEqual(reported, ['amount', 'qty', 'day', 'ratio']);
  assert.equal(compiled.toastNulls, 4);
  // Still a valid Value: the whole envelope encodes.
  const event: ChangeEvent = {
    op: 'u',
    relation: rel,
    before: null,
    after: toasted,
    xid: 1,
    lsn: 1n,
    commitLsn: 1n,
    commitTimeMicros: 0n,
    seq: 0,
    snapshot: 'false',
  };
  assert.doesNotThrow(() => compiled.valueType.toBuffer(envelopeValue(event, compiled)));

  const def = compileRelation(rel, opts);
  assert.equal(toAvroRow(rel, toasted, def).note, '__debezium_unavailable_value');
  const hex = compileRelation(rel, { ...opts, options: { binaryHandling: 'hex' } });
  assert.equal(toAvroRow(rel, toasted, hex).data, '__debezium_unavailable_value');
});

test('key values: TOAST and null are errors, never a wrong key', () => {
  const rel = relation();
  const compiled = compileRelation(rel, opts);
  const toastKey = [...row];
  (toastKey as unknown[])[1] = UNCHANGED_TOAST;
  assert.throws(
    () => toAvroKey(rel, toastKey, compiled),
    (e: unknown) => e instanceof DataError && /REPLICA IDENTITY FULL/.test(e.message),
  );
  const nullKey = [...row];
  nullKey[0] = null as unknown as string;
  assert.throws(() => toAvroKey(rel, nullKey, compiled), /public\.orders\.id: key column value is null/);
});

test('a numeric NaN in a decimal column fails the event, naming the column', () => {
  const rel = relation();
  const compiled = compileRelation(rel, opts);
  const bad = [...row];
  bad[2] = 'NaN';
  assert.throws(() => toAvroRow(rel, bad, compiled), /public\.orders\.amount: numeric value NaN/);
});

test('constant column defaults become field defaults, as Connect AvroData writes them', () => {
  const rel: Relation = {
    ...relation(),
    columns: [
      c('id', 20, -1, true),
      { ...c('flag', 23), defaultText: '7' },
      { ...c('label', 25), defaultText: "it's" },
      { ...c('day', 1082), defaultText: '2024-01-02' },
      { ...c('ratio', 701), defaultText: 'NaN' },
      { ...c('tags', 1009), defaultText: '{a}' },
      { ...c('small', 21), defaultText: '-3' },
    ],
  };
  const s = buildSchemas(rel, opts);
  const env = s.value.fields as Array<{ type: unknown }>;
  const value = (env[0]!.type as unknown[])[1] as { fields: Array<Record<string, unknown>> };
  const byName = Object.fromEntries(value.fields.map((f) => [f.name, f]));
  assert.deepEqual(byName.flag, {
    name: 'flag',
    type: [{ type: 'int', 'connect.default': 7 }, 'null'],
    default: 7,
  });
  assert.deepEqual(byName.label, {
    name: 'label',
    type: [{ type: 'string', 'connect.default': "it's" }, 'null'],
    default: "it's",
  });
  assert.deepEqual(byName.day, {
    name: 'day',
    type: [
      {
        type: 'int',
        'connect.version': 1,
        'connect.default': 19724,
        'connect.name': 'io.debezium.time.Date',
      },
      'null',
    ],
    default: 19724,
  });
  assert.deepEqual(byName.small, {
    name: 'small',
    type: [{ type: 'int', 'connect.default': -3, 'connect.type': 'int16' }, 'null'],
    default: -3,
  });
  // Not representable in JSON (NaN) or not supported (arrays): no default rather than a wrong one.
  assert.deepEqual(byName.ratio, { name: 'ratio', type: ['null', 'double'], default: null });
  assert.deepEqual(byName.tags?.default, null);
  // Plain Avro accepts the defaults (a union's default is its first branch's).
  assert.doesNotThrow(() => avsc.Type.forSchema(s.value as avsc.Schema));
  const plain = buildSchemas(rel, { ...opts, options: { typeMode: 'avro' } });
  const pv = ((plain.value.fields as Array<{ type: unknown }>)[0]!.type as unknown[])[1] as {
    fields: Array<Record<string, unknown>>;
  };
  assert.deepEqual(pv.fields[3], {
    name: 'day',
    type: [{ type: 'int', logicalType: 'date' }, 'null'],
    default: 19724,
  });
  // A reader of the new schema fills a record written before the column existed with the default.
  const compiled = compileRelation(rel, opts);
  const old = compileRelation({ ...rel, columns: rel.columns.slice(0, 1) }, opts);
  const ev = (r: Relation): ChangeEvent => ({
    op: 'c',
    relation: r,
    before: null,
    after: r.columns.map(() => '1'),
    xid: 1,
    lsn: 1n,
    commitLsn: 1n,
    commitTimeMicros: 0n,
    seq: 0,
    snapshot: 'false',
  });
  const buf = old.valueType.toBuffer(envelopeValue(ev(old.relation), old));
  const resolver = compiled.valueType.createResolver(old.valueType);
  const read = compiled.valueType.fromBuffer(buf, resolver) as Decoded;
  assert.equal(read.after.flag, 7);
  assert.equal(read.after.label, "it's");
});

test('source.snapshot carries every Debezium 3.x value', () => {
  const rel = relation();
  const compiled = compileRelation(rel, opts);
  for (const snapshot of [
    'first',
    'first_in_data_collection',
    'true',
    'last_in_data_collection',
    'last',
  ] as const) {
    const v = envelopeValue(
      {
        relation: rel,
        lsn: 1n,
        commitLsn: 1n,
        commitTimeMicros: 0n,
        seq: 0,
        op: 'r',
        before: null,
        after: row,
        xid: null,
        snapshot,
      },
      compiled,
    );
    const d = compiled.valueType.fromBuffer(compiled.valueType.toBuffer(v)) as Decoded;
    assert.equal(d.source.snapshot, snapshot);
  }
});
