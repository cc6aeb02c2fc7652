// The xmin cursor logic (src/capture/xmin.ts): widening 32-bit xmin values to xid8 across a
// wraparound, the range a poll reads, and when a stored cursor can no longer be trusted.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TRUST_WINDOW,
  XID_EPOCH,
  inRange,
  judgeCursor,
  parseSnapshot,
  widenXid,
  xminCondition,
  xminRange,
} from '../../src/capture/xmin.ts';
import { loadConfig } from '../../src/config/load.ts';
import { leftoverSlotCheck, primaryKeyCheck, standbyReadCheck } from '../../src/postgres/preflight/xmin.ts';
import { formatLine } from '../../src/postgres/preflight/result.ts';
import type { TableFacts } from '../../src/postgres/preflight/rules.ts';

const E = XID_EPOCH;

describe('xmin cursor', () => {
  test('parses pg_snapshot text', () => {
    assert.deepEqual(parseSnapshot('4294967300:4294967310:4294967302,4294967305'), {
      xmin: E + 4n,
      xmax: E + 14n,
      xip: [E + 6n, E + 9n],
    });
    assert.deepEqual(parseSnapshot('740:740:'), { xmin: 740n, xmax: 740n, xip: [] });
    assert.throws(() => parseSnapshot('nonsense'), /not a pg_snapshot/);
  });

  test('a row xid is widened into the 2^32 xids below the snapshot xmax', () => {
    // Same epoch as xmax.
    assert.equal(widenXid(1000, 5n * E + 2000n), 5n * E + 1000n);
    // Numerically above xmax's low bits: written before the counter wrapped, previous epoch.
    assert.equal(widenXid(4_294_967_000, 5n * E + 2000n), 4n * E + 4_294_967_000n);
    // Exactly xmax's low bits cannot be visible: previous epoch.
    assert.equal(widenXid(2000, 5n * E + 2000n), 4n * E + 2000n);
    // Epoch 0.
    assert.equal(widenXid(10, 100n), 10n);
    assert.throws(() => widenXid(E, 100n), /not a 32-bit xid/);
  });

  test('no cursor reads everything; a trusted cursor reads from itself', () => {
    const snap = { xmin: E + 50n, xmax: E + 60n, xip: [] };
    assert.deepEqual(judgeCursor(null, snap), { kind: 'all' });
    assert.deepEqual(judgeCursor(E + 40n, snap), { kind: 'from', from: E + 40n });
    assert.deepEqual(judgeCursor(E + 60n, snap), { kind: 'from', from: E + 60n });
  });

  test('a cursor 2^31 or more behind, or ahead of the server, is a resync', () => {
    const xmax = 7n * E + 100n;
    const snap = { xmin: xmax, xmax, xip: [] };
    assert.equal(judgeCursor(xmax - TRUST_WINDOW + 1n, snap).kind, 'from');
    const old = judgeCursor(xmax - TRUST_WINDOW, snap);
    assert.equal(old.kind, 'resync');
    assert.match((old as { reason: string }).reason, /more than 2\^31/);
    const ahead = judgeCursor(xmax + 1n, snap);
    assert.equal(ahead.kind, 'resync');
    assert.match((ahead as { reason: string }).reason, /ahead of the server/);
  });

  test('the range within one epoch', () => {
    const r = xminRange(3n * E + 1000n, 3n * E + 5000n)!;
    assert.deepEqual(r, { lo: 1000n, hi: 5000n, wraps: false });
    assert.ok(inRange(1000n, r));
    assert.ok(inRange(4999n, r));
    assert.ok(!inRange(5000n, r), 'at xmax: not visible yet');
    assert.ok(!inRange(999n, r), 'before the cursor');
    assert.ok(!inRange(4_000_000_000n, r), 'previous epoch');
    assert.ok(!inRange(2n, r), 'FrozenTransactionId');
    assert.equal(xminCondition('x', r), '(x >= 1000 AND x < 5000)');
    assert.equal(xminRange(3n * E + 5000n, 3n * E + 5000n), null, 'nothing newer than the cursor');
  });

  test('a simulated wraparound: rows on both sides of the epoch boundary are read, older ones not', () => {
    // The cursor was taken just before the 32-bit counter wrapped; the poll runs after it.
    const cursor = 9n * E + (E - 500n); // low bits 4294966796
    const xmax = 10n * E + 700n; // the counter wrapped, skipping 0, 1, 2
    assert.equal(judgeCursor(cursor, { xmin: xmax, xmax, xip: [] }).kind, 'from');
    const r = xminRange(cursor, xmax)!;
    assert.deepEqual(r, { lo: E - 500n, hi: 700n, wraps: true });
    const rows = [
      { xid: E - 501n, seen: false }, // before the cursor, previous epoch
      { xid: E - 500n, seen: true }, // the cursor itself
      { xid: E - 1n, seen: true }, // the last xid before the wrap
      { xid: 2n, seen: false }, // frozen
      { xid: 3n, seen: true }, // the first xid after the wrap
      { xid: 699n, seen: true },
      { xid: 700n, seen: false }, // xmax: not visible
      { xid: 2_000_000_000n, seen: false }, // far in the previous epoch's past
    ];
    for (const row of rows) {
      assert.equal(inRange(row.xid, r), row.seen, `xid ${row.xid}`);
      // And the widening agrees: seen exactly when the xid8 is in [cursor, xmax).
      if (row.xid >= 3n) {
        const full = widenXid(row.xid, xmax);
        assert.equal(full >= cursor && full < xmax, row.seen, `xid8 of ${row.xid}`);
      }
    }
    assert.equal(xminCondition('x', r), '(x >= 4294966796 OR (x >= 3 AND x < 700))');
  });

  test('wrapped exactly at the boundary: xmax low bits 0', () => {
    const r = xminRange(5n * E - 10n, 5n * E)!;
    assert.deepEqual(r, { lo: E - 10n, hi: 0n, wraps: true });
    assert.equal(xminCondition('x', r), '(x >= 4294967286)');
    assert.ok(inRange(E - 1n, r));
    assert.ok(!inRange(5n, r));
  });

  test('a cursor on a special xid starts at the first normal one', () => {
    const r = xminRange(2n * E, 2n * E + 50n)!;
    assert.deepEqual(r, { lo: 3n, hi: 50n, wraps: false });
  });
});

describe('capture settings', () => {
  const env = {
    PGCDC_NAME: 'c',
    PGCDC_POSTGRES_HOST: 'db',
    PGCDC_POSTGRES_DATABASE: 'app',
    PGCDC_POSTGRES_USER: 'u',
    PGCDC_KAFKA_BROKERS: 'k:9092',
    PGCDC_REGISTRY_URL: 'http://r',
  };

  test('logical by default; xmin with its poll interval and chunk bounds', () => {
    assert.equal(loadConfig({ env }).capture.method, 'logical');
    const cfg = loadConfig({
      env: { ...env, PGCDC_CAPTURE_METHOD: 'xmin' },
      args: ['--capture.xmin.chunkBytes=1MiB', '--capture.xmin.pollIntervalMs=500'],
    });
    assert.deepEqual(cfg.capture, {
      method: 'xmin',
      xmin: { pollIntervalMs: 500, chunkRows: 10_000, chunkBytes: 1024 * 1024 },
    });
  });

  test('xmin with exactly-once delivery is refused in one line', () => {
    assert.throws(
      () =>
        loadConfig({ env: { ...env, PGCDC_CAPTURE_METHOD: 'xmin', PGCDC_DELIVERY_MODE: 'exactly-once' } }),
      (err: Error & { problems?: string[] }) =>
        err.problems?.length === 1 &&
        /^delivery\.mode: exactly-once cannot be combined with capture\.method xmin/.test(err.problems[0]!),
    );
    assert.throws(() => loadConfig({ env: { ...env, PGCDC_CAPTURE_METHOD: 'cdc' } }), /capture\.method/);
  });
});

describe('xmin checks', () => {
  const table = (
    name: string,
    primaryKey: string[],
    replicaIdentity: TableFacts['replicaIdentity'] = 'default',
  ) =>
    ({ schema: 'public', table: name, sqlName: `public.${name}`, primaryKey, replicaIdentity }) as TableFacts;

  test('a table without a primary key (or identity index) fails with the fix', () => {
    assert.equal(primaryKeyCheck([table('a', ['id']), table('b', [], 'index')]).status, 'ok');
    const r = primaryKeyCheck([table('a', ['id']), table('c', [])]);
    assert.equal(r.status, 'failed');
    assert.match(
      formatLine(r),
      /public\.c has no primary key; .*fix: add one \(ALTER TABLE public\.c ADD PRIMARY KEY/,
    );
  });

  test('a standby without hot_standby_feedback is a warning, a slot left over from logical mode too', () => {
    assert.equal(standbyReadCheck(false, false).status, 'ok');
    assert.equal(standbyReadCheck(true, true).status, 'ok');
    assert.match(formatLine(standbyReadCheck(true, false)), /^warning .*hot_standby_feedback = on/);
    assert.equal(leftoverSlotCheck(undefined, 'app'), null);
    assert.match(
      formatLine(leftoverSlotCheck({ name: 'pgcdc_c' }, 'app')!),
      /^warning .*keeps WAL.*pg_drop_replication_slot\('pgcdc_c'\)/,
    );
  });
});
