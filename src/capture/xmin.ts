// The xmin capture method's cursor logic, pure (no connection): which rows a poll reads, and
// whether a stored cursor can still be trusted. docs/xmin.md has the reasoning.
//
// A row's xmin system column is a 32-bit transaction id that wraps around every 2^32
// transactions; the cursor is a 64-bit xid8 (epoch << 32 | xid), so it never wraps. A row's xid
// is widened to xid8 relative to the snapshot it is read in: a row the snapshot sees was written
// by a transaction that started before the snapshot's xmax, so its xid8 is the one with those low
// 32 bits in the 2^32 xids just below xmax.
//
// The cursor a poll leaves is the xmin of the snapshot taken before it read anything: every
// transaction below that xmin had finished when the poll began, so whatever the poll did not see
// (a transaction still open, or one that committed later) has an xid at or after it and is read
// by the next poll. Rows of transactions that committed between xmin and the snapshot are read
// again next time: a repeat, never a gap.

/** 2^32: one xid epoch. */
export const XID_EPOCH = 1n << 32n;
/** Xids 0, 1 and 2 are special (invalid, bootstrap, frozen): never a transaction's id. */
export const FIRST_NORMAL_XID = 3n;
/**
 * A cursor this far behind the snapshot's xmax cannot be trusted: PostgreSQL keeps every unfrozen
 * xid within 2^31 of the next one (that is what wraparound protection guarantees), so older
 * 32-bit xids may belong to a later epoch or to frozen rows, and the range to read is ambiguous.
 */
export const TRUST_WINDOW = 1n << 31n;

/** pg_current_snapshot(): xmin, xmax (xid8) and the xids in progress. */
export interface XidSnapshot {
  xmin: bigint;
  xmax: bigint;
  xip: bigint[];
}

/** Parses pg_snapshot text (`xmin:xmax:xip,xip`). */
export function parseSnapshot(text: string): XidSnapshot {
  const m = /^(\d+):(\d+):([\d,]*)$/.exec(text.trim());
  if (!m) throw new Error(`not a pg_snapshot: ${JSON.stringify(text)}`);
  const xmin = BigInt(m[1]!);
  const xmax = BigInt(m[2]!);
  if (xmin > xmax) throw new Error(`pg_snapshot with xmin ${xmin} above xmax ${xmax}`);
  return { xmin, xmax, xip: m[3] ? m[3].split(',').map((x) => BigInt(x)) : [] };
}

/** The xid8 of a row's 32-bit xmin seen in a snapshot with this xmax (the row is below xmax). */
export function widenXid(xid32: bigint | number, xmax: bigint): bigint {
  const low = BigInt(xid32);
  if (low < 0n || low >= XID_EPOCH) throw new Error(`not a 32-bit xid: ${low}`);
  const candidate = (xmax & ~(XID_EPOCH - 1n)) | low;
  return candidate >= xmax ? candidate - XID_EPOCH : candidate;
}

export type CursorVerdict =
  /** No cursor yet: read every row. */
  | { kind: 'all' }
  /** Read the rows whose xid8 is at or after `from`. */
  | { kind: 'from'; from: bigint }
  /** The cursor cannot be trusted: read every row again, and say why in one line. */
  | { kind: 'resync'; reason: string };

/** What a poll reads, given the table's stored cursor and the snapshot the poll reads in. */
export function judgeCursor(cursor: bigint | null, snap: XidSnapshot): CursorVerdict {
  if (cursor === null) return { kind: 'all' };
  if (cursor > snap.xmax) {
    // A server behind the cursor (a restored backup, another server, a lagging standby after a
    // host change): transactions it runs next get xids the cursor says were read already.
    return {
      kind: 'resync',
      reason: `the stored xmin cursor ${cursor} is ahead of the server's next transaction id ${snap.xmax} (another server, a restored backup or a lagging standby)`,
    };
  }
  if (snap.xmax - cursor >= TRUST_WINDOW) {
    return {
      kind: 'resync',
      reason: `the stored xmin cursor ${cursor} is ${snap.xmax - cursor} transactions behind the server (${snap.xmax}), more than 2^31: 32-bit xmin values that old are ambiguous after wraparound`,
    };
  }
  return { kind: 'from', from: cursor };
}

/**
 * The 32-bit xmin values of the rows with xid8 in [from, xmax): one range, or two when the
 * interval crosses an epoch boundary (the xid counter wrapped since the cursor was taken).
 * null: nothing can be newer than the cursor.
 */
export interface XminRange {
  /** Inclusive lower bound (32-bit). */
  lo: bigint;
  /** Exclusive upper bound (32-bit); with `wraps`, the second range is [FIRST_NORMAL_XID, hi). */
  hi: bigint;
  wraps: boolean;
}

export function xminRange(from: bigint, xmax: bigint): XminRange | null {
  if (from >= xmax) return null;
  if (xmax - from >= XID_EPOCH) throw new Error(`xmin range wider than one epoch: ${from}..${xmax}`);
  const lo = from % XID_EPOCH;
  const hi = xmax % XID_EPOCH;
  const wraps = from / XID_EPOCH !== xmax / XID_EPOCH;
  return { lo: lo < FIRST_NORMAL_XID ? FIRST_NORMAL_XID : lo, hi, wraps };
}

/** Does a row's 32-bit xmin fall in the range (the SQL condition xminCondition writes, in JS)? */
export function inRange(xid32: bigint, r: XminRange): boolean {
  if (xid32 < FIRST_NORMAL_XID) return false; // frozen or bootstrap: older than any cursor
  return r.wraps ? xid32 >= r.lo || xid32 < r.hi : xid32 >= r.lo && xid32 < r.hi;
}

/**
 * The SQL condition on `column` (the row's xmin as int8, e.g. `xmin::text::int8`) for the range.
 * Numbers are inlined: they are computed here, never user input.
 */
export function xminCondition(column: string, r: XminRange): string {
  if (r.wraps) {
    const tail =
      r.hi > FIRST_NORMAL_XID ? ` OR (${column} >= ${FIRST_NORMAL_XID} AND ${column} < ${r.hi})` : '';
    return `(${column} >= ${r.lo}${tail})`;
  }
  return `(${column} >= ${r.lo} AND ${column} < ${r.hi})`;
}
