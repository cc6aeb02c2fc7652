// Microbenchmark: CPU per row of converting and Avro-encoding the benchmark table's rows
// (bench/lib.ts TABLE_COLUMNS), without PostgreSQL or Kafka: where the encode stage's time goes.
//   node bench/encode-micro.ts [--rows N]
import { compileRelation, envelopeValue, toAvroKey, toAvroRow } from '../src/avro/envelope.ts';
import type { ChangeEvent, Relation } from '../src/change/event.ts';
import { FrameWriter } from '../src/registry/registry.ts';

const col = (name: string, typeOid: number, typeMod = -1, isKey = false) => ({
  name,
  typeOid,
  typeMod,
  isKey,
});
const relation: Relation = {
  oid: 1,
  schema: 'public',
  table: 'bench',
  replicaIdentity: 'd' as Relation['replicaIdentity'],
  columns: [
    col('id', 20, -1, true),
    col('account_id', 23),
    col('amount', 1700, ((12 << 16) | 2) + 4),
    col('quantity', 21),
    col('status', 25),
    col('note', 25),
    col('created_at', 1184),
    col('updated_at', 1184),
    col('paid', 16),
    col('ref', 2950),
    col('attrs', 3802),
    col('score', 701),
    col('ship_date', 1082),
    col('sku', 1043, 36),
  ],
};
const row = (i: number): Array<string | null> => [
  String(i),
  String((i * 7919) % 100000),
  (((i * 7919) % 10000000) / 100).toFixed(2),
  String(i % 500),
  'shipped',
  i % 10 === 0 ? null : 'c4ca4238a0b923820dcc509a6f75849b'.repeat(1 + (i % 6)),
  '2024-03-01 12:34:56+00',
  '2024-03-02 01:02:03.456+00',
  'true',
  '6f1e8a3c-1d2b-4c5e-9f0a-123456789abc',
  '{"k": 1, "tags": ["a", "b"]}',
  '3.14159',
  '2024-05-06',
  'SKU-000123',
];

const at = process.argv.indexOf('--rows');
const n = at > 0 ? Number(process.argv[at + 1]) : 200000;
const compiled = compileRelation(relation, { topicPrefix: 'bench', database: 'bench' });
const rows = Array.from({ length: 1000 }, (_, i) => row(i));
const event = (r: Array<string | null>): ChangeEvent => ({
  op: 'r',
  relation,
  before: null,
  after: r,
  xid: null,
  lsn: 123456789n as ChangeEvent['lsn'],
  commitLsn: 123456789n as ChangeEvent['commitLsn'],
  commitTimeMicros: 1700000000000000n,
  seq: 0,
  snapshot: 'true',
});
const frames = new FrameWriter();
function time(name: string, f: (i: number) => void): number {
  for (let i = 0; i < 20000; i++) f(i);
  // The least of five rounds: this machine's speed wanders between runs (docs/performance.md).
  let us = Infinity;
  for (let round = 0; round < 5; round++) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < n; i++) f(i);
    const d = process.cpuUsage(t0);
    us = Math.min(us, (d.user + d.system) / n);
  }
  console.log(`${name.padEnd(40)} ${us.toFixed(2)} µs/row`);
  return us;
}
const values = rows.map((r) => toAvroRow(relation, r, compiled));
const envs = rows.map((r) => envelopeValue(event(r), compiled));
// Streaming changes: every event at its own LSN, so each has a source block of its own.
const streamed = rows.map((r, i) =>
  envelopeValue({ ...event(r), op: 'c', snapshot: 'false', xid: 1000, lsn: BigInt(1e9 + i * 100) }, compiled),
);
const sourceType = (
  compiled.valueType as unknown as {
    fields: Array<{ type: { encode(v: unknown, b: Buffer, p: number): number } }>;
  }
).fields[2]!.type;
const buf = Buffer.allocUnsafe(1 << 16);
time('convert row (toAvroRow)', (i) => toAvroRow(relation, rows[i % 1000]!, compiled));
time('convert key (toAvroKey)', (i) => toAvroKey(relation, rows[i % 1000]!, compiled));
time('envelope object (envelopeValue)', (i) => envelopeValue(event(rows[i % 1000]!), compiled));
time('encode envelope (frame)', (i) => frames.frame(1, compiled.valueType, envs[i % 1000]));
time('encode envelope, streaming (frame)', (i) => frames.frame(1, compiled.valueType, streamed[i % 1000]));
time('encode source only', (i) => sourceType.encode(envs[i % 1000]!.source, buf, 0));
const rowType = (
  compiled.valueType as unknown as {
    fields: Array<{ type: { types: Array<{ encode(v: unknown, b: Buffer, p: number): number }> } }>;
  }
).fields[1]!.type.types[1]!;
time('encode Value row only', (i) => rowType.encode(values[i % 1000], buf, 0));
time('encode key (frame)', (i) =>
  frames.frame(2, compiled.keyType!, toAvroKey(relation, rows[i % 1000]!, compiled)),
);
