// The Kafka client, producer and admin, configured once from the connector's settings.
import { Kafka, logLevel, type KafkaConfig, type LogEntry, type Producer, type SASLOptions } from 'kafkajs';
import { readPem } from '../postgres/connection.ts';

export interface KafkaSettings {
  brokers: string[];
  clientId: string;
  ssl?: { enabled: boolean; ca?: string; cert?: string; key?: string };
  sasl?: {
    mechanism: 'none' | 'plain' | 'scram-sha-256' | 'scram-sha-512';
    username?: string;
    password?: string;
  };
}

/** `onRetry`: kafkajs failed a produce attempt and retries it (seen in its error log entries). */
export function kafkaClient(s: KafkaSettings, hooks: { onRetry?: () => void } = {}): Kafka {
  const { onRetry } = hooks;
  const config: KafkaConfig = {
    brokers: s.brokers,
    clientId: s.clientId,
    logLevel: onRetry ? logLevel.ERROR : logLevel.NOTHING,
    ...(onRetry && {
      logCreator: () => (entry: LogEntry) => {
        if (typeof entry.log.retryCount === 'number') onRetry();
      },
    }),
    connectionTimeout: 10_000,
    requestTimeout: 30_000,
    retry: { retries: 8, initialRetryTime: 300, maxRetryTime: 10_000 },
  };
  if (s.ssl?.enabled) {
    config.ssl = {
      rejectUnauthorized: true,
      ...(s.ssl.ca ? { ca: [readPem(s.ssl.ca)] } : {}),
      ...(s.ssl.cert ? { cert: readPem(s.ssl.cert) } : {}),
      ...(s.ssl.key ? { key: readPem(s.ssl.key) } : {}),
    };
  }
  if (s.sasl && s.sasl.mechanism !== 'none') {
    config.sasl = {
      mechanism: s.sasl.mechanism,
      username: s.sasl.username ?? '',
      password: s.sasl.password ?? '',
    } as SASLOptions;
  }
  return new Kafka(config);
}

/**
 * An idempotent producer with acks=all: a retried send never duplicates a record on the
 * broker, and a send resolves only when every in-sync replica has the records.
 */
export function durableProducer(kafka: Kafka): Producer {
  return kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
}
