// Decoder for the pgoutput logical replication messages carried in XLogData payloads.
//
// Reference: PostgreSQL docs, "Logical Replication Message Formats". pgcdc starts replication
// with proto_version '1', which is what this decoder is designed for. With protoVersion >= 2 it
// also understands the streaming framing (Stream Start/Stop/Commit/Abort, and the leading xid
// that Relation/Type/Insert/Update/Delete/Truncate/Message carry inside a stream block); the
// two-phase messages of protocol 3 are rejected with a clear error (pgcdc never enables
// two_phase). Tuple data must be in text format: pgcdc does not request `binary`.
//
// Design: one handler per message byte (see HANDLERS below, in the order of the docs), a single
// reusable reader over the message buffer, and plain result objects. Strings are copied out of
// the buffer (UTF-8 decode); the Message content is copied too, because the transport may reuse
// the buffer the XLogData payload lives in once decode() returns.
import { UNCHANGED_TOAST } from '../../change/event.ts';
import type { Column, Relation, ReplicaIdentity, Row } from '../../change/event.ts';
import type { Lsn } from '../lsn.ts';

/** Microseconds between the Unix epoch (1970-01-01) and the PostgreSQL epoch (2000-01-01). */
export const PG_EPOCH_OFFSET_MICROS = 946684800000000n;

export type BeforeKind = 'key' | 'old';

export interface BeginMessage {
  tag: 'begin';
  /** LSN of the commit record (the transaction's final LSN). */
  finalLsn: Lsn;
  /** Commit time in microseconds since the Unix epoch. */
  commitTimeMicros: bigint;
  xid: number;
}

export interface CommitMessage {
  tag: 'commit';
  /** Currently unused by PostgreSQL (0). */
  flags: number;
  /** LSN of the commit record. */
  commitLsn: Lsn;
  /** End LSN of the transaction: what a client confirms as flushed once the transaction is durable. */
  endLsn: Lsn;
  commitTimeMicros: bigint;
}

export interface OriginMessage {
  tag: 'origin';
  /** LSN of the commit on the origin server. */
  lsn: Lsn;
  name: string;
}

export interface RelationMessage {
  tag: 'relation';
  relation: Relation;
  /** Only inside a stream block (protoVersion >= 2): xid of the (sub)transaction. */
  xid?: number;
}

export interface TypeMessage {
  tag: 'type';
  oid: number;
  schema: string;
  name: string;
  xid?: number;
}

export interface InsertMessage {
  tag: 'insert';
  relationOid: number;
  relation: Relation;
  after: Row;
  xid?: number;
}

export interface UpdateMessage {
  tag: 'update';
  relationOid: number;
  relation: Relation;
  /** Old row: key columns only ('key', non-key columns null) or the full old row ('old', REPLICA IDENTITY FULL). */
  before: Row | null;
  beforeKind: BeforeKind | null;
  after: Row;
  xid?: number;
}

export interface DeleteMessage {
  tag: 'delete';
  relationOid: number;
  relation: Relation;
  before: Row;
  beforeKind: BeforeKind;
  xid?: number;
}

export interface TruncateMessage {
  tag: 'truncate';
  relationOids: number[];
  relations: Relation[];
  cascade: boolean;
  restartIdentity: boolean;
  xid?: number;
}

export interface LogicalDecodingMessage {
  tag: 'message';
  transactional: boolean;
  lsn: Lsn;
  prefix: string;
  content: Buffer;
  xid?: number;
}

export interface StreamStartMessage {
  tag: 'streamStart';
  xid: number;
  firstSegment: boolean;
}

export interface StreamStopMessage {
  tag: 'streamStop';
}

export interface StreamCommitMessage {
  tag: 'streamCommit';
  xid: number;
  flags: number;
  commitLsn: Lsn;
  endLsn: Lsn;
  commitTimeMicros: bigint;
}

export interface StreamAbortMessage {
  tag: 'streamAbort';
  xid: number;
  subXid: number;
  /** Present only with streaming = parallel (protocol version 4). */
  abortLsn: Lsn | null;
  abortTimeMicros: bigint | null;
}

export type PgoutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalDecodingMessage
  | StreamStartMessage
  | StreamStopMessage
  | StreamCommitMessage
  | StreamAbortMessage;

/** A message that does not follow the protocol: never retried, the same bytes would fail again. */
export class PgoutputError extends Error {
  override name = 'PgoutputError';
  readonly retriable = false;
  /** The message type byte as a character, once decode() knows it ('' for an empty message). */
  messageType = '';
  /** The reason, without the message-name prefix that decode() adds to `message`. */
  reason: string;

  constructor(reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.reason = reason;
  }
}

export interface PgoutputDecoderOptions {
  /** The proto_version given to START_REPLICATION. Default 1 (what pgcdc uses). */
  protoVersion?: number;
}

// ---------------------------------------------------------------------------------------------
// Reader: a cursor over one message. Integer reads rely on Buffer's own bounds checks (a
// RangeError that decode() turns into a "truncated message" error); variable-length reads check
// explicitly because Buffer#toString clamps silently.

class Reader {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;

  u8(): number {
    return this.buf.readUInt8(this.pos++);
  }
  i16(): number {
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  i32(): number {
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u32(): number {
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  /** Unsigned Int64 (XLogRecPtr). */
  lsn(): bigint {
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  /** Signed Int64 TimestampTz (PostgreSQL epoch) → microseconds since the Unix epoch. */
  timestamp(): bigint {
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v + PG_EPOCH_OFFSET_MICROS;
  }
  /** NUL-terminated UTF-8 string. */
  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new PgoutputError('unterminated string');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  /** A signed count or length field: refused when negative instead of decoding as empty. */
  count(n: number, what: string): number {
    if (n < 0) throw new PgoutputError(`negative ${what} (${n})`);
    return n;
  }
  /** n bytes, copied. */
  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.buf.length) throw new RangeError('past end');
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }
}

const REPLICA_IDENTITY: Record<string, ReplicaIdentity> = {
  d: 'default',
  n: 'nothing',
  f: 'full',
  i: 'index',
};

// Tuple data column kinds.
const KIND_NULL = 0x6e; // 'n'
const KIND_TOAST = 0x75; // 'u'
const KIND_TEXT = 0x74; // 't'
const KIND_BINARY = 0x62; // 'b'
// Tuple markers inside Insert/Update/Delete.
const TUPLE_NEW = 0x4e; // 'N'
const TUPLE_KEY = 0x4b; // 'K'
const TUPLE_OLD = 0x4f; // 'O'

type Handler = (d: PgoutputDecoder, r: Reader) => PgoutputMessage;

/** Message names, for error messages; includes the ones this decoder refuses. */
export const MESSAGE_NAMES: Readonly<Record<string, string>> = {
  B: 'Begin',
  C: 'Commit',
  O: 'Origin',
  R: 'Relation',
  Y: 'Type',
  I: 'Insert',
  U: 'Update',
  D: 'Delete',
  T: 'Truncate',
  M: 'Message',
  S: 'Stream Start',
  E: 'Stream Stop',
  c: 'Stream Commit',
  A: 'Stream Abort',
  b: 'Begin Prepare',
  P: 'Prepare',
  K: 'Commit Prepared',
  r: 'Rollback Prepared',
  p: 'Stream Prepare',
};

/** One handler per message byte, in the order of "Logical Replication Message Formats". */
const HANDLERS: Record<string, Handler> = {
  // Begin: Int64 final LSN, Int64 commit timestamp, Int32 xid.
  B: (_d, r) => ({ tag: 'begin', finalLsn: r.lsn(), commitTimeMicros: r.timestamp(), xid: r.u32() }),

  // Message: [Int32 xid], Int8 flags (1 = transactional), Int64 LSN, String prefix, Int32 n, Byte n.
  M: (d, r) => {
    const xid = d.streamXid(r);
    const transactional = (r.u8() & 1) === 1;
    const lsn = r.lsn();
    const prefix = r.cstring();
    const content = r.bytes(r.count(r.i32(), 'content length'));
    return withXid<LogicalDecodingMessage>({ tag: 'message', transactional, lsn, prefix, content }, xid);
  },

  // Commit: Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 commit timestamp.
  C: (_d, r) => ({
    tag: 'commit',
    flags: r.u8(),
    commitLsn: r.lsn(),
    endLsn: r.lsn(),
    commitTimeMicros: r.timestamp(),
  }),

  // Origin: Int64 commit LSN on the origin, String name.
  O: (_d, r) => ({ tag: 'origin', lsn: r.lsn(), name: r.cstring() }),

  // Relation: [Int32 xid], Int32 oid, String namespace, String name, Int8 replica identity,
  // Int16 ncols, then per column: Int8 flags (1 = key), String name, Int32 type OID, Int32 typmod.
  R: (d, r) => {
    const xid = d.streamXid(r);
    const oid = r.u32();
    const schema = namespace(r.cstring());
    const table = r.cstring();
    const identByte = r.u8();
    const replicaIdentity = REPLICA_IDENTITY[String.fromCharCode(identByte)];
    if (replicaIdentity === undefined) {
      throw new PgoutputError(
        `Relation ${schema}.${table}: unknown replica identity ${describeByte(identByte)}`,
      );
    }
    const ncols = r.count(r.i16(), 'column count');
    const columns: Column[] = [];
    for (let i = 0; i < ncols; i++) {
      const flags = r.u8();
      const name = r.cstring();
      const typeOid = r.u32();
      const typeMod = r.i32();
      columns.push({ name, typeOid, typeMod, isKey: (flags & 1) === 1 });
    }
    // Always a new object: events decoded earlier keep referencing the previous shape. The cache
    // is updated by decode() once the whole message is known to be valid.
    const relation: Relation = { oid, schema, table, replicaIdentity, columns };
    return withXid<RelationMessage>({ tag: 'relation', relation }, xid);
  },

  // Type: [Int32 xid], Int32 oid, String namespace, String name.
  Y: (d, r) => {
    const xid = d.streamXid(r);
    return withXid<TypeMessage>(
      { tag: 'type', oid: r.u32(), schema: namespace(r.cstring()), name: r.cstring() },
      xid,
    );
  },

  // Insert: [Int32 xid], Int32 relation oid, Byte1 'N', TupleData.
  I: (d, r) => {
    const xid = d.streamXid(r);
    const relationOid = r.u32();
    const relation = d.knownRelation(relationOid, 'Insert');
    expectMarker(r, TUPLE_NEW, 'Insert');
    const after = readTuple(r, relation, null);
    return withXid<InsertMessage>({ tag: 'insert', relationOid, relation, after }, xid);
  },

  // Update: [Int32 xid], Int32 relation oid, optional (Byte1 'K' | 'O', TupleData), Byte1 'N', TupleData.
  U: (d, r) => {
    const xid = d.streamXid(r);
    const relationOid = r.u32();
    const relation = d.knownRelation(relationOid, 'Update');
    let before: Row | null = null;
    let beforeKind: BeforeKind | null = null;
    let marker = r.u8();
    if (marker === TUPLE_KEY || marker === TUPLE_OLD) {
      beforeKind = marker === TUPLE_KEY ? 'key' : 'old';
      before = readTuple(r, relation, null);
      marker = r.u8();
    }
    if (marker !== TUPLE_NEW) {
      throw new PgoutputError(`Update: expected tuple marker 'N', got ${describeByte(marker)}`);
    }
    // With a full old row ('O'), unchanged-TOAST values of the new row are taken from it.
    const after = readTuple(r, relation, beforeKind === 'old' ? before : null);
    return withXid<UpdateMessage>({ tag: 'update', relationOid, relation, before, beforeKind, after }, xid);
  },

  // Delete: [Int32 xid], Int32 relation oid, Byte1 'K' | 'O', TupleData.
  D: (d, r) => {
    const xid = d.streamXid(r);
    const relationOid = r.u32();
    const relation = d.knownRelation(relationOid, 'Delete');
    const marker = r.u8();
    if (marker !== TUPLE_KEY && marker !== TUPLE_OLD) {
      throw new PgoutputError(`Delete: expected tuple marker 'K' or 'O', got ${describeByte(marker)}`);
    }
    const beforeKind: BeforeKind = marker === TUPLE_KEY ? 'key' : 'old';
    const before = readTuple(r, relation, null);
    return withXid<DeleteMessage>({ tag: 'delete', relationOid, relation, before, beforeKind }, xid);
  },

  // Truncate: [Int32 xid], Int32 n relations, Int8 options (1 = CASCADE, 2 = RESTART IDENTITY), n × Int32 oid.
  T: (d, r) => {
    const xid = d.streamXid(r);
    const n = r.count(r.i32(), 'relation count');
    const options = r.u8();
    const relationOids: number[] = [];
    const relations: Relation[] = [];
    for (let i = 0; i < n; i++) {
      const oid = r.u32();
      relationOids.push(oid);
      relations.push(d.knownRelation(oid, 'Truncate'));
    }
    return withXid<TruncateMessage>(
      {
        tag: 'truncate',
        relationOids,
        relations,
        cascade: (options & 1) !== 0,
        restartIdentity: (options & 2) !== 0,
      },
      xid,
    );
  },

  // Stream Start (proto >= 2): Int32 xid, Int8 first-segment flag.
  S: (d, r) => {
    d.needStreaming('S');
    const xid = r.u32();
    const firstSegment = r.u8() === 1;
    return { tag: 'streamStart', xid, firstSegment };
  },

  // Stream Stop (proto >= 2): no fields.
  E: (d) => {
    d.needStreaming('E');
    return { tag: 'streamStop' };
  },

  // Stream Commit (proto >= 2): Int32 xid, Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 commit timestamp.
  c: (d, r) => {
    d.needStreaming('c');
    return {
      tag: 'streamCommit',
      xid: r.u32(),
      flags: r.u8(),
      commitLsn: r.lsn(),
      endLsn: r.lsn(),
      commitTimeMicros: r.timestamp(),
    };
  },

  // Stream Abort (proto >= 2): Int32 xid, Int32 subtransaction xid,
  // then (proto 4 with streaming = parallel only) Int64 abort LSN, Int64 abort timestamp.
  A: (d, r) => {
    d.needStreaming('A');
    const xid = r.u32();
    const subXid = r.u32();
    let abortLsn: Lsn | null = null;
    let abortTimeMicros: bigint | null = null;
    if (r.buf.length - r.pos >= 16) {
      abortLsn = r.lsn();
      abortTimeMicros = r.timestamp();
    }
    return { tag: 'streamAbort', xid, subXid, abortLsn, abortTimeMicros };
  },
};

/** Dispatch table indexed by the message byte. */
const DISPATCH: (Handler | undefined)[] = new Array(256).fill(undefined);
for (const [ch, h] of Object.entries(HANDLERS)) DISPATCH[ch.charCodeAt(0)] = h;

function withXid<T extends { xid?: number }>(msg: T, xid: number | undefined): T {
  if (xid !== undefined) msg.xid = xid;
  return msg;
}

/** The docs: the namespace is sent as an empty string for pg_catalog. */
function namespace(s: string): string {
  return s === '' ? 'pg_catalog' : s;
}

function describeByte(b: number | undefined): string {
  if (b === undefined) return 'end of message';
  const ch = String.fromCharCode(b);
  const printable = b >= 0x20 && b < 0x7f;
  return printable
    ? `'${ch}' (0x${b.toString(16).padStart(2, '0')})`
    : `0x${b.toString(16).padStart(2, '0')}`;
}

function expectMarker(r: Reader, marker: number, what: string): void {
  const b = r.u8();
  if (b !== marker) {
    throw new PgoutputError(
      `${what}: expected tuple marker '${String.fromCharCode(marker)}', got ${describeByte(b)}`,
    );
  }
}

/**
 * TupleData: Int16 ncols, then per column Byte1 kind: 'n' null, 'u' unchanged TOAST, 't' Int32 len
 * + text bytes, 'b' binary (refused). When `old` is given (the full old row of an Update under
 * REPLICA IDENTITY FULL), 'u' takes the old row's value for that column.
 */
function readTuple(r: Reader, relation: Relation, old: Row | null): Row {
  const buf = r.buf;
  const ncols = r.count(buf.readInt16BE(r.pos), 'tuple column count');
  let pos = r.pos + 2;
  if (ncols !== relation.columns.length) {
    throw new PgoutputError(
      `tuple for ${relation.schema}.${relation.table} has ${ncols} columns, the Relation message announced ${relation.columns.length}`,
    );
  }
  const row: Row = [];
  for (let i = 0; i < ncols; i++) {
    const kind = buf[pos++];
    if (kind === KIND_TEXT) {
      const len = buf.readInt32BE(pos);
      pos += 4;
      if (len < 0) {
        throw new PgoutputError(
          `negative value length (${len}) in column ${relation.columns[i]?.name} of ${relation.schema}.${relation.table}`,
        );
      }
      const end = pos + len;
      if (end > buf.length) throw new RangeError('past end');
      row.push(buf.toString('utf8', pos, end));
      pos = end;
    } else if (kind === KIND_NULL) {
      row.push(null);
    } else if (kind === KIND_TOAST) {
      row.push(old === null ? UNCHANGED_TOAST : (old[i] as Row[number]));
    } else if (kind === KIND_BINARY) {
      throw new PgoutputError(
        `binary tuple data not requested (column ${relation.columns[i]?.name} of ${relation.schema}.${relation.table})`,
      );
    } else if (kind === undefined) {
      throw new RangeError('past end');
    } else {
      throw new PgoutputError(
        `unknown tuple data kind ${describeByte(kind)} (column ${relation.columns[i]?.name} of ${relation.schema}.${relation.table})`,
      );
    }
  }
  r.pos = pos;
  return row;
}

/**
 * Stateful decoder: it keeps the relation cache (Relation messages precede the DML that refers to
 * them, and are sent again after a reconnect or when the table's shape changes) and, for
 * protocol >= 2, whether it is inside a stream block.
 */
export class PgoutputDecoder {
  readonly protoVersion: number;
  /** Inside a Stream Start … Stream Stop block (protoVersion >= 2). */
  inStream = false;
  readonly #relations = new Map<number, Relation>();
  readonly #reader = new Reader();

  constructor(options: PgoutputDecoderOptions = {}) {
    const v = options.protoVersion ?? 1;
    if (!Number.isInteger(v) || v < 1 || v > 4) {
      throw new RangeError(`pgoutput protoVersion must be 1..4, got ${v}`);
    }
    this.protoVersion = v;
  }

  /**
   * Decodes one pgoutput message (the data of one XLogData). The message is validated whole
   * (every field, no trailing bytes) before the decoder's state changes: a rejected message
   * leaves the relation cache and the stream-block flag as they were.
   */
  decode(data: Buffer): PgoutputMessage {
    const type = data[0];
    if (type === undefined) throw new PgoutputError('empty pgoutput message');
    const char = String.fromCharCode(type);
    const name = MESSAGE_NAMES[char];
    const handler = DISPATCH[type];
    if (handler === undefined) {
      const err = new PgoutputError(
        name !== undefined
          ? `unsupported pgoutput message ${describeByte(type)} (${name}): pgcdc does not enable two-phase decoding`
          : `unknown pgoutput message type ${describeByte(type)}`,
      );
      err.messageType = char;
      throw err;
    }
    const r = this.#reader;
    r.buf = data;
    r.pos = 1;
    let msg: PgoutputMessage;
    try {
      msg = handler(this, r);
      if (r.pos !== data.length) {
        throw new PgoutputError(
          `${data.length - r.pos} unexpected trailing bytes (protoVersion ${this.protoVersion})`,
        );
      }
    } catch (err) {
      let typed: PgoutputError;
      if (err instanceof PgoutputError) typed = err;
      else if (err instanceof RangeError) {
        typed = new PgoutputError(`truncated (${data.length} bytes)`, { cause: err });
      } else throw err;
      typed.messageType = char;
      typed.message = `${name} message: ${typed.reason}`;
      throw typed;
    } finally {
      r.buf = EMPTY;
    }
    this.#apply(msg);
    return msg;
  }

  /** The state a valid message changes: the relation cache and whether a stream block is open. */
  #apply(msg: PgoutputMessage): void {
    if (msg.tag === 'relation') this.#relations.set(msg.relation.oid, msg.relation);
    else if (msg.tag === 'streamStart') this.inStream = true;
    else if (msg.tag === 'streamStop') this.inStream = false;
  }

  /** The cached Relation for an oid, if a Relation message for it was decoded. */
  relation(oid: number): Relation | undefined {
    return this.#relations.get(oid);
  }

  get relations(): ReadonlyMap<number, Relation> {
    return this.#relations;
  }

  /** @internal */
  knownRelation(oid: number, what: string): Relation {
    const rel = this.#relations.get(oid);
    if (rel === undefined) {
      throw new PgoutputError(`${what} for unknown relation OID ${oid}: no Relation message received for it`);
    }
    return rel;
  }

  /** @internal Reads the leading xid that messages carry inside a stream block. */
  streamXid(r: Reader): number | undefined {
    return this.inStream ? r.u32() : undefined;
  }

  /** @internal */
  needStreaming(type: string): void {
    if (this.protoVersion < 2) {
      throw new PgoutputError(
        `'${type}' needs protoVersion >= 2 (streaming), but the decoder was created for protoVersion ${this.protoVersion}`,
      );
    }
  }
}

const EMPTY = Buffer.alloc(0);
