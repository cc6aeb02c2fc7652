// Start planning: from the snapshot mode, the stored offset and the replication slot, decide
// whether this run takes a snapshot, resumes streaming at a position, or has nothing to do.
import type pg from 'pg';
import { UserError } from '../errors.ts';
import type { OffsetRecord, SnapshotState } from '../kafka/offsets.ts';
import { formatLsn, parseLsn, type Lsn } from '../postgres/lsn.ts';
import { createSlotWithSnapshot, slotInfo, type SlotInfo } from '../postgres/replication/slot.ts';
import type { Logger } from '../worker/log.ts';
import type { PipelineSettings } from './settings.ts';

export type StartPlan =
  /**
   * dropSlot: the slot of an earlier run of this connector exists and makes way for a new one.
   * resume: exactly-once only, the interrupted initial load to go on with (its slot is kept).
   */
  | { kind: 'snapshot'; dropSlot: boolean; resume?: SnapshotState }
  /** load: a chunked load that was running goes on while streaming (its stored progress). */
  | { kind: 'stream'; lsn: Lsn; load?: SnapshotState }
  | { kind: 'done' };

export interface PlanContext {
  settings: PipelineSettings;
  log: Logger;
  /** The query connection (catalog, slot state). */
  query: pg.Client;
  /** Opens a replication connection (for creating a slot). */
  replication: () => Promise<pg.Client>;
}

export async function planStart(ctx: PlanContext, stored: OffsetRecord | null): Promise<StartPlan> {
  const s = ctx.settings;
  const slot = await slotInfo(ctx.query, s.slot.name);
  if (slot?.active) {
    throw new UserError(
      `replication slot ${s.slot.name} is in use by another process (pid ${slot.activePid}); stop the other worker or set slot.name`,
    );
  }
  if (slot && slot.plugin !== 'pgoutput') {
    throw new UserError(
      `replication slot ${s.slot.name} uses plugin ${slot.plugin}, pgcdc needs pgoutput; drop it (SELECT pg_drop_replication_slot('${s.slot.name}')) or set slot.name`,
    );
  }
  const mode = s.snapshot.mode;
  // A chunked load streams while it runs: it goes on from the stored position on the same slot.
  const chunkedLoad =
    stored?.snapshot?.state === 'running' && stored.snapshot.method === 'chunked' && mode !== 'initial_only'
      ? stored.snapshot
      : undefined;
  const snapshotDone = stored !== null && (stored.snapshot?.state !== 'running' || chunkedLoad !== undefined);
  const snapshot = (): StartPlan => {
    // Only a slot that a stored offset of this connector vouches for is pgcdc's to drop: any
    // other slot of that name may be another consumer's position.
    if (slot && !stored) {
      throw new UserError(
        `replication slot ${s.slot.name} exists, but connector ${s.name} has no stored offset for it, so pgcdc did not create it ` +
          `and will not drop it; set slot.name, or if nothing uses it: SELECT pg_drop_replication_slot('${s.slot.name}');`,
      );
    }
    return { kind: 'snapshot', dropSlot: slot !== null };
  };
  if (mode === 'always') return snapshot();
  if (mode === 'initial' || mode === 'initial_only' || mode === 'when_needed') {
    const resume = resumableLoad(s, stored, slot);
    if (resume) return { kind: 'snapshot', dropSlot: false, resume };
    if (!snapshotDone) return snapshot();
    if (mode === 'initial_only') {
      ctx.log.info('snapshot already completed; snapshot.mode=initial_only has nothing left to do');
      return { kind: 'done' };
    }
  }
  // Resume from the stored offset (or, with mode never and no offset, from the slot).
  const lost = lostReason(s.slot.name, stored, slot);
  if (lost) {
    if (mode === 'when_needed') {
      ctx.log.warn(`${lost}; snapshot.mode=when_needed takes a new snapshot`);
      return snapshot();
    }
    throw new UserError(
      `${lost}; changes in between cannot be read again. Set snapshot.mode=when_needed (or always) to take a new snapshot`,
    );
  }
  if (!slot) {
    // mode never without an offset: start streaming from now.
    const repl = await ctx.replication();
    try {
      const created = await createSlotWithSnapshot(repl, s.slot.name, { failover: s.slot.failover });
      return { kind: 'stream', lsn: created.consistentPoint };
    } finally {
      await repl.end();
    }
  }
  if (chunkedLoad)
    ctx.log.info('the chunked snapshot goes on after its last completed chunk', { slot: s.slot.name });
  return {
    kind: 'stream',
    lsn: stored ? parseLsn(stored.lsn) : (slot.confirmedFlush ?? 0n),
    ...(chunkedLoad ? { load: chunkedLoad } : {}),
  };
}

/**
 * With exactly-once delivery an interrupted initial load goes on after its last committed row:
 * what it delivered is committed and must not be delivered again. It needs its slot unmoved at the
 * load's consistent point (initial_only streams nothing afterwards and keeps no slot).
 */
function resumableLoad(
  s: PipelineSettings,
  stored: OffsetRecord | null,
  slot: SlotInfo | null,
): SnapshotState | null {
  const snap = stored?.snapshot;
  if (s.delivery?.mode !== 'exactly-once' || snap?.state !== 'running' || snap.consistentPoint === '0/0')
    return null;
  if (s.snapshot.mode === 'initial_only') return snap;
  if (!slot || slot.walStatus === 'lost') return null;
  if (slot.confirmedFlush !== null && slot.confirmedFlush > parseLsn(snap.consistentPoint)) return null;
  return snap;
}

/** Why the stored position can no longer be streamed from, or null when it can. */
export function lostReason(name: string, stored: OffsetRecord | null, slot: SlotInfo | null): string | null {
  // An invalidated slot cannot be streamed from at all, also with mode never and no offset.
  if (slot?.walStatus === 'lost') {
    return `replication slot ${name} was invalidated by the server (${invalidation(slot.invalidationReason)})`;
  }
  if (!stored) return null;
  if (!slot) return `replication slot ${name} no longer exists but an offset at ${stored.lsn} does`;
  if (slot.confirmedFlush !== null && slot.confirmedFlush > parseLsn(stored.lsn)) {
    return `replication slot ${name} is at ${formatLsn(slot.confirmedFlush)}, past the stored offset ${stored.lsn}`;
  }
  return null;
}

/** pg_replication_slots.invalidation_reason (PostgreSQL 17+) in words; before 17 only WAL removal sets wal_status = lost. */
function invalidation(reason: string | null): string {
  const why: Record<string, string> = {
    wal_removed: 'it fell behind by more than max_slot_wal_keep_size and its WAL was removed',
    idle_timeout: 'it was idle longer than idle_replication_slot_timeout',
    rows_removed: 'a standby conflict: rows it needed were vacuumed on the primary',
    wal_level_insufficient: 'wal_level on the primary is no longer logical',
  };
  if (reason === null) return 'wal_status = lost: its WAL was removed past max_slot_wal_keep_size';
  return `invalidation_reason = ${reason}: ${why[reason] ?? 'see pg_replication_slots'}`;
}
