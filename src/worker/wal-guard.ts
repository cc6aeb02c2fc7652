// The WAL-growth guard. A logical slot holds WAL on the server until its reader confirms it; pgcdc
// confirms idle progress on the server's keepalives when nothing of its own is open (see the
// connector's onKeepalive). This adds, on the connector's query connection:
// - heartbeats (heartbeat.intervalMs > 0, on by default): a non-transactional logical message, then
//   the configured heartbeat.query if any. The message comes back through the replication stream
//   (messages 'true') and the connector confirms its LSN by the keepalive rule (src/pipeline/messages.ts),
//   so the slot advances on an idle database and while only tables pgcdc does not capture are written;
// - a slot poll every few seconds: lag (current WAL − confirmed_flush_lsn), retained WAL
//   (current WAL − restart_lsn), wal_status, safe_wal_size and max_slot_wal_keep_size — how close
//   the slot is to being invalidated — with a warning when retained WAL passes walWarnBytes.
import type pg from 'pg';
import { HEARTBEAT_PREFIX } from '../pipeline/messages.ts';
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
  currentLsn: string;
  confirmedFlushLsn: string | null;
}

export interface WalGuardOptions {
  slot: string;
  heartbeat: { intervalMs: number; query?: string; walWarnBytes: number };
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
       pg_size_bytes(current_setting('max_slot_wal_keep_size'))::text AS keep
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
  #worker: Worker;
  #log: Logger;
  #opts: Required<WalGuardOptions>;
  #timers: NodeJS.Timeout[] = [];
  #polling = false;
  #beating = false;
  #lastWarnAt = 0;
  #lastHeartbeatWarnAt = 0;
  #lastStatus: string | null = null;

  constructor(worker: Worker, log: Logger, opts: WalGuardOptions) {
    this.#worker = worker;
    this.#log = log;
    this.#opts = { pollIntervalMs: 5_000, warnEveryMs: 5 * 60_000, ...opts };
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
    const client = this.#client();
    if (!client || this.#polling) return this.last;
    this.#polling = true;
    try {
      // Every value arrives as text (the connection keeps PostgreSQL's text forms).
      const { rows } = await client.query<Record<string, string | null>>(SLOT_SQL, [this.#opts.slot]);
      const r = rows[0]!;
      const keep = num(r.keep);
      const health: SlotHealth = {
        at: Date.now(),
        exists: r.exists === 'true',
        active: r.active === 'true',
        lagBytes: num(r.lag),
        retainedBytes: num(r.retained),
        walStatus: r.wal_status ?? null,
        safeWalSizeBytes: num(r.safe),
        maxSlotWalKeepSizeBytes: keep === null || keep < 0 ? null : keep,
        currentLsn: String(r.current),
        confirmedFlushLsn: r.confirmed ?? null,
      };
      this.last = health;
      this.lastPollError = null;
      this.#check(health);
      return health;
    } catch (err) {
      if (this.#client() === client) this.lastPollError = err instanceof Error ? err : new Error(String(err));
      return this.last;
    } finally {
      this.#polling = false;
    }
  }

  #check(h: SlotHealth): void {
    const limit = this.#opts.heartbeat.walWarnBytes;
    const ctx = {
      slot: this.#opts.slot,
      retainedBytes: h.retainedBytes,
      lagBytes: h.lagBytes,
      walStatus: h.walStatus,
      safeWalSizeBytes: h.safeWalSizeBytes,
      maxSlotWalKeepSizeBytes: h.maxSlotWalKeepSizeBytes,
    };
    const over = limit > 0 && h.retainedBytes !== null && h.retainedBytes > limit;
    if (over && (!this.warning || Date.now() - this.#lastWarnAt > this.#opts.warnEveryMs)) {
      this.#lastWarnAt = Date.now();
      this.#log.warn(
        `replication slot retains ${h.retainedBytes} bytes of WAL, above heartbeat.walWarnBytes (${limit}); ` +
          'the server cannot recycle it until pgcdc confirms it',
        ctx,
      );
    } else if (!over && this.warning) {
      this.#log.info('replication slot back under heartbeat.walWarnBytes', ctx);
    }
    this.warning = over;
    if (h.walStatus !== this.#lastStatus) {
      if (h.walStatus === 'unreserved' || h.walStatus === 'lost') {
        this.#log.warn(
          h.walStatus === 'lost'
            ? 'replication slot lost WAL it needed (wal_status = lost): changes are missing; a new snapshot is needed'
            : 'replication slot is about to be invalidated (wal_status = unreserved, past max_slot_wal_keep_size)',
          ctx,
        );
      } else if (this.#lastStatus === 'unreserved') {
        this.#log.info(`replication slot wal_status back to ${h.walStatus}`, ctx);
      }
      this.#lastStatus = h.walStatus;
    }
  }
}
