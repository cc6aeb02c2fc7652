// Debezium's source.snapshot markers and their precedence (RelationalSnapshotChangeEventSource's
// SnapshotMarkerResolver): last of the snapshot, first of the snapshot, last of a table, first of a table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { snapshotMarker } from '../../src/pipeline/snapshot.ts';

test('snapshot markers follow Debezium: tables [a1 a2 a3] [b1] [] [c1 c2]', () => {
  const rows: Array<[string, boolean, boolean, boolean, boolean]> = [
    // row, first in snapshot, last in snapshot, first in table, last in table
    ['a1', true, false, true, false],
    ['a2', false, false, false, false],
    ['a3', false, false, false, true],
    ['b1', false, false, true, true],
    ['c1', false, false, true, false],
    ['c2', false, true, false, true],
  ];
  assert.deepEqual(
    rows.map(([, ...f]) => snapshotMarker(...f)),
    [
      'first',
      'true',
      'last_in_data_collection',
      'last_in_data_collection',
      'first_in_data_collection',
      'last',
    ],
  );
  assert.equal(snapshotMarker(true, true, true, true), 'last', 'a one-row snapshot');
});
