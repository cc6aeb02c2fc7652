// The prerequisite checks' decisions and messages, from facts (no server).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatLine,
  listSome,
  passed,
  prettyBytes,
  summarize,
  type CheckResult,
} from '../../src/postgres/preflight/result.ts';
import { describeConnectError } from '../../src/postgres/preflight/connect-errors.ts';
import {
  needsIdentityFix,
  primaryCheck,
  publicationChecks,
  replicaIdentityChecks,
  replicationCheck,
  schemaUsageCheck,
  selectCheck,
  selectionCheck,
  selectTables,
  slotCapacityCheck,
  slotCheck,
  tableKey,
  versionCheck,
  walLevelCheck,
  walLevelFix,
  walSendersCheck,
  type PublicationFacts,
  type RoleFacts,
  type SlotFacts,
  type TableFacts,
} from '../../src/postgres/preflight/rules.ts';
import { displayUrl } from '../../src/postgres/preflight/services.ts';
import { slotError } from '../../src/postgres/replication/slot.ts';
import { alignedTable, includeList } from '../../src/cli/discover.ts';
import { parseTableList } from '../../src/config/tables.ts';

const role = (over: Partial<RoleFacts> = {}): RoleFacts => ({
  user: 'app',
  sqlUser: 'app',
  database: 'shop',
  superuser: false,
  replication: true,
  rdsReplication: false,
  inheritedReplicationRoles: [],
  createOnDatabase: true,
  ...over,
});

const table = (name: string, over: Partial<TableFacts> = {}): TableFacts => {
  const [schema, tbl] = name.split('.') as [string, string];
  return {
    schema,
    table: tbl,
    sqlName: `${schema}.${tbl}`,
    sqlSchema: schema,
    partitioned: false,
    owner: 'app',
    owned: true,
    canSelect: true,
    schemaUsage: true,
    primaryKey: ['id'],
    replicaIdentity: 'default',
    estimatedRows: 10,
    sizeBytes: null,
    ...over,
  };
};

const pub = (over: Partial<PublicationFacts> = {}): PublicationFacts => ({
  name: 'p',
  sqlName: 'p',
  exists: true,
  allTables: false,
  owned: true,
  tables: new Set(),
  publishes: { insert: true, update: true, delete: true, truncate: true },
  ...over,
});

const slot = (over: Partial<SlotFacts> = {}): SlotFacts => ({
  name: 's',
  type: 'logical',
  plugin: 'pgoutput',
  database: 'shop',
  active: false,
  activePid: null,
  activeApplication: null,
  activeClient: null,
  walStatus: 'reserved',
  retainedBytes: 1024,
  ...over,
});

describe('wal_level', () => {
  test('logical is ok; anything else fails with the platform fix', () => {
    assert.equal(walLevelCheck('logical', 'self-hosted').status, 'ok');
    const r = walLevelCheck('replica', 'self-hosted');
    assert.equal(r.status, 'failed');
    assert.match(r.message, /wal_level is replica; logical decoding needs wal_level = logical/);
    assert.match(r.fix!, /ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL/);
    // Self-hosted (or unknown) also names the managed services' settings.
    assert.match(r.fix!, /RDS\/Aurora: set rds\.logical_replication = 1 in the DB parameter group/);
    assert.match(r.fix!, /Azure: .*azure\.replication_support = logical/);
  });

  test('the fix names the detected platform setting', () => {
    assert.match(walLevelFix('rds'), /^RDS: set rds\.logical_replication = 1/);
    assert.doesNotMatch(walLevelFix('rds'), /ALTER SYSTEM/);
    assert.match(walLevelFix('aurora'), /^Aurora: .*cluster parameter group/);
    assert.match(walLevelFix('azure'), /^Azure: set the server parameter wal_level = logical/);
    assert.match(walLevelFix('azure'), /azure\.replication_support = logical/);
    assert.match(walLevelFix('cloudsql'), /cloudsql\.logical_decoding = on/);
  });

  test('the line carries message and fix on one line', () => {
    const line = formatLine(walLevelCheck('minimal', 'rds'));
    assert.match(
      line,
      /^failed {3}wal_level {2,}wal_level is minimal; .*; fix: RDS: set rds\.logical_replication = 1/,
    );
    assert.doesNotMatch(line, /\n/);
  });
});

describe('server', () => {
  test('version: < 10 fails, < 13 warns, otherwise ok', () => {
    assert.equal(versionCheck({ versionNum: 90624, version: '9.6.24' }).status, 'failed');
    const w = versionCheck({ versionNum: 120019, version: '12.19' });
    assert.equal(w.status, 'warning');
    assert.match(w.message, /wal_status/);
    assert.deepEqual(versionCheck({ versionNum: 160004, version: '16.4' }), {
      id: 'server_version',
      status: 'ok',
      message: 'PostgreSQL 16.4',
    });
  });

  test('a standby fails with the primary as the fix', () => {
    assert.equal(primaryCheck(false).status, 'ok');
    const r = primaryCheck(true);
    assert.equal(r.status, 'failed');
    assert.match(r.message, /standby \(pg_is_in_recovery\(\) is true\)/);
    assert.match(r.fix!, /primary .*writer/);
  });

  test('free replication slots: ok, our slot already counted, full with inactive ones to drop', () => {
    assert.match(
      slotCapacityCheck({ maxReplicationSlots: 10 }, [slot({ name: 'a' })], 's').message,
      /9 of 10 free/,
    );
    assert.equal(slotCapacityCheck({ maxReplicationSlots: 1 }, [slot()], 's').status, 'ok');
    const full = slotCapacityCheck(
      { maxReplicationSlots: 2 },
      [slot({ name: 'old' }), slot({ name: 'busy', active: true })],
      's',
    );
    assert.equal(full.status, 'failed');
    assert.match(
      full.message,
      /all 2 replication slots are in use \(1 inactive: old\); pgcdc needs one for s/,
    );
    assert.match(full.fix!, /SELECT pg_drop_replication_slot\('old'\);/);
    assert.match(full.fix!, /ALTER SYSTEM SET max_replication_slots = 6/);
    assert.equal(slotCapacityCheck({ maxReplicationSlots: 0 }, [], 's').status, 'failed');
  });

  test('WAL senders: one free is enough', () => {
    assert.equal(walSendersCheck({ maxWalSenders: 10, activeWalSenders: 9 }).status, 'ok');
    const r = walSendersCheck({ maxWalSenders: 10, activeWalSenders: 10 });
    assert.equal(r.status, 'failed');
    assert.match(r.fix!, /max_wal_senders = 14/);
  });
});

describe('replication privilege', () => {
  test('a working replication connection is ok, named by how it is granted', () => {
    assert.match(replicationCheck(role(), { ok: true }, 'self-hosted').message, /\(REPLICATION\)/);
    assert.match(
      replicationCheck(role({ replication: false, rdsReplication: true }), { ok: true }, 'rds').message,
      /rds_replication/,
    );
  });

  test('refused: ALTER ROLE on self-hosted, GRANT rds_replication on RDS', () => {
    const denied = {
      ok: false as const,
      code: '42501',
      message: 'must be superuser or replication role to start walsender',
    };
    const self = replicationCheck(role({ replication: false }), denied, 'self-hosted');
    assert.equal(self.status, 'failed');
    assert.match(self.message, /app may not open replication connections: it has no REPLICATION attribute/);
    assert.equal(self.fix, 'ALTER ROLE app WITH REPLICATION; (on RDS/Aurora: GRANT rds_replication TO app;)');
    const rds = replicationCheck(role({ replication: false, sqlUser: '"App"' }), denied, 'aurora');
    assert.equal(rds.fix, 'GRANT rds_replication TO "App";');
    assert.match(rds.message, /not a member of rds_replication/);
  });

  test('membership in a REPLICATION role is called out: the attribute is not inherited', () => {
    const r = replicationCheck(
      role({ replication: false, inheritedReplicationRoles: ['replication_role'] }),
      { ok: false, code: '42501', message: 'permission denied to start WAL sender' },
      'self-hosted',
    );
    assert.match(r.message, /membership in replication_role does not count/);
  });
});

describe('tables', () => {
  const all = [table('public.a'), table('public.b'), table('sales.c')];

  test('selection: include, schemas, exclude; missing include entries reported', () => {
    const pick = (sel: Partial<Parameters<typeof selectTables>[1]>) =>
      selectTables(all, { schemas: ['public'], include: [], exclude: [], ...sel });
    assert.deepEqual(pick({}).selected.map(tableKey), [tableKey(all[0]!), tableKey(all[1]!)]);
    assert.deepEqual(pick({ exclude: [{ schema: 'public', table: 'a' }] }).selected.length, 1);
    const r = pick({
      include: [
        { schema: 'sales', table: 'c' },
        { schema: 'x', table: 'Y' },
      ],
    });
    assert.deepEqual(
      r.selected.map((t) => t.table),
      ['c'],
    );
    assert.deepEqual(r.missing, [{ schema: 'x', table: 'Y' }]);
    const line = selectionCheck(r.selected, r.missing, { schemas: ['public'], include: [] });
    assert.equal(line.status, 'failed');
    assert.match(line.message, /tables\.include: x\."Y" does not exist/);
    assert.equal(selectionCheck([], [], { schemas: ['empty'], include: [] }).status, 'failed');
  });

  test('SELECT and schema USAGE: failed with the GRANT; a warning with snapshot.mode=never', () => {
    const ts = [table('public.a'), table('public.b', { canSelect: false, sqlName: 'public."B b"' })];
    const r = selectCheck(ts, role(), 'initial');
    assert.equal(r.status, 'failed');
    assert.match(r.message, /app cannot SELECT from public\.b/);
    assert.equal(r.fix, 'GRANT SELECT ON public."B b" TO app;');
    assert.equal(selectCheck(ts, role(), 'never').status, 'warning');
    assert.equal(selectCheck([table('public.a')], role(), 'initial').status, 'ok');
    const u = schemaUsageCheck([table('hidden.t', { schemaUsage: false })], role());
    assert.equal(u.status, 'failed');
    assert.equal(u.fix, 'GRANT USAGE ON SCHEMA hidden TO app;');
  });
});

describe('publication', () => {
  const ts = [table('public.a'), table('public.b')];

  test('missing, autoCreate false: failed with CREATE PUBLICATION', () => {
    const [r] = publicationChecks(pub({ exists: false }), ts, role(), false);
    assert.equal(r!.status, 'failed');
    assert.match(r!.message, /publication p does not exist \(publication\.autoCreate is false\)/);
    assert.match(r!.fix!, /^CREATE PUBLICATION p FOR TABLE public\.a, public\.b;/);
  });

  test('missing, autoCreate true: a warning when the user can create it, else failed with why', () => {
    assert.equal(publicationChecks(pub({ exists: false }), ts, role(), true)[0]!.status, 'warning');
    assert.equal(
      publicationChecks(
        pub({ exists: false }),
        [table('public.a', { owned: false })],
        role({ superuser: true }),
        true,
      )[0]!.status,
      'warning',
    );
    const [r] = publicationChecks(
      pub({ exists: false }),
      [table('public.a', { owned: false })],
      role({ createOnDatabase: false }),
      true,
    );
    assert.equal(r!.status, 'failed');
    assert.match(
      r!.message,
      /cannot create it \(no CREATE privilege on database shop; not the owner of public\.a\)/,
    );
  });

  test('a selected table outside it is failed (autoCreate false) with ALTER PUBLICATION … ADD TABLE', () => {
    const p = pub({ tables: new Set([tableKey(ts[0]!)]) });
    const [r] = publicationChecks(p, ts, role(), false);
    assert.equal(r!.status, 'failed');
    assert.match(r!.message, /does not include public\.b/);
    assert.match(r!.fix!, /^ALTER PUBLICATION p ADD TABLE public\.b;/);
    assert.equal(publicationChecks(p, ts, role(), true)[0]!.status, 'warning');
    assert.equal(
      publicationChecks(pub({ owned: false, tables: p.tables }), ts, role(), true)[0]!.status,
      'failed',
    );
    assert.equal(publicationChecks(pub({ allTables: true }), ts, role(), false)[0]!.status, 'ok');
  });

  test('a publication that does not publish updates or deletes is a warning', () => {
    const p = pub({
      allTables: true,
      publishes: { insert: true, update: false, delete: true, truncate: true },
    });
    const r = publicationChecks(p, ts, role(), false);
    assert.equal(r[1]!.status, 'warning');
    assert.match(r[1]!.fix!, /SET \(publish = 'insert, update, delete, truncate'\)/);
  });
});

describe('replica identity', () => {
  test('FULL and DEFAULT with a primary key are ok (with the TOAST/before-image note)', () => {
    const r = replicaIdentityChecks([
      table('public.a'),
      table('public.b', { replicaIdentity: 'full', primaryKey: [] }),
    ]);
    assert.equal(r.length, 1);
    assert.equal(r[0]!.status, 'ok');
    assert.match(r[0]!.message, /1 by primary key .*TOAST.*, 1 FULL/);
  });

  test('no primary key with DEFAULT: failed with ALTER TABLE … REPLICA IDENTITY FULL', () => {
    const t = table('public.nokey', { primaryKey: [] });
    const r = replicaIdentityChecks([t]);
    assert.equal(r.length, 1);
    assert.equal(r[0]!.status, 'failed');
    assert.equal(r[0]!.table, 'public.nokey');
    assert.match(
      r[0]!.message,
      /public\.nokey has no primary key and REPLICA IDENTITY DEFAULT: its updates and deletes cannot be captured/,
    );
    assert.equal(r[0]!.fix, 'ALTER TABLE public.nokey REPLICA IDENTITY FULL; (or add a primary key)');
    assert.ok(needsIdentityFix(t));
  });

  test('NOTHING fails; with a key the fix is DEFAULT, and --fix leaves it alone', () => {
    const withKey = table('public.n', { replicaIdentity: 'nothing' });
    const r = replicaIdentityChecks([withKey]);
    assert.match(r[0]!.message, /has REPLICA IDENTITY NOTHING/);
    assert.match(r[0]!.fix!, /REPLICA IDENTITY DEFAULT/);
    assert.equal(needsIdentityFix(withKey), false);
    assert.ok(needsIdentityFix(table('public.n', { replicaIdentity: 'nothing', primaryKey: [] })));
  });
});

describe('slot', () => {
  const s = { slot: { name: 's' }, snapshotMode: 'initial', walWarnBytes: 1024 ** 3 };

  test('absent: created at start; present: retained WAL in pretty bytes', () => {
    assert.match(slotCheck(null, s, 'shop').message, /does not exist yet; pgcdc creates it/);
    const r = slotCheck(slot({ retainedBytes: 5 * 1024 * 1024 }), s, 'shop');
    assert.equal(r.status, 'ok');
    assert.match(r.message, /retains 5 MiB of WAL \(wal_status reserved\)/);
    assert.equal(slotCheck(slot({ retainedBytes: 2 * 1024 ** 3 }), s, 'shop').status, 'warning');
  });

  test('held by another connection, wrong plugin, other database, lost WAL: failed', () => {
    const active = slotCheck(slot({ active: true, activePid: 4242, activeApplication: 'other' }), s, 'shop');
    assert.equal(active.status, 'failed');
    assert.match(active.message, /in use by another connection \(pid 4242, application other\)/);
    assert.match(active.fix!, /pg_terminate_backend\(4242\)/);
    assert.match(
      slotCheck(slot({ plugin: 'wal2json' }), s, 'shop').message,
      /wal2json plugin; pgcdc needs pgoutput/,
    );
    assert.match(slotCheck(slot({ database: 'other' }), s, 'shop').message, /belongs to database other/);
    const lost = slotCheck(slot({ walStatus: 'lost' }), s, 'shop');
    assert.equal(lost.status, 'failed');
    assert.match(lost.fix!, /snapshot\.mode=when_needed/);
    assert.equal(
      slotCheck(slot({ walStatus: 'lost' }), { ...s, snapshotMode: 'when_needed' }, 'shop').status,
      'ok',
    );
    assert.equal(slotCheck(slot({ walStatus: 'unreserved' }), s, 'shop').status, 'warning');
  });
});

describe('connection errors', () => {
  const t = { host: 'db.example', port: 5432, database: 'shop', user: 'app', sslmode: 'prefer' };
  const pgErr = (code: string, message: string) =>
    Object.assign(new Error(message), { code, severity: 'FATAL' });

  test('each cause has its own message and fix', () => {
    const cases: Array<[unknown, string, RegExp, RegExp]> = [
      [
        pgErr('28P01', 'password authentication failed for user "app"'),
        'password',
        /password authentication failed/,
        /postgres\.password/,
      ],
      [
        pgErr('3D000', 'database "shop" does not exist'),
        'database',
        /database shop does not exist/,
        /postgres\.database/,
      ],
      [
        pgErr(
          '28000',
          'no pg_hba.conf entry for host "10.0.0.5", user "app", database "shop", no encryption',
        ),
        'hba',
        /no pg_hba\.conf entry/,
        /hostssl shop app .*pg_reload_conf\(\).*sslmode=require/,
      ],
      [pgErr('28000', 'role "app" does not exist'), 'role', /role app does not exist/, /CREATE ROLE app/],
      [
        Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:5432'), { code: 'ECONNREFUSED' }),
        'unreachable',
        /connection refused by db\.example:5432/,
        /postgres\.host and postgres\.port/,
      ],
      [
        Object.assign(new Error('getaddrinfo ENOTFOUND db.example'), { code: 'ENOTFOUND' }),
        'dns',
        /does not resolve/,
        /postgres\.host/,
      ],
      [
        new Error('Connection terminated due to connection timeout'),
        'timeout',
        /no answer from db\.example:5432 within 10 s/,
        /firewalls or security groups/,
      ],
      [
        new Error('The server does not support SSL connections'),
        'tls',
        /does not support TLS/,
        /sslmode=prefer/,
      ],
      [
        Object.assign(new Error('self-signed certificate in certificate chain'), {
          code: 'SELF_SIGNED_CERT_IN_CHAIN',
        }),
        'tls',
        /not trusted \(SELF_SIGNED_CERT_IN_CHAIN\)/,
        /sslRootCert/,
      ],
      [
        Object.assign(new Error("Hostname/IP does not match certificate's altnames"), {
          code: 'ERR_TLS_CERT_ALTNAME_INVALID',
        }),
        'tls',
        /not issued for db\.example/,
        /verify-ca/,
      ],
    ];
    for (const [err, kind, message, fix] of cases) {
      const p = describeConnectError(err, t);
      assert.equal(p.kind, kind, String(err));
      assert.match(p.message, message);
      assert.match(p.fix, fix);
    }
  });

  test('the cause of a wrapped error is classified; an AggregateError by its first error', () => {
    const wrapped = new Error('PostgreSQL db.example:5432 refused user app', {
      cause: Object.assign(new Error('password authentication failed'), { code: '28P01' }),
    });
    assert.equal(describeConnectError(wrapped, t).kind, 'password');
    const agg = new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]);
    assert.equal(describeConnectError(agg, t).kind, 'unreachable');
  });
});

describe('formatting', () => {
  test('pretty bytes', () => {
    assert.equal(prettyBytes(0), '0 bytes');
    assert.equal(prettyBytes(1023), '1023 bytes');
    assert.equal(prettyBytes(1536), '1.5 KiB');
    assert.equal(prettyBytes(64 * 1024 ** 2), '64 MiB');
    assert.equal(prettyBytes(3.25 * 1024 ** 3), '3.3 GiB');
    assert.equal(prettyBytes(500 * 1024 ** 4), '500 TiB');
  });

  test('summary, passed, listSome', () => {
    const rs: CheckResult[] = [
      { id: 'wal_level', status: 'ok', message: '' },
      { id: 'slot', status: 'warning', message: '' },
    ];
    assert.ok(passed(rs));
    assert.equal(summarize(rs), '0 failed, 1 warning, 1 ok');
    assert.equal(passed([...rs, { id: 'primary', status: 'failed', message: '' }]), false);
    assert.equal(listSome(['a', 'b', 'c'], 2), 'a, b and 1 more');
  });

  test('registry URLs are shown without credentials', () => {
    assert.equal(
      displayUrl('https://u:secret@reg.example/apis/ccompat/v7'),
      'https://reg.example/apis/ccompat/v7',
    );
  });

  test('discover: the include list round-trips through parseTableList; columns align', () => {
    const tables = [
      { schema: 'public', table: 'orders' },
      { schema: 'Sales', table: 'Order.Items' },
      { schema: 'public', table: 'with space' },
      { schema: 'public', table: 'quote"d, and comma' },
      { schema: 'public', table: '1st' },
    ];
    const text = includeList(tables);
    assert.equal(
      text,
      'public.orders, "Sales"."Order.Items", public."with space", public."quote""d, and comma", public."1st"',
    );
    assert.deepEqual(parseTableList(text), tables);
    assert.equal(alignedTable(['A', 'BB'], [['xxx', 'y']]), 'A    BB\nxxx  y');
  });
});

describe('slot creation errors', () => {
  const pgErr = (code: string, message: string) =>
    Object.assign(new Error(message), { code, severity: 'ERROR' });

  test('the server refusals become one-line UserErrors with the fix', () => {
    const full = slotError(pgErr('53400', 'all replication slots are in use'), 'pgcdc_x');
    assert.equal(full.name, 'UserError');
    assert.match(
      full.message,
      /cannot create replication slot pgcdc_x: all replication slots are in use .*raise max_replication_slots/,
    );
    assert.match(
      slotError(pgErr('42710', 'replication slot "pgcdc_x" already exists'), 'pgcdc_x').message,
      /pg_drop_replication_slot\('pgcdc_x'\)/,
    );
    assert.match(
      slotError(pgErr('55000', 'logical decoding requires wal_level >= logical'), 'pgcdc_x').message,
      /ALTER SYSTEM SET wal_level = logical/,
    );
    assert.match(
      slotError(pgErr('42501', 'permission denied to use replication slots'), 'pgcdc_x').message,
      /ALTER ROLE <user> WITH REPLICATION/,
    );
    const other = pgErr('XX000', 'something else');
    assert.equal(slotError(other, 'pgcdc_x'), other);
  });
});
