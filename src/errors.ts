// Failure kinds, decided once. An error is classified at the edge where it is born (the Kafka
// client, the registry client, the PostgreSQL connection) into one of pgcdc's classes, and the
// worker reads the kind with failureKind(), walking `cause` for errors nobody wrapped:
//
// - user: a user's mistake (bad config, missing privilege, wrong password): one-line message with
//   the fix, no stack trace, the connector goes FAILED.
// - data: a value pgcdc cannot represent (DataError, a UserError subclass): FAILED too.
// - connection: a lost or unreachable dependency (broker restart, network blip, registry down):
//   the worker restarts the connector from its stored offset until the dependency is back.
// - bug: anything else; keeps its stack, FAILED.

export class UserError extends Error {
  override name = 'UserError';
}

/** A failure that may pass on its own (broker restart, network blip): the worker retries it. */
export class RetriableError extends Error {
  override name = 'RetriableError';
  readonly retriable = true;
}

/** A dependency (Kafka, the schema registry) is unreachable or went away: retried until it is back. */
export class ConnectionLost extends RetriableError {
  override name = 'ConnectionLost';
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError || (err instanceof Error && err.name === 'ConfigError');
}

export type FailureKind = 'user' | 'data' | 'connection' | 'bug';

/** Socket and HTTP-client codes of a connection that failed or went away (Node net/tls, undici). */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  // DNS: a name that does not resolve is retried (a Kubernetes Service that is being recreated and a
  // DNS outage look the same); `pgcdc check` reports it as a failed line, and every retry logs it.
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);

/** Certificate and TLS codes: the trust configuration is wrong, retrying does not help. */
const TLS_CODE =
  /^(ERR_TLS_|ERR_SSL_|ERR_OSSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|INVALID_CA|HOSTNAME_MISMATCH)/;

/** kafkajs errors that mean "no usable connection to the cluster right now". */
const KAFKAJS_CONNECTION = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSBrokerNotFound',
  // Non-retriable in kafkajs, but both happen while a cluster restarts (coordinator not elected yet).
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSStaleTopicMetadataAssignment',
  'KafkaJSLockTimeout',
  'KafkaJSTimeout',
]);

/** Kafka protocol error types that the configuration or the ACLs cause. */
const KAFKA_USER_TYPES = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'DELEGATION_TOKEN_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED',
  'UNSUPPORTED_SASL_MECHANISM',
  'ILLEGAL_SASL_STATE',
  'POLICY_VIOLATION',
  'INVALID_CONFIG',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_PARTITIONS',
  'INVALID_TOPIC_EXCEPTION',
]);

/** Kafka refused the records themselves. */
const KAFKA_DATA_TYPES = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
]);

/**
 * PostgreSQL SQLSTATEs of a connection that failed or was closed by the server: class 08
 * (connection exception), 57P01..57P03 (shutdown, crash, cannot connect now), 53300 (too many
 * connections: passes when another client disconnects).
 */
const PG_CONNECTION_STATES = /^(08...|57P0[1-3]|53300)$/;
/** PostgreSQL SQLSTATEs a user fixes: authentication (28), privilege (42501), unknown database (3D000). */
const PG_USER_STATES = /^(28...|42501|3D000)$/;
/** Messages node-postgres raises without a code when the socket goes away. */
const PG_LOST_MESSAGE =
  /^(Connection terminated( unexpectedly| due to connection timeout)?|Client has encountered a connection error and is not queryable)$/;

type Inspectable = Error & {
  code?: unknown;
  type?: unknown;
  retriable?: unknown;
  cause?: unknown;
  originalError?: unknown;
  errors?: unknown;
};

/** One error's own verdict, or null when it says nothing and its cause decides. */
function ownKind(e: Inspectable): FailureKind | null {
  const name = e.name;
  if (name === 'DataError') return 'data';
  if (e instanceof UserError || name === 'UserError' || name === 'ConfigError') return 'user';
  if (e instanceof RetriableError || name === 'ConnectionLost' || name === 'RetriableError')
    return 'connection';
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (code && TLS_CODE.test(code)) return 'user';
  if (name.startsWith('KafkaJS')) return kafkaKind(e, code);
  if (code && CONNECTION_CODES.has(code)) return 'connection';
  if (code && /^[0-9A-Z]{5}$/.test(code) && (e as { severity?: unknown }).severity !== undefined) {
    if (PG_CONNECTION_STATES.test(code)) return 'connection';
    if (PG_USER_STATES.test(code)) return 'user';
    return null;
  }
  if (name === 'TimeoutError' || name === 'AbortError') return 'connection';
  if (PG_LOST_MESSAGE.test(e.message)) return 'connection';
  if (e.retriable === true) return 'connection';
  return null;
}

function kafkaKind(e: Inspectable, code: string | undefined): FailureKind | null {
  const name = e.name;
  if (name === 'KafkaJSSASLAuthenticationError') return 'user';
  if (KAFKAJS_CONNECTION.has(name)) {
    // kafkajs puts the socket's code on its connection error; a certificate code is the user's.
    return code && TLS_CODE.test(code) ? 'user' : 'connection';
  }
  const type = typeof e.type === 'string' ? e.type : undefined;
  if (type && KAFKA_USER_TYPES.has(type)) return 'user';
  if (type && KAFKA_DATA_TYPES.has(type)) return 'data';
  // Wrappers: what they wrap decides (a retry budget that ran out on a lost broker is a lost broker).
  if (name === 'KafkaJSNonRetriableError' || name === 'KafkaJSNumberOfRetriesExceeded') return null;
  if (name === 'KafkaJSAggregateError') return null;
  if (e.retriable === true) return 'connection';
  return null;
}

/** The errors `err` wraps: `cause` (standard), `originalError` (kafkajs retries), `errors` (aggregates). */
function wrapped(e: Inspectable): unknown[] {
  const out: unknown[] = [];
  if (e.cause !== undefined && e.cause !== e) out.push(e.cause);
  if (e.originalError !== undefined && e.originalError !== e.cause) out.push(e.originalError);
  if (Array.isArray(e.errors)) out.push(...(e.errors as unknown[]));
  return out;
}

/**
 * The kind of a failure: the outermost error that says (pgcdc's own classes first, as the edge
 * decided; then kafkajs names, types and `retriable`, Node socket codes, PostgreSQL SQLSTATEs),
 * walking `cause`/`originalError`/`errors` for wrappers that say nothing. An aggregate is a
 * connection loss only when everything in it is. Unknown errors are bugs.
 */
export function failureKind(err: unknown): FailureKind {
  return kindOf(err, 0, new Set()) ?? fallback(err);
}

function kindOf(err: unknown, depth: number, seen: Set<unknown>): FailureKind | null {
  if (!(err instanceof Error) || depth > 8 || seen.has(err)) return null;
  seen.add(err);
  const e = err as Inspectable;
  const own = ownKind(e);
  if (own) return own;
  const inner = wrapped(e).map((w) => kindOf(w, depth + 1, seen));
  const known = inner.filter((k): k is FailureKind => k !== null);
  if (known.length === 0) return null;
  if (Array.isArray(e.errors) && e.errors.length > 0) {
    // AggregateError (Node's happy-eyeballs connect, kafkajs's aggregates): the worst one decides.
    for (const k of ['user', 'data', 'bug'] as const) if (known.includes(k)) return k;
    return known.length === inner.length ? 'connection' : null;
  }
  return known[0]!;
}

function fallback(err: unknown): FailureKind {
  // kafkajs gave up retrying: it only retries what it considers retriable (a lost broker, a leader
  // election, not enough replicas), so an unknown cause under it is still a dependency failure.
  for (let e = err as Inspectable | undefined, i = 0; e instanceof Error && i < 8; i++) {
    if (e.name === 'KafkaJSNumberOfRetriesExceeded') return 'connection';
    e = (e.cause ?? e.originalError) as Inspectable | undefined;
  }
  return 'bug';
}

/** The first line of an error's message (kafkajs and pg sometimes add more), for one-line reports. */
export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message || err.name : String(err);
  return text.split('\n')[0]!.trim();
}

/** The messages along an error's cause chain, deduplicated: one line that says what and why. */
export function causeChain(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; e instanceof Error && i < 8; i++) {
    const line = (e.message || e.name).split('\n')[0]!.trim();
    if (line && !parts.some((p) => p.includes(line))) parts.push(line);
    const next = e as { cause?: unknown; originalError?: unknown };
    e = next.cause ?? next.originalError;
  }
  return parts.join(': ');
}
