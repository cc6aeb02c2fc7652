// The durability rule at the seam, against a sink whose acknowledgements the test controls (the
// Sink interface, not Kafka): the position moves only over acknowledged records, an LSN is
// confirmed only once the offset record covering it is acknowledged, and nothing after a failure.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Kafka } from 'kafkajs';
import { OffsetStore } from '../../src/kafka/offsets.ts';
import { Checkpoint } from '../../src/pipeline/checkpoint.ts';
import type { OutRecord, Sink } from '../../src/pipeline/sink.ts';

/** Accepts records; acknowledges them only when the test says so. */
class ControlledSink implements Sink {
  pushed: OutRecord[] = [];
  #unacked: Array<{ kind: 'record' } | { kind: 'marker'; run: () => void }> = [];
  failure: Error | null = null;
  get inFlightBytes(): number {
    return 0;
  }
  async push(record: OutRecord): Promise<void> {
    if (this.failure) throw this.failure;
    this.pushed.push(record);
    this.#unacked.push({ kind: 'record' });
  }
  mark(onDurable: () => void): void {
    if (this.#unacked.length === 0) onDurable();
    else this.#unacked.push({ kind: 'marker', run: onDurable });
  }
  async flush(): Promise<void> {
    this.ack();
  }
  /** Kafka acknowledges the first `n` records pushed (all by default); markers behind them run. */
  ack(n = Infinity): void {
    if (this.failure) return;
    let records = 0;
    while (this.#unacked.length > 0) {
      const head = this.#unacked[0]!;
      if (head.kind === 'record') {
        if (records === n) return;
        records++;
      } else head.run();
      this.#unacked.shift();
    }
  }
  fail(): void {
    this.failure = new Error('broker gone');
    this.#unacked = [];
  }
}

const offsets = new OffsetStore({} as Kafka, 'offsets', { connector: 'c', slot: 's' });
const rec = (n: number): OutRecord => ({ topic: 't', key: Buffer.from(String(n)), value: Buffer.from('v') });

function setup() {
  const sink = new ControlledSink();
  const checkpoint = new Checkpoint(sink, offsets, null);
  const confirmed: bigint[] = [];
  checkpoint.confirmTo({ confirm: (lsn) => confirmed.push(lsn) });
  checkpoint.begin({ lsn: '0/10' }, false);
  return { sink, checkpoint, confirmed };
}

describe('checkpoint', () => {
  it('moves the position only once the records before it are acknowledged', async () => {
    const { sink, checkpoint } = setup();
    await sink.push(rec(1));
    checkpoint.afterDurable(() => ({ lsn: '0/20' }));
    await sink.push(rec(2));
    checkpoint.afterDurable(() => ({ lsn: '0/30' }));
    assert.equal(checkpoint.position.lsn, '0/10', 'accepted is not durable');
    sink.ack(1);
    assert.equal(checkpoint.position.lsn, '0/20');
    sink.ack();
    assert.equal(checkpoint.position.lsn, '0/30');
  });

  it('confirms an LSN only when the offset record that holds it is acknowledged, and stores it then', async () => {
    const { sink, checkpoint, confirmed } = setup();
    await sink.push(rec(1));
    checkpoint.afterDurable(() => ({ lsn: '0/20' }));
    sink.ack();
    await checkpoint.write();
    const offsetRecord = sink.pushed.at(-1)!;
    assert.equal(offsetRecord.topic, 'offsets');
    assert.equal(JSON.parse(offsetRecord.value!.toString()).lsn, '0/20');
    assert.deepEqual(confirmed, [], 'the offset record is only accepted');
    assert.equal(checkpoint.stored, null);
    sink.ack();
    assert.deepEqual(confirmed, [0x20n]);
    assert.equal((checkpoint.stored as { lsn: string } | null)?.lsn, '0/20');
  });

  it('keeps a position inside a transaction until the commit clears it', async () => {
    const { sink, checkpoint } = setup();
    checkpoint.afterDurable(() => ({ txCommitLsn: '0/40', txSeq: 7 }));
    assert.deepEqual([checkpoint.position.txCommitLsn, checkpoint.position.txSeq], ['0/40', 7]);
    await sink.push(rec(1));
    checkpoint.afterDurable(() => ({ lsn: '0/48', txCommitLsn: undefined, txSeq: undefined }));
    sink.ack();
    assert.equal(checkpoint.position.lsn, '0/48');
    assert.equal('txCommitLsn' in checkpoint.position, false);
    assert.equal('txSeq' in checkpoint.position, false);
  });

  it('after a send failure: no position move, no offset written, nothing confirmed', async () => {
    const { sink, checkpoint, confirmed } = setup();
    await sink.push(rec(1));
    checkpoint.afterDurable(() => ({ lsn: '0/20' }));
    sink.fail();
    await checkpoint.write();
    await checkpoint.drain();
    assert.equal(checkpoint.position.lsn, '0/10');
    assert.equal(sink.pushed.length, 1, 'no offset record after the failure');
    assert.deepEqual(confirmed, []);
  });
});
