// The three-broker cluster as the durability tests see it (deploy/local/kafka-cluster.ts runs it):
// topics with a chosen replica assignment, who leads what, ISR waits, and the faults themselves.
import kafkajs, { Kafka, logLevel, type Admin } from 'kafkajs';

const { ConfigResourceTypes } = kafkajs;
import {
  NODE_IDS,
  clusterBrokers,
  kafkaTool,
  killNode,
  nodeRunning,
  startNode,
  stopNode,
  type NodeId,
} from '../../deploy/local/kafka-cluster.ts';

export { killNode, startNode, stopNode, NODE_IDS, type NodeId };

export function brokers(): string {
  const b = clusterBrokers();
  if (!b) throw new Error('the three-broker cluster is not set up: run ./dev stack up --brokers 3');
  return b;
}

export async function withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = new Kafka({
    clientId: 'pgcdc-cluster-test',
    brokers: brokers().split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    requestTimeout: 10_000,
    retry: { retries: 5, initialRetryTime: 200 },
  }).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Creates a topic whose partition p has the replicas assignment[p], first = preferred leader. */
export async function createTopic(
  topic: string,
  assignment: NodeId[][],
  configEntries: Array<{ name: string; value: string }> = [],
): Promise<void> {
  await withAdmin((admin) =>
    admin.createTopics({
      waitForLeaders: false,
      topics: [
        {
          topic,
          replicaAssignment: assignment.map((replicas, partition) => ({ partition, replicas })),
          configEntries,
        },
      ],
    }),
  );
  // kafkajs's own waitForLeaders gives up on the brokers that learn of the topic last.
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const ps = await partitions(topic);
      if (ps.length === assignment.length && ps.every((p) => p.leader === p.replicas[0])) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error(`topic ${topic} has no leaders after 30 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface PartitionState {
  partition: number;
  leader: number;
  replicas: number[];
  isr: number[];
}

export async function partitions(topic: string): Promise<PartitionState[]> {
  return withAdmin(async (admin) => {
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    return md.topics[0]!.partitions.map((p) => ({
      partition: p.partitionId,
      leader: p.leader,
      replicas: p.replicas,
      isr: p.isr,
    }));
  });
}

export async function leaderOf(topic: string, partition = 0): Promise<number> {
  return (await partitions(topic)).find((p) => p.partition === partition)!.leader;
}

/** Sum of the high watermarks of a topic's partitions: how many records Kafka holds for it. */
export async function highWatermark(topic: string): Promise<bigint> {
  return withAdmin(async (admin) => {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, o) => sum + BigInt(o.high), 0n);
  });
}

/** Waits until every node runs and every partition of `topics` has all its replicas in sync. */
export async function waitHealthy(topics: string[], timeoutMs = 120_000): Promise<void> {
  for (const id of NODE_IDS) if (!nodeRunning(id)) await startNode(id);
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const all = (await Promise.all(topics.map(async (t) => ({ t, ps: await partitions(t) })))).flatMap(
        ({ t, ps }) => ps.map((p) => ({ t, ...p })),
      );
      const lagging = all.filter((p) => p.leader < 0 || p.isr.length < p.replicas.length);
      if (lagging.length === 0) return;
      last = lagging.map((p) => `${p.t}[${p.partition}] isr ${p.isr.join(',')}`).join('; ');
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`cluster not healthy after ${timeoutMs} ms: ${last}`);
}

export async function setTopicConfig(topic: string, name: string, value: string): Promise<void> {
  await withAdmin((admin) =>
    admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name, value }] }],
    }),
  );
}

export async function topicConfig(topic: string, name: string): Promise<string | undefined> {
  return withAdmin(async (admin) => {
    const d = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: [name] }],
    });
    return d.resources[0]?.configEntries.find((e) => e.configName === name)?.configValue;
  });
}

/**
 * Kafka's kafka-leader-election tool: the preferred replica of topic[partition] becomes leader.
 * The controller refuses the election while that replica is not back in the ISR (just after a
 * reassignment that reordered the replicas), and a broker's metadata can lag the controller's by a
 * moment, so it is retried until a broker reports the preferred replica leading, for up to 60 s.
 */
export async function preferredLeaderElection(topic: string, partition: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  let last = '';
  while (Date.now() < deadline) {
    const state = (await partitions(topic)).find((p) => p.partition === partition)!;
    if (state.leader === state.replicas[0]) return;
    last = `leader ${state.leader}, replicas ${state.replicas.join(',')}, isr ${state.isr.join(',')}`;
    if (state.isr.includes(state.replicas[0]!)) {
      try {
        await kafkaTool('org.apache.kafka.tools.LeaderElectionCommand', [
          '--bootstrap-server',
          brokers(),
          '--election-type',
          'preferred',
          '--topic',
          topic,
          '--partition',
          String(partition),
        ]);
      } catch (err) {
        last += `; the tool: ${String(err).split('\n')[0]}`;
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`preferred-leader election of ${topic}[${partition}] did not happen in 60 s: ${last}`);
}

/** Kafka's kafka-reassign-partitions tool: moves topic[partition] to `replicas`, waits until done. */
export async function reassign(topic: string, partition: number, replicas: NodeId[]): Promise<void> {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const file = path.join(os.tmpdir(), `pgcdc-reassign-${process.pid}-${Date.now()}.json`);
  fs.writeFileSync(file, JSON.stringify({ version: 1, partitions: [{ topic, partition, replicas }] }));
  try {
    await kafkaTool('org.apache.kafka.tools.reassign.ReassignPartitionsCommand', [
      '--bootstrap-server',
      brokers(),
      '--reassignment-json-file',
      file,
      '--execute',
    ]);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const out = await kafkaTool('org.apache.kafka.tools.reassign.ReassignPartitionsCommand', [
        '--bootstrap-server',
        brokers(),
        '--reassignment-json-file',
        file,
        '--verify',
      ]);
      if (/is completed/.test(out) && !/in progress/.test(out)) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`reassignment of ${topic}[${partition}] did not complete`);
  } finally {
    fs.rmSync(file, { force: true });
  }
}
