// Micro throughput check for the pgoutput decoder (not a test; nothing is asserted):
//   node test/support/bench-pgoutput.ts [count]
// Decodes `count` (default 1,000,000) Insert messages of a 10-column row and prints messages/s.
import { PgoutputDecoder } from '../../src/postgres/replication/pgoutput.ts';
import { encodeInsert, encodeRelation } from './pgoutput-fixtures.ts';

const count = Number(process.argv[2] ?? 1_000_000);
const OID = 16385;

const decoder = new PgoutputDecoder();
decoder.decode(
  encodeRelation({
    oid: OID,
    schema: 'public',
    table: 'orders',
    columns: [
      { name: 'id', typeOid: 20, isKey: true },
      { name: 'customer_id', typeOid: 20 },
      { name: 'status', typeOid: 1043, typeMod: 36 },
      { name: 'amount', typeOid: 1700, typeMod: 655366 },
      { name: 'currency', typeOid: 1042, typeMod: 7 },
      { name: 'created_at', typeOid: 1184 },
      { name: 'updated_at', typeOid: 1184 },
      { name: 'note', typeOid: 25 },
      { name: 'paid', typeOid: 16 },
      { name: 'city', typeOid: 25 },
    ],
  }),
);

// A few distinct messages so the loop is not decoding one buffer only.
const messages: Buffer[] = [];
for (let i = 0; i < 64; i++) {
  messages.push(
    encodeInsert({
      relationOid: OID,
      after: [
        String(1_000_000 + i),
        String(42 + i),
        i % 2 ? 'shipped' : 'pending',
        `${i}99.95`,
        'EUR',
        '2024-02-29 12:34:56.123456+00',
        '2024-02-29 12:35:01.000001+00',
        i % 3 ? null : 'leave at the door, ring twice',
        i % 2 ? 't' : 'f',
        i % 5 ? 'Zürich' : 'Berlin',
      ],
    }),
  );
}
const bytes = messages.reduce((n, m) => n + m.length, 0) / messages.length;

function run(n: number): number {
  let sink = 0;
  for (let i = 0; i < n; i++) {
    const m = decoder.decode(messages[i & 63]!);
    if (m.tag === 'insert') sink += m.after.length;
  }
  return sink;
}

run(100_000); // warm-up
const start = process.hrtime.bigint();
const sink = run(count);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
if (sink !== count * 10) throw new Error('unexpected decode result');
console.log(
  `pgoutput decode: ${count.toLocaleString('en')} Insert messages (10 columns, ~${Math.round(bytes)} bytes each) ` +
    `in ${seconds.toFixed(3)} s = ${Math.round(count / seconds).toLocaleString('en')} messages/s ` +
    `(node ${process.version})`,
);
