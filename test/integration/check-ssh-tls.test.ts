// `pgcdc check` through a real SSH bastion (test/support/sshd.ts) and with certificate settings
// that point at files that are not there:
// - ssh.acceptUnknownHostKey: the report shows the fingerprint it accepted and the setting that
//   pins it (docs/security.md tells users to copy it from there), also when PostgreSQL then fails;
//   a pinned key that matches is an ok line;
// - postgres.sslRootCert / sslCert, kafka.ssl.ca and registry.ca given as a missing path: a failed
//   line naming the setting and the path, not a generic "expected a PEM" or a crash.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSshd, type TestSshd } from '../support/sshd.ts';
import { uniqueName, workerEnv } from '../support/pipeline.ts';

const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

interface CliResult {
  code: number | null;
  out: string;
}

function pgcdc(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--disable-warning=TimeoutNegativeWarning', CLI, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, out: stdout + stderr });
      },
    );
  });
}

/** The one line of `check` output with `status` and `label`. */
function line(out: string, status: string, label: string): string {
  const found = out.split('\n').find((l) => l.startsWith(status) && l.slice(9).startsWith(label));
  assert.ok(found, `no '${status} ${label}' line in:\n${out}`);
  return found;
}

describe('pgcdc check: SSH host key and certificate files', () => {
  let sshd: TestSshd;
  before(async () => {
    sshd = await createSshd();
    await sshd.start();
  });
  after(async () => {
    await sshd?.stop();
  });

  /** Through the bastion; the stack's PostgreSQL as the bastion sees it. */
  const viaSsh = (extra: Record<string, string>) => ({
    ...workerEnv(uniqueName('chkssh')),
    PGCDC_SSH_ENABLED: 'true',
    PGCDC_SSH_HOST: sshd.host,
    PGCDC_SSH_PORT: String(sshd.port),
    PGCDC_SSH_USER: sshd.user,
    PGCDC_SSH_PRIVATE_KEY: sshd.ed25519Key,
    ...extra,
  });

  test('acceptUnknownHostKey: a warning line with the accepted fingerprint and the setting that pins it', async () => {
    const r = await pgcdc(['check'], viaSsh({ PGCDC_SSH_ACCEPT_UNKNOWN_HOST_KEY: 'true' }));
    const l = line(r.out, 'warning', 'ssh host key');
    assert.ok(l.includes(sshd.fingerprint), l);
    assert.ok(l.includes(`${sshd.host}:${sshd.port}`), l);
    assert.ok(l.includes(`ssh.hostKeyFingerprint: ${sshd.fingerprint}`), l);
    assert.ok(l.includes(`PGCDC_SSH_HOST_KEY_FINGERPRINT=${sshd.fingerprint}`), l);
    line(r.out, 'ok', 'connection');

    const json = await pgcdc(['check', '--json'], viaSsh({ PGCDC_SSH_ACCEPT_UNKNOWN_HOST_KEY: 'true' }));
    const report = JSON.parse(json.out.slice(json.out.indexOf('{'))) as {
      checks: Array<{ check: string; status: string; message: string; fix?: string }>;
    };
    const ssh = report.checks.find((c) => c.check === 'ssh');
    assert.equal(ssh?.status, 'warning', json.out);
    assert.ok(ssh.fix?.includes(sshd.fingerprint), json.out);
  });

  test('the fingerprint is shown also when PostgreSQL then refuses the login', async () => {
    const r = await pgcdc(
      ['check'],
      viaSsh({ PGCDC_SSH_ACCEPT_UNKNOWN_HOST_KEY: 'true', PGCDC_POSTGRES_PASSWORD: 'wrong-password' }),
    );
    assert.equal(r.code, 2, r.out);
    assert.ok(line(r.out, 'warning', 'ssh host key').includes(sshd.fingerprint), r.out);
    line(r.out, 'failed', 'connection');
  });

  test('a pinned fingerprint that matches is an ok line', async () => {
    const r = await pgcdc(['check'], viaSsh({ PGCDC_SSH_HOST_KEY_FINGERPRINT: sshd.fingerprint }));
    const l = line(r.out, 'ok', 'ssh host key');
    assert.ok(l.includes(sshd.fingerprint), l);
    assert.doesNotMatch(r.out, /^warning\s+ssh host key/m);
  });

  test('certificate settings naming a missing file say which setting and which path', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-certs-'));
    try {
      const missing = (f: string) => path.join(dir, 'nowhere', f);
      const env = workerEnv(uniqueName('chktls'));
      const root = await pgcdc(['check'], {
        ...env,
        PGCDC_POSTGRES_SSLMODE: 'verify-full',
        PGCDC_POSTGRES_SSL_ROOT_CERT: missing('ca.crt'),
      });
      assert.equal(root.code, 2, root.out);
      assert.match(
        line(root.out, 'failed', 'connection'),
        new RegExp(`postgres\\.sslRootCert: file ${missing('ca.crt')} does not exist`),
      );

      // A relative path (no leading /) is recognised by its extension; a directory cannot be read.
      const cert = await pgcdc(['check'], {
        ...env,
        PGCDC_POSTGRES_SSLMODE: 'require',
        PGCDC_POSTGRES_SSL_CERT: 'certs/client.crt',
        PGCDC_POSTGRES_SSL_KEY: 'certs/client.key',
      });
      assert.match(
        line(cert.out, 'failed', 'connection'),
        /postgres\.sslCert: file certs\/client\.crt does not exist/,
      );
      const isDir = await pgcdc(['check'], {
        ...env,
        PGCDC_POSTGRES_SSLMODE: 'verify-ca',
        PGCDC_POSTGRES_SSL_ROOT_CERT: dir,
      });
      assert.match(
        line(isDir.out, 'failed', 'connection'),
        new RegExp(`postgres\\.sslRootCert: file ${dir} cannot be read \\(it is a directory\\)`),
      );

      const services = await pgcdc(['check'], {
        ...env,
        PGCDC_KAFKA_SSL_ENABLED: 'true',
        PGCDC_KAFKA_SSL_CA: missing('kafka-ca.pem'),
        PGCDC_REGISTRY_CA: missing('registry-ca.pem'),
      });
      assert.equal(services.code, 2, services.out);
      assert.match(
        line(services.out, 'failed', 'kafka'),
        new RegExp(`kafka\\.ssl\\.ca: file ${missing('kafka-ca.pem')} does not exist`),
      );
      assert.match(
        line(services.out, 'failed', 'schema registry'),
        new RegExp(`registry\\.ca: file ${missing('registry-ca.pem')} does not exist`),
      );
      assert.doesNotMatch(services.out, /\n\s+at /, 'no stack trace');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
