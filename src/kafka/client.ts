// The Kafka client, producer and admin, configured once from the connector's settings. Errors are
// classified here, where they are born: a refused login or certificate is the user's (UserError),
// a broker that is down or unreachable is a ConnectionLost (the worker waits it out), whatever
// kafkajs wraps it in.
import {
  Kafka,
  Partitioners,
  logLevel,
  type KafkaConfig,
  type LogEntry,
  type Producer,
  type SASLOptions,
} from 'kafkajs';
import { ConnectionLost, UserError, causeChain, failureKind } from '../errors.ts';
import { readPem } from '../postgres/connection.ts';
import { redactText, type Logger } from '../worker/log.ts';

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

export interface KafkaHooks {
  /** kafkajs failed a produce attempt and retries it (seen in its error log entries). */
  onRetry?: () => void;
  /** Where kafkajs's own log lines go (ERROR and WARN as warn, INFO as debug); nowhere when unset. */
  log?: Logger;
}

/** The same kafkajs line at most once per this window; the next one says how many were dropped. */
const KAFKAJS_LOG_WINDOW_MS = 10_000;

/**
 * kafkajs warnings that say nothing an operator must act on, logged at debug: the idempotent
 * producer's retries are bounded on purpose (when they run out, the connector restarts from its
 * stored offset: at-least-once, never a loss), and a coordinator still loading after a broker
 * start is retried by kafkajs itself.
 */
const EXPECTED_WARNINGS = /^(Limiting retries for the idempotent producer|Response InitProducerId)/;

/** kafkajs's text for CONCURRENT_TRANSACTIONS (protocol error 51). */
const CONCURRENT_TRANSACTIONS = /another concurrent operation on the same transaction/;

/**
 * kafkajs's log lines as pgcdc log lines. kafkajs logs every retry at ERROR; pgcdc reports the
 * failure that ends the retries itself, so kafkajs's errors are warnings here. Repeated lines (a
 * broker that stays down logs the same connection error on every retry) are rate-limited.
 */
export function kafkajsLogCreator(
  log: Logger | undefined,
  opts: { onRetry?: () => void; secrets?: string[]; windowMs?: number; now?: () => number } = {},
): () => (entry: LogEntry) => void {
  const windowMs = opts.windowMs ?? KAFKAJS_LOG_WINDOW_MS;
  const now = opts.now ?? Date.now;
  const secrets = opts.secrets ?? [];
  // Shared by every client writing to one logger: a restarted connector makes new clients, and
  // their first lines must not count as new.
  const seen = log ? rateLimits(log) : new Map<string, { until: number; dropped: number }>();
  return () => (entry: LogEntry) => {
    const {
      message,
      timestamp: _t,
      logger: _l,
      stack: _s,
      ...rest
    } = entry.log as LogEntry['log'] & {
      stack?: unknown;
    };
    // Exactly-once: a transaction's first send is refused with CONCURRENT_TRANSACTIONS while the
    // coordinator finishes the previous commit's markers; kafkajs retries it as a failed send, but
    // it is the protocol's normal wait (src/kafka/transactional.ts), neither a retry nor a warning.
    const txWait = CONCURRENT_TRANSACTIONS.test(String(message));
    if (entry.level === logLevel.ERROR && typeof rest.retryCount === 'number' && !txWait) opts.onRetry?.();
    if (!log) return;
    const level =
      entry.level <= logLevel.WARN && !EXPECTED_WARNINGS.test(String(message)) && !txWait ? 'warn' : 'debug';
    const key = `${entry.level}\u0000${entry.namespace}\u0000${message}`;
    const t = now();
    const s = seen.get(key);
    if (s && t < s.until) {
      s.dropped++;
      return;
    }
    if (seen.size > 500) seen.clear();
    seen.set(key, { until: t + windowMs, dropped: 0 });
    // Scalars only: kafkajs's context can hold whole requests (and, for SASL, the credentials' owner).
    const ctx: Record<string, unknown> = { component: 'kafkajs', namespace: entry.namespace };
    for (const [k, v] of Object.entries(rest)) {
      if (typeof v === 'string') ctx[k] = redactText(v, secrets);
      else if (typeof v === 'number' || typeof v === 'boolean') ctx[k] = v;
    }
    if (s && s.dropped > 0) ctx.repeatedSinceLastLine = s.dropped;
    log[level](`kafkajs: ${redactText(String(message), secrets)}`, ctx);
  };
}

const limits = new WeakMap<Logger, Map<string, { until: number; dropped: number }>>();
function rateLimits(log: Logger): Map<string, { until: number; dropped: number }> {
  let m = limits.get(log);
  if (!m) limits.set(log, (m = new Map()));
  return m;
}

export function kafkaClient(s: KafkaSettings, hooks: KafkaHooks = {}): Kafka {
  const { onRetry, log } = hooks;
  const secrets = s.sasl?.password ? [s.sasl.password] : [];
  const config: KafkaConfig = {
    brokers: s.brokers,
    clientId: s.clientId,
    logLevel: log ? logLevel.INFO : onRetry ? logLevel.ERROR : logLevel.NOTHING,
    ...((onRetry || log) && { logCreator: kafkajsLogCreator(log, { onRetry, secrets }) }),
    connectionTimeout: 10_000,
    requestTimeout: 30_000,
    retry: { retries: 8, initialRetryTime: 300, maxRetryTime: 10_000 },
  };
  if (s.ssl?.enabled) {
    config.ssl = {
      rejectUnauthorized: true,
      ...(s.ssl.ca ? { ca: [readPem(s.ssl.ca, 'kafka.ssl.ca')] } : {}),
      ...(s.ssl.cert ? { cert: readPem(s.ssl.cert, 'kafka.ssl.cert') } : {}),
      ...(s.ssl.key ? { key: readPem(s.ssl.key, 'kafka.ssl.key') } : {}),
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
  if (!(err instanceof Error) || err instanceof UserError || err instanceof ConnectionLost)
    return err as Error;
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
  const denied = all.find((e) => typeof e.type === 'string' && e.type.endsWith('_AUTHORIZATION_FAILED'));
  if (denied) {
    return new UserError(
      `Kafka ${brokers} denied ${s.sasl?.username ? `user ${s.sasl.username}` : 'the client'} (${denied.type}: ${firstLine(denied.message)}); grant the ACLs listed in docs/security.md "Kafka ACLs"`,
      { cause: err },
    );
  }
  if (failureKind(err) === 'connection') {
    return new ConnectionLost(`Kafka ${brokers} unreachable or lost: ${causeChain(err)}`, { cause: err });
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
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    // Named, not defaulted: kafkajs's default (the Java client's murmur2, so a key lands where a
    // Java producer would put it) then logs no "switched default partitioner" warning at each start.
    createPartitioner: Partitioners.DefaultPartitioner,
  });
}
