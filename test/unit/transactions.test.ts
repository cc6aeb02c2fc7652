// Transaction decoding without a server: positions {commitLsn, seq}, resume inside a
// transaction, the selection filter, key-changing updates.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Relation } from '../../src/change/event.ts';
import type { PgoutputMessage } from '../../src/postgres/replication/pgoutput.ts';
import { Transactions, type TxPosition } from '../../src/pipeline/transactions.ts';

const rel = (oid: number, table: string): Relation => ({
  oid,
  schema: 'public',
  table,
  replicaIdentity: 'default',
  columns: [
    { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
    { name: 'v', typeOid: 25, typeMod: -1, isKey: false },
  ],
});
const A = rel(1, 'a');
const B = rel(2, 'b');

const begin = (finalLsn: bigint): PgoutputMessage => ({
  tag: 'begin',
  finalLsn,
  commitTimeMicros: 1n,
  xid: 7,
});
const insert = (r: Relation, id: string): PgoutputMessage => ({
  tag: 'insert',
  relationOid: r.oid,
  relation: r,
  after: [id, 'x'],
});
const commit = (endLsn: bigint): PgoutputMessage => ({
  tag: 'commit',
  flags: 0,
  commitLsn: endLsn - 8n,
  endLsn,
  commitTimeMicros: 1n,
});

type Dml = Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;

/** Feeds one transaction; returns "table:id@seq" per published change. */
function run(t: Transactions, finalLsn: bigint, changes: PgoutputMessage[]): string[] {
  const out: string[] = [];
  t.begin(begin(finalLsn) as Extract<PgoutputMessage, { tag: 'begin' }>);
  for (const m of changes) {
    for (const e of t.changes(m as Dml, 0n))
      out.push(`${e.op}${e.relation.table}:${String(e.after?.[0] ?? e.before?.[0])}@${e.seq}`);
  }
  return out;
}

function decoder(resume: TxPosition | null = null, selected = (_r: Relation) => true): Transactions {
  const t = new Transactions({ resume, truncateEvents: true, selected });
  t.relation(A);
  t.relation(B);
  return t;
}

describe('transactions', () => {
  it('numbers changes inside a transaction and reports the open position', () => {
    const t = decoder();
    assert.equal(t.open, null);
    assert.deepEqual(run(t, 100n, [insert(A, '1'), insert(A, '2')]), ['ca:1@0', 'ca:2@1']);
    assert.deepEqual(t.open, { commitLsn: 100n, seq: 2 });
    assert.deepEqual(t.commit(commit(108n) as Extract<PgoutputMessage, { tag: 'commit' }>), {
      endLsn: 108n,
      commitTimeMicros: 1n,
    });
    assert.equal(t.open, null);
  });

  it('resumes inside the transaction the position names, and only that one', () => {
    const t = decoder({ commitLsn: 100n, seq: 2 });
    assert.deepEqual(run(t, 100n, [insert(A, '1'), insert(A, '2'), insert(A, '3')]), ['ca:3@2']);
    t.commit(commit(108n) as Extract<PgoutputMessage, { tag: 'commit' }>);
    assert.deepEqual(run(t, 200n, [insert(A, '4')]), ['ca:4@0'], 'a later transaction is not skipped');
  });

  it('never reports a position behind the resumed one while it replays the durable prefix', () => {
    // A position stored while the prefix is skipped must not move the offset back: a crash then
    // would publish again what Kafka already has.
    const t = decoder({ commitLsn: 100n, seq: 3 });
    t.begin(begin(100n) as Extract<PgoutputMessage, { tag: 'begin' }>);
    const change = (id: string) =>
      t.changes(insert(A, id) as Extract<PgoutputMessage, { tag: 'insert' }>, 1n).map((e) => e.seq);
    assert.deepEqual(change('1'), []);
    assert.deepEqual(t.open, { commitLsn: 100n, seq: 3 }, 'one message skipped: still the resumed position');
    assert.equal(t.replaying, true);
    assert.deepEqual(change('2'), []);
    assert.deepEqual(change('3'), []);
    assert.deepEqual(t.open, { commitLsn: 100n, seq: 3 });
    assert.equal(t.replaying, true, 'the prefix is skipped, nothing new handed out yet');
    assert.deepEqual(change('4'), [3]);
    assert.deepEqual(t.open, { commitLsn: 100n, seq: 4 });
    assert.equal(t.replaying, false);
  });

  it('counts unselected changes in the position so a resume skips the same ones', () => {
    const t = decoder(null, (r) => r.table === 'a');
    assert.deepEqual(run(t, 100n, [insert(B, '1'), insert(A, '2'), insert(B, '3')]), ['ca:2@1']);
    assert.deepEqual(t.open, { commitLsn: 100n, seq: 3 });
  });

  it('turns a key-changing update into delete + create, both at the message position', () => {
    const t = decoder();
    const upd: PgoutputMessage = {
      tag: 'update',
      relationOid: A.oid,
      relation: A,
      before: ['1', null],
      beforeKind: 'key',
      after: ['2', 'x'],
    };
    assert.deepEqual(run(t, 100n, [upd, insert(A, '3')]), ['da:1@0', 'ca:2@0', 'ca:3@1']);
    assert.deepEqual(t.open, { commitLsn: 100n, seq: 2 }, 'the position counts messages, not events');
  });

  it('counts positions by message, whatever the configuration publishes', () => {
    const trunc: PgoutputMessage = {
      tag: 'truncate',
      relationOids: [A.oid],
      relations: [A],
      cascade: false,
      restartIdentity: false,
    };
    const upd: PgoutputMessage = {
      tag: 'update',
      relationOid: A.oid,
      relation: A,
      before: ['1', null],
      beforeKind: 'key',
      after: ['2', 'x'],
    };
    const tx = [trunc, upd, insert(A, '3'), insert(A, '4')];
    // A run that published truncates and stored {100, 2}; the restart publishes none: same skip.
    const first = decoder();
    assert.deepEqual(run(first, 100n, tx.slice(0, 2)), ['ta:undefined@0', 'da:1@1', 'ca:2@1']);
    assert.deepEqual(first.open, { commitLsn: 100n, seq: 2 });
    const restarted = new Transactions({ resume: first.open, truncateEvents: false, selected: () => true });
    restarted.relation(A);
    assert.deepEqual(run(restarted, 100n, tx), ['ca:3@2', 'ca:4@3']);
  });

  it('refuses a change outside a transaction', () => {
    const t = decoder();
    assert.throws(() => t.changes(insert(A, '1') as Dml, 0n), /outside a transaction/);
  });
});
