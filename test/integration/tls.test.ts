// PostgreSQL TLS with libpq's sslmode semantics, against the stack's TLS server (CA-signed
// certificate for localhost/127.0.0.1, a `hostssl ... cert` line for role pgcdc_cert) and against a
// throwaway server of our own: first without TLS, then with a certificate (same CA) issued for
// wrong.example only — the sound way to see verify-full refuse a name while verify-ca accepts the
// chain, without touching /etc/hosts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import {
  PostgresEndpoint,
  connect,
  type PostgresSettings,
  type SslMode,
} from '../../src/postgres/connection.ts';
import { UserError } from '../../src/errors.ts';
import { Connector } from '../../src/pipeline/connector.ts';
import { createLogger } from '../../src/worker/log.ts';
import { defaultSlotName } from '../../src/config/names.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../support/pg-notls.ts';
import {
  TopicReader,
  dropTestSlots,
  eventually,
  pgClient,
  stackSettings,
  uniqueName,
  workerConfig,
} from '../support/pipeline.ts';

const env = process.env;
const CA = env.PGCDC_PG_SSL_CA!;
const CLIENT_CERT = env.PGCDC_PG_SSL_CLIENT_CERT!;
const CLIENT_KEY = env.PGCDC_PG_SSL_CLIENT_KEY!;
const tlsDir = path.dirname(CA);

const log = createLogger({ connector: 'tls-test', level: 'warn', format: 'json' });

function stack(sslmode: SslMode, extra: Partial<PostgresSettings> = {}): PostgresSettings {
  const s = stackSettings();
  return {
    host: s.pgHost,
    port: s.pgPort,
    database: s.pgDatabase,
    user: s.pgUser,
    password: s.pgPassword,
    sslmode,
    connectTimeoutMs: 5000,
    ...extra,
  };
}

/** Whether the session of `client` is encrypted, as the server sees it. */
async function sessionTls(client: pg.Client): Promise<boolean> {
  const r = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
  return (r.rows[0] as { ssl: boolean | string }).ssl === true || (r.rows[0] as { ssl: string }).ssl === 't';
}

async function tlsOf(s: PostgresSettings): Promise<boolean> {
  const c = await connect(s);
  try {
    return await sessionTls(c);
  } finally {
    await c.end();
  }
}

async function refused(s: PostgresSettings, pattern: RegExp): Promise<void> {
  await assert.rejects(connect(s), (err: Error) => {
    assert.ok(err instanceof UserError, `a UserError, got ${err.name}: ${err.message}`);
    assert.match(err.message, pattern);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return true;
  });
}

describe('postgres TLS (sslmode)', () => {
  let work: string;
  let other: ThrowawayPostgres;
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: work, stdio: 'pipe' });

  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-tls-'));
  });
  after(async () => {
    await other?.stop();
    fs.rmSync(work, { recursive: true, force: true });
    await dropTestSlots();
  });

  before(() => {
    // A CA nobody trusts, for chain failures.
    ssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'other-ca.key',
      '-out',
      'other-ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=untrusted CA',
    );
    // A server certificate from the stack's CA for wrong.example only.
    ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'wrong.key');
    ssl('req', '-new', '-key', 'wrong.key', '-out', 'wrong.csr', '-subj', '/CN=wrong.example');
    fs.writeFileSync(
      path.join(work, 'wrong.ext'),
      'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:wrong.example\n',
    );
    ssl(
      'x509',
      '-req',
      '-in',
      'wrong.csr',
      '-CA',
      path.join(tlsDir, 'ca.crt'),
      '-CAkey',
      path.join(tlsDir, 'ca.key'),
      '-CAserial',
      path.join(work, 'ca.srl'),
      '-CAcreateserial',
      '-out',
      'wrong.crt',
      '-days',
      '2',
      '-extfile',
      'wrong.ext',
    );
    // The client key encrypted with a passphrase.
    ssl('pkey', '-in', CLIENT_KEY, '-aes256', '-passout', 'pass:client-key-pass', '-out', 'client-enc.key');
  });

  describe('against the stack server (TLS on)', () => {
    test('disable and allow connect in plaintext; prefer and require use TLS', async () => {
      assert.equal(await tlsOf(stack('disable')), false);
      assert.equal(await tlsOf(stack('allow')), false);
      assert.equal(await tlsOf(stack('prefer')), true);
      assert.equal(await tlsOf(stack('require')), true);
    });

    test('require does not check the certificate, unless a root certificate is given (then it is verify-ca, as in libpq)', async () => {
      assert.equal(await tlsOf(stack('require')), true);
      assert.equal(await tlsOf(stack('require', { sslRootCert: CA })), true);
      await refused(
        stack('require', { sslRootCert: path.join(work, 'other-ca.crt') }),
        /certificate is not trusted/,
      );
    });

    test('verify-ca checks the chain; verify-full also checks the name (IP and DNS SANs)', async () => {
      assert.equal(await tlsOf(stack('verify-ca', { sslRootCert: CA })), true);
      await refused(
        stack('verify-ca', { sslRootCert: path.join(work, 'other-ca.crt') }),
        /certificate is not trusted/,
      );
      assert.equal(await tlsOf(stack('verify-full', { sslRootCert: CA })), true);
      assert.equal(await tlsOf(stack('verify-full', { sslRootCert: CA, host: 'localhost' })), true);
      await refused(stack('verify-full', { sslRootCert: path.join(work, 'other-ca.crt') }), /not trusted/);
      await refused(stack('verify-full'), /needs postgres.sslRootCert/);
    });

    test('CA, client certificate and key as file paths, inline PEM and base64 PEM; an encrypted key with its passphrase', async () => {
      const pem = (f: string) => fs.readFileSync(f, 'utf8');
      const b64 = (f: string) => Buffer.from(pem(f)).toString('base64');
      const variants: Array<Partial<PostgresSettings>> = [
        { sslRootCert: CA, sslCert: CLIENT_CERT, sslKey: CLIENT_KEY },
        { sslRootCert: pem(CA), sslCert: pem(CLIENT_CERT), sslKey: pem(CLIENT_KEY) },
        { sslRootCert: b64(CA), sslCert: b64(CLIENT_CERT), sslKey: b64(CLIENT_KEY) },
        {
          sslRootCert: CA,
          sslCert: CLIENT_CERT,
          sslKey: path.join(work, 'client-enc.key'),
          sslKeyPassword: 'client-key-pass',
        },
      ];
      for (const v of variants) {
        const c = await connect(stack('verify-full', { user: 'pgcdc_cert', password: '', ...v }));
        try {
          const r = await c.query('SELECT current_user AS u');
          assert.equal((r.rows[0] as { u: string }).u, 'pgcdc_cert');
          assert.equal(await sessionTls(c), true);
        } finally {
          await c.end();
        }
      }
      await refused(
        stack('verify-full', {
          user: 'pgcdc_cert',
          sslRootCert: CA,
          sslCert: CLIENT_CERT,
          sslKey: path.join(work, 'client-enc.key'),
          sslKeyPassword: 'wrong',
        }),
        /cannot decrypt the client key/,
      );
    });

    test('user pgcdc_cert is refused without a client certificate; allow falls back to TLS when plaintext is refused', async () => {
      await refused(
        stack('verify-full', { user: 'pgcdc_cert', password: '', sslRootCert: CA }),
        /refused user pgcdc_cert/,
      );
      await refused(
        stack('disable', { user: 'pgcdc_cert', password: '' }),
        /password is not set \(without TLS\)/,
      );
      await refused(
        stack('disable', { user: 'pgcdc_cert', password: 'x' }),
        /refused user pgcdc_cert.*without TLS/,
      );
      // allow: plaintext first — the server refuses it (no plaintext line for pgcdc_cert but a
      // password line it fails) — then TLS with the certificate, as libpq retries on a server error.
      const c = await connect(
        stack('allow', {
          user: 'pgcdc_cert',
          password: 'not-used',
          sslCert: CLIENT_CERT,
          sslKey: CLIENT_KEY,
        }),
      );
      try {
        assert.equal(await sessionTls(c), true);
      } finally {
        await c.end();
      }
    });

    test('a connector runs with verify-full (snapshot and stream) and its replication connection uses TLS', async () => {
      const name = uniqueName('tlsrun');
      const table = `${name}_t`;
      const db = await pgClient();
      const reader = new TopicReader();
      try {
        await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
        await db.query(`INSERT INTO ${table} VALUES (1, 'one')`);
        const connector = new Connector(
          workerConfig(name, {
            PGCDC_TABLES_INCLUDE: `public.${table}`,
            PGCDC_POSTGRES_SSLMODE: 'verify-full',
            PGCDC_POSTGRES_SSL_ROOT_CERT: CA,
          }),
          log,
        );
        const running = connector.run();
        running.catch(() => undefined);
        try {
          const topic = `${name}.public.${table}`;
          await eventually('snapshot row', async () =>
            (await reader.read(topic)).length >= 1 ? true : undefined,
          );
          await db.query(`INSERT INTO ${table} VALUES (2, 'two')`);
          await eventually('streamed row', async () =>
            (await reader.read(topic)).length >= 2 ? true : undefined,
          );
          const r = await db.query(
            `SELECT s.ssl FROM pg_replication_slots r JOIN pg_stat_ssl s ON s.pid = r.active_pid WHERE r.slot_name = $1`,
            [defaultSlotName(name)],
          );
          assert.ok(r.rows.length >= 1, 'the walsender of the connector');
          assert.ok(
            r.rows.every((row: { ssl: boolean }) => row.ssl === true),
            'replication connection over TLS',
          );
        } finally {
          await connector.stop();
          await running;
        }
      } finally {
        await db.query(`DROP TABLE IF EXISTS ${table}`);
        await db.end();
      }
    });
  });

  describe('against a server without TLS, then with a certificate for another name', () => {
    before(async () => {
      other = await startThrowawayPostgres();
    });
    const o = (sslmode: SslMode, extra: Partial<PostgresSettings> = {}): PostgresSettings => ({
      host: other.host,
      port: other.port,
      database: other.database,
      user: other.user,
      password: other.password,
      sslmode,
      connectTimeoutMs: 5000,
      ...extra,
    });

    test('no TLS: disable, allow and prefer connect in plaintext; require, verify-ca and verify-full refuse clearly', async () => {
      assert.equal(await tlsOf(o('disable')), false);
      assert.equal(await tlsOf(o('allow')), false);
      assert.equal(await tlsOf(o('prefer')), false);
      await refused(o('require'), /does not accept TLS connections \(postgres.sslmode=require\)/);
      await refused(o('verify-ca', { sslRootCert: CA }), /does not accept TLS/);
      await refused(o('verify-full', { sslRootCert: CA }), /does not accept TLS/);
    });

    test('prefer negotiates once: the replication connection reuses plaintext and does not fail', async () => {
      const endpoint = new PostgresEndpoint(o('prefer'));
      const q = await endpoint.connect();
      await q.end();
      assert.equal(endpoint.tls, false);
      const config = endpoint.clientConfig({ replication: true });
      assert.equal(config.ssl, false);
      const repl = new pg.Client(config);
      await repl.connect();
      try {
        const r = await repl.query('IDENTIFY_SYSTEM');
        assert.equal(r.rows.length, 1);
      } finally {
        await repl.end();
      }
      // And with TLS on the other side, the same mode keeps TLS for the replication connection.
      const tlsEndpoint = new PostgresEndpoint(stack('prefer'));
      await (await tlsEndpoint.connect()).end();
      assert.equal(tlsEndpoint.tls, true);
      assert.notEqual(tlsEndpoint.clientConfig({ replication: true }).ssl, false);
    });

    test('certificate for wrong.example: verify-ca accepts the chain, verify-full refuses the name, require encrypts', async () => {
      await other.setTls({ cert: path.join(work, 'wrong.crt'), key: path.join(work, 'wrong.key') });
      assert.equal(await tlsOf(o('verify-ca', { sslRootCert: CA })), true);
      await refused(
        o('verify-full', { sslRootCert: CA }),
        /certificate does not match the host name 127\.0\.0\.1/,
      );
      assert.equal(await tlsOf(o('require')), true);
      assert.equal(await tlsOf(o('prefer')), true);
      assert.equal(await tlsOf(o('allow')), false);
    });
  });
});
