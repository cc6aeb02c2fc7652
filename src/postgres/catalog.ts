// Catalog queries: a table's shape at snapshot time and its keys. Which tables are captured is
// decided in src/capture/selection.ts.
import type pg from 'pg';
import type { Column, Relation, ReplicaIdentity } from '../change/event.ts';
import { keyColumns } from '../capture/selection.ts';
import type { TableRef } from '../config/tables.ts';
import { UserError } from '../errors.ts';

export type { TableRef };

export const tableName = (t: TableRef): string => `${t.schema}.${t.table}`;

const IDENTITY: Record<string, ReplicaIdentity> = { d: 'default', n: 'nothing', f: 'full', i: 'index' };

/** Query connections return every value as text (see connection.ts), hence the string fields. */
interface ColumnRow {
  oid: string;
  relreplident: string;
  attname: string;
  atttypid: string;
  atttypmod: string;
  attnotnull: string;
  pk: string;
  ri: string;
}

/**
 * The relation as the catalog describes it now: the columns pgoutput would send (not dropped,
 * not generated), in attribute order. Key columns follow the one key rule (keyColumns in
 * src/capture/selection.ts), as the stream's do.
 */
export async function relationFromCatalog(
  client: pg.Client,
  t: TableRef,
  /** The columns the publication sends (publishedShape), when known: the same ones are read. */
  published: string[] | null = null,
): Promise<Relation> {
  const { rows } = await client.query<ColumnRow>(
    `SELECT c.oid::int8 AS oid, c.relreplident, a.attname, a.atttypid::int8 AS atttypid,
            a.atttypmod, a.attnotnull,
            COALESCE(a.attnum = ANY(pk.indkey), false) AS pk,
            COALESCE(a.attnum = ANY(ri.indkey), false) AS ri
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        AND (CASE WHEN $3::text[] IS NULL THEN a.attgenerated = '' ELSE a.attname = ANY($3::text[]) END)
       LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
       LEFT JOIN pg_index ri ON ri.indrelid = c.oid AND ri.indisreplident
      WHERE n.nspname = $1 AND c.relname = $2
      ORDER BY a.attnum`,
    [t.schema, t.table, published],
  );
  const first = rows[0];
  if (!first) throw new UserError(`table ${tableName(t)} does not exist or has no columns`);
  const replicaIdentity = IDENTITY[first.relreplident] ?? 'default';
  const keys = new Set(
    keyColumns(
      replicaIdentity,
      rows.filter((r) => r.pk === 't').map((r) => r.attname),
      rows.filter((r) => r.ri === 't').map((r) => r.attname),
    ),
  );
  const columns: Column[] = rows.map((r) => ({
    name: r.attname,
    typeOid: Number(r.atttypid),
    typeMod: Number(r.atttypmod),
    isKey: keys.has(r.attname),
    notNull: r.attnotnull === 't',
  }));
  return { oid: Number(first.oid), schema: t.schema, table: t.table, replicaIdentity, columns };
}

/**
 * Kafka key columns of a relation, by name, by the one key rule (src/capture/selection.ts
 * keyColumns): the stream asks the catalog because pgoutput flags every column as part of the
 * identity under REPLICA IDENTITY FULL, and only the index's under USING INDEX.
 */
export async function keyColumnNames(client: pg.Client, relationOid: number): Promise<string[]> {
  const { rows } = await client.query<{ attname: string; pk: string; ri: string; relreplident: string }>(
    `SELECT a.attname, i.indisprimary AS pk, i.indisreplident AS ri, c.relreplident
       FROM pg_class c
       JOIN pg_index i ON i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE c.oid = $1
      ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [relationOid],
  );
  const identity = IDENTITY[rows[0]?.relreplident ?? 'd'] ?? 'default';
  return keyColumns(
    identity,
    rows.filter((r) => r.pk === 't').map((r) => r.attname),
    rows.filter((r) => r.ri === 't').map((r) => r.attname),
  );
}

/**
 * What a publication sends of a table on PostgreSQL 15+: its column list (also what PG18's
 * publish_generated_columns adds) and its row filter, from pg_publication_tables. The initial
 * load reads exactly that, as PostgreSQL's own initial table sync does, so a column or a row the
 * user kept out of the publication is not published by the snapshot either. Before 15 a
 * publication has neither: null, null.
 */
export async function publishedShape(
  client: pg.Client,
  publication: string,
  t: TableRef,
): Promise<{ columns: string[] | null; rowFilter: string | null }> {
  const version = await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  if (Number(version.rows[0]?.v) < 150000) return { columns: null, rowFilter: null };
  const { rows } = await client.query<{ attnames: string[] | null; rowfilter: string | null }>(
    `SELECT attnames::text[] AS attnames, rowfilter
       FROM pg_publication_tables
      WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`,
    [publication, t.schema, t.table],
  );
  const row = rows[0];
  return { columns: row?.attnames ?? null, rowFilter: row?.rowfilter ?? null };
}
