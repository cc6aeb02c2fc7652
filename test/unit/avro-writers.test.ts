// The envelope's two faster writers (src/avro/envelope.ts) must write exactly what avsc writes:
// nullable unions decided by `val === null`, and the source block copied as bytes when handed the
// same object again. Each envelope is encoded by avroTypeForSchema's type and by a reference type
// that has only the bigint long (avsc's own union and record writers), and the bytes compared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import avsc from 'avsc';
import {
  avroTypeForSchema,
  bigintLongType,
  compileRelation,
  envelopeValue,
} from '../../src/avro/envelope.ts';
import type { ChangeEvent, Relation, Row } from '../../src/change/event.ts';
import { UNCHANGED_TOAST } from '../../src/change/event.ts';

const col = (name: string, typeOid: number, typeMod = -1, isKey = false, defaultText?: string) => ({
  name,
  typeOid,
  typeMod,
  isKey,
  ...(defaultText === undefined ? {} : { defaultText }),
});
const relation: Relation = {
  oid: 1,
  schema: 'public',
  table: 'orders',
  replicaIdentity: 'f' as Relation['replicaIdentity'],
  columns: [
    col('id', 20, -1, true),
    col('account_id', 23),
    col('amount', 1700, ((12 << 16) | 2) + 4),
    col('quantity', 21, -1, false, '1'),
    col('status', 25, -1, false, 'new'),
    col('note', 25),
    col('created_at', 1184),
    col('paid', 16),
    col('ref', 2950),
    col('attrs', 3802),
    col('score', 701),
    col('ship_date', 1082),
    col('tags', 1009),
    col('blob', 17),
  ],
};

function row(i: number): Row {
  const nul = (k: number) => (i + k) % 4 === 0;
  return [
    String(i * 2 ** 40 + i), // past 2^52 for large i: the bigint long's general path
    nul(1) ? null : String(-i),
    nul(2) ? null : (i / 7).toFixed(2),
    nul(3) ? null : String(i % 300),
    nul(0) ? null : 'shipped',
    i % 9 === 0 ? UNCHANGED_TOAST : nul(1) ? null : 'n'.repeat(i % 50),
    nul(2) ? null : '2024-03-01 12:34:56.789+00',
    nul(3) ? null : i % 2 ? 't' : 'f',
    nul(0) ? null : '6f1e8a3c-1d2b-4c5e-9f0a-123456789abc',
    nul(1) ? null : `{"k": ${i}}`,
    nul(2) ? null : String(i / 3),
    nul(3) ? null : '2024-05-06',
    nul(0) ? null : '{a,"b c",NULL}',
    nul(1) ? null : '\\x00ff10',
  ];
}

const compiled = compileRelation(relation, { topicPrefix: 'app', database: 'shop' });
const isLong = (s: unknown) =>
  s === 'long' || (typeof s === 'object' && s !== null && (s as { type?: unknown }).type === 'long');
const reference = avsc.Type.forSchema(compiled.schemas.value as avsc.Schema, {
  typeHook: (s) => (isLong(s) ? bigintLongType : undefined),
});

function events(): Array<{
  event: ChangeEvent;
  tx?: { id: string; totalOrder: bigint; dataCollectionOrder: bigint };
}> {
  const base = {
    relation,
    commitTimeMicros: 1_700_000_000_000_000n,
    seq: 0,
  };
  const out: Array<{
    event: ChangeEvent;
    tx?: { id: string; totalOrder: bigint; dataCollectionOrder: bigint };
  }> = [];
  // A snapshot chunk: one position, so one source object for the run, then the chunk's last row.
  for (let i = 0; i < 200; i++) {
    out.push({
      event: {
        ...base,
        op: 'r',
        before: null,
        after: row(i),
        xid: null,
        lsn: 5_000_000n,
        commitLsn: 5_000_000n,
        snapshot: i === 199 ? 'last' : 'true',
      },
    });
  }
  // Streaming: inserts, updates with the old row, deletes, each at its own LSN, some with a
  // transaction block, LSNs and xids past 2^52 / 2^32.
  for (let i = 0; i < 300; i++) {
    const op = (['c', 'u', 'd'] as const)[i % 3]!;
    const lsn = BigInt(i) * 2n ** 44n + 17n;
    out.push({
      event: {
        ...base,
        op,
        before: op === 'c' ? null : row(i + 1),
        after: op === 'd' ? null : row(i),
        xid: 4_000_000_000 - i,
        lsn,
        commitLsn: lsn + 100n,
        commitTimeMicros: base.commitTimeMicros + BigInt(i >> 2),
        snapshot: 'false',
      },
      ...(i % 2
        ? { tx: { id: `${i}:${lsn}`, totalOrder: BigInt(i), dataCollectionOrder: BigInt(i >> 1) } }
        : {}),
    });
  }
  // capture.method xmin: no LSN, an xid8.
  for (let i = 0; i < 20; i++) {
    out.push({
      event: {
        ...base,
        op: 'c',
        before: null,
        after: row(i),
        xid: null,
        lsn: 0n,
        commitLsn: 0n,
        snapshot: 'false',
        xmin: 2n ** 33n + BigInt(i % 3),
      },
    });
  }
  return out;
}

test('envelopes: the faster writers write the same bytes as avsc (snapshot, streaming, xmin)', () => {
  const all = events();
  const encoded = all.map(({ event, tx }) => {
    const value = envelopeValue(event, compiled, { nowMs: 1_700_000_000_123, transaction: tx ?? null });
    return { fast: compiled.valueType.toBuffer(value), plain: reference.toBuffer(value) };
  });
  for (const [i, e] of encoded.entries()) assert.ok(e.fast.equals(e.plain), `event ${i}`);
  // And avsc reads them back as what was written (the chunk's rows share one source block).
  const first = compiled.valueType.fromBuffer(encoded[0]!.fast) as {
    source: { snapshot: string; lsn: bigint };
  };
  const last = compiled.valueType.fromBuffer(encoded[199]!.fast) as { source: { snapshot: string } };
  assert.deepEqual(
    [first.source.snapshot, first.source.lsn, last.source.snapshot],
    ['true', 5_000_000n, 'last'],
  );
});

test('envelopes: rows of one chunk share one source object; a change of any position is a new one', () => {
  const e = events()[0]!.event;
  const a = envelopeValue(e, compiled).source;
  assert.equal(envelopeValue({ ...e, after: row(5) }, compiled).source, a);
  for (const change of [
    { lsn: e.lsn + 1n },
    { commitLsn: e.commitLsn + 1n },
    { snapshot: 'last' as const },
    { commitTimeMicros: e.commitTimeMicros + 1n },
    { xid: 7 },
    { xmin: 9n },
  ]) {
    const other = envelopeValue({ ...e, ...change }, compiled).source;
    assert.notEqual(
      other,
      a,
      JSON.stringify(change, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
    );
    assert.ok(Object.isFrozen(other));
  }
});

test('the source writer: an encode that ran out of buffer is not remembered', () => {
  // Every cut, so some fall inside the source block: a fresh source object each time, encoded
  // first into a buffer too small for it, then into one large enough, then again elsewhere.
  const event = events()[250]!.event;
  for (let cut = 1; ; cut++) {
    // LSNs of one varint length, so every value is as long as the first.
    const value = envelopeValue({ ...event, lsn: 2n ** 40n + BigInt(cut) }, compiled);
    const expected = reference.toBuffer(value);
    if (cut >= expected.length) break;
    assert.ok(compiled.valueType.encode(value, Buffer.alloc(cut), 0) < 0, `cut ${cut}`);
    const big = Buffer.alloc(expected.length + 10);
    const end = compiled.valueType.encode(value, big, 3);
    assert.ok(big.subarray(3, end).equals(expected), `cut ${cut}`);
    // The remembered bytes serve the same object at another offset.
    const again = Buffer.alloc(expected.length + 40);
    const end2 = compiled.valueType.encode(value, again, 40);
    assert.ok(again.subarray(40, end2).equals(expected), `cut ${cut}, again`);
  }
});

test('nullable unions: a value of the wrong type is still refused, and undefined with avsc’s error', () => {
  const schema = {
    type: 'record',
    name: 'R',
    fields: [
      { name: 's', type: ['null', 'string'], default: null },
      { name: 'n', type: ['long', 'null'] },
      { name: 'b', type: ['null', 'bytes'], default: null },
    ],
  };
  const type = avroTypeForSchema(schema);
  const plain = avsc.Type.forSchema(schema as avsc.Schema, {
    typeHook: (s) => (isLong(s) ? bigintLongType : undefined),
  });
  const ok = { s: 'x', n: 5n, b: Buffer.from([1]) };
  assert.ok(type.toBuffer(ok).equals(plain.toBuffer(ok)));
  assert.ok(
    type.toBuffer({ s: null, n: null, b: null }).equals(plain.toBuffer({ s: null, n: null, b: null })),
  );
  assert.throws(() => type.toBuffer({ ...ok, s: 5 }), /invalid/);
  assert.throws(() => type.toBuffer({ ...ok, n: 'five' }), /invalid/);
  assert.throws(() => type.toBuffer({ ...ok, b: 'not bytes' }), /invalid/);
  assert.throws(() => type.toBuffer({ ...ok, n: undefined }), /invalid/);
});
