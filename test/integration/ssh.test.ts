// PostgreSQL through an SSH bastion: a real sshd on a loopback port (test/support/sshd.ts) in
// front of the stack's PostgreSQL. The query connections and the replication connection go
// through forwarded channels; the host key is pinned; a killed sshd fails the run and the worker
// restarts it from the stored offset once the bastion is back, without losing a change.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PostgresEndpoint, type PostgresSettings } from '../../src/postgres/connection.ts';
import { SshTunnel, type SshSettings } from '../../src/tunnel/ssh.ts';
import { UserError } from '../../src/errors.ts';
import { Worker } from '../../src/worker/worker.ts';
import { createLogger } from '../../src/worker/log.ts';
import { createSshd, type TestSshd } from '../support/sshd.ts';
import {
  TopicReader,
  dropTestSlots,
  eventually,
  pgClient,
  stackSettings,
  uniqueName,
  workerConfig,
} from '../support/pipeline.ts';
import { capturingLogger } from '../support/log-capture.ts';

function pgSettings(): PostgresSettings {
  const s = stackSettings();
  // Host and port as the bastion sees them.
  return {
    host: s.pgHost,
    port: s.pgPort,
    database: s.pgDatabase,
    user: s.pgUser,
    password: s.pgPassword,
    sslmode: 'prefer',
    connectTimeoutMs: 10_000,
  };
}

describe('SSH tunnel', () => {
  let sshd: TestSshd;
  const quiet = createLogger({ connector: 'ssh-test', level: 'error', format: 'json' });

  const ssh = (extra: Partial<SshSettings> = {}): SshSettings => ({
    enabled: true,
    host: sshd.host,
    port: sshd.port,
    user: sshd.user,
    privateKey: sshd.ed25519Key,
    hostKeyFingerprint: sshd.fingerprint,
    acceptUnknownHostKey: false,
    keepaliveIntervalMs: 2000,
    ...extra,
  });

  before(async () => {
    sshd = await createSshd();
    await sshd.start();
  });
  after(async () => {
    await sshd?.stop();
    await dropTestSlots();
  });

  test('RSA key with passphrase: query and replication connections through the tunnel (TLS inside it)', async () => {
    const tunnel = new SshTunnel(ssh({ privateKey: sshd.rsaKey, passphrase: sshd.rsaPassphrase }), quiet);
    const endpoint = new PostgresEndpoint(pgSettings(), { tunnel });
    try {
      const q = await endpoint.connect();
      const r = await q.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.equal((r.rows[0] as { ssl: string }).ssl, 't', 'prefer negotiated TLS through the tunnel');
      await q.end();
      const repl = new pg.Client(endpoint.clientConfig({ replication: true }));
      await repl.connect();
      assert.equal((await repl.query('IDENTIFY_SYSTEM')).rows.length, 1);
      await repl.end();
      assert.equal(tunnel.connects, 1, 'one SSH connection for every PostgreSQL connection');
      assert.match(sshd.log(), /Accepted publickey for \S+ from 127\.0\.0\.1 .* RSA/);
    } finally {
      await endpoint.close();
    }
  });

  test('a wrong or missing passphrase is a clear error', () => {
    assert.throws(
      () => new SshTunnel(ssh({ privateKey: sshd.rsaKey, passphrase: 'nope' }), quiet),
      (e: Error) => e instanceof UserError && /ssh.passphrase is wrong/.test(e.message),
    );
    assert.throws(
      () => new SshTunnel(ssh({ privateKey: sshd.rsaKey }), quiet),
      (e: Error) => e instanceof UserError && /ssh.passphrase is not set/.test(e.message),
    );
  });

  test('a host key that does not match the pinned fingerprint is refused, showing the presented one', async () => {
    const pinned = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    const endpoint = new PostgresEndpoint(pgSettings(), {
      tunnel: new SshTunnel(ssh({ hostKeyFingerprint: pinned }), quiet),
    });
    try {
      await assert.rejects(endpoint.connect(), (e: Error) => {
        assert.ok(e instanceof UserError, `${e.name}: ${e.message}`);
        assert.ok(e.message.includes(sshd.fingerprint), e.message);
        assert.ok(e.message.includes(pinned), e.message);
        assert.match(e.message, /refusing to connect/);
        return true;
      });
    } finally {
      await endpoint.close();
    }
  });

  test('acceptUnknownHostKey connects and logs the fingerprint it accepted', async () => {
    const { log, lines } = capturingLogger('ssh-test');
    const endpoint = new PostgresEndpoint(pgSettings(), {
      tunnel: new SshTunnel(ssh({ hostKeyFingerprint: undefined, acceptUnknownHostKey: true }), log),
    });
    try {
      await (await endpoint.connect()).end();
    } finally {
      await endpoint.close();
    }
    assert.match(lines(), /unverified bastion host key/);
    assert.ok(lines().includes(sshd.fingerprint), lines());
  });

  test('a connector streams through the tunnel; sshd killed mid-stream → the worker restarts from its offset when the bastion is back', async () => {
    const name = uniqueName('sshrun');
    const table = `${name}_t`;
    const db = await pgClient();
    const reader = new TopicReader();
    const { log, lines } = capturingLogger('ssh-test');
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'snap' FROM generate_series(1, 20) g`);
    const s = ssh();
    const config = workerConfig(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_POSTGRES_SSLMODE: 'prefer',
      PGCDC_SSH_ENABLED: 'true',
      PGCDC_SSH_HOST: s.host!,
      PGCDC_SSH_PORT: String(s.port),
      PGCDC_SSH_USER: s.user!,
      PGCDC_SSH_PRIVATE_KEY: s.privateKey!,
      PGCDC_SSH_HOST_KEY_FINGERPRINT: s.hostKeyFingerprint!,
      PGCDC_LOG_LEVEL: 'info',
    });
    const worker = new Worker(config, log, { failureGraceMs: null });
    const outcome = worker.run();
    const topic = `${name}.public.${table}`;
    const ids = async () =>
      new Set((await reader.read(topic)).map((r) => Number((r.value?.after as { id?: number } | null)?.id)));
    try {
      await eventually('snapshot through the tunnel', async () =>
        (await ids()).size >= 20 ? true : undefined,
      );
      await db.query(`INSERT INTO ${table} VALUES (21, 'stream')`);
      await eventually('a streamed change', async () => ((await ids()).has(21) ? true : undefined));
      assert.match(lines(), /SSH tunnel connected/);

      // The bastion dies: every connection through it drops.
      await sshd.kill();
      await eventually('the worker noticed the lost connection', async () =>
        /connection lost; restarting the connector/.test(lines()) ? true : undefined,
      );
      await db.query(`INSERT INTO ${table} SELECT g, 'while down' FROM generate_series(22, 40) g`);
      await new Promise((r) => setTimeout(r, 1500)); // at least one restart attempt fails while it is down
      await sshd.start();
      const seen = await eventually(
        'changes made while the bastion was down',
        async () => {
          const got = await ids();
          return got.size >= 40 ? got : undefined;
        },
        90_000,
      );
      for (let i = 1; i <= 40; i++) assert.ok(seen.has(i), `row ${i} arrived`);
      await eventually('streaming again', async () => (worker.state === 'STREAMING' ? true : undefined));
      await db.query(`INSERT INTO ${table} VALUES (41, 'after')`);
      await eventually('a change after the recovery', async () => ((await ids()).has(41) ? true : undefined));
    } finally {
      await worker.stop();
      const { failure } = await outcome;
      assert.equal(failure, null);
      await db.query(`DROP TABLE IF EXISTS ${table}`);
      await db.end();
    }
  });
});
