// Schema evolution while streaming, on the real stack (Apicurio with a global BACKWARD rule):
// every DDL that changes a table's Avro shape becomes a new version of its subjects, each record
// is written with the schema of the relation version it was decoded under (also inside one
// transaction), a new table added to the publication is published, a dropped table does not stop
// the worker, an update of the key is delete + tombstone + create. An incompatible change stops
// the worker with one line naming the table, column, change and rule, confirms nothing past it,
// and after the documented way out (subject compatibility NONE) a restart delivers it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { defaultPublicationName, defaultSlotName } from '../../src/config/names.ts';
import { formatLsn } from '../../src/postgres/lsn.ts';
import { eventually, stackSettings, uniqueName, type DecodedRecord } from '../support/pipeline.ts';

const registryUrl = () => stackSettings().registryUrl;

async function versions(subject: string): Promise<number[]> {
  const res = await fetch(`${registryUrl()}/subjects/${encodeURIComponent(subject)}/versions`);
  if (res.status === 404) return [];
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as number[];
}

/**
 * The documented way out, for this stack's registry (Apicurio): NONE as the subject's own
 * COMPATIBILITY rule, through Apicurio's v3 API. (Its ccompat `PUT /config/{subject}` with NONE
 * deletes the subject's rule instead, so the global BACKWARD rule would still apply — checked below.)
 */
async function setCompatibilityNone(subject: string): Promise<void> {
  const ccompat = `${registryUrl()}/config/${encodeURIComponent(subject)}`;
  const put = await fetch(ccompat, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ compatibility: 'NONE' }),
  });
  assert.equal(put.status, 200, await put.text());
  const effective = (await (await fetch(`${ccompat}?defaultToGlobal=true`)).json()) as {
    compatibilityLevel: string;
  };
  if (effective.compatibilityLevel !== 'NONE') {
    const base = registryUrl().replace(/\/apis\/ccompat\/v\d+$/, '');
    const res = await fetch(
      `${base}/apis/registry/v3/groups/default/artifacts/${encodeURIComponent(subject)}/rules`,
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ ruleType: 'COMPATIBILITY', config: 'NONE' }),
      },
    );
    assert.ok(res.status === 204 || res.status === 200, await res.text());
  }
  const now = (await (await fetch(`${ccompat}?defaultToGlobal=true`)).json()) as {
    compatibilityLevel: string;
  };
  assert.equal(now.compatibilityLevel, 'NONE');
}

const fieldsOf = (r: DecodedRecord) => Object.keys(r.value!.after ?? r.value!.before ?? {}).sort();
const confirmedFlush = async (db: pg.Client, slot: string): Promise<bigint> => {
  const { rows } = await db.query<{ lsn: string }>(
    `SELECT (confirmed_flush_lsn - '0/0')::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  return BigInt(rows[0]!.lsn);
};

describe('schema evolution', () => {
  const { db, reader } = stackSuite();

  test('DDL while streaming: new subject versions, records in the shape of their moment, incompatible change stop and recovery', async () => {
    const name = uniqueName('ev');
    const t = `${name}_t`;
    const gone = `${name}_gone`;
    const late = `${name}_late`;
    // The connector selects by schema (no include list), so a table created later in that schema
    // is captured once it joins the publication. Unqualified names below live in this schema.
    const sch = name;
    await db.query(`CREATE SCHEMA ${sch}`);
    await db.query(`SET search_path TO ${sch}, public`);
    const topic = `${name}.${sch}.${t}`;
    const valueSubject = `${topic}-value`;
    const keySubject = `${topic}-key`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, v int, s varchar(10), n numeric(10,2), r int)`);
    await db.query(`CREATE TABLE ${gone} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${t} VALUES (1, 1, 'one', 1.50, 1)`);
    await db.query(`INSERT INTO ${gone} VALUES (1)`);
    const env = { PGCDC_POSTGRES_SCHEMAS: sch };
    let w = startConnector(name, env);
    await streaming(w);

    // Each step: DDL, then a row that shows the new shape. [id, DDL, expected new value versions]
    const steps: Array<[number, string, number]> = [
      [2, `ALTER TABLE ${t} ADD COLUMN a1 text`, 1],
      [3, `ALTER TABLE ${t} ADD COLUMN a2 int DEFAULT 7`, 1],
      [4, `ALTER TABLE ${t} ADD COLUMN a3 text NOT NULL DEFAULT 'x'`, 1],
      [5, `ALTER TABLE ${t} DROP COLUMN r`, 1],
      [6, `ALTER TABLE ${t} RENAME COLUMN s TO s2`, 1],
      [7, `ALTER TABLE ${t} ALTER COLUMN v TYPE int8`, 1],
      [8, `ALTER TABLE ${t} ALTER COLUMN s2 TYPE varchar(20)`, 0],
      [9, `ALTER TABLE ${t} ALTER COLUMN n TYPE numeric(12,2)`, 1],
      [10, `ALTER TABLE ${t} ALTER COLUMN v SET NOT NULL`, 0],
      [11, `ALTER TABLE ${t} ALTER COLUMN v DROP NOT NULL`, 0],
      [12, `ALTER TABLE ${t} REPLICA IDENTITY FULL`, 0],
    ];
    const expectedVersions = [1];
    for (const [id, ddl, added] of steps) {
      await db.query(ddl);
      await db.query(`INSERT INTO ${t} (id, v, n) VALUES ($1, $2, 0.5)`, [id, id]);
      const want = expectedVersions.at(-1)! + added;
      expectedVersions.push(want);
      await eventually(`${ddl}: ${want} value versions`, async () => {
        const recs = await reader.read(topic);
        return recs.some((r) => r.value?.after?.id === id) && (await versions(valueSubject)).length === want
          ? true
          : undefined;
      });
    }
    // Under REPLICA IDENTITY FULL an update carries the whole old row.
    await db.query(`UPDATE ${t} SET a1 = 'full' WHERE id = 12`);
    // DDL between two DML statements of one transaction: each row in the shape of its moment.
    await db.query('BEGIN');
    await db.query(`INSERT INTO ${t} (id, v) VALUES (13, 13)`);
    await db.query(`ALTER TABLE ${t} ADD COLUMN a4 bool`);
    await db.query(`INSERT INTO ${t} (id, v, a4) VALUES (14, 14, true)`);
    await db.query('COMMIT');
    // A key update: delete + tombstone for the old key, create for the new one.
    await db.query(`UPDATE ${t} SET id = 100 WHERE id = 1`);
    // A table created while the worker runs and added to its publication.
    await db.query(`CREATE TABLE ${late} (id int PRIMARY KEY, x text)`);
    await db.query(`ALTER PUBLICATION ${defaultPublicationName(name)} ADD TABLE ${late}`);
    await db.query(`INSERT INTO ${late} VALUES (1, 'late')`);

    const records = await eventually('all compatible changes', async () => {
      const recs = await reader.read(topic);
      return recs.some((r) => r.value?.op === 'c' && r.key?.id === 100) ? recs : undefined;
    });
    const lateRecords = await eventually('the late table', async () => {
      const recs = await reader.read(`${name}.${sch}.${late}`);
      return recs.length > 0 ? recs : undefined;
    });
    assert.equal(w.connector.state, 'STREAMING');
    assert.equal(lateRecords[0]!.value!.op, 'c');
    assert.equal(lateRecords[0]!.value!.after!.x, 'late');

    const byId = (id: number, op = 'c') =>
      records.find((r) => r.value?.op === op && (r.value.after ?? r.value.before)?.id === id)!;
    const base = ['id', 'n', 'r', 's', 'v'];
    assert.deepEqual(fieldsOf(byId(1, 'r')), base);
    assert.deepEqual(fieldsOf(byId(2)), [...base, 'a1'].sort());
    assert.equal(byId(3).value!.after!.a2, 7, 'ADD COLUMN ... DEFAULT: the row has the default');
    assert.equal(byId(4).value!.after!.a3, 'x');
    assert.ok(!fieldsOf(byId(5)).includes('r'), 'DROP COLUMN: gone from the schema');
    assert.deepEqual(
      fieldsOf(byId(6)).filter((f) => f.startsWith('s')),
      ['s2'],
      'RENAME COLUMN: the new name',
    );
    assert.equal(typeof byId(6).value!.after!.v, 'number', 'int4: int');
    assert.equal(byId(7).value!.after!.v, 7n, 'int8: long');
    assert.equal(byId(8).value!.after!.n, '0.50');
    assert.equal(byId(9).value!.after!.n, '0.50', 'numeric(12,2)');
    const full = records.find((r) => r.value?.op === 'u' && r.value.after?.id === 12)!;
    assert.equal(full.value!.before!.v, 12n, 'REPLICA IDENTITY FULL: the whole old row');
    assert.equal(full.value!.after!.a1, 'full');
    const r13 = byId(13);
    const r14 = byId(14);
    assert.equal(r13.value!.source.txId, r14.value!.source.txId, 'one transaction');
    assert.ok(!fieldsOf(r13).includes('a4'), 'before the ALTER: the old shape');
    assert.equal(r14.value!.after!.a4, true, 'after the ALTER: the new shape');
    expectedVersions.push(expectedVersions.at(-1)! + 1);
    assert.deepEqual(
      (await versions(valueSubject)).length,
      expectedVersions.at(-1),
      'one new version per shape change',
    );
    assert.equal((await versions(keySubject)).length, 1, 'the key never changed');
    const keyOps = records
      .filter((r) => r.key?.id === 1 || r.key?.id === 100)
      .map((r) => `${r.value ? r.value.op : 'tombstone'}${String(r.key!.id)}`);
    assert.deepEqual(keyOps, ['r1', 'd1', 'tombstone1', 'c100'], 'key update: delete, tombstone, create');

    // ---- an incompatible change: int → text under BACKWARD ----
    const slot = defaultSlotName(name);
    const { rows: lsnRows } = await db.query<{ lsn: string }>(
      `SELECT (pg_current_wal_lsn() - '0/0')::text AS lsn`,
    );
    const beforeChange = BigInt(lsnRows[0]!.lsn);
    await db.query('BEGIN');
    const { rows: xidRows } = await db.query<{ xid: string }>(
      'SELECT pg_current_xact_id()::xid::text AS xid',
    );
    await db.query(`ALTER TABLE ${t} ALTER COLUMN a2 TYPE text USING a2::text`);
    await db.query(`INSERT INTO ${t} (id, v, a2) VALUES (20, 20, 'twenty')`);
    await db.query('COMMIT');
    // Where the refused transaction's commit record ends (pg_walinspect, in PostgreSQL's contrib).
    // Not the WAL position read before it: other tests write to the same server, and an idle
    // connector rightly confirms the keepalive positions of WAL that is not its own, which may lie
    // between that read and this commit.
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_walinspect');
    const { rows: commitRows } = await db.query<{ end: string }>(
      `SELECT (end_lsn - '0/0')::text AS end FROM pg_get_wal_records_info($1::text::pg_lsn, pg_current_wal_lsn())
        WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' AND xid::text = $2`,
      [formatLsn(beforeChange), xidRows[0]!.xid],
    );
    assert.equal(commitRows.length, 1, 'the commit record of the refused transaction');
    const changeCommitEnd = BigInt(commitRows[0]!.end);
    const failure = await w.running.then(
      () => assert.fail('the worker should stop'),
      (err: Error) => err,
    );
    assert.equal(failure.name, 'UserError');
    assert.ok(!failure.message.includes('\n'), 'one line');
    for (const part of [
      `${sch}.${t}`,
      'a2',
      'int → string',
      'BACKWARD',
      valueSubject,
      'NONE',
      'topics.prefix',
    ]) {
      assert.ok(failure.message.includes(part), `"${part}" in: ${failure.message}`);
    }
    const confirmed = await confirmedFlush(db, slot);
    assert.ok(
      confirmed < changeCommitEnd,
      `the refused transaction is not confirmed (${confirmed} < ${changeCommitEnd})`,
    );
    const valueVersions = (await versions(valueSubject)).length;

    // The documented way out: the subject's compatibility to NONE, then restart.
    await setCompatibilityNone(valueSubject);
    w = startConnector(name, env);
    await streaming(w);
    const after20 = await eventually('the change after the restart', async () => {
      const recs = await reader.read(topic);
      return recs.find((r) => r.value?.after?.id === 20);
    });
    assert.equal(after20.value!.after!.a2, 'twenty');
    assert.equal((await versions(valueSubject)).length, valueVersions + 1);

    // ---- a primary-key change: the key schema changes (a new required field without a default:
    // not BACKWARD; a3, with its DEFAULT 'x', would be accepted) ----
    await db.query(`ALTER TABLE ${t} DROP CONSTRAINT ${t}_pkey, ADD PRIMARY KEY (id, v)`);
    await db.query(`INSERT INTO ${t} (id, v) VALUES (21, 21)`);
    const keyFailure = await w.running.then(
      () => assert.fail('the worker should stop'),
      (err: Error) => err,
    );
    for (const part of [`${sch}.${t}`, 'key columns (id) → (id, v)', keySubject, 'BACKWARD']) {
      assert.ok(keyFailure.message.includes(part), `"${part}" in: ${keyFailure.message}`);
    }
    await setCompatibilityNone(keySubject);
    w = startConnector(name, env);
    await streaming(w);
    const r21 = await eventually('the new key', async () => {
      const recs = await reader.read(topic);
      return recs.find((r) => r.value?.after?.id === 21);
    });
    assert.deepEqual({ ...r21.key }, { id: 21, v: 21n });
    assert.equal((await versions(keySubject)).length, 2);

    // ---- a captured table dropped while the worker runs: the others keep streaming ----
    await db.query(`DROP TABLE ${gone}`);
    await db.query(`INSERT INTO ${t} (id, v) VALUES (22, 22)`);
    await eventually('a change after the drop', async () => {
      const recs = await reader.read(topic);
      return recs.some((r) => r.value?.after?.id === 22) ? true : undefined;
    });
    assert.equal(w.connector.state, 'STREAMING');
    await w.connector.stop();
    await w.running;
    await db.query('RESET search_path');
  });

  test('a subject registered by pgcdc 0.1.0: the refusal says so and how to upgrade; the documented NONE step lets it through', async () => {
    const name = uniqueName('ev010');
    const t = `${name}_t`;
    // Schema-qualified: the test above sets the session's search_path.
    await db.query(`CREATE TABLE public.${t} (id int PRIMARY KEY, at timestamptz, d date)`);
    await db.query(`INSERT INTO public.${t} VALUES (1, '2024-01-02 03:04:05+00', '2024-01-02')`);
    const topic = `${name}.public.${t}`;
    const subject = `${topic}-value`;
    // The value schema pgcdc 0.1.0 registered for this table: Avro logical types, timestamptz as a
    // long, no ts_us / ts_ns.
    const ns = `${name}.public.${t}`;
    const old = {
      type: 'record',
      name: 'Envelope',
      namespace: ns,
      fields: [
        {
          name: 'before',
          type: [
            'null',
            {
              type: 'record',
              name: 'Value',
              namespace: ns,
              fields: [
                { name: 'id', type: ['null', 'int'], default: null },
                {
                  name: 'at',
                  type: ['null', { type: 'long', logicalType: 'timestamp-micros' }],
                  default: null,
                },
                {
                  name: 'd',
                  type: [
                    'null',
                    { type: 'int', logicalType: 'date', 'connect.name': 'io.debezium.time.Date' },
                  ],
                  default: null,
                },
              ],
              'connect.name': `${ns}.Value`,
            },
          ],
          default: null,
        },
        { name: 'after', type: ['null', `${ns}.Value`], default: null },
        { name: 'op', type: 'string' },
        { name: 'ts_ms', type: ['null', 'long'], default: null },
      ],
      'connect.name': `${ns}.Envelope`,
    };
    const res = await fetch(`${registryUrl()}/subjects/${encodeURIComponent(subject)}/versions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema: JSON.stringify(old) }),
    });
    assert.equal(res.status, 200, await res.clone().text());

    let w = startConnector(name, { PGCDC_TABLES_INCLUDE: `public.${t}` });
    const failure = await w.running.then(
      () => assert.fail('the worker should stop'),
      (err: Error) => err,
    );
    assert.equal(failure.name, 'UserError');
    assert.ok(!failure.message.includes('\n'), 'one line');
    for (const part of [subject, 'pgcdc 0.1.0', 'topics.prefix', 'NONE', 'Upgrading from 0.1.0']) {
      assert.ok(failure.message.includes(part), `"${part}" in: ${failure.message}`);
    }
    await setCompatibilityNone(subject);
    w = startConnector(name, { PGCDC_TABLES_INCLUDE: `public.${t}` });
    await streaming(w);
    const rec = await eventually('the snapshot row in the new encodings', async () =>
      (await reader.read(topic)).find((r) => r.value?.after?.id === 1),
    );
    assert.equal(rec.value!.after!.at, '2024-01-02T03:04:05.000000Z');
    assert.equal(rec.value!.after!.d, 19724);
    await w.connector.stop();
    await w.running;
    await db.query(`DROP TABLE public.${t}`);
  });
});
