// The project's own change type. Everything that produces it (snapshot reader, pgoutput
// decoder) is PostgreSQL-specific; everything that consumes it (Avro, Kafka) is Kafka-specific.
import type { Lsn } from '../postgres/lsn.ts';

export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface Column {
  name: string;
  /** pg_type OID of the column. */
  typeOid: number;
  /** atttypmod (-1 when the type has no modifier). Carries varchar length, numeric precision/scale, time precision. */
  typeMod: number;
  /** Part of the replica identity (the primary key for REPLICA IDENTITY DEFAULT). */
  isKey: boolean;
  /** Declared NOT NULL, when known (catalog lookup); pgoutput does not carry it, so it may be undefined. */
  notNull?: boolean;
  /**
   * The column's constant default in PostgreSQL's text output format (what `SELECT` of the
   * default prints), when the catalog has one; undefined for no default or a non-constant one
   * (`now()`, a sequence). It becomes the Avro field default.
   */
  defaultText?: string;
}

/** A table shape, as described by a pgoutput Relation message or by the catalog at snapshot time. */
export interface Relation {
  oid: number;
  schema: string;
  table: string;
  replicaIdentity: ReplicaIdentity;
  columns: Column[];
}

/**
 * Marker for a TOASTed value that an UPDATE left unchanged (pgoutput's 'u' tuple kind): the
 * server did not send it. It is never turned into null silently; see docs (TOAST placeholder).
 */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');
export type UnchangedToast = typeof UNCHANGED_TOAST;

/**
 * One column value in PostgreSQL's text output format (exactly what `SELECT` in text mode and
 * pgoutput send), null, or the unchanged-TOAST marker. Conversion to typed values happens once,
 * in src/avro, for the snapshot and the stream alike.
 */
export type ColumnValue = string | null | UnchangedToast;

/** Values in the relation's column order. */
export type Row = ColumnValue[];

export type Op = 'r' | 'c' | 'u' | 'd' | 't';

/**
 * Debezium's source.snapshot field: 'first' for the snapshot's first row, 'first_in_data_collection'
 * / 'last_in_data_collection' for each table's first and last, 'last' for the final one, 'true' for
 * the others; 'false' when streaming.
 */
export type SnapshotMarker =
  | 'true'
  | 'first'
  | 'first_in_data_collection'
  | 'last_in_data_collection'
  | 'last'
  | 'false'
  /** A row of an on-demand re-read while streaming (Debezium's incremental snapshots). */
  | 'incremental';

export interface ChangeEvent {
  op: Op;
  relation: Relation;
  /** Old row: for 'u' and 'd' when the replica identity sends it (key columns only unless FULL). */
  before: Row | null;
  after: Row | null;
  /** Transaction id (null for snapshot reads). */
  xid: number | null;
  /**
   * LSN of the change itself (the WAL record it was decoded from; Debezium's source.lsn). For
   * snapshot reads, the slot's consistent point.
   */
  lsn: Lsn;
  /**
   * LSN of the transaction's commit record (pgoutput Begin's final LSN); identifies the
   * transaction in the WAL. For snapshot reads, the slot's consistent point.
   */
  commitLsn: Lsn;
  /** Commit time in microseconds since the Unix epoch (snapshot: time the snapshot row was read). */
  commitTimeMicros: bigint;
  /** Position of the change inside its transaction; with `lsn` a total order and idempotency key. */
  seq: number;
  snapshot: SnapshotMarker;
  /**
   * Set on the two halves of a primary-key change (a delete of the old key, a create of the new):
   * the delete carries the new row as `newKeyRow`, the create the old row as `oldKeyRow`, so the
   * records get Debezium's `__debezium.newkey` / `__debezium.oldkey` headers.
   */
  newKeyRow?: Row;
  oldKeyRow?: Row;
  /**
   * capture.method xmin: the row version's transaction id as xid8 (epoch included), when the row
   * was found by its xmin rather than decoded from the WAL; such an event has no LSN.
   */
  xmin?: bigint;
}
