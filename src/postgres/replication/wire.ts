// Framing of the CopyBoth payloads of the streaming replication protocol (PostgreSQL docs,
// "Streaming Replication Protocol", START_REPLICATION): XLogData and Primary keepalive from the
// server, Standby status update from the client. All integers are big-endian; LSNs are unsigned
// Int64; times are Int64 microseconds since the PostgreSQL epoch (2000-01-01) on the wire and
// microseconds since the Unix epoch in pgcdc.
import type { Lsn } from '../lsn.ts';
import { PG_EPOCH_OFFSET_MICROS } from './pgoutput.ts';

export interface XLogData {
  kind: 'xlog';
  /** Starting point of the WAL data in this message. */
  walStart: Lsn;
  /** Current end of WAL on the server. */
  walEnd: Lsn;
  /** Server clock at transmission, microseconds since the Unix epoch. */
  sendTimeMicros: bigint;
  /** The WAL data (a pgoutput message): a view into the input buffer, not a copy. */
  data: Buffer;
}

export interface PrimaryKeepalive {
  kind: 'keepalive';
  walEnd: Lsn;
  sendTimeMicros: bigint;
  /** The server asks for a Standby status update as soon as possible (to avoid a timeout disconnect). */
  replyRequested: boolean;
}

export type ServerCopyMessage = XLogData | PrimaryKeepalive;

/** A frame that does not follow the protocol: never retried, the same bytes would fail again. */
export class WireError extends Error {
  override name = 'WireError';
  readonly retriable = false;
}

const XLOG_DATA = 0x77; // 'w'
const PRIMARY_KEEPALIVE = 0x6b; // 'k'
const STANDBY_STATUS_UPDATE = 0x72; // 'r'

/** 'w' + walStart + walEnd + sendTime. */
export const XLOG_DATA_HEADER_LENGTH = 25;
/** 'k' + walEnd + sendTime + replyRequested. */
export const PRIMARY_KEEPALIVE_LENGTH = 18;
/** 'r' + written + flushed + applied + clock + replyRequested. */
export const STANDBY_STATUS_UPDATE_LENGTH = 34;

/** Parses XLogData ('w'): Int64 walStart, Int64 walEnd, Int64 sendTime, Byte n data. */
export function parseXLogData(buf: Buffer): XLogData {
  if (buf[0] !== XLOG_DATA) throw new WireError(`not an XLogData message: ${describe(buf)}`);
  if (buf.length < XLOG_DATA_HEADER_LENGTH) {
    throw new WireError(`XLogData truncated: ${buf.length} bytes, header needs ${XLOG_DATA_HEADER_LENGTH}`);
  }
  return {
    kind: 'xlog',
    walStart: buf.readBigUInt64BE(1),
    walEnd: buf.readBigUInt64BE(9),
    sendTimeMicros: buf.readBigInt64BE(17) + PG_EPOCH_OFFSET_MICROS,
    data: buf.subarray(XLOG_DATA_HEADER_LENGTH),
  };
}

/** Parses Primary keepalive ('k'): Int64 walEnd, Int64 sendTime, Byte1 replyRequested. */
export function parsePrimaryKeepalive(buf: Buffer): PrimaryKeepalive {
  if (buf[0] !== PRIMARY_KEEPALIVE) throw new WireError(`not a Primary keepalive message: ${describe(buf)}`);
  if (buf.length !== PRIMARY_KEEPALIVE_LENGTH) {
    throw new WireError(`Primary keepalive has ${buf.length} bytes, expected ${PRIMARY_KEEPALIVE_LENGTH}`);
  }
  return {
    kind: 'keepalive',
    walEnd: buf.readBigUInt64BE(1),
    sendTimeMicros: buf.readBigInt64BE(9) + PG_EPOCH_OFFSET_MICROS,
    replyRequested: buf[17] === 1,
  };
}

/** Parses one CopyData payload sent by the server during START_REPLICATION. */
export function parseServerCopyData(buf: Buffer): ServerCopyMessage {
  const type = buf[0];
  if (type === XLOG_DATA) return parseXLogData(buf);
  if (type === PRIMARY_KEEPALIVE) return parsePrimaryKeepalive(buf);
  throw new WireError(`unknown replication CopyData message ${describe(buf)}`);
}

/**
 * Builds a Standby status update ('r'): Int64 written, Int64 flushed, Int64 applied (each the
 * last WAL byte + 1 received/flushed/applied), Int64 client clock (PostgreSQL-epoch
 * microseconds), Byte1 replyRequested. The LSNs are sent exactly as given: callers pass the end
 * LSN of the last durable commit, which is already "last byte + 1". Adding 1 again (as the npm
 * package pg-logical-replication does) can make the server skip a transaction whose commit
 * record starts exactly at the previous commit's end.
 */
export function standbyStatusUpdate(
  writtenLsn: Lsn,
  flushedLsn: Lsn,
  appliedLsn: Lsn,
  nowMicrosUnix: bigint,
  replyRequested: boolean,
): Buffer {
  const buf = Buffer.allocUnsafe(STANDBY_STATUS_UPDATE_LENGTH);
  buf[0] = STANDBY_STATUS_UPDATE;
  buf.writeBigUInt64BE(writtenLsn, 1);
  buf.writeBigUInt64BE(flushedLsn, 9);
  buf.writeBigUInt64BE(appliedLsn, 17);
  buf.writeBigInt64BE(nowMicrosUnix - PG_EPOCH_OFFSET_MICROS, 25);
  buf[33] = replyRequested ? 1 : 0;
  return buf;
}

/** The current time in microseconds since the Unix epoch (for standbyStatusUpdate). */
export function nowMicros(): bigint {
  return BigInt(Date.now()) * 1000n;
}

function describe(buf: Buffer): string {
  const b = buf[0];
  if (b === undefined) return '(empty)';
  const hex = `0x${b.toString(16).padStart(2, '0')}`;
  return b >= 0x20 && b < 0x7f ? `'${String.fromCharCode(b)}' (${hex})` : hex;
}
