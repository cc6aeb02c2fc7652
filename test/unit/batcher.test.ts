import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Batcher, type OutRecord } from '../../src/kafka/batcher.ts';

/** A fake Kafka send whose acknowledgements the test releases one batch at a time. */
function controllableSend() {
  const sent: Array<{ records: OutRecord[]; ack: () => void; nack: (e: Error) => void }> = [];
  const send = (batch: Map<string, OutRecord[]>) =>
    new Promise<void>((resolve, reject) => {
      sent.push({ records: [...batch.values()].flat(), ack: resolve, nack: reject });
    });
  return { sent, send };
}

const rec = (n: number, size = 10): OutRecord => ({
  topic: 't',
  key: Buffer.from(String(n)),
  value: Buffer.alloc(size),
});
const tick = () => new Promise((r) => setImmediate(r));

test('a marker fires only after every record pushed before it is acknowledged', async () => {
  const { sent, send } = controllableSend();
  const b = new Batcher(send, { maxInFlightBytes: 1e6, maxBatchBytes: 1e6, onError: () => undefined });
  const fired: string[] = [];
  await b.push(rec(1));
  b.mark(() => fired.push('after-1'));
  await b.push(rec(2));
  await b.push(rec(3));
  b.mark(() => fired.push('after-3'));
  assert.equal(sent.length, 1, 'one send in flight at a time');
  assert.deepEqual(fired, []);
  sent[0]!.ack();
  await tick();
  assert.deepEqual(fired, ['after-1'], 'records 2 and 3 are accepted, not durable');
  assert.equal(sent.length, 2);
  assert.deepEqual(
    sent[1]!.records.map((r) => r.key!.toString()),
    ['2', '3'],
  );
  sent[1]!.ack();
  await tick();
  assert.deepEqual(fired, ['after-1', 'after-3']);
});

test('a marker with nothing pending fires at once', () => {
  const { send } = controllableSend();
  const b = new Batcher(send, { maxInFlightBytes: 1e6, maxBatchBytes: 1e6, onError: () => undefined });
  let fired = false;
  b.mark(() => (fired = true));
  assert.equal(fired, true);
});

test('push waits while the bytes in flight are at the bound (backpressure)', async () => {
  const { sent, send } = controllableSend();
  const b = new Batcher(send, { maxInFlightBytes: 100, maxBatchBytes: 1e6, onError: () => undefined });
  await b.push(rec(1, 120));
  let accepted = false;
  const p = b.push(rec(2)).then(() => (accepted = true));
  await tick();
  assert.equal(accepted, false, 'second record waits for room');
  sent[0]!.ack();
  await p;
  assert.equal(accepted, true);
});

test('batches are split at maxBatchBytes and sent in order', async () => {
  const { sent, send } = controllableSend();
  const b = new Batcher(send, { maxInFlightBytes: 1e6, maxBatchBytes: 100, onError: () => undefined });
  for (let i = 0; i < 10; i++) await b.push(rec(i, 30));
  const order: string[] = [];
  while (sent.length > 0) {
    const s = sent.shift()!;
    assert.ok(s.records.length >= 1);
    order.push(...s.records.map((r) => r.key!.toString()));
    s.ack();
    await tick();
  }
  assert.deepEqual(order, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  await b.flush();
  assert.equal(b.inFlightBytes, 0);
});

test('a failed send fails the batcher: markers after it never fire, push and flush reject', async () => {
  const { sent, send } = controllableSend();
  const errors: Error[] = [];
  const b = new Batcher(send, { maxInFlightBytes: 1e6, maxBatchBytes: 1e6, onError: (e) => errors.push(e) });
  let fired = false;
  await b.push(rec(1));
  b.mark(() => (fired = true));
  const flushed = b.flush();
  sent[0]!.nack(new Error('broker down'));
  await assert.rejects(flushed, /broker down/);
  assert.equal(fired, false, 'nothing is durable after a failure');
  assert.equal(errors.length, 1);
  await assert.rejects(b.push(rec(2)), /broker down/);
});

test('push also waits at maxInFlightRecords', async () => {
  const { sent, send } = controllableSend();
  const b = new Batcher(send, {
    maxInFlightBytes: 1e9,
    maxInFlightRecords: 2,
    maxBatchBytes: 1e6,
    onError: () => undefined,
  });
  await b.push(rec(1));
  await b.push(rec(2));
  let accepted = false;
  const p = b.push(rec(3)).then(() => (accepted = true));
  await tick();
  assert.equal(accepted, false, 'third record waits for an acknowledgement');
  sent[0]!.ack();
  await tick();
  sent[1]?.ack();
  await p;
  assert.equal(accepted, true);
});

test('after a failed send, a marker never fires, even with nothing pending any more', async () => {
  const { sent, send } = controllableSend();
  const errors: Error[] = [];
  const b = new Batcher(send, { maxInFlightBytes: 1e6, maxBatchBytes: 1e6, onError: (e) => errors.push(e) });
  await b.push(rec(1));
  const fired: string[] = [];
  b.mark(() => fired.push('covering record 1'));
  sent[0]!.nack(new Error('broker gone'));
  await tick();
  assert.equal(errors.length, 1);
  // The failed batch left the queue: nothing is filling, queued or in flight.
  b.mark(() => fired.push('after the failure'));
  await tick();
  assert.deepEqual(fired, []);
  await assert.rejects(b.push(rec(2)), /broker gone/);
  await assert.rejects(b.flush(), /broker gone/);
});
