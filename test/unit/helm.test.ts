// Helm chart tests: lint and render helm/pgcdc with the pinned helm CLI (.cache/bin/helm, installed
// by scripts/install-helm.sh when missing or another version — a failed install fails the tests, it
// never skips them),
// then check the rendered manifests, the values schema, and that the plain manifests in
// deploy/kubernetes match the chart's defaults.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { LEAVES, SENSITIVE_PATHS, envVarFor } from '../../src/config/schema.ts';
import { loadConfig } from '../../src/config/load.ts';
import { httpAccess } from '../../src/worker/auth.ts';
import { renderChartSchema } from '../../scripts/gen-helm-schema.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HELM = join(ROOT, '.cache/bin/helm');
const CHART = join(ROOT, 'helm/pgcdc');
const FULL_VALUES = join(CHART, 'ci/full-values.yaml');
const PLAIN = join(ROOT, 'deploy/kubernetes');

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes manifests are untyped YAML */
type Manifest = Record<string, any>;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function helm(...args: string[]): Run {
  const r = spawnSync(HELM, args, { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function helmOk(...args: string[]): string {
  const r = helm(...args);
  assert.equal(r.status, 0, `helm ${args.join(' ')} failed (${r.status}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

function parseManifests(text: string): Manifest[] {
  const out: Manifest[] = [];
  for (const doc of parseAllDocuments(text)) {
    assert.deepEqual(doc.errors, [], `invalid YAML: ${doc.errors.join('; ')}`);
    const value = doc.toJS() as Manifest | null;
    if (value) out.push(value);
  }
  return out;
}

function render(...valueFiles: string[]): Manifest[] {
  const args = ['template', 'pgcdc', CHART, '--namespace', 'cdc'];
  for (const f of valueFiles) args.push('-f', f);
  return parseManifests(helmOk(...args));
}

function only(manifests: Manifest[], kind: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind);
  assert.equal(found.length, 1, `expected exactly one ${kind}, got ${found.length}`);
  return found[0]!;
}

let tmp = '';
function valuesFile(name: string, text: string): string {
  const file = join(tmp, name);
  writeFileSync(file, text);
  return file;
}

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pgcdc-helm-test-'));
  process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
  // A no-op (a version check) when the pinned helm is installed; compiling it takes a few minutes
  // on a cold Go cache, and this hook has no timeout.
  try {
    execFileSync('bash', [join(ROOT, 'scripts/install-helm.sh')], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
    });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`could not install helm with scripts/install-helm.sh:\n${stderr.slice(-4000)}`, {
      cause: err,
    });
  }
  assert.ok(existsSync(HELM), `scripts/install-helm.sh succeeded but ${HELM} does not exist`);
});

function checkDeployment(dep: Manifest, secretName: string): void {
  assert.equal(dep.apiVersion, 'apps/v1');
  assert.equal(dep.spec.replicas, 1);
  assert.deepEqual(dep.spec.strategy, { type: 'Recreate' });
  const pod = dep.spec.template.spec;
  assert.equal(pod.terminationGracePeriodSeconds, 45);
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, 10001);
  assert.equal(typeof pod.securityContext.fsGroup, 'number');
  assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });

  assert.equal(pod.containers.length, 1);
  const c = pod.containers[0];
  assert.deepEqual(c.args, ['run', '--config', '/etc/pgcdc/pgcdc.yaml']);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.deepEqual(c.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(c.livenessProbe.httpGet.port, 'http');
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.readinessProbe.httpGet.port, 'http');
  assert.ok(c.resources.requests && c.resources.limits, 'resources requests and limits are set');

  // The config file and a writable /tmp are the only mounts the chart adds.
  const mounts = Object.fromEntries(c.volumeMounts.map((m: Manifest) => [m.mountPath, m]));
  assert.equal(mounts['/etc/pgcdc']?.readOnly, true);
  assert.ok(mounts['/tmp'], '/tmp is mounted');
  const volumes = Object.fromEntries(pod.volumes.map((v: Manifest) => [v.name, v]));
  assert.ok(volumes[mounts['/tmp'].name].emptyDir, '/tmp is an emptyDir');
  assert.equal(volumes[mounts['/etc/pgcdc'].name].configMap.name, 'pgcdc');

  // Every PGCDC_* variable comes from the existing Secret, never inline.
  const pgcdcEnv = (c.env as Manifest[]).filter((e) => e.name.startsWith('PGCDC_'));
  assert.ok(pgcdcEnv.length > 0, 'PGCDC_* variables are set');
  for (const e of pgcdcEnv) {
    assert.equal(e.value, undefined, `${e.name} must not be inline`);
    assert.equal(
      e.valueFrom?.secretKeyRef?.name,
      secretName,
      `${e.name} comes from the Secret ${secretName}`,
    );
    assert.equal(typeof e.valueFrom.secretKeyRef.key, 'string');
  }
}

function envByName(dep: Manifest): Record<string, Manifest> {
  return Object.fromEntries(dep.spec.template.spec.containers[0].env.map((e: Manifest) => [e.name, e]));
}

function configOf(manifests: Manifest[]): Manifest {
  const cm = only(manifests, 'ConfigMap');
  assert.equal(typeof cm.data['pgcdc.yaml'], 'string');
  return parse(cm.data['pgcdc.yaml']) as Manifest;
}

describe('helm chart helm/pgcdc', () => {
  it('passes helm lint --strict with the default values', () => {
    helmOk('lint', '--strict', CHART);
  });

  it('passes helm lint --strict with the full values (ci/full-values.yaml)', () => {
    helmOk('lint', '--strict', CHART, '-f', FULL_VALUES);
  });

  describe('rendered with the default values', () => {
    let manifests: Manifest[] = [];
    before(() => {
      manifests = render();
    });

    it('renders a Deployment, ConfigMap, NetworkPolicy, Service and ServiceAccount only', () => {
      assert.deepEqual(manifests.map((m) => m.kind).sort(), [
        'ConfigMap',
        'Deployment',
        'NetworkPolicy',
        'Service',
        'ServiceAccount',
      ]);
    });

    it('lets only the namespace and the monitoring namespace reach the HTTP port', () => {
      const np = only(manifests, 'NetworkPolicy');
      const podLabels = only(manifests, 'Deployment').spec.template.metadata.labels;
      for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels)) assert.equal(podLabels[k], v);
      assert.deepEqual(np.spec.policyTypes, ['Ingress']);
      assert.deepEqual(np.spec.ingress, [
        {
          ports: [{ port: 'http', protocol: 'TCP' }],
          from: [
            { podSelector: {} },
            { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
          ],
        },
      ]);
    });

    it('is a deployment no pod without the token can pause: pgcdc refuses to start without it', () => {
      // The rendered config file with the environment the pod gets, as pgcdc loads it.
      const dir = mkdtempSync(join(tmp, 'default-config-'));
      const file = join(dir, 'pgcdc.yaml');
      writeFileSync(file, only(manifests, 'ConfigMap').data['pgcdc.yaml']);
      const env = envByName(only(manifests, 'Deployment'));
      assert.deepEqual(env.PGCDC_HTTP_AUTH_TOKEN!.valueFrom.secretKeyRef, {
        name: 'pgcdc-credentials',
        key: 'http-token',
        optional: false,
      });
      const base = { PGCDC_POSTGRES_PASSWORD: 'pw' };
      const withoutToken = loadConfig({ file, env: base });
      assert.equal(withoutToken.http.host, '0.0.0.0');
      assert.equal(withoutToken.http.mutations, true);
      assert.throws(
        () => httpAccess(withoutToken.http),
        /http\.auth\.token: required when the HTTP server listens on 0\.0\.0\.0/,
      );
      const withToken = loadConfig({ file, env: { ...base, PGCDC_HTTP_AUTH_TOKEN: 'a'.repeat(32) } });
      assert.equal(httpAccess(withToken.http).openChanges, false);
    });

    it('runs exactly one pod with Recreate, hardened, probed on /healthz and /readyz', () => {
      const dep = only(manifests, 'Deployment');
      checkDeployment(dep, 'pgcdc-credentials');
      assert.equal(dep.spec.template.spec.containers[0].image, 'pgcdc:0.2.0');
      assert.equal(dep.spec.template.spec.serviceAccountName, 'pgcdc');
    });

    it('can inject every sensitive setting, under the variable names pgcdc reads', () => {
      const env = envByName(only(manifests, 'Deployment'));
      const known = new Set(LEAVES.map((l) => l.env));
      for (const name of Object.keys(env).filter((n) => n.startsWith('PGCDC_'))) {
        assert.ok(known.has(name), `${name} is a pgcdc setting`);
      }
      assert.equal(
        env.NODE_OPTIONS?.value,
        '--max-old-space-size=256 --max-semi-space-size=8',
        'the V8 heap is capped by default',
      );
      for (const path of SENSITIVE_PATHS) assert.ok(env[envVarFor(path)], `${path} can come from the Secret`);
    });

    it('injects the credentials from the existing Secret, only postgres-password and http-token required', () => {
      const env = envByName(only(manifests, 'Deployment'));
      assert.deepEqual(env.PGCDC_POSTGRES_PASSWORD!.valueFrom.secretKeyRef, {
        name: 'pgcdc-credentials',
        key: 'postgres-password',
        optional: false,
      });
      for (const name of [
        'PGCDC_SSH_PRIVATE_KEY',
        'PGCDC_KAFKA_SASL_PASSWORD',
        'PGCDC_REGISTRY_PASSWORD',
        'PGCDC_POSTGRES_SSL_ROOT_CERT',
        'PGCDC_POSTGRES_SSL_CERT',
        'PGCDC_POSTGRES_SSL_KEY',
        'PGCDC_HTTP_AUTH_READ_TOKEN',
        'PGCDC_HTTP_AUTH_PASSWORD',
      ]) {
        assert.equal(env[name]?.valueFrom.secretKeyRef.optional, true, `${name} is optional`);
      }
    });

    it('renders the config file with the connector name, the http port and no secret', () => {
      const config = configOf(manifests);
      assert.equal(config.name, 'inventory');
      assert.deepEqual(config.http, { port: 8080, host: '0.0.0.0' });
      assert.equal(config.postgres.password, undefined);
      const dep = only(manifests, 'Deployment');
      assert.match(dep.spec.template.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/);
    });

    it('exposes port http 8080 through a ClusterIP Service selecting the pod', () => {
      const svc = only(manifests, 'Service');
      assert.equal(svc.spec.type, 'ClusterIP');
      assert.deepEqual(svc.spec.ports, [{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }]);
      const podLabels = only(manifests, 'Deployment').spec.template.metadata.labels;
      for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(podLabels[k], v);
    });
  });

  describe('rendered with the full values', () => {
    let manifests: Manifest[] = [];
    before(() => {
      manifests = render(FULL_VALUES);
    });

    it('keeps one Recreate pod and its hardening', () => {
      const dep = only(manifests, 'Deployment');
      checkDeployment(dep, 'orders-eu-pgcdc');
      const c = dep.spec.template.spec.containers[0];
      assert.equal(c.image, 'registry.example.com/data/pgcdc:0.2.0');
      assert.deepEqual(c.resources, {
        requests: { cpu: '250m', memory: '512Mi' },
        limits: { cpu: '2', memory: '1Gi' },
      });
    });

    it('maps every configured Secret key to its PGCDC_* variable', () => {
      const env = envByName(only(manifests, 'Deployment'));
      const expected: Record<string, [string, boolean]> = {
        PGCDC_POSTGRES_PASSWORD: ['pg-password', false],
        PGCDC_POSTGRES_SSL_ROOT_CERT: ['pg-ca.pem.b64', true],
        PGCDC_POSTGRES_SSL_CERT: ['pg-client.pem.b64', true],
        PGCDC_POSTGRES_SSL_KEY: ['pg-client-key.pem.b64', true],
        PGCDC_POSTGRES_SSL_KEY_PASSWORD: ['pg-client-key-password', true],
        PGCDC_SSH_PRIVATE_KEY: ['ssh-key.b64', false],
        PGCDC_SSH_PASSPHRASE: ['ssh-passphrase', true],
        PGCDC_KAFKA_SASL_PASSWORD: ['kafka-password', false],
        PGCDC_KAFKA_SSL_CA: ['kafka-ca.pem.b64', true],
        PGCDC_KAFKA_SSL_CERT: ['kafka-client.pem.b64', true],
        PGCDC_KAFKA_SSL_KEY: ['kafka-client-key.pem.b64', true],
        PGCDC_REGISTRY_PASSWORD: ['registry-password', false],
        PGCDC_REGISTRY_CA: ['registry-ca.pem.b64', true],
      };
      for (const [name, [key, optional]] of Object.entries(expected)) {
        assert.deepEqual(
          env[name]?.valueFrom?.secretKeyRef,
          { name: 'orders-eu-pgcdc', key, optional },
          name,
        );
      }
      assert.equal(env.PGCDC_REGISTRY_TOKEN, undefined, 'a key set to "" is not injected');
      assert.equal(env.NODE_OPTIONS?.value, '--max-old-space-size=384');
      for (const [name, key, optional] of [
        ['PGCDC_HTTP_AUTH_TOKEN', 'api-token', false],
        ['PGCDC_HTTP_AUTH_READ_TOKEN', 'api-read-token', true],
        ['PGCDC_HTTP_AUTH_PASSWORD', 'api-password', true],
        ['PGCDC_HTTP_TLS_CERT', 'api-tls.crt', false],
        ['PGCDC_HTTP_TLS_KEY', 'api-tls.key', false],
        ['PGCDC_HTTP_TLS_CLIENT_CA', 'api-client-ca.crt', true],
      ] as const) {
        assert.deepEqual(
          env[name]?.valueFrom?.secretKeyRef,
          { name: 'orders-eu-pgcdc', key, optional },
          name,
        );
      }
    });

    it('probes over HTTPS when the chart serves TLS, and allows the configured namespaces', () => {
      const c = only(manifests, 'Deployment').spec.template.spec.containers[0];
      assert.equal(c.livenessProbe.httpGet.scheme, 'HTTPS');
      assert.equal(c.readinessProbe.httpGet.scheme, 'HTTPS');
      const from = only(manifests, 'NetworkPolicy').spec.ingress[0].from;
      assert.deepEqual(from, [
        { podSelector: {} },
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } } },
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ops-tools' } } },
      ]);
    });

    it('renders the full config file with the configured connector name', () => {
      const config = configOf(manifests);
      assert.equal(config.name, 'orders-eu');
      assert.deepEqual(config.kafka.brokers.length, 3);
      assert.equal(config.kafka.sasl.mechanism, 'scram-sha-512');
      assert.equal(config.kafka.maxInFlightBytes, '128MiB');
      assert.equal(config.tables.include, 'public.orders, public.customers, sales."OrderItems"');
      assert.equal(config.heartbeat.intervalMs, 60000);
      assert.equal(config.http.port, 8080);
    });

    it('adds a ServiceMonitor scraping /metrics on port http', () => {
      const sm = only(manifests, 'ServiceMonitor');
      assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
      assert.equal(sm.metadata.labels.release, 'kube-prometheus-stack');
      assert.deepEqual(sm.spec.endpoints[0], {
        port: 'http',
        path: '/metrics',
        interval: '15s',
        scrapeTimeout: '10s',
        // The full values serve HTTPS and protect /metrics: Prometheus sends the read token.
        scheme: 'https',
        tlsConfig: {
          serverName: 'orders-eu-pgcdc.cdc.svc',
          ca: { secret: { name: 'orders-eu-pgcdc', key: 'api-ca.crt' } },
        },
        authorization: { type: 'Bearer', credentials: { name: 'orders-eu-pgcdc', key: 'api-read-token' } },
      });
      const svcLabels = only(manifests, 'Service').metadata.labels;
      for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(svcLabels[k], v);
    });

    it('adds a PrometheusRule alerting on slot lag, the WAL budget, a FAILED or reconnecting connector and no progress', () => {
      const rule = only(manifests, 'PrometheusRule');
      const rules: Manifest[] = rule.spec.groups.flatMap((g: Manifest) => g.rules);
      const byName = Object.fromEntries(rules.map((r) => [r.alert, r]));
      assert.deepEqual(Object.keys(byName).sort(), [
        'PgcdcConnectorFailed',
        'PgcdcConnectorReconnecting',
        'PgcdcNoProgress',
        'PgcdcSlotLagHigh',
        'PgcdcSlotWalCritical',
        'PgcdcSlotWalWarning',
      ]);
      const sel = 'namespace="cdc",service="pgcdc"';
      assert.equal(
        byName.PgcdcSlotLagHigh!.expr,
        `max by (namespace, pod) (pgcdc_slot_lag_bytes{${sel}}) > 2147483648`,
      );
      assert.equal(
        byName.PgcdcConnectorFailed!.expr,
        `max by (namespace, pod) (pgcdc_connector_state{${sel},state="FAILED"}) == 1`,
      );
      assert.equal(
        byName.PgcdcConnectorReconnecting!.expr,
        `max by (namespace, pod) (pgcdc_connector_state{${sel},state="RECONNECTING"}) == 1`,
      );
      assert.equal(byName.PgcdcConnectorReconnecting!.for, '5m');
      // The WAL budget's state gauge (src/worker/metrics.ts), one alert per level.
      assert.equal(
        byName.PgcdcSlotWalWarning!.expr,
        `max by (namespace, pod) (pgcdc_slot_wal_budget_state{${sel},state="warning"}) == 1`,
      );
      assert.deepEqual(
        [byName.PgcdcSlotWalWarning!.for, byName.PgcdcSlotWalWarning!.labels.severity],
        ['5m', 'warning'],
      );
      assert.equal(
        byName.PgcdcSlotWalCritical!.expr,
        `max by (namespace, pod) (pgcdc_slot_wal_budget_state{${sel},state="critical"}) == 1`,
      );
      assert.deepEqual(
        [byName.PgcdcSlotWalCritical!.for, byName.PgcdcSlotWalCritical!.labels.severity],
        ['2m', 'page'],
      );
      const noProgress = byName.PgcdcNoProgress!.expr as string;
      assert.match(noProgress, /increase\(pgcdc_records_produced_total\{[^}]*\}\[15m\]\)\) == 0/);
      assert.match(noProgress, /pgcdc_slot_lag_bytes\{[^}]*\}\) > 0/);
      for (const r of rules) {
        assert.ok(r.labels.severity, `${r.alert} has a severity`);
        assert.equal(r.labels.connector, 'orders-eu');
        assert.equal(r.labels.team, 'data-platform');
        assert.ok(r.annotations.summary && r.annotations.description, `${r.alert} is documented`);
      }
    });
  });

  describe('values.schema.json refuses invalid values', () => {
    const cases: [string, string, RegExp][] = [
      ['a numeric image.tag', 'image:\n  tag: 5\n', /'\/image\/tag': got number, want string/],
      ['replicaCount 2', 'replicaCount: 2\n', /'\/replicaCount': value must be 1/],
      [
        'a misspelt top-level key',
        'resource:\n  limits: {}\n',
        /additional properties 'resource' not allowed/,
      ],
      [
        'a missing Secret key name',
        'existingSecret:\n  keys:\n    postgresPassword: null\n',
        /'\/existingSecret\/keys': missing property 'postgresPassword'/,
      ],
      [
        'a writable root filesystem',
        'securityContext:\n  readOnlyRootFilesystem: false\n',
        /'\/securityContext\/readOnlyRootFilesystem'/,
      ],
      [
        'a grace period below the 30 s drain',
        'terminationGracePeriodSeconds: 10\n',
        /'\/terminationGracePeriodSeconds'/,
      ],
      ['an invalid connector name', 'config:\n  name: "orders eu"\n', /'\/config\/name'/],
    ];
    for (const [what, yaml, mention] of cases) {
      it(`refuses ${what} in helm template and helm lint`, () => {
        const file = valuesFile(`invalid-${what.replace(/\W+/g, '-')}.yaml`, yaml);
        for (const cmd of [
          ['template', 'pgcdc', CHART, '-f', file],
          ['lint', CHART, '-f', file],
        ]) {
          const r = helm(...cmd);
          assert.notEqual(r.status, 0, `helm ${cmd[0]} accepted ${what}:\n${r.stdout}`);
          const out = r.stderr + r.stdout;
          // template: "values don't meet the specifications of the schema(s)"; lint: "[ERROR] values.yaml: - at '/path'".
          assert.match(
            out,
            /specifications of the schema|\[ERROR\] values\.yaml: - at '\//,
            `helm ${cmd[0]} refused ${what} for another reason:\n${out}`,
          );
          assert.match(out, mention);
        }
      });
    }

    it('refuses every sensitive setting of the config schema written in clear in config', () => {
      for (const path of SENSITIVE_PATHS) {
        const parts = path.split('.');
        const yaml = ['config:', '  name: x', ...parts.map((p, i) => `${'  '.repeat(i + 1)}${p}:`)].join(
          '\n',
        );
        const file = valuesFile(`clear-${path}.yaml`, `${yaml} not-a-reference\n`);
        const r = helm('template', 'pgcdc', CHART, '-f', file);
        assert.notEqual(r.status, 0, `config.${path} in clear was accepted`);
        assert.match(r.stderr, new RegExp(`config\\.${path.replace(/\./g, '\\.')} is a secret`));
      }
    });

    // The config section is typed setting by setting (scripts/gen-helm-schema.ts), so what pgcdc
    // would refuse when the pod starts is refused by helm already.
    const badSettings: [string, RegExp][] = [
      ['config.postgres.port=notaport', /'\/config\/postgres\/port'/],
      ['config.postgres.sslmode=bogus', /'\/config\/postgres\/sslmode'/],
      ['config.snapshot.mode=sometimes', /'\/config\/snapshot\/mode'/],
      ['config.kafka.maxInFlightBytes=lots', /'\/config\/kafka\/maxInFlightBytes'/],
      ['config.kafka.compresion=gzip', /additional properties 'compresion' not allowed/],
      ['config.ssh.enabled=maybe', /'\/config\/ssh\/enabled'/],
    ];
    for (const [set, mention] of badSettings) {
      it(`refuses --set ${set} in helm template and helm lint`, () => {
        for (const cmd of [
          ['template', 'pgcdc', CHART, '--set', set],
          ['lint', CHART, '--set', set],
        ]) {
          const r = helm(...cmd);
          assert.notEqual(r.status, 0, `helm ${cmd[0]} accepted --set ${set}:\n${r.stdout}`);
          const out = r.stderr + r.stdout;
          assert.match(out, /specifications of the schema|\[ERROR\] values\.yaml: - at '\//, out);
          assert.match(out, mention);
        }
      });
    }

    it('accepts typed settings and ${VAR} references in config', () => {
      const file = valuesFile(
        'typed-config.yaml',
        [
          'config:',
          '  name: x',
          '  postgres:',
          '    port: ${PG_PORT}',
          '    sslmode: verify-full',
          '  kafka:',
          '    maxInFlightBytes: 64MiB',
          '  ssh:',
          '    enabled: true',
          '',
        ].join('\n'),
      );
      const config = configOf(render(file));
      assert.equal(config.postgres.port, '${PG_PORT}');
      assert.equal(config.kafka.maxInFlightBytes, '64MiB');
      helmOk('lint', CHART, '--strict', '-f', file);
    });

    it('requires no setting in config but name (secrets and the rest may come from existingSecret or extraEnv)', () => {
      const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as Manifest;
      const required: string[] = [];
      const walk = (node: Manifest, at: string) => {
        for (const r of (node.required as string[] | undefined) ?? []) required.push(`${at}.${r}`);
        for (const [k, v] of Object.entries((node.properties as Record<string, Manifest> | undefined) ?? {}))
          walk(v, `${at}.${k}`);
      };
      walk(schema.properties.config, 'config');
      assert.deepEqual(required, ['config.name']);
      // Every setting pgcdc reads from the environment can be left out of config, secrets included.
      const file = valuesFile(
        'minimal-config.yaml',
        'config:\n  postgres: null\n  kafka: null\n  registry: null\n  offsets: null\n  log: null\n' +
          '  publication: null\n  slot: null\n  snapshot: null\n  tables: null\n',
      );
      const config = configOf(render(file));
      assert.equal(config.name, 'inventory');
      assert.equal(config.postgres, undefined);
    });

    it('is current: its config section is generated from schemas/config.schema.json (node scripts/gen-helm-schema.ts)', () => {
      assert.equal(readFileSync(join(CHART, 'values.schema.json'), 'utf8'), renderChartSchema());
    });

    it('accepts replicaCount 1 (the only possible value)', () => {
      const file = valuesFile('replicas-1.yaml', 'replicaCount: 1\n');
      assert.equal(only(render(file), 'Deployment').spec.replicas, 1);
    });

    it('refuses a release whose API anyone could pause: no operator token while mutations are on', () => {
      for (const args of [
        ['--set', 'existingSecret.keys.httpToken='],
        [
          '--set',
          'existingSecret.keys.httpToken=',
          '--set',
          'config.http.tls.clientCertRole=read',
          '--set',
          'existingSecret.keys.httpTlsClientCa=ca',
        ],
        [
          '--set',
          'existingSecret.keys.httpToken=',
          '--set',
          'config.http.auth.username=ops',
          '--set',
          'existingSecret.keys.httpPassword=',
        ],
      ]) {
        const r = helm('template', 'pgcdc', CHART, ...args);
        assert.notEqual(r.status, 0, `accepted ${args.join(' ')}`);
        assert.match(
          r.stderr,
          /existingSecret\.keys\.httpToken: required while config\.http\.mutations is on/,
        );
        assert.match(r.stderr, /config\.http\.mutations: false/);
      }
      // Mutations off, basic auth, or client certificates of the operator role are enough.
      for (const args of [
        ['--set', 'existingSecret.keys.httpToken=', '--set', 'config.http.mutations=false'],
        ['--set', 'existingSecret.keys.httpToken=', '--set', 'config.http.auth.username=ops'],
        ['--set', 'existingSecret.keys.httpToken=', '--set', 'existingSecret.keys.httpTlsClientCa=ca'],
      ]) {
        const r = helm('template', 'pgcdc', CHART, ...args);
        assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      }
    });

    it('refuses a ServiceMonitor that could not scrape protected metrics', () => {
      const args = [
        '--set',
        'metrics.serviceMonitor.enabled=true',
        '--set',
        'config.http.auth.protectReads=true',
      ];
      const r = helm('template', 'pgcdc', CHART, ...args);
      assert.notEqual(r.status, 0);
      assert.match(
        r.stderr,
        /metrics\.serviceMonitor\.bearerTokenSecret: required when config\.http\.auth\.protectReads is true/,
      );
      const ok = parseManifests(
        helmOk(
          'template',
          'pgcdc',
          CHART,
          ...args,
          '--set',
          'metrics.serviceMonitor.bearerTokenSecret.name=pgcdc-credentials',
          '--set',
          'metrics.serviceMonitor.bearerTokenSecret.key=http-read-token',
        ),
      );
      const ep = only(ok, 'ServiceMonitor').spec.endpoints[0];
      assert.equal(ep.scheme, 'http');
      assert.deepEqual(ep.authorization, {
        type: 'Bearer',
        credentials: { name: 'pgcdc-credentials', key: 'http-read-token' },
      });
    });

    it('can leave the NetworkPolicy out', () => {
      const kinds = parseManifests(
        helmOk('template', 'pgcdc', CHART, '--set', 'networkPolicy.enabled=false'),
      ).map((m) => m.kind);
      assert.ok(!kinds.includes('NetworkPolicy'));
    });

    it('refuses a secret written in clear in config, but allows a ${VAR} reference', () => {
      const clear = valuesFile(
        'clear-secret.yaml',
        'config:\n  name: x\n  postgres:\n    password: hunter2\n',
      );
      const r = helm('template', 'pgcdc', CHART, '-f', clear);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /config\.postgres\.password is a secret/);
      assert.doesNotMatch(r.stderr + r.stdout, /hunter2/);
      const ref = valuesFile(
        'ref-secret.yaml',
        'config:\n  name: x\n  postgres:\n    password: ${PGCDC_POSTGRES_PASSWORD}\n',
      );
      assert.equal(configOf(render(ref)).postgres.password, '${PGCDC_POSTGRES_PASSWORD}');
    });
  });

  it('prints NOTES telling how to check the connector (port-forward, status, logs, metrics)', () => {
    // helm template does not render NOTES.txt: render a copy of it as an ordinary template.
    const copy = join(tmp, 'chart-notes');
    cpSync(CHART, copy, { recursive: true });
    const notes = readFileSync(join(copy, 'templates/NOTES.txt'), 'utf8');
    writeFileSync(
      join(copy, 'templates/_notes-test.tpl'),
      `{{- define "test.notes" -}}\n${notes}\n{{- end }}\n`,
    );
    writeFileSync(
      join(copy, 'templates/notes-as-yaml.yaml'),
      'notes: {{ include "test.notes" . | toJson }}\n',
    );
    const args = ['template', 'orders-eu', copy, '-n', 'cdc', '-f', FULL_VALUES];
    const text = (parseManifests(helmOk(...args, '--show-only', 'templates/notes-as-yaml.yaml'))[0]!.notes ??
      '') as string;
    assert.match(text, /kubectl -n cdc port-forward service\/orders-eu-pgcdc 8080:8080/);
    assert.match(
      text,
      /curl -s --cacert ca\.crt -H "Authorization: Bearer \$TOKEN" https:\/\/localhost:8080\/connectors\/orders-eu\/status/,
    );
    assert.match(
      text,
      /TOKEN=\$\(kubectl -n cdc get secret orders-eu-pgcdc -o jsonpath='\{\.data\.api-token\}' \| base64 -d\)/,
    );
    assert.match(
      text,
      /curl -s --cacert ca\.crt -X PUT -H "Authorization: Bearer \$TOKEN" https:\/\/localhost:8080\/connectors\/orders-eu\/pause/,
    );
    assert.match(text, /kubectl -n cdc logs deployment\/orders-eu-pgcdc/);
    assert.match(text, /\/metrics/);
    assert.match(
      text,
      /without the keys: pg-password, ssh-key\.b64, kafka-password, registry-password, api-token, api-tls\.crt, api-tls\.key\)/,
    );
  });

  describe('deploy/kubernetes (plain manifests)', () => {
    let plain: Manifest[] = [];
    let chart: Manifest[] = [];
    before(() => {
      plain = readdirSync(PLAIN)
        .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
        .flatMap((f) => parseManifests(readFileSync(join(PLAIN, f), 'utf8')));
      chart = render();
    });

    it('has no namespace and holds a Deployment, ConfigMap, NetworkPolicy, Secret example, Service and ServiceAccount', () => {
      assert.deepEqual(plain.map((m) => m.kind).sort(), [
        'ConfigMap',
        'Deployment',
        'NetworkPolicy',
        'Secret',
        'Service',
        'ServiceAccount',
      ]);
      for (const m of plain) assert.equal(m.metadata.namespace, undefined, `${m.kind} has no namespace`);
    });

    it('is equivalent to the chart rendered with its defaults', () => {
      const withoutHelm = (labels: Record<string, string>) =>
        Object.fromEntries(
          Object.entries(labels).filter(
            ([k]) => k !== 'helm.sh/chart' && k !== 'app.kubernetes.io/managed-by',
          ),
        );
      const a = only(plain, 'Deployment');
      const b = only(chart, 'Deployment');
      checkDeployment(a, 'pgcdc-credentials');
      assert.equal(a.metadata.name, b.metadata.name);
      assert.deepEqual(a.spec.selector, b.spec.selector);
      assert.deepEqual(a.spec.strategy, b.spec.strategy);
      assert.deepEqual(
        withoutHelm(a.spec.template.metadata.labels),
        withoutHelm(b.spec.template.metadata.labels),
      );
      assert.deepEqual(a.spec.template.spec, b.spec.template.spec);

      assert.deepEqual(configOf(plain), configOf(chart));
      assert.deepEqual(only(plain, 'Service').spec, only(chart, 'Service').spec);
      assert.deepEqual(only(plain, 'NetworkPolicy').spec, only(chart, 'NetworkPolicy').spec);
      const kustomization = parse(readFileSync(join(PLAIN, 'kustomization.yaml'), 'utf8')) as Manifest;
      assert.ok(
        kustomization.resources.includes('networkpolicy.yaml'),
        'kustomization applies the NetworkPolicy',
      );
      assert.equal(only(plain, 'ServiceAccount').automountServiceAccountToken, false);

      // The example Secret has every key the pod cannot start without.
      const secret = only(plain, 'Secret');
      assert.equal(secret.metadata.name, 'pgcdc-credentials');
      const keys = Object.keys({ ...secret.data, ...secret.stringData });
      const required = (b.spec.template.spec.containers[0].env as Manifest[])
        .map((e) => e.valueFrom?.secretKeyRef)
        .filter((ref) => ref && !ref.optional);
      assert.ok(required.length > 0);
      for (const ref of required) assert.ok(keys.includes(ref.key), `the Secret example has ${ref.key}`);
    });
  });
});
