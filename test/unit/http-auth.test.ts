// The access rules of the HTTP API (src/worker/auth.ts) as pure logic: which settings start, which
// requests need which role, and what a caller is told.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authorize, classify, httpAccess, isLoopback } from '../../src/worker/auth.ts';
import { httpTls } from '../../src/worker/http.ts';
import { isUserError } from '../../src/errors.ts';
import type { PgcdcConfig } from '../../src/config/types.ts';
import { loadConfig } from '../../src/config/load.ts';

const TOKEN = 'operator-0123456789abcdef';
const READ = 'reader-0123456789abcdef';

function settings(over: {
  host?: string;
  mutations?: boolean;
  auth?: Partial<PgcdcConfig['http']['auth']>;
  tls?: Partial<PgcdcConfig['http']['tls']>;
}): PgcdcConfig['http'] {
  return {
    port: 8080,
    host: over.host ?? '0.0.0.0',
    mutations: over.mutations ?? true,
    auth: { protectReads: false, protectProbes: false, ...over.auth },
    tls: { clientCertRole: 'operator', ...over.tls },
  };
}

const request = (headers: Record<string, string> = {}): IncomingMessage =>
  ({ headers, socket: {} }) as unknown as IncomingMessage;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isUserError(err), `a UserError, not ${String(err)}`);
    return (err as Error).message;
  }
  assert.fail('expected a UserError');
}

describe('http access rules', () => {
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) {
      assert.equal(isLoopback(h), true, h);
    }
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', 'pgcdc.example', '::ffff:10.0.0.1']) {
      assert.equal(isLoopback(h), false, h);
    }
  });

  it('refuses changes open to the network, with one line naming what to set', () => {
    const msg = refusal(() => httpAccess(settings({})));
    assert.match(
      msg,
      /^http\.auth\.token: required when the HTTP server listens on 0\.0\.0\.0 \(not loopback\)/,
    );
    assert.match(msg, /http\.mutations: false/);
    assert.match(msg, /http\.host: 127\.0\.0\.1/);
    assert.doesNotMatch(msg, /\n/);
    refusal(() => httpAccess(settings({ auth: { readToken: READ } })));
    refusal(() =>
      httpAccess(settings({ tls: { cert: 'c', key: 'k', clientCa: 'ca', clientCertRole: 'read' } })),
    );
  });

  it('starts with a credential, on loopback, or with mutations off', () => {
    assert.equal(httpAccess(settings({ auth: { token: TOKEN } })).openChanges, false);
    assert.equal(httpAccess(settings({ auth: { username: 'ops', password: TOKEN } })).openChanges, false);
    assert.equal(httpAccess(settings({ tls: { cert: 'c', key: 'k', clientCa: 'ca' } })).certRole, 'operator');
    assert.equal(httpAccess(settings({ host: '127.0.0.1' })).openChanges, true);
    assert.equal(httpAccess(settings({ mutations: false })).mutations, false);
  });

  it('refuses incomplete pairs and protection without a credential', () => {
    assert.match(
      refusal(() => httpAccess(settings({ auth: { username: 'ops', token: TOKEN } }))),
      /^http\.auth\.password: required/,
    );
    assert.match(
      refusal(() => httpAccess(settings({ auth: { password: TOKEN, token: TOKEN } }))),
      /^http\.auth\.username: required/,
    );
    assert.match(
      refusal(() => httpAccess(settings({ auth: { token: TOKEN, readToken: TOKEN } }))),
      /must differ/,
    );
    assert.match(
      refusal(() => httpAccess(settings({ auth: { token: TOKEN }, tls: { key: 'k' } }))),
      /^http\.tls\.cert: required/,
    );
    assert.match(
      refusal(() => httpAccess(settings({ auth: { token: TOKEN }, tls: { clientCa: 'ca' } }))),
      /^http\.tls\.cert: required/,
    );
    assert.match(
      refusal(() => httpAccess(settings({ host: '127.0.0.1', auth: { protectReads: true } }))),
      /^http\.auth\.protectReads: needs a credential/,
    );
  });

  it('classifies probes, reads and changes (any method but GET/HEAD is a change)', () => {
    assert.equal(classify('GET', '/healthz'), 'probe');
    assert.equal(classify('HEAD', '/readyz'), 'probe');
    assert.equal(classify('GET', '/metrics'), 'read');
    assert.equal(classify('GET', '/connectors/x/offsets'), 'read');
    for (const m of ['PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'])
      assert.equal(classify(m, '/connectors/x/pause'), 'change');
    assert.equal(classify('POST', '/healthz'), 'change');
  });

  it('gives 401 without or with a wrong credential, 403 to the read role, passes the operator', () => {
    const access = httpAccess(
      settings({ auth: { token: TOKEN, readToken: READ, username: 'ops', password: TOKEN } }),
    );
    const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
    const verdict = (h?: string, cls: 'probe' | 'read' | 'change' = 'change') =>
      authorize(access, cls, request(h ? { authorization: h } : {}));
    assert.deepEqual(
      [verdict(), verdict(`Bearer ${TOKEN}x`), verdict(basic('ops', 'nope')), verdict('Digest x')].map(
        (v) => !v.ok && v.status,
      ),
      [401, 401, 401, 401],
    );
    const r = verdict(`Bearer ${READ}`);
    assert.equal(!r.ok && r.status, 403);
    assert.deepEqual(verdict(`Bearer ${TOKEN}`), {
      ok: true,
      identity: { name: 'operator-token', role: 'operator' },
    });
    assert.deepEqual(verdict(`bearer   ${TOKEN}`).ok, true);
    assert.deepEqual(verdict(basic('ops', TOKEN)), {
      ok: true,
      identity: { name: 'user:ops', role: 'operator' },
    });
    assert.equal(verdict(basic('opz', TOKEN)).ok, false);
    assert.equal(verdict(undefined, 'read').ok, true);
    assert.equal(verdict(undefined, 'probe').ok, true);
    for (const v of [verdict(`Bearer ${TOKEN}x`), r]) {
      assert.ok(
        !v.ok && !v.message.includes(TOKEN) && !v.message.includes(READ),
        'the message never quotes a credential',
      );
    }
  });

  it('protects reads and probes only when told, and refuses changes when mutations are off', () => {
    const reads = httpAccess(settings({ auth: { token: TOKEN, readToken: READ, protectReads: true } }));
    assert.equal(authorize(reads, 'read', request()).ok, false);
    assert.equal(authorize(reads, 'read', request({ authorization: `Bearer ${READ}` })).ok, true);
    assert.equal(authorize(reads, 'probe', request()).ok, true);
    const probes = httpAccess(settings({ auth: { token: TOKEN, protectProbes: true } }));
    assert.equal(authorize(probes, 'probe', request()).ok, false);
    const off = httpAccess(settings({ mutations: false }));
    const v = authorize(off, 'change', request());
    assert.equal(!v.ok && v.status, 403);
    assert.match(!v.ok ? v.message : '', /http\.mutations: false/);
  });

  it('reads the settings from PGCDC_HTTP_* and checks the token length without showing it', () => {
    const base = {
      PGCDC_NAME: 'x',
      PGCDC_POSTGRES_HOST: 'h',
      PGCDC_POSTGRES_DATABASE: 'd',
      PGCDC_POSTGRES_USER: 'u',
      PGCDC_KAFKA_BROKERS: 'k:9092',
      PGCDC_REGISTRY_URL: 'http://r',
    };
    const cfg = loadConfig({
      env: { ...base, PGCDC_HTTP_AUTH_TOKEN: TOKEN, PGCDC_HTTP_AUTH_PROTECT_READS: 'true' },
    });
    assert.equal(cfg.http.host, '127.0.0.1', 'loopback by default');
    assert.equal(cfg.http.auth.token, TOKEN);
    assert.equal(cfg.http.auth.protectReads, true);
    assert.throws(
      () => loadConfig({ env: { ...base, PGCDC_HTTP_AUTH_TOKEN: 'tooShort-x1' } }),
      (err: Error) =>
        /http\.auth\.token: must be at least 16 characters/.test(err.message) &&
        !err.message.includes('tooShort-x1'),
    );
  });

  it('reads the TLS material as path, PEM or base64 and names the setting of a bad one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgcdc-http-tls-'));
    try {
      const key = (n: string) =>
        execFileSync(
          'openssl',
          [
            'req',
            '-x509',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:prime256v1',
            '-nodes',
            '-days',
            '1',
            '-subj',
            `/CN=${n}`,
            '-keyout',
            join(dir, `${n}.key`),
            '-out',
            join(dir, `${n}.crt`),
          ],
          { stdio: 'pipe' },
        );
      key('a');
      key('b');
      const aKey = readFileSync(join(dir, 'a.key'), 'utf8');
      const tls = httpTls({
        cert: join(dir, 'a.crt'),
        key: Buffer.from(aKey).toString('base64'),
        clientCa: readFileSync(join(dir, 'b.crt'), 'utf8'),
        clientCertRole: 'operator',
      });
      assert.match(tls!.key, /BEGIN PRIVATE KEY/);
      assert.match(tls!.clientCa!, /BEGIN CERTIFICATE/);
      assert.equal(httpTls({ clientCertRole: 'operator' }), null);
      const mismatch = refusal(() =>
        httpTls({ cert: join(dir, 'a.crt'), key: join(dir, 'b.key'), clientCertRole: 'operator' }),
      );
      assert.match(mismatch, /^http\.tls\.key: cannot be used with http\.tls\.cert/);
      assert.ok(!mismatch.includes(aKey.split('\n')[1]!), 'the key is not quoted');
      assert.match(
        refusal(() => httpTls({ cert: join(dir, 'missing.crt'), key: aKey, clientCertRole: 'operator' })),
        /^http\.tls\.cert: file .*missing\.crt does not exist/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
