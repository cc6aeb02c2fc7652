// The chunked load's drop rule (src/pipeline/chunks.ts): which rows of a chunk reach Kafka, decided
// by the chunk's snapshot, with 32-bit xids from pgoutput compared across an epoch boundary.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChangeEvent, Relation, Row } from '../../src/change/event.ts';
import { ChunkWindows, keyOf, parseSnapshot, visibleIn, widenXid } from '../../src/pipeline/chunks.ts';

const relation: Relation = {
  oid: 1,
  schema: 'public',
  table: 't',
  replicaIdentity: 'default',
  columns: [
    { name: 'a', typeOid: 23, typeMod: -1, isKey: true },
    { name: 'b', typeOid: 25, typeMod: -1, isKey: true },
    { name: 'v', typeOid: 25, typeMod: -1, isKey: false },
  ],
};
const keys = ['a', 'b'];

const change = (op: ChangeEvent['op'], xid: number, before: Row | null, after: Row | null): ChangeEvent => ({
  op,
  relation,
  before,
  after,
  xid,
  lsn: 0n,
  commitLsn: 0n,
  commitTimeMicros: 0n,
  seq: 0,
  snapshot: 'false',
});

const rows: Row[] = [
  ['1', 'x', 'one'],
  ['2', 'y', 'two'],
  ['3', 'z', 'three'],
];

describe('chunk snapshots and xids', () => {
  test('pg_current_snapshot text is parsed with its in-progress list', () => {
    assert.deepEqual(parseSnapshot('100:105:100,103'), { xmin: 100n, xmax: 105n, xip: [100n, 103n] });
    assert.deepEqual(parseSnapshot('7:7:'), { xmin: 7n, xmax: 7n, xip: [] });
  });

  test('visibility: below xmin seen, in progress or at/after xmax not seen', () => {
    const snap = parseSnapshot('100:105:100,103');
    assert.equal(visibleIn(snap, 99), true);
    assert.equal(visibleIn(snap, 100), false);
    assert.equal(visibleIn(snap, 101), true);
    assert.equal(visibleIn(snap, 103), false);
    assert.equal(visibleIn(snap, 105), false);
  });

  test('a 32-bit xid is widened into the epoch nearest the snapshot, across wraparound', () => {
    const epoch3 = 3n << 32n;
    // Snapshot just after a wraparound: an xid just below 2^32 belongs to the previous epoch.
    assert.equal(widenXid(0xfffffff0, epoch3 + 5n), epoch3 - 16n);
    // Snapshot just before one: a small xid belongs to the next epoch.
    assert.equal(widenXid(3, epoch3 - 10n), epoch3 + 3n);
    assert.equal(widenXid(42, epoch3 + 100n), epoch3 + 42n);
    const snap = parseSnapshot(`${epoch3 + 5n}:${epoch3 + 8n}:${epoch3 + 6n}`);
    assert.equal(visibleIn(snap, 0xfffffff0), true, 'committed in the previous epoch');
    assert.equal(visibleIn(snap, 6), false, 'in progress in this epoch');
    assert.equal(visibleIn(snap, 9), false, 'after the snapshot');
  });

  test('keys are compared by name, whatever the column order of the stream relation', () => {
    const reordered: Relation = {
      ...relation,
      columns: [relation.columns[2]!, relation.columns[1]!, relation.columns[0]!],
    };
    assert.equal(keyOf(relation, ['1', 'x', 'v'], keys), keyOf(reordered, ['w', 'x', '1'], keys));
  });
});

describe('chunk windows', () => {
  const snap = parseSnapshot('100:110:105');

  test('a change the snapshot does not see drops its key; a change it sees does not', () => {
    const w = new ChunkWindows();
    const id = w.openWindow('public.t', keys);
    w.setSnapshot(id, snap);
    w.observe('public.t', change('u', 104, null, ['1', 'x', 'old but seen'])); // visible: in the chunk already
    w.observe('public.t', change('u', 105, null, ['2', 'y', 'newer'])); // in progress at the snapshot
    w.observe('public.t', change('d', 111, ['3', 'z', null], null)); // after the snapshot
    w.observe('public.other', change('u', 112, null, ['1', 'x', 'other table']));
    const out = w.close(id, rows, relation);
    assert.deepEqual(out, { kind: 'emit', rows: [rows[0]], dropped: 2 });
  });

  test('changes recorded before the snapshot is known are judged once it is', () => {
    const w = new ChunkWindows();
    const id = w.openWindow('public.t', keys);
    w.observe('public.t', change('u', 99, null, ['1', 'x', 'seen'])); // will be visible
    w.observe('public.t', change('c', 120, null, ['2', 'y', 'not seen']));
    w.setSnapshot(id, snap);
    assert.deepEqual(w.close(id, rows, relation), { kind: 'emit', rows: [rows[0], rows[2]], dropped: 1 });
  });

  test('a key change drops both the old and the new key', () => {
    const w = new ChunkWindows();
    const id = w.openWindow('public.t', keys);
    w.setSnapshot(id, snap);
    w.observe('public.t', change('d', 120, ['1', 'x', null], null));
    w.observe('public.t', change('c', 120, null, ['3', 'z', 'moved']));
    assert.deepEqual(w.close(id, rows, relation), { kind: 'emit', rows: [rows[1]], dropped: 2 });
  });

  test('a transaction decoded before the window opened but not visible to its snapshot: read again', () => {
    const w = new ChunkWindows();
    const early = w.openWindow('public.t', keys);
    w.observe('public.t', change('u', 105, null, ['9', 'q', 'early'])); // decoded, and then…
    w.discard(early);
    const id = w.openWindow('public.t', keys); // …a new window whose snapshot still has 105 running
    w.setSnapshot(id, snap);
    const out = w.close(id, rows, relation);
    assert.equal(out.kind, 'retry');
    // Once that transaction is visible, the chunk goes through.
    const again = w.openWindow('public.t', keys);
    w.setSnapshot(again, parseSnapshot('106:110:'));
    assert.equal(w.close(again, rows, relation).kind, 'emit');
  });

  test('a truncate the snapshot does not see: the chunk is read again', () => {
    const w = new ChunkWindows();
    const id = w.openWindow('public.t', keys);
    w.setSnapshot(id, snap);
    w.truncate('public.t', 130);
    assert.equal(w.close(id, rows, relation).kind, 'retry');
    const seen = w.openWindow('public.t', keys);
    w.setSnapshot(seen, parseSnapshot('200:200:'));
    w.truncate('public.t', 130);
    assert.equal(w.close(seen, rows, relation).kind, 'emit');
  });

  test('a window closed without a snapshot is read again; an unknown window too', () => {
    const w = new ChunkWindows();
    const id = w.openWindow('public.t', keys);
    assert.equal(w.close(id, rows, relation).kind, 'retry');
    assert.equal(w.close(999, rows, relation).kind, 'retry');
    assert.equal(w.open, 0);
  });
});
