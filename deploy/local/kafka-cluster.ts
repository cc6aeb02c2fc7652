// A three-broker Kafka cluster for the durability tests (test/cluster/): three KRaft nodes, each
// broker + controller (a quorum of three voters, so any one node may die), from the same Maven
// Central jars as the single broker. It runs beside the stack's single broker, which stays the
// quick path for everything else:
//
//   npm run stack -- up --brokers 3     the stack plus this cluster
//   npm run stack -- down               stops both
//
// Settings are those of a production cluster that takes durability seriously: replication
// factor 3, min.insync.replicas 2, no unclean leader election. Leaders move only when a test moves
// them (auto.leader.rebalance.enable=false), and a dead broker leaves the ISR within seconds
// (short broker session), so fault tests run in bounded time.
//
// Also a module: the tests kill, stop and start nodes and run Kafka's own admin tools through it.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { ensureJavaAndMaven, jvmOptions, log4jStdout, mavenCache } from './java.ts';
import { ensureLibs, libsDir } from './kafka.ts';
import {
  cacheDir,
  freePort,
  isOurProcess,
  portIsFree,
  readJson,
  readPid,
  run,
  ServerProcess,
  sleep,
  spawnDetached,
  stackDir,
  StackError,
  waitReady,
  writeJson,
  type ServerStatus,
} from './process.ts';
import { createHash } from 'node:crypto';

export const NODE_IDS = [1, 2, 3] as const;
export type NodeId = (typeof NODE_IDS)[number];

const NAME = 'kafka-cluster';
const dir = path.join(stackDir, 'kafka-cluster');
const stateFile = path.join(dir, 'state.json');
const toolsPom = path.join(import.meta.dirname, 'kafka', 'tools', 'pom.xml');
const toolsLibsDir = path.join(cacheDir, 'kafka-tools-libs');
const READY_TIMEOUT_MS = 120_000;

interface ClusterState {
  clusterId: string;
  brokerPorts: Record<NodeId, number>;
  controllerPorts: Record<NodeId, number>;
}

const nodeDir = (id: NodeId) => path.join(dir, `node-${id}`);
const propsFile = (id: NodeId) => path.join(nodeDir(id), 'server.properties');
const logFile = (id: NodeId) => path.join(nodeDir(id), 'kafka.log');
const log4jFile = (id: NodeId) => path.join(nodeDir(id), 'log4j2.properties');

const processes = new Map(
  NODE_IDS.map((id) => [
    id,
    new ServerProcess({
      name: `kafka-${id}`,
      pidFile: path.join(nodeDir(id), 'pid'),
      marker: propsFile(id),
      logFile: logFile(id),
      stopSignal: 'SIGTERM',
      stopTimeoutMs: 60_000,
    }),
  ]),
);
const proc = (id: NodeId): ServerProcess => processes.get(id)!;

function loadState(): ClusterState | undefined {
  return readJson<ClusterState>(stateFile);
}

/**
 * The kernel's range of ephemeral (client-side) ports. A broker port inside it can be taken while
 * the broker is down — by a client's own outgoing connection, even by a connection to that very
 * port (TCP self-connect, when clients retry a dead broker in a loop) — and the broker then
 * cannot start again. So the cluster listens below it.
 */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    return [Number(low), Number(high)];
  } catch {
    return [32768, 60999];
  }
}

/** A free port on 127.0.0.1 below the ephemeral range, not in `taken`. */
async function freeStablePort(taken: Set<number>): Promise<number> {
  const [low] = ephemeralRange();
  const top = Math.max(low - 1, 11_000);
  for (let i = 0; i < 1000; i++) {
    const port = 10_000 + Math.floor(Math.random() * (top - 10_000));
    if (!taken.has(port) && (await portIsFree(port))) return port;
  }
  return freePort();
}

function inEphemeralRange(s: ClusterState): boolean {
  const [low, high] = ephemeralRange();
  return [...Object.values(s.brokerPorts), ...Object.values(s.controllerPorts)].some(
    (p) => p >= low && p <= high,
  );
}

async function ensureState(): Promise<ClusterState> {
  const existing = loadState();
  // A cluster set up before the ports moved below the ephemeral range gets new ones when down.
  if (existing && !(inEphemeralRange(existing) && NODE_IDS.every((id) => !proc(id).runningPid())))
    return existing;
  const ports = new Set<number>();
  const next = async () => {
    const p = await freeStablePort(ports);
    ports.add(p);
    return p;
  };
  const state: ClusterState = {
    clusterId: existing?.clusterId ?? newClusterId(),
    brokerPorts: { 1: await next(), 2: await next(), 3: await next() },
    controllerPorts: { 1: await next(), 2: await next(), 3: await next() },
  };
  writeJson(stateFile, state);
  return state;
}

function newClusterId(): string {
  while (true) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`, or undefined when the cluster was never set up. */
export function clusterBrokers(): string | undefined {
  const s = loadState();
  return s ? NODE_IDS.map((id) => `127.0.0.1:${s.brokerPorts[id]}`).join(',') : undefined;
}

export function brokerPort(id: NodeId): number {
  const s = loadState();
  if (!s) throw new StackError(NAME, 'not set up: run npm run stack -- up --brokers 3');
  return s.brokerPorts[id];
}

function writeConfig(id: NodeId, s: ClusterState): void {
  fs.mkdirSync(nodeDir(id), { recursive: true });
  const voters = NODE_IDS.map((n) => `${n}@127.0.0.1:${s.controllerPorts[n]}`).join(',');
  const props = [
    '# Written by deploy/local/kafka-cluster.ts at each start.',
    'process.roles=broker,controller',
    `node.id=${id}`,
    `controller.quorum.voters=${voters}`,
    `listeners=PLAINTEXT://127.0.0.1:${s.brokerPorts[id]},CONTROLLER://127.0.0.1:${s.controllerPorts[id]}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${s.brokerPorts[id]}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    `log.dirs=${path.join(nodeDir(id), 'data')}`,
    'num.partitions=1',
    'default.replication.factor=3',
    'min.insync.replicas=2',
    'unclean.leader.election.enable=false',
    'auto.leader.rebalance.enable=false',
    'offsets.topic.replication.factor=3',
    'offsets.topic.num.partitions=3',
    'transaction.state.log.replication.factor=3',
    'transaction.state.log.min.isr=2',
    'transaction.state.log.num.partitions=3',
    'share.coordinator.state.topic.replication.factor=3',
    'share.coordinator.state.topic.min.isr=2',
    // A killed broker is fenced by the controller after the session timeout; leaders then move.
    'broker.heartbeat.interval.ms=500',
    'broker.session.timeout.ms=4000',
    'replica.lag.time.max.ms=8000',
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=false',
    'delete.topic.enable=true',
    'log.retention.hours=24',
    '',
  ].join('\n');
  fs.writeFileSync(propsFile(id), props);
  fs.writeFileSync(
    log4jFile(id),
    log4jStdout('deploy/local/kafka-cluster.ts', {
      'state.change.logger': 'WARN',
      'kafka.request.logger': 'WARN',
    }),
  );
}

const java = (id: NodeId, args: string[]) => [
  ...args,
  `-Dlog4j2.configurationFile=${log4jFile(id)}`,
  '-cp',
  path.join(libsDir, '*'),
];

async function format(id: NodeId, s: ClusterState): Promise<void> {
  const data = path.join(nodeDir(id), 'data');
  if (fs.existsSync(path.join(data, 'meta.properties'))) return;
  fs.rmSync(data, { recursive: true, force: true });
  await run(
    `kafka-${id}`,
    'java',
    [...java(id, ['-Xmx256m']), 'kafka.tools.StorageTool', 'format', '-t', s.clusterId, '-c', propsFile(id)],
    { logFile: logFile(id), cwd: nodeDir(id) },
  );
}

function admin(brokers: string[]): Admin {
  return new Kafka({
    clientId: 'pgcdc-stack',
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    requestTimeout: 5000,
    retry: { retries: 0 },
  }).admin();
}

/** The node answers metadata requests and the cluster it sees has a controller. */
async function nodeReady(id: NodeId): Promise<boolean> {
  const a = admin([`127.0.0.1:${brokerPort(id)}`]);
  try {
    await a.connect();
    const c = await a.describeCluster();
    return c.brokers.some((b) => b.nodeId === id) && c.controller !== null && c.controller >= 0;
  } finally {
    await a.disconnect().catch(() => {});
  }
}

/** Starts one node (if it is not running) and waits until it serves as a broker. */
export async function startNode(id: NodeId): Promise<void> {
  const s = await ensureState();
  let pid = proc(id).runningPid();
  if (!pid) {
    for (const port of [s.brokerPorts[id], s.controllerPorts[id]]) {
      // Right after a kill -9 the kernel may take a moment to release the node's sockets.
      const deadline = Date.now() + 15_000;
      while (!(await portIsFree(port))) {
        if (Date.now() > deadline) {
          throw new StackError(`kafka-${id}`, `port ${port} is taken by another process`, logFile(id));
        }
        await sleep(250);
      }
    }
    writeConfig(id, s);
    await format(id, s);
    pid = spawnDetached({
      command: 'java',
      args: [...java(id, jvmOptions(nodeDir(id), '384m')), 'kafka.Kafka', propsFile(id)],
      cwd: nodeDir(id),
      logFile: logFile(id),
      pidFile: path.join(nodeDir(id), 'pid'),
    });
  }
  const started = pid;
  await waitReady(`kafka-${id}`, () => nodeReady(id), {
    timeoutMs: READY_TIMEOUT_MS,
    logFile: logFile(id),
    alive: () => isOurProcess(started, propsFile(id)),
    intervalMs: 500,
  });
}

/** A controlled shutdown (SIGTERM: leadership moves away first), waiting until the process is gone. */
export async function stopNode(id: NodeId): Promise<void> {
  await proc(id).stop();
}

/** kill -9: no controlled shutdown, in-flight requests are cut. Waits until the process is gone. */
export async function killNode(id: NodeId): Promise<void> {
  const pid = proc(id).runningPid();
  if (!pid) return;
  process.kill(pid, 'SIGKILL');
  while (isOurProcess(pid, propsFile(id))) await sleep(50);
  fs.rmSync(path.join(nodeDir(id), 'pid'), { force: true });
}

export function nodeRunning(id: NodeId): boolean {
  return proc(id).runningPid() !== undefined;
}

/** Starts the three nodes (the quorum needs two of them to elect a controller, so all start together). */
export async function up(): Promise<string> {
  await ensureJavaAndMaven(NAME, logFile(1));
  await ensureLibs();
  await ensureState();
  await Promise.all(NODE_IDS.map((id) => startNode(id)));
  return clusterBrokers()!;
}

export async function down(): Promise<void> {
  await Promise.all(NODE_IDS.map((id) => proc(id).stop()));
}

export function status(): ServerStatus[] {
  const s = loadState();
  if (!s) return [];
  return NODE_IDS.map((id) => proc(id).status(s.brokerPorts[id]));
}

/** Kafka's own command-line tools (org.apache.kafka.tools.*), resolved from Maven Central once. */
export async function kafkaTool(mainClass: string, args: string[]): Promise<string> {
  const stamp = createHash('sha256').update(fs.readFileSync(toolsPom)).digest('hex');
  await mavenCache(NAME, toolsLibsDir, stamp, logFile(1), (out) => [
    '-f',
    toolsPom,
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    `-DoutputDirectory=${out}`,
  ]);
  return run(NAME, 'java', ['-Xmx256m', '-cp', path.join(toolsLibsDir, '*'), mainClass, ...args], {
    logFile: path.join(dir, 'tools.log'),
    cwd: dir,
  });
}

/** The pid of a running node (for tests that need to signal it themselves). */
export function nodePid(id: NodeId): number | undefined {
  const pid = readPid(path.join(nodeDir(id), 'pid'));
  return isOurProcess(pid, propsFile(id)) ? pid : undefined;
}
