// ExactlyOnceSink against the stack's broker: records and the offset record committed together
// and invisible to a read_committed reader until then; markers fire only after the commit; a
// second producer with the same transactional.id fences the first (its commit fails with one
// line, nothing of it becomes visible); an incomplete tail is aborted by flush().
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { ExactlyOnceSink, ProducerFenced, transactionalProducer } from '../../src/kafka/transactional.ts';
import { CommittedReader } from '../support/committed-reader.ts';
import { stackSettings, uniqueName } from '../support/pipeline.ts';

const kafka = new Kafka({
  brokers: stackSettings().brokers.split(','),
  clientId: 'eos-sink-test',
  logLevel: logLevel.NOTHING,
});
const reader = new CommittedReader();
const producers: Producer[] = [];

async function producer(id: string): Promise<Producer> {
  const p = transactionalProducer(kafka, id);
  await p.connect();
  producers.push(p);
  return p;
}

function sink(p: Producer, id: string, errors: Error[], offsetTopic: string, lingerMs = 60_000) {
  const s = new ExactlyOnceSink(p, {
    id,
    maxInFlightBytes: 1 << 20,
    maxTransactionBytes: 1 << 30,
    maxTransactionRecords: 1_000_000,
    lingerMs,
    onError: (e) => errors.push(e),
  });
  let n = 0;
  s.onCommit(() => ({
    record: { topic: offsetTopic, key: Buffer.from('k'), value: Buffer.from(String(++n)) },
    committed: () => undefined,
  }));
  return s;
}

const rec = (topic: string, i: number) => ({ topic, key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) });

describe('exactly-once sink', () => {
  const admin = kafka.admin();
  before(() => admin.connect());
  after(async () => {
    for (const p of producers) await p.disconnect().catch(() => undefined);
    await admin.disconnect();
  });

  async function topics(...names: string[]) {
    await admin.createTopics({
      topics: names.map((topic) => ({ topic, numPartitions: 2 })),
      waitForLeaders: true,
    });
  }

  test('records and the offset are invisible until the commit, then both are there; markers fire with the commit', async () => {
    const name = uniqueName('eos_sink');
    const [data, offsets] = [`${name}.data`, `${name}.offsets`];
    await topics(data, offsets);
    const errors: Error[] = [];
    const s = sink(await producer(name), name, errors, offsets);
    await s.fence();
    for (let i = 0; i < 10; i++) await s.push(rec(data, i));
    let fired = 0;
    s.mark(() => fired++);
    while (s.inFlightBytes > 0) await new Promise((r) => setTimeout(r, 20));
    // Sent and acknowledged, not committed: a read_committed reader sees none of it.
    assert.deepEqual(await reader.readRaw(data, 3_000), []);
    assert.deepEqual(await reader.readRaw(offsets, 3_000), []);
    assert.equal(fired, 0, 'no marker before the commit');
    await s.requestCommit();
    assert.equal(fired, 1, 'the marker fired with the commit');
    assert.equal((await reader.readRaw(data)).length, 10);
    assert.equal((await reader.readRaw(offsets)).length, 1, 'the offset record is in the same transaction');
    assert.deepEqual(errors, []);
    s.close();
  });

  test('a second producer with the same transactional.id fences the first: its transaction fails, nothing of it is visible', async () => {
    const name = uniqueName('eos_fence');
    const [data, offsets] = [`${name}.data`, `${name}.offsets`];
    await topics(data, offsets);
    const errors: Error[] = [];
    const older = sink(await producer(name), name, errors, offsets);
    await older.fence();
    for (let i = 0; i < 5; i++) await older.push(rec(data, i));
    let committed = false;
    older.mark(() => undefined);
    older.onCommit(() => ({
      record: { topic: offsets, key: Buffer.from('k'), value: Buffer.from('older') },
      committed: () => (committed = true),
    }));
    while (older.inFlightBytes > 0) await new Promise((r) => setTimeout(r, 20));

    const newer = sink(await producer(name), name, [], offsets);
    await newer.fence();
    await older.requestCommit().catch(() => undefined);
    assert.ok(older.failure instanceof ProducerFenced, `fenced, got ${String(older.failure)}`);
    assert.match(older.failure.message, /fenced this worker's transactional producer \(transactional\.id /);
    assert.doesNotMatch(older.failure.message, /\n/, 'one line');
    assert.equal(errors.length, 1);
    assert.equal(committed, false, 'the fenced transaction never counts as committed');
    await newer.push(rec(data, 99));
    newer.mark(() => undefined);
    await newer.requestCommit();
    const seen = await reader.readRaw(data);
    assert.deepEqual(
      seen.map((r) => r.key?.toString()),
      ['k99'],
      'only the newer producer’s record',
    );
    older.close();
    newer.close();
  });

  test('flush() aborts records pushed after the last boundary (no position covers them)', async () => {
    const name = uniqueName('eos_tail');
    const [data, offsets] = [`${name}.data`, `${name}.offsets`];
    await topics(data, offsets);
    const s = sink(await producer(name), name, [], offsets);
    await s.fence();
    await s.push(rec(data, 1));
    s.mark(() => undefined);
    await s.requestCommit();
    await s.push(rec(data, 2));
    await s.flush();
    assert.equal(s.abortedTransactions, 1);
    assert.deepEqual(
      (await reader.readRaw(data)).map((r) => r.key?.toString()),
      ['k1'],
    );
    s.close();
  });
});
