// The WAL budget's pure parts: where a slot stands against the levels, what `pgcdc check` says
// about the levels beside the server's max_slot_wal_keep_size, and the lost-slot line of the plan.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { walBudgetState } from '../../src/worker/wal-guard.ts';
import { walBudgetCheck } from '../../src/postgres/preflight/wal-budget.ts';
import { lostReason } from '../../src/pipeline/plan.ts';
import type { SlotInfo } from '../../src/postgres/replication/slot.ts';
import { loadConfig } from '../../src/config/load.ts';

const MiB = 1024 ** 2;

describe('WAL budget state', () => {
  const b = { walWarnBytes: 10 * MiB, walCriticalBytes: 100 * MiB, walCriticalAction: 'warn' as const };
  const at = (retainedBytes: number | null, walStatus: string | null = 'reserved') =>
    walBudgetState({ retainedBytes, walStatus }, b);

  it('is ok, warning, critical by the retained bytes, strictly above each level', () => {
    assert.equal(at(0), 'ok');
    assert.equal(at(10 * MiB), 'ok');
    assert.equal(at(10 * MiB + 1), 'warning');
    assert.equal(at(100 * MiB), 'warning');
    assert.equal(at(100 * MiB + 1), 'critical');
    assert.equal(at(null), 'ok');
  });

  it('is critical when the server is about to invalidate the slot or has, whatever the bytes', () => {
    assert.equal(at(1, 'unreserved'), 'critical');
    assert.equal(at(null, 'lost'), 'critical');
    assert.equal(at(1, 'extended'), 'ok');
  });

  it('a level of 0 is off', () => {
    const off = { walWarnBytes: 0, walCriticalBytes: 0 };
    assert.equal(walBudgetState({ retainedBytes: 1e15, walStatus: 'reserved' }, off), 'ok');
  });
});

describe('pgcdc check: the WAL budget beside max_slot_wal_keep_size', () => {
  const b = { walWarnBytes: 1024 * MiB, walCriticalBytes: 10240 * MiB, walCriticalAction: 'stop' as const };

  it('warns when the critical level is not below the server limit: the server invalidates first', () => {
    const r = walBudgetCheck({ maxSlotWalKeepSizeBytes: 4096 * MiB, idleSlotTimeoutSeconds: null }, b);
    assert.equal(r.status, 'warning');
    assert.match(
      r.message,
      /heartbeat\.walCriticalBytes \(10 GiB\) is not below the server's max_slot_wal_keep_size \(4 GiB\)/,
    );
    assert.match(r.fix ?? '', /below 4 GiB/);
  });

  it('is ok below the server limit, and with no server limit says only the budget bounds the WAL', () => {
    const below = walBudgetCheck({ maxSlotWalKeepSizeBytes: 20480 * MiB, idleSlotTimeoutSeconds: null }, b);
    assert.equal(below.status, 'ok');
    const unlimited = walBudgetCheck({ maxSlotWalKeepSizeBytes: null, idleSlotTimeoutSeconds: 0 }, b);
    assert.equal(unlimited.status, 'ok');
    assert.match(
      unlimited.message,
      /without limit, until its disk is full; pgcdc releases the slot past the critical level/,
    );
    const warnOnly = walBudgetCheck(
      { maxSlotWalKeepSizeBytes: null, idleSlotTimeoutSeconds: null },
      { ...b, walCriticalAction: 'warn' },
    );
    assert.match(warnOnly.message, /pgcdc only warns \(set max_slot_wal_keep_size/);
    assert.doesNotMatch(unlimited.message, /idle_replication_slot_timeout/);
  });

  it("names PostgreSQL 18's idle_replication_slot_timeout when it is set", () => {
    const r = walBudgetCheck({ maxSlotWalKeepSizeBytes: null, idleSlotTimeoutSeconds: 3600 }, b);
    assert.match(r.message, /idle_replication_slot_timeout = 3600 s/);
  });
});

describe('an invalidated slot at start (src/pipeline/plan.ts lostReason)', () => {
  const slot = (over: Partial<SlotInfo>): SlotInfo => ({
    name: 's',
    plugin: 'pgoutput',
    database: 'db',
    active: false,
    activePid: null,
    confirmedFlush: 16n,
    restartLsn: 16n,
    walStatus: 'lost',
    invalidationReason: null,
    ...over,
  });
  const stored = { lsn: '0/10' } as Parameters<typeof lostReason>[1];

  it('names the slot and the reason the server gave', () => {
    assert.equal(
      lostReason('s', stored, slot({ invalidationReason: 'idle_timeout' })),
      'replication slot s was invalidated by the server (invalidation_reason = idle_timeout: it was idle longer than idle_replication_slot_timeout)',
    );
    assert.match(
      lostReason('s', stored, slot({ invalidationReason: 'wal_removed' }))!,
      /max_slot_wal_keep_size/,
    );
    assert.match(lostReason('s', stored, slot({}))!, /wal_status = lost/);
  });

  it('also without a stored offset (snapshot.mode=never streams from the slot)', () => {
    assert.match(lostReason('s', null, slot({}))!, /invalidated/);
    assert.equal(lostReason('s', null, slot({ walStatus: 'reserved' })), null);
  });
});

describe('config: heartbeat.walCriticalAction', () => {
  const base = {
    PGCDC_NAME: 'x',
    PGCDC_POSTGRES_HOST: 'h',
    PGCDC_POSTGRES_USER: 'u',
    PGCDC_POSTGRES_DATABASE: 'd',
    PGCDC_KAFKA_BROKERS: 'k:9092',
    PGCDC_REGISTRY_URL: 'http://r',
  };

  it('defaults to warn with a 10 GiB critical level', () => {
    const cfg = loadConfig({ env: base });
    assert.deepEqual(
      [cfg.heartbeat.walWarnBytes, cfg.heartbeat.walCriticalBytes, cfg.heartbeat.walCriticalAction],
      [1024 ** 3, 10 * 1024 ** 3, 'warn'],
    );
  });

  it('refuses stop without a critical level, in one line with the fix', () => {
    assert.throws(
      () =>
        loadConfig({
          env: {
            ...base,
            PGCDC_HEARTBEAT_WAL_CRITICAL_ACTION: 'stop',
            PGCDC_HEARTBEAT_WAL_CRITICAL_BYTES: '0',
          },
        }),
      /heartbeat\.walCriticalAction: stop needs a critical level; set heartbeat\.walCriticalBytes above 0/,
    );
  });
});
