// Who may call the operator API of a real worker (`pgcdc run` as a child process on the stack):
// every endpoint that changes the connector without a credential, with a wrong one, with a
// read-only one and with the right one (bearer token, basic auth, client certificate); the audit
// line of each call; no credential anywhere in the output, the status or the metrics; HTTPS with
// and without a client certificate; and the rule that an API open to the network does not start.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { exited, freePort, killWorkers, spawnWorker, type WorkerProcess } from '../support/cli.ts';
import { dropTestSlots, eventually, pgClient, uniqueName, workerEnv } from '../support/pipeline.ts';

const TOKEN = 'op-token-7Qm2xLp9Vz4kRt8w';
const READ_TOKEN = 'read-token-Hc5nYb3Js6dWq1Ea';
const WRONG_TOKEN = 'op-token-7Qm2xLp9Vz4kRt8X';
const BASIC_USER = 'ops';
const BASIC_PASSWORD = 'basic-pw-Gt4hNm8Kq2sLz7Xc';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

interface CallOpts {
  headers?: Record<string, string>;
  tls?: { ca: string; cert?: string; key?: string };
}

function call(port: number, method: string, p: string, opts: CallOpts = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port, method, path: p, headers: opts.headers ?? {}, agent: false };
    const onRes = (res: http.IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    };
    const req = opts.tls
      ? https.request({ ...options, servername: 'localhost', ...opts.tls }, onRes)
      : http.request(options, onRes);
    req.on('error', reject);
    req.end();
  });
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const basic = (u: string, p: string) => ({
  authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`,
});

/** The endpoints that change the connector, with the status of a successful call. */
const CHANGES = [
  ['PUT', 'pause', 202],
  ['PUT', 'resume', 202],
  ['POST', 'restart', 204],
  ['POST', 'tasks/0/restart', 204],
] as const;

describe('operator API access', () => {
  let work: string;
  let table: string;
  const children: WorkerProcess[] = [];

  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-http-auth-'));
    table = `${uniqueName('hauth')}_t`;
    const db = await pgClient();
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${table} VALUES (1)`);
    await db.end();
  });
  after(async () => {
    await killWorkers();
    fs.rmSync(work, { recursive: true, force: true });
    const db = await pgClient();
    await db.query(`DROP TABLE IF EXISTS ${table}`);
    await db.end();
    await dropTestSlots();
  });

  async function start(
    extra: Record<string, string>,
  ): Promise<{ w: WorkerProcess; port: number; name: string }> {
    const name = uniqueName('hauth');
    const port = await freePort();
    const w = spawnWorker(
      workerEnv(name, {
        PGCDC_TABLES_INCLUDE: `public.${table}`,
        PGCDC_HTTP_PORT: String(port),
        PGCDC_HTTP_HOST: '127.0.0.1',
        PGCDC_LOG_LEVEL: 'debug',
        PGCDC_LOG_FORMAT: 'json',
        ...extra,
      }),
    );
    children.push(w);
    return { w, port, name };
  }

  const stateOf = async (port: number, name: string, opts: CallOpts = {}): Promise<string | undefined> => {
    const r = await call(port, 'GET', `/connectors/${name}/status`, opts).catch(() => undefined);
    if (r?.status !== 200) return undefined;
    return (JSON.parse(r.text) as { connector: { state: string } }).connector.state;
  };

  test('changes need the operator token or user; reads stay open; each change is audited; no credential leaks', async () => {
    const { w, port, name } = await start({
      PGCDC_HTTP_AUTH_TOKEN: TOKEN,
      PGCDC_HTTP_AUTH_READ_TOKEN: READ_TOKEN,
      PGCDC_HTTP_AUTH_USERNAME: BASIC_USER,
      PGCDC_HTTP_AUTH_PASSWORD: BASIC_PASSWORD,
    });
    const ctx = () => `worker output:\n${w.output()}`;
    await eventually('ready', async () =>
      (await call(port, 'GET', '/readyz').catch(() => undefined))?.status === 200 ? true : undefined,
    );
    const served: string[] = [];

    // Reads and probes need no credential.
    for (const p of [
      '/healthz',
      '/readyz',
      '/metrics',
      '/connectors',
      `/connectors/${name}/status`,
      `/connectors/${name}/offsets`,
    ]) {
      const r = await call(port, 'GET', p);
      assert.equal(r.status, 200, `GET ${p} is open: ${r.text}`);
      served.push(r.text);
    }

    for (const [method, endpoint, ok] of CHANGES) {
      const p = `/connectors/${name}/${endpoint}`;
      const none = await call(port, method, p);
      assert.equal(none.status, 401, `${method} ${p} without a credential: ${none.text}`);
      assert.match(String(none.headers['www-authenticate']), /Bearer realm="pgcdc"/);
      assert.match(String(none.headers['www-authenticate']), /Basic realm="pgcdc"/);
      const wrong = await call(port, method, p, { headers: bearer(WRONG_TOKEN) });
      assert.equal(wrong.status, 401, `${method} ${p} with a wrong token`);
      assert.match(String(wrong.headers['www-authenticate']), /Bearer/);
      const wrongPw = await call(port, method, p, { headers: basic(BASIC_USER, `${BASIC_PASSWORD}x`) });
      assert.equal(wrongPw.status, 401, `${method} ${p} with a wrong password`);
      const reader = await call(port, method, p, { headers: bearer(READ_TOKEN) });
      assert.equal(reader.status, 403, `${method} ${p} with the read token: ${reader.text}`);
      assert.match(reader.text, /read-token has the read role/);
      served.push(none.text, wrong.text, wrongPw.text, reader.text);

      const right = await call(port, method, p, { headers: bearer(TOKEN) });
      assert.equal(right.status, ok, `${method} ${p} with the operator token: ${right.text}\n${ctx()}`);
      if (endpoint === 'pause') {
        await eventually('PAUSED', async () => ((await stateOf(port, name)) === 'PAUSED' ? true : undefined));
      } else {
        await eventually('RUNNING', async () =>
          (await stateOf(port, name)) === 'RUNNING' ? true : undefined,
        );
      }
      await eventually(`audit line of ${method} ${p}`, async () => {
        const lines = w
          .output()
          .split('\n')
          .filter((l) => l.includes('"audit"'));
        const mine = lines
          .map((l) => JSON.parse(l) as { audit: Record<string, unknown> })
          .map((l) => l.audit);
        const by = (identity: string, status: number) =>
          mine.some(
            (a) => a.method === method && a.path === p && a.identity === identity && a.status === status,
          );
        return by('operator-token', ok) &&
          by('anonymous', 401) &&
          by('read-token', 403) &&
          mine.some((a) => a.path === p && a.remote === '127.0.0.1' && a.result === 'denied')
          ? true
          : Promise.reject(new Error(`audit lines so far: ${JSON.stringify(mine)}`));
      });
    }

    // Basic auth is an operator too; the audit names the user, never the password.
    const byUser = await call(port, 'PUT', `/connectors/${name}/pause`, {
      headers: basic(BASIC_USER, BASIC_PASSWORD),
    });
    assert.equal(byUser.status, 202);
    await eventually('audit by user:ops', async () =>
      w.output().includes(`audit: PUT /connectors/${name}/pause by user:ops from 127.0.0.1: 202 ok`)
        ? true
        : undefined,
    );
    assert.equal(
      (await call(port, 'PUT', `/connectors/${name}/resume`, { headers: bearer(TOKEN) })).status,
      202,
    );
    await eventually('RUNNING', async () => ((await stateOf(port, name)) === 'RUNNING' ? true : undefined));

    // Any other change, even one that does not exist (yet), needs the credential before anything is said about it.
    assert.equal((await call(port, 'POST', `/connectors/${name}/snapshot`)).status, 401);
    assert.equal((await call(port, 'DELETE', `/connectors/${name}`)).status, 401);
    assert.equal((await call(port, 'POST', '/anything')).status, 401);
    assert.equal(
      (await call(port, 'POST', `/connectors/${name}/nothing-here`, { headers: bearer(TOKEN) })).status,
      404,
    );
    // With the credential, the on-demand snapshot answers for itself (no tables named: 400).
    assert.equal(
      (await call(port, 'POST', `/connectors/${name}/snapshot`, { headers: bearer(TOKEN) })).status,
      400,
    );
    // A wrong credential on an open read is still refused: the caller learns it is wrong.
    assert.equal((await call(port, 'GET', '/metrics', { headers: bearer(WRONG_TOKEN) })).status, 401);

    served.push(
      (await call(port, 'GET', '/metrics')).text,
      (await call(port, 'GET', `/connectors/${name}/status`)).text,
    );
    const everything = [w.output(), ...served].join('\n');
    for (const [label, secret] of [
      ['operator token', TOKEN],
      ['read token', READ_TOKEN],
      ['wrong token', WRONG_TOKEN],
      ['basic password', BASIC_PASSWORD],
      ['basic header', Buffer.from(`${BASIC_USER}:${BASIC_PASSWORD}`).toString('base64')],
    ] as const) {
      assert.ok(
        !everything.includes(secret),
        `the ${label} appears in the output, a response or the metrics`,
      );
    }
    assert.match(
      w.output(),
      /"token":"\[redacted\]"/,
      'the debug configuration line shows the token redacted',
    );
    w.child.kill('SIGTERM');
    assert.equal(await exited(w.child), 0, ctx());
  });

  test('HTTPS: a client certificate signed by http.tls.clientCa is an identity; probes need none; reads can be protected', async () => {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: work, stdio: 'pipe' });
    const ca = (n: string) => {
      ssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '2',
        '-subj',
        `/CN=${n}`,
        '-keyout',
        `${n}.key`,
        '-out',
        `${n}.crt`,
      );
    };
    const leaf = (n: string, signer: string, ext: string) => {
      ssl(
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        `/O=acme/CN=${n}`,
        '-keyout',
        `${n}.key`,
        '-out',
        `${n}.csr`,
      );
      fs.writeFileSync(path.join(work, `${n}.ext`), ext);
      ssl(
        'x509',
        '-req',
        '-in',
        `${n}.csr`,
        '-CA',
        `${signer}.crt`,
        '-CAkey',
        `${signer}.key`,
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        `${n}.ext`,
        '-out',
        `${n}.crt`,
      );
    };
    ca('server-ca');
    ca('ops-ca');
    ca('rogue-ca');
    leaf(
      'localhost',
      'server-ca',
      'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
    );
    leaf('alice', 'ops-ca', 'extendedKeyUsage=clientAuth\n');
    leaf('mallory', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
    const read = (f: string) => fs.readFileSync(path.join(work, f), 'utf8');
    const serverKey = read('localhost.key');

    const { w, port, name } = await start({
      PGCDC_HTTP_TLS_CERT: path.join(work, 'localhost.crt'),
      // base64 PEM, the form a Kubernetes Secret gives
      PGCDC_HTTP_TLS_KEY: Buffer.from(serverKey).toString('base64'),
      PGCDC_HTTP_TLS_CLIENT_CA: read('ops-ca.crt'),
      PGCDC_HTTP_AUTH_PROTECT_READS: 'true',
      PGCDC_HTTP_AUTH_TOKEN: TOKEN,
    });
    const ctx = () => `worker output:\n${w.output()}`;
    const serverCa = read('server-ca.crt');
    const alice = { ca: serverCa, cert: read('alice.crt'), key: read('alice.key') };
    const mallory = { ca: serverCa, cert: read('mallory.crt'), key: read('mallory.key') };
    const anon = { ca: serverCa };
    await eventually(
      'RUNNING over HTTPS',
      async () => ((await stateOf(port, name, { tls: alice })) === 'RUNNING' ? true : undefined),
      60_000,
    );

    // Probes: over HTTPS, no certificate, no token.
    assert.equal((await call(port, 'GET', '/healthz', { tls: anon })).status, 200, ctx());
    await eventually('/readyz 200 over HTTPS without a certificate', async () =>
      (await call(port, 'GET', '/readyz', { tls: anon })).status === 200 ? true : undefined,
    );
    // Plain HTTP is not served.
    await assert.rejects(call(port, 'GET', '/healthz'));
    // Protected reads: 401 without an identity, 200 with a certificate or the token.
    const metricsAnon = await call(port, 'GET', '/metrics', { tls: anon });
    assert.equal(metricsAnon.status, 401);
    assert.match(String(metricsAnon.headers['www-authenticate']), /^Bearer/);
    assert.equal((await call(port, 'GET', '/metrics', { tls: alice })).status, 200);
    assert.equal((await call(port, 'GET', '/metrics', { tls: anon, headers: bearer(TOKEN) })).status, 200);

    for (const [method, endpoint, ok] of CHANGES) {
      const p = `/connectors/${name}/${endpoint}`;
      assert.equal(
        (await call(port, method, p, { tls: anon })).status,
        401,
        `${method} ${p} without a certificate`,
      );
      const rogue = await call(port, method, p, { tls: mallory });
      assert.equal(rogue.status, 401, `${method} ${p} with a certificate of another CA`);
      assert.match(rogue.text, /client certificate not accepted/);
      const r = await call(port, method, p, { tls: alice });
      assert.equal(r.status, ok, `${method} ${p} with alice's certificate: ${r.text}\n${ctx()}`);
      const want = endpoint === 'pause' ? 'PAUSED' : 'RUNNING';
      await eventually(want, async () =>
        (await stateOf(port, name, { tls: alice })) === want ? true : undefined,
      );
    }
    await eventually('audit by the certificate subject', async () =>
      w
        .output()
        .includes(`audit: PUT /connectors/${name}/pause by cert:O=acme,CN=alice from 127.0.0.1: 202 ok`)
        ? true
        : undefined,
    );
    assert.match(
      w.output(),
      /audit: POST \/connectors\/[^ ]+\/restart by anonymous from 127\.0\.0\.1: 401 denied/,
    );
    const keyLines = serverKey.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));
    for (const l of keyLines) assert.ok(!w.output().includes(l), 'the server key appears in the output');
    assert.ok(!w.output().includes(TOKEN), 'the token appears in the output');
    w.child.kill('SIGTERM');
    assert.equal(await exited(w.child), 0, ctx());
  });

  test('an API open to the network does not start; loopback or http.mutations: false does', async () => {
    const name = uniqueName('hauth');
    const open = spawnWorker(
      workerEnv(name, { PGCDC_HTTP_HOST: '0.0.0.0', PGCDC_HTTP_PORT: String(await freePort()) }),
    );
    assert.equal(await exited(open.child), 2, open.output());
    const lines = open.output().trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${open.output()}`);
    assert.match(
      lines[0]!,
      /^pgcdc: http\.auth\.token: required when the HTTP server listens on 0\.0\.0\.0 \(not loopback\)/,
    );
    assert.match(lines[0]!, /http\.mutations: false/);
    assert.doesNotMatch(open.output(), /\n\s+at /, 'no stack trace');

    // A read token alone is no operator credential.
    const readOnly = spawnWorker(
      workerEnv(name, {
        PGCDC_HTTP_HOST: '::',
        PGCDC_HTTP_AUTH_READ_TOKEN: READ_TOKEN,
        PGCDC_HTTP_PORT: String(await freePort()),
      }),
    );
    assert.equal(await exited(readOnly.child), 2, readOnly.output());
    assert.match(readOnly.output(), /http\.auth\.token: required when the HTTP server listens on ::/);
    assert.ok(!readOnly.output().includes(READ_TOKEN));

    const badToken = spawnWorker(workerEnv(name, { PGCDC_HTTP_AUTH_TOKEN: 'Zq9tokShort' }));
    assert.equal(await exited(badToken.child), 2);
    assert.match(badToken.output(), /http\.auth\.token: must be at least 16 characters/);
    assert.ok(!badToken.output().includes('Zq9tokShort'), badToken.output());

    // Mutations off: the worker starts without a credential and refuses every change with 403.
    const { w, port, name: n2 } = await start({ PGCDC_HTTP_MUTATIONS: 'false' });
    await eventually('RUNNING', async () => ((await stateOf(port, n2)) === 'RUNNING' ? true : undefined));
    for (const [method, endpoint] of CHANGES) {
      const r = await call(port, method, `/connectors/${n2}/${endpoint}`);
      assert.equal(r.status, 403, r.text);
      assert.match(r.text, /http\.mutations: false/);
    }
    assert.equal(await stateOf(port, n2), 'RUNNING');
    w.child.kill('SIGTERM');
    assert.equal(await exited(w.child), 0, w.output());
  });
});
