// A real consumer: pgcdc's topics, unchanged, into the Debezium JDBC sink connector on Kafka
// Connect standalone (Connect 4.3.1 and the sink from Maven Central, test/support/connect.ts),
// with Apicurio's Avro converter reading the Confluent wire format from the stack's registry. The
// sink writes into a second database on the stack's PostgreSQL. Snapshot, insert, update, delete,
// a primary-key change and an ADD COLUMN with a default mid-stream; then the source and the sink
// are compared row by row as PostgreSQL prints them. The only differences allowed are the ones
// listed in SINK_DIFFERENCES, each a limit of the sink that Debezium's own connector meets too
// (docs/types.md, "Kafka Connect sinks").
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { rawRecords } from '../support/avro-python.ts';
import { startConnectWorker, type ConnectWorker } from '../support/connect.ts';
import { eventually, stackSettings, uniqueName } from '../support/pipeline.ts';

/** A client whose every value is PostgreSQL's text output. */
function textClient(database: string): pg.Client {
  const s = stackSettings();
  return new pg.Client({
    host: s.pgHost,
    port: s.pgPort,
    user: s.pgUser,
    password: s.pgPassword,
    database,
    options: '-c DateStyle=ISO,MDY -c TimeZone=UTC -c IntervalStyle=iso_8601 -c extra_float_digits=1',
    types: { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig,
  });
}

/** column → [type, values for rows 1..4 (row 5 is all NULL)]. Every type of docs/types.md. */
// prettier-ignore
const COLUMNS: Array<[string, string, Array<string | null>]> = [
  ['c_int2', 'int2', ['-32768', '32767', '0', '7']],
  ['c_int4', 'int4', ['-2147483648', '2147483647', '0', '7']],
  ['c_int8', 'int8', ['-9223372036854775808', '9223372036854775807', '9007199254740993', '7']],
  ['c_oid', 'oid', ['0', '4294967295', '1', '7']],
  ['c_num', 'numeric(20,5)', ['-999999999999999.99999', '999999999999999.99999', '0.00001', '-0.50000']],
  ['c_numu', 'numeric', ['-1234567890.0987654321', '123.4500', 'NaN', '0']],
  ['c_money', 'money', ['-92233720368547758.08', '92233720368547758.07', '0', '1.5']],
  ['c_f4', 'float4', ['-Infinity', 'Infinity', 'NaN', '1.5']],
  ['c_f8', 'float8', ['-1.7976931348623157e+308', '5e-324', 'NaN', '-0']],
  ['c_bool', 'bool', ['false', 'true', 'true', 'false']],
  ['c_date', 'date', ['4714-11-24 BC', '5874897-12-31', '1970-01-01', '2024-02-29']],
  ['c_time', 'time', ['00:00:00', '23:59:59.999999', '12:34:56.789', '00:00:00.000001']],
  ['c_time3', 'time(3)', ['00:00:00', '23:59:59.999', '12:34:56.789', '00:00:00.001']],
  ['c_timetz', 'timetz', ['00:00:00+15:59', '23:59:59.999999-15:59', '12:34:56.789+05:30', '08:00:00+00']],
  [
    'c_ts',
    'timestamp',
    [
      '4713-01-01 00:00:00 BC',
      '294246-12-31 23:59:59.999999',
      '1969-12-31 23:59:59.999999',
      '2024-01-02 03:04:05.123456',
    ],
  ],
  [
    'c_ts3',
    'timestamp(3)',
    ['0001-01-01 00:00:00', '9999-12-31 23:59:59.999', '1970-01-01 00:00:00.001', '2024-01-02 03:04:05.123'],
  ],
  [
    'c_tstz',
    'timestamptz',
    [
      '0044-03-15 12:00:00.5+01 BC',
      '294246-12-31 23:59:59.999999+00',
      '1970-01-01 00:00:00.000001+00',
      '2024-01-02 08:34:05.123456+05:30',
    ],
  ],
  ['c_iv', 'interval', ['-178000000 years', '178000000 years', '1 year 2 mons 3 days 04:05:06.789012', '0']],
  ['c_text', 'text', ['', 'emoji 😀👍🏽 rtl שלום عربي\ttab\nnewline "q" \\b', 'x', 'NULL']],
  ['c_vc', 'varchar(10)', ['', '0123456789', 'éè😀', 'a']],
  ['c_ch', 'char(5)', ['', 'abcde', 'ab', '😀']],
  ['c_name', 'name', ['', 'n'.repeat(63), 'ünï😀', 'n']],
  ['c_bytea', 'bytea', ['\\x', '\\x00ff10', '\\xdeadbeef', '\\x00']],
  [
    'c_uuid',
    'uuid',
    [
      '00000000-0000-0000-0000-000000000000',
      'ffffffff-ffff-ffff-ffff-ffffffffffff',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12',
    ],
  ],
  ['c_json', 'json', ['{"a": [1, 2.50, "x"], "b": null}', '[]', '""', '{"emoji": "😀"}']],
  ['c_jsonb', 'jsonb', ['{"b": null, "a": [1, 2.50, "x"]}', '[]', '""', '{"emoji": "😀"}']],
  ['c_xml', 'xml', ['<a x="1">t&amp;</a>', '<r/>', '', '<t>שלום</t>']],
  ['c_enum', 'ENUM', ['a', 'b c', 'ünï', 'a']],
  ['c_ia', 'int4[]', ['{1,NULL,-2147483648}', '{}', '{2147483647}', '{NULL}']],
  ['c_ta', 'text[]', ['{"a,b","q\\"uote",NULL,"NULL","😀"}', '{}', '{""}', '{x}']],
  ['c_inet', 'inet', ['192.168.0.1/24', '::1', '10.0.0.1', '2001:db8::1']],
  ['c_cidr', 'cidr', ['10.0.0.0/8', '2001:db8::/32', '192.168.0.0/16', '0.0.0.0/0']],
  ['c_mac', 'macaddr', ['08:00:2b:01:02:03', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00', '08:00:2b:01:02:04']],
  ['c_bit', 'bit(4)', ['1010', '1111', '0000', '0001']],
  ['c_vbit', 'varbit', ['101010101', '', '1', '0']],
  ['c_tsv', 'tsvector', ['a fat cat', "'quoted word':1A 'x':2", 'z', 'a']],
  ['c_point', 'point', ['(1.5,-2)', '(0,0)', '(-1,1)', '(2,2)']],
  ['c_i4r', 'int4range', ['[1,10)', 'empty', '(,5]', '[3,4)']],
  ['c_comp', 'COMP', ['(1,"a ""q"", b")', '(,)', '(42,שלום)', '(0,x)']],
  ['c_dom', 'DOMAIN', ['-999999999.99', '9999999999.99', '-0.01', '0.00']],
  ['c_char', '"char"', ['a', 'z', ' ', '!']],
  ['c_citext', 'citext', ['MiXeD', 'ÀÉÎ', '', 'שלום']],
  ['c_mac8', 'macaddr8', ['08:00:2b:01:02:03:04:05', 'ff:ff:ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00:00:00', '08:00:2b:01:02:03:04:06']],
  ['c_line', 'line', ['{1,2,3}', '{0,-1,0}', '{1,0,0}', '{2,2,2}']],
  ['c_box', 'box', ['(1,1),(0,0)', '(2,2),(-1,-1)', '(0,0),(0,0)', '(3,3),(1,1)']],
  ['c_poly', 'polygon', ['((0,0),(1,1),(1,0))', '((0,0))', '((1,1),(2,2),(3,1))', '((0,0),(1,0),(1,1),(0,1))']],
  ['c_circle', 'circle', ['<(0,0),5>', '<(1,1),0.5>', '<(0,0),0>', '<(-1,-1),1>']],
  ['c_tstzr', 'tstzrange', ['[2024-01-01 00:00:00.123456+00,infinity)', '(,2024-01-01 00:00:00+00]', 'empty', '["2024-01-01 00:00:00+00","2024-01-02 00:00:00+00")']],
  ['c_hstore', 'hstore', ['"a"=>"1", "b c"=>NULL, "ü"=>"😀"', '', '"שלום"=>"عربي"', '"k"=>"v"']],
];

/**
 * Where the sink's row differs from the source, each a limit that Debezium's own connector meets
 * too (it sends the same values): the SQL, over the source column, gives what the sink holds.
 */
const SINK_DIFFERENCES: Record<string, { why: string; sql: string }> = {
  c_timetz: {
    why: 'io.debezium.time.ZonedTime is the time in UTC: the sink stores the same instant at offset +00',
    sql: `(c_timetz AT TIME ZONE 'UTC')`,
  },
  c_date: {
    why:
      "pgjdbc writes a LocalDate before 4713-01-01 BC as -infinity: PostgreSQL's first day (4714-11-24 BC), " +
      "and Debezium's infinity sentinels (year -5877611) for both infinities",
    sql: `CASE WHEN c_date < date '4713-01-01 BC' OR c_date = 'infinity' THEN '-infinity'::date ELSE c_date END`,
  },
  c_ts: {
    why: "Debezium's timestamp 'infinity' (9223372036825200000 µs) is a finite instant to the sink",
    sql: `CASE WHEN c_ts = 'infinity' THEN timestamp '294247-01-10 04:00:25.2' ELSE c_ts END`,
  },
};

describe('Debezium JDBC sink on Kafka Connect reads pgcdc topics unchanged', () => {
  const { db } = stackSuite();
  const name = uniqueName('sink');
  const sinkDbName = name;
  let worker: ConnectWorker | undefined;
  let src: pg.Client;
  let sink: pg.Client;

  before(async () => {
    await db.query(`CREATE DATABASE ${sinkDbName}`);
    src = textClient(stackSettings().pgDatabase);
    sink = textClient(sinkDbName);
    await src.connect();
    await sink.connect();
  });
  after(async () => {
    await worker?.stop();
    await sink?.end();
    await src?.query(`DROP DATABASE IF EXISTS ${sinkDbName} WITH (FORCE)`);
    await src?.end();
  });

  test('snapshot, DML, a key change and ADD COLUMN with a default land in the sink as in the source', async () => {
    const t = `${name}_all`;
    const en = `${name}_mood`;
    const comp = `${name}_pair`;
    await src.query(`CREATE TYPE ${en} AS ENUM ('a', 'b c', 'ünï')`);
    await src.query(`CREATE TYPE ${comp} AS (x int, y text)`);
    const dom = `${name}_money2`;
    await src.query(`CREATE DOMAIN ${dom} AS numeric(12,2) CHECK (VALUE > -1000000000)`);
    for (const ext of ['citext', 'hstore']) {
      try {
        await src.query(`CREATE EXTENSION IF NOT EXISTS ${ext}`);
      } catch (err) {
        // Another test creating it at the same moment: the extension exists now.
        if (!/already exists|duplicate key/.test((err as Error).message)) throw err;
      }
    }
    const special: Record<string, string> = { ENUM: en, COMP: comp, DOMAIN: dom };
    const typeOf = (type: string) => special[type] ?? type;
    const cols = COLUMNS.map(([c]) => c);
    await src.query(
      `CREATE TABLE ${t} (id int PRIMARY KEY, ${COLUMNS.map(([c, type]) => `${c} ${typeOf(type)}`).join(', ')}, ` +
        `c_nn int NOT NULL DEFAULT 3, c_dflt text DEFAULT 'd''x')`,
    );
    const insert = async (id: number, values: Array<string | null>) =>
      src.query(
        `INSERT INTO ${t} (id, ${cols.join(', ')}) VALUES ($1, ${cols.map((_, j) => `$${j + 2}`).join(', ')})`,
        [id, ...values],
      );
    for (let r = 0; r < 4; r++)
      await insert(
        r + 1,
        COLUMNS.map(([, , v]) => v[r] ?? null),
      );
    await insert(
      5,
      cols.map(() => null),
    );
    // The infinities. Left out because they stop the sink task, with Debezium's values too:
    // time '24:00:00' (no LocalTime holds it) and timestamptz '±infinity' (the sink binds the
    // strings as varchar into its timestamptz column).
    const infinities = (sign: string) =>
      cols.map((c) => (['c_date', 'c_ts'].includes(c) ? `${sign}infinity` : null));
    await insert(8, infinities(''));
    await insert(9, infinities('-'));

    const prefix = name;
    const w = startConnector(name, { PGCDC_TABLES_INCLUDE: `public.${t}` });
    await streaming(w);

    const s = stackSettings();
    worker = await startConnectWorker(name, s.brokers);
    const registryV2 = s.registryUrl.replace(/\/apis\/ccompat\/v\d+$/, '/apis/registry/v2');
    const converter = (side: 'key' | 'value'): Record<string, string> => ({
      [`${side}.converter`]: 'io.apicurio.registry.utils.converter.AvroConverter',
      [`${side}.converter.apicurio.registry.url`]: registryV2,
      // pgcdc writes the Confluent wire format: a 4-byte id in the payload, no headers; Apicurio 3's
      // ccompat API hands out content ids.
      [`${side}.converter.apicurio.registry.as-confluent`]: 'true',
      [`${side}.converter.apicurio.registry.use-id`]: 'contentId',
      [`${side}.converter.apicurio.registry.headers.enabled`]: 'false',
    });
    await worker.putConnector(name, {
      'connector.class': 'io.debezium.connector.jdbc.JdbcSinkConnector',
      'tasks.max': '1',
      topics: `${prefix}.public.${t}`,
      'connection.url': `jdbc:postgresql://${s.pgHost}:${s.pgPort}/${sinkDbName}`,
      'connection.username': s.pgUser,
      'connection.password': s.pgPassword,
      'insert.mode': 'upsert',
      'delete.enabled': 'true',
      'primary.key.mode': 'record_key',
      'schema.evolution': 'basic',
      'collection.name.format': '${source.table}',
      'use.time.zone': 'UTC',
      ...converter('key'),
      ...converter('value'),
    });

    // Streaming: insert, update, delete, a key change, ADD COLUMN with a default; row 1 is never
    // touched again, so only the sink's column default can give it the new column's value.
    await insert(
      6,
      COLUMNS.map(([, , v]) => v[3] ?? null),
    );
    await src.query(`UPDATE ${t} SET c_text = 'updated', c_int4 = -1, c_nn = 4 WHERE id = 3`);
    await src.query(`DELETE FROM ${t} WHERE id = 4`);
    await src.query(`UPDATE ${t} SET id = 200 WHERE id = 2`);
    await src.query(`ALTER TABLE ${t} ADD COLUMN flag int NOT NULL DEFAULT 7`);
    await insert(
      7,
      COLUMNS.map(([, , v]) => v[2] ?? null),
    );
    await src.query(`UPDATE ${t} SET flag = 9 WHERE id = 7`);

    const all = [...cols, 'c_nn', 'c_dflt', 'flag'];
    // Each column as PostgreSQL prints it (its output function: char(n) keeps its padding, inet
    // shows no /32); the source side with the documented sink differences applied.
    const rows = async (client: pg.Client, expected: boolean) =>
      (
        await client.query<Record<string, string | null>>(
          `SELECT id, ${all.map((c) => (expected && SINK_DIFFERENCES[c] ? `${SINK_DIFFERENCES[c].sql} AS ${c}` : c)).join(', ')} FROM ${t} ORDER BY id`,
        )
      ).rows;
    const differences = (
      source: Array<Record<string, string | null>>,
      target: Array<Record<string, string | null>>,
    ) => {
      const ids = (rs: Array<Record<string, string | null>>) => rs.map((r) => r.id).join();
      if (ids(source) !== ids(target)) return [`ids: source ${ids(source)}, sink ${ids(target)}`];
      const out: string[] = [];
      for (const [i, row] of source.entries()) {
        for (const c of all) {
          const got = target[i]![c] ?? null;
          if (row[c] !== got)
            out.push(`row ${row.id} ${c}: expected ${JSON.stringify(row[c])}, sink ${JSON.stringify(got)}`);
        }
      }
      return out;
    };
    let last: string[] = [];
    let outcome: string;
    try {
      outcome = await eventually(
        'the sink to hold the source rows',
        async () => {
          const status = await worker!.status(name);
          const failed = status?.tasks.find((task) => task.state === 'FAILED');
          if (failed) return `sink task failed: ${failed.trace?.split('\n').slice(0, 4).join(' | ')}`;
          const target = await rows(sink, false).catch(() => undefined);
          if (!target) return undefined;
          last = differences(await rows(src, true), target);
          return last.length === 0 ? 'same' : undefined;
        },
        180_000,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; differences: ${last.join('; ')}`, { cause: err });
    }
    assert.equal(outcome, 'same', `${outcome}; differences so far: ${last.join('; ')}`);
    // The documented differences are real ones (each shows in this table), not slack.
    const raw = await rows(src, false);
    const expected = await rows(src, true);
    for (const c of Object.keys(SINK_DIFFERENCES)) {
      assert.ok(
        raw.some((r, i) => r[c] !== expected[i]![c]),
        `${c}: ${SINK_DIFFERENCES[c]!.why} — no row shows it`,
      );
    }
    // The column added mid-stream: the sink added it with the default, so the row never touched
    // since (1) holds 7, as in the source.
    const flags = (await sink.query<{ id: string; flag: string }>(`SELECT id, flag FROM ${t} ORDER BY id`))
      .rows;
    assert.deepEqual(
      flags.map((r) => `${r.id}:${r.flag}`),
      ['1:7', '3:7', '5:7', '6:7', '7:9', '8:7', '9:7', '200:7'],
    );
    // The key change (2 → 200): the delete names the new key, the create the old one.
    const withHeaders = (await rawRecords(`${prefix}.public.${t}`)).filter(
      (r) => Object.keys(r.headers).length > 0,
    );
    assert.deepEqual(
      withHeaders.map((r) => r.headers),
      [{ '__debezium.newkey': '{"id":200}' }, { '__debezium.oldkey': '{"id":2}' }],
    );
    await w.connector.stop();
    await w.running;
  });
});
