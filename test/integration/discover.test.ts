// `pgcdc discover` against the stack's PostgreSQL: quoted names are listed as tables.include takes
// them, the printed list parses back (parseTableList) to the same tables, and --json has its shape.
// Only postgres.* settings are given: discover needs nothing else.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { parseTableList } from '../../src/config/tables.ts';
import { pgClient, stackSettings, uniqueName } from '../support/pipeline.ts';

const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

function pgcdc(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (err as { code?: unknown }).code : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

interface DiscoveryJson {
  database: string;
  user: string;
  publication: { name: string; exists: boolean } | null;
  tables: Array<{
    name: string;
    schema: string;
    table: string;
    partitioned: boolean;
    primaryKey: string[];
    replicaIdentity: string;
    estimatedRows: number | null;
    sizeBytes: number | null;
    size: string | null;
    inPublication: boolean;
    selected: boolean;
  }>;
  notReadable: string[];
  include: string;
}

describe('pgcdc discover', () => {
  let db: pg.Client;
  const id = uniqueName('disc');
  const schema = `Disc ${id.slice(5)}`; // upper case and a space: needs quotes
  const q = `"${schema}"`;
  const name = uniqueName('disc');
  const pub = `${id}_pub`;

  /** postgres.* only (no name, kafka or registry); the selection is the test schema. */
  const env = (extra: Record<string, string> = {}): Record<string, string> => {
    const s = stackSettings();
    return {
      PGCDC_POSTGRES_HOST: s.pgHost,
      PGCDC_POSTGRES_PORT: String(s.pgPort),
      PGCDC_POSTGRES_USER: s.pgUser,
      PGCDC_POSTGRES_PASSWORD: s.pgPassword,
      PGCDC_POSTGRES_DATABASE: s.pgDatabase,
      PGCDC_POSTGRES_SCHEMAS: schema,
      ...extra,
    };
  };

  before(async () => {
    db = await pgClient();
    await db.query(`CREATE SCHEMA ${q}`);
    await db.query(`CREATE TABLE ${q}."Order.Items" (order_id int, line int, PRIMARY KEY (order_id, line))`);
    await db.query(`CREATE TABLE ${q}."with space" (v text)`);
    await db.query(`ALTER TABLE ${q}."with space" REPLICA IDENTITY FULL`);
    await db.query(`CREATE TABLE ${q}.plain (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${q}.plain SELECT generate_series(1, 1000)`);
    await db.query(`ANALYZE ${q}.plain`);
    await db.query(`CREATE PUBLICATION ${pub} FOR TABLE ${q}.plain`);
  });

  after(async () => {
    await db.query(`DROP PUBLICATION IF EXISTS ${pub}`);
    await db.query(`DROP SCHEMA IF EXISTS ${q} CASCADE`);
    await db.end();
  });

  test('lists quoted names; the printed tables.include parses back to the same tables', async () => {
    const r = await pgcdc(['discover'], env({ PGCDC_NAME: name, PGCDC_PUBLICATION_NAME: pub }));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, new RegExp(`^pgcdc discover: database pgcdc as postgres, publication ${pub}$`));
    const header = lines.find((l) => l.startsWith('TABLE'))!;
    assert.match(header, /^TABLE +PRIMARY KEY +REPLICA IDENTITY +ROWS \(EST\.\) +SIZE +PUBLISHED +SELECTED$/);
    const row = (t: string) => {
      const found = lines.find((l) => l.startsWith(`${q}.${t} `));
      assert.ok(found, `no row for ${q}.${t} in:\n${r.stdout}`);
      return found.split(/ {2,}/);
    };
    assert.deepEqual(row('"Order.Items"').slice(1, 3), ['order_id,line', 'default']);
    assert.deepEqual(row('"with space"').slice(1, 3), ['-', 'full']);
    const plain = row('plain');
    assert.deepEqual(
      [plain[1], plain[2], plain[3], plain[5], plain[6]],
      ['id', 'default', '1,000', 'yes', 'yes'],
    );
    assert.match(plain[4]!, /^\d+(\.\d)? KiB$/);
    // Columns line up: every cell of the PRIMARY KEY column starts where its header does.
    const at = header.indexOf('PRIMARY KEY');
    assert.equal(lines.find((l) => l.startsWith(`${q}.plain `))!.indexOf('id '), at);

    const include = lines.at(-1)!;
    assert.match(lines.at(-2)!, /^tables\.include for the 3 selected tables/);
    assert.equal(include, `${q}."Order.Items", ${q}.plain, ${q}."with space"`);
    assert.deepEqual(parseTableList(include), [
      { schema, table: 'Order.Items' },
      { schema, table: 'plain' },
      { schema, table: 'with space' },
    ]);
  });

  test('--json: the shape, with the selection narrowed by tables.include', async () => {
    const r = await pgcdc(
      ['discover', '--json'],
      env({ PGCDC_NAME: name, PGCDC_PUBLICATION_NAME: pub, PGCDC_TABLES_INCLUDE: `${q}."Order.Items"` }),
    );
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout) as DiscoveryJson;
    assert.equal(d.database, 'pgcdc');
    assert.equal(d.user, 'postgres');
    assert.deepEqual(d.publication, { name: pub, exists: true });
    assert.deepEqual(d.notReadable, []);
    const ours = d.tables.filter((t) => t.schema === schema);
    assert.deepEqual(
      ours.map((t) => [t.name, t.table, t.primaryKey, t.replicaIdentity, t.inPublication, t.selected]),
      [
        [`${q}."Order.Items"`, 'Order.Items', ['order_id', 'line'], 'default', false, true],
        [`${q}.plain`, 'plain', ['id'], 'default', true, false],
        [`${q}."with space"`, 'with space', [], 'full', false, false],
      ],
    );
    const plain = ours.find((t) => t.table === 'plain')!;
    assert.equal(plain.estimatedRows, 1000);
    assert.equal(typeof plain.sizeBytes, 'number');
    assert.match(plain.size!, /KiB$/);
    assert.equal(plain.partitioned, false);
    assert.equal(d.include, `${q}."Order.Items"`);
    assert.deepEqual(parseTableList(d.include), [{ schema, table: 'Order.Items' }]);
  });

  test('without a connector name the publication is unknown; a failed connection is one line, exit 2', async () => {
    const r = await pgcdc(['discover'], env());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /publication unknown \(set name or publication\.name\)/);
    const bad = await pgcdc(['discover'], env({ PGCDC_POSTGRES_PASSWORD: 'wrong' }));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^failed +connection +password authentication failed for user postgres/);
  });
});
