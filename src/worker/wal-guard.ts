// The WAL-growth guard. A logical slot holds WAL on the server until its reader confirms it; pgcdc
// confirms idle progress on the server's keepalives when nothing of its own is open (see the
// connector's onKeepalive). This adds, on the connector's query connection:
// - heartbeats (heartbeat.intervalMs > 0, on by default): a non-transactional logical message, then
//   the configured heartbeat.query if any. The message comes back through the replication stream
//   (messages 'true') and the connector confirms its LSN by the keepalive rule (src/pipeline/messages.ts),
//   so the slot advances on an idle database and while only tables pgcdc does not capture are written;
// - a slot poll every few seconds: lag (current WAL − confirmed_flush_lsn), retained WAL
//   (current WAL − restart_lsn), wal_status, safe_wal_size and max_slot_wal_keep_size — how close
//   the slot is to being invalidated;
// - the WAL budget: retained WAL past heartbeat.walWarnBytes is a warning, past walCriticalBytes
//   critical (one log line when a level is crossed, again every few minutes while it lasts, and
//   pgcdc_slot_wal_budget_state for alerts); walCriticalAction=stop then has the worker stop the
//   connector and release the slot, trading the position for the server's disk.
// While the connector is not up (STARTING, RECONNECTING: Kafka or the registry is down, the
// likeliest reason WAL piles up) the poll uses a short connection of its own, so the budget holds.
import type pg from 'pg';
import { HEARTBEAT_PREFIX } from '../pipeline/messages.ts';
import { connectForChecks, prettyBytes } from '../postgres/preflight.ts';
import type { Logger } from './log.ts';
import type { Worker } from './worker.ts';

// Non-transactional: decoded at once, outside any transaction, so with messages 'true' it comes
// back through the stream and its LSN can be confirmed even while other tables keep the server busy.
export const DEFAULT_HEARTBEAT_QUERY = `SELECT pg_logical_emit_message(false, '${HEARTBEAT_PREFIX}', '')`;

export interface SlotHealth {
  /** When it was read (ms since the epoch). */
  at: number;
  exists: boolean;
  active: boolean;
  /** Bytes between the server's current WAL position and the slot's confirmed_flush_lsn. */
  lagBytes: number | null;
  /** Bytes of WAL the slot keeps on the server (current WAL position − restart_lsn). */
  retainedBytes: number | null;
  /** reserved | extended | unreserved | lost. */
  walStatus: string | null;
  /** Bytes that can still be written before the slot is in danger of being invalidated; null: no limit. */
  safeWalSizeBytes: number | null;
  /** The server's max_slot_wal_keep_size in bytes; null: unlimited (-1). */
  maxSlotWalKeepSizeBytes: number | null;
  /** PostgreSQL 17+: why the server invalidated the slot (wal_removed, rows_removed, idle_timeout, ...). */
  invalidationReason: string | null;
  currentLsn: string;
  confirmedFlushLsn: string | null;
}

export type WalBudgetState = 'ok' | 'warning' | 'critical';
export const WAL_BUDGET_STATES: readonly WalBudgetState[] = ['ok', 'warning', 'critical'];

export interface WalBudget {
  /** Warning level in bytes of retained WAL; 0: none. */
  walWarnBytes: number;
  /** Critical level; 0: none. */
  walCriticalBytes?: number;
  walCriticalAction?: 'warn' | 'stop';
}

/**
 * Where the slot stands against the budget. A slot the server is about to invalidate (unreserved:
 * past max_slot_wal_keep_size) or has invalidated (lost) is critical whatever the levels say.
 */
export function walBudgetState(
  h: Pick<SlotHealth, 'retainedBytes' | 'walStatus'>,
  b: WalBudget,
): WalBudgetState {
  if (h.walStatus === 'unreserved' || h.walStatus === 'lost') return 'critical';
  const r = h.retainedBytes;
  if (r === null) return 'ok';
  const critical = b.walCriticalBytes ?? 0;
  if (critical > 0 && r > critical) return 'critical';
  if (b.walWarnBytes > 0 && r > b.walWarnBytes) return 'warning';
  return 'ok';
}

export interface WalGuardOptions {
  slot: string;
  heartbeat: { intervalMs: number; query?: string } & WalBudget;
  pollIntervalMs?: number;
  /** Minimum time between two repeated warnings. */
  warnEveryMs?: number;
}

const SLOT_SQL = `
SELECT (s.slot_name IS NOT NULL)::text AS exists,
       coalesce(s.active, false)::text AS active,
       w.lsn::text AS current,
       s.confirmed_flush_lsn::text AS confirmed,
       pg_wal_lsn_diff(w.lsn, s.confirmed_flush_lsn)::int8::text AS lag,
       pg_wal_lsn_diff(w.lsn, s.restart_lsn)::int8::text AS retained,
       s.wal_status,
       s.safe_wal_size::text AS safe,
       pg_size_bytes(current_setting('max_slot_wal_keep_size'))::text AS keep,
       to_jsonb(s) ->> 'invalidation_reason' AS invalidation_reason
  FROM (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END AS lsn) w
  LEFT JOIN pg_replication_slots s ON s.slot_name = $1`;

const num = (v: string | null | undefined): number | null =>
  v === null || v === undefined ? null : Number(v);

export class WalGuard {
  last: SlotHealth | null = null;
  lastPollError: Error | null = null;
  heartbeats = 0;
  heartbeatErrors = 0;
  /** Retained WAL is above heartbeat.walWarnBytes. */
  warning = false;
  /** The WAL budget's state at the last poll. */
  budgetState: WalBudgetState = 'ok';
  #worker: Worker;
  #log: Logger;
  #opts: Required<WalGuardOptions>;
  #timers: NodeJS.Timeout[] = [];
  #polling = false;
  #beating = false;
  #lastWarnAt = 0;
  #released = false;
  /**
   * The slot is this connector's: a connector of this process read from it (its start plan found
   * a stored offset vouching for it, or created it). Before that (a first start that cannot reach
   * Kafka, so the offset is unread) a slot of that name may be another consumer's, and pgcdc
   * never drops a slot no stored offset of its own vouches for.
   */
  #vouched = false;
  #lastUnvouchedAt = 0;
  #lastHeartbeatWarnAt = 0;
  #lastStatus: string | null = null;
  /** The level the last log line was about (the budget's state without wal_status). */
  #lastLevel: WalBudgetState = 'ok';

  constructor(worker: Worker, log: Logger, opts: WalGuardOptions) {
    this.#worker = worker;
    this.#log = log;
    this.#opts = { pollIntervalMs: 5_000, warnEveryMs: 5 * 60_000, ...opts };
  }

  /** The configured levels and action. */
  get budget(): WalBudget {
    const { walWarnBytes, walCriticalBytes, walCriticalAction } = this.#opts.heartbeat;
    return { walWarnBytes, walCriticalBytes, walCriticalAction };
  }

  start(): void {
    this.#timers.push(setInterval(() => void this.poll(), this.#opts.pollIntervalMs).unref());
    if (this.#opts.heartbeat.intervalMs > 0) {
      this.#timers.push(setInterval(() => void this.beat(), this.#opts.heartbeat.intervalMs).unref());
    }
  }

  stop(): void {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  /** The query connection while the connector is past start-up; null otherwise. */
  #client(): pg.Client | null {
    const c = this.#worker.connector;
    if (c.state !== 'SNAPSHOT' && c.state !== 'STREAMING') return null;
    return c.queryClient;
  }

  /** One heartbeat (only while streaming: during a snapshot the slot stays at its start on purpose). */
  async beat(): Promise<void> {
    const client = this.#client();
    if (!client || this.#worker.connector.state !== 'STREAMING' || this.#beating) return;
    this.#beating = true;
    try {
      await client.query(DEFAULT_HEARTBEAT_QUERY);
      if (this.#opts.heartbeat.query) await client.query(this.#opts.heartbeat.query);
      this.heartbeats++;
    } catch (err) {
      if (this.#client() !== client) return; // the connector closed its connection meanwhile
      this.heartbeatErrors++;
      if (Date.now() - this.#lastHeartbeatWarnAt > this.#opts.warnEveryMs) {
        this.#lastHeartbeatWarnAt = Date.now();
        this.#log.warn('heartbeat failed', {
          err,
          query: this.#opts.heartbeat.query ?? DEFAULT_HEARTBEAT_QUERY,
        });
      }
    } finally {
      this.#beating = false;
    }
  }

  /** Reads the slot's state; warns when it retains too much WAL or is close to invalidation. */
  async poll(): Promise<SlotHealth | null> {
    if (this.#polling) return this.last;
    const client = this.#client();
    // Starting or reconnecting: a start can hang for a minute on an unreachable Kafka while the slot holds WAL.
    const state = this.#worker.state;
    if (!client && state !== 'RECONNECTING' && state !== 'STARTING') return this.last;
    this.#polling = true;
    try {
      if (client) this.#vouched = true;
      const health = client ? await this.#read(client) : await this.#readAlone();
      if (!health) return this.last;
      this.last = health;
      this.lastPollError = null;
      this.#check(health);
      return health;
    } catch (err) {
      if (!client || this.#client() === client)
        this.lastPollError = err instanceof Error ? err : new Error(String(err));
      return this.last;
    } finally {
      this.#polling = false;
    }
  }

  async #read(client: pg.Client): Promise<SlotHealth> {
    // Every value arrives as text (the connection keeps PostgreSQL's text forms).
    const { rows } = await client.query<Record<string, string | null>>(SLOT_SQL, [this.#opts.slot]);
    const r = rows[0]!;
    const keep = num(r.keep);
    return {
      at: Date.now(),
      exists: r.exists === 'true',
      active: r.active === 'true',
      lagBytes: num(r.lag),
      retainedBytes: num(r.retained),
      walStatus: r.wal_status ?? null,
      safeWalSizeBytes: num(r.safe),
      maxSlotWalKeepSizeBytes: keep === null || keep < 0 ? null : keep,
      invalidationReason: r.invalidation_reason ?? null,
      currentLsn: String(r.current),
      confirmedFlushLsn: r.confirmed ?? null,
    };
  }

  /** One poll on a connection of its own, while the connector has none; null when PostgreSQL is unreachable too. */
  async #readAlone(): Promise<SlotHealth | null> {
    const opened = await connectForChecks(this.#worker.config, {
      applicationName: `pgcdc-${this.#worker.name}-wal-guard`,
      log: this.#log,
    });
    if ('result' in opened) return null;
    try {
      return await this.#read(opened.client);
    } finally {
      await opened.client.end().catch(() => undefined);
      await opened.endpoint.close().catch(() => undefined);
    }
  }

  #check(h: SlotHealth): void {
    const b = this.#opts.heartbeat;
    const warnAt = b.walWarnBytes;
    const criticalAt = b.walCriticalBytes ?? 0;
    const ctx = {
      slot: this.#opts.slot,
      retainedBytes: h.retainedBytes,
      lagBytes: h.lagBytes,
      walStatus: h.walStatus,
      safeWalSizeBytes: h.safeWalSizeBytes,
      maxSlotWalKeepSizeBytes: h.maxSlotWalKeepSizeBytes,
      walWarnBytes: warnAt,
      walCriticalBytes: criticalAt,
    };
    const retained = h.retainedBytes;
    this.warning = warnAt > 0 && retained !== null && retained > warnAt;
    const state = h.exists ? walBudgetState(h, b) : 'ok';
    this.budgetState = state;
    const overCritical = criticalAt > 0 && retained !== null && retained > criticalAt;
    if (overCritical && b.walCriticalAction === 'stop') {
      if (this.#released) {
        // The release is under way; the worker's failure line is the one line of this event.
      } else if (!this.#vouched) {
        if (Date.now() - this.#lastUnvouchedAt > this.#opts.warnEveryMs) {
          this.#lastUnvouchedAt = Date.now();
          this.#log.error(
            `replication slot ${this.#opts.slot} retains ${size(retained)} of WAL, above heartbeat.walCriticalBytes (${size(criticalAt)}); ` +
              "heartbeat.walCriticalAction=stop does not release it: no connector has started on it in this run, so no stored offset vouches that it is pgcdc's; " +
              `if nothing else uses it, drop it: SELECT pg_drop_replication_slot('${this.#opts.slot}');`,
            ctx,
          );
        }
      } else {
        this.#released = true;
        // Whatever slot of that name exists after the release, a connector must vouch for it anew.
        this.#vouched = false;
        this.#worker.release(
          `replication slot ${this.#opts.slot} retains ${size(retained)} of WAL, above heartbeat.walCriticalBytes (${size(criticalAt)})`,
        );
      }
    } else {
      // Released (the slot is gone) or back under: a restarted connector may be released again.
      this.#released = false;
      const level = overCritical ? 'critical' : this.warning ? 'warning' : 'ok';
      const rank = { ok: 0, warning: 1, critical: 2 } as const;
      const prev: WalBudgetState = this.#lastLevel;
      this.#lastLevel = level;
      const now = Date.now();
      if (level !== 'ok' && (rank[level] > rank[prev] || now - this.#lastWarnAt > this.#opts.warnEveryMs)) {
        this.#lastWarnAt = now;
        if (level === 'critical') {
          this.#log.error(
            `replication slot ${this.#opts.slot} retains ${size(retained)} of WAL, above heartbeat.walCriticalBytes (${size(criticalAt)}); ` +
              'the server cannot recycle it until pgcdc confirms it (heartbeat.walCriticalAction=warn: pgcdc keeps the slot)',
            ctx,
          );
        } else {
          this.#log.warn(
            `replication slot ${this.#opts.slot} retains ${size(retained)} of WAL, above heartbeat.walWarnBytes (${size(warnAt)}); ` +
              'the server cannot recycle it until pgcdc confirms it',
            ctx,
          );
        }
      } else if (rank[level] < rank[prev]) {
        this.#log.info(
          `replication slot ${this.#opts.slot} back under ${level === 'ok' ? 'heartbeat.walWarnBytes' : 'heartbeat.walCriticalBytes'}`,
          ctx,
        );
        if (level === 'ok') this.#lastWarnAt = 0;
      }
    }
    if (h.walStatus !== this.#lastStatus) {
      // An invalidated slot (lost) is said once, by the start plan (src/pipeline/plan.ts lostReason):
      // the server ends our walsender when it invalidates the slot, and the next start decides.
      if (h.walStatus === 'unreserved') {
        this.#log.warn(
          `replication slot ${this.#opts.slot} is about to be invalidated (wal_status = unreserved: past the server's max_slot_wal_keep_size)`,
          ctx,
        );
      } else if (this.#lastStatus === 'unreserved' && h.walStatus !== 'lost') {
        this.#log.info(`replication slot ${this.#opts.slot} wal_status back to ${h.walStatus}`, ctx);
      }
      this.#lastStatus = h.walStatus;
    }
  }
}

const size = (n: number | null): string => (n === null ? '?' : prettyBytes(n));
