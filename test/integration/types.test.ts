// Every PostgreSQL type pgcdc maps, end to end: rows with edge values are read by the snapshot
// ('r') and the same rows inserted again are streamed ('c'); each record is decoded by an
// independent registry consumer and EACH value is compared with what PostgreSQL itself says the
// value is (its text output, extract(epoch ...), encode(bytea, 'hex'), to_json(array)), converted
// the way docs/types.md documents. Three connectors run over the same tables, one per handling
// mode: defaults (Debezium types, precise decimals, bytes, micros), string/base64/millis, and the
// plain-Avro type mode with double/hex. Apache Avro's own Python reader, logical types on, then
// decodes every record of both type modes (test/support/avro-python.ts).
// Plus the TOAST rules for an UPDATE that leaves a multi-megabyte value unchanged.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { decodeTopicWithPython } from '../support/avro-python.ts';
import { startConnector, stopConnectors, streaming } from '../support/connectors.ts';
import {
  TopicReader,
  dropTestSlots,
  eventually,
  textPgClient,
  uniqueName,
  type DecodedRecord,
} from '../support/pipeline.ts';

const PLACEHOLDER = '__debezium_unavailable_value';

/** Every value as PostgreSQL's text output, in fixed output formats. */
const rawClient = (): Promise<pg.Client> =>
  textPgClient(
    '-c DateStyle=ISO,MDY -c TimeZone=UTC -c IntervalStyle=iso_8601 -c bytea_output=hex -c extra_float_digits=1',
  );

interface Mode {
  decimal: 'precise' | 'string' | 'double';
  binary: 'bytes' | 'base64' | 'hex';
  time: 'micros' | 'millis';
  types: 'debezium' | 'avro';
}

/**
 * How a column is checked. `sql` turns the column reference into the expected text, computed by
 * PostgreSQL (default: the column's own text output); `check` compares the decoded Avro value
 * with it (both non-null; nulls must match as nulls).
 */
interface Kind {
  sql?: (c: string, m: Mode) => string;
  check: (decoded: unknown, expected: string, m: Mode) => void;
}

const sameNumber = (decoded: unknown, expected: number) =>
  assert.ok(Object.is(decoded, expected), `${String(decoded)} is not ${String(expected)}`);

/** Debezium's ±infinity timestamps (pgjdbc's sentinels) in microseconds. */
const DBZ_TS_INF = '9223372036825200000';
const DBZ_TS_NEG_INF = '-9223372036832400000';
/** Avro mode's range: 0001-01-01 00:00 … 9999-12-31 23:59:59.999999, in microseconds. */
const AVRO_MIN_MICROS = '-62135596800000000';
const AVRO_MAX_MICROS = '253402300799999999';

/** Microseconds → the mode's unit (milliseconds floored), in SQL over a numeric. */
// (numeric division keeps only ~16 significant digits unless the dividend carries a scale.)
/** LEAST/GREATEST skip NULLs: keep a NULL column NULL. */
const keepNull = (c: string, expr: string) => `CASE WHEN ${c} IS NULL THEN NULL ELSE ${expr} END`;

const unit = (micros: string, m: Mode) =>
  m.time === 'micros' ? micros : `floor((${micros})::numeric(40,6) / 1000)`;

/**
 * Epoch microseconds (or floored milliseconds) as PostgreSQL computes them. Debezium mode:
 * ±infinity are Debezium's sentinels. Avro mode: clamped to years 1..9999.
 */
const epochSql = (c: string, m: Mode) => {
  const micros = `(extract(epoch FROM ${c}) * 1000000)`;
  if (m.types === 'avro') {
    return keepNull(
      c,
      `${unit(`GREATEST(LEAST(${micros}, ${AVRO_MAX_MICROS}), ${AVRO_MIN_MICROS})`, m)}::numeric(30,0)`,
    );
  }
  return (
    `CASE WHEN ${c} = 'infinity' THEN ${unit(DBZ_TS_INF, m)} WHEN ${c} = '-infinity' THEN ${unit(DBZ_TS_NEG_INF, m)} ` +
    `ELSE ${unit(micros, m)} END::numeric(30,0)`
  );
};

/** java.time's ISO year of a UTC timestamp: 1 BC is 0000, 44 BC is -0043, beyond 9999 a '+'. */
const isoYearSql = (utc: string) => {
  const y = `(CASE WHEN extract(year FROM ${utc}) < 0 THEN extract(year FROM ${utc}) + 1 ELSE extract(year FROM ${utc}) END)::int`;
  return `CASE WHEN ${y} > 9999 THEN '+' || ${y} WHEN ${y} < 0 THEN '-' || lpad((-${y})::text, 4, '0') ELSE lpad(${y}::text, 4, '0') END`;
};

const K = {
  text: { check: (d, e) => assert.equal(d, e) },
  int: { check: (d, e) => sameNumber(d, Number(e)) },
  long: { check: (d, e) => assert.equal(d, BigInt(e)) },
  bool: { check: (d, e) => assert.equal(d, e === 't') },
  float4: { check: (d, e) => sameNumber(d, Math.fround(Number(e))) },
  float8: { check: (d, e) => sameNumber(d, Number(e)) },
  /** numeric(p,s) and a domain over it: exact decimal text (precise / string) or the nearest double. */
  decimal: {
    check: (d, e, m) => (m.decimal === 'double' ? sameNumber(d, Number(e)) : assert.equal(d, e)),
  },
  /** unconstrained numeric: its text (precise / string) or the nearest double. */
  numeric: {
    check: (d, e, m) => (m.decimal === 'double' ? sameNumber(d, Number(e)) : assert.equal(d, e)),
  },
  date: {
    sql: (c, m) =>
      m.types === 'avro'
        ? keepNull(c, `GREATEST(LEAST(${c}, date '9999-12-31'), date '0001-01-01') - date '1970-01-01'`)
        : `CASE WHEN ${c} = 'infinity' THEN -2147472692 WHEN ${c} = '-infinity' THEN -2147472691 ELSE ${c} - date '1970-01-01' END`,
    check: (d, e) => sameNumber(d, Number(e)),
  },
  time: {
    sql: (c, m) => {
      const micros = `(extract(epoch FROM ${c}) * 1000000)`;
      return keepNull(
        c,
        `${unit(m.types === 'avro' ? `LEAST(${micros}, 86399999999)` : micros, m)}::numeric(30,0)`,
      );
    },
    // micros: a long, millis: an int.
    check: (d, e, m) => (m.time === 'micros' ? assert.equal(d, BigInt(e)) : sameNumber(d, Number(e))),
  },
  timestamp: { sql: epochSql, check: (d, e) => assert.equal(d, BigInt(e)) },
  /** Debezium: io.debezium.time.ZonedTimestamp, UTC ISO-8601 with 6 fraction digits; Avro: epoch units. */
  timestamptz: {
    sql: (c, m) => {
      if (m.types === 'avro') return epochSql(c, m);
      const utc = `(${c} AT TIME ZONE 'UTC')`;
      return (
        `CASE WHEN ${c} = 'infinity' THEN 'infinity' WHEN ${c} = '-infinity' THEN '-infinity' ` +
        `ELSE ${isoYearSql(utc)} || to_char(${utc}, '-MM-DD"T"HH24:MI:SS.US"Z"') END`
      );
    },
    check: (d, e, m) => (m.types === 'avro' ? assert.equal(d, BigInt(e)) : assert.equal(d, e)),
  },
  /** Debezium: io.debezium.time.ZonedTime, the time in UTC; Avro: PostgreSQL's text with its offset. */
  timetz: {
    sql: (c, m) => (m.types === 'avro' ? c : `((${c} AT TIME ZONE 'UTC')::time)::text || 'Z'`),
    check: (d, e) => assert.equal(d, e),
  },
  bytea: {
    sql: (c) => `encode(${c}, 'hex')`,
    check: (d, e, m) => {
      if (m.binary === 'bytes') {
        assert.ok(Buffer.isBuffer(d));
        assert.equal(d.length, e.length / 2);
        assert.ok(d.equals(Buffer.from(e, 'hex')), 'bytes differ');
      } else if (m.binary === 'hex') {
        assert.equal(d, e);
      } else {
        assert.equal(d, Buffer.from(e, 'hex').toString('base64'));
      }
    },
  },
  /** Arrays: PostgreSQL's to_json of the array (null elements as null). */
  array: { sql: (c) => `to_json(${c})::text`, check: (d, e) => assert.deepEqual(d, JSON.parse(e)) },
} satisfies Record<string, Kind>;

describe('types', () => {
  let db: pg.Client;
  const reader = new TopicReader();

  before(async () => {
    db = await rawClient();
    // Both are in postgresql-contrib, which Debian's postgresql-15 package ships: if this fails,
    // the test fails with PostgreSQL's reason (nothing is skipped silently).
    for (const ext of ['citext', 'hstore']) {
      try {
        await db.query(`CREATE EXTENSION IF NOT EXISTS ${ext}`);
      } catch (err) {
        // Another test creating it at the same moment: the extension exists now.
        if (!/already exists|duplicate key/.test((err as Error).message)) throw err;
      }
    }
  });
  after(async () => {
    await stopConnectors();
    await db.end();
    await dropTestSlots();
  });

  test('every type round-trips exactly through the snapshot and the stream, in every handling mode', async () => {
    const name = uniqueName('ty');
    const t = `${name}_all`;
    const tNan = `${name}_nan`;
    const en = `${name}_mood`;
    const dom = `${name}_money2`;
    const comp = `${name}_pair`;
    await db.query(`CREATE TYPE ${en} AS ENUM ('a', 'b c', 'ünï')`);
    await db.query(`CREATE DOMAIN ${dom} AS numeric(12,2) CHECK (VALUE > -1000000000)`);
    await db.query(`CREATE TYPE ${comp} AS (x int, y text)`);

    const columns: Array<[string, string, Kind]> = [
      ['c_int2', 'int2', K.int],
      ['c_int4', 'int4', K.int],
      ['c_int8', 'int8', K.long],
      ['c_num', 'numeric(20,5)', K.decimal],
      ['c_num_negscale', 'numeric(5,-2)', K.decimal],
      ['c_numu', 'numeric', K.numeric],
      ['c_money', 'money', K.text],
      ['c_f4', 'float4', K.float4],
      ['c_f8', 'float8', K.float8],
      ['c_bool', 'bool', K.bool],
      ['c_date', 'date', K.date],
      ['c_time', 'time', K.time],
      ['c_timetz', 'timetz', K.timetz],
      ['c_ts', 'timestamp', K.timestamp],
      ['c_tstz', 'timestamptz', K.timestamptz],
      ['c_iv', 'interval', K.text],
      ['c_text', 'text', K.text],
      ['c_vc', 'varchar(10)', K.text],
      ['c_ch', 'char(5)', K.text],
      ['c_citext', 'citext', K.text],
      ['c_name', 'name', K.text],
      ['c_bytea', 'bytea', K.bytea],
      ['c_uuid', 'uuid', K.text],
      ['c_json', 'json', K.text],
      ['c_jsonb', 'jsonb', K.text],
      ['c_xml', 'xml', K.text],
      ['c_enum', en, K.text],
      ['c_dom', dom, K.decimal],
      ['c_ia', 'int4[]', K.array],
      ['c_ta', 'text[]', K.array],
      ['c_comp', comp, K.text],
      ['c_i4r', 'int4range', K.text],
      ['c_tstzr', 'tstzrange', K.text],
      ['c_inet', 'inet', K.text],
      ['c_cidr', 'cidr', K.text],
      ['c_mac', 'macaddr', K.text],
      ['c_mac8', 'macaddr8', K.text],
      ['c_bit', 'bit(4)', K.text],
      ['c_vbit', 'varbit', K.text],
      ['c_tsv', 'tsvector', K.text],
      ['c_point', 'point', K.text],
      ['c_line', 'line', K.text],
      ['c_box', 'box', K.text],
      ['c_poly', 'polygon', K.text],
      ['c_circle', 'circle', K.text],
      ['c_hstore', 'hstore', K.text],
    ];
    await db.query(
      `CREATE TABLE ${t} (id int PRIMARY KEY, ${columns.map(([c, type]) => `${c} ${type}`).join(', ')})`,
    );
    const hugeNumeric = `-${'9'.repeat(1000)}.${'1'.repeat(500)}`;
    const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('hex');
    const rows: Array<Record<string, string | Buffer | null>> = [
      {
        // minimum / negative edges
        c_int2: '-32768',
        c_int4: '-2147483648',
        c_int8: '-9223372036854775808',
        c_num: '-999999999999999.99999',
        c_num_negscale: '-9999900',
        c_numu: hugeNumeric,
        c_money: '-92233720368547758.08',
        c_f4: '-Infinity',
        c_f8: '-Infinity',
        c_bool: 'false',
        c_date: '-infinity',
        c_time: '00:00:00',
        c_timetz: '00:00:00+15:59',
        c_ts: '-infinity',
        c_tstz: '-infinity',
        c_iv: '-178000000 years',
        c_text: 'a',
        c_vc: 'z',
        c_ch: 'ab',
        c_citext: 'MiXeD',
        c_name: 'n',
        c_bytea: `\\x${allBytes}`,
        c_uuid: '00000000-0000-0000-0000-000000000000',
        c_json: '{"a": [1, 2.50, "x"], "b": null}',
        c_jsonb: '{"b": null, "a": [1, 2.50, "x"]}',
        c_xml: '<a x="1">t&amp;</a>',
        c_enum: 'a',
        c_dom: '-999999999.99',
        c_ia: '{1,NULL,-2147483648}',
        c_ta: '{"a,b","q\\"uote",NULL,"NULL","😀","back\\\\slash",""," sp ","{}"}',
        c_comp: '(1,"a ""q"", b")',
        c_i4r: '[1,10)',
        c_tstzr: '[2024-01-01 00:00:00.123456+00,infinity)',
        c_inet: '192.168.0.1/24',
        c_cidr: '10.0.0.0/8',
        c_mac: '08:00:2b:01:02:03',
        c_mac8: '08:00:2b:01:02:03:04:05',
        c_bit: '1010',
        c_vbit: '101010101',
        c_tsv: 'a fat cat sat on a mat',
        c_point: '(1.5,-2)',
        c_line: '{1,2,3}',
        c_box: '(1,1),(0,0)',
        c_poly: '((0,0),(1,1),(1,0))',
        c_circle: '<(0,0),5>',
        c_hstore: '"a"=>"1", "b c"=>NULL, "ü"=>"😀"',
      },
      {
        // maximum / positive edges
        c_int2: '32767',
        c_int4: '2147483647',
        c_int8: '9223372036854775807',
        c_num: '999999999999999.99999',
        c_num_negscale: '9999900',
        c_numu: 'NaN',
        c_money: '92233720368547758.07',
        c_f4: 'Infinity',
        c_f8: 'Infinity',
        c_bool: 'true',
        c_date: 'infinity',
        c_time: '24:00:00',
        c_timetz: '23:59:59.999999-15:59',
        c_ts: 'infinity',
        c_tstz: 'infinity',
        c_iv: '178000000 years',
        c_text: 'x'.repeat(1000),
        c_vc: '0123456789',
        c_ch: 'abcde',
        c_citext: 'ÀÉÎ',
        c_name: 'n'.repeat(63),
        c_bytea: '\\xff',
        c_uuid: 'ffffffff-ffff-ffff-ffff-ffffffffffff',
        c_json: '[]',
        c_jsonb: '[]',
        c_xml: '<r/>',
        c_enum: 'ünï',
        c_dom: '9999999999.99',
        c_ia: '{2147483647}',
        c_ta: '{x}',
        c_comp: '(,)',
        c_i4r: 'empty',
        c_tstzr: '(,2024-01-01 00:00:00+00]',
        c_inet: '::1',
        c_cidr: '2001:db8::/32',
        c_mac: 'ff:ff:ff:ff:ff:ff',
        c_mac8: 'ff:ff:ff:ff:ff:ff:ff:ff',
        c_bit: '1111',
        c_vbit: '',
        c_tsv: "'quoted word':1A 'x':2",
        c_point: '(1e+300,-1e-300)',
        c_line: '{0,-1,0}',
        c_box: '(2,2),(-1,-1)',
        c_poly: '((0,0))',
        c_circle: '<(1,1),0.5>',
        c_hstore: '',
      },
      {
        // BC dates and times, sub-second precision
        c_int2: '0',
        c_int4: '0',
        c_int8: '-9007199254740993',
        c_num: '0.00001',
        c_num_negscale: '0',
        c_numu: 'Infinity',
        c_money: '0',
        c_f4: 'NaN',
        c_f8: 'NaN',
        c_date: '4714-11-24 BC',
        c_time: '23:59:59.999999',
        c_timetz: '12:34:56.789+05:30',
        c_ts: '4714-11-24 00:00:00.000001 BC',
        c_tstz: '0044-03-15 12:00:00.5+01 BC',
        c_iv: '-1 days +02:03:00.000001',
        c_dom: '-0.01',
        c_ia: '{}',
        c_ta: '{}',
      },
      {
        // ordinary values, unicode (emoji, RTL), largest representable timestamps
        c_int8: '9007199254740993',
        c_num: '-0.5',
        c_numu: '-Infinity',
        c_f4: '-0',
        c_f8: '-0',
        c_date: '5874897-12-31',
        c_time: '04:05:06.789012',
        c_ts: '294247-01-09 23:59:59.999999',
        c_tstz: '294247-01-09 23:59:59.999999+00',
        c_iv: '1 year 2 mons 3 days 04:05:06.789012',
        c_text: 'emoji 😀👍🏽 rtl שלום عربي\ttab\nnewline "quote" \\back',
        c_vc: 'éè😀',
        c_ch: '😀',
        c_citext: 'שלום',
        c_name: 'ünï😀',
        c_json: '{"emoji": "😀", "rtl": "שלום"}',
        c_jsonb: '{"emoji": "😀", "rtl": "שלום"}',
        c_xml: '<t>שלום 😀</t>',
        c_enum: 'b c',
        c_ta: '{"שלום","😀👍🏽",NULL,"a\\\\b"}',
        c_comp: '(42,שלום)',
        c_hstore: '"שלום"=>"عربي"',
      },
      {}, // all NULL
      {
        // empty strings and the smallest values
        c_numu: '0.000000000000000000000000000000000000000000000000001',
        c_f4: '1e-45',
        c_f8: '5e-324',
        c_text: '',
        c_vc: '',
        c_ch: '',
        c_citext: '',
        c_name: '',
        c_bytea: '\\x',
        c_json: '""',
        c_jsonb: '""',
        c_xml: '',
        c_ia: '{NULL}',
        c_ta: '{""}',
        c_tstz: '1970-01-01 00:00:00.000001+00',
        c_ts: '1969-12-31 23:59:59.999999',
        c_time: '00:00:00.000001',
        c_iv: '0',
      },
    ];
    const colNames = columns.map(([c]) => c);
    for (const [i, row] of rows.entries()) {
      const values = colNames.map((c) => row[c] ?? null);
      await db.query(
        `INSERT INTO ${t} (id, ${colNames.join(', ')}) VALUES ($1, ${colNames.map((_, j) => `$${j + 2}`).join(', ')})`,
        [i + 1, ...values],
      );
    }
    // TOASTed, non-compressible: 3 MB of random text and 3 MB of random bytes.
    const bigText = randomBytes(2_250_000).toString('base64');
    const bigBytes = randomBytes(3_000_000);
    await db.query(`INSERT INTO ${t} (id, c_text, c_bytea) VALUES (7, $1, $2)`, [bigText, bigBytes]);
    await db.query(`CREATE TABLE ${tNan} (id int PRIMARY KEY, n numeric(10,2))`);
    await db.query(
      `INSERT INTO ${tNan} VALUES (1, 'NaN'), (2, '-0.01'), (3, '99999999.99'), (4, '12.50'), (5, NULL)`,
    );

    const modes: Array<{ mode: Mode; env: Record<string, string>; nan: boolean }> = [
      {
        mode: { decimal: 'precise', binary: 'bytes', time: 'micros', types: 'debezium' },
        env: {},
        nan: false,
      },
      {
        mode: { decimal: 'string', binary: 'base64', time: 'millis', types: 'debezium' },
        env: {
          PGCDC_AVRO_DECIMAL_HANDLING: 'string',
          PGCDC_AVRO_BINARY_HANDLING: 'base64',
          PGCDC_AVRO_TIME_PRECISION: 'millis',
        },
        nan: true,
      },
      {
        mode: { decimal: 'double', binary: 'hex', time: 'micros', types: 'avro' },
        env: {
          PGCDC_AVRO_DECIMAL_HANDLING: 'double',
          PGCDC_AVRO_BINARY_HANDLING: 'hex',
          PGCDC_AVRO_TYPE_MODE: 'avro',
        },
        nan: true,
      },
    ];
    const workers = modes.map((m, i) => {
      const wname = `${name}_m${i}`;
      const include = m.nan ? `public.${t}, public.${tNan}` : `public.${t}`;
      return { ...m, name: wname, ...startConnector(wname, { ...m.env, PGCDC_TABLES_INCLUDE: include }) };
    });
    await Promise.all(
      workers.map((w) =>
        streaming(w).catch((err: Error) => {
          throw new Error(`${w.name} (${JSON.stringify(w.mode)}): ${err.message}`, { cause: err });
        }),
      ),
    );
    // The same rows again, now through the stream.
    await db.query(`INSERT INTO ${t} SELECT id + 100, ${colNames.join(', ')} FROM ${t} ORDER BY id`);
    await db.query(`INSERT INTO ${tNan} SELECT id + 100, n FROM ${tNan} ORDER BY id`);

    // What PostgreSQL says each value is, per mode.
    const expectedRows = async (mode: Mode): Promise<Map<number, Record<string, string | null>>> => {
      const select = columns.map(([c, , kind]) => `${kind.sql ? kind.sql(c, mode) : c} AS ${c}`).join(', ');
      const { rows: got } = await db.query<Record<string, string | null>>(`SELECT id, ${select} FROM ${t}`);
      return new Map(got.map((r) => [Number(r.id), r]));
    };

    const nRows = rows.length + 1;
    let checked = 0;
    for (const w of workers) {
      const topic = `${w.name}.public.${t}`;
      const records = await eventually(
        `${w.name}: ${nRows * 2} records`,
        async () => {
          const r = await reader.read(topic);
          return r.length >= nRows * 2 ? r : undefined;
        },
        120_000,
      );
      const expected = await expectedRows(w.mode);
      assert.deepEqual(
        records.map((r) => `${r.value!.op}${String(r.key!.id)}`),
        [
          ...[1, 2, 3, 4, 5, 6, 7].map((i) => `r${i}`),
          ...[101, 102, 103, 104, 105, 106, 107].map((i) => `c${i}`),
        ],
      );
      for (const rec of records) {
        const after = rec.value!.after!;
        const id = Number(after.id);
        const exp = expected.get(id)!;
        for (const [c, , kind] of columns) {
          const e = exp[c] ?? null;
          const d = after[c];
          try {
            if (e === null) assert.equal(d, null);
            else kind.check(d, e, w.mode);
          } catch (err) {
            const show = (v: unknown) => {
              const s =
                typeof v === 'bigint'
                  ? `${v}n`
                  : Buffer.isBuffer(v)
                    ? `<${v.length} bytes>`
                    : JSON.stringify(v);
              return s && s.length > 120 ? `${s.slice(0, 120)}…` : s;
            };
            throw new Error(
              `${w.name} (${JSON.stringify(w.mode)}) row ${id} (${rec.value!.op}) ${c}: decoded ${show(d)}, PostgreSQL ${show(e)}: ${(err as Error).message}`,
              { cause: err },
            );
          }
          checked++;
        }
      }
      if (w.nan) {
        const nanRecords = await eventually(`${w.name}: numeric(10,2) NaN table`, async () => {
          const r = await reader.read(`${w.name}.public.${tNan}`);
          return r.length >= 10 ? r : undefined;
        });
        const { rows: nanExpected } = await db.query<{ id: string; n: string | null }>(
          `SELECT id, n FROM ${tNan}`,
        );
        const byId = new Map(nanExpected.map((r) => [Number(r.id), r.n]));
        for (const rec of nanRecords) {
          const e = byId.get(Number(rec.value!.after!.id)) ?? null;
          const d = rec.value!.after!.n;
          if (e === null) assert.equal(d, null);
          else K.decimal.check(d, e, w.mode);
          checked++;
        }
      }
    }
    // Apache Avro's Python reader, logical types on, decodes every record in both type modes.
    for (const w of workers) {
      const topic = `${w.name}.public.${t}`;
      const decoded = await decodeTopicWithPython(topic);
      assert.equal(decoded.length, nRows * 2, `${w.name}: every record decoded by Python`);
      const failed = decoded.filter((d) => !d.ok);
      assert.deepEqual(failed, [], `${w.name} (${w.mode.types}): records Python's avro could not decode`);
      const byId = new Map(
        decoded.map((d) => {
          const a = (d as unknown as { value: { after: Record<string, unknown> } }).value.after;
          return [Number(a.id), a];
        }),
      );
      const r = (id: number) => byId.get(id)!;
      if (w.mode.types === 'avro') {
        // Out-of-range values are clamped to what the reader's types hold.
        assert.deepEqual(r(1).c_date, { $date: '0001-01-01' });
        assert.deepEqual(r(2).c_date, { $date: '9999-12-31' });
        assert.deepEqual(r(4).c_date, { $date: '9999-12-31' });
        assert.deepEqual(r(2).c_time, { $time: '23:59:59.999999' });
        assert.deepEqual(r(6).c_tstz, { $datetime: '1970-01-01T00:00:00.000001+00:00' });
        assert.deepEqual(r(2).c_tstz, { $datetime: '9999-12-31T23:59:59.999999+00:00' });
        assert.equal(r(1).c_uuid, '00000000-0000-0000-0000-000000000000'); // avro 1.12 keeps uuid a str
      } else {
        // Debezium's semantic types carry no Avro logical type: plain ints, longs and strings.
        assert.equal(r(1).c_date, -2147472691);
        assert.equal(r(2).c_tstz, 'infinity');
        assert.equal(r(6).c_tstz, '1970-01-01T00:00:00.000001Z');
        assert.equal(r(1).c_uuid, '00000000-0000-0000-0000-000000000000');
        if (w.mode.decimal === 'precise')
          assert.deepEqual(r(1).c_num, { $decimal: '-999999999999999.99999' });
      }
    }
    for (const w of workers) {
      await w.connector.stop();
      await w.running;
    }
    assert.ok(checked >= 3 * 2 * nRows * columns.length, `${checked} values compared`);
  });

  test('an UPDATE leaving a TOASTed value unchanged: placeholder under REPLICA IDENTITY DEFAULT, the real value under FULL', async () => {
    const name = uniqueName('tt');
    const tDefault = `${name}_def`;
    const tFull = `${name}_full`;
    const bigText = randomBytes(2_250_000).toString('base64');
    const bigBytes = randomBytes(1_000_000);
    for (const tbl of [tDefault, tFull]) {
      await db.query(`CREATE TABLE ${tbl} (id int PRIMARY KEY, n int, big text, bigb bytea, nums int8[])`);
      // Out of line and uncompressed, so the array is TOASTed too.
      await db.query(`ALTER TABLE ${tbl} ALTER COLUMN nums SET STORAGE EXTERNAL`);
      await db.query(
        `INSERT INTO ${tbl} VALUES (1, 0, $1, $2, (SELECT array_agg(g) FROM generate_series(1, 2000) g))`,
        [bigText, bigBytes],
      );
    }
    await db.query(`ALTER TABLE ${tFull} REPLICA IDENTITY FULL`);
    // The values really are stored out of line (TOASTed), so an UPDATE can leave them unsent.
    const { rows: sizes } = await db.query<{ d: string; f: string }>(
      `SELECT pg_column_size(big) AS d, pg_column_size(bigb) AS f FROM ${tDefault}`,
    );
    assert.ok(Number(sizes[0]!.d) > 2_000_000, 'text stays large (not compressed)');

    const w = startConnector(name, { PGCDC_TABLES_INCLUDE: `public.${tDefault}, public.${tFull}` });
    await eventually(
      'streaming',
      async () => (w.connector.state === 'STREAMING' ? true : undefined),
      120_000,
    );
    for (const tbl of [tDefault, tFull]) await db.query(`UPDATE ${tbl} SET n = 1 WHERE id = 1`);

    const read = (tbl: string) =>
      eventually(`${tbl} update`, async () => {
        const r = await reader.read(`${name}.public.${tbl}`);
        return r.find((x) => x.value?.op === 'u') ? r : undefined;
      });
    const defRecords: DecodedRecord[] = await read(tDefault);
    const fullRecords: DecodedRecord[] = await read(tFull);
    await w.connector.stop();
    await w.running;

    const snap = defRecords.find((x) => x.value?.op === 'r')!.value!.after!;
    assert.equal(snap.big, bigText, 'the snapshot carries the value');
    assert.ok((snap.bigb as Buffer).equals(bigBytes));

    const u = defRecords.find((x) => x.value?.op === 'u')!.value!;
    assert.equal(u.after!.n, 1);
    assert.equal(u.after!.big, PLACEHOLDER, 'text: the placeholder, never null');
    assert.ok((u.after!.bigb as Buffer).equals(Buffer.from(PLACEHOLDER)), 'bytea: the placeholder bytes');
    // An array of numbers cannot hold the placeholder text: null, counted (docs/types.md).
    assert.equal(u.after!.nums, null);
    assert.equal(u.before, null, 'DEFAULT identity and an unchanged key: no old row');

    const f = fullRecords.find((x) => x.value?.op === 'u')!.value!;
    assert.equal(f.after!.n, 1);
    assert.equal(f.after!.big, bigText, 'FULL: the real value');
    assert.ok((f.after!.bigb as Buffer).equals(bigBytes));
    assert.equal((f.after!.nums as unknown[]).length, 2000);
    assert.equal(f.before!.big, bigText);
    assert.equal(f.before!.n, 0);
  });
});
