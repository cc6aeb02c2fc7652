// The chunked load (DBLog): tables read in primary-key chunks while the replication stream runs,
// each chunk emitted at its high watermark in the stream (the drop rule is in chunks.ts). The slot
// is created first and kept, so a crash resumes after the last completed chunk on the same slot
// and every change made meanwhile, deletes included, reaches the topic through the stream: no
// ghost rows, and no table read twice.
//
// Work is split between two parties:
// - reader loops (snapshot.parallelism of them, one table each at a time, one chunk per table in
//   flight): open a window, take a snapshot, write the low watermark, read the chunk, write the
//   high watermark, wait for the stream to emit it;
// - the stream handler (the connector): shows every decoded change to the windows, and at a high
//   watermark emits the chunk's surviving rows in stream order and records the table's progress
//   (last key) once they are durable.
// Memory: at most snapshot.parallelism chunks are held, each cut at snapshot.chunkBytes.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { ChangeEvent, Relation, SnapshotMarker } from '../change/event.ts';
import type { SnapshotState, TableProgress } from '../kafka/offsets.ts';
import { publishedShape, relationFromCatalog, tableName, type TableRef } from '../postgres/catalog.ts';
import { literal } from '../postgres/connection.ts';
import { parseLsn, type Lsn } from '../postgres/lsn.ts';
import type { LogicalDecodingMessage } from '../postgres/replication/pgoutput.ts';
import { estimateRows, readChunk, readTable, type Chunk } from '../postgres/snapshot/reader.ts';
import { ChunkWindows, parseSnapshot } from './chunks.ts';
import { WATERMARK_PREFIX } from './messages.ts';
import { snapshotEvent, snapshotMarker, type InitialLoadContext } from './snapshot.ts';

/** What the chunked load needs of the connector: the exported load's context, and a way to fail. */
/** Reads of one chunk in a row that the drop rule sent back before the load gives up. */
const MAX_CHUNK_RETRIES = 50;

export type ChunkedLoadContext = Pick<
  InitialLoadContext,
  'settings' | 'log' | 'endpoint' | 'checkpoint' | 'progress' | 'rows' | 'publish' | 'enrich' | 'whilePaused'
> & {
  /** A reader failed: the run fails with it. */
  fail(err: unknown): void;
  /**
   * Prepares the relations' schemas (registry subjects) ahead of their first rows. Optional; a
   * failure here is not the load's: the first row prepares its relation again and fails there.
   */
  prepare?(relations: Relation[]): Promise<void>;
};

/** What a table's read needs from the catalog, read ahead of it by the planner. */
interface TablePlan {
  relation: Relation;
  rowFilter: string | null;
  estimatedRows: number;
  /** When the catalog was read (ms): a reader reads it again when the plan is older than PLAN_MAX_AGE_MS. */
  readAt: number;
}

/**
 * How many tables the planner reads ahead of the readers: enough to hide its round trips behind
 * theirs with many small tables, few enough that a relation is not read long before its rows.
 */
const PLAN_AHEAD = 32;
/**
 * A plan older than this is read again by its reader: with large tables the planner runs far
 * ahead in time, and a relation read long before its rows could miss an ALTER TABLE made since.
 */
const PLAN_MAX_AGE_MS = 5_000;
/** Relations handed to prepare() at once. */
const PREPARE_BATCH = 8;

interface PendingChunk {
  id: number;
  table: string;
  relation: Relation;
  chunk: Chunk;
  /** Resolves with whether the chunk was emitted (false: read it again). */
  done: PromiseWithResolvers<boolean>;
}

/** Test hook: called at named points of the load (see test/integration/chunked-load.test.ts). */
export type LoadFailpoint = (point: 'chunk-read' | 'chunk-emitted', table: string) => void | Promise<void>;

export class ChunkedLoad {
  #ctx: ChunkedLoadContext;
  #state: SnapshotState;
  #tables: TableRef[];
  #windows = new ChunkWindows();
  #pending = new Map<number, PendingChunk>();
  /** Watermarks of this process only: a replayed one from an earlier run is not ours. */
  #run = randomUUID();
  #halted = false;
  /** Per table, why its last chunk was read again (for the error when that keeps happening). */
  #retryReason = new Map<string, string>();
  #cancelled = false;
  #startedAt = BigInt(Date.now()) * 1000n;
  /** Whether the first row of the load was emitted (Debezium's 'first' marker). */
  #anyEmitted = false;
  #marker: 'initial' | 'incremental';
  /** Per table, what was handed to the sink so far (ahead of the stored progress until durable). */
  #emitted = new Map<string, { rows: number; lastKey: Array<string | null> | null; done: boolean }>();
  /** Per table, its catalog reads: begun by the planner ahead of the readers, or by the reader. */
  #plans = new Map<string, Promise<TablePlan>>();
  /** Tables the readers have taken so far; the planner stays within PLAN_AHEAD of it. */
  #taken = 0;
  #tookTable = Promise.withResolvers<void>();
  /** False once the readers are done: the planner stops. */
  #planning = false;
  failpoint: LoadFailpoint | null = null;

  /**
   * `state`: the load's progress (a new one, or the stored one of an interrupted load), kept by
   * reference in the offset. `tables`: the tables to read (those marked done are skipped).
   */
  constructor(ctx: ChunkedLoadContext, state: SnapshotState, tables: TableRef[]) {
    this.#ctx = ctx;
    this.#state = state;
    this.#tables = tables;
    this.#marker = state.incremental ? 'incremental' : 'initial';
    const acknowledged = (state.tables ??= {});
    for (const t of tables) acknowledged[tableName(t)] ??= { rows: 0, done: false };
    ctx.progress.state = 'running';
    ctx.checkpoint.touch();
    for (const t of tables) {
      const a = acknowledged[tableName(t)]!;
      ctx.progress.tables[tableName(t)] = { rows: a.rows, estimatedRows: 0, done: a.done };
      ctx.rows[tableName(t)] = a.rows;
      this.#emitted.set(tableName(t), { rows: a.rows, lastKey: a.lastKey ?? null, done: a.done });
    }
  }

  get #parallelism(): number {
    return this.#ctx.settings.snapshot.parallelism ?? 2;
  }

  get #chunkBytes(): number {
    return this.#ctx.settings.snapshot.chunkBytes ?? 8 << 20;
  }

  /** An on-demand load (its rows are marked 'incremental'). */
  get incremental(): boolean {
    return this.#marker === 'incremental';
  }

  /** Tables not yet read to the end. */
  get remaining(): number {
    return [...this.#emitted.values()].filter((e) => !e.done).length;
  }

  /** Chunks waiting for their high watermark. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Reads every table; resolves when all are done and durable, or the load was halted. */
  async run(): Promise<'completed' | 'halted'> {
    const s = this.#ctx.settings;
    const queue = this.#tables.filter((t) => !this.#state.tables![tableName(t)]!.done);
    const resumed = Object.values(this.#state.tables!).some((a) => a.rows > 0 || a.done);
    this.#ctx.log.info(resumed ? 'chunked snapshot resumed' : 'chunked snapshot started', {
      tables: queue.map(tableName),
      parallelism: this.#parallelism,
      chunkRows: s.snapshot.batchSize,
      chunkBytes: this.#chunkBytes,
    });
    const order = [...queue];
    const reader = async (): Promise<void> => {
      const client = await this.#ctx.endpoint.connect({ applicationName: `pgcdc-${s.name}-snapshot` });
      try {
        for (let t = queue.shift(); t && !this.#halted; t = queue.shift()) {
          this.#taken++;
          this.#tookTable.resolve();
          await this.#readTable(client, t);
        }
      } finally {
        await client.end().catch(() => undefined);
      }
    };
    const readers = Array.from({ length: Math.max(1, Math.min(this.#parallelism, queue.length)) }, reader);
    this.#planning = order.length > this.#parallelism;
    const planning = this.#planning ? this.#planAhead(order) : Promise.resolve();
    try {
      await Promise.all(readers);
    } finally {
      // Readers done (or failed): the planner has nothing left to read ahead for.
      this.#planning = false;
      this.#tookTable.resolve();
      await planning;
    }
    if (this.#halted && !this.#cancelled) return 'halted';
    await new Promise<void>((resolve) =>
      this.#ctx.checkpoint.afterDurable(() => {
        resolve();
        // The per-table map served restarts of this load only; the streaming offset stays small.
        return {
          snapshot: { state: 'done', method: 'chunked', consistentPoint: this.#state.consistentPoint },
        };
      }),
    );
    // Stored now, not at the next commit interval: a restart must not resume a finished load.
    await this.#ctx.checkpoint.write();
    this.#ctx.progress.state = this.#cancelled ? 'interrupted' : 'completed';
    this.#ctx.log.info(this.#cancelled ? 'snapshot cancelled' : 'snapshot completed', {
      rows: this.#ctx.rows,
    });
    return 'completed';
  }

  /** Stops an on-demand load for good: what it sent stays, the offset says it is over. */
  cancel(): void {
    this.#cancelled = true;
    this.halt();
  }

  /** Stops reading: chunks waiting for their watermark are forgotten (the next start reads them again). */
  halt(): void {
    this.#halted = true;
    for (const p of this.#pending.values()) {
      this.#windows.discard(p.id);
      p.done.resolve(false);
    }
    this.#pending.clear();
    if (this.#ctx.progress.state === 'running') this.#ctx.progress.state = 'interrupted';
  }

  /** Every change the stream decodes, before it is published. */
  observe(event: ChangeEvent): void {
    if (this.#windows.open > 0) this.#windows.observe(tableName(event.relation), event);
  }

  /** A TRUNCATE decoded from the stream (whether or not truncate events are published). */
  truncated(relations: Relation[], xid: number): void {
    for (const r of relations) this.#windows.truncate(tableName(r), xid);
  }

  /**
   * A watermark message came through the stream. At a high watermark of ours the chunk's rows
   * that survive the drop rule are published here, in stream order. True when it was a watermark
   * (of any run: never published).
   */
  async watermark(msg: LogicalDecodingMessage, lsn: Lsn): Promise<void> {
    const [run, id, kind] = Buffer.from(msg.content).toString('utf8').split(':');
    if (run !== this.#run || kind !== 'high') return;
    const pending = this.#pending.get(Number(id));
    if (!pending) return;
    this.#pending.delete(pending.id);
    const outcome = this.#windows.close(pending.id, pending.chunk.rows, pending.relation);
    if (outcome.kind === 'retry') {
      this.#ctx.log.debug('chunk read again', { table: pending.table, reason: outcome.reason });
      this.#retryReason.set(pending.table, outcome.reason);
      pending.done.resolve(false);
      return;
    }
    const { table, relation, chunk } = pending;
    const emitted = this.#emitted.get(table)!;
    const tableFirst = emitted.rows === 0;
    const lastOfLoad = chunk.end && this.#othersDone(table);
    for (let i = 0; i < outcome.rows.length; i++) {
      const last = i === outcome.rows.length - 1;
      const marker = this.#markerFor(i === 0 && tableFirst, last && chunk.end, last && lastOfLoad);
      await this.#ctx.publish(
        snapshotEvent(relation, outcome.rows[i]!, lsn, this.#startedAt, emitted.rows++, marker),
      );
    }
    // The next chunk reads after this one at once; the stored progress moves once its rows are durable.
    emitted.lastKey = chunk.lastKey ?? emitted.lastKey;
    emitted.done = chunk.end;
    const stored: TableProgress = {
      rows: emitted.rows,
      done: chunk.end,
      ...(chunk.end || !emitted.lastKey ? {} : { lastKey: emitted.lastKey }),
    };
    this.#ctx.checkpoint.afterDurable(() => this.#acknowledge(table, stored));
    pending.done.resolve(true);
    await this.failpoint?.('chunk-emitted', table);
  }

  /** The table's progress is durable: it goes into the offset, the stats and the status. */
  #acknowledge(table: string, stored: TableProgress): { snapshot: SnapshotState } {
    this.#state.tables![table] = stored;
    this.#ctx.rows[table] = stored.rows;
    const p = this.#ctx.progress.tables[table];
    if (p) this.#ctx.progress.tables[table] = { ...p, rows: stored.rows, done: stored.done };
    return { snapshot: this.#state };
  }

  #othersDone(table: string): boolean {
    return [...this.#emitted].every(([name, e]) => name === table || e.done);
  }

  #markerFor(firstInTable: boolean, lastInTable: boolean, lastOfLoad: boolean): SnapshotMarker {
    if (this.#marker === 'incremental') return 'incremental';
    const first = !this.#anyEmitted;
    this.#anyEmitted = true;
    return snapshotMarker(first, lastOfLoad, firstInTable, lastInTable);
  }

  /**
   * Reads the catalog for the tables in `order` ahead of the readers, on a connection of its own,
   * and prepares their schemas a batch at a time. With many small tables these per-table round
   * trips (catalog queries, registry subjects), not the rows, were most of the load's time
   * (docs/performance.md "Many tables"). Best effort: a table whose plan failed is planned again
   * by its reader, which then fails with the error.
   */
  async #planAhead(order: TableRef[]): Promise<void> {
    const s = this.#ctx.settings;
    let client: pg.Client;
    try {
      client = await this.#ctx.endpoint.connect({ applicationName: `pgcdc-${s.name}-snapshot-plan` });
    } catch {
      return; // the readers plan their tables themselves
    }
    let preparing: Promise<void> = Promise.resolve();
    let batch: Relation[] = [];
    const flush = () => {
      const relations = batch;
      batch = [];
      if (relations.length === 0 || !this.#ctx.prepare) return;
      preparing = preparing.then(() => this.#ctx.prepare!(relations).catch(() => undefined));
    };
    try {
      for (let i = 0; i < order.length && this.#planning && !this.#halted; i++) {
        while (i >= this.#taken + PLAN_AHEAD && this.#planning && !this.#halted) {
          flush();
          this.#tookTable = Promise.withResolvers<void>();
          await this.#tookTable.promise;
        }
        const name = tableName(order[i]!);
        // Taken by a reader already (it plans the table itself), or the readers are done.
        if (i < this.#taken || !this.#planning || this.#halted) continue;
        const plan = this.#planTable(client, order[i]!);
        this.#plans.set(name, plan);
        const ok = await plan.then(
          (p) => p,
          () => {
            this.#plans.delete(name);
            return null;
          },
        );
        if (!ok) continue;
        batch.push(ok.relation);
        if (batch.length >= PREPARE_BATCH) flush();
      }
      flush();
      await preparing;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async #planTable(client: pg.Client, t: TableRef): Promise<TablePlan> {
    const s = this.#ctx.settings;
    const name = tableName(t);
    const shape = await publishedShape(client, s.publication.name, t);
    const relation = await this.#ctx.enrich(await relationFromCatalog(client, t, shape.columns));
    const estimatedRows = await estimateRows(client, relation);
    const rowFilter = [shape.rowFilter, this.#state.filters?.[name]].filter(Boolean).join(') AND (') || null;
    return { relation, rowFilter, estimatedRows, readAt: Date.now() };
  }

  async #readTable(client: pg.Client, t: TableRef): Promise<void> {
    const s = this.#ctx.settings;
    const name = tableName(t);
    const planned = this.#plans.get(name);
    this.#plans.delete(name);
    // A plan the planner could not make (its connection lost, say) is made here, where a failure
    // is the load's; so is one made too long ago.
    const ahead = await planned?.catch(() => null);
    const plan =
      ahead && Date.now() - ahead.readAt < PLAN_MAX_AGE_MS ? ahead : await this.#planTable(client, t);
    const { relation, rowFilter } = plan;
    const p = this.#ctx.progress.tables[name];
    if (p) p.estimatedRows = plan.estimatedRows;
    this.#ctx.log.info('snapshot table', { table: name, estimatedRows: p?.estimatedRows ?? 0 });
    const keyNames = relation.columns.filter((c) => c.isKey).map((c) => c.name);
    if (keyNames.length === 0) {
      await this.#readWithoutKey(client, name, relation, rowFilter ? `(${rowFilter})` : null);
      return;
    }
    let retries = 0;
    while (!this.#halted) {
      if (!(await this.#ctx.whilePaused())) return;
      const after = this.#emitted.get(name)!.lastKey;
      const id = this.#windows.openWindow(name, keyNames);
      let chunk: Chunk;
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        // The snapshot is taken by this first statement; the low watermark follows it.
        const { rows } = await client.query<{ snap: string }>(
          `SELECT pg_current_snapshot()::text AS snap, pg_logical_emit_message(false, ${literal(WATERMARK_PREFIX)}, ${literal(`${this.#run}:${id}:low`)})`,
        );
        this.#windows.setSnapshot(id, parseSnapshot(rows[0]!.snap));
        chunk = await readChunk(
          client,
          relation,
          after,
          { maxRows: s.snapshot.batchSize, maxBytes: this.#chunkBytes },
          rowFilter ? `(${rowFilter})` : null,
        );
        await this.failpoint?.('chunk-read', name);
        const done = Promise.withResolvers<boolean>();
        this.#pending.set(id, { id, table: name, relation, chunk, done });
        // Transactional, so the commit flushes it (a non-transactional message waits for the WAL
        // writer, up to wal_writer_delay, before the walsender may send it): the chunk is emitted
        // at this transaction's commit in the stream, after every change its snapshot missed.
        await client.query(`SET LOCAL synchronous_commit = on`);
        await client.query(
          `SELECT pg_logical_emit_message(true, ${literal(WATERMARK_PREFIX)}, ${literal(`${this.#run}:${id}:high`)})`,
        );
        await client.query('COMMIT');
        if (this.#halted) return;
        if (!(await done.promise)) {
          // Read again (or halted). A chunk that never gets through would otherwise spin here.
          if (++retries >= MAX_CHUNK_RETRIES && !this.#halted) {
            throw new Error(
              `snapshot of ${name}: the chunk after key ${JSON.stringify(after)} was read ${retries} times and never emitted (last: ${this.#retryReason.get(name) ?? 'unknown'}); set snapshot.method=exported for this connector and report it`,
            );
          }
          continue;
        }
        retries = 0;
      } catch (err) {
        this.#windows.discard(id);
        this.#pending.delete(id);
        await client.query('ROLLBACK').catch(() => undefined);
        if (this.#halted) return;
        throw err;
      }
      if (chunk.end) return;
    }
  }

  /**
   * A table without a key has no order to read it by in chunks nor a key to drop rows by: it is
   * read in one transaction and its rows are published as they come. Its changes while it is read
   * may then appear before or after its rows (docs/snapshots.md); an interrupted read starts over.
   */
  async #readWithoutKey(
    client: pg.Client,
    name: string,
    relation: Relation,
    rowFilter: string | null,
  ): Promise<void> {
    const s = this.#ctx.settings;
    this.#ctx.log.warn(
      'table has no primary key or replica identity index: read in one pass, not in chunks',
      {
        table: name,
      },
    );
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    let rows = 0;
    try {
      for await (const batch of readTable(
        client,
        relation,
        s.snapshot.batchSize,
        undefined,
        rowFilter,
        this.#chunkBytes,
      )) {
        for (const row of batch) {
          const marker = this.#markerFor(rows === 0, false, false);
          await this.#ctx.publish(
            snapshotEvent(
              relation,
              row,
              parseLsn(this.#state.consistentPoint),
              this.#startedAt,
              rows++,
              marker,
            ),
          );
        }
        if (this.#halted || !(await this.#ctx.whilePaused())) return;
      }
    } finally {
      await client.query('COMMIT').catch(() => undefined);
    }
    const stored: TableProgress = { rows, done: true };
    this.#emitted.set(name, { rows, lastKey: null, done: true });
    this.#ctx.checkpoint.afterDurable(() => this.#acknowledge(name, stored));
  }
}
