// Apache Kafka 4.x of the local stack: one JVM in KRaft combined mode (broker + controller),
// jars from Maven Central (deploy/local/kafka/pom.xml) cached under .cache/kafka-libs.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import {
  StackError,
  cacheDir,
  isOurProcess,
  portIsFree,
  run,
  spawnDetached,
  stackDir,
  waitReady,
  ServerProcess,
  type ServerStatus,
} from './process.ts';
import { ensureJavaAndMaven, jvmOptions, log4jStdout, mavenCache } from './java.ts';
import { allocatePort, KAFKA_SASL_USER, saveState, tlsDir, type StackState } from './state.ts';

const NAME = 'kafka';
const pom = path.join(import.meta.dirname, 'kafka', 'pom.xml');
export const libsDir = path.join(cacheDir, 'kafka-libs');
const dir = path.join(stackDir, 'kafka');
const dataDir = path.join(dir, 'data');
const propsFile = path.join(dir, 'server.properties');
const log4jFile = path.join(dir, 'log4j2.properties');
const logFile = path.join(dir, 'kafka.log');
const pidFile = path.join(dir, 'pid');
/** The broker's PEM keystore: the stack's server key (PKCS#8) + certificate (localhost, 127.0.0.1). */
const keystoreFile = path.join(dir, 'broker.pem');
const SCRAM_MECHANISMS = ['SCRAM-SHA-256', 'SCRAM-SHA-512'];
const READY_TIMEOUT_MS = 120_000;

const server = new ServerProcess({
  name: NAME,
  pidFile,
  marker: propsFile,
  logFile,
  stopSignal: 'SIGTERM',
  stopTimeoutMs: 60_000,
});

/** The broker jars (Maven Central, cached in .cache/kafka-libs); also used by the three-broker cluster. */
export async function ensureLibs(): Promise<void> {
  const stamp = createHash('sha256').update(fs.readFileSync(pom)).digest('hex');
  await mavenCache(NAME, libsDir, stamp, logFile, (out) => [
    '-f',
    pom,
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    `-DoutputDirectory=${out}`,
  ]);
}

/** A KRaft cluster id: 16 random bytes, base64url without padding (what `random-uuid` prints). */
function newClusterId(): string {
  while (true) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** The stack's TLS files come from postgres.ts (started in parallel): wait for them. */
async function brokerKeystore(): Promise<void> {
  const files = ['ca.crt', 'server.crt', 'server.key'].map((f) => path.join(tlsDir, f));
  const deadline = Date.now() + 120_000;
  while (!files.every((f) => fs.existsSync(f))) {
    if (Date.now() > deadline) throw new StackError(NAME, `no TLS files in ${tlsDir}`, logFile);
    await new Promise((r) => setTimeout(r, 250));
  }
  fs.mkdirSync(dir, { recursive: true });
  const pem = fs.readFileSync(files[2]!, 'utf8') + fs.readFileSync(files[1]!, 'utf8');
  fs.writeFileSync(keystoreFile, pem, { mode: 0o600 });
}

/** Listener settings of SASL_SSL (PLAIN + SCRAM) and SSL (client certificate required). */
function securityProps(state: StackState): string[] {
  const user = KAFKA_SASL_USER;
  const password = state.kafkaSaslPassword!;
  const tls = (listener: string) => [
    `listener.name.${listener}.ssl.keystore.type=PEM`,
    `listener.name.${listener}.ssl.keystore.location=${keystoreFile}`,
    `listener.name.${listener}.ssl.truststore.type=PEM`,
    `listener.name.${listener}.ssl.truststore.location=${path.join(tlsDir, 'ca.crt')}`,
  ];
  return [
    ...tls('sasl_ssl'),
    ...tls('ssl'),
    'listener.name.ssl.ssl.client.auth=required',
    'listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
    `listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${user}="${password}";`,
    ...SCRAM_MECHANISMS.map(
      (m) =>
        `listener.name.sasl_ssl.${m.toLowerCase()}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
    ),
  ];
}

/** SCRAM users of a cluster formatted before the SASL listener existed: through the admin API. */
async function ensureScramUsers(state: StackState, port: number): Promise<void> {
  if (state.kafkaScramReady) return;
  // One mechanism per request: the broker refuses two alterations of one user in a request.
  for (const m of SCRAM_MECHANISMS) {
    await run(
      NAME,
      'java',
      [
        ...java(['-Xmx128m']),
        'kafka.admin.ConfigCommand',
        '--bootstrap-server',
        `127.0.0.1:${port}`,
        '--alter',
        '--add-config',
        `${m}=[iterations=8192,password=${state.kafkaSaslPassword}]`,
        '--entity-type',
        'users',
        '--entity-name',
        KAFKA_SASL_USER,
      ],
      { logFile, cwd: dir },
    );
  }
  state.kafkaScramReady = true;
  saveState(state);
}

function writeConfig(port: number, controllerPort: number, state: StackState): void {
  fs.mkdirSync(dir, { recursive: true });
  const { kafkaSasl, kafkaSsl } = state.ports;
  const props = [
    '# Written by deploy/local/kafka.ts at each start.',
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort},SASL_SSL://127.0.0.1:${kafkaSasl},SSL://127.0.0.1:${kafkaSsl}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port},SASL_SSL://127.0.0.1:${kafkaSasl},SSL://127.0.0.1:${kafkaSsl}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL',
    ...securityProps(state),
    `log.dirs=${dataDir}`,
    'num.partitions=1',
    'default.replication.factor=1',
    'min.insync.replicas=1',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=10',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'transaction.state.log.num.partitions=10',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=false',
    'delete.topic.enable=true',
    'log.retention.hours=24',
    '',
  ].join('\n');
  fs.writeFileSync(propsFile, props);
  fs.writeFileSync(
    log4jFile,
    log4jStdout('deploy/local/kafka.ts', { 'state.change.logger': 'WARN', 'kafka.request.logger': 'WARN' }),
  );
}

function java(args: string[]): string[] {
  return [...args, `-Dlog4j2.configurationFile=${log4jFile}`, '-cp', path.join(libsDir, '*')];
}

async function format(state: StackState): Promise<void> {
  if (fs.existsSync(path.join(dataDir, 'meta.properties'))) return;
  process.stderr.write('stack: kafka: formatting KRaft storage\n');
  fs.rmSync(dataDir, { recursive: true, force: true });
  state.kafkaClusterId ??= newClusterId();
  saveState(state);
  await run(
    NAME,
    'java',
    [
      ...java(['-Xmx256m']),
      'kafka.tools.StorageTool',
      'format',
      '-t',
      state.kafkaClusterId,
      '-c',
      propsFile,
      ...SCRAM_MECHANISMS.flatMap((m) => [
        '--add-scram',
        `${m}=[name=${KAFKA_SASL_USER},iterations=8192,password=${state.kafkaSaslPassword}]`,
      ]),
    ],
    { logFile, cwd: dir },
  );
  state.kafkaScramReady = true;
  saveState(state);
}

/** Ready = the broker answers a real client's metadata request (kafkajs admin describeCluster). */
async function ready(port: number): Promise<boolean> {
  const admin = new Kafka({
    clientId: 'pgcdc-stack',
    brokers: [`127.0.0.1:${port}`],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    requestTimeout: 5000,
    retry: { retries: 0 },
  }).admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0 && cluster.controller !== null && cluster.controller >= 0;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

export async function up(state: StackState): Promise<void> {
  let pid = server.runningPid();
  let port = await allocatePort(state, 'kafka');
  if (!pid) {
    await ensureJavaAndMaven(NAME, logFile);
    await ensureLibs();
    let controllerPort = await allocatePort(state, 'kafkaController');
    if (!(await portIsFree(port))) port = await allocatePort(state, 'kafka', true);
    if (!(await portIsFree(controllerPort)))
      controllerPort = await allocatePort(state, 'kafkaController', true);
    for (const key of ['kafkaSasl', 'kafkaSsl'] as const) {
      if (!(await portIsFree(await allocatePort(state, key)))) await allocatePort(state, key, true);
    }
    state.kafkaSaslPassword ??= randomBytes(18).toString('base64url');
    saveState(state);
    await brokerKeystore();
    writeConfig(port, controllerPort, state);
    await format(state);
    pid = spawnDetached({
      command: 'java',
      args: [...java(jvmOptions(dir)), 'kafka.Kafka', propsFile],
      cwd: dir,
      logFile,
      pidFile,
    });
  }
  const startedPid = pid;
  await waitReady(NAME, () => ready(port), {
    timeoutMs: READY_TIMEOUT_MS,
    logFile,
    alive: () => isOurProcess(startedPid, propsFile),
    intervalMs: 500,
  });
  try {
    await ensureScramUsers(state, port);
  } catch (err) {
    throw new StackError(NAME, `creating the SCRAM user failed: ${(err as Error).message}`, logFile);
  }
}

export async function down(): Promise<void> {
  await server.stop();
}

export function status(state: StackState): ServerStatus {
  return server.status(state.ports.kafka);
}
