// What is captured: which tables a configuration selects. The snapshot, the stream filter,
// `pgcdc check` and `pgcdc discover` all ask this module, so they cannot disagree.
import type pg from 'pg';
import type { Relation } from '../change/event.ts';
import { UserError } from '../errors.ts';
import { tableName, type TableRef } from '../postgres/catalog.ts';

export interface TableSelection {
  /** Every table of these schemas, when include is empty. */
  schemas: readonly string[];
  /** Explicit schema.table list; when set, schemas is not consulted. */
  include: readonly TableRef[];
  exclude: readonly TableRef[];
}

/** The selection as a predicate on one table (e.g. a relation the stream sends). */
export function selector(sel: TableSelection): (t: TableRef) => boolean {
  const include = new Set(sel.include.map(tableName));
  const exclude = new Set(sel.exclude.map(tableName));
  const schemas = new Set(sel.schemas);
  return (t) => {
    const name = tableName(t);
    return (include.size > 0 ? include.has(name) : schemas.has(t.schema)) && !exclude.has(name);
  };
}

/** A relation sent by the stream is captured when the selection selects its table. */
export function relationSelector(sel: TableSelection): (r: Relation) => boolean {
  const selects = selector(sel);
  return (r) => selects({ schema: r.schema, table: r.table });
}

/**
 * The tables to capture: `include` (explicit schema.table list) or, when empty, every ordinary and
 * partitioned table of `schemas`; minus `exclude`. A listed table that does not exist is an error.
 */
export async function resolveTables(client: pg.Client, sel: TableSelection): Promise<TableRef[]> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    `SELECT n.nspname AS schema, c.relname AS table
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r','p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      ORDER BY 1, 2`,
  );
  const existing = new Set(rows.map((r) => tableName(r)));
  const excluded = new Set(sel.exclude.map(tableName));
  let chosen: TableRef[];
  if (sel.include.length > 0) {
    const missing = sel.include.filter((t) => !existing.has(tableName(t)));
    if (missing.length > 0) {
      throw new UserError(
        `tables.include: ${missing.map(tableName).join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist ` +
          `(or is not visible to this user); fix the name or create the table`,
      );
    }
    chosen = [...sel.include];
  } else {
    const schemas = new Set(sel.schemas);
    chosen = rows.filter((r) => schemas.has(r.schema));
  }
  const result = chosen.filter((t) => !excluded.has(tableName(t)));
  if (result.length === 0) {
    throw new UserError(
      `tables: no table selected (schemas ${sel.schemas.join(', ')}); set tables.include to schema.table entries`,
    );
  }
  return result;
}
