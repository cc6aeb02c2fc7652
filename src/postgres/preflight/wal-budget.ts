// pgcdc's WAL budget (heartbeat.walWarnBytes, walCriticalBytes, walCriticalAction) beside the
// server's own limits on what a slot may hold: max_slot_wal_keep_size (13+) and PostgreSQL 18's
// idle_replication_slot_timeout. The server acts first when its limit is the lower one: it
// invalidates the slot, and pgcdc's critical level (and walCriticalAction=stop) never comes.
import type pg from 'pg';
import { ok, prettyBytes, warning, type CheckResult } from './result.ts';

export interface WalLimits {
  /** max_slot_wal_keep_size in bytes; null: unlimited (-1) or not there (before 13). */
  maxSlotWalKeepSizeBytes: number | null;
  /** idle_replication_slot_timeout in seconds (18+); null or 0: off. */
  idleSlotTimeoutSeconds: number | null;
}

export interface WalBudgetSettings {
  walWarnBytes: number;
  walCriticalBytes?: number;
  walCriticalAction?: 'warn' | 'stop';
}

export async function probeWalLimits(client: pg.Client): Promise<WalLimits> {
  const { rows } = await client.query<{ keep: string | null; idle: string | null; unit: string | null }>(
    `SELECT (SELECT pg_size_bytes(current_setting('max_slot_wal_keep_size', true)))::text AS keep,
            s.setting AS idle, s.unit
       FROM (SELECT 1) one
       LEFT JOIN pg_settings s ON s.name = 'idle_replication_slot_timeout'`,
  );
  const r = rows[0]!;
  const keep = r.keep === null ? null : Number(r.keep);
  const idle =
    r.idle === null ? null : Number(r.idle) * (r.unit === 'min' ? 60 : r.unit === 'ms' ? 0.001 : 1);
  return { maxSlotWalKeepSizeBytes: keep === null || keep < 0 ? null : keep, idleSlotTimeoutSeconds: idle };
}

export function walBudgetCheck(limits: WalLimits, b: WalBudgetSettings): CheckResult {
  const critical = b.walCriticalBytes ?? 0;
  const action = b.walCriticalAction ?? 'warn';
  const levels = [
    b.walWarnBytes > 0 ? `warning above ${prettyBytes(b.walWarnBytes)}` : 'no warning level',
    critical > 0
      ? `critical above ${prettyBytes(critical)} (walCriticalAction=${action})`
      : 'no critical level',
  ].join(', ');
  const keep = limits.maxSlotWalKeepSizeBytes;
  const idle = limits.idleSlotTimeoutSeconds;
  const idleNote =
    idle !== null && idle > 0
      ? `; idle_replication_slot_timeout = ${idle} s: the server invalidates the slot when pgcdc is stopped longer than that (the next start then follows snapshot.mode)`
      : '';
  if (keep === null) {
    const bound =
      action === 'stop' && critical > 0
        ? 'pgcdc releases the slot past the critical level'
        : 'pgcdc only warns (set max_slot_wal_keep_size on the server, or heartbeat.walCriticalAction=stop)';
    return ok(
      'wal_budget',
      `WAL budget: ${levels}; max_slot_wal_keep_size = -1: the server keeps WAL for the slot without limit, until its disk is full; ${bound}${idleNote}`,
    );
  }
  const top = critical > 0 ? critical : b.walWarnBytes;
  if (top > 0 && top >= keep) {
    const which = critical > 0 ? 'heartbeat.walCriticalBytes' : 'heartbeat.walWarnBytes';
    return warning(
      'wal_budget',
      `${which} (${prettyBytes(top)}) is not below the server's max_slot_wal_keep_size (${prettyBytes(keep)}): the server invalidates the slot first, and pgcdc's ${critical > 0 ? `critical level${action === 'stop' ? ' (walCriticalAction=stop)' : ''}` : 'warning'} never comes${idleNote}`,
      `set ${which} below ${prettyBytes(keep)} (e.g. ${prettyBytes(Math.floor(keep * 0.8))}), or raise max_slot_wal_keep_size`,
    );
  }
  return ok(
    'wal_budget',
    `WAL budget: ${levels}; below the server's max_slot_wal_keep_size (${prettyBytes(keep)}), which invalidates the slot past it${idleNote}`,
  );
}
