// What is captured and how each row is keyed. The snapshot, the stream filter, the publication,
// `pgcdc check` and `pgcdc discover` all ask this module, so they cannot disagree:
//
// - Capturable tables are ordinary and partitioned tables outside the system schemas; a
//   partition is never a table of its own: its rows are its root's (the publication publishes
//   them under the root's name: publish_via_partition_root), as Debezium users expect.
// - The selection is tables.include when set, else every capturable table of postgres.schemas;
//   minus tables.exclude.
// - A table is a publication member when the publication names it (directly, by schema, or FOR
//   ALL TABLES); pg_publication_tables alone lists a partitioned table's partitions instead.
// - The Kafka key is the replica identity index under REPLICA IDENTITY USING INDEX (the columns
//   every update and delete carries), else the primary key.
import type pg from 'pg';
import type { Relation, ReplicaIdentity } from '../change/event.ts';
import type { TableRef } from '../config/tables.ts';
import { UserError } from '../errors.ts';

export type { TableRef };

export interface TableSelection {
  /** Every table of these schemas, when include is empty. */
  schemas: readonly string[];
  /** Explicit schema.table list; when set, schemas is not consulted. */
  include: readonly TableRef[];
  exclude: readonly TableRef[];
}

/** An unambiguous key for a table (a dot may be part of either name). */
export const tableKey = (t: TableRef): string => JSON.stringify([t.schema, t.table]);
const shown = (t: TableRef): string => `${t.schema}.${t.table}`;

/**
 * The SQL condition on `pg_class c JOIN pg_namespace n` for a table pgcdc can capture: ordinary
 * or partitioned, not a partition (its rows belong to its root), not in a system schema.
 */
export const CAPTURABLE_TABLE = `c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        AND n.nspname NOT LIKE 'pg_temp%'`;

/** The selection as a predicate on one table (e.g. a relation the stream sends). */
export function selector(sel: TableSelection): (t: TableRef) => boolean {
  const include = new Set(sel.include.map(tableKey));
  const exclude = new Set(sel.exclude.map(tableKey));
  const schemas = new Set(sel.schemas);
  return (t) => {
    const key = tableKey(t);
    return (include.size > 0 ? include.has(key) : schemas.has(t.schema)) && !exclude.has(key);
  };
}

/** A relation the stream sends is captured when the selection selects its table. */
export function relationSelector(sel: TableSelection): (r: Relation) => boolean {
  const selects = selector(sel);
  return (r) => selects({ schema: r.schema, table: r.table });
}

/**
 * The selected tables among `all` (the capturable tables), in include order or catalog order.
 * Include entries that are not among `all` are returned as missing, not thrown.
 */
export function selectTables<T extends TableRef>(
  all: readonly T[],
  sel: TableSelection,
): { selected: T[]; missing: TableRef[] } {
  const byKey = new Map(all.map((t) => [tableKey(t), t]));
  const selects = selector(sel);
  if (sel.include.length > 0) {
    const missing = sel.include.filter((t) => !byKey.has(tableKey(t)));
    const chosen = sel.include.flatMap((t) => byKey.get(tableKey(t)) ?? []);
    return { selected: chosen.filter(selects), missing };
  }
  return { selected: all.filter(selects), missing: [] };
}

export interface CapturableTable extends TableRef {
  partitioned: boolean;
}

/** Every capturable table the catalog lists, in schema, table order. */
export async function capturableTables(client: pg.Client): Promise<CapturableTable[]> {
  const { rows } = await client.query<{ schema: string; table: string; relkind: string }>(
    `SELECT n.nspname AS schema, c.relname AS table, c.relkind
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE ${CAPTURABLE_TABLE}
      ORDER BY 1, 2`,
  );
  return rows.map((r) => ({ schema: r.schema, table: r.table, partitioned: r.relkind === 'p' }));
}

/**
 * The tables to capture, as the worker starts with them: a listed table that does not exist, or
 * an empty selection, is a one-line error.
 */
export async function resolveTables(client: pg.Client, sel: TableSelection): Promise<CapturableTable[]> {
  const { selected, missing } = selectTables(await capturableTables(client), sel);
  if (missing.length > 0) {
    throw new UserError(
      `tables.include: ${missing.map(shown).join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist ` +
        `(or is not visible to this user, or is a partition: name its partitioned parent); fix the name or create the table`,
    );
  }
  if (selected.length === 0) {
    throw new UserError(
      `tables: no table selected (schemas ${sel.schemas.join(', ')}); set tables.include to schema.table entries`,
    );
  }
  return selected;
}

/**
 * The options a publication for these tables needs: publish_via_partition_root when one of them
 * is partitioned, so its partitions' changes (also of partitions attached later) arrive under its
 * name. Used by the worker's CREATE and by `pgcdc check` (its advice and --fix) alike.
 */
export function publicationOptions(tables: readonly { partitioned: boolean }[]): string {
  return tables.some((t) => t.partitioned) ? ' WITH (publish_via_partition_root = true)' : '';
}

export interface PublicationMembers {
  exists: boolean;
  allTables: boolean;
  /** publish_via_partition_root: partitions' changes arrive under their root's name. */
  viaRoot: boolean;
  /** tableKey() of every table the publication names (directly, by schema, or as a partition's root). */
  tables: Set<string>;
}

/** Which tables a publication holds; `exists: false` when there is no such publication. */
export async function publicationMembers(
  client: pg.Client,
  publication: string,
  versionNum: number,
): Promise<PublicationMembers> {
  const viaRoot = versionNum >= 130000 ? 'pubviaroot' : 'false';
  const { rows } = await client.query<{ puballtables: unknown; viaroot: unknown }>(
    `SELECT puballtables, ${viaRoot} AS viaroot FROM pg_publication WHERE pubname = $1`,
    [publication],
  );
  const pub = rows[0];
  if (!pub) return { exists: false, allTables: false, viaRoot: false, tables: new Set() };
  const res = await client.query<{ schemaname: string; tablename: string }>(
    // Direct members too: without publish_via_partition_root, pg_publication_tables lists a
    // partitioned table's partitions and not the table itself.
    `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1
     UNION
     SELECT n.nspname, c.relname FROM pg_publication_rel pr
       JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE p.pubname = $1`,
    [publication],
  );
  const bool = (v: unknown) => v === true || v === 't' || v === 'true';
  return {
    exists: true,
    allTables: bool(pub.puballtables),
    viaRoot: bool(pub.viaroot),
    tables: new Set(res.rows.map((r) => tableKey({ schema: r.schemaname, table: r.tablename }))),
  };
}

/**
 * The Kafka key columns, the same for the snapshot and the stream: the replica identity index
 * under REPLICA IDENTITY USING INDEX (the only columns an update's or delete's old row is
 * guaranteed to carry), else the primary key; none when there is neither.
 */
export function keyColumns(
  identity: ReplicaIdentity,
  primaryKey: readonly string[],
  identityIndex: readonly string[],
): string[] {
  if (identity === 'index' && identityIndex.length > 0) return [...identityIndex];
  return [...primaryKey];
}
