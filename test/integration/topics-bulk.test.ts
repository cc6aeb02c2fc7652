// Many tables: topics are created in bulk on the real broker, with the cluster's topic list read
// once, and the lazy path (a table that appears later, a topic someone else created meanwhile,
// several tables in one turn) keeps working. The admin is the real kafkajs admin; the test only
// counts the requests it is asked to make.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs, { type Admin } from 'kafkajs';
import { Topics } from '../../src/kafka/topics.ts';
import { kafka, uniqueName } from '../support/stack.ts';

function counted(admin: Admin): { admin: Admin; calls: Record<string, number> } {
  const calls: Record<string, number> = { listTopics: 0, createTopics: 0 };
  const wrapped = new Proxy(admin, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop === 'string' && prop in calls && typeof v === 'function') {
        return (...args: unknown[]) => {
          calls[prop]!++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return v;
    },
  });
  return { admin: wrapped, calls };
}

/** Another client's topic, once the broker knows it. */
async function created(admin: Admin, topic: string): Promise<void> {
  await admin.createTopics({ waitForLeaders: false, topics: [{ topic, numPartitions: 1 }] });
  for (let i = 0; ; i++) {
    const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => null);
    if (meta?.topics[0]?.partitions.every((p) => p.leader >= 0)) return;
    if (i > 100) throw new Error(`${topic}: no leader`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('topics: bulk creation in one request, one topic listing, and the lazy path after it', async () => {
  const k = kafka();
  const real = k.admin();
  const other = k.admin();
  await real.connect();
  await other.connect();
  const prefix = uniqueName('tbulk');
  const names = Array.from({ length: 40 }, (_, i) => `${prefix}.s.t${i}`);
  const later = `${prefix}.s.later`;
  const raced = `${prefix}.s.raced`;
  const sameTurn = Array.from({ length: 5 }, (_, i) => `${prefix}.s.turn${i}`);
  try {
    // One of them exists already (a restarted worker).
    await created(other, names[7]!);
    const { admin, calls } = counted(real);
    const topics = new Topics(admin, { partitions: 2, replicationFactor: -1 });

    await topics.ensureAll(names, [{ name: 'max.message.bytes', value: '2000000' }]);
    assert.deepEqual(calls, { listTopics: 1, createTopics: 1 });
    const meta = await other.fetchTopicMetadata({ topics: names });
    for (const t of meta.topics) {
      // Created with the settings (the pre-existing one keeps its own) and with leaders.
      assert.equal(t.partitions.length, t.name === names[7] ? 1 : 2, t.name);
      for (const p of t.partitions) assert.ok(p.leader >= 0, `${t.name}[${p.partitionId}] has a leader`);
    }
    const configs = await other.describeConfigs({
      includeSynonyms: false,
      resources: [
        { type: kafkajs.ConfigResourceTypes.TOPIC, name: names[0]!, configNames: ['max.message.bytes'] },
      ],
    });
    assert.equal(configs.resources[0]?.configEntries[0]?.configValue, '2000000');

    // Known topics cost nothing; the list is not read again.
    await topics.ensure(names[3]!);
    await topics.ensureAll(names);
    assert.deepEqual(calls, { listTopics: 1, createTopics: 1 });

    // A table that appears while streaming.
    await topics.ensure(later);
    assert.deepEqual(calls, { listTopics: 1, createTopics: 2 });

    // A topic another client created after the listing: CreateTopics says it exists, which is fine.
    await created(other, raced);
    await topics.ensure(raced);
    assert.equal(calls.createTopics, 3);

    // Several tables in one turn of the event loop share one request.
    await Promise.all(sameTurn.map((t) => topics.ensure(t)));
    assert.deepEqual(calls, { listTopics: 1, createTopics: 4 });
    const all = new Set(await other.listTopics());
    for (const t of [...names, later, raced, ...sameTurn]) assert.ok(all.has(t), `${t} exists`);
  } finally {
    const mine = (await other.listTopics()).filter((t) => t.startsWith(`${prefix}.`));
    if (mine.length > 0) await other.deleteTopics({ topics: mine }).catch(() => undefined);
    await real.disconnect();
    await other.disconnect();
  }
});
