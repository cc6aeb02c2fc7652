// Secrets never leak: the worker runs as a child process (`pgcdc run`) with every secret set to a
// distinctive value — PostgreSQL password, TLS client key and its password, SSH key and
// passphrase (through a real sshd), Kafka SASL password and TLS key, registry password and token —
// at debug log level with the HTTP API on. Failures are provoked (a wrong registry token, a wrong
// Kafka password, a wrong PostgreSQL password), /metrics and the REST API are read, and everything
// printed or served is searched for every secret, in every form it was given.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startAuthProxy, type AuthProxy } from '../support/tls-proxy.ts';
import { createSshd, type TestSshd } from '../support/sshd.ts';
import { exited, freePort, spawnWorker, type WorkerProcess } from '../support/cli.ts';
import {
  dropTestSlots,
  eventually,
  pgClient,
  stackSettings,
  uniqueName,
  workerEnv,
} from '../support/pipeline.ts';

const env = process.env;
const CA = env.PGCDC_PG_SSL_CA!;
const tlsDir = path.dirname(CA);
const KAFKA_PASSWORD = env.PGCDC_KAFKA_SASL_USER_PASSWORD!;

const REGISTRY_TOKEN = 'tok-Zq8w1LkPvT7m';
const REGISTRY_PASSWORD = 'regpw-Hs92kdLq01';
const PG_KEY_PASSWORD = 'pgkeypw-Xr71bnQe';
const WRONG_KAFKA_PASSWORD = 'kafkawrong-P0o9i8u7';
const WRONG_PG_PASSWORD = 'pgwrong-M3n4b5v6';

describe('secrets stay secret', () => {
  let sshd: TestSshd;
  let proxy: AuthProxy;
  let work: string;
  let pgKeyB64: string;
  let kafkaKeyB64: string;
  const children: WorkerProcess[] = [];
  const table = `${uniqueName('sec')}_t`;

  before(async () => {
    sshd = await createSshd();
    await sshd.start();
    proxy = await startAuthProxy({
      upstream: stackSettings().registryUrl,
      cert: fs.readFileSync(path.join(tlsDir, 'server.crt'), 'utf8'),
      key: fs.readFileSync(path.join(tlsDir, 'server.key'), 'utf8'),
      authorization: 'Bearer the-right-token-is-not-configured',
    });
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-sec-'));
    execFileSync('openssl', [
      'pkey',
      '-in',
      env.PGCDC_PG_SSL_CLIENT_KEY!,
      '-aes256',
      '-passout',
      `pass:${PG_KEY_PASSWORD}`,
      '-out',
      path.join(work, 'enc.key'),
    ]);
    pgKeyB64 = fs.readFileSync(path.join(work, 'enc.key')).toString('base64');
    kafkaKeyB64 = fs.readFileSync(env.PGCDC_PG_SSL_CLIENT_KEY!).toString('base64');
    const db = await pgClient();
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${table} VALUES (1)`);
    await db.end();
  });
  after(async () => {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    await sshd?.stop();
    await proxy?.close();
    fs.rmSync(work, { recursive: true, force: true });
    const db = await pgClient();
    await db.query(`DROP TABLE IF EXISTS ${table}`);
    await db.end();
    await dropTestSlots();
  });

  /** Every secret of a run, in each form it was given, and the forms it takes once decoded. */
  function secretsOf(e: Record<string, string>): Map<string, string> {
    const out = new Map<string, string>();
    const add = (label: string, v: string | undefined) => v && out.set(label, v);
    add('postgres.password', e.PGCDC_POSTGRES_PASSWORD);
    add('postgres.sslKey', e.PGCDC_POSTGRES_SSL_KEY);
    add('postgres.sslKeyPassword', e.PGCDC_POSTGRES_SSL_KEY_PASSWORD);
    add('ssh.privateKey', e.PGCDC_SSH_PRIVATE_KEY);
    add('ssh.passphrase', e.PGCDC_SSH_PASSPHRASE);
    add('kafka.sasl.password', e.PGCDC_KAFKA_SASL_PASSWORD);
    add('kafka.ssl.key', e.PGCDC_KAFKA_SSL_KEY);
    add('registry.password', e.PGCDC_REGISTRY_PASSWORD);
    add('registry.token', e.PGCDC_REGISTRY_TOKEN);
    // Decoded keys: any line of the key body must not show up either.
    for (const [label, b64] of [
      ['ssh key text', e.PGCDC_SSH_PRIVATE_KEY],
      ['postgres key text', e.PGCDC_POSTGRES_SSL_KEY],
      ['kafka key text', e.PGCDC_KAFKA_SSL_KEY],
    ] as const) {
      if (!b64) continue;
      const lines = Buffer.from(b64, 'base64')
        .toString('utf8')
        .split('\n')
        .filter((l) => l.length >= 40 && !l.startsWith('-----'));
      lines.forEach((l, i) => out.set(`${label} line ${i}`, l));
    }
    // Basic auth as it travels.
    if (e.PGCDC_REGISTRY_PASSWORD)
      out.set(
        'basic auth',
        Buffer.from(`${e.PGCDC_REGISTRY_USERNAME}:${e.PGCDC_REGISTRY_PASSWORD}`).toString('base64'),
      );
    return out;
  }

  function assertNoSecrets(text: string, secrets: Map<string, string>, where: string): void {
    for (const [label, value] of secrets) {
      assert.ok(!text.includes(value), `${label} appears in ${where}`);
    }
  }

  function baseEnv(name: string, httpPort: number): Record<string, string> {
    return workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_LOG_LEVEL: 'debug',
      PGCDC_LOG_FORMAT: 'json',
      PGCDC_HTTP_PORT: String(httpPort),
      PGCDC_HTTP_HOST: '127.0.0.1',
      PGCDC_EXIT_ON_FAILURE_AFTER: 'never',
      // PostgreSQL through the SSH tunnel, TLS with an encrypted client key.
      PGCDC_POSTGRES_SSLMODE: 'verify-full',
      PGCDC_POSTGRES_SSL_ROOT_CERT: CA,
      PGCDC_POSTGRES_SSL_CERT: env.PGCDC_PG_SSL_CLIENT_CERT!,
      PGCDC_POSTGRES_SSL_KEY: pgKeyB64,
      PGCDC_POSTGRES_SSL_KEY_PASSWORD: PG_KEY_PASSWORD,
      PGCDC_SSH_ENABLED: 'true',
      PGCDC_SSH_HOST: sshd.host,
      PGCDC_SSH_PORT: String(sshd.port),
      PGCDC_SSH_USER: sshd.user,
      PGCDC_SSH_PRIVATE_KEY: sshd.rsaKey,
      PGCDC_SSH_PASSPHRASE: sshd.rsaPassphrase,
      PGCDC_SSH_HOST_KEY_FINGERPRINT: sshd.fingerprint,
      // Kafka over SASL_SSL (SCRAM) with a client key.
      PGCDC_KAFKA_BROKERS: env.PGCDC_KAFKA_SASL_BROKERS!,
      PGCDC_KAFKA_SSL_ENABLED: 'true',
      PGCDC_KAFKA_SSL_CA: CA,
      PGCDC_KAFKA_SSL_CERT: env.PGCDC_PG_SSL_CLIENT_CERT!,
      PGCDC_KAFKA_SSL_KEY: kafkaKeyB64,
      PGCDC_KAFKA_SASL_MECHANISM: 'scram-sha-256',
      PGCDC_KAFKA_SASL_USERNAME: env.PGCDC_KAFKA_SASL_USER!,
      PGCDC_KAFKA_SASL_PASSWORD: KAFKA_PASSWORD,
      // The registry behind the authenticating proxy: the configured token is wrong.
      PGCDC_REGISTRY_URL: proxy.url,
      PGCDC_REGISTRY_CA: CA,
      PGCDC_REGISTRY_TOKEN: REGISTRY_TOKEN,
    });
  }

  async function get(port: number, p: string): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${port}${p}`);
    return `${res.status} ${await res.text()}`;
  }

  /** Runs the worker until its status is FAILED; returns everything it printed and served. */
  async function failingRun(e: Record<string, string>, port: number, expect: RegExp): Promise<string> {
    const w = spawnWorker(e);
    children.push(w);
    const name = e.PGCDC_NAME!;
    const status = await eventually(
      `status FAILED (${expect})`,
      async () => {
        const s = await get(port, `/connectors/${name}/status`).catch(() => '');
        return /"state":"FAILED"/.test(s) && /"trace"/.test(s) ? s : undefined;
      },
      90_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- worker output ---\n${w.output()}`, { cause: err });
    });
    assert.match(status, expect);
    let served = status;
    for (const p of [
      '/metrics',
      `/connectors/${name}`,
      `/connectors/${name}/offsets`,
      '/connectors',
      '/readyz',
      '/healthz',
    ]) {
      served += `\n${p}: ${await get(port, p)}`;
    }
    w.child.kill('SIGTERM');
    await exited(w.child);
    return `${w.output()}\n${served}`;
  }

  test('a wrong registry token: FAILED with a clear reason, no secret in logs, status, metrics', async () => {
    const port = await freePort();
    const e = baseEnv(uniqueName('secreg'), port);
    const all = await failingRun(e, port, /refused the credentials \(HTTP 401\)/);
    assert.equal(proxy.seen.includes(`Bearer ${REGISTRY_TOKEN}`), true, 'the token was really used');
    assert.match(all, /SSH tunnel connected/, 'the run went through the tunnel');
    assertNoSecrets(all, secretsOf(e), 'the worker output, status, metrics');
  });

  test('a wrong Kafka password and a wrong PostgreSQL password: clear reasons, no secret anywhere', async () => {
    const port1 = await freePort();
    // This run uses basic auth for the registry (token and basic auth are exclusive).
    const { PGCDC_REGISTRY_TOKEN: _token, ...noToken } = baseEnv(uniqueName('seckafka'), port1);
    const e1 = {
      ...noToken,
      PGCDC_REGISTRY_USERNAME: 'reg-user',
      PGCDC_REGISTRY_PASSWORD: REGISTRY_PASSWORD,
      PGCDC_KAFKA_SASL_PASSWORD: WRONG_KAFKA_PASSWORD,
    };
    const out1 = await failingRun(e1, port1, /refused the SASL SCRAM-SHA-256 login/);
    assertNoSecrets(out1, secretsOf(e1), 'the worker output (wrong Kafka password)');

    const port2 = await freePort();
    const e2 = { ...baseEnv(uniqueName('secpg'), port2), PGCDC_POSTGRES_PASSWORD: WRONG_PG_PASSWORD };
    // The start-up checks refuse this one before the HTTP server starts: the process exits.
    const w = spawnWorker(e2);
    children.push(w);
    assert.notEqual(await exited(w.child), 0);
    assert.match(w.output(), /password authentication failed for user postgres|refused user postgres/);
    assertNoSecrets(w.output(), secretsOf(e2), 'the worker output (wrong PostgreSQL password)');
  });

  test('--help and a configuration error print no secret', async () => {
    const e = { ...baseEnv(uniqueName('sechelp'), 0), PGCDC_REGISTRY_PASSWORD: REGISTRY_PASSWORD };
    const help = spawnWorker(e, ['--help']);
    await exited(help.child);
    assertNoSecrets(help.output(), secretsOf(e), '--help');
    const bad = spawnWorker({
      ...e,
      PGCDC_SNAPSHOT_MODE: 'sometimes',
      PGCDC_SSH_HOST_KEY_FINGERPRINT: 'nope',
    });
    assert.notEqual(await exited(bad.child), 0);
    assert.match(bad.output(), /snapshot.mode/);
    assert.match(bad.output(), /registry.token: cannot be combined/);
    assertNoSecrets(bad.output(), secretsOf(e), 'a configuration error');
  });
});
