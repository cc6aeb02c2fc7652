// The replication slot: created with an exported snapshot so the initial load and the stream
// meet at exactly one point. pg-logical-replication cannot create slots (let alone export a
// snapshot), so this runs CREATE_REPLICATION_SLOT over a `pg` replication connection.
import type pg from 'pg';
import { ident } from '../connection.ts';
import { parseLsn, type Lsn } from '../lsn.ts';

export interface CreatedSlot {
  name: string;
  consistentPoint: Lsn;
  /** Valid only while `replicationClient` runs no other command and stays open. */
  snapshotName: string;
}

/** Creates a pgoutput slot and exports its snapshot. Call on a connection opened with replication=database. */
export async function createSlotWithSnapshot(
  replicationClient: pg.Client,
  slot: string,
): Promise<CreatedSlot> {
  const res = await replicationClient.query(
    `CREATE_REPLICATION_SLOT ${ident(slot)} LOGICAL pgoutput (SNAPSHOT 'export')`,
  );
  const row = res.rows[0] as { slot_name: string; consistent_point: string; snapshot_name: string };
  return {
    name: row.slot_name,
    consistentPoint: parseLsn(row.consistent_point),
    snapshotName: row.snapshot_name,
  };
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
}

export async function slotInfo(client: pg.Client, slot: string): Promise<SlotInfo | null> {
  const { rows } = await client.query<Record<string, string | null>>(
    `SELECT slot_name, plugin, database, active::text, active_pid::text, confirmed_flush_lsn::text,
            restart_lsn::text, wal_status
       FROM pg_replication_slots WHERE slot_name = $1`,
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
