// The chunk windows of the chunked (DBLog) load. Pure: no I/O, so the rule that decides which rows
// of a chunk reach Kafka is unit-tested without a server.
//
// A chunk is a primary-key range of one table, read by a plain SELECT in its own REPEATABLE READ
// transaction while the replication stream keeps running. Its rows are held until the stream
// reaches the chunk's high watermark (a non-transactional logical message written after the
// SELECT), and are then emitted at that point of the stream, except the rows whose key a
// transaction the chunk's snapshot does not see has changed: for those, the stream already
// carries a state at least as new, so the stream's event wins and the chunk's row is dropped.
//
// DBLog (Netflix, 2019) opens the window at a low watermark and drops keys changed between the
// two marks. On PostgreSQL a transaction is in the WAL (its commit record) a moment before other
// sessions see it (it leaves the proc array after the flush), so a window bounded by positions
// alone can miss a change that committed just before the low mark but was not yet visible to the
// SELECT: its row would be emitted stale after the change. Deciding by the snapshot instead is
// exact: a change is in the chunk iff its transaction is visible to the chunk's snapshot. A
// window is therefore opened (registered) before the snapshot is taken, every change of its table
// from then on is recorded with its xid, and when the snapshot is known the visible ones are let
// go. The one case this cannot see, a transaction invisible to the snapshot whose changes the
// stream decoded before the window opened, is caught by remembering recent xids: the chunk is
// then read again (`retry`).
import type { ChangeEvent, Relation, Row } from '../change/event.ts';

/** A PostgreSQL snapshot (pg_current_snapshot()) with 64-bit transaction ids. */
export interface PgSnapshot {
  xmin: bigint;
  xmax: bigint;
  xip: bigint[];
}

/** Parses pg_current_snapshot()'s text form `xmin:xmax:xip1,xip2,...`. */
export function parseSnapshot(text: string): PgSnapshot {
  const [xmin, xmax, xip = ''] = text.split(':');
  if (xmin === undefined || xmax === undefined) throw new Error(`not a pg_snapshot: ${text}`);
  return {
    xmin: BigInt(xmin),
    xmax: BigInt(xmax),
    xip: xip === '' ? [] : xip.split(',').map((x) => BigInt(x)),
  };
}

/**
 * The 64-bit form of a 32-bit xid (what pgoutput sends), taken as the nearest to `reference`: a
 * transaction the stream decodes is never 2^31 xids away from the snapshots of the same moment.
 */
export function widenXid(xid: number, reference: bigint): bigint {
  const epoch = reference >> 32n;
  let full = (epoch << 32n) | BigInt(xid >>> 0);
  if (full - reference > 1n << 31n) full -= 1n << 32n;
  else if (reference - full > 1n << 31n) full += 1n << 32n;
  return full;
}

/** Whether the committed transaction `xid` is visible to `snap` (its changes are in what it reads). */
export function visibleIn(snap: PgSnapshot, xid: number): boolean {
  const x = widenXid(xid, snap.xmax);
  if (x < snap.xmin) return true;
  if (x >= snap.xmax) return false;
  return !snap.xip.includes(x);
}

/** The identity of a row for the drop rule: its key column values, by the chunk's key names. */
export function keyOf(relation: Relation, row: Row, keyNames: string[]): string | null {
  const values: unknown[] = [];
  for (const name of keyNames) {
    const i = relation.columns.findIndex((c) => c.name === name);
    if (i < 0) return null;
    const v = row[i];
    if (typeof v === 'symbol') return null;
    values.push(v ?? null);
  }
  return JSON.stringify(values);
}

interface Window {
  id: number;
  table: string;
  keyNames: string[];
  /** Null until the chunk's snapshot is taken. */
  snapshot: PgSnapshot | null;
  /** Changes recorded before the snapshot was known: [xid, key]. */
  pending: Array<[number, string | null]>;
  /** Keys changed by transactions the snapshot does not see; null in it: a change without a usable key. */
  changed: Set<string | null>;
  /** xids the stream decoded for this table before the window opened (see `retry`). */
  before: Set<number>;
  truncated: boolean;
}

/** The outcome of a chunk at its high watermark. */
export type ChunkOutcome =
  | { kind: 'emit'; rows: Row[]; dropped: number }
  /** The chunk must be read again (the stream saw one of its changes too early, or a TRUNCATE). */
  | { kind: 'retry'; reason: string };

/** How many recent xids per table are remembered for the early-decode check. */
const RECENT_XIDS = 4096;

export class ChunkWindows {
  #windows = new Map<number, Window>();
  #nextId = 1;
  /** Per table, the xids of the most recent transactions that changed it (insertion order). */
  #recent = new Map<string, Set<number>>();

  get open(): number {
    return this.#windows.size;
  }

  /** Opens a window for a chunk of `table` (schema.table); call before the chunk's snapshot is taken. */
  openWindow(table: string, keyNames: string[]): number {
    const id = this.#nextId++;
    this.#windows.set(id, {
      id,
      table,
      keyNames,
      snapshot: null,
      pending: [],
      changed: new Set(),
      before: new Set(this.#recent.get(table) ?? []),
      truncated: false,
    });
    return id;
  }

  /** The chunk's snapshot is known: changes recorded so far that it sees are let go. */
  setSnapshot(id: number, snapshot: PgSnapshot): void {
    const w = this.#windows.get(id);
    if (!w) return;
    w.snapshot = snapshot;
    for (const [xid, key] of w.pending) if (!visibleIn(snapshot, xid)) w.changed.add(key);
    w.pending = [];
  }

  /** A window whose chunk will not be emitted (read failed, stop): forgotten. */
  discard(id: number): void {
    this.#windows.delete(id);
  }

  /** Every change the stream decodes passes here, before it is published. */
  observe(table: string, event: ChangeEvent): void {
    if (event.xid === null) return;
    this.#remember(table, event.xid);
    for (const w of this.#windows.values()) {
      if (w.table !== table) continue;
      if (event.op === 't') {
        if (!w.snapshot || !visibleIn(w.snapshot, event.xid)) w.truncated = true;
        continue;
      }
      for (const row of [event.before, event.after]) {
        if (!row) continue;
        const key = keyOf(event.relation, row, w.keyNames);
        if (!w.snapshot) w.pending.push([event.xid, key]);
        else if (!visibleIn(w.snapshot, event.xid)) w.changed.add(key);
      }
    }
  }

  /** A TRUNCATE of `table` by transaction `xid` (seen even when truncate events are not published). */
  truncate(table: string, xid: number): void {
    this.#remember(table, xid);
    for (const w of this.#windows.values()) {
      if (w.table === table && (!w.snapshot || !visibleIn(w.snapshot, xid))) w.truncated = true;
    }
  }

  /**
   * The stream reached the chunk's high watermark: the rows to emit (in the order read), or why
   * the chunk must be read again. The window closes either way.
   */
  close(id: number, rows: Row[], relation: Relation): ChunkOutcome {
    const w = this.#windows.get(id);
    this.#windows.delete(id);
    if (!w?.snapshot) return { kind: 'retry', reason: 'the window had no snapshot' };
    if (w.truncated) return { kind: 'retry', reason: 'the table was truncated while the chunk was read' };
    const snap = w.snapshot;
    for (const xid of w.before) {
      if (!visibleIn(snap, xid)) {
        return { kind: 'retry', reason: `transaction ${xid} was decoded before its changes were visible` };
      }
    }
    if (w.changed.has(null)) return { kind: 'retry', reason: 'a change without a usable key' };
    if (w.changed.size === 0) return { kind: 'emit', rows, dropped: 0 };
    const kept = rows.filter((r) => !w.changed.has(keyOf(relation, r, w.keyNames)));
    return { kind: 'emit', rows: kept, dropped: rows.length - kept.length };
  }

  #remember(table: string, xid: number): void {
    let set = this.#recent.get(table);
    if (!set) this.#recent.set(table, (set = new Set()));
    if (set.has(xid)) return;
    set.add(xid);
    if (set.size > RECENT_XIDS) set.delete(set.values().next().value!);
  }
}
