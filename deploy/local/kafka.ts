// Apache Kafka 4.x of the local stack: one JVM in KRaft combined mode (broker + controller),
// jars from Maven Central (deploy/local/kafka/pom.xml) cached under .cache/kafka-libs.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import {
  cacheDir,
  isOurProcess,
  portIsFree,
  readPid,
  run,
  spawnDetached,
  stackDir,
  stopProcess,
  waitReady,
  type ServerStatus,
} from './process.ts';
import { ensureJavaAndMaven, jvmOptions, mavenCache } from './java.ts';
import { allocatePort, saveState, type StackState } from './state.ts';

const NAME = 'kafka';
const pom = path.join(import.meta.dirname, 'kafka', 'pom.xml');
const libsDir = path.join(cacheDir, 'kafka-libs');
const dir = path.join(stackDir, 'kafka');
const dataDir = path.join(dir, 'data');
const propsFile = path.join(dir, 'server.properties');
const log4jFile = path.join(dir, 'log4j2.properties');
const logFile = path.join(dir, 'kafka.log');
const pidFile = path.join(dir, 'pid');
const READY_TIMEOUT_MS = 120_000;

async function ensureLibs(): Promise<void> {
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

function writeConfig(port: number, controllerPort: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const props = [
    '# Written by deploy/local/kafka.ts at each start.',
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
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
  const log4j = [
    '# Written by deploy/local/kafka.ts. Everything goes to stdout, which is kafka.log.',
    'status = warn',
    'appender.out.type = Console',
    'appender.out.name = STDOUT',
    'appender.out.layout.type = PatternLayout',
    'appender.out.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = INFO',
    'rootLogger.appenderRef.out.ref = STDOUT',
    'logger.state.name = state.change.logger',
    'logger.state.level = WARN',
    'logger.request.name = kafka.request.logger',
    'logger.request.level = WARN',
    '',
  ].join('\n');
  fs.writeFileSync(log4jFile, log4j);
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
    [...java(['-Xmx256m']), 'kafka.tools.StorageTool', 'format', '-t', state.kafkaClusterId, '-c', propsFile],
    { logFile, cwd: dir },
  );
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

function runningPid(): number | undefined {
  const pid = readPid(pidFile);
  return isOurProcess(pid, propsFile) ? pid : undefined;
}

export async function up(state: StackState): Promise<void> {
  let pid = runningPid();
  let port = await allocatePort(state, 'kafka');
  if (!pid) {
    await ensureJavaAndMaven(NAME, logFile);
    await ensureLibs();
    let controllerPort = await allocatePort(state, 'kafkaController');
    if (!(await portIsFree(port))) port = await allocatePort(state, 'kafka', true);
    if (!(await portIsFree(controllerPort)))
      controllerPort = await allocatePort(state, 'kafkaController', true);
    writeConfig(port, controllerPort);
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
}

export async function down(): Promise<void> {
  const pid = runningPid();
  if (pid) await stopProcess(pid, propsFile, 'SIGTERM', 60_000);
  fs.rmSync(pidFile, { force: true });
}

export function status(state: StackState): ServerStatus {
  const pid = runningPid();
  return { server: NAME, pid, port: state.ports.kafka, up: pid !== undefined, log: logFile };
}
