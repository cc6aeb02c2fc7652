// Reading the stored offset against a broker with an authorizer (a throwaway one: the shared
// stack's broker has none and must not be reconfigured). kafkajs reports a refused group join as
// a `crash` event, not as a rejection: before, the read waited forever without a log line.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs, { type Kafka } from 'kafkajs';
import { ConnectionLost, UserError } from '../../src/errors.ts';
import { kafkaClient, type KafkaSettings } from '../../src/kafka/client.ts';
import { OFFSET_READER_GROUP_PREFIX, OffsetStore } from '../../src/kafka/offsets.ts';
import { kafkaCheck } from '../../src/postgres/preflight/services.ts';
import { ThrowawayKafka } from '../support/throwaway-kafka.ts';
import { uniqueName } from '../support/pipeline.ts';

// kafkajs's enums are not named exports under ESM (its CommonJS index spreads them).
const { AclOperationTypes, AclPermissionTypes, AclResourceTypes, ResourcePatternTypes } = kafkajs;
const PASSWORD = 'app-password-1234';
const key = { connector: 'acl-test', slot: 'acl_test' };

describe('the stored offset, read by a principal with and without the ACLs', () => {
  let k: ThrowawayKafka;
  let admin: ReturnType<Kafka['admin']>;
  const topic = uniqueName('offsets').replaceAll('_', '-');
  let app: KafkaSettings;

  before(async () => {
    k = await ThrowawayKafka.start({ saslUsers: { app: PASSWORD } });
    app = {
      brokers: [k.saslBrokers],
      clientId: 'pgcdc-acl-test',
      sasl: { mechanism: 'plain', username: 'app', password: PASSWORD },
    };
    admin = k.client().admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    // An offset stored by an earlier run (written as the super user).
    const producer = k.client().producer();
    await producer.connect();
    const store = new OffsetStore(k.client(), topic, key);
    await producer.send({ topic, acks: -1, messages: [store.record({ lsn: '0/16B3748', ts_ms: 1 })] });
    await producer.disconnect();
    await admin.createAcls({
      acl: [
        {
          resourceType: AclResourceTypes.TOPIC,
          resourceName: topic,
          resourcePatternType: ResourcePatternTypes.LITERAL,
          principal: 'User:app',
          host: '*',
          operation: AclOperationTypes.READ,
          permissionType: AclPermissionTypes.ALLOW,
        },
      ],
    });
  });

  after(async () => {
    await admin?.disconnect().catch(() => undefined);
    await k?.destroy();
  });

  test('READ on the topic only: one line naming topic, group and the ACL, and pgcdc check fails the same way', async () => {
    const store = new OffsetStore(kafkaClient(app), topic, key);
    await assert.rejects(store.read({ deadlineMs: 10_000 }), (err: Error) => {
      assert.ok(err instanceof UserError, `${err.name}: ${err.message}`);
      assert.match(
        err.message,
        new RegExp(
          `reading the stored offset from topic ${topic} \\(consumer group ${OFFSET_READER_GROUP_PREFIX}`,
        ),
      );
      assert.match(err.message, /GROUP_AUTHORIZATION_FAILED|not authorized/i);
      assert.match(err.message, /READ on consumer groups with prefix pgcdc-offsets-reader-/);
      assert.doesNotMatch(err.message, /\n/);
      assert.doesNotMatch(err.message, new RegExp(PASSWORD));
      return true;
    });
    const line = await kafkaCheck({ ...app, offsets: { topic, ...key } });
    assert.equal(line.status, 'failed', line.message);
    assert.match(line.message, /the stored offset cannot be read/);
    assert.match(line.fix ?? '', /READ on consumer groups with prefix pgcdc-offsets-reader-/);
  });

  test('with READ on the group prefix: the stored offset is read, and pgcdc check says so', async () => {
    await admin.createAcls({
      acl: [
        {
          resourceType: AclResourceTypes.GROUP,
          resourceName: OFFSET_READER_GROUP_PREFIX,
          resourcePatternType: ResourcePatternTypes.PREFIXED,
          principal: 'User:app',
          host: '*',
          operation: AclOperationTypes.READ,
          permissionType: AclPermissionTypes.ALLOW,
        },
      ],
    });
    const store = new OffsetStore(kafkaClient(app), topic, key);
    const stored = await store.read();
    assert.equal(stored?.lsn, '0/16B3748');
    const line = await kafkaCheck({ ...app, offsets: { topic, ...key } });
    assert.equal(line.status, 'ok', `${line.message} ${line.fix ?? ''}`);
    assert.match(line.message, new RegExp(`offsets topic ${topic} read \\(stored offset at 0/16B3748\\)`));
  });

  test('a read that does not finish by its deadline fails with one line (a lost connection: retried)', async () => {
    const store = new OffsetStore(kafkaClient(app), topic, key);
    // 1 ms: no group join and fetch can finish in it. With 20 ms, an idle machine did (the
    // throwaway broker has no initial rebalance delay), and the read resolved instead.
    await assert.rejects(store.read({ deadlineMs: 1 }), (err: Error) => {
      assert.ok(err instanceof ConnectionLost, `${err.name}: ${err.message}`);
      assert.match(
        err.message,
        new RegExp(
          `topic ${topic} \\(consumer group ${OFFSET_READER_GROUP_PREFIX}.*did not finish within 0.001 s`,
        ),
      );
      assert.match(err.message, /READ on consumer groups with prefix/);
      return true;
    });
  });
});
