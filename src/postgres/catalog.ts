// Catalog queries: a table's shape at snapshot time and its keys. Which tables are captured is
// decided in src/capture/selection.ts.
import type pg from 'pg';
import type { Column, Relation, ReplicaIdentity } from '../change/event.ts';
import { UserError } from '../errors.ts';

export interface TableRef {
  schema: string;
  table: string;
}

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
 * not generated), in attribute order. Key columns are the primary key, or the replica identity
 * index when there is no primary key; see keyColumnNames.
 */
export async function relationFromCatalog(client: pg.Client, t: TableRef): Promise<Relation> {
  const { rows } = await client.query<ColumnRow>(
    `SELECT c.oid::int8 AS oid, c.relreplident, a.attname, a.atttypid::int8 AS atttypid,
            a.atttypmod, a.attnotnull,
            COALESCE(a.attnum = ANY(pk.indkey), false) AS pk,
            COALESCE(a.attnum = ANY(ri.indkey), false) AS ri
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
       LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
       LEFT JOIN pg_index ri ON ri.indrelid = c.oid AND ri.indisreplident
      WHERE n.nspname = $1 AND c.relname = $2
      ORDER BY a.attnum`,
    [t.schema, t.table],
  );
  const first = rows[0];
  if (!first) throw new UserError(`table ${tableName(t)} does not exist or has no columns`);
  const hasPk = rows.some((r) => r.pk === 't');
  const columns: Column[] = rows.map((r) => ({
    name: r.attname,
    typeOid: Number(r.atttypid),
    typeMod: Number(r.atttypmod),
    isKey: (hasPk ? r.pk : r.ri) === 't',
    notNull: r.attnotnull === 't',
  }));
  return {
    oid: Number(first.oid),
    schema: t.schema,
    table: t.table,
    replicaIdentity: IDENTITY[first.relreplident] ?? 'default',
    columns,
  };
}

/**
 * Kafka key columns of a relation, by name. pgoutput flags every column as part of the
 * identity when REPLICA IDENTITY is FULL, so the key comes from the catalog: the primary key,
 * else the replica identity index. (Debezium keys by the primary key too.)
 */
export async function keyColumnNames(client: pg.Client, relationOid: number): Promise<string[]> {
  const { rows } = await client.query<{ attname: string; pk: string }>(
    `SELECT a.attname, i.indisprimary AS pk
       FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisreplident)
      ORDER BY i.indisprimary DESC, array_position(i.indkey::int2[], a.attnum)`,
    [relationOid],
  );
  const pk = rows.filter((r) => r.pk === 't');
  return (pk.length > 0 ? pk : rows).map((r) => r.attname);
}
