// Schema registry over HTTPS with basic auth or a bearer token: an authenticating HTTPS proxy
// (test/support/tls-proxy.ts, the stack's certificate for 127.0.0.1) in front of Apicurio's
// ccompat API. pgcdc's Registry must send the credentials, trust registry.ca, and turn wrong
// credentials or an untrusted certificate into one clear line.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Registry, type RegistrySettings } from '../../src/registry/registry.ts';
import { UserError } from '../../src/errors.ts';
import { startAuthProxy, type AuthProxy } from '../support/tls-proxy.ts';
import { stackSettings } from '../support/pipeline.ts';

const CA = process.env.PGCDC_PG_SSL_CA!;
const tlsDir = path.dirname(CA);
const USER = 'registry-user';
const PASSWORD = 'registry-pass-42';
const TOKEN = 'bearer-token-abc123';

const schema = () =>
  JSON.stringify({
    type: 'record',
    name: `R${randomUUID().replaceAll('-', '')}`,
    fields: [{ name: 'id', type: 'int' }],
  });
const subject = () => `auth-test-${randomUUID().slice(0, 8)}-value`;

async function refused(s: RegistrySettings, pattern: RegExp): Promise<void> {
  await assert.rejects(new Registry(s).register(subject(), schema()), (e: Error) => {
    assert.ok(e instanceof UserError, `${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /\n/);
    for (const secret of [PASSWORD, TOKEN])
      assert.ok(!e.message.includes(secret), 'no secret in the message');
    return true;
  });
}

describe('schema registry auth over HTTPS', () => {
  let basic: AuthProxy;
  let bearer: AuthProxy;
  before(async () => {
    const cert = fs.readFileSync(path.join(tlsDir, 'server.crt'), 'utf8');
    const key = fs.readFileSync(path.join(tlsDir, 'server.key'), 'utf8');
    const upstream = stackSettings().registryUrl;
    basic = await startAuthProxy({
      upstream,
      cert,
      key,
      authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`,
    });
    bearer = await startAuthProxy({ upstream, cert, key, authorization: `Bearer ${TOKEN}` });
  });
  after(async () => {
    await basic?.close();
    await bearer?.close();
  });

  test('basic auth: registry.username/password are sent and registry.ca is trusted', async () => {
    const r = new Registry({ url: basic.url, username: USER, password: PASSWORD, ca: CA });
    const id = await r.register(subject(), schema());
    assert.equal(typeof id, 'number');
    assert.equal(basic.refused, 0);
    assert.ok(basic.seen.length >= 1);
  });

  test('bearer token: registry.token is sent as Authorization: Bearer', async () => {
    const r = new Registry({ url: bearer.url, token: TOKEN, ca: CA });
    const s = subject();
    const id = await r.register(s, schema());
    assert.equal(typeof id, 'number');
    assert.ok(
      bearer.seen.every((h) => h === `Bearer ${TOKEN}`),
      bearer.seen.join(','),
    );
    assert.equal(typeof (await r.latestSchema(s)), 'string');
  });

  test('credentials in the URL become basic auth', async () => {
    const u = new URL(basic.url);
    u.username = USER;
    u.password = PASSWORD;
    assert.equal(
      typeof (await new Registry({ url: u.toString(), ca: CA }).register(subject(), schema())),
      'number',
    );
  });

  test('wrong or missing credentials: one clear line', async () => {
    await refused(
      { url: basic.url, username: USER, password: 'wrong-password', ca: CA },
      /refused the credentials \(HTTP 401\)/,
    );
    await refused({ url: basic.url, ca: CA }, /refused the credentials \(HTTP 401\)/);
    await refused(
      { url: bearer.url, token: 'wrong-token-999', ca: CA },
      /check registry.username\/password or registry.token/,
    );
  });

  test('without registry.ca the stack CA is not trusted: a clear TLS error', async () => {
    await refused({ url: bearer.url, token: TOKEN }, /TLS failed \(\w+\); check registry.ca/);
  });
});
