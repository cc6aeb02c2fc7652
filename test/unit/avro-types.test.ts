import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Column } from '../../src/change/event.ts';
import { DataError } from '../../src/avro/errors.ts';
import {
  BUILTIN_TYPES,
  avroTypeFor,
  numericPrecisionScale,
  planColumn,
  type AvroOptions,
  type PgTypeInfo,
} from '../../src/avro/types.ts';
import { avroTypeForSchema } from '../../src/avro/envelope.ts';
import { zonedTimestamp, zonedTimestampUtc } from '../../src/avro/temporal.ts';
import { daysFromCivil, decimalBytesToText } from '../../src/avro/values.ts';

const numericMod = (p: number, s: number): number => ((p << 16) | (s & 0x7ff)) + 4;
const col = (typeOid: number, typeMod = -1, name = 'c'): Column => ({ name, typeOid, typeMod, isKey: false });
const builtin = (oid: number): PgTypeInfo => BUILTIN_TYPES.get(oid) as PgTypeInfo;

/** Schema and converted value for one text, after an Avro encode → decode round trip. */
function roundTrip(
  oid: number,
  text: string,
  typeMod = -1,
  options?: AvroOptions,
  info = builtin(oid),
): unknown {
  const p = planColumn(col(oid, typeMod), info, options, { table: 'public.t' });
  const type = avroTypeForSchema(p.schema);
  return type.fromBuffer(type.toBuffer(p.convert(text)));
}

test('built-in table covers the common OIDs and their arrays', () => {
  for (const oid of [16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 700, 701, 790, 1042, 1043, 1082, 1083]) {
    assert.equal(BUILTIN_TYPES.get(oid)?.kind, 'base', String(oid));
  }
  for (const oid of [1114, 1184, 1186, 1266, 1700, 2950, 3802])
    assert.equal(BUILTIN_TYPES.get(oid)?.kind, 'base');
  const arrays: Array<[number, number]> = [
    [1000, 16],
    [1001, 17],
    [1005, 21],
    [1007, 23],
    [1016, 20],
    [1009, 25],
    [1015, 1043],
    [1021, 700],
    [1022, 701],
    [1231, 1700],
    [2951, 2950],
    [1182, 1082],
    [1115, 1114],
    [1185, 1184],
    [199, 114],
    [3807, 3802],
  ];
  for (const [oid, elem] of arrays) assert.equal(BUILTIN_TYPES.get(oid)?.elem?.oid, elem, String(oid));
});

test('type mapping table', () => {
  const t = (oid: number, typeMod = -1, options?: AvroOptions): unknown =>
    avroTypeFor(col(oid, typeMod), builtin(oid), options);
  assert.equal(t(16), 'boolean');
  assert.deepEqual(t(21), { type: 'int', 'connect.type': 'int16' });
  assert.equal(t(23), 'int');
  assert.equal(t(20), 'long');
  assert.equal(t(26), 'long');
  assert.equal(t(700), 'float');
  assert.equal(t(701), 'double');
  for (const oid of [18, 19, 25, 1042, 1043]) assert.equal(t(oid), 'string');
  assert.equal(t(17), 'bytes');
  assert.equal(t(17, -1, { binaryHandling: 'hex' }), 'string');
  // Debezium mode (the default): Connect semantic types, no Avro logical type on temporal fields
  // (AvroData would turn logicalType date into Connect's own Date and refuse io.debezium.time.Date).
  const dbz = (type: string, name: string) => ({ type, 'connect.version': 1, 'connect.name': name });
  assert.deepEqual(t(1082), dbz('int', 'io.debezium.time.Date'));
  assert.deepEqual(t(1083), dbz('long', 'io.debezium.time.MicroTime'));
  assert.deepEqual(t(1083, 3), dbz('int', 'io.debezium.time.Time'));
  assert.deepEqual(
    t(1083, 3, { timePrecision: 'adaptive_time_microseconds' }),
    dbz('long', 'io.debezium.time.MicroTime'),
  );
  assert.deepEqual(t(1114), dbz('long', 'io.debezium.time.MicroTimestamp'));
  assert.deepEqual(t(1114, 0), dbz('long', 'io.debezium.time.Timestamp'));
  assert.deepEqual(t(1114, 4), dbz('long', 'io.debezium.time.MicroTimestamp'));
  assert.deepEqual(t(1114, 6, { timePrecision: 'millis' }), dbz('long', 'io.debezium.time.Timestamp'));
  assert.deepEqual(t(1114, 0, { timePrecision: 'micros' }), dbz('long', 'io.debezium.time.MicroTimestamp'));
  assert.deepEqual(t(1184), dbz('string', 'io.debezium.time.ZonedTimestamp'));
  assert.deepEqual(t(1266), dbz('string', 'io.debezium.time.ZonedTime'));
  assert.deepEqual(t(1186), dbz('string', 'io.debezium.time.Interval'));
  assert.deepEqual(t(2950), dbz('string', 'io.debezium.data.Uuid'));
  assert.deepEqual(t(3802), dbz('string', 'io.debezium.data.Json'));
  assert.deepEqual(t(114), dbz('string', 'io.debezium.data.Json'));
  assert.deepEqual(t(142), dbz('string', 'io.debezium.data.Xml'));
  // Avro mode: the specification's logical types.
  const avro = { typeMode: 'avro' } as const;
  assert.deepEqual(t(1082, -1, avro), { type: 'int', logicalType: 'date' });
  assert.deepEqual(t(1083, -1, avro), { type: 'long', logicalType: 'time-micros' });
  assert.deepEqual(t(1083, 2, avro), { type: 'int', logicalType: 'time-millis' });
  assert.deepEqual(t(1114, -1, avro), { type: 'long', logicalType: 'local-timestamp-micros' });
  assert.deepEqual(t(1114, 3, avro), { type: 'long', logicalType: 'local-timestamp-millis' });
  assert.deepEqual(t(1184, -1, avro), { type: 'long', logicalType: 'timestamp-micros' });
  assert.deepEqual(t(1184, 1, avro), { type: 'long', logicalType: 'timestamp-millis' });
  assert.equal(t(1266, -1, avro), 'string');
  assert.deepEqual(t(2950, -1, avro), {
    type: 'string',
    logicalType: 'uuid',
    'connect.version': 1,
    'connect.name': 'io.debezium.data.Uuid',
  });
  assert.equal(t(790), 'string'); // money: text form
  assert.equal(t(869), 'string'); // inet
  assert.equal(t(3904), 'string'); // int4range
  assert.deepEqual(t(1007), { type: 'array', items: ['null', 'int'] });
  assert.deepEqual(t(1005), { type: 'array', items: ['null', { type: 'int', 'connect.type': 'int16' }] });
  assert.deepEqual(t(1007, -1, { arrayHandling: 'string' }), 'string');
});

test('numeric mapping: precise decimal, variable scale string, string and double modes', () => {
  assert.deepEqual(numericPrecisionScale(numericMod(20, 5)), [20, 5]);
  assert.deepEqual(numericPrecisionScale(numericMod(5, -2)), [5, -2]);
  assert.equal(numericPrecisionScale(-1), undefined);
  const dec = avroTypeFor(col(1700, numericMod(20, 5)), builtin(1700)) as Record<string, unknown>;
  assert.equal(dec.type, 'bytes');
  assert.equal(dec.logicalType, 'decimal');
  assert.equal(dec.precision, 20);
  assert.equal(dec.scale, 5);
  assert.equal(avroTypeFor(col(1700), builtin(1700)), 'string');
  assert.equal(
    avroTypeFor(col(1700, numericMod(20, 5)), builtin(1700), { decimalHandling: 'string' }),
    'string',
  );
  assert.equal(
    avroTypeFor(col(1700, numericMod(20, 5)), builtin(1700), { decimalHandling: 'double' }),
    'double',
  );
  const neg = avroTypeFor(col(1700, numericMod(5, -2)), builtin(1700)) as Record<string, unknown>;
  assert.deepEqual([neg.precision, neg.scale], [7, 0]);
  const big = avroTypeFor(col(1700, numericMod(3, 5)), builtin(1700)) as Record<string, unknown>;
  assert.deepEqual([big.precision, big.scale], [5, 5]);
  assert.throws(
    () => avroTypeFor(col(1700), builtin(1700), { decimalHandling: 'exact' as never }),
    /decimalHandling/,
  );
});

test('numeric(20,5) values round-trip exactly through Avro decimal bytes', () => {
  for (const text of [
    '-123.45000',
    '123456789012345.67891',
    '-999999999999999.99999',
    '0.00000',
    '-0.00001',
  ]) {
    const back = roundTrip(1700, text, numericMod(20, 5)) as Buffer;
    assert.equal(decimalBytesToText(back, 5), text);
  }
  assert.equal(decimalBytesToText(roundTrip(1700, '12300', numericMod(5, -2)) as Buffer, 0), '12300');
});

test('numeric NaN / infinity: error in precise mode naming the column, kept in string and double modes', () => {
  for (const special of ['NaN', 'Infinity', '-Infinity']) {
    assert.throws(
      () =>
        planColumn(col(1700, numericMod(10, 2), 'price'), builtin(1700), {}, { table: 'shop.items' }).convert(
          special,
        ),
      (err: unknown) =>
        err instanceof DataError &&
        err.message.startsWith('shop.items.price: ') &&
        err.message.includes("decimalHandling to 'string'") &&
        err.table === 'shop.items' &&
        err.column === 'price',
    );
    assert.equal(roundTrip(1700, special, numericMod(10, 2), { decimalHandling: 'string' }), special);
    assert.equal(roundTrip(1700, special, -1), special); // variable scale: string even in precise mode
  }
  assert.ok(Number.isNaN(roundTrip(1700, 'NaN', numericMod(10, 2), { decimalHandling: 'double' })));
  assert.equal(roundTrip(1700, '-Infinity', -1, { decimalHandling: 'double' }), -Infinity);
  assert.equal(roundTrip(1700, '12.50', numericMod(10, 2), { decimalHandling: 'double' }), 12.5);
});

test('int8 min/max exact through avsc encode → decode', () => {
  assert.equal(roundTrip(20, '9223372036854775807'), 9223372036854775807n);
  assert.equal(roundTrip(20, '-9223372036854775808'), -9223372036854775808n);
  assert.equal(roundTrip(20, '9007199254740993'), 9007199254740993n); // 2^53 + 1
  assert.equal(roundTrip(26, '4294967295'), 4294967295n);
  assert.equal(roundTrip(21, '-32768'), -32768);
  assert.equal(roundTrip(23, '2147483647'), 2147483647);
});

test('floats, bools, strings', () => {
  assert.ok(Number.isNaN(roundTrip(700, 'NaN')));
  assert.equal(roundTrip(700, 'Infinity'), Infinity);
  assert.equal(roundTrip(701, '-Infinity'), -Infinity);
  assert.equal(roundTrip(701, '3.141592653589793'), 3.141592653589793);
  assert.equal(roundTrip(700, '1.5'), 1.5);
  assert.equal(roundTrip(16, 't'), true);
  assert.equal(roundTrip(16, 'f'), false);
  assert.equal(roundTrip(1042, 'ab  '), 'ab  ');
  assert.equal(roundTrip(3802, '{"a": [1, 2]}'), '{"a": [1, 2]}');
  assert.equal(
    roundTrip(2950, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  );
  assert.equal(roundTrip(1266, '04:05:06.789+05:30'), '22:35:06.789Z');
  assert.equal(roundTrip(1266, '00:00:00-08'), '08:00:00Z');
  assert.equal(roundTrip(1266, '24:00:00+00'), '24:00:00Z');
  assert.equal(roundTrip(1266, '23:59:59.5-00:30:15'), '00:30:14.5Z');
  assert.equal(roundTrip(1266, '04:05:06.789+05:30', -1, { typeMode: 'avro' }), '04:05:06.789+05:30');
  assert.equal(roundTrip(1186, 'P1Y2M3DT4H5M6.789S'), 'P1Y2M3DT4H5M6.789S');
  assert.equal(roundTrip(1186, '1 year 2 mons'), 'P1Y2M');
});

test('bytea: bytes, base64, hex', () => {
  assert.deepEqual(roundTrip(17, '\\x0102ff'), Buffer.from([1, 2, 255]));
  assert.equal(roundTrip(17, '\\x0102ff', -1, { binaryHandling: 'base64' }), 'AQL/');
  assert.equal(roundTrip(17, '\\x0102ff', -1, { binaryHandling: 'hex' }), '0102ff');
});

test('dates and times through Avro: Debezium mode', () => {
  assert.equal(roundTrip(1082, '2024-01-02'), 19724);
  assert.equal(roundTrip(1082, '0044-03-15 BC'), daysFromCivil(-43, 3, 15));
  // Debezium's sentinels: pgjdbc's infinity LocalDates (-5877611-06-21 / -22) as epoch days.
  assert.equal(roundTrip(1082, 'infinity'), -2147472692);
  assert.equal(roundTrip(1082, '-infinity'), -2147472691);
  assert.equal(roundTrip(1083, '24:00:00'), 86_400_000_000n);
  assert.equal(roundTrip(1083, '12:34:56.789', 3), 45_296_789);
  assert.equal(roundTrip(1114, '2024-01-02 03:04:05.123456'), 1704164645123456n);
  assert.equal(roundTrip(1114, '2024-01-02 03:04:05.123', 3), 1704164645123n);
  assert.equal(roundTrip(1114, '1969-12-31 23:59:59.9995', 4, { timePrecision: 'millis' }), -1n);
  assert.equal(roundTrip(1114, 'infinity'), 9223372036825200000n);
  assert.equal(roundTrip(1114, '-infinity'), -9223372036832400000n);
  assert.equal(roundTrip(1114, 'infinity', 0), 9223372036825200n);
  assert.equal(roundTrip(1184, '-infinity'), '-infinity');
  assert.equal(roundTrip(1184, 'infinity'), 'infinity');
  assert.equal(roundTrip(1184, '2024-01-02 08:34:05.123456+05:30'), '2024-01-02T03:04:05.123456Z');
  assert.equal(roundTrip(1184, '2024-01-02 08:34:05.1+05:30'), '2024-01-02T03:04:05.100000Z');
  assert.equal(roundTrip(1184, '2024-01-02 08:34:05.12+05:30', 2), '2024-01-02T03:04:05.12Z');
  assert.equal(roundTrip(1184, '2024-01-02 08:34:05+05:30', 0), '2024-01-02T03:04:05Z');
  assert.equal(roundTrip(1184, '0044-03-15 12:00:00+00 BC'), '-0043-03-15T12:00:00.000000Z');
  assert.equal(roundTrip(1184, '10000-01-01 00:00:00+00'), '+10000-01-01T00:00:00.000000Z');
  assert.equal(roundTrip(1184, '1969-12-31 23:59:59.999999+00'), '1969-12-31T23:59:59.999999Z');
});

test('ZonedTimestamp: the UTC fast path agrees with the general conversion', () => {
  for (const text of [
    '2024-01-02 03:04:05',
    '1000-01-01 00:00:00.000001',
    '9999-12-31 23:59:59.999999',
    '1970-01-01 00:00:00.5',
    '2024-02-29 12:00:00.12',
    '2024-02-29 12:00:00.123',
    '2024-02-29 12:00:00.1234',
    '2024-02-29 12:00:00.12345',
    '2024-02-29 12:00:00.123456',
  ]) {
    for (const p of [0, 1, 2, 3, 4, 5, 6]) {
      if (p === 0 && text.includes('.')) continue; // timestamptz(0) never has a fraction
      // '+00:00' takes the general path (parse to an instant, format it).
      assert.equal(zonedTimestamp(`${text}+00`, p), zonedTimestamp(`${text}+00:00`, p), `${text} (${p})`);
    }
  }
});

test('ZonedTimestamp: text the UTC fast path does not take goes the general way', () => {
  // PostgreSQL never prints these in a UTC session; whatever they give, the fast path stays out.
  for (const text of [
    '0999-12-31 23:59:59+00',
    '10000-01-01 00:00:00+00',
    '2024-01-02 03:04:05+00:00',
    '2024-01-02 03:04:05.+00',
    '2024-01-02 03:04:05.1234567+00',
    '2024-01-02T03:04:05+00',
    '2024-01-02 03:04:05+01',
    '2024-01-02 03:04:0x+00',
    '2024-01-02 03:04:05.12a+00',
    '0044-03-15 12:00:00+00 BC',
  ]) {
    assert.equal(zonedTimestampUtc(text, 6), undefined, text);
  }
  assert.equal(zonedTimestampUtc('2024-01-02 03:04:05.5+00', 3), '2024-01-02T03:04:05.500Z');
  assert.equal(zonedTimestampUtc('2024-01-02 03:04:05.123456+00', 3), '2024-01-02T03:04:05.123Z');
  assert.equal(zonedTimestampUtc('2024-01-02 03:04:05+00', 2), '2024-01-02T03:04:05.00Z');
});

test('dates and times through Avro: Avro mode clamps to what standard readers represent', () => {
  const avro = { typeMode: 'avro' } as const;
  assert.equal(roundTrip(1082, '2024-01-02', -1, avro), 19724);
  assert.equal(roundTrip(1082, 'infinity', -1, avro), daysFromCivil(9999, 12, 31));
  assert.equal(roundTrip(1082, '-infinity', -1, avro), daysFromCivil(1, 1, 1));
  assert.equal(roundTrip(1082, '0044-03-15 BC', -1, avro), daysFromCivil(1, 1, 1));
  assert.equal(roundTrip(1083, '24:00:00', -1, avro), 86_399_999_999n);
  assert.equal(roundTrip(1083, '24:00:00', 3, avro), 86_399_999);
  assert.equal(roundTrip(1114, 'infinity', -1, avro), 253402300799999999n);
  assert.equal(roundTrip(1184, '-infinity', -1, avro), -62135596800000000n);
  assert.equal(roundTrip(1184, '2024-01-02 08:34:05.123456+05:30', -1, avro), 1704164645123456n);
  assert.equal(roundTrip(1184, '2024-01-02 08:34:05.123456+05:30', 3, avro), 1704164645123n);
});

test('arrays: NULL elements, quoting, escapes, bytea elements, multi-dim error', () => {
  assert.deepEqual(roundTrip(1007, '{1,2,NULL,-4}'), [1, 2, null, -4]);
  assert.deepEqual(roundTrip(1016, '{9223372036854775807}'), [9223372036854775807n]);
  assert.deepEqual(roundTrip(1009, '{a,"a,b","with \\"quote\\"",NULL,"NULL"}'), [
    'a',
    'a,b',
    'with "quote"',
    null,
    'NULL',
  ]);
  assert.deepEqual(roundTrip(1001, '{"\\\\x0102",NULL}'), [Buffer.from([1, 2]), null]);
  assert.deepEqual(roundTrip(1182, '{2024-01-02,infinity}'), [19724, -2147472692]);
  assert.deepEqual(roundTrip(1009, '{}'), []);
  const dec = roundTrip(1231, '{1.50,-2.25}', numericMod(6, 2)) as Buffer[];
  assert.deepEqual(
    dec.map((b) => decimalBytesToText(b, 2)),
    ['1.50', '-2.25'],
  );
  assert.throws(
    () =>
      planColumn(col(1007, -1, 'grid'), builtin(1007), {}, { table: 'public.m' }).convert('{{1,2},{3,4}}'),
    (err: unknown) => err instanceof DataError && /public\.m\.grid: multi-dimensional/.test(err.message),
  );
  assert.equal(roundTrip(1007, '{{1,2},{3,4}}', -1, { arrayHandling: 'string' }), '{{1,2},{3,4}}');
});

test('enums, domains, citext, arrays of enums via a type lookup', () => {
  const mood: PgTypeInfo = {
    oid: 50001,
    name: 'mood',
    schema: 'public',
    kind: 'enum',
    enumLabels: ['sad', 'ok', 'happy'],
  };
  assert.deepEqual(avroTypeFor(col(50001), mood), {
    type: 'string',
    'connect.version': 1,
    'connect.parameters': { allowed: 'sad,ok,happy' },
    'connect.name': 'io.debezium.data.Enum',
  });
  assert.equal(roundTrip(50001, 'happy', -1, {}, mood), 'happy');
  const moods: PgTypeInfo = { oid: 50002, name: '_mood', schema: 'public', kind: 'array', elem: mood };
  assert.deepEqual(roundTrip(50002, '{sad,NULL}', -1, {}, moods), ['sad', null]);

  const money2: PgTypeInfo = {
    oid: 50003,
    name: 'amount',
    schema: 'public',
    kind: 'domain',
    base: builtin(1700),
    typeMod: numericMod(12, 2),
  };
  const dec = avroTypeFor(col(50003), money2) as Record<string, unknown>;
  assert.deepEqual([dec.logicalType, dec.precision, dec.scale], ['decimal', 12, 2]);
  const posint: PgTypeInfo = {
    oid: 50004,
    name: 'posint',
    schema: 'public',
    kind: 'domain',
    base: builtin(23),
  };
  assert.equal(roundTrip(50004, '42', -1, {}, posint), 42);

  const citext: PgTypeInfo = { oid: 61234, name: 'citext', schema: 'public', kind: 'base' };
  assert.equal(avroTypeFor(col(61234), citext), 'string');
});

test('unknown OIDs and other types fall back to their text form', () => {
  assert.equal(avroTypeFor(col(99999), undefined), 'string');
  assert.equal(roundTrip(99999, '(1,2)', -1, {}, undefined as unknown as PgTypeInfo), '(1,2)');
  const composite: PgTypeInfo = { oid: 70000, name: 'addr', schema: 'public', kind: 'composite' };
  assert.equal(avroTypeFor(col(70000), composite), 'string');
  assert.equal(roundTrip(869, '192.168.0.1/24'), '192.168.0.1/24');
  assert.equal(roundTrip(790, '$1,234.50'), '$1,234.50');
  const hstore: PgTypeInfo = { oid: 70001, name: 'hstore', schema: 'public', kind: 'base' };
  assert.equal(roundTrip(70001, '"a"=>"1"', -1, {}, hstore), '"a"=>"1"');
});

test('malformed text becomes a DataError naming the column', () => {
  assert.throws(
    () => planColumn(col(23, -1, 'qty'), builtin(23), {}, { table: 'public.t' }).convert('x'),
    (err: unknown) => err instanceof DataError && err.message.startsWith('public.t.qty: invalid integer'),
  );
});
