// The install-time patches of scripts/patch-dependencies.mjs: applied, and each one shown to fix
// the bug it was written for — against kafkajs's own code, rebuilt unpatched from the patch text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
// @ts-expect-error plain JavaScript module without types (it runs before anything is built)
import { patches } from '../../scripts/patch-dependencies.mjs';

const require = createRequire(import.meta.url);
const groupingFile = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
const sendMessagesFile = require.resolve('kafkajs/src/producer/sendMessages.js');
const requestQueueFile = require.resolve('kafkajs/src/network/requestQueue/index.js');

interface Patch {
  file: string;
  from: string;
  to: string;
}

const kafkajsRoot = path.dirname(require.resolve('kafkajs/package.json'));

/**
 * A copy of kafkajs with every patch of its files reversed: kafkajs as shipped, whole, so a
 * patched module and the shipped modules it requires are compared together.
 */
function shippedKafkajs(): NodeJS.Require {
  const dir = mkdtempSync(path.join(tmpdir(), 'kafkajs-shipped-'));
  cpSync(kafkajsRoot, path.join(dir, 'kafkajs'), { recursive: true });
  for (const p of patches as Patch[]) {
    if (!p.file.startsWith('node_modules/kafkajs/')) continue;
    const file = path.join(dir, p.file.replace('node_modules/', ''));
    const text = readFileSync(file, 'utf8');
    assert.ok(text.includes(p.to), `${p.file} is patched`);
    writeFileSync(
      file,
      text.replace(p.to, () => p.from),
    );
  }
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return createRequire(path.join(dir, 'kafkajs', 'package.json'));
}

const shipped = shippedKafkajs();
const patched = createRequire(path.join(kafkajsRoot, 'package.json'));

/** Loads `file` (a path inside kafkajs) as kafkajs shipped it, from the copy above. */
function loadUnpatched<T>(file: string): T {
  return shipped(`./${path.relative(kafkajsRoot, file)}`) as T;
}

test('the kafkajs grouping patch is applied (scripts/patch-dependencies.mjs, run by npm ci)', () => {
  const text = readFileSync(groupingFile, 'utf8');
  assert.match(text, /\.push\(message\)/);
  assert.doesNotMatch(text, /\[\.\.\.current, message\]/);
});

test('the patched grouping keeps kafkajs semantics: per partition, in order', () => {
  const group = require(groupingFile) as (args: {
    topic: string;
    partitionMetadata: unknown[];
    messages: Array<{ key: string }>;
    partitioner: (a: { message: { key: string } }) => number;
  }) => Record<number, Array<{ key: string }>>;
  const messages = Array.from({ length: 10 }, (_, i) => ({ key: String(i) }));
  const grouped = group({
    topic: 't',
    partitionMetadata: [{}, {}, {}],
    messages,
    partitioner: ({ message }) => Number(message.key) % 3,
  });
  assert.deepEqual(Object.fromEntries(Object.entries(grouped).map(([p, ms]) => [p, ms.map((m) => m.key)])), {
    0: ['0', '3', '6', '9'],
    1: ['1', '4', '7'],
    2: ['2', '5', '8'],
  });
  assert.deepEqual(group({ topic: 't', partitionMetadata: [], messages, partitioner: () => 0 }), {});
});

// --- sendMessages: a retry must resend every partition that is not acknowledged -------------

type SendMessages = (args: {
  acks: number;
  timeout?: number;
  compression?: number;
  topicMessages: Array<{ topic: string; messages: Array<{ key: string; value: string }> }>;
}) => Promise<Array<{ topicName: string; partition: number }>>;
type CreateSendMessages = (deps: Record<string, unknown>) => SendMessages;

interface ProduceRequest {
  topicData: Array<{ topic: string; partitions: Array<{ partition: number; messages: unknown[] }> }>;
}

/**
 * Two brokers, shaped like pgcdc's batches: the table topic `db.public.t` led by broker 2, the
 * offsets topic led by broker 1. `faults` says how broker 2 fails its first produce requests;
 * on its first failure, leadership of the table topic moves to broker 1 (the broker died).
 */
function twoBrokerCluster(failures: Array<(req: ProduceRequest) => Error | null>) {
  const { KafkaJSConnectionError } = require('kafkajs/src/errors') as {
    KafkaJSConnectionError: new (m: string) => Error;
  };
  const leaders = new Map([
    ['db.public.t', 2],
    ['pgcdc-offsets', 1],
  ]);
  const appended: string[] = [];
  const produce = (nodeId: number) => async (req: ProduceRequest) => {
    await new Promise((r) => setImmediate(r));
    if (nodeId === 2) {
      const fault = failures.shift()?.(req);
      if (fault) {
        leaders.set('db.public.t', 1);
        throw fault;
      }
    }
    for (const { topic, partitions } of req.topicData) {
      for (const p of partitions) {
        if (leaders.get(topic) !== nodeId) throw new Error(`broker ${nodeId} is not the leader of ${topic}`);
        appended.push(`${topic}[${p.partition}] x${p.messages.length}`);
      }
    }
    return {
      topics: req.topicData.map(({ topic, partitions }) => ({
        topicName: topic,
        partitions: partitions.map((p) => ({ partition: p.partition, errorCode: 0, baseOffset: '0' })),
      })),
    };
  };
  const brokers = new Map([1, 2].map((nodeId) => [nodeId, { nodeId, produce: produce(nodeId) }]));
  const cluster = {
    targetTopics: new Set<string>(),
    refreshMetadataIfNecessary: async () => undefined,
    refreshMetadata: async () => undefined,
    addMultipleTargetTopics: async () => undefined,
    isConnected: () => true,
    connect: async () => undefined,
    removeBroker: () => undefined,
    findTopicPartitionMetadata: (topic: string) => [{ partitionId: 0, leader: leaders.get(topic) }],
    findLeaderForPartitions: (topic: string, partitions: string[]) => ({
      [leaders.get(topic)!]: partitions.map(Number),
    }),
    findBroker: async ({ nodeId }: { nodeId: string }) => brokers.get(Number(nodeId)),
  };
  const eosManager = {
    isTransactional: () => false,
    acquireBrokerLock: async () => undefined,
    releaseBrokerLock: async () => undefined,
    getSequence: () => 0,
    updateSequence: () => undefined,
    getProducerId: () => -1,
    getProducerEpoch: () => 0,
  };
  const createRetry = require('kafkajs/src/retry') as (c: Record<string, number>) => unknown;
  const deps = {
    logger: { debug: () => undefined, error: () => undefined, warn: () => undefined, info: () => undefined },
    cluster,
    partitioner: () => 0,
    eosManager,
    retrier: createRetry({ retries: 3, initialRetryTime: 5, maxRetryTime: 20 }),
  };
  const connectionLost = () => new KafkaJSConnectionError('Connection error: read ECONNRESET');
  return { deps, appended, connectionLost };
}

const pgcdcBatch = {
  acks: -1,
  topicMessages: [
    {
      topic: 'db.public.t',
      messages: [
        { key: '1', value: 'change 1' },
        { key: '1', value: 'change 2' },
      ],
    },
    { topic: 'pgcdc-offsets', messages: [{ key: 'connector', value: '{"lsn":"0/2"}' }] },
  ],
};

test('kafkajs 2.2.4 as shipped: a retry skips the partition whose new leader already answered (the loss the patch fixes)', async () => {
  const createSendMessages = loadUnpatched<CreateSendMessages>(sendMessagesFile);
  const { deps, appended, connectionLost } = twoBrokerCluster([() => connectionLost()]);
  await createSendMessages(deps)(pgcdcBatch); // resolves: reported as acknowledged
  assert.deepEqual(
    appended,
    ['pgcdc-offsets[0] x1'],
    'only the offset was written, not the changes it covers',
  );
});

test('patched: after a leader move, the retry sends every unacknowledged partition to its new leader', async () => {
  const createSendMessages = require(sendMessagesFile) as CreateSendMessages;
  const { deps, appended, connectionLost } = twoBrokerCluster([() => connectionLost()]);
  const acks = await createSendMessages(deps)(pgcdcBatch);
  assert.deepEqual(appended.sort(), ['db.public.t[0] x2', 'pgcdc-offsets[0] x1']);
  assert.deepEqual(acks.map((a) => `${a.topicName}[${a.partition}]`).sort(), [
    'db.public.t[0]',
    'pgcdc-offsets[0]',
  ]);
});

test('patched: an acknowledged partition is not sent again when another one is retried', async () => {
  const createSendMessages = require(sendMessagesFile) as CreateSendMessages;
  // Broker 2 fails twice; the offsets partition (broker 1) was acknowledged by the first attempt.
  const { deps, appended, connectionLost } = twoBrokerCluster([
    () => connectionLost(),
    () => connectionLost(),
  ]);
  await createSendMessages(deps)(pgcdcBatch);
  assert.equal(appended.filter((a) => a.startsWith('pgcdc-offsets')).length, 1);
  assert.equal(appended.filter((a) => a.startsWith('db.public.t')).length, 1);
});

test('patched: a send that keeps failing rejects instead of resolving', async () => {
  const createSendMessages = require(sendMessagesFile) as CreateSendMessages;
  const { deps, connectionLost } = twoBrokerCluster([]);
  // Broker 2 never recovers and leadership never moves: every attempt fails.
  (deps.cluster as { findBroker: unknown }).findBroker = async ({ nodeId }: { nodeId: string }) => {
    if (Number(nodeId) === 2) throw connectionLost();
    return {
      nodeId: 1,
      produce: async (req: ProduceRequest) => ({
        topics: req.topicData.map((t) => ({
          topicName: t.topic,
          partitions: t.partitions.map((p) => ({ partition: p.partition, errorCode: 0 })),
        })),
      }),
    };
  };
  await assert.rejects(createSendMessages(deps)(pgcdcBatch));
});

type RequestQueueClass = new (a: Record<string, unknown>) => {
  scheduleCheckPendingRequests(): void;
  destroy(): void;
};

/** The process warnings one request queue's first scheduling prints. */
async function schedulingWarnings(RequestQueue: RequestQueueClass): Promise<string[]> {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  try {
    const queue = new RequestQueue({
      instrumentationEmitter: null,
      maxInFlightRequests: 1,
      requestTimeout: 1000,
      enforceRequestTimeout: true,
      clientId: 'test',
      broker: 'b',
      logger: {
        debug: () => undefined,
        error: () => undefined,
        warn: () => undefined,
        info: () => undefined,
      },
    });
    queue.scheduleCheckPendingRequests();
    await new Promise((r) => setTimeout(r, 20));
    queue.destroy();
  } finally {
    process.off('warning', onWarning);
  }
  return warnings;
}

test('the request queue schedules its first check without a negative timeout (no TimeoutNegativeWarning)', async () => {
  const asShipped = await schedulingWarnings(loadUnpatched<RequestQueueClass>(requestQueueFile));
  assert.ok(asShipped.includes('TimeoutNegativeWarning'), 'kafkajs as shipped warns');
  const patched = await schedulingWarnings(require(requestQueueFile) as RequestQueueClass);
  assert.deepEqual(patched, []);
});

// --- brokerPool: the metadata check before every send, a Set lookup instead of a scan ----------

type BrokerPoolClass = {
  prototype: { refreshMetadataIfNecessary(this: unknown, topics: string[]): Promise<unknown> };
};
const brokerPoolFile = require.resolve('kafkajs/src/cluster/brokerPool.js');

/** Which checks ask for a refresh, for the same sequence of metadata and target topics. */
async function refreshDecisions(pool: BrokerPoolClass): Promise<boolean[]> {
  const decisions: boolean[] = [];
  const metadataOf = (...topics: string[]) => ({ topicMetadata: topics.map((topic) => ({ topic })) });
  const self: Record<string, unknown> = {
    metadata: metadataOf('a', 'b'),
    metadataExpireAt: Date.now() + 60_000,
    refreshMetadata: async () => {
      decisions[decisions.length - 1] = true;
    },
  };
  const check = async (topics: string[]) => {
    decisions.push(false);
    await pool.prototype.refreshMetadataIfNecessary.call(self, topics);
  };
  await check(['a']); // known
  await check(['a', 'b']); // known
  await check(['a', 'c']); // c unknown
  self.metadata = metadataOf('a', 'b', 'c'); // a refresh replaced the metadata
  await check(['a', 'c']); // now known
  self.metadata = metadataOf('a'); // replaced again, without b
  await check(['b']); // unknown again
  self.metadataExpireAt = Date.now() - 1;
  await check(['a']); // expired
  return decisions;
}

test('the metadata check answers as kafkajs does, with a Set rebuilt when the metadata is replaced', async () => {
  const asShipped = await refreshDecisions(loadUnpatched<BrokerPoolClass>(brokerPoolFile));
  assert.deepEqual(asShipped, [false, false, true, false, true, true]);
  assert.deepEqual(await refreshDecisions(require(brokerPoolFile) as BrokerPoolClass), asShipped);
  const text = readFileSync(brokerPoolFile, 'utf8');
  assert.doesNotMatch(text, /topicMetadata\.some\(/, 'no scan of the metadata per topic');
});

// --- the per-record encoding patches: same bytes as kafkajs as shipped ------------------------

/** Deterministic bytes (a seeded xorshift), so a failure can be replayed. */
function random(seed: number): { int(n: number): number; bytes(n: number): Buffer } {
  let x = seed;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  return {
    int: (n) => next() % n,
    bytes: (n) => Buffer.from(Array.from({ length: n }, () => next() & 0xff)),
  };
}

test('the murmur2 patch: the Java client hash of every key, as kafkajs computed it', () => {
  type Murmur2 = (key: Buffer | string) => number;
  const mine = patched('./src/producer/partitioners/default/murmur2.js') as Murmur2;
  const theirs = shipped('./src/producer/partitioners/default/murmur2.js') as Murmur2;
  assert.notEqual(mine.toString(), theirs.toString(), 'the shipped copy is unpatched');
  // Kafka's own vectors (clients UtilsTest.testMurmur2).
  assert.equal(mine(Buffer.from('21')), -973932308);
  assert.equal(mine(Buffer.from('foobar')), -790332482);
  assert.equal(mine(Buffer.from('a-little-bit-long-string')), -985981536);
  assert.equal(mine(Buffer.from('abc')), 479470107);
  const r = random(16);
  for (let i = 0; i < 5_000; i++) {
    const key = r.bytes(r.int(70));
    assert.equal(mine(key), theirs(key), `key ${key.toString('hex')}`);
  }
  assert.equal(mine('a string key'), theirs('a string key'));
});

test('the crc32C patch (slice-by-8): the same checksum at every length and alignment', () => {
  type Crc = (b: Buffer) => number;
  const mine = patched('./src/protocol/recordBatch/crc32C/crc32C.js') as Crc;
  const theirs = shipped('./src/protocol/recordBatch/crc32C/crc32C.js') as Crc;
  assert.equal(mine(Buffer.from('123456789')), 0xe3069283); // the CRC-32C check value
  const r = random(32);
  const big = r.bytes(200_000);
  for (let n = 0; n < 40; n++)
    assert.equal(mine(big.subarray(3, 3 + n)), theirs(big.subarray(3, 3 + n)), `length ${n}`);
  for (let i = 0; i < 200; i++) {
    const from = r.int(1000);
    const b = big.subarray(from, from + r.int(5000));
    assert.equal(mine(b), theirs(b));
  }
  assert.equal(mine(big), theirs(big));
});

test('the encoder patches: varints, varlongs and whole produce requests byte for byte', async () => {
  type Enc = {
    writeVarLong(v: unknown): Enc;
    writeVarInt(v: number): Enc;
    buffer: Buffer;
  } & Record<string, unknown>;
  type EncClass = (new (size?: number) => Enc) & { sizeOfVarLong(v: unknown): number };
  const Mine = patched('./src/protocol/encoder.js') as EncClass;
  const Theirs = shipped('./src/protocol/encoder.js') as EncClass;
  const Long = patched('./src/utils/long.js') as { fromValue(v: unknown): unknown };
  const edges = [
    0,
    1,
    -1,
    63,
    -64,
    64,
    127,
    128,
    2 ** 31 - 1,
    -(2 ** 31),
    2 ** 31,
    -(2 ** 31) - 1,
    2 ** 40,
    -(2 ** 45),
    2 ** 53 - 1,
  ];
  for (const v of [...edges, ...edges.filter(Number.isInteger).map((n) => Long.fromValue(n)), '12345']) {
    assert.deepEqual(
      new Mine().writeVarLong(v).buffer,
      new Theirs().writeVarLong(v).buffer,
      `varlong ${String(v)}`,
    );
    assert.equal(Mine.sizeOfVarLong(v), Theirs.sizeOfVarLong(v), `size of varlong ${String(v)}`);
  }
  for (const v of [0, 1, -1, 300, -300, 2 ** 31 - 1, -(2 ** 31), 2 ** 20])
    assert.deepEqual(new Mine().writeVarInt(v).buffer, new Theirs().writeVarInt(v).buffer, `varint ${v}`);

  type ProduceV3 = (args: Record<string, unknown>) => { encode(): Promise<{ buffer: Buffer }> };
  const produceMine = patched('./src/protocol/requests/produce/v3/request.js') as ProduceV3;
  const produceTheirs = shipped('./src/protocol/requests/produce/v3/request.js') as ProduceV3;
  const r = random(48);
  const now = Date.now();
  const messages = Array.from({ length: 500 }, (_, i) => ({
    key: i % 50 === 0 ? null : r.bytes(r.int(40)),
    value: i % 70 === 0 ? null : r.bytes(r.int(i % 100 === 1 ? 3000 : 600)),
    timestamp: now + r.int(2000),
    ...(i % 30 === 0 && { headers: { '__debezium.newkey': `{"id":${i}}` } }),
  }));
  const args = {
    acks: -1,
    timeout: 30_000,
    producerId: Long.fromValue(7),
    producerEpoch: 1,
    topicData: [
      {
        topic: 'db.public.t',
        partitions: [{ partition: 0, firstSequence: 5, messages: messages.slice(0, 300) }],
      },
      {
        topic: 'pgcdc-offsets',
        partitions: [{ partition: 2, firstSequence: 0, messages: messages.slice(300) }],
      },
    ],
  };
  const mine = (await produceMine(args).encode()).buffer;
  const theirs = (await produceTheirs(args).encode()).buffer;
  assert.ok(mine.length > 100_000);
  assert.deepEqual(mine, theirs);
});
