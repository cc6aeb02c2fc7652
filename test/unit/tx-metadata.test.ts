// Logical decoding messages and transaction metadata without a server: which messages are
// published (never pgcdc's heartbeat), the seq a transactional message takes, BEGIN/END and the
// transaction block, and a resume inside a transaction that neither repeats BEGIN nor miscounts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Relation } from '../../src/change/event.ts';
import type { LogicalDecodingMessage, PgoutputMessage } from '../../src/postgres/replication/pgoutput.ts';
import { HEARTBEAT_PREFIX, messageAction } from '../../src/pipeline/messages.ts';
import { Transactions } from '../../src/pipeline/transactions.ts';
import { TransactionMetadata } from '../../src/pipeline/tx-metadata.ts';
import { DEFAULT_HEARTBEAT_QUERY } from '../../src/worker/wal-guard.ts';
import {
  messageKeyType,
  messageValue,
  messageValueType,
  transactionValue,
  transactionValueType,
} from '../../src/avro/metadata.ts';

const rel = (oid: number, table: string): Relation => ({
  oid,
  schema: 'public',
  table,
  replicaIdentity: 'default',
  columns: [{ name: 'id', typeOid: 23, typeMod: -1, isKey: true }],
});
const A = rel(1, 'a');
const B = rel(2, 'b');
type Dml = Extract<PgoutputMessage, { tag: 'insert' }>;
const insert = (r: Relation, id: string): Dml => ({
  tag: 'insert',
  relationOid: r.oid,
  relation: r,
  after: [id],
});
const message = (prefix: string, transactional: boolean): LogicalDecodingMessage => ({
  tag: 'message',
  transactional,
  lsn: 500n,
  prefix,
  content: Buffer.from('hi'),
});

describe('logical decoding messages', () => {
  it('never publishes the heartbeat, publishes others only when enabled and the prefix is listed', () => {
    assert.match(DEFAULT_HEARTBEAT_QUERY, new RegExp(`false, '${HEARTBEAT_PREFIX}'`));
    assert.equal(messageAction(message(HEARTBEAT_PREFIX, false), { messageEvents: true }), 'heartbeat');
    assert.equal(messageAction(message(HEARTBEAT_PREFIX, true), { messageEvents: true }), 'heartbeat');
    assert.equal(messageAction(message('app', false), {}), 'ignore');
    assert.equal(messageAction(message('app', false), { messageEvents: true }), 'publish');
    assert.equal(
      messageAction(message('app', true), { messageEvents: true, messagePrefixes: ['app'] }),
      'publish',
    );
    assert.equal(
      messageAction(message('other', true), { messageEvents: true, messagePrefixes: ['app'] }),
      'ignore',
    );
  });

  it('a transactional message takes a seq in its transaction, so a resume skips it exactly once', () => {
    const t = new Transactions({
      resume: { commitLsn: 900n, seq: 2 },
      truncateEvents: false,
      selected: () => true,
    });
    t.relation(A);
    t.begin({ tag: 'begin', finalLsn: 900n, commitTimeMicros: 5n, xid: 7 });
    assert.deepEqual(t.changes(insert(A, '1'), 0n), []); // seq 0: durable before
    assert.equal(t.message(message('app', true))?.skip, true); // seq 1: durable before
    const ctx = t.message(message('app', true))!; // seq 2: new
    assert.deepEqual(ctx, { xid: 7, commitLsn: 900n, commitTimeMicros: 5n, skip: false });
    assert.equal(t.changes(insert(A, '2'), 0n)[0]?.seq, 3);
    assert.equal(t.message(message('app', false)), null); // not part of the transaction
    assert.equal(t.open?.seq, 4);
  });

  it('encodes op m with prefix key and bytes content', () => {
    const v = messageValue(
      {
        transactional: false,
        lsn: 500n,
        prefix: 'app',
        content: Buffer.from([0, 255]),
        xid: null,
        commitLsn: null,
        commitTimeMicros: null,
      },
      { name: 'srv', database: 'db' },
      1_000,
    );
    const back = messageValueType.fromBuffer(messageValueType.toBuffer(v)) as typeof v & {
      message: { prefix: string; content: Buffer };
      source: { lsn: bigint; txId: bigint | null; table: string };
    };
    assert.equal(back.op, 'm');
    assert.equal(back.message.prefix, 'app');
    assert.deepEqual([...back.message.content], [0, 255]);
    assert.equal(back.source.lsn, 500n);
    assert.equal(back.source.txId, null);
    const key = messageKeyType.fromBuffer(messageKeyType.toBuffer({ prefix: 'app' })) as { prefix: string };
    assert.equal(key.prefix, 'app');
  });
});

describe('transaction metadata', () => {
  it('BEGIN before the first change, orders per transaction and per table, END with the counts', () => {
    const m = new TransactionMetadata();
    m.begin(7, 900n, 5_000n);
    const e1 = m.event(A);
    assert.equal(e1.begin?.status, 'BEGIN');
    assert.equal(e1.begin?.id, '7:900');
    assert.deepEqual(e1.block, { id: '7:900', totalOrder: 1n, dataCollectionOrder: 1n });
    const e2 = m.event(B);
    const e3 = m.event(A);
    assert.equal(e2.begin, null);
    assert.deepEqual(e2.block, { id: '7:900', totalOrder: 2n, dataCollectionOrder: 1n });
    assert.deepEqual(e3.block, { id: '7:900', totalOrder: 3n, dataCollectionOrder: 2n });
    const end = m.end()!;
    assert.equal(end.status, 'END');
    assert.equal(end.eventCount, 3);
    assert.deepEqual(end.dataCollections, [
      { dataCollection: 'public.a', eventCount: 2 },
      { dataCollection: 'public.b', eventCount: 1 },
    ]);
    assert.equal(end.tsMs, 5n);
    const back = transactionValueType.fromBuffer(transactionValueType.toBuffer(transactionValue(end))) as {
      event_count: bigint;
      data_collections: Array<{ data_collection: string; event_count: bigint }>;
    };
    assert.equal(back.event_count, 3n);
    assert.equal(back.data_collections[0]?.data_collection, 'public.a');
  });

  it('a transaction with nothing published has neither BEGIN nor END', () => {
    const m = new TransactionMetadata();
    m.begin(8, 1000n, 1n);
    assert.equal(m.end(), null);
  });

  it('resumed inside a transaction: no second BEGIN, orders and counts go on from the skipped changes', () => {
    const m = new TransactionMetadata();
    const t = new Transactions({
      resume: { commitLsn: 900n, seq: 2 },
      truncateEvents: false,
      selected: (r) => r.table !== 'b',
      onSkipped: (e) => m.skipped(e.relation),
    });
    t.relation(A);
    t.relation(B);
    t.begin({ tag: 'begin', finalLsn: 900n, commitTimeMicros: 1n, xid: 7 });
    m.begin(7, 900n, 1n);
    const published = [insert(A, '1'), insert(B, '2'), insert(A, '3')].flatMap((msg) =>
      t.changes(msg, 0n).map((e) => m.event(e.relation)),
    );
    assert.equal(published.length, 1);
    assert.equal(published[0]!.begin, null);
    assert.deepEqual(published[0]!.block, { id: '7:900', totalOrder: 2n, dataCollectionOrder: 2n });
    assert.equal(m.end()?.eventCount, 2);
  });
});
