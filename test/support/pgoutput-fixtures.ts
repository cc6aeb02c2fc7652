// A tiny pgoutput / replication-wire encoder, for tests only: builds the bytes PostgreSQL would
// send, following "Logical Replication Message Formats" field by field.
import { UNCHANGED_TOAST } from '../../src/change/event.ts';
import type { ColumnValue } from '../../src/change/event.ts';

const PG_EPOCH_OFFSET_MICROS = 946684800000000n;

/** A tuple column as the encoder understands it; `{ binary }` produces a 'b' column. */
export type FixtureValue = ColumnValue | { binary: Buffer };

export class Writer {
  readonly #parts: Buffer[] = [];

  byte(ch: string): this {
    return this.u8(ch.charCodeAt(0));
  }
  u8(v: number): this {
    this.#parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  i16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    this.#parts.push(b);
    return this;
  }
  i32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    this.#parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.#parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.#parts.push(b);
    return this;
  }
  /** Unix-epoch microseconds → PostgreSQL-epoch Int64. */
  timestamp(unixMicros: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(unixMicros - PG_EPOCH_OFFSET_MICROS);
    this.#parts.push(b);
    return this;
  }
  cstring(s: string): this {
    this.#parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  raw(b: Buffer): this {
    this.#parts.push(b);
    return this;
  }
  xidIf(xid: number | undefined): this {
    return xid === undefined ? this : this.u32(xid);
  }
  tuple(values: readonly FixtureValue[]): this {
    this.i16(values.length);
    for (const v of values) {
      if (v === null) this.byte('n');
      else if (v === UNCHANGED_TOAST) this.byte('u');
      else if (typeof v === 'string') {
        const b = Buffer.from(v, 'utf8');
        this.byte('t').i32(b.length).raw(b);
      } else {
        this.byte('b').i32(v.binary.length).raw(v.binary);
      }
    }
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

export function encodeBegin(m: { finalLsn: bigint; commitTimeMicros: bigint; xid: number }): Buffer {
  return new Writer().byte('B').u64(m.finalLsn).timestamp(m.commitTimeMicros).u32(m.xid).build();
}

export function encodeCommit(m: {
  flags?: number;
  commitLsn: bigint;
  endLsn: bigint;
  commitTimeMicros: bigint;
}): Buffer {
  return new Writer()
    .byte('C')
    .u8(m.flags ?? 0)
    .u64(m.commitLsn)
    .u64(m.endLsn)
    .timestamp(m.commitTimeMicros)
    .build();
}

export function encodeOrigin(m: { lsn: bigint; name: string }): Buffer {
  return new Writer().byte('O').u64(m.lsn).cstring(m.name).build();
}

export interface FixtureColumn {
  name: string;
  typeOid: number;
  typeMod?: number;
  isKey?: boolean;
}

export function encodeRelation(m: {
  xid?: number;
  oid: number;
  /** Wire namespace: '' stands for pg_catalog. */
  schema: string;
  table: string;
  /** relreplident: 'd' | 'n' | 'f' | 'i'. */
  replicaIdentity?: string;
  columns: readonly FixtureColumn[];
}): Buffer {
  const w = new Writer()
    .byte('R')
    .xidIf(m.xid)
    .u32(m.oid)
    .cstring(m.schema)
    .cstring(m.table)
    .byte(m.replicaIdentity ?? 'd')
    .i16(m.columns.length);
  for (const c of m.columns) {
    w.u8(c.isKey ? 1 : 0)
      .cstring(c.name)
      .u32(c.typeOid)
      .i32(c.typeMod ?? -1);
  }
  return w.build();
}

export function encodeType(m: { xid?: number; oid: number; schema: string; name: string }): Buffer {
  return new Writer().byte('Y').xidIf(m.xid).u32(m.oid).cstring(m.schema).cstring(m.name).build();
}

export function encodeInsert(m: {
  xid?: number;
  relationOid: number;
  after: readonly FixtureValue[];
}): Buffer {
  return new Writer().byte('I').xidIf(m.xid).u32(m.relationOid).byte('N').tuple(m.after).build();
}

export function encodeUpdate(m: {
  xid?: number;
  relationOid: number;
  before?: { kind: 'K' | 'O'; values: readonly FixtureValue[] };
  after: readonly FixtureValue[];
}): Buffer {
  const w = new Writer().byte('U').xidIf(m.xid).u32(m.relationOid);
  if (m.before) w.byte(m.before.kind).tuple(m.before.values);
  return w.byte('N').tuple(m.after).build();
}

export function encodeDelete(m: {
  xid?: number;
  relationOid: number;
  before: { kind: 'K' | 'O'; values: readonly FixtureValue[] };
}): Buffer {
  return new Writer()
    .byte('D')
    .xidIf(m.xid)
    .u32(m.relationOid)
    .byte(m.before.kind)
    .tuple(m.before.values)
    .build();
}

export function encodeTruncate(m: {
  xid?: number;
  relationOids: readonly number[];
  cascade?: boolean;
  restartIdentity?: boolean;
}): Buffer {
  const w = new Writer()
    .byte('T')
    .xidIf(m.xid)
    .i32(m.relationOids.length)
    .u8((m.cascade ? 1 : 0) | (m.restartIdentity ? 2 : 0));
  for (const oid of m.relationOids) w.u32(oid);
  return w.build();
}

export function encodeMessage(m: {
  xid?: number;
  transactional: boolean;
  lsn: bigint;
  prefix: string;
  content: Buffer;
}): Buffer {
  return new Writer()
    .byte('M')
    .xidIf(m.xid)
    .u8(m.transactional ? 1 : 0)
    .u64(m.lsn)
    .cstring(m.prefix)
    .i32(m.content.length)
    .raw(m.content)
    .build();
}

export function encodeStreamStart(m: { xid: number; firstSegment: boolean }): Buffer {
  return new Writer()
    .byte('S')
    .u32(m.xid)
    .u8(m.firstSegment ? 1 : 0)
    .build();
}

export function encodeStreamStop(): Buffer {
  return new Writer().byte('E').build();
}

export function encodeStreamCommit(m: {
  xid: number;
  commitLsn: bigint;
  endLsn: bigint;
  commitTimeMicros: bigint;
}): Buffer {
  return new Writer()
    .byte('c')
    .u32(m.xid)
    .u8(0)
    .u64(m.commitLsn)
    .u64(m.endLsn)
    .timestamp(m.commitTimeMicros)
    .build();
}

export function encodeStreamAbort(m: {
  xid: number;
  subXid: number;
  abortLsn?: bigint;
  abortTimeMicros?: bigint;
}): Buffer {
  const w = new Writer().byte('A').u32(m.xid).u32(m.subXid);
  if (m.abortLsn !== undefined && m.abortTimeMicros !== undefined) {
    w.u64(m.abortLsn).timestamp(m.abortTimeMicros);
  }
  return w.build();
}

// --- Streaming replication protocol (CopyData payloads) ---

export function encodeXLogData(m: {
  walStart: bigint;
  walEnd: bigint;
  sendTimeMicros: bigint;
  data: Buffer;
}): Buffer {
  return new Writer().byte('w').u64(m.walStart).u64(m.walEnd).timestamp(m.sendTimeMicros).raw(m.data).build();
}

export function encodePrimaryKeepalive(m: {
  walEnd: bigint;
  sendTimeMicros: bigint;
  replyRequested: boolean;
}): Buffer {
  return new Writer()
    .byte('k')
    .u64(m.walEnd)
    .timestamp(m.sendTimeMicros)
    .u8(m.replyRequested ? 1 : 0)
    .build();
}

/** Exact microseconds since the Unix epoch for an ISO-8601 UTC time with up to 6 fractional digits. */
export function isoToMicros(iso: string): bigint {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z$/.exec(iso);
  if (!m) throw new Error(`bad ISO time ${iso}`);
  const seconds = BigInt(Date.parse(`${m[1]}Z`) / 1000);
  const frac = BigInt((m[2] ?? '').padEnd(6, '0'));
  return seconds * 1000000n + frac;
}
