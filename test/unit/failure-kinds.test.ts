// failureKind() on the error shapes pgcdc meets: kafkajs's own classes (built by kafkajs's own
// code: its retrier and its protocol error table), Node socket errors, fetch failures, PostgreSQL
// errors, and pgcdc's classes — nested the way the libraries nest them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import pg from 'pg';
import { ConnectionLost, RetriableError, UserError, causeChain, failureKind } from '../../src/errors.ts';
import { DataError } from '../../src/avro/errors.ts';
import { ConfigError } from '../../src/config/errors.ts';
import { describeKafkaError } from '../../src/kafka/client.ts';

const require = createRequire(import.meta.url);
type Ctor = new (...args: never[]) => Error;
const k = require('kafkajs/src/errors.js') as Record<string, Ctor>;
const { createErrorFromCode } = require('kafkajs/src/protocol/error.js') as {
  createErrorFromCode(code: number): Error & { type: string; retriable: boolean };
};
const createRetry = require('kafkajs/src/retry/index.js') as (o: {
  retries: number;
  initialRetryTime: number;
  maxRetryTime?: number;
}) => <T>(fn: () => Promise<T>) => Promise<T>;

const make = (name: string, ...args: unknown[]): Error =>
  new (k[name] as unknown as new (...a: unknown[]) => Error)(...args);

/** A Node socket error as net/tls raise it. */
function sysError(code: string, message = `connect ${code} 127.0.0.1:9092`): Error {
  return Object.assign(new Error(message), { code, errno: -1, syscall: 'connect' });
}

const connectionError = (code = 'ECONNREFUSED'): Error =>
  make('KafkaJSConnectionError', `Connection error: connect ${code} 127.0.0.1:9092`, {
    broker: '127.0.0.1:9092',
    code,
  });

/** What kafkajs's retrier rejects with when `fn` keeps failing (retries 1, a few ms). */
async function retried(fn: () => Promise<never>, retries = 1): Promise<Error> {
  try {
    await createRetry({ retries, initialRetryTime: 1, maxRetryTime: 2 })(fn);
  } catch (err) {
    return err as Error;
  }
  throw new Error('the retrier resolved');
}

/** A PostgreSQL error as node-postgres raises it (pg.DatabaseError with SQLSTATE and severity). */
function pgError(code: string, message: string): Error {
  const e = new pg.DatabaseError(message, message.length, 'error');
  return Object.assign(e, { code, severity: 'FATAL' });
}

const kafkaSettings = {
  brokers: ['127.0.0.1:9092'],
  clientId: 't',
  sasl: { mechanism: 'plain' as const, username: 'app', password: 'pw' },
};

describe('failureKind: kafkajs', () => {
  test('a broker outage longer than the retry budget: NonRetriable wrapping RetriesExceeded wrapping a connection error', async () => {
    // The produce path nests two retriers (sendMessages inside the producer's): the inner one gives
    // up with KafkaJSNumberOfRetriesExceeded, the outer one wraps that as non-retriable.
    const inner = () => retried(async () => Promise.reject(connectionError()));
    const outer = await retried(async () => Promise.reject(await inner()));
    assert.equal(outer.name, 'KafkaJSNonRetriableError');
    assert.equal((outer as { retriable?: boolean }).retriable, false);
    assert.equal(failureKind(outer), 'connection');
  });

  test('KafkaJSNumberOfRetriesExceeded over each transient error kafkajs retries', async () => {
    for (const cause of [
      connectionError('ECONNREFUSED'),
      connectionError('ECONNRESET'),
      make('KafkaJSConnectionClosedError', 'Closed connection', { host: '127.0.0.1', port: 9092 }),
      make('KafkaJSRequestTimeoutError', 'Request Produce(key: 0, version: 7) timed out', {}),
      make('KafkaJSNoBrokerAvailableError'),
      make('KafkaJSBrokerNotFound', 'Broker 2 not found in the cached metadata'),
      createErrorFromCode(6), // NOT_LEADER_OR_FOLLOWER
      createErrorFromCode(19), // NOT_ENOUGH_REPLICAS
      createErrorFromCode(5), // LEADER_NOT_AVAILABLE
      createErrorFromCode(7), // REQUEST_TIMED_OUT
    ]) {
      const err = await retried(async () => Promise.reject(cause));
      assert.equal(err.name, 'KafkaJSNumberOfRetriesExceeded', cause.message);
      assert.equal(failureKind(err), 'connection', `${cause.name} ${cause.message}`);
    }
  });

  test('the bare connection errors, and the coordinator errors kafkajs marks non-retriable', () => {
    for (const name of [
      'KafkaJSGroupCoordinatorNotFound',
      'KafkaJSLockTimeout',
      'KafkaJSTimeout',
      'KafkaJSMetadataNotLoaded',
    ])
      assert.equal(failureKind(make(name, 'x')), 'connection', name);
    assert.equal(failureKind(connectionError()), 'connection');
  });

  test('authorization, SASL and configuration refusals are the user’s, also under a retrier', async () => {
    for (const code of [29, 30, 31, 58, 33, 34, 44, 40, 38, 37]) {
      // TOPIC/GROUP/CLUSTER_AUTHORIZATION_FAILED, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
      // ILLEGAL_SASL_STATE, POLICY_VIOLATION, INVALID_CONFIG, INVALID_REPLICATION_FACTOR, INVALID_PARTITIONS
      const e = createErrorFromCode(code);
      const protocol = make('KafkaJSProtocolError', e);
      assert.equal(failureKind(protocol), 'user', e.type);
      assert.equal(failureKind(await retried(async () => Promise.reject(protocol))), 'user', e.type);
    }
    assert.equal(
      failureKind(make('KafkaJSSASLAuthenticationError', 'SASL PLAIN authentication failed')),
      'user',
    );
  });

  test('a TLS failure inside a kafkajs connection error is the user’s', () => {
    assert.equal(failureKind(connectionError('DEPTH_ZERO_SELF_SIGNED_CERT')), 'user');
    assert.equal(failureKind(connectionError('ERR_TLS_CERT_ALTNAME_INVALID')), 'user');
  });

  test('records Kafka refuses are data errors', () => {
    for (const code of [10, 18, 87]) {
      // MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_RECORD
      assert.equal(failureKind(make('KafkaJSProtocolError', createErrorFromCode(code))), 'data');
    }
  });

  test('kafkajs invariant violations and unknown non-retriable errors are bugs', () => {
    assert.equal(failureKind(make('KafkaJSInvariantViolation', 'partition is not a number')), 'bug');
    assert.equal(failureKind(make('KafkaJSNonRetriableError', 'something')), 'bug');
    assert.equal(failureKind(make('KafkaJSProtocolError', createErrorFromCode(-1))), 'bug');
  });

  test('describeKafkaError: the edge says it in one line and keeps the cause', async () => {
    const outage = await retried(async () =>
      Promise.reject(await retried(async () => Promise.reject(connectionError()))),
    );
    const lost = describeKafkaError(outage, kafkaSettings);
    assert.ok(lost instanceof ConnectionLost);
    assert.match(lost.message, /^Kafka 127\.0\.0\.1:9092 unreachable or lost: .*ECONNREFUSED/);
    assert.equal(lost.cause, outage);
    const denied = describeKafkaError(make('KafkaJSProtocolError', createErrorFromCode(30)), kafkaSettings);
    assert.ok(denied instanceof UserError);
    assert.match(denied.message, /denied user app \(GROUP_AUTHORIZATION_FAILED: .*\); grant the ACLs/);
    assert.doesNotMatch(denied.message, /pw/);
    const sasl = describeKafkaError(
      make('KafkaJSSASLAuthenticationError', 'SASL PLAIN authentication failed: Authentication failed'),
      kafkaSettings,
    );
    assert.ok(sasl instanceof UserError);
    const bug = make('KafkaJSInvariantViolation', 'x');
    assert.equal(describeKafkaError(bug, kafkaSettings), bug);
  });
});

describe('failureKind: Node, fetch and PostgreSQL', () => {
  test('socket codes are connection losses, TLS codes the user’s', () => {
    for (const code of [
      'ECONNREFUSED',
      'ECONNRESET',
      'EPIPE',
      'ETIMEDOUT',
      'EHOSTUNREACH',
      'ENETUNREACH',
      'ENOTFOUND',
      'EAI_AGAIN',
    ])
      assert.equal(failureKind(sysError(code)), 'connection', code);
    for (const code of [
      'DEPTH_ZERO_SELF_SIGNED_CERT',
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'CERT_HAS_EXPIRED',
      'ERR_TLS_CERT_ALTNAME_INVALID',
      'SELF_SIGNED_CERT_IN_CHAIN',
    ])
      assert.equal(failureKind(sysError(code)), 'user', code);
  });

  test('fetch failures (TypeError with the socket error, or an AggregateError of them, as cause)', () => {
    const refused = new TypeError('fetch failed', { cause: sysError('ECONNREFUSED') });
    assert.equal(failureKind(refused), 'connection');
    const both = Object.assign(
      new AggregateError([
        sysError('ECONNREFUSED'),
        sysError('ECONNREFUSED', 'connect ECONNREFUSED ::1:8081'),
      ]),
      { code: 'ECONNREFUSED' },
    );
    assert.equal(failureKind(new TypeError('fetch failed', { cause: both })), 'connection');
    const mixed = new AggregateError([sysError('ECONNREFUSED'), sysError('CERT_HAS_EXPIRED')]);
    assert.equal(failureKind(mixed), 'user');
    const tls = new TypeError('fetch failed', { cause: sysError('UNABLE_TO_VERIFY_LEAF_SIGNATURE') });
    assert.equal(failureKind(tls), 'user');
    assert.equal(
      failureKind(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
      'connection',
    );
  });

  test('PostgreSQL: connection SQLSTATEs retry, authentication and privilege are the user’s, others are bugs', () => {
    assert.equal(
      failureKind(pgError('57P01', 'terminating connection due to administrator command')),
      'connection',
    );
    assert.equal(failureKind(pgError('57P03', 'the database system is starting up')), 'connection');
    assert.equal(failureKind(pgError('08006', 'connection failure')), 'connection');
    assert.equal(failureKind(pgError('53300', 'sorry, too many clients already')), 'connection');
    assert.equal(failureKind(pgError('28P01', 'password authentication failed for user "x"')), 'user');
    assert.equal(failureKind(pgError('42501', 'permission denied for table t')), 'user');
    assert.equal(failureKind(pgError('3D000', 'database "x" does not exist')), 'user');
    assert.equal(failureKind(pgError('42P01', 'relation "t" does not exist')), 'bug');
    assert.equal(failureKind(new Error('Connection terminated unexpectedly')), 'connection');
    // A message that merely mentions a lost connection is not one.
    assert.equal(failureKind(new Error('the connection lost its way: bad plan')), 'bug');
  });
});

describe('failureKind: pgcdc’s own classes decide first', () => {
  test('the edge’s verdict wins over what it wraps', () => {
    assert.equal(
      failureKind(new UserError('check registry.url', { cause: sysError('ECONNREFUSED') })),
      'user',
    );
    assert.equal(
      failureKind(new ConnectionLost('registry down', { cause: new TypeError('x') })),
      'connection',
    );
    assert.equal(failureKind(new RetriableError('SSH tunnel closed')), 'connection');
    assert.equal(failureKind(new DataError('NaN in a decimal column', 'public.t', 'n')), 'data');
    assert.equal(failureKind(new ConfigError(['kafka.brokers: required'])), 'user');
  });

  test('wrappers that say nothing are looked through, however deep', () => {
    let e: Error = sysError('ECONNRESET');
    for (let i = 0; i < 6; i++) e = new Error(`layer ${i}`, { cause: e });
    assert.equal(failureKind(e), 'connection');
    const withOriginal = Object.assign(new Error('outer'), { originalError: connectionError() });
    assert.equal(failureKind(withOriginal), 'connection');
  });

  test('a cycle of causes ends; plain errors and non-errors are bugs', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    assert.equal(failureKind(a), 'bug');
    assert.equal(failureKind(new RangeError('offset out of range')), 'bug');
    assert.equal(failureKind('a string'), 'bug');
    assert.equal(failureKind(undefined), 'bug');
  });

  test('causeChain: one line along the causes, without repeats', async () => {
    const outage = await retried(async () => Promise.reject(connectionError()));
    const lost = new ConnectionLost('Kafka down', { cause: outage });
    assert.equal(causeChain(lost), 'Kafka down: Connection error: connect ECONNREFUSED 127.0.0.1:9092');
    assert.doesNotMatch(causeChain(lost), /\n/);
  });
});
