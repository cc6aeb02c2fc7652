// The initial load: a new slot with an exported snapshot, every selected table read inside that
// snapshot, and streaming handed the slot's consistent point, so the load and the stream meet at
// exactly one position. Progress (rows per table) is stored at batch granularity once durable.
import type pg from 'pg';
import type { ChangeEvent, Relation, Row, SnapshotMarker } from '../change/event.ts';
import type { SnapshotState, TableProgress } from '../kafka/offsets.ts';
import { publishedShape, relationFromCatalog, tableName, type TableRef } from '../postgres/catalog.ts';
import type { PostgresEndpoint } from '../postgres/connection.ts';
import { formatLsn, parseLsn, type Lsn } from '../postgres/lsn.ts';
import { createSlotWithSnapshot, dropSlot } from '../postgres/replication/slot.ts';
import { beginSnapshot, estimateRows, readTable } from '../postgres/snapshot/reader.ts';
import type { Logger } from '../worker/log.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { PipelineSettings } from './settings.ts';

/** The initial load as far as Kafka has acknowledged it (rows per table, at batch granularity). */
export interface SnapshotProgress {
  /** 'completed' also when an earlier run finished it (the stored offset says so). */
  state: 'none' | 'running' | 'completed' | 'interrupted';
  tables: Record<string, { rows: number; estimatedRows: number; done: boolean }>;
}

export interface InitialLoadContext {
  settings: PipelineSettings;
  log: Logger;
  query: pg.Client;
  endpoint: PostgresEndpoint;
  checkpoint: Checkpoint;
  progress: SnapshotProgress;
  /** Rows acknowledged per table (the connector's stats). */
  rows: Record<string, number>;
  /** Encodes one event and hands its records to the sink. */
  publish(event: ChangeEvent): Promise<void>;
  /** The relation with its types loaded and its key decided. */
  enrich(relation: Relation): Promise<Relation>;
  /** A stop was requested. */
  stopRequested(): boolean;
  /** The run failed (e.g. Kafka refused a record). */
  failed(): boolean;
  /** Waits while paused; false when the wait ended because of a stop or a failure. */
  whilePaused(): Promise<boolean>;
}

/**
 * Takes the initial load. Returns the LSN streaming starts at (the slot's consistent point).
 * `dropSlot`: the slot of an earlier run is in the way (plan.ts decides it is ours). `temporary`:
 * no streaming follows, so the slot lives only as long as it takes to export the snapshot.
 */
export async function takeSnapshot(
  ctx: InitialLoadContext,
  tables: TableRef[],
  opts: { dropSlot: boolean; temporary: boolean; resume?: SnapshotState },
): Promise<Lsn> {
  if (opts.resume) return loadTables(ctx, tables, opts.resume);
  const s = ctx.settings;
  const { checkpoint } = ctx;
  // A new snapshot needs a new slot: only its creation exports a snapshot that matches its start.
  if (opts.dropSlot) await dropSlot(ctx.query, s.slot.name);
  if (!opts.temporary) {
    // Claim the slot before it exists: a crash between its creation and the first offset must
    // not leave a slot no stored offset vouches for (the next start would refuse to drop it).
    checkpoint.begin({ lsn: '0/0', snapshot: { state: 'running', consistentPoint: '0/0' } }, true);
    await checkpoint.drain();
  }
  const repl = await ctx.endpoint.connect({ replication: true });
  const snapClient = await ctx.endpoint.connect({ applicationName: `pgcdc-${s.name}-snapshot` });
  let consistentPoint: Lsn;
  try {
    const slot = await createSlotWithSnapshot(repl, s.slot.name, {
      temporary: opts.temporary,
      failover: s.slot.failover,
    });
    consistentPoint = slot.consistentPoint;
    await beginSnapshot(snapClient, slot.snapshotName);
  } finally {
    // The importing transaction holds the snapshot now; the replication connection may go (and
    // with it a temporary slot).
    await repl.end();
  }
  const cp = formatLsn(consistentPoint);
  const state: SnapshotState = {
    state: 'running',
    consistentPoint: cp,
    tables: Object.fromEntries(tables.map((t) => [tableName(t), { rows: 0, done: false }])),
  };
  // After a new snapshot the stored offset (if any) describes the old slot: start over from here.
  checkpoint.begin({ lsn: cp, snapshot: state }, true);
  await checkpoint.write();
  ctx.log.info('snapshot started', { consistentPoint: cp, tables: tables.map(tableName) });
  return loadTables(ctx, tables, state, snapClient);
}

/**
 * Starts a chunked load (src/pipeline/chunked-load.ts): a new slot without an exported snapshot,
 * and the load's progress stored at its start point. Returns where streaming starts and the
 * state the load keeps by reference in the offset.
 */
export async function beginChunkedLoad(
  ctx: Pick<InitialLoadContext, 'settings' | 'log' | 'query' | 'endpoint' | 'checkpoint'>,
  tables: TableRef[],
  opts: { dropSlot: boolean },
): Promise<{ lsn: Lsn; state: SnapshotState }> {
  const s = ctx.settings;
  const { checkpoint } = ctx;
  if (opts.dropSlot) await dropSlot(ctx.query, s.slot.name);
  // Claimed as an exported load would be: a crash before the slot exists starts over.
  checkpoint.begin({ lsn: '0/0', snapshot: { state: 'running', consistentPoint: '0/0' } }, true);
  await checkpoint.drain();
  const repl = await ctx.endpoint.connect({ replication: true });
  let lsn: Lsn;
  try {
    const slot = await createSlotWithSnapshot(repl, s.slot.name, {
      failover: s.slot.failover,
      exportSnapshot: false,
    });
    lsn = slot.consistentPoint;
  } finally {
    await repl.end();
  }
  const cp = formatLsn(lsn);
  const state: SnapshotState = {
    state: 'running',
    method: 'chunked',
    consistentPoint: cp,
    tables: Object.fromEntries(tables.map((t) => [tableName(t), { rows: 0, done: false }])),
  };
  checkpoint.begin({ lsn: cp, snapshot: state }, true);
  await checkpoint.write();
  ctx.log.info('slot created for the chunked snapshot', { slot: s.slot.name, consistentPoint: cp });
  return { lsn, state };
}

/**
 * Reads the tables into Kafka, from `state` (the acknowledged progress). With exactly-once
 * delivery rows are read in key order and each batch's progress names the key of its last row,
 * committed in the same Kafka transaction as the rows: an interrupted load resumes after it, in a
 * new snapshot (`exported` absent), streaming afterwards from the slot the load began with. See
 * docs/durability.md "Exactly-once" for what that means for changes made while it was interrupted.
 */
async function loadTables(
  ctx: InitialLoadContext,
  tables: TableRef[],
  state: SnapshotState,
  exported?: pg.Client,
): Promise<Lsn> {
  const s = ctx.settings;
  const { checkpoint, progress } = ctx;
  const interrupted = () => ctx.stopRequested() || ctx.failed();
  const byKey = s.delivery?.mode === 'exactly-once';
  const consistentPoint = parseLsn(state.consistentPoint);
  const cp = state.consistentPoint;
  const acknowledged: Record<string, TableProgress> = (state.tables ??= {});
  for (const t of tables) acknowledged[tableName(t)] ??= { rows: 0, done: false };
  const resumed = Object.values(acknowledged).some((a) => a.rows > 0 || a.done);
  let snapClient = exported;
  if (!snapClient) {
    snapClient = await ctx.endpoint.connect({ applicationName: `pgcdc-${s.name}-snapshot` });
    await snapClient.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    checkpoint.begin({ lsn: cp, snapshot: state }, false);
    ctx.log.info('snapshot resumed after the last committed row', { consistentPoint: cp });
  }
  progress.state = 'running';
  for (const t of tables) {
    const a = acknowledged[tableName(t)]!;
    progress.tables[tableName(t)] = { rows: a.rows, estimatedRows: 0, done: a.done };
    ctx.rows[tableName(t)] = a.rows;
  }

  const nowMicros = BigInt(Date.now()) * 1000n;
  // One row of look-ahead gives Debezium's markers: whether a row ends its table, or the snapshot.
  let held: ChangeEvent | null = null;
  let heldFirst = { inSnapshot: false, inTable: false };
  let heldLastInTable = false;
  let heldKey: Array<string | null> | null = null;
  let anyRead = resumed;
  /** Counts a row of the current table once it is handed to the sink. */
  let afterHeld: ((key: Array<string | null> | null) => void) | null = null;
  /** The previous table is done once its last row (held) is handed to the sink. */
  let pendingDone: (() => void) | null = null;
  const mark = (lastInSnapshot: boolean): SnapshotMarker =>
    snapshotMarker(heldFirst.inSnapshot, lastInSnapshot, heldFirst.inTable, heldLastInTable);
  const publishHeld = async (lastInSnapshot: boolean): Promise<void> => {
    held!.snapshot = mark(lastInSnapshot);
    await ctx.publish(held!);
    held = null;
    if (pendingDone) {
      const done = pendingDone;
      pendingDone = null;
      done();
    } else afterHeld?.(heldKey);
  };
  try {
    for (const t of tables) {
      const name = tableName(t);
      const shape = await publishedShape(snapClient, s.publication.name, t);
      const relation = await ctx.enrich(await relationFromCatalog(snapClient, t, shape.columns));
      const table = acknowledged[name]!;
      if (table.done) continue;
      const estimate = await estimateRows(snapClient, relation);
      progress.tables[name]!.estimatedRows = estimate;
      ctx.log.info('snapshot table', { table: name, estimatedRows: estimate });
      const keyIndexes = relation.columns.flatMap((c, i) => (c.isKey ? [i] : []));
      // Without a key a table's rows have no order to resume by: such a table is read again.
      const after = byKey && keyIndexes.length > 0 ? (table.lastKey ?? null) : null;
      let rows = after ? table.rows : 0;
      // The progress counts rows handed to the sink: the held one is not yet.
      let published = rows;
      let lastKey = after;
      afterHeld = (key) => {
        published++;
        lastKey = key;
      };
      const reading = readTable(
        snapClient,
        relation,
        s.snapshot.batchSize,
        byKey ? { after } : undefined,
        shape.rowFilter,
        s.snapshot.chunkBytes,
      );
      for await (const batch of reading) {
        for (const row of batch) {
          if (held) await publishHeld(false);
          heldFirst = { inSnapshot: !anyRead, inTable: rows === 0 };
          heldLastInTable = false;
          anyRead = true;
          held = snapshotEvent(relation, row, consistentPoint, nowMicros, rows);
          heldKey = keyIndexes.map((i) => (row[i] as string | null) ?? null);
          rows++;
        }
        if (interrupted()) break;
        const done = published;
        const key = byKey && keyIndexes.length > 0 ? lastKey : null;
        checkpoint.afterDurable(() => {
          acknowledged[name] = { rows: done, done: false, ...(key ? { lastKey: key } : {}) };
          ctx.rows[name] = done;
          progress.tables[name]!.rows = done;
          return { snapshot: state };
        });
        if (!(await ctx.whilePaused())) break;
      }
      if (interrupted()) break;
      if (rows > 0) heldLastInTable = true; // the held row ended its table
      const total = rows;
      const tableDone = () =>
        checkpoint.afterDurable(() => {
          acknowledged[name] = { rows: total, done: true };
          ctx.rows[name] = total;
          progress.tables[name] = { ...progress.tables[name]!, rows: total, done: true };
          return { snapshot: state };
        });
      // Done once its last row is handed to the sink (it is held until the next row comes).
      if (held) pendingDone = tableDone;
      else tableDone();
    }
    // A stop ends the snapshot early: its last row is not the snapshot's last.
    if (held) await publishHeld(!ctx.stopRequested());
    await snapClient.query('COMMIT');
  } finally {
    await snapClient.end().catch(() => undefined);
  }
  if (interrupted()) {
    progress.state = 'interrupted';
    ctx.log.info(
      byKey
        ? 'snapshot interrupted; the next start resumes it after the last committed row'
        : 'snapshot interrupted; the next start takes it again from the beginning',
    );
    return consistentPoint;
  }
  await new Promise<void>((resolve) =>
    checkpoint.afterDurable(() => {
      resolve();
      // The per-table map served restarts of this snapshot only; the streaming offset stays small.
      return { lsn: cp, snapshot: { state: 'done', consistentPoint: cp } };
    }),
  );
  await checkpoint.write();
  progress.state = 'completed';
  ctx.log.info('snapshot completed', { rows: ctx.rows });
  return consistentPoint;
}

/** A snapshot read of `row` (op 'r'), at `lsn`, read at `nowMicros`; one shape for every kind of load. */
export function snapshotEvent(
  relation: Relation,
  row: Row,
  lsn: Lsn,
  nowMicros: bigint,
  seq: number,
  marker: SnapshotMarker = 'true',
): ChangeEvent {
  return {
    op: 'r',
    relation,
    before: null,
    after: row,
    xid: null,
    lsn,
    commitLsn: lsn,
    commitTimeMicros: nowMicros,
    seq,
    snapshot: marker,
  };
}

/**
 * Debezium's source.snapshot value for a snapshot row, with its precedence: last of the snapshot,
 * first of the snapshot, last of its table, first of its table, else 'true'.
 */
export function snapshotMarker(
  firstInSnapshot: boolean,
  lastInSnapshot: boolean,
  firstInTable: boolean,
  lastInTable: boolean,
): SnapshotMarker {
  if (lastInSnapshot) return 'last';
  if (firstInSnapshot) return 'first';
  if (lastInTable) return 'last_in_data_collection';
  if (firstInTable) return 'first_in_data_collection';
  return 'true';
}
