// `pgcdc check` against the stack's PostgreSQL: one scenario per failure mode (roles, tables and
// publications created with unique names, dropped afterwards), each proving its line and its fix;
// --fix; `pgcdc run` refusing to start with the same lines. wal_level cannot be changed on the
// shared stack: its failure message is a unit test (test/unit/preflight.test.ts).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import { exited, freePort, spawnWorker } from '../support/cli.ts';
import { pgClient, stackSettings, uniqueName, workerEnv } from '../support/pipeline.ts';

const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the pgcdc CLI configured by `env` alone (plus PATH), as a user's shell would. */
function pgcdc(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--disable-warning=TimeoutNegativeWarning', CLI, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

/** The one line of `check` output about `label` (and containing `about`, for per-table lines). */
function line(out: string, status: string, label: string, about = ''): string {
  const found = out
    .split('\n')
    .find((l) => l.startsWith(status) && l.slice(9).startsWith(label) && l.includes(about));
  assert.ok(found, `no '${status} ${label}' line${about ? ` about ${about}` : ''} in:\n${out}`);
  return found;
}

/** A fake server: answers the SSL request with 'N', or the start-up with a FATAL error. */
function fakePostgres(mode: 'no-tls' | 'hba'): Promise<{ port: number; server: Server }> {
  const server = createServer((socket: Socket) => {
    socket.once('data', (first) => {
      const isSslRequest = first.length >= 8 && first.readInt32BE(4) === 80877103;
      if (isSslRequest) {
        socket.write('N');
        if (mode === 'no-tls') return;
        socket.once('data', () => refuse(socket));
        return;
      }
      refuse(socket);
    });
    socket.on('error', () => undefined);
  });
  const refuse = (socket: Socket) => {
    const fields = [
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '28000'],
      ['M', 'no pg_hba.conf entry for host "127.0.0.1", user "app", database "shop", no encryption'],
    ];
    const body = Buffer.concat([...fields.map(([k, v]) => Buffer.from(`${k}${v}\0`)), Buffer.from([0])]);
    const head = Buffer.alloc(5);
    head.write('E');
    head.writeInt32BE(body.length + 4, 1);
    socket.end(Buffer.concat([head, body]));
  };
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({ port: (server.address() as { port: number }).port, server }),
    );
  });
}

describe('pgcdc check', () => {
  let db: pg.Client;
  const id = uniqueName('chk');
  const password = `pw_${randomUUID()}`;
  const roles = { norepl: `${id}_norepl`, reader: `${id}_reader` };
  const t = {
    keyed: `${id}_keyed`,
    nokey: `${id}_nokey`,
    nothing: `${id}_nothing`,
    secret: `${id}_secret`,
    fix: `${id}_fix`,
    fixkeyed: `${id}_fixkeyed`,
  };
  const publications: string[] = [];
  const slots: string[] = [];

  /** The stack's superuser, tables.include set, nothing else. */
  const env = (include: string[], extra: Record<string, string> = {}) =>
    workerEnv(uniqueName('chk'), {
      PGCDC_TABLES_INCLUDE: include.map((x) => `public.${x}`).join(','),
      PGCDC_PUBLICATION_AUTO_CREATE: 'false',
      ...extra,
    });

  before(async () => {
    db = await pgClient();
    await db.query(`CREATE TABLE ${t.keyed} (id int PRIMARY KEY, v text)`);
    await db.query(`CREATE TABLE ${t.nokey} (id int, v text)`);
    await db.query(`CREATE TABLE ${t.nothing} (id int PRIMARY KEY, v text)`);
    await db.query(`ALTER TABLE ${t.nothing} REPLICA IDENTITY NOTHING`);
    await db.query(`CREATE TABLE ${t.secret} (id int PRIMARY KEY)`);
    await db.query(`CREATE TABLE ${t.fix} (id int, v text)`);
    await db.query(`CREATE TABLE ${t.fixkeyed} (id int PRIMARY KEY)`);
    await db.query(`CREATE ROLE ${roles.norepl} LOGIN PASSWORD '${password}'`);
    await db.query(`CREATE ROLE ${roles.reader} LOGIN REPLICATION PASSWORD '${password}'`);
    await db.query(`GRANT SELECT ON ${t.keyed} TO ${roles.norepl}, ${roles.reader}`);
  });

  after(async () => {
    for (const p of publications) await db.query(`DROP PUBLICATION IF EXISTS ${p}`);
    for (const s of slots) {
      await db.query(
        'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active',
        [s],
      );
    }
    for (const x of Object.values(t)) await db.query(`DROP TABLE IF EXISTS ${x}`);
    for (const r of Object.values(roles)) {
      await db.query(`DROP OWNED BY ${r}`);
      await db.query(`DROP ROLE ${r}`);
    }
    await db.end();
  });

  test('the stack passes: wal_level, primary, REPLICATION, slots, Kafka and the registry are ok lines', async () => {
    const r = await pgcdc(['check'], env([t.keyed], { PGCDC_PUBLICATION_AUTO_CREATE: 'true' }));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(line(r.stdout, 'ok', 'wal_level'), /wal_level = logical/);
    assert.match(line(r.stdout, 'ok', 'connection'), /connected to 127\.0\.0\.1:\d+\/pgcdc as postgres/);
    assert.match(line(r.stdout, 'ok', 'server version'), /PostgreSQL 1\d/);
    assert.match(line(r.stdout, 'ok', 'primary'), /not in recovery/);
    assert.match(line(r.stdout, 'ok', 'replication privilege'), /superuser/);
    assert.match(line(r.stdout, 'ok', 'replication slots'), /of \d+ free/);
    assert.match(line(r.stdout, 'ok', 'wal senders'), /of \d+ free/);
    assert.match(line(r.stdout, 'ok', 'select privilege'), /can SELECT/);
    assert.match(
      line(r.stdout, 'ok', 'replica identity'),
      /1 table: 1 by primary key \(REPLICA IDENTITY DEFAULT/,
    );
    // autoCreate with a user who may create it: a warning, not a failure.
    assert.match(line(r.stdout, 'warning', 'publication'), /does not exist; pgcdc will create it/);
    assert.match(line(r.stdout, 'ok', 'slot'), /does not exist yet; pgcdc creates it/);
    const { brokers, registryUrl } = stackSettings();
    assert.match(line(r.stdout, 'ok', 'kafka'), new RegExp(`reached ${brokers}: cluster \\S+, 1 broker`));
    assert.ok(
      line(r.stdout, 'ok', 'schema registry').includes(`reached ${registryUrl} (GET /subjects: HTTP 200`),
    );
    assert.match(r.stdout, /0 failed, 1 warning, \d+ ok: pgcdc run can start/);
  });

  test('wrong password: its own message, exit 2', async () => {
    const r = await pgcdc(['check'], env([t.keyed], { PGCDC_POSTGRES_PASSWORD: 'not-the-password' }));
    assert.equal(r.code, 2);
    assert.match(
      line(r.stdout, 'failed', 'connection'),
      /password authentication failed for user postgres at 127\.0\.0\.1:\d+; fix: check postgres\.password/,
    );
    assert.doesNotMatch(r.stdout, /not-the-password/);
  });

  test('unknown database', async () => {
    const r = await pgcdc(['check'], env([t.keyed], { PGCDC_POSTGRES_DATABASE: `${id}_nodb` }));
    assert.equal(r.code, 2);
    assert.match(
      line(r.stdout, 'failed', 'connection'),
      new RegExp(
        `database ${id}_nodb does not exist on 127\\.0\\.0\\.1:\\d+; fix: check postgres\\.database`,
      ),
    );
  });

  test('unreachable port', async () => {
    const port = await freePort();
    const r = await pgcdc(['check'], env([t.keyed], { PGCDC_POSTGRES_PORT: String(port) }));
    assert.equal(r.code, 2);
    assert.match(
      line(r.stdout, 'failed', 'connection'),
      new RegExp(
        `connection refused by 127\\.0\\.0\\.1:${port}; fix: check postgres\\.host and postgres\\.port`,
      ),
    );
  });

  test('TLS: a server without TLS under sslmode=require, and an untrusted certificate', async () => {
    const fake = await fakePostgres('no-tls');
    try {
      const r = await pgcdc(
        ['check'],
        env([t.keyed], { PGCDC_POSTGRES_PORT: String(fake.port), PGCDC_POSTGRES_SSLMODE: 'require' }),
      );
      assert.equal(r.code, 2);
      assert.match(
        line(r.stdout, 'failed', 'connection'),
        /TLS: the server at 127\.0\.0\.1:\d+ does not support TLS and postgres\.sslmode=require requires it; fix: enable TLS on the server/,
      );
    } finally {
      fake.server.close();
    }
    // The stack's server certificate, checked against a certificate that is not its CA.
    const r = await pgcdc(
      ['check'],
      env([t.keyed], {
        PGCDC_POSTGRES_SSLMODE: 'verify-full',
        PGCDC_POSTGRES_SSL_ROOT_CERT: process.env.PGCDC_PG_SSL_CLIENT_CERT!,
      }),
    );
    assert.equal(r.code, 2);
    assert.match(
      line(r.stdout, 'failed', 'connection'),
      /TLS: the server's certificate is not trusted \(\w+\) with postgres\.sslmode=verify-full; fix: set postgres\.sslRootCert/,
    );
  });

  test('no pg_hba.conf entry (28000)', async () => {
    const fake = await fakePostgres('hba');
    try {
      const r = await pgcdc(['check'], env([t.keyed], { PGCDC_POSTGRES_PORT: String(fake.port) }));
      assert.equal(r.code, 2);
      assert.match(
        line(r.stdout, 'failed', 'connection'),
        /the server has no pg_hba\.conf entry for this connection .*; fix: add one to pg_hba\.conf, e\.g\. "hostssl pgcdc postgres <this machine's address>\/32 scram-sha-256", then SELECT pg_reload_conf\(\);/,
      );
    } finally {
      fake.server.close();
    }
  });

  test('a user without REPLICATION: failed with ALTER ROLE … WITH REPLICATION', async () => {
    const r = await pgcdc(
      ['check'],
      env([t.keyed], { PGCDC_POSTGRES_USER: roles.norepl, PGCDC_POSTGRES_PASSWORD: password }),
    );
    assert.equal(r.code, 2);
    assert.equal(
      line(r.stdout, 'failed', 'replication privilege').replace(/\s+/g, ' '),
      `failed replication privilege ${roles.norepl} may not open replication connections: it has no REPLICATION attribute; ` +
        `fix: ALTER ROLE ${roles.norepl} WITH REPLICATION; (on RDS/Aurora: GRANT rds_replication TO ${roles.norepl};)`,
    );
    assert.match(line(r.stdout, 'ok', 'select privilege'), /can SELECT/);
  });

  test('a user without SELECT on a selected table: failed with the GRANT', async () => {
    const r = await pgcdc(
      ['check'],
      env([t.keyed, t.secret], { PGCDC_POSTGRES_USER: roles.reader, PGCDC_POSTGRES_PASSWORD: password }),
    );
    assert.equal(r.code, 2);
    assert.match(line(r.stdout, 'ok', 'replication privilege'), /\(REPLICATION\)/);
    assert.match(
      line(r.stdout, 'failed', 'select privilege'),
      new RegExp(
        `${roles.reader} cannot SELECT from public\\.${t.secret} \\(the initial load reads it\\); fix: GRANT SELECT ON public\\.${t.secret} TO ${roles.reader};`,
      ),
    );
    // And the publication it may not create (it owns none of the tables).
    assert.match(
      line(r.stdout, 'failed', 'publication'),
      /does not exist \(publication\.autoCreate is false\); fix: CREATE PUBLICATION/,
    );
  });

  test('a table without a primary key (REPLICA IDENTITY DEFAULT): failed with ALTER TABLE … REPLICA IDENTITY FULL', async () => {
    const r = await pgcdc(['check'], env([t.keyed, t.nokey]));
    assert.equal(r.code, 2);
    assert.match(
      line(r.stdout, 'failed', 'replica identity', t.nokey),
      new RegExp(
        `public\\.${t.nokey} has no primary key and REPLICA IDENTITY DEFAULT: its updates and deletes cannot be captured.*; ` +
          `fix: ALTER TABLE public\\.${t.nokey} REPLICA IDENTITY FULL; \\(or add a primary key\\)`,
      ),
    );
    assert.match(line(r.stdout, 'ok', 'replica identity'), /1 table: 1 by primary key/);
  });

  test('REPLICA IDENTITY NOTHING: failed', async () => {
    const r = await pgcdc(['check'], env([t.nothing]));
    assert.equal(r.code, 2);
    assert.match(
      line(r.stdout, 'failed', 'replica identity', t.nothing),
      new RegExp(
        `public\\.${t.nothing} has REPLICA IDENTITY NOTHING: .*; fix: ALTER TABLE public\\.${t.nothing} REPLICA IDENTITY DEFAULT;`,
      ),
    );
  });

  test('a publication that misses a selected table (autoCreate false): failed with ALTER PUBLICATION … ADD TABLE', async () => {
    const pub = `${id}_partial`;
    publications.push(pub);
    await db.query(`CREATE PUBLICATION ${pub} FOR TABLE ${t.keyed}`);
    const r = await pgcdc(['check'], env([t.keyed, t.fixkeyed], { PGCDC_PUBLICATION_NAME: pub }));
    assert.equal(r.code, 2);
    assert.match(
      line(r.stdout, 'failed', 'publication'),
      new RegExp(
        `publication ${pub} does not include public\\.${t.fixkeyed}: its changes would not be captured; ` +
          `fix: ALTER PUBLICATION ${pub} ADD TABLE public\\.${t.fixkeyed};`,
      ),
    );
  });

  test('a slot held by another active connection: failed with its pid', async () => {
    const pub = `${id}_active`;
    const slot = `${id}_active`;
    publications.push(pub);
    slots.push(slot);
    await db.query(`CREATE PUBLICATION ${pub} FOR TABLE ${t.keyed}`);
    await db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    const s = stackSettings();
    const other = new LogicalReplicationService(
      { host: s.pgHost, port: s.pgPort, user: s.pgUser, password: s.pgPassword, database: s.pgDatabase },
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    other.on('error', () => undefined);
    void other
      .subscribe(new PgoutputPlugin({ protoVersion: 1, publicationNames: [pub] }), slot)
      .catch(() => undefined);
    try {
      let pid = '';
      for (let i = 0; i < 100 && !pid; i++) {
        const res = await db.query(
          'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active',
          [slot],
        );
        pid = String(res.rows[0]?.active_pid ?? '');
        if (!pid) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(pid, 'the other connection holds the slot');
      const r = await pgcdc(
        ['check'],
        env([t.keyed], { PGCDC_PUBLICATION_NAME: pub, PGCDC_SLOT_NAME: slot }),
      );
      assert.equal(r.code, 2);
      assert.match(
        line(r.stdout, 'failed', 'slot'),
        new RegExp(
          `slot ${slot} is in use by another connection \\(pid ${pid}.*\\); fix: stop the other consumer \\(or end it: SELECT pg_terminate_backend\\(${pid}\\);\\), or give this worker its own slot\\.name`,
        ),
      );
    } finally {
      await other.stop();
    }
    // Released: the same slot is ok now, with the WAL it retains.
    let r: CliResult | null = null;
    for (let i = 0; i < 50; i++) {
      r = await pgcdc(['check'], env([t.keyed], { PGCDC_PUBLICATION_NAME: pub, PGCDC_SLOT_NAME: slot }));
      if (r.code === 0) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.match(
      line(r!.stdout, 'ok', 'slot'),
      new RegExp(`slot ${slot} exists \\(pgoutput, inactive\\), retains .* of WAL`),
    );
  });

  test('--fix sets REPLICA IDENTITY FULL on the key-less table and creates the publication; then check passes', async () => {
    const pub = `${id}_fixed`;
    publications.push(pub);
    const e = env([t.fix, t.fixkeyed], { PGCDC_PUBLICATION_NAME: pub });
    const before = await pgcdc(['check'], e);
    assert.equal(before.code, 2);
    line(before.stdout, 'failed', 'publication');
    line(before.stdout, 'failed', 'replica identity', t.fix);
    assert.match(before.stdout, /pgcdc check --fix creates the publication/);

    const fixed = await pgcdc(['check', '--fix'], e);
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    assert.match(
      fixed.stdout,
      new RegExp(`^fixed +--fix +ALTER TABLE public\\.${t.fix} REPLICA IDENTITY FULL;$`, 'm'),
    );
    assert.match(
      fixed.stdout,
      new RegExp(
        `^fixed +--fix +CREATE PUBLICATION ${pub} FOR TABLE public\\.${t.fix}, public\\.${t.fixkeyed};$`,
        'm',
      ),
    );
    assert.match(line(fixed.stdout, 'ok', 'replica identity'), /2 tables: 1 by primary key .*, 1 FULL/);
    assert.match(line(fixed.stdout, 'ok', 'publication'), /includes the 2 selected tables/);

    const { rows } = await db.query<{ relname: string; relreplident: string }>(
      `SELECT relname, relreplident FROM pg_class WHERE relname = ANY($1) ORDER BY relname`,
      [[t.fix, t.fixkeyed]],
    );
    // Only the table without a primary key changed; the keyed one keeps DEFAULT.
    assert.deepEqual(
      rows.map((x) => [x.relname, x.relreplident]),
      [
        [t.fix, 'f'],
        [t.fixkeyed, 'd'],
      ],
    );
    const again = await pgcdc(['check'], e);
    assert.equal(again.code, 0, again.stdout);
    assert.match(again.stdout, /^0 failed/m);
  });

  test('--json: every check with its status, message and fix', async () => {
    const r = await pgcdc(['check', '--json'], env([t.keyed, t.nokey]));
    assert.equal(r.code, 2);
    const report = JSON.parse(r.stdout) as {
      passed: boolean;
      summary: string;
      checks: Array<{
        check: string;
        label: string;
        status: string;
        message: string;
        fix?: string;
        table?: string;
      }>;
      fixes: unknown[];
    };
    assert.equal(report.passed, false);
    assert.match(report.summary, /^\d+ failed/);
    const ri = report.checks.find((c) => c.check === 'replica_identity' && c.status === 'failed');
    assert.equal(ri?.table, `public.${t.nokey}`);
    assert.equal(ri?.fix, `ALTER TABLE public.${t.nokey} REPLICA IDENTITY FULL; (or add a primary key)`);
    assert.ok(report.checks.some((c) => c.check === 'wal_level' && c.status === 'ok'));
    assert.deepEqual(report.fixes, []);
  });

  test('only the postgres settings: Kafka and the registry are warnings, the PostgreSQL checks run', async () => {
    const e = env([t.keyed], { PGCDC_PUBLICATION_AUTO_CREATE: 'true' });
    delete (e as Record<string, string | undefined>).PGCDC_KAFKA_BROKERS;
    delete (e as Record<string, string | undefined>).PGCDC_REGISTRY_URL;
    const r = await pgcdc(['check'], e);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(line(r.stdout, 'warning', 'kafka'), /kafka\.brokers is not set: not checked/);
    assert.match(line(r.stdout, 'warning', 'schema registry'), /registry\.url is not set/);
    line(r.stdout, 'ok', 'wal_level');
    // run still requires them.
    const run = await pgcdc(['run'], e);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /kafka\.brokers: required/);
  });

  test('pgcdc run refuses to start on a failure, with the same lines (exit 2, no stack trace)', async () => {
    const e = env([t.keyed, t.nokey], { PGCDC_PUBLICATION_AUTO_CREATE: 'true' });
    const check = await pgcdc(['check'], e);
    const expected = line(check.stdout, 'failed', 'replica identity', t.nokey);
    const run = await pgcdc(['run'], e);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.stderr, /pgcdc: not starting: prerequisite checks failed/);
    assert.ok(run.stderr.split('\n').includes(expected), `the same line:\n${expected}\nin:\n${run.stderr}`);
    assert.match(run.stderr, /warning +publication +publication \S+ does not exist; pgcdc will create it/);
    assert.doesNotMatch(run.stderr + run.stdout, /\n\s+at |internal error/);
    // Nothing was created.
    const slot = await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [
      `pgcdc_${e.PGCDC_NAME}`,
    ]);
    assert.equal(slot.rowCount, 0);
  });
  test('pgcdc run with PostgreSQL unreachable: not refused (the worker retries), the line is logged', async () => {
    const port = await freePort();
    const w = spawnWorker(env([t.keyed], { PGCDC_POSTGRES_PORT: String(port), PGCDC_HTTP_PORT: '0' }));
    try {
      for (let i = 0; i < 100 && !/prerequisite checks skipped/.test(w.output()); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(
        w.output(),
        new RegExp(`prerequisite checks skipped: connection +connection refused by 127\\.0\\.0\\.1:${port}`),
      );
      assert.doesNotMatch(w.output(), /not starting/);
    } finally {
      w.child.kill('SIGTERM');
      await exited(w.child);
    }
  });
});
