// A Kafka Connect standalone worker for consumer tests: the Connect runtime of the stack's Kafka
// version (deploy/local/connect/pom.xml) and one plugin directory with the Debezium JDBC sink and
// Apicurio's Avro converter (deploy/local/connect/plugin/pom.xml), both resolved from Maven Central
// into .cache on first use. Started by the test that needs it, on 127.0.0.1 with a small heap,
// and stopped by PID.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { log4jStdout, mavenCache } from '../../deploy/local/java.ts';
import {
  cacheDir,
  freePort,
  isOurProcess,
  spawnDetached,
  stackDir,
  stopProcess,
  waitReady,
} from '../../deploy/local/process.ts';

const NAME = 'connect';
const pomDir = path.join(import.meta.dirname, '..', '..', 'deploy', 'local', 'connect');
const runtimePom = path.join(pomDir, 'pom.xml');
const pluginPom = path.join(pomDir, 'plugin', 'pom.xml');
const libsDir = path.join(cacheDir, 'connect-libs');
const pluginPath = path.join(cacheDir, 'connect-plugins');
const pluginDir = path.join(pluginPath, 'jdbc-sink-apicurio');
/** JDBC drivers the sink's POM brings for other databases: the test only writes to PostgreSQL. */
const UNUSED_DRIVERS = ['mssql-jdbc', 'mysql-connector-j', 'ojdbc11', 'mariadb-java-client'];

const stamp = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Resolves the worker's classpath and the plugin directory (Maven, first run only). */
export async function ensureConnectJars(logFile: string): Promise<void> {
  await mavenCache(NAME, libsDir, stamp(runtimePom), logFile, (out) => [
    '-f',
    runtimePom,
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    `-DoutputDirectory=${out}`,
  ]);
  fs.mkdirSync(pluginPath, { recursive: true });
  await mavenCache(NAME, pluginDir, stamp(pluginPom), logFile, (out) => [
    '-f',
    pluginPom,
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    // The worker provides Kafka's own classes to plugins, and Jackson: a second jackson-databind in
    // the plugin makes the worker's service-loaded Jackson modules "not a subtype" of its Module.
    '-DexcludeGroupIds=org.apache.kafka,com.fasterxml.jackson.core',
    `-DexcludeArtifactIds=${UNUSED_DRIVERS.join(',')}`,
    `-DoutputDirectory=${out}`,
  ]);
}

export interface ConnectWorker {
  /** http://127.0.0.1:<port> of the worker's REST API. */
  url: string;
  pid: number;
  dir: string;
  logFile: string;
  /** PUTs a connector's configuration (creates or updates it). */
  putConnector(name: string, config: Record<string, string>): Promise<void>;
  /** The connector's and its tasks' states, with a failed task's trace. */
  status(name: string): Promise<ConnectorStatus | undefined>;
  stop(): Promise<void>;
}

export interface ConnectorStatus {
  connector: { state: string; trace?: string };
  tasks: Array<{ id: number; state: string; trace?: string }>;
}

/** Starts a standalone worker against `brokers` (the stack's Kafka); resolves when its REST API answers. */
export async function startConnectWorker(name: string, brokers: string): Promise<ConnectWorker> {
  const dir = path.join(stackDir, 'connect', name);
  fs.mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, 'connect.log');
  await ensureConnectJars(logFile);
  const port = await freePort();
  const props = path.join(dir, 'worker.properties');
  fs.writeFileSync(
    props,
    [
      `bootstrap.servers=${brokers}`,
      `listeners=http://127.0.0.1:${port}`,
      `rest.advertised.host.name=127.0.0.1`,
      `plugin.path=${pluginPath}`,
      `offset.storage.file.filename=${path.join(dir, 'offsets')}`,
      'offset.flush.interval.ms=1000',
      'key.converter=org.apache.kafka.connect.json.JsonConverter',
      'value.converter=org.apache.kafka.connect.json.JsonConverter',
      '',
    ].join('\n'),
  );
  const log4j = path.join(dir, 'log4j2.properties');
  fs.writeFileSync(
    log4j,
    log4jStdout('test/support/connect.ts', { 'org.reflections': 'ERROR', 'org.hibernate': 'WARN' }),
  );
  const pidFile = path.join(dir, 'pid');
  const pid = spawnDetached({
    command: 'java',
    args: [
      '-Xmx512m',
      '-Xms64m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      '-Djava.awt.headless=true',
      `-Dlog4j2.configurationFile=${log4j}`,
      '-cp',
      path.join(libsDir, '*'),
      'org.apache.kafka.connect.cli.ConnectStandalone',
      props,
    ],
    cwd: dir,
    logFile,
    pidFile,
  });
  const url = `http://127.0.0.1:${port}`;
  const worker: ConnectWorker = {
    url,
    pid,
    dir,
    logFile,
    async putConnector(connector, config) {
      const res = await fetch(`${url}/connectors/${encodeURIComponent(connector)}/config`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(config),
      });
      if (!res.ok) throw new Error(`connector ${connector}: HTTP ${res.status} ${await res.text()}`);
    },
    async status(connector) {
      const res = await fetch(`${url}/connectors/${encodeURIComponent(connector)}/status`);
      if (res.status === 404) return undefined;
      return (await res.json()) as ConnectorStatus;
    },
    async stop() {
      await stopProcess(pid, props, 'SIGTERM', 20_000);
    },
  };
  try {
    await waitReady(NAME, async () => (await fetch(`${url}/connector-plugins`)).ok, {
      timeoutMs: 180_000,
      logFile,
      alive: () => isOurProcess(pid, props),
      intervalMs: 500,
    });
  } catch (err) {
    await worker.stop();
    throw err;
  }
  return worker;
}
