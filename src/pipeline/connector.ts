// The connector: lifecycle and wiring. It plans the start (plan.ts), takes the initial load
// (snapshot.ts), decodes the stream into change events (transactions.ts) and hands them to Kafka
// through the sink (sink.ts); checkpoint.ts moves the position only over what the sink made
// durable and confirms an LSN to PostgreSQL only once the offset covering it is durable too.
import type pg from 'pg';
import type { Admin, Producer } from 'kafkajs';
import type { ChangeEvent, Relation } from '../change/event.ts';
import { relationSelector, resolveTables } from '../capture/selection.ts';
import { connectKafka, describeKafkaError, durableProducer, kafkaClient } from '../kafka/client.ts';
import { OffsetStore, type OffsetRecord } from '../kafka/offsets.ts';
import { ExactlyOnceSink, transactionalId, transactionalProducer } from '../kafka/transactional.ts';
import { Topics } from '../kafka/topics.ts';
import { keyColumnNames, tableName } from '../postgres/catalog.ts';
import { PostgresEndpoint, describePgError, endWithin } from '../postgres/connection.ts';
import { formatLsn, parseLsn, type Lsn } from '../postgres/lsn.ts';
import { ensurePublication } from '../postgres/publication.ts';
import { dropSlot, lockSlot } from '../postgres/replication/slot.ts';
import { ReplicationStream } from '../postgres/replication/stream.ts';
import type { PgoutputMessage } from '../postgres/replication/pgoutput.ts';
import { TypeCatalog } from '../postgres/types.ts';
import { Registry } from '../registry/registry.ts';
import { SshTunnel } from '../tunnel/ssh.ts';
import type { Logger } from '../worker/log.ts';
import { UserError } from '../errors.ts';
import { Checkpoint } from './checkpoint.ts';
import { Encoder, topicFor } from './encoder.ts';
import { planStart } from './plan.ts';
import type { PipelineSettings } from './settings.ts';
import { kafkaSink, type OutRecord, type Sink } from './sink.ts';
import { beginChunkedLoad, takeSnapshot, type SnapshotProgress } from './snapshot.ts';
import { ChunkedLoad } from './chunked-load.ts';
import type { SnapshotState } from '../kafka/offsets.ts';
import type { TableRef } from '../postgres/catalog.ts';
import { Transactions } from './transactions.ts';
import { messageAction, parseSignal } from './messages.ts';
import { TransactionMetadata, type TransactionBlock } from './tx-metadata.ts';
import { runXminCapture } from './xmin.ts';

export type { SnapshotProgress };

export type ConnectorState = 'STARTING' | 'SNAPSHOT' | 'STREAMING' | 'STOPPING' | 'STOPPED' | 'FAILED';

/** Inside a long transaction, record progress every this many changes so a crash does not replay them. */
const PARTIAL_PROGRESS_EVERY = 5_000;

export interface ConnectorStats {
  recordsProduced: number;
  snapshotRows: Record<string, number>;
  changes: number;
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
  #sink: Sink | null = null;
  #checkpoint: Checkpoint | null = null;
  #encoder: Encoder | null = null;
  #types: TypeCatalog | null = null;
  #stream: ReplicationStream | null = null;
  /** The chunked load, while one runs alongside the stream. */
  #load: ChunkedLoad | null = null;
  #loading: Promise<void> | null = null;
  /** The captured tables as resolved at start (what an on-demand snapshot may name). */
  #selection: TableRef[] | null = null;
  #timers: NodeJS.Timeout[] = [];
  #stopRequested = false;
  #stopSignal = Promise.withResolvers<void>();
  #failure: Error | null = null;
  #failRun: (err: Error) => void = () => undefined;

  constructor(settings: PipelineSettings, log: Logger, observer: ConnectorObserver = {}) {
    this.#s = settings;
    this.#log = log;
    this.#observer = observer;
  }

  /** The last LSN confirmed to PostgreSQL. */
  get confirmedLsn(): Lsn {
    return this.#stream?.confirmed ?? 0n;
  }

  /** The latest durable position (it may be ahead of what the offsets topic holds yet). */
  get position(): OffsetRecord {
    return this.#checkpoint?.position ?? { lsn: '0/0', ts_ms: 0 };
  }

  /** The position the offsets topic has acknowledged (what a restart resumes from); null when none. */
  get storedPosition(): OffsetRecord | null {
    return this.#checkpoint?.stored ?? null;
  }

  /** The query connection (catalog, heartbeats, slot monitoring); null before it is open. */
  get queryClient(): pg.Client | null {
    return this.#query;
  }

  get inFlightBytes(): number {
    return this.#sink?.inFlightBytes ?? 0;
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

  #fail(err: unknown): void {
    if (this.#failure) return;
    this.#failure = err instanceof Error ? err : new Error(String(err));
    this.#failRun(this.#failure);
    this.#load?.halt();
    this.#pause?.resolve();
    void this.#stream?.stop();
  }

  async #run(): Promise<void> {
    const s = this.#s;
    const tunnel = s.ssh?.enabled ? new SshTunnel(s.ssh, this.#log) : null;
    const endpoint = (this.#pg = new PostgresEndpoint(s.postgres, { tunnel, log: this.#log }));
    const query = (this.#query = await endpoint.connect({ applicationName: `pgcdc-${s.name}` }));
    // A lost query connection (server restart, dropped tunnel) fails the run.
    query.on('error', (e: Error) => this.#fail(describePgError(e, s.postgres, endpoint.tls === true)));
    // Held on this connection until the run ends: one worker per slot.
    await lockSlot(query, s.slot.name);
    const tables = await resolveTables(query, {
      schemas: s.postgres.schemas,
      include: s.tables.include,
      exclude: s.tables.exclude,
    });
    // capture.method xmin polls the tables: no publication, no slot (docs/xmin.md).
    const xmin = s.capture?.method === 'xmin';
    if (!xmin) await ensurePublication(query, s.publication, tables, this.#log);
    this.#types = new TypeCatalog(query);

    const kafka = kafkaClient(s.kafka, { onRetry: () => this.#observer.onKafkaRetry?.(), log: this.#log });
    this.#admin = kafka.admin();
    await connectKafka(this.#admin, s.kafka);
    const topics = new Topics(this.#admin, s.topics);
    const txId = transactionalId(s.name, s.slot.name);
    const delivery = s.delivery ?? {
      mode: 'at-least-once',
      transactionMs: 20,
      transactionMaxBytes: 16 << 20,
    };
    const exactlyOnce = delivery.mode === 'exactly-once';
    this.#producer = exactlyOnce ? transactionalProducer(kafka, txId) : durableProducer(kafka);
    await connectKafka(this.#producer, s.kafka);
    const sinkOptions = {
      compression: s.kafka.compression,
      maxInFlightBytes: s.kafka.maxInFlightBytes,
      maxInFlightRecords: s.kafka.maxInFlightRecords,
      onError: (e: Error) => {
        this.#observer.onProduceError?.(e);
        this.#fail(describeKafkaError(e, s.kafka));
      },
    };
    const sink = (this.#sink = exactlyOnce
      ? new ExactlyOnceSink(this.#producer, {
          ...sinkOptions,
          id: txId,
          lingerMs: delivery.transactionMs,
          maxTransactionBytes: delivery.transactionMaxBytes,
          maxTransactionRecords: s.kafka.maxInFlightRecords ?? 100_000,
        })
      : kafkaSink(this.#producer, sinkOptions));
    const offsets = new OffsetStore(kafka, s.offsets.topic, { connector: s.name, slot: s.slot.name });
    await offsets.ensureTopic(topics);
    this.#registry = new Registry(s.registry);
    this.#encoder = new Encoder({
      settings: s,
      registry: this.#registry,
      topics,
      types: this.#types,
      database: s.postgres.database,
    });

    // Exactly-once: fence an older worker first, so every transaction it left is decided
    // (aborted, or its commit finished) before the offset is read with read_committed.
    if (sink instanceof ExactlyOnceSink) await connectKafka({ connect: () => sink.fence() }, s.kafka);
    const stored = await offsets.read();
    const checkpoint = (this.#checkpoint = new Checkpoint(sink, offsets, stored));
    if (xmin) {
      this.state = 'STREAMING';
      return runXminCapture({
        settings: s,
        log: this.#log,
        query,
        endpoint,
        checkpoint,
        stored,
        publish: (e) => this.#publish(e),
        enrich: (r) => this.#enrich(r),
        stopRequested: () => this.#stopRequested,
        failed: () => this.#failure !== null,
        whilePaused: () => this.#whilePaused(),
        fail: (e) => this.#fail(e),
      });
    }
    const plan = await planStart(
      { settings: s, log: this.#log, query, replication: () => endpoint.connect({ replication: true }) },
      stored,
    );
    this.#log.info('start plan', {
      plan: plan.kind,
      slot: s.slot.name,
      storedLsn: stored?.lsn ?? null,
      ...(stored?.txCommitLsn ? { storedTxCommitLsn: stored.txCommitLsn, storedTxSeq: stored.txSeq } : {}),
    });
    this.#timers.push(
      setInterval(() => void checkpoint.write().catch((e) => this.#fail(e)), s.offsets.commitIntervalMs),
    );

    let startLsn: Lsn;
    /** A chunked load to run while streaming: its state (kept by reference in the offset). */
    let load: SnapshotState | undefined;
    if (plan.kind === 'done') return;
    // Every table's topic in bulk before the load, not one CreateTopics (and leader wait) per table
    // (docs/performance.md "Many tables"); an empty table then has its topic too, so a later start
    // does not take it for a table added to the selection.
    if (plan.kind === 'snapshot' || (plan.kind === 'stream' && plan.load))
      await this.#encoder.prepareTables(tables);
    if (plan.kind === 'snapshot' && (await this.#chunked(plan.resume !== undefined))) {
      ({ lsn: startLsn, state: load } = await beginChunkedLoad(
        { settings: s, log: this.#log, query, endpoint, checkpoint },
        tables,
        { dropSlot: plan.dropSlot },
      ));
    } else if (plan.kind === 'snapshot') {
      this.state = 'SNAPSHOT';
      startLsn = await takeSnapshot(
        {
          settings: s,
          log: this.#log,
          query,
          endpoint,
          checkpoint,
          progress: this.snapshot,
          rows: this.stats.snapshotRows,
          publish: (e) => this.#publish(e),
          enrich: (r) => this.#enrich(r),
          stopRequested: () => this.#stopRequested,
          failed: () => this.#failure !== null,
          whilePaused: () => this.#whilePaused(),
        },
        tables,
        { dropSlot: plan.dropSlot, temporary: s.snapshot.mode === 'initial_only', resume: plan.resume },
      );
      if (s.snapshot.mode === 'initial_only') {
        await this.#drain();
        return;
      }
    } else {
      startLsn = plan.lsn;
      load = plan.load;
      if (stored) checkpoint.begin(stored, false);
      if (stored?.snapshot?.state === 'done') this.snapshot.state = 'completed';
    }
    // A failure during the snapshot (e.g. Kafka refusing a record) ends the run: never start streaming after it.
    if (this.#stopRequested || this.#failure) {
      await this.#drain();
      return;
    }
    // After a new snapshot the stored offset (if any) describes the old slot: nothing to skip.
    await this.#streamFrom(
      startLsn,
      plan.kind === 'snapshot' ? null : stored,
      load ? { state: load, tables: tables.filter((t) => load.tables?.[tableName(t)]) } : null,
      tables,
    );
  }

  /**
   * Whether a new initial load is chunked (src/pipeline/chunked-load.ts). Not for initial_only (no
   * stream follows it), not to resume an exported load, and not on a standby, where the
   * watermarks cannot be written.
   */
  async #chunked(resumingExported: boolean): Promise<boolean> {
    const s = this.#s;
    if (
      (s.snapshot.method ?? 'chunked') !== 'chunked' ||
      s.snapshot.mode === 'initial_only' ||
      resumingExported
    )
      return false;
    const { rows } = await this.#query!.query<{ r: string }>('SELECT pg_is_in_recovery()::text AS r');
    if (rows[0]?.r === 'true') {
      this.#log.info('the server is a standby, where watermarks cannot be written: the snapshot is exported');
      return false;
    }
    return true;
  }

  async #streamFrom(
    startLsn: Lsn,
    stored: OffsetRecord | null,
    load: { state: SnapshotState; tables: TableRef[] } | null,
    selection: TableRef[],
  ): Promise<void> {
    const s = this.#s;
    const checkpoint = this.#checkpoint!;
    // The initial load reads while the stream runs; the state says SNAPSHOT until it is done, as
    // with an exported snapshot (an on-demand one runs while STREAMING).
    this.state = load && !load.state.incremental ? 'SNAPSHOT' : 'STREAMING';
    // The publication may hold more tables than this connector captures (a shared or hand-made
    // publication): changes are filtered by the same selection as the snapshot, so a table
    // created later in a captured schema is picked up when no explicit include list is set.
    const txMeta = s.topics.transactionMetadata ? new TransactionMetadata() : null;
    const transactions = new Transactions({
      onSkipped: txMeta ? (e) => txMeta.skipped(e.relation) : undefined,
      resume:
        stored?.txCommitLsn && stored.txSeq
          ? { commitLsn: parseLsn(stored.txCommitLsn), seq: stored.txSeq }
          : null,
      truncateEvents: s.topics.truncateEvents,
      selected: relationSelector({
        schemas: s.postgres.schemas,
        include: s.tables.include,
        exclude: s.tables.exclude,
      }),
    });

    const handle = async (msg: PgoutputMessage, walStart: Lsn): Promise<void> => {
      // Paused: hold this message (and with it the socket) until resume; on stop, drop it.
      if (this.#pause && !(await this.#whilePaused())) return;
      switch (msg.tag) {
        case 'begin':
          transactions.begin(msg);
          txMeta?.begin(msg.xid, msg.finalLsn, msg.commitTimeMicros);
          return;
        case 'relation':
          transactions.relation(await this.#enrich(msg.relation));
          return;
        case 'insert':
        case 'update':
        case 'delete':
        case 'truncate': {
          if (msg.tag === 'truncate') this.#load?.truncated(msg.relations, transactions.xid!);
          for (const event of transactions.changes(msg, walStart)) {
            this.#load?.observe(event);
            const meta = txMeta?.event(event.relation);
            if (meta?.begin) await this.#sink!.push(await this.#encoder!.transactionRecord(meta.begin));
            await this.#publish(event, meta?.block);
            this.stats.changes++;
          }
          // Positions lie between messages (a key-changing update is two events of one message).
          const open = transactions.open!;
          if (!transactions.replaying && open.seq % PARTIAL_PROGRESS_EVERY === 0) {
            const commitLsn = formatLsn(open.commitLsn);
            const handled = open.seq;
            checkpoint.afterDurable(() => ({ txCommitLsn: commitLsn, txSeq: handled }));
          }
          return;
        }
        case 'commit': {
          const { endLsn, commitTimeMicros } = transactions.commit(msg);
          const endEvent = txMeta?.end();
          if (endEvent) await this.#sink!.push(await this.#encoder!.transactionRecord(endEvent));
          const end = formatLsn(endLsn);
          checkpoint.afterDurable(() => {
            this.#observer.onDurable?.(commitTimeMicros);
            return { lsn: end, txCommitLsn: undefined, txSeq: undefined };
          });
          return;
        }
        case 'message': {
          const action = messageAction(msg, s.topics);
          const tx = transactions.message(msg);
          if (action === 'watermark') {
            // A chunk boundary of the chunked load (this run's, or another connector's: ignored).
            if (msg.transactional && !tx?.skip) await this.#load?.watermark(msg, msg.lsn);
            else idleUpTo(msg.lsn);
            return;
          }
          if (action === 'signal') {
            // Acted on once: a signal replayed after a restart inside its transaction is skipped.
            if (msg.transactional && !tx?.skip) this.#signal(msg.content);
            return;
          }
          // pgcdc's heartbeat is a position, never an event (src/pipeline/messages.ts).
          if (action === 'heartbeat' && !msg.transactional) idleUpTo(msg.lsn);
          if (action !== 'publish' || tx?.skip) return;
          const record = await this.#encoder!.messageRecord({
            transactional: msg.transactional,
            lsn: msg.lsn,
            prefix: msg.prefix,
            content: msg.content,
            xid: tx?.xid ?? null,
            commitLsn: tx?.commitLsn ?? null,
            commitTimeMicros: tx?.commitTimeMicros ?? null,
          });
          await this.#sink!.push(record);
          this.stats.recordsProduced++;
          return;
        }
        default:
          return; // origin, type: nothing to publish
      }
    };

    // Nothing of ours is open or unhandled before `upTo`: once everything pushed so far is
    // durable, the slot may move up to it. This keeps an idle slot from holding WAL while other
    // tables of the database are busy.
    const idleUpTo = (upTo: Lsn): void => {
      if (transactions.open !== null || upTo <= parseLsn(checkpoint.position.lsn)) return;
      const lsn = formatLsn(upTo);
      checkpoint.afterDurable(() => (upTo > parseLsn(checkpoint.position.lsn) ? { lsn } : undefined));
    };

    this.#stream = new ReplicationStream(this.#pg!.clientConfig({ replication: true }), {
      onMessage: handle,
      onKeepalive: (walEnd, caughtUp) => {
        if (caughtUp) idleUpTo(walEnd);
      },
    });
    checkpoint.confirmTo(this.#stream);
    this.#timers.push(
      setInterval(() => this.#stream?.confirm(this.#stream.confirmed), s.offsets.statusIntervalMs),
    );
    this.#log.info('streaming', {
      from: formatLsn(startLsn),
      slot: s.slot.name,
      publication: s.publication.name,
    });
    const stream = this.#stream;
    this.#selection = selection;
    const streaming = stream.run({
      slot: s.slot.name,
      publication: s.publication.name,
      startLsn,
      timeoutMs: s.postgres.replicationTimeoutMs,
      // Heartbeats come back as messages and move the slot; op 'm' events need them too.
      messages: true,
    });
    if (load) this.#startLoad(load.state, load.tables);
    else void this.#loadNewTables(stored).catch((e: unknown) => this.#fail(e));
    await Promise.race([streaming, this.#stopSignal.promise]);
    this.#load?.halt();
    await this.#loading;
    await stream.halt();
    // Stopped inside a transaction: what was published of it is stored as a position inside it,
    // so the next start (which reads the transaction again) skips exactly that part.
    const open = transactions.open;
    if (open && open.seq > 0) {
      const commitLsn = formatLsn(open.commitLsn);
      checkpoint.afterDurable(() => ({ txCommitLsn: commitLsn, txSeq: open.seq }));
    }
    await this.#drain();
    await stream.stop();
    await streaming;
    if (s.slot.dropOnStop && this.#stopRequested && !this.#failure) {
      // The offset goes first: without the slot it describes nothing, and the next start then
      // takes a new snapshot (rather than refusing a position no slot holds any more).
      for (const t of this.#timers) clearInterval(t);
      await checkpoint.forget();
      await dropSlot(this.#query!, s.slot.name);
      this.#log.info('dropped the replication slot and forgot the offset (slot.dropOnStop)', {
        slot: s.slot.name,
      });
    }
  }

  /** Runs a chunked load beside the stream. */
  #startLoad(state: SnapshotState, tables: TableRef[]): void {
    const load = (this.#load = this.#chunkedLoad(state, tables));
    this.#loading = load
      .run()
      .then((outcome) => {
        if (this.#load === load) this.#load = null;
        if (outcome === 'completed' && this.state === 'SNAPSHOT') this.state = 'STREAMING';
      })
      .catch((e: unknown) => this.#fail(e));
  }

  /**
   * An on-demand load of `tables` (POST /connectors/<name>/snapshot, the pgcdc snapshot command, a
   * signal): a chunked load while streaming, its rows marked 'incremental', its progress in the
   * offset (a restart goes on with it). `filters`: an extra SQL condition per table (schema.table).
   */
  requestSnapshot(tables: TableRef[], filters: Record<string, string> = {}): { tables: string[] } {
    const checkpoint = this.#checkpoint;
    if (this.state !== 'STREAMING' || !checkpoint || !this.#selection)
      throw new UserError(
        `connector ${this.#s.name} is ${this.state}: an on-demand snapshot needs it STREAMING`,
      );
    if (this.#load)
      throw new UserError(
        `a snapshot is already running (${this.#load.remaining} tables left); wait for it or cancel it (DELETE /connectors/${this.#s.name}/snapshot)`,
      );
    if (tables.length === 0) throw new UserError('snapshot: name at least one table (schema.table)');
    const captured = new Set(this.#selection.map(tableName));
    const unknown = tables.map(tableName).filter((t) => !captured.has(t));
    if (unknown.length > 0)
      throw new UserError(
        `snapshot: ${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not captured by connector ${this.#s.name} (tables.include/exclude, postgres.schemas)`,
      );
    for (const t of Object.keys(filters))
      if (!tables.some((x) => tableName(x) === t))
        throw new UserError(`snapshot: a filter names ${t}, which is not in tables`);
    const state: SnapshotState = {
      state: 'running',
      method: 'chunked',
      incremental: true,
      consistentPoint: checkpoint.position.lsn,
      tables: Object.fromEntries(tables.map((t) => [tableName(t), { rows: 0, done: false }])),
      ...(Object.keys(filters).length > 0 ? { filters } : {}),
    };
    for (const t of tables) delete this.snapshot.tables[tableName(t)];
    this.#log.info('on-demand snapshot requested', {
      tables: tables.map(tableName),
      filtered: Object.keys(filters),
    });
    this.#startLoad(state, tables);
    // Stored at once: a restart before its first chunk goes on with it too.
    checkpoint.afterDurable(() => ({ snapshot: state }));
    void checkpoint.write().catch((e: unknown) => this.#fail(e));
    return { tables: tables.map(tableName) };
  }

  /** Cancels a running on-demand snapshot; the rows already sent stay. False when none runs. */
  cancelSnapshot(): boolean {
    const load = this.#load;
    if (!load) return false;
    if (!load.incremental)
      throw new UserError(
        'the initial snapshot cannot be cancelled (stop the connector, or set snapshot.mode=never)',
      );
    load.cancel();
    this.#log.info('on-demand snapshot cancelled');
    return true;
  }

  /** A signal (pg_logical_emit_message(true, 'pgcdc', '{...}')), Debezium's signal format. */
  #signal(content: Uint8Array): void {
    const text = Buffer.from(content).toString('utf8');
    try {
      const signal = parseSignal(text, this.#s.name);
      if (!signal) return;
      if (signal.kind === 'stop-snapshot') this.cancelSnapshot();
      else this.requestSnapshot(signal.tables, signal.filters);
    } catch (err) {
      this.#log.warn(`signal ignored: ${err instanceof Error ? err.message : String(err)}`, {
        signal: text.slice(0, 200),
      });
    }
  }

  /**
   * Selected tables without a topic (added to tables.include, or created in a captured schema,
   * while the connector was stopped) are read on demand, the others left alone. A table read
   * before has its topic; an empty one may not, and reading it again costs one empty chunk. The
   * offset does not list the tables read, so that it stays small whatever their number.
   */
  async #loadNewTables(stored: OffsetRecord | null): Promise<void> {
    if (stored?.snapshot?.state !== 'done' || !this.#selection || this.#s.snapshot.mode === 'never') return;
    const existing = new Set(await this.#admin!.listTopics());
    const fresh = this.#selection.filter((t) => !existing.has(topicFor(this.#s.topics.prefix, t)));
    if (fresh.length === 0) return;
    this.#log.info('tables added to the selection are read on demand', { tables: fresh.map(tableName) });
    try {
      this.requestSnapshot(fresh);
    } catch (err) {
      this.#fail(err);
    }
  }

  #chunkedLoad(state: SnapshotState, tables: TableRef[]): ChunkedLoad {
    return new ChunkedLoad(
      {
        settings: this.#s,
        log: this.#log,
        endpoint: this.#pg!,
        checkpoint: this.#checkpoint!,
        progress: this.snapshot,
        rows: this.stats.snapshotRows,
        publish: (e) => this.#publish(e),
        enrich: (r) => this.#enrich(r),
        whilePaused: () => this.#whilePaused(),
        fail: (e) => this.#fail(e),
        prepare: (relations) => this.#encoder!.prepare(relations),
      },
      state,
      tables,
    );
  }

  /** Encodes one change and hands its records to the sink (waits when Kafka is behind). */
  async #publish(event: ChangeEvent, transaction?: TransactionBlock): Promise<void> {
    const records: OutRecord[] = await this.#encoder!.records(event, transaction);
    for (const r of records) await this.#sink!.push(r);
    this.stats.recordsProduced += records.length;
    this.#observer.onRecords?.(tableName(event.relation), event.op, records.length);
  }

  /**
   * Kafka keys follow the one key rule (src/capture/selection.ts keyColumns). pgoutput's key flags
   * already are those columns for REPLICA IDENTITY DEFAULT (the primary key) and USING INDEX (the
   * index); under FULL it flags every column and under NOTHING none, so the catalog decides.
   */
  async #enrich(relation: Relation): Promise<Relation> {
    await this.#types!.load(relation.columns.map((c) => c.typeOid));
    if (relation.replicaIdentity !== 'full' && relation.replicaIdentity !== 'nothing') return relation;
    const keys = new Set(await keyColumnNames(this.#query!, relation.oid));
    return { ...relation, columns: relation.columns.map((c) => ({ ...c, isKey: keys.has(c.name) })) };
  }

  /** Waits for everything in flight, writes the final offset, confirms it. */
  async #drain(): Promise<void> {
    if (!this.#checkpoint || this.#failure) return;
    await this.#checkpoint.drain();
    const { lsn, txCommitLsn, txSeq } = this.#checkpoint.position;
    this.#log.info('drained', { lsn, ...(txCommitLsn ? { txCommitLsn, txSeq } : {}) });
  }

  async #close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#stream?.stop().catch(() => undefined);
    if (this.#sink instanceof ExactlyOnceSink) this.#sink.close();
    await this.#producer?.disconnect().catch(() => undefined);
    await this.#admin?.disconnect().catch(() => undefined);
    if (this.#query) await endWithin(this.#query);
    await this.#pg?.close().catch(() => undefined);
  }
}
