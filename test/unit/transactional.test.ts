// How a fenced transactional producer is recognised and reported, without a broker: kafkajs's
// protocol error (INVALID_PRODUCER_EPOCH, or PRODUCER_FENCED's code 90 that its table lacks),
// wrapped as kafkajs wraps it, becomes one line the worker treats as the user's (FAILED, no retry).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { failureKind } from '../../src/errors.ts';
import { fencedError, isFenced, transactionalId } from '../../src/kafka/transactional.ts';

const protocolError = (type: string, code: number) =>
  Object.assign(new Error('Producer attempted an operation with an old epoch'), {
    name: 'KafkaJSProtocolError',
    type,
    code,
    retriable: false,
  });

describe('fenced producer', () => {
  it('recognises the epoch error, also inside kafkajs wrappers, and nothing else', () => {
    const epoch = protocolError('INVALID_PRODUCER_EPOCH', 47);
    assert.ok(isFenced(epoch));
    const wrapped = Object.assign(new Error('retries exhausted'), {
      name: 'KafkaJSNonRetriableError',
      cause: epoch,
    });
    assert.ok(isFenced(wrapped));
    assert.ok(isFenced(protocolError('KAFKAJS_UNKNOWN_ERROR_CODE', 90)));
    assert.ok(!isFenced(protocolError('NOT_LEADER_FOR_PARTITION', 6)));
    assert.ok(!isFenced(new Error('ECONNREFUSED')));
  });

  it('is one line naming the transactional id, and a user-visible failure (not a lost connection)', () => {
    const id = transactionalId('orders', 'pgcdc_orders');
    assert.equal(id, 'pgcdc-orders-pgcdc_orders');
    const err = fencedError(protocolError('INVALID_PRODUCER_EPOCH', 47), id);
    assert.match(
      err.message,
      /^Kafka fenced this worker's transactional producer \(transactional\.id pgcdc-orders-pgcdc_orders\)/,
    );
    assert.doesNotMatch(err.message, /\n/);
    assert.equal(failureKind(err), 'user');
    // Unclassified, kafkajs's error would be a bug (a stack trace), not the user's.
    assert.equal(failureKind(protocolError('INVALID_PRODUCER_EPOCH', 47)), 'bug');
  });
});
