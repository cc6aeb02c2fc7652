// Kafka security with pgcdc's own client (src/kafka/client.ts): SASL PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512 over the stack's SASL_SSL listener (broker certificate from the stack's CA), TLS
// with a client certificate on the SSL listener (client.auth=required), and clear one-line
// errors for a wrong password or an untrusted broker certificate. A connector runs over SCRAM too.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connectKafka, durableProducer, kafkaClient, type KafkaSettings } from '../../src/kafka/client.ts';
import { UserError } from '../../src/errors.ts';
import { Connector } from '../../src/pipeline/connector.ts';
import { createLogger } from '../../src/worker/log.ts';
import {
  TopicReader,
  dropTestSlots,
  eventually,
  pgClient,
  uniqueName,
  workerConfig,
} from '../support/pipeline.ts';

const env = process.env;
const need = (k: string): string => {
  const v = env[k];
  if (!v)
    throw new Error(
      `${k} is not set: restart the local stack (./dev stack up) so Kafka has its SASL_SSL listener`,
    );
  return v;
};
const SASL_BROKERS = need('PGCDC_KAFKA_SASL_BROKERS');
const TLS_BROKERS = need('PGCDC_KAFKA_TLS_BROKERS');
const USER = need('PGCDC_KAFKA_SASL_USER');
const PASSWORD = need('PGCDC_KAFKA_SASL_USER_PASSWORD');
const CA = need('PGCDC_KAFKA_TLS_CA');

type Mechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

function sasl(mechanism: Mechanism, password = PASSWORD): KafkaSettings {
  return {
    brokers: [SASL_BROKERS],
    clientId: 'pgcdc-auth-test',
    ssl: { enabled: true, ca: CA },
    sasl: { mechanism, username: USER, password },
  };
}

/** Creates a topic and produces `n` records with pgcdc's durable producer; returns the topic's end offset. */
async function produce(s: KafkaSettings, n: number): Promise<number> {
  const kafka = kafkaClient(s);
  const admin = kafka.admin();
  await connectKafka(admin, s);
  const topic = `auth-${randomUUID().slice(0, 8)}`;
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    const producer = durableProducer(kafka);
    await connectKafka(producer, s);
    try {
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: n }, (_, i) => ({ key: String(i), value: `v${i}` })),
      });
    } finally {
      await producer.disconnect();
    }
    const offsets = await admin.fetchTopicOffsets(topic);
    await admin.deleteTopics({ topics: [topic] });
    return Number(offsets[0]!.high);
  } finally {
    await admin.disconnect();
  }
}

async function refusedWith(s: KafkaSettings, pattern: RegExp): Promise<void> {
  const admin = kafkaClient(s).admin();
  await assert.rejects(connectKafka(admin, s), (e: Error) => {
    assert.ok(e instanceof UserError, `a UserError, got ${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /\n/);
    assert.ok(!e.message.includes(s.sasl?.password ?? '\u0000'), 'the password is not in the message');
    return true;
  });
  await admin.disconnect().catch(() => undefined);
}

describe('Kafka authentication', () => {
  after(async () => {
    await dropTestSlots();
  });

  for (const mechanism of ['plain', 'scram-sha-256', 'scram-sha-512'] as const) {
    test(`SASL ${mechanism} over SASL_SSL`, async () => {
      assert.equal(await produce(sasl(mechanism), 5), 5);
    });
  }

  test('a wrong password is one clear line (for each mechanism)', async () => {
    for (const mechanism of ['plain', 'scram-sha-256', 'scram-sha-512'] as const) {
      await refusedWith(
        sasl(mechanism, 'definitely-wrong-pw'),
        new RegExp(`refused the SASL ${mechanism.toUpperCase()} login of user ${USER}.*check kafka.sasl`),
      );
    }
  });

  test('TLS with a client certificate on the SSL listener (client.auth=required)', async () => {
    const tls: KafkaSettings = {
      brokers: [TLS_BROKERS],
      clientId: 'pgcdc-auth-test',
      ssl: {
        enabled: true,
        ca: CA,
        cert: need('PGCDC_PG_SSL_CLIENT_CERT'),
        key: need('PGCDC_PG_SSL_CLIENT_KEY'),
      },
    };
    assert.equal(await produce(tls, 3), 3);
  });

  test('an untrusted broker certificate is a clear error', async () => {
    // The system CAs do not include the stack's CA.
    await refusedWith(
      {
        brokers: [SASL_BROKERS],
        clientId: 'pgcdc-auth-test',
        ssl: { enabled: true },
        sasl: sasl('plain').sasl,
      },
      /TLS failed .*check kafka.ssl.ca/,
    );
  });

  test('a connector runs over SCRAM-SHA-512 + TLS; with a wrong password it fails with the one-line error', async () => {
    const log = createLogger({ connector: 'kafka-auth-test', level: 'error', format: 'json' });
    const name = uniqueName('kauth');
    const table = `${name}_t`;
    const db = await pgClient();
    const saslEnv = (password: string) => ({
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_KAFKA_BROKERS: SASL_BROKERS,
      PGCDC_KAFKA_SSL_ENABLED: 'true',
      PGCDC_KAFKA_SSL_CA: CA,
      PGCDC_KAFKA_SASL_MECHANISM: 'scram-sha-512',
      PGCDC_KAFKA_SASL_USERNAME: USER,
      PGCDC_KAFKA_SASL_PASSWORD: password,
    });
    try {
      await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
      await db.query(`INSERT INTO ${table} VALUES (1), (2), (3)`);
      const bad = new Connector(workerConfig(`${name}x`, saslEnv('wrong-password-123')), log);
      await assert.rejects(
        bad.run(),
        (e: Error) => e instanceof UserError && /refused the SASL SCRAM-SHA-512 login/.test(e.message),
      );

      const connector = new Connector(workerConfig(name, saslEnv(PASSWORD)), log);
      const running = connector.run();
      running.catch(() => undefined);
      try {
        const reader = new TopicReader();
        await eventually('snapshot over SASL_SSL', async () =>
          (await reader.read(`${name}.public.${table}`)).length >= 3 ? true : undefined,
        );
      } finally {
        await connector.stop();
        await running;
      }
    } finally {
      await db.query(`DROP TABLE IF EXISTS ${table}`);
      await db.end();
    }
  });
});
