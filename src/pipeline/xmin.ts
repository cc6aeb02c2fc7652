// capture.method xmin: no slot, no publication, no logical decoding. Each poll reads, table by
// table, the rows whose xmin (the transaction that wrote the row version) is at or past the
// table's cursor, in primary-key chunks, and hands them to the same encoder and sink as CDC, so
// topics, keys, schemas and subjects are the same. The cursor logic (xid8, wraparound, trust) is
// in src/capture/xmin.ts; docs/xmin.md has what a consumer gets and what it cannot get.
//
// A chunk is one short REPEATABLE READ READ ONLY transaction: pg_current_snapshot() first, then
// the chunk's rows under that same snapshot. The cursor a table's poll leaves is the xmin of its
// first chunk's snapshot, taken before anything was read, so a transaction still open then is
// read by the next poll. Short transactions instead of one per poll: a long scan does not hold
// back vacuum on a primary, and a recovery conflict on a standby costs one chunk, not the scan;
// rows written during the poll have xids at or past that first xmin and are read again next time.
import type pg from 'pg';
import type { ChangeEvent, Relation, Row } from '../change/event.ts';
import { resolveTables } from '../capture/selection.ts';
import {
  judgeCursor,
  parseSnapshot,
  widenXid,
  xminCondition,
  xminRange,
  type XminRange,
} from '../capture/xmin.ts';
import { ConnectionLost, UserError } from '../errors.ts';
import type { OffsetRecord, XminTableCursor } from '../kafka/offsets.ts';
import { relationFromCatalog, tableName, type TableRef } from '../postgres/catalog.ts';
import { describePgError, ident, type PostgresEndpoint } from '../postgres/connection.ts';
import type { Logger } from '../worker/log.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { PipelineSettings } from './settings.ts';
import { snapshotEvent } from './snapshot.ts';

/** Rows per FETCH inside a chunk: what is held in memory at once, whatever the chunk size. */
const FETCH_ROWS = 1_000;

export interface XminContext {
  settings: PipelineSettings;
  log: Logger;
  /** The query connection (catalog). */
  query: pg.Client;
  endpoint: PostgresEndpoint;
  checkpoint: Checkpoint;
  stored: OffsetRecord | null;
  /** Encodes one event and hands its records to the sink. */
  publish(event: ChangeEvent): Promise<void>;
  /** The relation with its types loaded and its key decided. */
  enrich(relation: Relation): Promise<Relation>;
  stopRequested(): boolean;
  failed(): boolean;
  /** Waits while paused; false when the wait ended because of a stop or a failure. */
  whilePaused(): Promise<boolean>;
  /** Fails the run (a lost connection, a failed offset write). */
  fail(err: unknown): void;
}

export interface XminChunk {
  rows: number;
  /** Bytes of column text read. */
  bytes: number;
  /** Key (text values) of the chunk's last row; null when it read none. */
  lastKey: Array<string | null> | null;
  /** The table (or the range) has no more rows after this chunk. */
  exhausted: boolean;
}

/** Polls every selected table until a stop or a failure; drains what is in flight before it resolves. */
export async function runXminCapture(ctx: XminContext): Promise<void> {
  const s = ctx.settings;
  const x = s.capture!.xmin;
  const { checkpoint, log } = ctx;
  const cursors: Record<string, XminTableCursor> = structuredClone(ctx.stored?.xmin ?? {});
  // A stored offset of logical decoding (an LSN, snapshot progress) says nothing about xmin.
  checkpoint.begin({ lsn: '0/0', xmin: cursors }, false);
  const interrupted = () => ctx.stopRequested() || ctx.failed();
  const timer = setInterval(
    () => void checkpoint.write().catch((e: unknown) => ctx.fail(e)),
    s.offsets.commitIntervalMs,
  );
  const scan = await ctx.endpoint.connect({ applicationName: `pgcdc-${s.name}-xmin` });
  scan.on('error', (e: Error) =>
    ctx.fail(recoveryConflict(e) ?? describePgError(e, s.postgres, ctx.endpoint.tls === true)),
  );
  const relations = new Map<string, { shape: string; relation: Relation }>();
  try {
    for (let poll = 1; !interrupted(); poll++) {
      const tables = await resolveTables(ctx.query, {
        schemas: s.postgres.schemas,
        include: s.tables.include,
        exclude: s.tables.exclude,
      });
      if (poll === 1) {
        log.info('xmin capture: polling', {
          tables: tables.map(tableName),
          pollIntervalMs: x.pollIntervalMs,
          resumed: Object.keys(cursors).length > 0,
        });
      }
      const started = Date.now();
      let read = 0;
      for (const t of tables) {
        if (interrupted()) break;
        const relation = await relationOf(ctx, t, relations);
        read += await pollTable(ctx, scan, relation, cursors);
      }
      if (interrupted()) break;
      log.debug('xmin poll done', { poll, rows: read, ms: Date.now() - started });
      const until = Date.now() + x.pollIntervalMs;
      // Short naps, so a stop or a failure ends the wait at once.
      while (!interrupted() && Date.now() < until) {
        await new Promise((r) => setTimeout(r, Math.min(200, until - Date.now())));
      }
    }
  } finally {
    clearInterval(timer);
    await scan.end().catch(() => undefined);
  }
  if (ctx.failed()) return;
  await checkpoint.drain();
  log.info('drained', { xmin: Object.keys(cursors).length });
}

/** The table's relation, the same object while its shape is unchanged (the encoder caches by it). */
async function relationOf(
  ctx: XminContext,
  t: TableRef,
  cache: Map<string, { shape: string; relation: Relation }>,
): Promise<Relation> {
  const name = tableName(t);
  const fresh = await ctx.enrich(await relationFromCatalog(ctx.query, t));
  const shape = JSON.stringify(fresh);
  const known = cache.get(name);
  if (known && known.shape === shape) return known.relation;
  if (!fresh.columns.some((c) => c.isKey)) {
    throw new UserError(
      `table ${name} has no primary key: capture.method xmin reads each table in primary-key order (so a poll resumes where it stopped); add a primary key or leave the table out (tables.exclude)`,
    );
  }
  cache.set(name, { shape, relation: fresh });
  return fresh;
}

/** One poll of one table, chunk by chunk; resolves to the rows read. */
async function pollTable(
  ctx: XminContext,
  scan: pg.Client,
  relation: Relation,
  cursors: Record<string, XminTableCursor>,
): Promise<number> {
  const s = ctx.settings;
  const x = s.capture!.xmin;
  const name = tableName(relation);
  const stored = cursors[name] ?? {};
  let from = stored.from === undefined ? null : BigInt(stored.from);
  let next = stored.next === undefined ? null : BigInt(stored.next);
  let after = stored.after ?? null;
  if (next !== null && after) ctx.log.info('xmin poll resumed mid-table', { table: name, after });
  let total = 0;
  for (;;) {
    if (!(await ctx.whilePaused())) return total;
    await scan.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    let chunk: XminChunk;
    try {
      const { rows } = await scan.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s');
      const snap = parseSnapshot(rows[0]!.s);
      const verdict = judgeCursor(from, snap);
      if (verdict.kind === 'resync') {
        ctx.log.warn(
          `xmin cursor of table ${name} cannot be trusted: ${verdict.reason}; reading the whole table again (resync)`,
          { table: name },
        );
        from = null;
        next = null;
        after = null;
      }
      // The first chunk of a poll: the cursor it leaves is this snapshot's xmin.
      next ??= snap.xmin;
      const range = from === null ? 'all' : xminRange(from, snap.xmax);
      const readAt = BigInt(Date.now()) * 1000n;
      chunk =
        range === null
          ? { rows: 0, bytes: 0, lastKey: null, exhausted: true }
          : await readChunk(scan, relation, {
              range,
              after,
              xmax: snap.xmax,
              chunkRows: x.chunkRows,
              chunkBytes: x.chunkBytes,
              publish: (row, xid32, xid8, seq) =>
                ctx.publish(xminEvent(relation, row, xid32, xid8, readAt, total + seq)),
              interrupted: () => ctx.stopRequested() || ctx.failed(),
            });
      await scan.query('COMMIT');
    } catch (err) {
      await scan.query('ROLLBACK').catch(() => undefined);
      throw recoveryConflict(err, name) ?? err;
    }
    total += chunk.rows;
    ctx.log.debug('xmin chunk', { table: name, rows: chunk.rows, bytes: chunk.bytes });
    // Also after a stop cut the chunk short: every row up to its last key was handed to the sink.
    if (chunk.lastKey) after = chunk.lastKey;
    const update: XminTableCursor = chunk.exhausted
      ? { from: next.toString() }
      : {
          ...(from === null ? {} : { from: from.toString() }),
          next: next.toString(),
          ...(after ? { after } : {}),
        };
    ctx.checkpoint.afterDurable(() => {
      cursors[name] = update;
      return { xmin: cursors };
    });
    if (chunk.exhausted || ctx.stopRequested() || ctx.failed()) return total;
  }
}

/**
 * A standby cancels a query (or ends its session) whose snapshot still needs rows that vacuum on
 * the primary removed, once max_standby_streaming_delay has passed: a lost connection to retry
 * (the worker restarts and the poll resumes after the last acknowledged chunk), not a bug.
 */
function recoveryConflict(err: unknown, table?: string): ConnectionLost | null {
  const e = err as { code?: unknown; message?: unknown };
  if (e?.code !== '40001' || !/conflict with recovery/i.test(String(e.message))) return null;
  return new ConnectionLost(
    `the standby cancelled an xmin chunk${table ? ` of table ${table}` : ''} (${String(e.message)}); the poll resumes after the last acknowledged chunk. Set hot_standby_feedback = on on the standby (or raise max_standby_streaming_delay) to avoid it`,
    { cause: err },
  );
}

/**
 * One chunk: up to chunkRows rows after `after` in key order (fewer when chunkBytes is reached
 * first), fetched FETCH_ROWS at a time and handed to `publish` as they come.
 */
export async function readChunk(
  client: pg.Client,
  relation: Relation,
  opts: {
    range: XminRange | 'all';
    after: Array<string | null> | null;
    xmax: bigint;
    chunkRows: number;
    chunkBytes: number;
    publish(row: Row, xid32: number, xid8: bigint, seq: number): Promise<void>;
    interrupted(): boolean;
  },
): Promise<XminChunk> {
  const keys = relation.columns.filter((c) => c.isKey).map((c) => ident(c.name));
  const keyIndexes = relation.columns.flatMap((c, i) => (c.isKey ? [i] : []));
  const columns = relation.columns.map((c) => ident(c.name)).join(', ');
  const where: string[] = [];
  if (opts.range !== 'all') where.push(xminCondition('xmin::text::int8', opts.range));
  const params: Array<string | null> = [];
  if (opts.after) {
    // Untyped parameters take the key columns' types (and the comparison their collations).
    params.push(...opts.after);
    where.push(`(${keys.join(', ')}) > (${keys.map((_, i) => `$${i + 1}`).join(', ')})`);
  }
  const cursor = ident(`pgcdc_xmin_${relation.oid}`);
  // LIMIT makes the planner walk the primary key in order instead of sorting the whole table.
  await client.query(
    `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT xmin::text AS "xmin", ${columns}
       FROM ${ident(relation.schema)}.${ident(relation.table)}
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY ${keys.join(', ')} LIMIT ${opts.chunkRows}`,
    params,
  );
  let rows = 0;
  let bytes = 0;
  let lastKey: Array<string | null> | null = null;
  let exhausted = false;
  try {
    while (rows < opts.chunkRows && bytes < opts.chunkBytes && !opts.interrupted()) {
      const batch = Math.min(FETCH_ROWS, opts.chunkRows - rows);
      const res = await client.query<Row>({ text: `FETCH ${batch} FROM ${cursor}`, rowMode: 'array' });
      for (const fetched of res.rows) {
        const xid32 = Number(fetched[0]);
        const row = fetched.slice(1);
        for (const v of row) if (typeof v === 'string') bytes += Buffer.byteLength(v);
        // Xids below 3 are the special ones (frozen, bootstrap): no epoch to give them.
        await opts.publish(row, xid32, xid32 < 3 ? BigInt(xid32) : widenXid(xid32, opts.xmax), rows);
        rows++;
        lastKey = keyIndexes.map((i) => (row[i] as string | null) ?? null);
        // The byte bound ends the chunk at the row that reaches it; the rest is the next chunk's.
        if (bytes >= opts.chunkBytes) break;
      }
      // A short FETCH: the cursor (at most chunkRows rows) ended before its LIMIT, so the table did.
      if (res.rows.length < batch && bytes < opts.chunkBytes) {
        exhausted = true;
        break;
      }
    }
  } finally {
    await client.query(`CLOSE ${cursor}`);
  }
  return { rows, bytes, lastKey, exhausted };
}

function xminEvent(
  relation: Relation,
  row: Row,
  xid32: number,
  xid8: bigint,
  readAtMicros: bigint,
  seq: number,
): ChangeEvent {
  // op 'r': what a consumer should do with it is upsert the row by its key, as with a snapshot
  // read; 'incremental' is Debezium's marker for a read of a row's current state outside the
  // initial snapshot (its incremental snapshots): a record that may repeat, not a change decoded
  // from the WAL.
  return { ...snapshotEvent(relation, row, 0n, readAtMicros, seq, 'incremental'), xid: xid32, xmin: xid8 };
}
