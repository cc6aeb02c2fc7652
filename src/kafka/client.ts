// The Kafka client, producer and admin, configured once from the connector's settings.
import { Kafka, logLevel, type KafkaConfig, type LogEntry, type Producer, type SASLOptions } from 'kafkajs';
import { UserError } from '../errors.ts';
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
 * Connects a kafkajs admin, producer or consumer; a refused login, a certificate problem or an
 * unreachable broker becomes one line that names the setting to check.
 */
export async function connectKafka(client: { connect(): Promise<void> }, s: KafkaSettings): Promise<void> {
  try {
    await client.connect();
  } catch (err) {
    throw describeKafkaError(err, s);
  }
}

/** The innermost cause of a kafkajs error (retries wrap the original failure). */
function rootCause(err: unknown): Error & { code?: string; type?: string } {
  let e = err as Error & { originalError?: unknown; cause?: unknown };
  for (let i = 0; i < 5; i++) {
    const next = e.originalError ?? e.cause;
    if (!(next instanceof Error)) break;
    e = next as typeof e;
  }
  return e;
}

export function describeKafkaError(err: unknown, s: KafkaSettings): Error {
  if (!(err instanceof Error) || err instanceof UserError) return err as Error;
  const brokers = s.brokers.join(',');
  const mechanism = s.sasl?.mechanism ?? 'none';
  const all = [err, rootCause(err)] as Array<Error & { code?: string; type?: string }>;
  const text = all.map((e) => `${e.name} ${e.message} ${e.code ?? ''} ${e.type ?? ''}`).join(' ');
  if (
    all.some((e) => e.name === 'KafkaJSSASLAuthenticationError') ||
    /SASL_AUTHENTICATION_FAILED/.test(text)
  ) {
    return new UserError(
      `Kafka ${brokers} refused the SASL ${mechanism.toUpperCase()} login of user ${s.sasl?.username ?? ''}: ` +
        `${firstLine(rootCause(err).message).replace(/^SASL \S+ (SHA\d+ )?authentication failed: /i, '')}; ` +
        'check kafka.sasl.username/password and kafka.sasl.mechanism',
    );
  }
  if (/UNSUPPORTED_SASL_MECHANISM|ILLEGAL_SASL_STATE/.test(text)) {
    return new UserError(
      `Kafka ${brokers} does not accept SASL mechanism ${mechanism}; check kafka.sasl.mechanism`,
    );
  }
  const cause = rootCause(err);
  if (cause.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new UserError(
      `Kafka ${brokers}: the broker certificate does not match its host name (${firstLine(cause.message)})`,
    );
  }
  if (
    /certificate|self.signed|unable to (get|verify)/i.test(cause.message) ||
    /^(ERR_SSL|ERR_TLS|CERT_|UNABLE_TO|DEPTH_ZERO|SELF_SIGNED)/.test(cause.code ?? '')
  ) {
    return new UserError(
      `Kafka ${brokers}: TLS failed (${firstLine(cause.message)}); check kafka.ssl.ca (and kafka.ssl.cert/key when the broker requires a client certificate)`,
    );
  }
  return err;
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.trim();
}

/**
 * An idempotent producer with acks=all: a retried send never duplicates a record on the
 * broker, and a send resolves only when every in-sync replica has the records.
 */
export function durableProducer(kafka: Kafka): Producer {
  return kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
}
