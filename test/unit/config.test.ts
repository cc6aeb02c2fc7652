import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  defaultPublicationName,
  defaultSlotName,
  describeConfigError,
  envVarFor,
  formatTableRef,
  LEAVES,
  loadConfig,
  parseTableList,
  redactedConfig,
  type PgcdcConfig,
} from '../../src/config/index.ts';
import { configJsonSchema, configReferenceMarkdown } from '../../src/config/json-schema.ts';
import { interpolate } from '../../src/config/interpolate.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pgcdc-config-test-'));
let counter = 0;

function file(content: string, ext = 'yaml'): string {
  const path = join(dir, `config-${++counter}.${ext}`);
  writeFileSync(path, content);
  return path;
}

const MINIMAL = `
name: orders
postgres:
  host: db.internal
  database: shop
  user: pgcdc
kafka:
  brokers: [kafka1:9092, kafka2:9092]
registry:
  url: http://registry:8081
`;

/** The thrown ConfigError (fails the test when nothing or something else is thrown). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies defaults to a minimal YAML file', () => {
    const cfg = loadConfig({ file: file(MINIMAL), env: {} });
    assert.equal(cfg.name, 'orders');
    assert.equal(cfg.postgres.port, 5432);
    assert.equal(cfg.postgres.password, '');
    assert.deepEqual(cfg.postgres.schemas, ['public']);
    assert.equal(cfg.postgres.sslmode, 'prefer');
    assert.equal(cfg.postgres.sslRootCert, undefined);
    assert.equal(cfg.postgres.connectTimeoutMs, 10000);
    assert.equal(cfg.ssh.enabled, false);
    assert.equal(cfg.ssh.port, 22);
    assert.equal(cfg.publication.autoCreate, true);
    assert.equal(cfg.snapshot.mode, 'initial');
    assert.equal(cfg.snapshot.batchSize, 10000);
    assert.deepEqual(cfg.tables, { include: [], exclude: [] });
    assert.equal(cfg.topics.prefix, 'orders');
    assert.equal(cfg.topics.replicationFactor, -1);
    assert.equal(cfg.topics.tombstonesOnDelete, true);
    assert.equal(cfg.topics.truncateEvents, false);
    assert.deepEqual(cfg.kafka.brokers, ['kafka1:9092', 'kafka2:9092']);
    assert.equal(cfg.kafka.clientId, 'pgcdc-orders');
    assert.equal(cfg.kafka.maxInFlightBytes, 64 * 1024 * 1024);
    assert.equal(cfg.kafka.sasl.mechanism, 'none');
    assert.equal(cfg.kafka.compression, 'none');
    assert.equal(cfg.offsets.topic, 'pgcdc-offsets');
    assert.equal(cfg.offsets.commitIntervalMs, 1000);
    assert.equal(cfg.offsets.statusIntervalMs, 10000);
    assert.equal(cfg.avro.toastPlaceholder, '__debezium_unavailable_value');
    assert.equal(cfg.avro.timePrecision, 'adaptive');
    assert.equal(cfg.avro.typeMode, 'debezium');
    assert.deepEqual([cfg.http.port, cfg.http.host, cfg.http.mutations], [8080, '127.0.0.1', true]);
    assert.deepEqual(cfg.log, { level: 'info', format: 'auto' });
    assert.equal(cfg.heartbeat.intervalMs, 10_000, 'heartbeats on by default');
    assert.deepEqual([cfg.topics.messageEvents, cfg.topics.transactionMetadata], [false, false]);
    assert.deepEqual(cfg.topics.messagePrefixes, []);
    assert.equal(cfg.heartbeat.walWarnBytes, 1024 ** 3);
  });

  it('returns every setting of the schema', () => {
    const cfg = loadConfig({ file: file(MINIMAL), env: {} });
    for (const { path } of LEAVES) {
      const keys = path.split('.');
      const last = keys.pop()!;
      let node: unknown = cfg;
      for (const k of keys) node = (node as Record<string, unknown>)[k];
      assert.ok(last in (node as object), `${path} missing from the loaded config`);
    }
  });

  it('reads JSON files like YAML files', () => {
    const json = JSON.stringify({
      name: 'orders',
      postgres: { host: 'db.internal', database: 'shop', user: 'pgcdc' },
      kafka: { brokers: ['kafka1:9092', 'kafka2:9092'] },
      registry: { url: 'http://registry:8081' },
    });
    assert.deepEqual(
      loadConfig({ file: file(json, 'json'), env: {} }),
      loadConfig({ file: file(MINIMAL), env: {} }),
    );
    assert.equal(loadConfig({ file: file(MINIMAL, 'yml'), env: {} }).name, 'orders');
  });

  it('works from env vars and flags alone', () => {
    const cfg = loadConfig({
      env: {
        PGCDC_NAME: 'x',
        PGCDC_POSTGRES_HOST: 'h',
        PGCDC_POSTGRES_DATABASE: 'd',
        PGCDC_POSTGRES_USER: 'u',
        PGCDC_REGISTRY_URL: 'https://r',
      },
      args: ['--kafka.brokers', 'a:1, b:2'],
    });
    assert.deepEqual(cfg.kafka.brokers, ['a:1', 'b:2']);
  });

  it('gives flags precedence over env vars, and env vars over the file', () => {
    const path = file(`${MINIMAL}\nhttp:\n  port: 1111\n  host: 127.0.0.1\nlog:\n  level: warn\n`);
    const env = { PGCDC_HTTP_PORT: '2222', PGCDC_LOG_LEVEL: 'debug' };
    const fromEnv = loadConfig({ file: path, env });
    assert.equal(fromEnv.http.port, 2222);
    assert.equal(fromEnv.http.host, '127.0.0.1');
    assert.equal(fromEnv.log.level, 'debug');
    const fromFlags = loadConfig({ file: path, env, args: ['--http.port=3333', '--log.level', 'error'] });
    assert.equal(fromFlags.http.port, 3333);
    assert.equal(fromFlags.log.level, 'error');
    assert.equal(fromFlags.http.host, '127.0.0.1');
    assert.equal(loadConfig({ file: path, env: {} }).http.port, 1111);
  });

  it('names env vars PGCDC_<PATH> in upper snake case', () => {
    assert.equal(envVarFor('postgres.password'), 'PGCDC_POSTGRES_PASSWORD');
    assert.equal(envVarFor('postgres.sslRootCert'), 'PGCDC_POSTGRES_SSL_ROOT_CERT');
    assert.equal(envVarFor('kafka.brokers'), 'PGCDC_KAFKA_BROKERS');
    assert.equal(envVarFor('kafka.sasl.mechanism'), 'PGCDC_KAFKA_SASL_MECHANISM');
    assert.equal(envVarFor('kafka.maxInFlightBytes'), 'PGCDC_KAFKA_MAX_IN_FLIGHT_BYTES');
    const cfg = loadConfig({
      file: file(MINIMAL),
      env: {
        PGCDC_POSTGRES_SSL_ROOT_CERT: '/ca.pem',
        PGCDC_POSTGRES_SCHEMAS: 'public, sales',
        PGCDC_SSH_ACCEPT_UNKNOWN_HOST_KEY: 'yes',
        PGCDC_TOPICS_TOMBSTONES_ON_DELETE: 'false',
        PGCDC_POSTGRES_SSLMODE: 'VERIFY-FULL',
      },
    });
    assert.equal(cfg.postgres.sslRootCert, '/ca.pem');
    assert.deepEqual(cfg.postgres.schemas, ['public', 'sales']);
    assert.equal(cfg.ssh.acceptUnknownHostKey, true);
    assert.equal(cfg.topics.tombstonesOnDelete, false);
    assert.equal(cfg.postgres.sslmode, 'verify-full');
  });

  it('parses flags: --k=v, --k v, bare and negated booleans, ignores non-settings', () => {
    const cfg = loadConfig({
      file: file(MINIMAL),
      env: {},
      args: [
        'run',
        '--config',
        'x.yaml',
        '--postgres.port=6543',
        '--ssh.acceptUnknownHostKey',
        '--topics.truncateEvents',
        '--postgres.password',
        '1e3',
      ],
    });
    assert.equal(cfg.postgres.port, 6543);
    assert.equal(cfg.ssh.acceptUnknownHostKey, true);
    assert.equal(cfg.topics.truncateEvents, true);
    // convict's own argument parser (yargs-parser) would have turned this into "1000"
    assert.equal(cfg.postgres.password, '1e3');
    const err = configError(() => loadConfig({ file: file(MINIMAL), env: {}, args: ['--postgres.hots=x'] }));
    assert.deepEqual(err.problems, ['--postgres.hots: unknown setting (did you mean --postgres.host?)']);
  });

  it('accepts byte sizes with units', () => {
    const cfg = loadConfig({
      file: file(`${MINIMAL}\nheartbeat:\n  walWarnBytes: 2GiB\n`),
      env: { PGCDC_KAFKA_MAX_IN_FLIGHT_BYTES: '512KiB' },
    });
    assert.equal(cfg.heartbeat.walWarnBytes, 2 * 1024 ** 3);
    assert.equal(cfg.kafka.maxInFlightBytes, 512 * 1024);
  });

  it('loads the shipped example', () => {
    const cfg = loadConfig({
      file: join(root, 'examples/pgcdc.example.yaml'),
      env: { PGCDC_POSTGRES_PASSWORD: 'example' },
    });
    assert.equal(cfg.postgres.password, 'example');
    assert.equal(cfg.postgres.host, 'localhost');
    assert.deepEqual(cfg.kafka.brokers, ['localhost:9092']);
    assert.deepEqual(cfg.tables.include.map(formatTableRef), [
      'public.orders',
      'public.customers',
      'public."OrderItems"',
    ]);
  });
});

describe('interpolation', () => {
  const withRefs = `
name: orders
postgres:
  host: \${DB_HOST}
  database: shop
  user: pgcdc
  password: \${DB_PASSWORD:-fallback}
kafka:
  brokers: [kafka1:9092]
registry:
  url: http://registry:8081
http:
  port: \${HTTP_PORT:-9090}
avro:
  toastPlaceholder: "$\${literal}"
`;

  it('substitutes set variables and defaults', () => {
    const cfg = loadConfig({ file: file(withRefs), env: { DB_HOST: 'pg.example.com', DB_PASSWORD: 'pw' } });
    assert.equal(cfg.postgres.host, 'pg.example.com');
    assert.equal(cfg.postgres.password, 'pw');
    assert.equal(cfg.http.port, 9090);
    assert.equal(cfg.avro.toastPlaceholder, '${literal}');
    const defaults = loadConfig({ file: file(withRefs), env: { DB_HOST: 'h', DB_PASSWORD: '' } });
    assert.equal(defaults.postgres.password, 'fallback');
  });

  it('reports an unset variable without a default, naming the setting and the variable', () => {
    const err = configError(() => loadConfig({ file: file(withRefs), env: {} }));
    assert.equal(err.problems.length, 1);
    assert.match(err.problems[0]!, /^postgres\.host: environment variable DB_HOST is not set/);
  });

  it('does not require a variable when the setting is overridden', () => {
    const cfg = loadConfig({ file: file(withRefs), env: { PGCDC_POSTGRES_HOST: 'direct' } });
    assert.equal(cfg.postgres.host, 'direct');
  });

  it('reports malformed references', () => {
    const r = interpolate('a ${oops', {});
    assert.deepEqual(r.malformed, ['${']);
    const err = configError(() =>
      loadConfig({ file: file(`${MINIMAL}\nheartbeat:\n  query: "\${not a var}"\n`), env: {} }),
    );
    assert.match(err.problems[0]!, /^heartbeat\.query: malformed reference \$\{not a var\}/);
  });
});

describe('secrets', () => {
  const SECRET = 'Zebra-Quokka-7731';

  it('redactedConfig replaces every sensitive value that is set', () => {
    const cfg = loadConfig({
      file: file(`${MINIMAL.replace('http://registry:8081', `https://svc:${SECRET}@registry:8081`)}
  token: ${SECRET}t
ssh:
  passphrase: ${SECRET}s
`),
      env: { PGCDC_POSTGRES_PASSWORD: SECRET, PGCDC_KAFKA_SASL_PASSWORD: `${SECRET}k` },
    });
    const red: PgcdcConfig = redactedConfig(cfg);
    assert.equal(red.postgres.password, '[redacted]');
    assert.equal(red.kafka.sasl.password, '[redacted]');
    assert.equal(red.registry.token, '[redacted]');
    assert.equal(red.ssh.passphrase, '[redacted]');
    assert.equal(red.registry.url, 'https://svc:[redacted]@registry:8081');
    assert.equal(red.postgres.sslKey, undefined);
    assert.equal(red.postgres.host, 'db.internal');
    assert.ok(!JSON.stringify(red).includes(SECRET));
    assert.equal(cfg.postgres.password, SECRET, 'the original is untouched');
  });

  it('keeps sensitive values out of every error message', () => {
    const cases: Array<() => unknown> = [
      // a sensitive setting of the wrong type, and the secret misplaced in a non-sensitive setting
      () =>
        loadConfig({
          file: file(`${MINIMAL}\nhttp:\n  port: "${SECRET}"\n`),
          env: { PGCDC_POSTGRES_PASSWORD: SECRET, PGCDC_POSTGRES_PORT: 'abc' },
        }),
      () =>
        loadConfig({
          file: file(
            `${MINIMAL.replace('user: pgcdc', `user: pgcdc\n  password: ${SECRET}\n  sslKeyPassword: 12`)}`,
          ),
          env: {},
          args: ['--ssh.enabled', `--ssh.privateKey=${SECRET}`, `--log.level=${SECRET}`],
        }),
      // malformed reference inside a secret
      () => loadConfig({ file: file(`${MINIMAL}\nssh:\n  passphrase: "${SECRET}\${"\n`), env: {} }),
      // a file the parser rejects on the line holding the secret
      () => loadConfig({ file: file(`name: x\npostgres:\n  password: "${SECRET}\n  port: [\n`), env: {} }),
      () => loadConfig({ file: file(`{"postgres": {"password": "${SECRET}" "port": 1}}`, 'json'), env: {} }),
    ];
    for (const run of cases) {
      const err = configError(run);
      assert.ok(!err.message.toLowerCase().includes(SECRET.toLowerCase()), err.message);
      assert.ok(!err.problems.join('\n').includes(SECRET));
      assert.ok(!String(err.stack).includes(SECRET));
    }
  });
});

describe('validation', () => {
  it('reports every problem at once, each by path', () => {
    const err = configError(() =>
      loadConfig({
        file: file(`
name: orders
postgres:
  host: db
  port: abc
  database: shop
  user: pgcdc
  sslmode: sometimes
kafka:
  brokers: kafka1
snapshot:
  batchSize: 0
`),
        env: {},
      }),
    );
    assert.deepEqual(err.problems, [
      'postgres.port: must be an integer between 1 and 65535 (got "abc")',
      'postgres.sslmode: must be one of disable, allow, prefer, require, verify-ca, verify-full (got "sometimes")',
      'snapshot.batchSize: must be an integer between 1 and 1000000 (got 0)',
      'kafka.brokers: entry "kafka1" must be host:port with a port between 1 and 65535 (got ["kafka1"])',
      'registry.url: required (set it in the config file, with PGCDC_REGISTRY_URL, or with --registry.url)',
    ]);
    assert.equal(
      err.message,
      `Invalid configuration (5 problems):\n${err.problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    assert.ok(!err.message.includes('    at '), 'no stack trace in the message');
  });

  it('reports four distinct mistakes as four problems', () => {
    const err = configError(() =>
      loadConfig({
        file: file(MINIMAL.replace('name: orders', 'name: "bad name!"')),
        env: { PGCDC_HTTP_PORT: '70000', PGCDC_TOPICS_REPLICATION_FACTOR: '0' },
        args: ['--ssh.enabled=maybe'],
      }),
    );
    assert.equal(err.problems.length, 4, err.message);
    assert.match(err.problems[0]!, /^name: must be letters, digits/);
    assert.match(
      err.problems[1]!,
      /^ssh\.enabled: must be true or false \(got "maybe" from --ssh\.enabled\)$/,
    );
    assert.match(
      err.problems[2]!,
      /^topics\.replicationFactor: must be -1 or an integer between 1 and 32767 \(got 0 from PGCDC_TOPICS_REPLICATION_FACTOR\)$/,
    );
    assert.match(
      err.problems[3]!,
      /^http\.port: must be an integer between 0 and 65535 \(got 70000 from PGCDC_HTTP_PORT\)$/,
    );
  });

  it('rejects unknown keys with a suggestion when one is close', () => {
    const err = configError(() =>
      loadConfig({
        file: file(`${MINIMAL.replace('user: pgcdc', 'user: pgcdc\n  hots: x\n  ssl_root_cert: /ca.pem')}
snapshots:
  mode: never
log:
  brokers: a:1
  colour: true
`),
        env: {},
      }),
    );
    assert.deepEqual(err.problems, [
      'postgres.hots: unknown setting (did you mean postgres.host?)',
      'postgres.ssl_root_cert: unknown setting (did you mean postgres.sslRootCert?)',
      'snapshots: unknown setting (did you mean snapshot?)',
      'log.brokers: unknown setting (did you mean kafka.brokers?)',
      'log.colour: unknown setting',
    ]);
  });

  it('rejects a scalar where a section belongs, and unquoted numbers for strings', () => {
    const err = configError(() =>
      loadConfig({ file: file(`${MINIMAL}\nssh: true\nheartbeat:\n  query: 12\n`), env: {} }),
    );
    assert.match(err.problems[0]!, /^ssh: must be a mapping of settings \(.*\), not a boolean$/);
    assert.equal(err.problems[1], 'heartbeat.query: must be a string (quote the value in YAML) (got 12)');
  });

  it('reports file errors', () => {
    assert.deepEqual(configError(() => loadConfig({ file: join(dir, 'missing.yaml') })).problems, [
      `config file ${join(dir, 'missing.yaml')}: not found`,
    ]);
    assert.match(
      configError(() => loadConfig({ file: file('a: b', 'toml') })).problems[0]!,
      /unsupported extension/,
    );
    assert.match(
      configError(() => loadConfig({ file: file('- 1\n- 2\n') })).problems[0]!,
      /must contain a mapping/,
    );
    assert.match(configError(() => loadConfig({ file: file('a: [1\n') })).problems[0]!, /not valid YAML/);
    assert.match(configError(() => loadConfig({ file: file('{', 'json') })).problems[0]!, /not valid JSON/);
  });

  it('applies cross-setting rules', () => {
    const err = configError(() =>
      loadConfig({
        file: file(
          `${MINIMAL}  username: svc\n  token: abc123\nkafka:\n  brokers: a:1\n  sasl:\n    mechanism: scram-sha-512\n`,
        ),
        env: {},
      }),
    );
    // duplicate keys (kafka twice) are a YAML error
    assert.match(err.problems[0]!, /not valid YAML/);
    const err2 = configError(() =>
      loadConfig({
        file: file(
          MINIMAL.replace(
            'brokers: [kafka1:9092, kafka2:9092]',
            'brokers: [a:1]\n  sasl:\n    mechanism: plain\n    username: u',
          ) + '  username: svc\n  token: abc123\n',
        ),
        env: {},
      }),
    );
    assert.deepEqual(err2.problems, [
      'kafka.sasl.password: required when kafka.sasl.mechanism is plain',
      'registry.password: required when registry.username is set',
      'registry.token: cannot be combined with registry.username/registry.password (use a bearer token or basic auth)',
    ]);
  });
});

describe('ssh rules', () => {
  const key = Buffer.from(
    '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\n',
  ).toString('base64');
  const fp = 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s';

  it('requires host, user, key and a host key decision when enabled', () => {
    const err = configError(() => loadConfig({ file: file(`${MINIMAL}\nssh:\n  enabled: true\n`), env: {} }));
    assert.deepEqual(
      err.problems.map((p) => p.split(':')[0]),
      ['ssh.host', 'ssh.user', 'ssh.privateKey', 'ssh.hostKeyFingerprint'],
    );
    assert.match(err.problems[3]!, /acceptUnknownHostKey/);
  });

  it('accepts a fingerprint or acceptUnknownHostKey', () => {
    const base = `${MINIMAL}\nssh:\n  enabled: true\n  host: bastion\n  user: tunnel\n  privateKey: ${key}\n`;
    const a = loadConfig({ file: file(`${base}  hostKeyFingerprint: ${fp}\n`), env: {} });
    assert.equal(a.ssh.hostKeyFingerprint, fp);
    assert.equal(a.ssh.privateKey, key);
    const b = loadConfig({ file: file(base), env: { PGCDC_SSH_ACCEPT_UNKNOWN_HOST_KEY: 'true' } });
    assert.equal(b.ssh.acceptUnknownHostKey, true);
  });

  it('checks the fingerprint and key forms', () => {
    const err = configError(() =>
      loadConfig({
        file: file(
          `${MINIMAL}\nssh:\n  enabled: true\n  host: b\n  user: u\n  privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----"\n  hostKeyFingerprint: MD5:aa:bb\n`,
        ),
        env: {},
      }),
    );
    assert.equal(err.problems.length, 2);
    assert.match(
      err.problems[0]!,
      /^ssh\.privateKey: must be base64-encoded \(this looks like the PEM text itself/,
    );
    assert.match(err.problems[1]!, /^ssh\.hostKeyFingerprint: must be SHA256:/);
  });

  it('ignores ssh settings when disabled', () => {
    assert.equal(
      loadConfig({ file: file(`${MINIMAL}\nssh:\n  host: bastion\n`), env: {} }).ssh.enabled,
      false,
    );
  });
});

describe('derived names', () => {
  it('derives slot, publication, topic prefix and client id from the name', () => {
    const cfg = loadConfig({ file: file(MINIMAL.replace('name: orders', 'name: Orders-EU.v2')), env: {} });
    assert.equal(cfg.slot.name, 'pgcdc_orders_eu_v2');
    assert.equal(cfg.publication.name, 'orders_eu_v2_pub');
    assert.equal(cfg.topics.prefix, 'Orders-EU.v2');
    assert.equal(cfg.kafka.clientId, 'pgcdc-Orders-EU.v2');
  });

  it('keeps derived names within 63 characters', () => {
    const long = 'a'.repeat(100);
    assert.equal(defaultSlotName(long).length, 63);
    assert.ok(defaultSlotName(long).startsWith('pgcdc_'));
    assert.equal(defaultPublicationName(long).length, 63);
    assert.ok(defaultPublicationName(long).endsWith('_pub'));
  });

  it('uses configured names and validates the slot name', () => {
    const cfg = loadConfig({
      file: file(MINIMAL),
      env: { PGCDC_SLOT_NAME: 'my_slot', PGCDC_PUBLICATION_NAME: 'MyPub' },
    });
    assert.equal(cfg.slot.name, 'my_slot');
    assert.equal(cfg.publication.name, 'MyPub');
    const err = configError(() => loadConfig({ file: file(MINIMAL), env: { PGCDC_SLOT_NAME: 'My-Slot' } }));
    assert.match(err.problems[0]!, /^slot\.name: must be at most 63 characters from \[a-z0-9_\]/);
  });
});

describe('table lists', () => {
  it('parses comma-separated entries with spaces and quoted identifiers', () => {
    assert.deepEqual(parseTableList(' public.orders ,sales.items,  "My Schema"."Order.Items", "a""b".c , '), [
      { schema: 'public', table: 'orders' },
      { schema: 'sales', table: 'items' },
      { schema: 'My Schema', table: 'Order.Items' },
      { schema: 'a"b', table: 'c' },
    ]);
    assert.deepEqual(parseTableList('"x,y".t, public.orders, public.orders'), [
      { schema: 'x,y', table: 't' },
      { schema: 'public', table: 'orders' },
    ]);
    assert.deepEqual(parseTableList(''), []);
    assert.deepEqual(parseTableList(['public.a', 'public.b, public.c']).map(formatTableRef), [
      'public.a',
      'public.b',
      'public.c',
    ]);
    assert.equal(formatTableRef({ schema: 'My Schema', table: 'a"b' }), '"My Schema"."a""b"');
  });

  it('names every bad entry', () => {
    const err = configError(() =>
      parseTableList('orders, public.Orders, "open.t, a.b.c, public.-x, s."", ok.t'),
    );
    assert.equal(err.problems.length, 2 + 1, err.message);
    assert.match(err.problems[0]!, /^bad table entry 'orders': expected schema\.table/);
    assert.match(err.problems[1]!, /^bad table entry 'public\.Orders': .*"Orders"/);
    assert.match(err.problems[2]!, /no closing double quote/);
    const more = configError(() => parseTableList('a.b.c, public.-x, s."", x. y z'));
    assert.deepEqual(
      more.problems.map((p) => p.split(':')[0]),
      [
        "bad table entry 'a.b.c'",
        "bad table entry 'public.-x'",
        `bad table entry 's.""'`,
        "bad table entry 'x. y z'",
      ],
    );
  });

  it('loads include/exclude from a string or a YAML list and reports bad entries by path', () => {
    const cfg = loadConfig({
      file: file(
        `${MINIMAL}\ntables:\n  include: public.orders, "Sales".items\n  exclude:\n    - public.audit\n`,
      ),
      env: {},
    });
    assert.deepEqual(cfg.tables.include, [
      { schema: 'public', table: 'orders' },
      { schema: 'Sales', table: 'items' },
    ]);
    assert.deepEqual(cfg.tables.exclude, [{ schema: 'public', table: 'audit' }]);
    const err = configError(() =>
      loadConfig({ file: file(MINIMAL), env: { PGCDC_TABLES_INCLUDE: 'public.ok, nope' } }),
    );
    assert.deepEqual(err.problems, [
      "tables.include: bad table entry 'nope': expected schema.table (e.g. public.orders), not a table name alone from PGCDC_TABLES_INCLUDE",
    ]);
  });
});

describe('generated artefacts', () => {
  it('schemas/config.schema.json is up to date (node scripts/gen-config-schema.ts)', () => {
    const committed: unknown = JSON.parse(readFileSync(join(root, 'schemas/config.schema.json'), 'utf8'));
    assert.deepEqual(committed, configJsonSchema());
  });

  it('the reference table of docs/configuration.md is up to date (node scripts/gen-config-schema.ts)', () => {
    assert.ok(readFileSync(join(root, 'docs/configuration.md'), 'utf8').includes(configReferenceMarkdown()));
  });

  it('the JSON schema lists every setting and forbids unknown keys', () => {
    const schema = configJsonSchema() as {
      additionalProperties: boolean;
      properties: Record<string, unknown>;
    };
    assert.equal(schema.additionalProperties, false);
    for (const { path } of LEAVES) {
      let node: unknown = schema;
      for (const k of path.split('.')) node = (node as { properties: Record<string, unknown> }).properties[k];
      assert.ok(node, path);
    }
  });
});

describe('describeConfigError', () => {
  it('prints the problem list of a ConfigError, a message otherwise', () => {
    const err = new ConfigError(['a: bad', 'b: worse']);
    assert.equal(describeConfigError(err), 'Invalid configuration (2 problems):\n  - a: bad\n  - b: worse');
    assert.equal(describeConfigError(new Error('boom')), 'Could not load configuration: boom');
  });
});
