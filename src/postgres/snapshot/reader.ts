// Reading tables for the initial load: inside the slot's exported snapshot in batches (readTable),
// or in key chunks for the chunked load (readChunk). Both are bounded by rows and by bytes, so
// memory follows the configuration, not the table nor the width of its rows.
import type pg from 'pg';
import type { Relation, Row } from '../../change/event.ts';
import { ident, literal } from '../connection.ts';

/** Opens the transaction that sees the database exactly as of the slot's consistent point. */
export async function beginSnapshot(client: pg.Client, snapshotName: string): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await client.query(`SET TRANSACTION SNAPSHOT ${literal(snapshotName)}`);
}

/** Rows fetched by the first round trip of a chunk, before the average row width is known. */
const FIRST_FETCH = 16;

const rowBytes = (row: Row): number => {
  let n = 0;
  for (const v of row) if (typeof v === 'string') n += v.length + 8;
  return n + 16;
};

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
  /** The byte budget of one batch (snapshot.chunkBytes). */
  maxBatchBytes = 8 << 20,
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
  const fetch = (n: number) => {
    const p = client.query<Row>({ text: `FETCH ${n} FROM ${cursor}`, rowMode: 'array' });
    p.catch(() => undefined); // awaited below, unless the caller stops early
    return p;
  };
  try {
    // The next batch is requested before this one is handed out, so PostgreSQL reads it while
    // the caller encodes and produces the current one (at most two batches in memory). A batch
    // is batchSize rows, or fewer when the rows are wide: its size follows the average row
    // width seen so far, so that it holds about maxBatchBytes.
    let size = Math.min(FIRST_FETCH, batchSize);
    let next = fetch(size);
    let rows = 0;
    let bytes = 0;
    while (true) {
      const res = await next;
      const last = res.rows.length < size;
      for (const r of res.rows) bytes += rowBytes(r);
      rows += res.rows.length;
      if (!last) {
        size = Math.max(1, Math.min(batchSize, Math.floor(maxBatchBytes / (bytes / rows))));
        next = fetch(size);
      }
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

/** One chunk of the chunked load: rows in key order after a key, cut by rows and by bytes. */
export interface Chunk {
  rows: Row[];
  /** The key (text values) of the chunk's last row; null when the chunk is empty. */
  lastKey: Array<string | null> | null;
  /** The table has no rows after this chunk. */
  end: boolean;
  /** Bytes of column text read (what the chunk holds in memory, roughly). */
  bytes: number;
}

/**
 * Reads the next chunk of `relation` after `after` (its key values as text; null from the start),
 * in key order, inside the caller's transaction: at most `maxRows` rows, and no more round trips
 * once `maxBytes` of column text are held. The fetch size follows the average row width seen, so
 * a table of 1 MiB rows and one of 40-byte rows both stay near the byte budget (one row is always
 * read, however wide).
 */
export async function readChunk(
  client: pg.Client,
  relation: Relation,
  after: Array<string | null> | null,
  limits: { maxRows: number; maxBytes: number },
  rowFilter: string | null = null,
): Promise<Chunk> {
  const keyIdx = relation.columns.flatMap((c, i) => (c.isKey ? [i] : []));
  if (keyIdx.length === 0) throw new Error(`readChunk: ${relation.schema}.${relation.table} has no key`);
  const cursor = ident(`pgcdc_chunk_${relation.oid}`);
  const columns = relation.columns.map((c) => ident(c.name)).join(', ');
  const keys = keyIdx.map((i) => ident(relation.columns[i]!.name));
  const where: string[] = rowFilter ? [`(${rowFilter})`] : [];
  // Untyped parameters take the key columns' types (and the comparison their collations), so the
  // order is the primary key index's and the range scan uses it.
  if (after) where.push(`(${keys.join(', ')}) > (${keys.map((_, i) => `$${i + 1}`).join(', ')})`);
  const filter = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
  await client.query(
    `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${columns} FROM ${ident(relation.schema)}.${ident(relation.table)}${filter} ORDER BY ${keys.join(', ')} LIMIT ${limits.maxRows + 1}`,
    after ?? [],
  );
  const rows: Row[] = [];
  let bytes = 0;
  /** The cursor ran out before its LIMIT: nothing follows this chunk. */
  let exhausted = false;
  try {
    let fetch = Math.min(FIRST_FETCH, limits.maxRows + 1);
    while (rows.length <= limits.maxRows && bytes < limits.maxBytes) {
      const res = await client.query<Row>({ text: `FETCH ${fetch} FROM ${cursor}`, rowMode: 'array' });
      for (const r of res.rows) {
        rows.push(r);
        bytes += rowBytes(r);
      }
      if (res.rows.length < fetch) {
        exhausted = true;
        break;
      }
      const room = limits.maxRows + 1 - rows.length;
      fetch = Math.max(1, Math.min(room, Math.floor((limits.maxBytes - bytes) / (bytes / rows.length))));
    }
  } finally {
    await client.query(`CLOSE ${cursor}`);
  }
  // The row past maxRows only says that the table goes on: it is the next chunk's first.
  let end = exhausted;
  if (rows.length > limits.maxRows) {
    bytes -= rowBytes(rows.pop()!);
    end = false;
  }
  const last = rows.at(-1);
  return { rows, lastKey: last ? keyIdx.map((i) => (last[i] as string | null) ?? null) : null, end, bytes };
}
