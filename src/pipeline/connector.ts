// The connector: snapshot then stream, with one rule underneath everything — the offset only
// moves over records Kafka has acknowledged, and PostgreSQL is only told an LSN once the offset
// that covers it is acknowledged too.
import type pg from 'pg';
import type { Admin, Producer } from 'kafkajs';
import { CompressionTypes } from 'kafkajs';
import type { ChangeEvent, Relation, Row } from '../change/event.ts';
import { UserError } from '../errors.ts';
import { Batcher, type OutRecord } from '../kafka/batcher.ts';
import { connectKafka, durableProducer, kafkaClient } from '../kafka/client.ts';
import { OffsetStore, type OffsetRecord, type SnapshotState } from '../kafka/offsets.ts';
import { Topics } from '../kafka/topics.ts';
import {
  keyColumnNames,
  relationFromCatalog,
  resolveTables,
  tableName,
  type TableRef,
} from '../postgres/catalog.ts';
import { PostgresEndpoint, describePgError } from '../postgres/connection.ts';
import { formatLsn, parseLsn, type Lsn } from '../postgres/lsn.ts';
import { ensurePublication } from '../postgres/publication.ts';
import { createSlotWithSnapshot, dropSlot, slotInfo } from '../postgres/replication/slot.ts';
import { ReplicationStream } from '../postgres/replication/stream.ts';
import type { PgoutputMessage } from '../postgres/replication/pgoutput.ts';
import { beginSnapshot, estimateRows, readTable } from '../postgres/snapshot/reader.ts';
import { TypeCatalog } from '../postgres/types.ts';
import { Registry } from '../registry/registry.ts';
import { SshTunnel } from '../tunnel/ssh.ts';
import type { Logger } from '../worker/log.ts';
import { Encoder } from './encoder.ts';
import type { PipelineSettings } from './settings.ts';

export type ConnectorState = 'STARTING' | 'SNAPSHOT' | 'STREAMING' | 'STOPPING' | 'STOPPED' | 'FAILED';

/** Largest Kafka send; Kafka refuses record batches above message.max.bytes (1 MiB by default). */
const MAX_BATCH_BYTES = 900 * 1024;
/** Inside a long transaction, record progress every this many changes so a crash does not replay them. */
const PARTIAL_PROGRESS_EVERY = 5_000;

interface OpenTransaction {
  commitLsn: Lsn;
  xid: number;
  commitTimeMicros: bigint;
  seq: number;
  /** Changes below this seq were durable before a restart: skip them (no duplicates). */
  skipBelow: number;
}

export interface ConnectorStats {
  recordsProduced: number;
  snapshotRows: Record<string, number>;
  changes: number;
}

/** The initial load as far as Kafka has acknowledged it (rows per table, at batch granularity). */
export interface SnapshotProgress {
  /** 'completed' also when an earlier run finished it (the stored offset says so). */
  state: 'none' | 'running' | 'completed' | 'interrupted';
  tables: Record<string, { rows: number; estimatedRows: number; done: boolean }>;
}

/**
 * Optional hooks for observers (metrics, progress): called synchronously, must not throw. The
 * connector's state, stats, position and snapshot progress are read directly instead.
 */
export interface ConnectorObserver {
  /** `count` records handed to Kafka for one change of `table` (a delete's tombstone included). */
  onRecords?(table: string, op: ChangeEvent['op'], count: number): void;
  /** Every record of a transaction committed at `commitTimeMicros` is acknowledged by Kafka. */
  onDurable?(commitTimeMicros: bigint): void;
  /** A Kafka send failed for good (the connector fails with it). */
  onProduceError?(err: Error): void;
  /** kafkajs retries a failed produce attempt. */
  onKafkaRetry?(): void;
}

export class Connector {
  state: ConnectorState = 'STARTING';
  readonly stats: ConnectorStats = { recordsProduced: 0, snapshotRows: {}, changes: 0 };
  readonly snapshot: SnapshotProgress = { state: 'none', tables: {} };
  #s: PipelineSettings;
  #log: Logger;
  #observer: ConnectorObserver;
  #registry: Registry | null = null;
  /** Set while paused; resolved (and cleared) by resume(), resolved by stop() and failures. */
  #pause: PromiseWithResolvers<void> | null = null;
  #query: pg.Client | null = null;
  /** PostgreSQL connections (TLS negotiated once, SSH tunnel when configured). */
  #pg: PostgresEndpoint | null = null;
  #producer: Producer | null = null;
  #admin: Admin | null = null;
  #batcher: Batcher | null = null;
  #offsets: OffsetStore | null = null;
  #encoder: Encoder | null = null;
  #types: TypeCatalog | null = null;
  #stream: ReplicationStream | null = null;
  #timers: NodeJS.Timeout[] = [];
  #stopRequested = false;
  #failure: Error | null = null;
  #failRun: (err: Error) => void = () => undefined;

  /** The latest durable position; what the next offset record says. */
  #position: OffsetRecord = { lsn: '0/0', ts_ms: 0 };
  #positionDirty = false;
  #writingOffset = false;

  constructor(settings: PipelineSettings, log: Logger, observer: ConnectorObserver = {}) {
    this.#s = settings;
    this.#log = log;
    this.#observer = observer;
  }

  /** The last LSN confirmed to PostgreSQL. */
  get confirmedLsn(): Lsn {
    return this.#stream?.confirmed ?? 0n;
  }

  get position(): OffsetRecord {
    return this.#position;
  }

  /** The query connection (catalog, heartbeats, slot monitoring); null before it is open. */
  get queryClient(): pg.Client | null {
    return this.#query;
  }

  get inFlightBytes(): number {
    return this.#batcher?.inFlightBytes ?? 0;
  }

  get registryCalls(): number {
    return this.#registry?.calls ?? 0;
  }

  get paused(): boolean {
    return this.#pause !== null;
  }

  /**
   * Stops reading: the stream handler waits before its next message (which holds the replication
   * socket's flow control, so the server stops sending; status updates go on), the snapshot waits
   * between batches. What was read before goes on to Kafka and becomes durable as usual.
   */
  pause(): void {
    this.#pause ??= Promise.withResolvers<void>();
  }

  resume(): void {
    const gate = this.#pause;
    this.#pause = null;
    gate?.resolve();
  }

  /** True when reading may go on; false when the wait ended because of a stop or a failure. */
  async #whilePaused(): Promise<boolean> {
    while (this.#pause && !this.#stopRequested && !this.#failure) await this.#pause.promise;
    return !this.#stopRequested && !this.#failure;
  }

  /** Runs until stop() (resolves), the snapshot of an initial_only run ends (resolves), or a failure (rejects). */
  async run(): Promise<void> {
    const failed = new Promise<never>((_, reject) => {
      this.#failRun = reject;
    });
    failed.catch(() => undefined);
    try {
      await Promise.race([this.#run(), failed]);
      this.state = 'STOPPED';
    } catch (err) {
      this.state = 'FAILED';
      throw this.#failure ?? err;
    } finally {
      await this.#close();
    }
  }

  /**
   * Graceful stop: stop reading, drain what is in flight, write the offset, confirm it to
   * PostgreSQL on the still-open replication connection, then close. Resolves when stopping has
   * begun; run() resolves when it is done.
   */
  async stop(): Promise<void> {
    if (this.#stopRequested) return;
    this.#stopRequested = true;
    this.state = 'STOPPING';
    this.#pause?.resolve();
    this.#stopSignal.resolve();
  }

  #stopSignal = Promise.withResolvers<void>();

  #fail(err: unknown): void {
    if (this.#failure) return;
    this.#failure = err instanceof Error ? err : new Error(String(err));
    this.#failRun(this.#failure);
    this.#pause?.resolve();
    void this.#stream?.stop();
  }

  async #run(): Promise<void> {
    const s = this.#s;
    const tunnel = s.ssh?.enabled ? new SshTunnel(s.ssh, this.#log) : null;
    this.#pg = new PostgresEndpoint(s.postgres, { tunnel, log: this.#log });
    this.#query = await this.#pg.connect({ applicationName: `pgcdc-${s.name}` });
    // A lost query connection (server restart, dropped tunnel) fails the run.
    this.#query.on('error', (e: Error) => this.#fail(describePgError(e, s.postgres, this.#pg?.tls === true)));
    const tables = await resolveTables(this.#query, {
      schemas: s.postgres.schemas,
      include: s.tables.include,
      exclude: s.tables.exclude,
    });
    await ensurePublication(this.#query, s.publication, tables, this.#log);
    this.#types = new TypeCatalog(this.#query);

    const kafka = kafkaClient(s.kafka, { onRetry: () => this.#observer.onKafkaRetry?.() });
    this.#admin = kafka.admin();
    await connectKafka(this.#admin, s.kafka);
    const topics = new Topics(this.#admin, s.topics);
    this.#producer = durableProducer(kafka);
    await connectKafka(this.#producer, s.kafka);
    const producer = this.#producer;
    const compression = s.kafka.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
    this.#batcher = new Batcher(
      async (batch) => {
        await producer.sendBatch({
          acks: -1,
          compression,
          topicMessages: [...batch].map(([topic, records]) => ({
            topic,
            messages: records.map((r) => ({ key: r.key, value: r.value, headers: r.headers })),
          })),
        });
      },
      {
        maxInFlightBytes: s.kafka.maxInFlightBytes,
        maxInFlightRecords: s.kafka.maxInFlightRecords,
        maxBatchBytes: MAX_BATCH_BYTES,
        onError: (e) => {
          this.#observer.onProduceError?.(e);
          this.#fail(e);
        },
      },
    );
    this.#offsets = new OffsetStore(kafka, s.offsets.topic, { connector: s.name, slot: s.slot.name });
    await this.#offsets.ensureTopic(topics);
    this.#registry = new Registry(s.registry);
    this.#encoder = new Encoder({
      settings: s,
      registry: this.#registry,
      topics,
      types: this.#types,
      database: s.postgres.database,
    });

    const stored = await this.#offsets.read();
    const plan = await this.#plan(stored);
    this.#log.info('start plan', { plan: plan.kind, slot: s.slot.name, storedLsn: stored?.lsn ?? null });
    this.#timers.push(
      setInterval(() => void this.#writeOffset().catch((e) => this.#fail(e)), s.offsets.commitIntervalMs),
    );

    let startLsn: Lsn;
    if (plan.kind === 'done') return;
    if (plan.kind === 'snapshot') {
      startLsn = await this.#snapshot(tables);
      if (s.snapshot.mode === 'initial_only') {
        await this.#drain();
        return;
      }
    } else {
      startLsn = plan.lsn;
      if (stored) this.#position = { ...stored };
      if (stored?.snapshot?.state === 'done') this.snapshot.state = 'completed';
    }
    // A failure during the snapshot (e.g. Kafka refusing a record) ends the run: never start streaming after it.
    if (this.#stopRequested || this.#failure) {
      await this.#drain();
      return;
    }
    // After a new snapshot the stored offset (if any) describes the old slot: nothing to skip.
    await this.#streamFrom(startLsn, plan.kind === 'snapshot' ? null : stored);
  }

  /** Decides between snapshot and resume, from the snapshot mode, the stored offset and the slot. */
  async #plan(
    stored: OffsetRecord | null,
  ): Promise<{ kind: 'snapshot' } | { kind: 'stream'; lsn: Lsn } | { kind: 'done' }> {
    const s = this.#s;
    const query = this.#query!;
    const slot = await slotInfo(query, s.slot.name);
    if (slot?.active) {
      throw new UserError(
        `replication slot ${s.slot.name} is in use by another process (pid ${slot.activePid}); stop the other worker or set slot.name`,
      );
    }
    if (slot && slot.plugin !== 'pgoutput') {
      throw new UserError(
        `replication slot ${s.slot.name} uses plugin ${slot.plugin}, pgcdc needs pgoutput; drop it (SELECT pg_drop_replication_slot('${s.slot.name}')) or set slot.name`,
      );
    }
    const mode = s.snapshot.mode;
    const snapshotDone = stored !== null && stored.snapshot?.state !== 'running';
    if (mode === 'always') return { kind: 'snapshot' };
    if (mode === 'initial' || mode === 'initial_only' || mode === 'when_needed') {
      if (!snapshotDone) return { kind: 'snapshot' };
      if (mode === 'initial_only') {
        this.#log.info('snapshot already completed; snapshot.mode=initial_only has nothing left to do');
        return { kind: 'done' };
      }
    }
    // Resume from the stored offset (or, with mode never and no offset, from the slot).
    const lost = this.#lostReason(stored, slot);
    if (lost) {
      if (mode === 'when_needed') {
        this.#log.warn(`${lost}; snapshot.mode=when_needed takes a new snapshot`);
        return { kind: 'snapshot' };
      }
      throw new UserError(
        `${lost}; changes in between cannot be read again. Set snapshot.mode=when_needed (or always) to take a new snapshot`,
      );
    }
    if (!slot) {
      // mode never without an offset: start streaming from now.
      const repl = await this.#pg!.connect({ replication: true });
      try {
        const created = await createSlotWithSnapshot(repl, s.slot.name);
        return { kind: 'stream', lsn: created.consistentPoint };
      } finally {
        await repl.end();
      }
    }
    return { kind: 'stream', lsn: stored ? parseLsn(stored.lsn) : (slot.confirmedFlush ?? 0n) };
  }

  #lostReason(stored: OffsetRecord | null, slot: Awaited<ReturnType<typeof slotInfo>>): string | null {
    const name = this.#s.slot.name;
    if (!stored) return null;
    if (!slot) return `replication slot ${name} no longer exists but an offset at ${stored.lsn} does`;
    if (slot.walStatus === 'lost') return `replication slot ${name} lost its WAL (wal_status = lost)`;
    if (slot.confirmedFlush !== null && slot.confirmedFlush > parseLsn(stored.lsn)) {
      return `replication slot ${name} is at ${formatLsn(slot.confirmedFlush)}, past the stored offset ${stored.lsn}`;
    }
    return null;
  }

  /** The initial load. Returns the LSN streaming starts at (the slot's consistent point). */
  async #snapshot(tables: TableRef[]): Promise<Lsn> {
    const s = this.#s;
    this.state = 'SNAPSHOT';
    const query = this.#query!;
    // A new snapshot needs a new slot: only its creation exports a snapshot that matches its start.
    await dropSlot(query, s.slot.name);
    const repl = await this.#pg!.connect({ replication: true });
    const snapClient = await this.#pg!.connect({ applicationName: `pgcdc-${s.name}-snapshot` });
    let consistentPoint: Lsn;
    try {
      const slot = await createSlotWithSnapshot(repl, s.slot.name);
      consistentPoint = slot.consistentPoint;
      await beginSnapshot(snapClient, slot.snapshotName);
    } finally {
      // The importing transaction holds the snapshot now; the replication connection may go.
      await repl.end();
    }
    const cp = formatLsn(consistentPoint);
    const state: SnapshotState = {
      state: 'running',
      consistentPoint: cp,
      tables: Object.fromEntries(tables.map((t) => [tableName(t), { rows: 0, done: false }])),
    };
    this.#setPosition({ lsn: cp, snapshot: state });
    await this.#writeOffset();
    this.snapshot.state = 'running';
    for (const t of tables) this.snapshot.tables[tableName(t)] = { rows: 0, estimatedRows: 0, done: false };
    this.#log.info('snapshot started', { consistentPoint: cp, tables: tables.map(tableName) });

    const nowMicros = BigInt(Date.now()) * 1000n;
    let held: ChangeEvent | null = null;
    try {
      for (const t of tables) {
        const name = tableName(t);
        const relation = await this.#enrich(await relationFromCatalog(snapClient, t));
        const estimate = await estimateRows(snapClient, relation);
        this.snapshot.tables[name]!.estimatedRows = estimate;
        this.#log.info('snapshot table', { table: name, estimatedRows: estimate });
        let rows = 0;
        for await (const batch of readTable(snapClient, relation, s.snapshot.batchSize)) {
          for (const row of batch) {
            if (held) await this.#publish(held);
            held = snapshotEvent(relation, row, consistentPoint, nowMicros, rows);
            rows++;
          }
          if (this.#stopRequested || this.#failure) break;
          const done = rows;
          this.#batcher!.mark(() => {
            state.tables[name] = { rows: done, done: false };
            this.stats.snapshotRows[name] = done;
            this.snapshot.tables[name]!.rows = done;
            this.#positionDirty = true;
          });
          if (!(await this.#whilePaused())) break;
        }
        if (this.#stopRequested || this.#failure) break;
        const total = rows;
        this.#batcher!.mark(() => {
          state.tables[name] = { rows: total, done: true };
          this.stats.snapshotRows[name] = total;
          this.snapshot.tables[name] = { ...this.snapshot.tables[name]!, rows: total, done: true };
          this.#positionDirty = true;
        });
      }
      if (held) {
        held.snapshot = this.#stopRequested ? 'true' : 'last';
        await this.#publish(held);
      }
      await snapClient.query('COMMIT');
    } finally {
      await snapClient.end().catch(() => undefined);
    }
    if (this.#stopRequested || this.#failure) {
      this.snapshot.state = 'interrupted';
      this.#log.info('snapshot interrupted; the next start takes it again from the beginning');
      return consistentPoint;
    }
    await new Promise<void>((resolve) =>
      this.#batcher!.mark(() => {
        state.state = 'done';
        this.#setPosition({ lsn: cp, snapshot: state });
        resolve();
      }),
    );
    await this.#writeOffset();
    this.state = 'STREAMING';
    this.snapshot.state = 'completed';
    this.#log.info('snapshot completed', { rows: this.stats.snapshotRows });
    return consistentPoint;
  }

  async #streamFrom(startLsn: Lsn, stored: OffsetRecord | null): Promise<void> {
    const s = this.#s;
    this.state = 'STREAMING';
    const relations = new Map<number, Relation>();
    let tx: OpenTransaction | null = null;
    const resumeTx =
      stored?.txCommitLsn && stored.txSeq
        ? { commitLsn: parseLsn(stored.txCommitLsn), seq: stored.txSeq }
        : null;

    const handle = async (msg: PgoutputMessage, walStart: Lsn): Promise<void> => {
      // Paused: hold this message (and with it the socket) until resume; on stop, drop it.
      if (this.#pause && !(await this.#whilePaused())) return;
      switch (msg.tag) {
        case 'begin':
          tx = {
            commitLsn: msg.finalLsn,
            xid: msg.xid,
            commitTimeMicros: msg.commitTimeMicros,
            seq: 0,
            skipBelow: resumeTx && resumeTx.commitLsn === msg.finalLsn ? resumeTx.seq : 0,
          };
          return;
        case 'relation':
          relations.set(msg.relation.oid, await this.#enrich(msg.relation));
          return;
        case 'insert':
        case 'update':
        case 'delete':
        case 'truncate': {
          if (!tx) throw new Error(`pgoutput ${msg.tag} outside a transaction`);
          for (const event of changeEvents(msg, relations, tx, walStart, s.topics.truncateEvents)) {
            const seq = tx.seq++;
            if (seq < tx.skipBelow || !selected(event.relation)) continue;
            event.seq = seq;
            await this.#publish(event);
            this.stats.changes++;
            if (tx.seq % PARTIAL_PROGRESS_EVERY === 0) {
              const commitLsn = formatLsn(tx.commitLsn);
              const done = tx.seq;
              this.#batcher!.mark(() => this.#setPosition({ txCommitLsn: commitLsn, txSeq: done }));
            }
          }
          return;
        }
        case 'commit': {
          const end = formatLsn(msg.endLsn);
          const commitTime = msg.commitTimeMicros;
          tx = null;
          this.#batcher!.mark(() => {
            this.#setPosition({ lsn: end, txCommitLsn: undefined, txSeq: undefined });
            this.#observer.onDurable?.(commitTime);
          });
          return;
        }
        default:
          return; // origin, type, message: nothing to publish
      }
    };

    // The publication may hold more tables than this connector captures (a shared or hand-made
    // publication): changes are filtered by the same include/exclude rules as the snapshot, so a
    // table created later in a captured schema is picked up when no explicit include list is set.
    const include = new Set(s.tables.include.map(tableName));
    const exclude = new Set(s.tables.exclude.map(tableName));
    const schemas = new Set(s.postgres.schemas);
    const selected = (r: Relation): boolean => {
      const name = tableName({ schema: r.schema, table: r.table });
      return (include.size > 0 ? include.has(name) : schemas.has(r.schema)) && !exclude.has(name);
    };
    this.#stream = new ReplicationStream(this.#pg!.clientConfig({ replication: true }), {
      onMessage: handle,
      onKeepalive: (walEnd, caughtUp) => {
        // Nothing of ours is open or unhandled before walEnd: once everything pushed so far is
        // durable, the slot may move up to it. This keeps an idle slot from holding WAL while
        // other tables of the database are busy.
        if (caughtUp && tx === null && walEnd > parseLsn(this.#position.lsn)) {
          const lsn = formatLsn(walEnd);
          this.#batcher!.mark(() => {
            if (walEnd > parseLsn(this.#position.lsn)) this.#setPosition({ lsn });
          });
        }
      },
    });
    this.#timers.push(
      setInterval(() => this.#stream?.confirm(this.#stream.confirmed), s.offsets.statusIntervalMs),
    );
    this.#log.info('streaming', {
      from: formatLsn(startLsn),
      slot: s.slot.name,
      publication: s.publication.name,
    });
    const stream = this.#stream;
    const streaming = stream.run({ slot: s.slot.name, publication: s.publication.name, startLsn });
    await Promise.race([streaming, this.#stopSignal.promise]);
    await stream.halt();
    await this.#drain();
    await stream.stop();
    await streaming;
    if (s.slot.dropOnStop && this.#stopRequested && !this.#failure) {
      await dropSlot(this.#query!, s.slot.name);
      this.#log.info('dropped the replication slot (slot.dropOnStop)', { slot: s.slot.name });
    }
  }

  /** Encodes one change and hands its records to the batcher (waits when Kafka is behind). */
  async #publish(event: ChangeEvent): Promise<void> {
    const records: OutRecord[] = await this.#encoder!.records(event);
    for (const r of records) await this.#batcher!.push(r);
    this.stats.recordsProduced += records.length;
    this.#observer.onRecords?.(tableName(event.relation), event.op, records.length);
  }

  /** Kafka keys come from the primary key (pgoutput flags every column when REPLICA IDENTITY is FULL). */
  async #enrich(relation: Relation): Promise<Relation> {
    await this.#types!.load(relation.columns.map((c) => c.typeOid));
    if (relation.replicaIdentity !== 'full' && relation.replicaIdentity !== 'nothing') return relation;
    const keys = new Set(await keyColumnNames(this.#query!, relation.oid));
    return { ...relation, columns: relation.columns.map((c) => ({ ...c, isKey: keys.has(c.name) })) };
  }

  #setPosition(update: Partial<OffsetRecord>): void {
    this.#position = { ...this.#position, ...update, ts_ms: Date.now() };
    if (update.txCommitLsn === undefined && 'txCommitLsn' in update) {
      delete this.#position.txCommitLsn;
      delete this.#position.txSeq;
    }
    this.#positionDirty = true;
  }

  /**
   * Pushes the current durable position to the offsets topic; when that record is acknowledged,
   * confirms its LSN to PostgreSQL. Never confirms more than the offset says.
   */
  async #writeOffset(): Promise<void> {
    if (!this.#positionDirty || this.#writingOffset || !this.#batcher || this.#batcher.failure) return;
    this.#writingOffset = true;
    try {
      this.#positionDirty = false;
      const offset = { ...this.#position, ts_ms: Date.now() };
      await this.#batcher.push(this.#offsets!.record(offset));
      const lsn = parseLsn(offset.lsn);
      const snapshotRunning = offset.snapshot?.state === 'running';
      this.#batcher.mark(() => {
        // While a snapshot runs, the slot stays at its consistent point.
        if (!snapshotRunning) this.#stream?.confirm(lsn);
      });
    } finally {
      this.#writingOffset = false;
    }
  }

  /** Waits for everything in flight, writes the final offset, confirms it. */
  async #drain(): Promise<void> {
    if (!this.#batcher || this.#failure) return;
    await this.#batcher.flush();
    while (this.#writingOffset) await new Promise((r) => setTimeout(r, 10));
    await this.#writeOffset();
    await this.#batcher.flush();
    this.#log.info('drained', { lsn: this.#position.lsn });
  }

  async #close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#stream?.stop().catch(() => undefined);
    await this.#producer?.disconnect().catch(() => undefined);
    await this.#admin?.disconnect().catch(() => undefined);
    await this.#query?.end().catch(() => undefined);
    await this.#pg?.close().catch(() => undefined);
  }
}

function snapshotEvent(relation: Relation, row: Row, lsn: Lsn, nowMicros: bigint, seq: number): ChangeEvent {
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
    snapshot: 'true',
  };
}

/** The change events of one DML message; an update that changes the key becomes delete + create, as in Debezium. */
function changeEvents(
  msg: Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>,
  relations: Map<number, Relation>,
  tx: OpenTransaction,
  walStart: Lsn,
  truncateEvents: boolean,
): ChangeEvent[] {
  const base = {
    xid: tx.xid,
    lsn: walStart,
    commitLsn: tx.commitLsn,
    commitTimeMicros: tx.commitTimeMicros,
    seq: 0,
    snapshot: 'false' as const,
  };
  if (msg.tag === 'truncate') {
    if (!truncateEvents) return [];
    return msg.relationOids.map((oid, i) => ({
      ...base,
      op: 't' as const,
      relation: relations.get(oid) ?? msg.relations[i]!,
      before: null,
      after: null,
    }));
  }
  const relation = relations.get(msg.relationOid) ?? msg.relation;
  if (msg.tag === 'insert') return [{ ...base, op: 'c', relation, before: null, after: msg.after }];
  if (msg.tag === 'delete') return [{ ...base, op: 'd', relation, before: msg.before, after: null }];
  if (msg.before && keyChanged(relation, msg.before, msg.after)) {
    return [
      { ...base, op: 'd', relation, before: msg.before, after: null },
      { ...base, op: 'c', relation, before: null, after: msg.after },
    ];
  }
  return [
    { ...base, op: 'u', relation, before: msg.beforeKind === 'old' ? msg.before : null, after: msg.after },
  ];
}

function keyChanged(relation: Relation, before: Row, after: Row): boolean {
  return relation.columns.some((c, i) => c.isKey && before[i] !== after[i]);
}
