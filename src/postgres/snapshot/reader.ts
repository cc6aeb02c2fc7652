// The initial load: every selected table read inside the slot's exported snapshot, in batches,
// so memory is bounded by the batch size and not by the table.
import type pg from 'pg';
import type { Relation, Row } from '../../change/event.ts';
import { ident, literal } from '../connection.ts';

/** Opens the transaction that sees the database exactly as of the slot's consistent point. */
export async function beginSnapshot(client: pg.Client, snapshotName: string): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await client.query(`SET TRANSACTION SNAPSHOT ${literal(snapshotName)}`);
}

/**
 * Rows of one table, batch by batch, in the relation's column order, values in text form.
 * `byKey`: in key order, and only the rows after `after` (the key values of the last row already
 * delivered, as text): what lets an interrupted initial load resume where it stopped.
 */
export async function* readTable(
  client: pg.Client,
  relation: Relation,
  batchSize: number,
  byKey?: { after: Array<string | null> | null },
  /** The publication's row filter (publishedShape): rows it keeps out are not read either. */
  rowFilter: string | null = null,
): AsyncGenerator<Row[]> {
  const cursor = ident(`pgcdc_${relation.oid}`);
  const columns = relation.columns.map((c) => ident(c.name)).join(', ');
  const keys = relation.columns.filter((c) => c.isKey).map((c) => ident(c.name));
  let order = '';
  const params: Array<string | null> = [];
  const where: string[] = rowFilter ? [rowFilter] : [];
  if (byKey && keys.length > 0) {
    if (byKey.after) {
      // Untyped parameters take the key columns' types (and the comparison their collations).
      params.push(...byKey.after);
      where.push(`(${keys.join(', ')}) > (${keys.map((_, i) => `$${i + 1}`).join(', ')})`);
    }
    order = ` ORDER BY ${keys.join(', ')}`;
  }
  if (where.length > 0) order = ` WHERE ${where.join(' AND ')}${order}`;
  await client.query(
    `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${columns} FROM ${ident(relation.schema)}.${ident(relation.table)}${order}`,
    params,
  );
  const fetch = () => {
    const p = client.query<Row>({ text: `FETCH ${batchSize} FROM ${cursor}`, rowMode: 'array' });
    p.catch(() => undefined); // awaited below, unless the caller stops early
    return p;
  };
  try {
    // The next batch is requested before this one is handed out, so PostgreSQL reads it while
    // the caller encodes and produces the current one (at most two batches in memory).
    let next = fetch();
    while (true) {
      const res = await next;
      const last = res.rows.length < batchSize;
      if (!last) next = fetch();
      if (res.rows.length > 0) yield res.rows;
      if (last) break;
    }
  } finally {
    await client.query(`CLOSE ${cursor}`);
  }
}

/** Estimated row count from the planner's statistics (cheap; exact counts would scan). */
export async function estimateRows(client: pg.Client, relation: Relation): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    'SELECT GREATEST(reltuples, 0)::int8 AS n FROM pg_class WHERE oid = $1',
    [relation.oid],
  );
  return Number(rows[0]?.n ?? 0);
}
