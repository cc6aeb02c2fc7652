import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DATE_NEGATIVE_INFINITY,
  DATE_POSITIVE_INFINITY,
  LONG_MAX,
  LONG_MIN,
  bigintToTwosComplement,
  decimalBytesToText,
  intervalToIso,
  numericToDecimalBytes,
  numericUnscaled,
  parseArray,
  parseBool,
  parseBytea,
  parseDate,
  parseFloatText,
  parseInt32,
  parseInt64,
  parseTime,
  parseTimestamp,
  parseTimestamptz,
  twosComplementToBigint,
} from '../../src/avro/values.ts';

const utcDays = (y: number, m: number, d: number): number => {
  const dt = new Date(0);
  dt.setUTCFullYear(y, m - 1, d);
  return Math.round(dt.getTime() / 86_400_000);
};

test('integers', () => {
  assert.equal(parseInt32('-32768'), -32768);
  assert.equal(parseInt32('2147483647'), 2147483647);
  assert.equal(parseInt64('9223372036854775807'), 9223372036854775807n);
  assert.equal(parseInt64('-9223372036854775808'), -9223372036854775808n);
  assert.throws(() => parseInt32('1.5'));
  assert.throws(() => parseInt64(''));
});

test('floats incl. NaN and infinities', () => {
  assert.ok(Number.isNaN(parseFloatText('NaN')));
  assert.equal(parseFloatText('Infinity'), Infinity);
  assert.equal(parseFloatText('-Infinity'), -Infinity);
  assert.equal(parseFloatText('1.5e-10'), 1.5e-10);
  assert.equal(parseFloatText('-0'), -0);
  assert.throws(() => parseFloatText('abc'));
  assert.throws(() => parseFloatText(''));
});

test('bool', () => {
  assert.equal(parseBool('t'), true);
  assert.equal(parseBool('f'), false);
  assert.throws(() => parseBool('x'));
});

test('two’s complement boundaries', () => {
  const hex = (n: bigint): string => bigintToTwosComplement(n).toString('hex');
  assert.equal(hex(0n), '00');
  assert.equal(hex(127n), '7f');
  assert.equal(hex(128n), '0080');
  assert.equal(hex(-1n), 'ff');
  assert.equal(hex(-128n), '80');
  assert.equal(hex(-129n), 'ff7f');
  assert.equal(hex(-32768n), '8000');
  for (const n of [0n, 1n, -1n, 255n, -256n, 2n ** 100n, -(2n ** 100n), 12345678901234567890n]) {
    assert.equal(twosComplementToBigint(bigintToTwosComplement(n)), n);
  }
});

test('numeric(20,5) → decimal bytes → exact text', () => {
  for (const text of [
    '0.00000',
    '0.00001',
    '-0.00001',
    '-123.45000',
    '123456789012345.67891',
    '-999999999999999.99999',
    '999999999999999.99999',
  ]) {
    assert.equal(decimalBytesToText(numericToDecimalBytes(text, 5), 5), text);
  }
  assert.equal(decimalBytesToText(numericToDecimalBytes('12', 2), 2), '12.00');
  assert.equal(decimalBytesToText(numericToDecimalBytes('-7', 0), 0), '-7');
  assert.equal(decimalBytesToText(numericToDecimalBytes('1.500', 1), 1), '1.5');
  assert.throws(() => numericToDecimalBytes('1.25', 1), /more than 1 decimal places/);
  assert.throws(() => numericToDecimalBytes('NaN', 2));
  assert.throws(() => numericToDecimalBytes('.', 2));
});

test('bytea hex and escape formats', () => {
  assert.deepEqual(parseBytea('\\x0102ff'), Buffer.from([1, 2, 255]));
  assert.deepEqual(parseBytea('\\x'), Buffer.alloc(0));
  assert.deepEqual(parseBytea('ab\\\\\\001\\377'), Buffer.from([0x61, 0x62, 0x5c, 1, 255]));
  assert.throws(() => parseBytea('\\x012'));
  assert.throws(() => parseBytea('\\xzz'));
});

test('date: epoch days, BC, infinity', () => {
  assert.equal(parseDate('1970-01-01'), 0);
  assert.equal(parseDate('2024-01-02'), 19724);
  assert.equal(parseDate('1969-12-31'), -1);
  assert.equal(parseDate('2000-02-29'), utcDays(2000, 2, 29));
  assert.equal(parseDate('0044-03-15 BC'), utcDays(-43, 3, 15));
  assert.equal(parseDate('0001-01-01 BC'), utcDays(0, 1, 1));
  assert.equal(parseDate('4713-11-24 BC'), utcDays(-4712, 11, 24));
  assert.equal(parseDate('10000-01-01'), utcDays(10000, 1, 1));
  assert.equal(parseDate('infinity'), DATE_POSITIVE_INFINITY);
  assert.equal(parseDate('-infinity'), DATE_NEGATIVE_INFINITY);
  assert.throws(() => parseDate('01/02/2024'));
});

test('numeric → decimal bytes: the plain-text fast path agrees with the BigInt path', () => {
  // numericToDecimalBytes takes texts of at most 14 digits (at the scale) without a regex or a
  // BigInt; everything else goes through numericUnscaled. Both must give the same bytes, and the
  // same refusal.
  const reference = (text: string, scale: number): string => {
    try {
      return bigintToTwosComplement(numericUnscaled(text, scale)).toString('hex');
    } catch (err) {
      return `throws ${(err as Error).message}`;
    }
  };
  const actual = (text: string, scale: number): string => {
    try {
      return numericToDecimalBytes(text, scale).toString('hex');
    } catch (err) {
      return `throws ${(err as Error).message}`;
    }
  };
  const texts = [
    '0',
    '-0',
    '7',
    '-7',
    '0.5',
    '-0.5',
    '12.3',
    '12.30',
    '12.345',
    '1.500',
    '99999999999999',
    '-99999999999999',
    '100000000000000',
    '999999999999999',
    '140737488355327',
    '-140737488355328',
    '140737488355328',
    '1234567890123.4',
    '123456789012.34',
    '12345678901.234',
    '.5',
    '5.',
    '-',
    '',
    '+5',
    '1.2.3',
    '1e5',
    ' 1',
    '1 ',
    '--1',
    '0x10',
    '１２',
    '00012.50',
  ];
  let n = 0;
  for (let i = 0; i < 2000; i++) {
    // Random plain decimals of 1..16 integer digits and 0..8 fraction digits, either sign.
    const intDigits = 1 + (i % 16);
    const fracDigits = i % 9;
    let t = i % 3 === 0 ? '-' : '';
    for (let k = 0; k < intDigits; k++) t += String((i * 7 + k * 13) % 10);
    if (fracDigits > 0) t += '.';
    for (let k = 0; k < fracDigits; k++) t += String((i * 11 + k * 3) % 10);
    texts.push(t);
  }
  for (const text of texts) {
    for (const scale of [0, 1, 2, 5, 8]) {
      assert.equal(actual(text, scale), reference(text, scale), `${JSON.stringify(text)} at scale ${scale}`);
      n++;
    }
  }
  assert.ok(n > 10_000);
});

test('date: the YYYY-MM-DD fast path agrees with the calendar, and the rest still parse', () => {
  // Every day of years 1000..9999 in steps, formatted as PostgreSQL prints them.
  const p2 = (v: number) => String(v).padStart(2, '0');
  for (let days = utcDays(1000, 1, 1); days <= utcDays(9999, 12, 31); days += 97) {
    const d = new Date(days * 86_400_000);
    const text = `${d.getUTCFullYear()}-${p2(d.getUTCMonth() + 1)}-${p2(d.getUTCDate())}`;
    assert.equal(parseDate(text), days, text);
  }
  assert.equal(parseDate('0999-12-31'), utcDays(999, 12, 31));
  assert.throws(() => parseDate('2024-0a-01'));
  assert.throws(() => parseDate('2024/01/01'));
});

test('time: micros since midnight, 24:00:00', () => {
  assert.equal(parseTime('00:00:00'), 0n);
  assert.equal(parseTime('13:45:30.5'), BigInt((13 * 3600 + 45 * 60 + 30) * 1e6 + 500000));
  assert.equal(parseTime('23:59:59.999999'), 86_399_999_999n);
  assert.equal(parseTime('24:00:00'), 86_400_000_000n);
  assert.throws(() => parseTime('24:00:01'));
  assert.throws(() => parseTime('12:60:00'));
});

test('timestamp (no tz): wall-clock micros, BC, infinity', () => {
  assert.equal(parseTimestamp('1970-01-01 00:00:00'), 0n);
  assert.equal(parseTimestamp('2024-01-02 03:04:05.123456'), 1704164645123456n);
  assert.equal(parseTimestamp('2024-01-02 03:04:05.1'), 1704164645100000n);
  assert.equal(parseTimestamp('1969-12-31 23:59:59.999999'), -1n);
  assert.equal(
    parseTimestamp('0044-03-15 12:00:00 BC'),
    BigInt(utcDays(-43, 3, 15)) * 86_400_000_000n + 12n * 3_600_000_000n,
  );
  assert.equal(parseTimestamp('200000-01-01 00:00:00'), BigInt(utcDays(200000, 1, 1)) * 86_400_000_000n);
  assert.throws(() => parseTimestamp('294276-12-31 23:59:59.999999'), /outside the range/);
  assert.equal(parseTimestamp('infinity'), LONG_MAX);
  assert.equal(parseTimestamp('-infinity'), LONG_MIN);
  assert.throws(() => parseTimestamp('2024-01-02 03:04:05+00'));
});

test('timestamptz: UTC micros from any offset', () => {
  const t = 1704164645123456n;
  assert.equal(parseTimestamptz('2024-01-02 03:04:05.123456+00'), t);
  assert.equal(parseTimestamptz('2024-01-02 08:34:05.123456+05:30'), t);
  assert.equal(parseTimestamptz('2024-01-01 23:04:05.123456-04'), t);
  assert.equal(parseTimestamptz('2024-01-02 03:04:20.123456+00:00:15'), t);
  assert.equal(
    parseTimestamptz('0044-03-15 12:00:00+00 BC'),
    BigInt(utcDays(-43, 3, 15)) * 86_400_000_000n + 12n * 3_600_000_000n,
  );
  assert.equal(parseTimestamptz('infinity'), LONG_MAX);
  assert.equal(parseTimestamptz('-infinity'), LONG_MIN);
  assert.throws(() => parseTimestamptz('2024-01-02 03:04:05'));
});

test('interval: iso_8601 passes through, postgres style converted', () => {
  assert.equal(intervalToIso('P1Y2M3DT4H5M6.789S'), 'P1Y2M3DT4H5M6.789S');
  assert.equal(intervalToIso('PT0S'), 'PT0S');
  assert.equal(intervalToIso('1 year 2 mons 3 days 04:05:06.789'), 'P1Y2M3DT4H5M6.789S');
  assert.equal(intervalToIso('-1 days +02:03:00'), 'P-1DT2H3M');
  assert.equal(intervalToIso('00:00:00'), 'PT0S');
  assert.equal(intervalToIso('-00:00:00.5'), 'PT-0.5S');
  assert.equal(intervalToIso('5 years'), 'P5Y');
  assert.throws(() => intervalToIso('1 fortnight'));
});

test('array text: quoting, escapes, NULL, dimensions', () => {
  assert.deepEqual(parseArray('{}'), []);
  assert.deepEqual(parseArray('{1,2,NULL,"a,b","with \\"quote\\"","NULL",null}'), [
    '1',
    '2',
    null,
    'a,b',
    'with "quote"',
    'NULL',
    null,
  ]);
  assert.deepEqual(parseArray('{"back\\\\slash"," sp "}'), ['back\\slash', ' sp ']);
  assert.deepEqual(parseArray('{"\\\\x0102"}'), ['\\x0102']);
  assert.deepEqual(parseArray('{{1,2},{3,4}}'), [
    ['1', '2'],
    ['3', '4'],
  ]);
  assert.deepEqual(parseArray('[0:1]={7,8}'), ['7', '8']);
  assert.deepEqual(parseArray('{(1,1),(0,0);(2,2),(1,1)}', ';'), ['(1,1),(0,0)', '(2,2),(1,1)']);
  assert.throws(() => parseArray('{1,2'));
  assert.throws(() => parseArray('{1,}'));
  assert.throws(() => parseArray('1,2'));
});
