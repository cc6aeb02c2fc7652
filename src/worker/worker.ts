// The worker runs one connector the way a Kafka Connect worker runs a connector with one task:
// it owns the Connector instance and its lifecycle (pause, resume, restart as a new instance),
// keeps reporting after a failure (status FAILED with the error) and decides, after a grace
// period, to give up so that the process exits non-zero and Kubernetes restarts the pod.
import { hostname } from 'node:os';
import { SENSITIVE_PATHS } from '../config/schema.ts';
import type { PgcdcConfig } from '../config/types.ts';
import { Connector, type ConnectorObserver, type ConnectorState } from '../pipeline/connector.ts';
import { errorContext, redactText, type Logger } from './log.ts';
import { offsetKey } from '../kafka/offsets.ts';
import { parseLsn, formatLsn } from '../postgres/lsn.ts';

/** Kafka Connect's states (org.apache.kafka.connect.runtime.AbstractStatus.State). */
export type ConnectState = 'UNASSIGNED' | 'RUNNING' | 'PAUSED' | 'FAILED' | 'RESTARTING' | 'STOPPED';

/** What pgcdc_connector_state reports: the connector's own state, PAUSED when paused. */
export type WorkerState = ConnectorState | 'PAUSED';
export const WORKER_STATES: readonly WorkerState[] = [
  'STARTING',
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

/** Automatic restarts after a lost connection: at most this many in a row (backoff 1 s, 2 s, … 30 s). */
const AUTO_RESTART_LIMIT = 8;
const AUTO_RESTART_MAX_MS = 30_000;
/** A run that lasted this long resets the count. */
const AUTO_RESTART_RESET_MS = 120_000;

/** A failure caused by a lost or unreachable connection, not by data or configuration. */
export function isConnectionLoss(err: Error): boolean {
  if ((err as { retriable?: unknown }).retriable === true) return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && ['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ETIMEDOUT'].includes(code))
    return true;
  return /Connection terminated unexpectedly|connection lost|terminating connection due to administrator command/i.test(
    err.message,
  );
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

  constructor(config: PgcdcConfig, log: Logger, opts: WorkerOptions) {
    this.name = config.name;
    this.#config = config;
    this.#log = log;
    this.#opts = opts;
    this.workerId = opts.workerId ?? `${hostname()}:${config.http.port}`;
    this.secrets = configSecrets(config);
    this.#connector = this.#newConnector();
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

  addObserver(o: ConnectorObserver): void {
    this.#observers.push(o);
  }

  /** The connector's state for metrics: its own state, or PAUSED while paused and reading. */
  get state(): WorkerState {
    const s = this.#connector.state;
    if (this.#failure) return 'FAILED';
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
      for (const f of this.#onStarted.splice(0)) f();
    }
  }

  async #loop(): Promise<RunOutcome> {
    for (;;) {
      const connector = this.#connector;
      const startedAt = Date.now();
      for (const f of this.#onStarted.splice(0)) f();
      let error: Error | null = null;
      try {
        await connector.run();
      } catch (err) {
        error = err instanceof Error ? err : new Error(String(err));
      }
      if (this.#restarting && !this.#stopRequested) {
        if (error) this.#log.warn('connector failed while restarting', { err: error });
        this.#connector = this.#newConnector();
        continue;
      }
      if (!error) return { failure: null };
      if (this.#stopRequested) return { failure: error };
      if (isConnectionLoss(error)) {
        // A lost connection (database restart, dropped SSH tunnel, network blip): start a new
        // instance from the stored offset after a backoff, as a pod restart would, but sooner.
        const ranMs = Date.now() - startedAt;
        if (ranMs > AUTO_RESTART_RESET_MS) this.#autoRestarts = 0;
        if (this.#autoRestarts < AUTO_RESTART_LIMIT) {
          const delayMs = Math.min(AUTO_RESTART_MAX_MS, 1000 * 2 ** this.#autoRestarts++);
          this.#log.warn('connection lost; restarting the connector from its stored offset', {
            err: error,
            attempt: this.#autoRestarts,
            retryInMs: delayMs,
          });
          this.#restarting = true;
          const why = await this.#sleepUnlessStopped(delayMs);
          this.#restarting = false;
          if (why === 'stop') return { failure: null };
          this.#connector = this.#newConnector();
          continue;
        }
      }

      this.#failure = error;
      this.#failedAt = Date.now();
      this.#log.error('connector failed', {
        err: error,
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

  /** Graceful stop of the connector (drain, final offset, confirm); run() then resolves. */
  async stop(): Promise<void> {
    this.#stopRequested = true;
    this.#wake?.('stop');
    await this.#connector.stop();
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
    if (this.#restarting) return;
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
    if (this.#failure || c.state === 'FAILED') state = 'FAILED';
    else if (this.#restarting) state = 'RESTARTING';
    else if (c.state === 'STOPPING' || c.state === 'STOPPED') state = 'STOPPED';
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
      snapshot: c.snapshot,
      lsn: { confirmed: formatLsn(c.confirmedLsn), position: c.position },
      stats: { ...c.stats, inFlightBytes: c.inFlightBytes },
    };
  }

  /** GET /connectors/{name}/offsets, in Kafka Connect's shape; the partition is the offset topic's key. */
  offsets(): { offsets: Array<{ partition: Record<string, unknown>; offset: Record<string, unknown> }> } {
    const position = this.#connector.position;
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

  #autoRestarts = 0;

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
