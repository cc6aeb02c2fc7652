// The replication slot: created with an exported snapshot so the initial load and the stream
// meet at exactly one point. pg-logical-replication cannot create slots (let alone export a
// snapshot), so this runs CREATE_REPLICATION_SLOT over a `pg` replication connection.
import type pg from 'pg';
import { UserError } from '../../errors.ts';
import { ident, literal } from '../connection.ts';
import { parseLsn, type Lsn } from '../lsn.ts';
import { walLevelFix } from '../preflight/rules.ts';

export interface CreatedSlot {
  name: string;
  consistentPoint: Lsn;
  /** Valid only while `replicationClient` runs no other command and stays open. */
  snapshotName: string;
}

/**
 * Creates a pgoutput slot and exports its snapshot. Call on a connection opened with
 * replication=database. A temporary slot goes away with that connection (snapshot.mode=initial_only
 * never streams, so it must not leave a slot holding WAL behind).
 */
export async function createSlotWithSnapshot(
  replicationClient: pg.Client,
  slot: string,
  /** exportSnapshot false: no snapshot is kept (the chunked load reads in its own snapshots). */
  opts: { temporary?: boolean; failover?: boolean; exportSnapshot?: boolean } = {},
): Promise<CreatedSlot> {
  const temporary = opts.temporary ? ' TEMPORARY' : '';
  const exported = opts.exportSnapshot ?? true;
  // PostgreSQL 17+: a failover slot is copied to standbys with sync_replication_slots, so a
  // promoted standby still has it. A temporary slot cannot be one, nor one made on a standby
  // (the server refuses both).
  const failover =
    (opts.failover ?? true) && !opts.temporary && (await failoverSlotsHere(replicationClient))
      ? ', FAILOVER true'
      : '';
  let res: pg.QueryResult;
  try {
    res = await replicationClient.query(
      `CREATE_REPLICATION_SLOT ${ident(slot)}${temporary} LOGICAL pgoutput (SNAPSHOT '${exported ? 'export' : 'nothing'}'${failover})`,
    );
  } catch (err) {
    // Before PostgreSQL 15 the options have no parentheses (the old form is still accepted after).
    if ((err as { code?: string }).code !== '42601') throw slotError(err, slot);
    res = await replicationClient
      .query(
        `CREATE_REPLICATION_SLOT ${ident(slot)}${temporary} LOGICAL pgoutput ${exported ? 'EXPORT_SNAPSHOT' : 'NOEXPORT_SNAPSHOT'}`,
      )
      .catch((e: unknown) => {
        throw slotError(e, slot);
      });
  }
  const row = res.rows[0] as { slot_name: string; consistent_point: string; snapshot_name: string };
  return {
    name: row.slot_name,
    consistentPoint: parseLsn(row.consistent_point),
    snapshotName: row.snapshot_name,
  };
}

/** PostgreSQL 17+ and a primary (SQL runs on a replication=database connection too). */
async function failoverSlotsHere(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ ok: unknown }>(
    "SELECT current_setting('server_version_num')::int >= 170000 AND NOT pg_is_in_recovery() AS ok",
  );
  const ok = rows[0]?.ok;
  return ok === true || ok === 't';
}

/**
 * The server's refusals to create a slot as one-line UserErrors with the fix (what `pgcdc check`
 * reports before a start); anything else is returned as it is.
 */
export function slotError(err: unknown, slot: string): Error {
  const e = err as Error & { code?: string };
  if (!(err instanceof Error)) return new Error(String(err));
  const msg = e.message.split('\n')[0];
  const drop = `SELECT pg_drop_replication_slot(${literal(slot)});`;
  if (e.code === '53400' || /all replication slots are in use/i.test(msg!)) {
    return new UserError(
      `cannot create replication slot ${slot}: all replication slots are in use (max_replication_slots); ` +
        `drop an unused one (SELECT slot_name, active FROM pg_replication_slots; then SELECT pg_drop_replication_slot('<name>');) ` +
        'or raise max_replication_slots and restart PostgreSQL',
      { cause: e },
    );
  }
  if (e.code === '42710') {
    return new UserError(
      `replication slot ${slot} already exists (another worker may be creating it); set slot.name, or drop it: ${drop}`,
      { cause: e },
    );
  }
  if (/wal_level/i.test(msg!)) {
    return new UserError(
      `cannot create replication slot ${slot}: ${msg}; fix: ${walLevelFix('self-hosted')}`,
      {
        cause: e,
      },
    );
  }
  if (/in recovery|standby/i.test(msg!)) {
    return new UserError(`cannot create replication slot ${slot}: ${msg}; set postgres.host to the primary`, {
      cause: e,
    });
  }
  if (e.code === '42501') {
    return new UserError(
      `cannot create replication slot ${slot}: ${msg}; give postgres.user the REPLICATION attribute ` +
        '(ALTER ROLE <user> WITH REPLICATION; on RDS/Aurora: GRANT rds_replication TO <user>;)',
      { cause: e },
    );
  }
  if (e.code === '42602') {
    return new UserError(`slot.name ${slot}: ${msg}; use lower-case letters, digits and underscores only`, {
      cause: e,
    });
  }
  return e;
}

export interface SlotInfo {
  name: string;
  plugin: string;
  database: string;
  active: boolean;
  activePid: number | null;
  confirmedFlush: Lsn | null;
  restartLsn: Lsn | null;
  /** 'reserved' | 'extended' | 'unreserved' | 'lost' (PostgreSQL 13+). */
  walStatus: string | null;
  /** PostgreSQL 17+: why the server invalidated the slot (wal_removed, rows_removed, idle_timeout, ...). */
  invalidationReason: string | null;
}

export async function slotInfo(client: pg.Client, slot: string): Promise<SlotInfo | null> {
  const { rows } = await client.query<Record<string, string | null>>(
    `SELECT slot_name, plugin, database, active::text, active_pid::text, confirmed_flush_lsn::text,
            restart_lsn::text, wal_status, to_jsonb(s) ->> 'invalidation_reason' AS invalidation_reason
       FROM pg_replication_slots s WHERE slot_name = $1`,
    [slot],
  );
  const r = rows[0];
  if (!r) return null;
  return {
    name: String(r.slot_name),
    plugin: String(r.plugin),
    database: String(r.database),
    active: r.active === 'true',
    activePid: r.active_pid ? Number(r.active_pid) : null,
    confirmedFlush: r.confirmed_flush_lsn ? parseLsn(r.confirmed_flush_lsn) : null,
    restartLsn: r.restart_lsn ? parseLsn(r.restart_lsn) : null,
    walStatus: r.wal_status ?? null,
    invalidationReason: r.invalidation_reason ?? null,
  };
}

/** Drops the slot if it exists; waits for a still-active walsender of ours to go away first. */
export async function dropSlot(client: pg.Client, slot: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const info = await slotInfo(client, slot);
    if (!info) return;
    if (!info.active) {
      await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`replication slot ${slot} stayed active; another worker may be using it`);
}

/** The advisory lock space of slot owners ('pgcd'), apart from single-key locks applications take. */
const SLOT_LOCK_CLASS = 0x70676364;

/**
 * The backend of the connection each slot lock of this process was taken on. After a lost
 * connection the server may keep that backend (and its lock) until TCP gives up on it; the
 * worker's next connector then ends it instead of taking itself for a second worker.
 */
const ownLockSessions = new Map<string, { pid: number; abandoned: boolean }>();

/**
 * Takes the session advisory lock that makes this connection the one owner of `slot` for as
 * long as it stays open. While a snapshot runs the slot itself is inactive, so the slot's own
 * `active` flag cannot keep a second worker with the same configuration from taking it over.
 */
export async function lockSlot(client: pg.Client, slot: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const { rows } = await client.query<{ locked: unknown; pid: string }>(
      'SELECT pg_try_advisory_lock($1::int4, hashtext($2)) AS locked, pg_backend_pid() AS pid',
      [SLOT_LOCK_CLASS, slot],
    );
    const r = rows[0]!;
    if (r.locked === 't' || r.locked === true) {
      const session = { pid: Number(r.pid), abandoned: false };
      ownLockSessions.set(slot, session);
      const abandon = () => (session.abandoned = true);
      client.once('end', abandon);
      client.once('error', abandon);
      return;
    }
    const holder = await client.query<{ pid: string; app: string | null; addr: string | null }>(
      `SELECT l.pid, a.application_name AS app, host(a.client_addr) AS addr
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int4::oid
          AND l.objid = hashtext($2)::oid AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [SLOT_LOCK_CLASS, slot],
    );
    const h = holder.rows[0];
    const own = ownLockSessions.get(slot);
    if (h && own?.abandoned && Number(h.pid) === own.pid && attempt < 25) {
      // Our own earlier connection, abandoned: end it and try again.
      if (attempt === 0) await client.query('SELECT pg_terminate_backend($1::int4)', [Number(h.pid)]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      continue;
    }
    if (!h && attempt < 5) continue; // released between the two queries
    const who = h
      ? ` (PostgreSQL backend pid ${h.pid}${h.app ? `, application_name ${h.app}` : ''}${h.addr ? ` from ${h.addr}` : ''})`
      : '';
    throw new UserError(
      `replication slot ${slot} is owned by another running pgcdc worker${who}; stop that worker, or give this connector its own slot.name`,
    );
  }
}
