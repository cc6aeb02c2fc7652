// The worker runs one connector the way a Kafka Connect worker runs a connector with one task:
// it owns the Connector instance and its lifecycle (pause, resume, restart as a new instance),
// keeps reporting after a failure (status FAILED with the error) and decides, after a grace
// period, to give up so that the process exits non-zero and Kubernetes restarts the pod.
// A lost dependency (PostgreSQL, Kafka, the registry, the SSH tunnel) is not a failure: the
// worker starts a new instance from the stored offset, again and again at most
// RECONNECT_MAX_DELAY_MS apart, for as long as the outage lasts, and reports it (RECONNECTING).
import { hostname } from 'node:os';
import { SENSITIVE_PATHS } from '../config/schema.ts';
import type { PgcdcConfig } from '../config/types.ts';
import type { TableRef } from '../config/tables.ts';
import { Connector, type ConnectorObserver, type ConnectorState } from '../pipeline/connector.ts';
import { causeChain, failureKind, UserError, type FailureKind } from '../errors.ts';
import { releaseSlot } from '../pipeline/release.ts';
import { errorContext, redactText, type Logger } from './log.ts';
import { offsetKey } from '../kafka/offsets.ts';
import { parseLsn, formatLsn } from '../postgres/lsn.ts';

/** Kafka Connect's states (org.apache.kafka.connect.runtime.AbstractStatus.State). */
export type ConnectState = 'UNASSIGNED' | 'RUNNING' | 'PAUSED' | 'FAILED' | 'RESTARTING' | 'STOPPED';

/**
 * What pgcdc_connector_state reports: the connector's own state, PAUSED when paused,
 * RECONNECTING while a lost dependency keeps the connector from starting again.
 */
export type WorkerState = ConnectorState | 'PAUSED' | 'RECONNECTING';
export const WORKER_STATES: readonly WorkerState[] = [
  'STARTING',
  'RECONNECTING',
  'SNAPSHOT',
  'STREAMING',
  'PAUSED',
  'STOPPING',
  'STOPPED',
  'FAILED',
];

export interface WorkerOptions {
  /** How long a FAILED connector is reported before run() gives up; null: until stop() or restart(). */
  failureGraceMs: number | null;
  /** host:port as Kafka Connect's worker_id. */
  workerId?: string;
}

export interface RunOutcome {
  /** The connector's failure when the worker gave up on it (or was stopped while it was FAILED). */
  failure: Error | null;
}

/**
 * Restarts after a lost connection: 1 s, 2 s, 4 s, 8 s, then every 15 s, without limit. The cap
 * bounds the recovery time once the dependency is back (at most one wait plus a start), which is
 * what matters in a long outage; a start that fails costs the dependency little (a few connects).
 */
const RECONNECT_FIRST_DELAY_MS = 1_000;
const RECONNECT_MAX_DELAY_MS = 15_000;
/** A connector that has been reading this long after a reconnect ends the outage: a later loss counts anew. */
const RECONNECT_RESET_MS = 60_000;

/** A failure caused by a lost or unreachable connection, not by data, configuration or a bug. */
export function isConnectionLoss(err: unknown): boolean {
  return failureKind(err) === 'connection';
}

/** An outage being ridden out: how long, how many starts, and the last reason. */
export interface ReconnectState {
  since: number;
  attempts: number;
  lastError: Error;
  /** When the next start begins (null while one is in progress). */
  nextAttemptAt: number | null;
  /** When the connector reached SNAPSHOT or STREAMING again (null: not yet). */
  upSince: number | null;
}

/** What the next start does after a release forgot the offset and dropped the slot. */
function nextStartAfterRelease(mode: string): string {
  if (mode === 'never') return 'the next start streams from a new slot, without the changes in between';
  return `the next start takes a new snapshot (snapshot.mode=${mode})`;
}

/** What the next start does when the offset stayed but its slot is gone (src/pipeline/plan.ts). */
function nextStartWithLostSlot(mode: string): string {
  if (mode === 'when_needed' || mode === 'always')
    return `the next start takes a new snapshot (snapshot.mode=${mode})`;
  return `the next start refuses the stored offset (snapshot.mode=${mode}); run pgcdc offsets reset --yes or set snapshot.mode=when_needed`;
}

/** Every configured secret value (passwords, keys, tokens) — what logs and the REST API must never show. */
export function configSecrets(config: PgcdcConfig): string[] {
  const out: string[] = [];
  for (const path of SENSITIVE_PATHS) {
    let v: unknown = config;
    for (const k of path.split('.'))
      v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
    if (typeof v === 'string' && v !== '') out.push(v);
  }
  return out;
}

export class Worker {
  readonly name: string;
  readonly workerId: string;
  readonly secrets: string[];
  #config: PgcdcConfig;
  #log: Logger;
  #opts: WorkerOptions;
  #observers: ConnectorObserver[] = [];
  #connector: Connector;
  #failure: Error | null = null;
  #failedAt: number | null = null;
  /** Target state across restarts, as in Kafka Connect: a paused connector restarts paused. */
  #paused = false;
  #restarting = false;
  #stopRequested = false;
  #started = false;
  #finished = false;
  /** Wakes run() while it reports a failure: 'restart' or 'stop'. */
  #wake: ((why: 'restart' | 'stop') => void) | null = null;
  #onStarted: Array<() => void> = [];
  #reconnect: ReconnectState | null = null;
  #reconnectWatch: NodeJS.Timeout | null = null;
  /** Why the slot is to be released (heartbeat.walCriticalAction=stop); the run then ends FAILED. */
  #release: { reason: string; next: string } | null = null;

  constructor(config: PgcdcConfig, log: Logger, opts: WorkerOptions) {
    this.name = config.name;
    this.#config = config;
    this.#log = log;
    this.#opts = opts;
    this.workerId = opts.workerId ?? `${hostname()}:${config.http.port}`;
    this.secrets = configSecrets(config);
    this.#connector = this.#newConnector();
  }

  /** The configuration the connectors run with. */
  get config(): PgcdcConfig {
    return this.#config;
  }

  /** The current connector instance (a restart replaces it). */
  get connector(): Connector {
    return this.#connector;
  }

  get failure(): Error | null {
    return this.#failure;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get restarting(): boolean {
    return this.#restarting;
  }

  /** The outage being ridden out, if any (also after the connector is up again, until it has stayed up). */
  get reconnect(): Readonly<ReconnectState> | null {
    return this.#reconnect;
  }

  addObserver(o: ConnectorObserver): void {
    this.#observers.push(o);
  }

  /** The connector's state for metrics: its own state, or PAUSED while paused and reading. */
  get state(): WorkerState {
    const s = this.#connector.state;
    if (this.#failure) return 'FAILED';
    if (this.#reconnect && this.#reconnect.upSince === null && !this.#stopRequested) return 'RECONNECTING';
    // Failed but still closing: FAILED or RECONNECTING is the worker's verdict once run() settles.
    if (s === 'FAILED') return 'STOPPING';
    if (this.#connector.paused && (s === 'SNAPSHOT' || s === 'STREAMING')) return 'PAUSED';
    return s;
  }

  /**
   * Runs the connector until stop(), its normal end (snapshot.mode=initial_only), or a failure that
   * nobody restarted within the grace period.
   */
  async run(): Promise<RunOutcome> {
    if (this.#started) throw new Error('worker already running');
    this.#started = true;
    try {
      return await this.#loop();
    } finally {
      this.#finished = true;
      this.#watchReconnect(false);
      for (const f of this.#onStarted.splice(0)) f();
    }
  }

  async #loop(): Promise<RunOutcome> {
    for (;;) {
      const connector = this.#connector;
      for (const f of this.#onStarted.splice(0)) f();
      let error: Error | null = null;
      try {
        await connector.run();
      } catch (err) {
        error = err instanceof Error ? err : new Error(String(err));
      }
      if (this.#release && !this.#stopRequested) {
        error = await this.#released(this.#release);
      } else if (this.#restarting && !this.#stopRequested) {
        if (error) this.#log.warn('connector failed while restarting', { err: error });
        this.#connector = this.#newConnector();
        continue;
      }
      if (!error) return { failure: null };
      if (this.#stopRequested) {
        // The run ends with this failure (exit code 1 or 2), so it gets its one line here.
        this.#log.error('connector failed while stopping', { err: error, kind: failureKind(error) });
        return { failure: error };
      }
      let kind = failureKind(error);
      if (kind === 'connection') {
        // A lost connection (database restart, broker or registry down, dropped SSH tunnel):
        // start a new instance from the stored offset after a backoff, as a pod restart would,
        // but sooner, and for as long as it takes. Nothing was confirmed past the stored offset.
        const delayMs = this.#lostConnection(error);
        this.#restarting = true;
        const why = await this.#sleepUnlessStopped(delayMs);
        this.#restarting = false;
        if (why === 'stop') return { failure: null };
        if (!this.#release) {
          this.#reconnect!.nextAttemptAt = null;
          this.#connector = this.#newConnector();
          continue;
        }
        // The WAL budget released the slot during the outage: that ends the run, no new instance.
        error = await this.#released(this.#release);
        kind = failureKind(error);
      }

      this.#watchReconnect(false);
      this.#reconnect = null;
      this.#failure = error;
      this.#failedAt = Date.now();
      this.#log.error('connector failed', {
        err: error,
        kind,
        exitAfterMs: this.#opts.failureGraceMs,
      });
      const why = await this.#waitAfterFailure();
      if (why !== 'restart') return { failure: error };
      this.#log.info('restarting the failed connector');
      this.#failure = null;
      this.#failedAt = null;
      this.#connector = this.#newConnector();
      this.#restarting = false;
    }
  }

  /** Records a lost connection, logs one line for it, and returns the wait before the next start. */
  #lostConnection(error: Error): number {
    const now = Date.now();
    let r = this.#reconnect;
    // Up long enough since the last outage: this is a new one.
    if (r && r.upSince !== null && now - r.upSince >= RECONNECT_RESET_MS) r = null;
    r ??= { since: now, attempts: 0, lastError: error, nextAttemptAt: null, upSince: null };
    r.attempts++;
    r.lastError = error;
    r.upSince = null;
    const delayMs = Math.min(RECONNECT_MAX_DELAY_MS, RECONNECT_FIRST_DELAY_MS * 2 ** (r.attempts - 1));
    r.nextAttemptAt = now + delayMs;
    this.#reconnect = r;
    this.#watchReconnect(true);
    // One line per attempt, without the stack: a long outage is a line every 15 s, not a flood.
    this.#log.warn('connection lost; restarting the connector from its stored offset', {
      reason: causeChain(error),
      kind: 'connection' satisfies FailureKind,
      attempt: r.attempts,
      downForMs: now - r.since,
      retryInMs: delayMs,
    });
    return delayMs;
  }

  /** While an outage is ridden out, notices when the connector reads again (and says so once). */
  #watchReconnect(on: boolean): void {
    if (!on) {
      if (this.#reconnectWatch) clearInterval(this.#reconnectWatch);
      this.#reconnectWatch = null;
      return;
    }
    if (this.#reconnectWatch) return;
    this.#reconnectWatch = setInterval(() => {
      const r = this.#reconnect;
      if (!r) return this.#watchReconnect(false);
      const s = this.#connector.state;
      const now = Date.now();
      if (r.upSince === null && (s === 'SNAPSHOT' || s === 'STREAMING')) {
        r.upSince = now;
        this.#log.info('reconnected: the connector reads again', {
          attempts: r.attempts,
          downForMs: now - r.since,
        });
      } else if (r.upSince !== null && now - r.upSince >= RECONNECT_RESET_MS) {
        this.#reconnect = null;
        this.#watchReconnect(false);
      }
    }, 250);
    this.#reconnectWatch.unref();
  }

  /**
   * Stops the connector for good and releases its slot (heartbeat.walCriticalAction=stop): a
   * graceful stop, then the offset is forgotten and the slot dropped, and the run ends FAILED with
   * `reason` and what the next start does. Also while an outage is being ridden out.
   */
  release(reason: string): void {
    if (this.#release || this.#stopRequested || this.#finished || this.#failure) return;
    this.#release = { reason, next: nextStartAfterRelease(this.#config.snapshot.mode) };
    if (this.#reconnect?.nextAttemptAt) this.#wake?.('restart');
    else void this.#connector.stop();
  }

  /** Does the release; the failure the run ends with says what was released and what comes next. */
  async #released(release: { reason: string; next: string }): Promise<Error> {
    const done = await releaseSlot(this.#config, this.#log);
    this.#release = null;
    const slot = this.#config.slot.name;
    const offset =
      done.offsetError === null ? 'forgot the offset' : `could not forget the offset (${done.offsetError})`;
    if (done.slotError !== null) {
      return new UserError(
        `${release.reason}; heartbeat.walCriticalAction=stop: the connector stopped and ${offset}, but could not drop replication slot ${slot} (${done.slotError}), which still holds the WAL; drop it: SELECT pg_drop_replication_slot('${slot}');`,
      );
    }
    const what =
      done.offsetError === null
        ? `released replication slot ${slot} (dropped) and forgot the offset`
        : `${offset}, dropped replication slot ${slot}`;
    // A kept offset without its slot: the next start treats the position as lost (snapshot.mode decides).
    const next = done.offsetError === null ? release.next : nextStartWithLostSlot(this.#config.snapshot.mode);
    return new UserError(
      `${release.reason}; heartbeat.walCriticalAction=stop: the connector stopped and ${what}, so the server can recycle the WAL; the position is lost: ${next}`,
    );
  }

  /** Graceful stop of the connector (drain, final offset, confirm); run() then resolves. */
  async stop(): Promise<void> {
    this.#stopRequested = true;
    this.#wake?.('stop');
    await this.#connector.stop();
  }

  /** An on-demand snapshot of `tables` (Connector.requestSnapshot). */
  requestSnapshot(tables: TableRef[], filters: Record<string, string>): { tables: string[] } {
    return this.#connector.requestSnapshot(tables, filters);
  }

  /** Cancels a running on-demand snapshot; false when none runs. */
  cancelSnapshot(): boolean {
    return this.#connector.cancelSnapshot();
  }

  pause(): void {
    this.#paused = true;
    this.#connector.pause();
    this.#log.info('connector paused');
  }

  resume(): void {
    this.#paused = false;
    this.#connector.resume();
    this.#log.info('connector resumed');
  }

  /** Graceful stop and a new Connector instance; resolves once the new instance is running. */
  async restart(): Promise<void> {
    if (this.#stopRequested || this.#finished) throw new Error('the worker is stopping');
    if (this.#restarting) {
      // Waiting out a lost connection: an operator's restart means "try now".
      if (this.#reconnect?.nextAttemptAt) this.#wake?.('restart');
      return;
    }
    this.#restarting = true;
    const started = new Promise<void>((resolve) => this.#onStarted.push(resolve));
    if (this.#failure) this.#wake?.('restart');
    else {
      this.#log.info('restarting the connector');
      await this.#connector.stop();
    }
    await started;
    this.#restarting = false;
  }

  /** Ready: past start-up and reading (or paused), not failed. */
  readiness(): { ready: boolean; state: WorkerState; reason?: string } {
    const state = this.state;
    if (this.#failure)
      return { ready: false, state, reason: `connector failed: ${this.#redact(this.#failure.message)}` };
    const r = this.#reconnect;
    if (r && r.upSince === null) {
      return {
        ready: false,
        state,
        reason: `connector reconnecting (attempt ${r.attempts}, down ${Math.round((Date.now() - r.since) / 1000)} s): ${this.#redact(causeChain(r.lastError))}`,
      };
    }
    if (this.#restarting) return { ready: false, state, reason: 'connector restarting' };
    if (state === 'SNAPSHOT' || state === 'STREAMING' || state === 'PAUSED') return { ready: true, state };
    const reasons: Partial<Record<WorkerState, string>> = {
      STARTING: 'connector starting (connecting to PostgreSQL and Kafka)',
      STOPPING: 'connector stopping',
      STOPPED: 'connector stopped',
      FAILED: 'connector failed',
    };
    return { ready: false, state, reason: reasons[state] ?? state };
  }

  /** GET /connectors/{name}/status, in Kafka Connect's shape plus pgcdc's progress. */
  status(): Record<string, unknown> {
    const c = this.#connector;
    let state: ConnectState;
    const r = this.#reconnect;
    const reconnecting = r !== null && r.upSince === null && !this.#stopRequested;
    if (this.#failure) state = 'FAILED';
    else if (this.#restarting || reconnecting) state = 'RESTARTING';
    else if (c.state === 'STOPPING' || c.state === 'STOPPED' || c.state === 'FAILED') state = 'STOPPED';
    else if (c.paused) state = 'PAUSED';
    else state = 'RUNNING';
    const trace = this.#failure ? this.#trace(this.#failure) : undefined;
    const task: Record<string, unknown> = { id: 0, state, worker_id: this.workerId };
    if (trace) task.trace = trace;
    const connector: Record<string, unknown> = { state, worker_id: this.workerId };
    if (trace) connector.trace = trace;
    return {
      name: this.name,
      connector,
      tasks: [task],
      type: 'source',
      phase: this.state,
      ...(this.#failedAt ? { failed_at: new Date(this.#failedAt).toISOString() } : {}),
      ...(r
        ? {
            reconnect: {
              state: r.upSince === null ? 'reconnecting' : 'reconnected',
              since: new Date(r.since).toISOString(),
              attempts: r.attempts,
              lastError: this.#redact(causeChain(r.lastError)),
              ...(r.nextAttemptAt ? { nextAttemptAt: new Date(r.nextAttemptAt).toISOString() } : {}),
              ...(r.upSince ? { upSince: new Date(r.upSince).toISOString() } : {}),
            },
          }
        : {}),
      snapshot: c.snapshot,
      lsn: { confirmed: formatLsn(c.confirmedLsn), position: c.position },
      stats: { ...c.stats, inFlightBytes: c.inFlightBytes },
    };
  }

  /** GET /connectors/{name}/offsets, in Kafka Connect's shape; the partition is the offset topic's key. */
  offsets(): { offsets: Array<{ partition: Record<string, unknown>; offset: Record<string, unknown> }> } {
    // What the offsets topic acknowledged (what a restart resumes from), not the in-memory position.
    const position = this.#connector.storedPosition;
    if (!position) return { offsets: [] };
    const partition = JSON.parse(offsetKey({ connector: this.name, slot: this.#config.slot.name })) as Record<
      string,
      unknown
    >;
    let lsnBytes: string | undefined;
    try {
      lsnBytes = parseLsn(position.lsn).toString();
    } catch {
      lsnBytes = undefined;
    }
    return {
      offsets: [{ partition, offset: { ...position, ...(lsnBytes ? { lsn_bytes: lsnBytes } : {}) } }],
    };
  }

  #trace(err: Error): string {
    const ctx = errorContext(err);
    return this.#redact(typeof ctx.stack === 'string' ? ctx.stack : `${err.name}: ${err.message}`);
  }

  #redact(text: string): string {
    return redactText(text, this.secrets);
  }

  /** Waits `ms`; resolves early with 'stop' when stop() is called. */
  #sleepUnlessStopped(ms: number): Promise<'stop' | 'timeout'> {
    if (this.#stopRequested) return Promise.resolve('stop');
    return new Promise((resolve) => {
      const timer = setTimeout(() => done('timeout'), ms);
      const done = (why: 'restart' | 'stop' | 'timeout'): void => {
        clearTimeout(timer);
        this.#wake = null;
        resolve(why === 'stop' ? 'stop' : 'timeout');
      };
      this.#wake = done;
    });
  }

  #waitAfterFailure(): Promise<'restart' | 'stop' | 'timeout'> {
    return new Promise((resolve) => {
      const grace = this.#opts.failureGraceMs;
      const timer = grace === null ? null : setTimeout(() => done('timeout'), grace);
      const done = (why: 'restart' | 'stop' | 'timeout'): void => {
        if (timer) clearTimeout(timer);
        this.#wake = null;
        resolve(why);
      };
      this.#wake = done;
    });
  }

  #newConnector(): Connector {
    const observers = this.#observers;
    const observer: ConnectorObserver = {
      onRecords: (t, op, n) => observers.forEach((o) => o.onRecords?.(t, op, n)),
      onDurable: (micros) => observers.forEach((o) => o.onDurable?.(micros)),
      onProduceError: (e) => observers.forEach((o) => o.onProduceError?.(e)),
      onKafkaRetry: () => observers.forEach((o) => o.onKafkaRetry?.()),
    };
    const c = new Connector(this.#config, this.#log, observer);
    if (this.#paused) c.pause();
    return c;
  }
}
