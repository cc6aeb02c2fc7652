// The change stream from a replication slot. pg-logical-replication runs the replication
// connection (START_REPLICATION over a `pg` client, CopyData plumbing, pausing the socket while
// a message is being handled); pgcdc supplies the pgoutput decoder and decides what is confirmed.
//
// Where the package falls short, and what this file does about it:
// - Its own pgoutput parser turns values into JS values with pg's type parsers (timestamps lose
//   microseconds, unchanged TOAST becomes undefined): we plug in our decoder (text values, TOAST marker).
// - With auto-acknowledge it confirms what it *received*, and a timer re-confirms the last received
//   LSN: both are off here (auto: false, timeoutSeconds: 0). Only durable LSNs are confirmed.
// - acknowledge(lsn) sends lsn + 1 as the flush position; we pass (durable - 1) so the server
//   receives exactly the durable end LSN.
// - An error thrown by a 'data' handler is emitted and the next message is still handled: the
//   stream stops itself on the first failure so nothing after it is processed.
// - It parses each CopyData inside the socket's data callback with no length checks, and calls the
//   plugin's parse there too: a short frame or a decoding error would be an uncaught exception
//   (a stack trace and a dead process). Every CopyData is validated here first (wire.ts) and the
//   decoder's errors are caught, so both fail the stream with a typed error naming the LSN.
// - It never notices a connection that went silent (a dropped NAT entry, a frozen peer): a
//   watchdog asks the server for a keepalive after half of the timeout and fails the stream as a
//   lost connection when nothing at all arrived for the whole timeout.
import { LogicalReplicationService } from 'pg-logical-replication';
import pg from 'pg';
import type { EventEmitter } from 'node:events';
import { RetriableError } from '../../errors.ts';
import { formatLsn, parseLsn, type Lsn } from '../lsn.ts';
import { MESSAGE_NAMES, PgoutputDecoder, PgoutputError, type PgoutputMessage } from './pgoutput.ts';
import { nowMicros, parseServerCopyData, standbyStatusUpdate } from './wire.ts';

export interface StreamHandlers {
  /** Called for each message in WAL order; the next message waits until the promise settles. */
  onMessage: (msg: PgoutputMessage, walStart: Lsn) => Promise<void> | void;
  /** A keepalive; `caughtUp` is true when every message received before it has been handled. */
  onKeepalive: (walEnd: Lsn, caughtUp: boolean, replyRequested: boolean) => void;
}

export interface StreamOptions {
  slot: string;
  publication: string;
  startLsn: Lsn;
  /** postgres.replicationTimeoutMs: silence (no CopyData at all) after which the connection counts as lost. */
  timeoutMs?: number;
  /**
   * Ask pgoutput for logical decoding messages (`messages 'true'`, PostgreSQL 14+): pgcdc's own
   * heartbeats come back through the stream and move the slot, and op 'm' events can be published.
   */
  messages?: boolean;
}

export const DEFAULT_REPLICATION_TIMEOUT_MS = 60_000;

/**
 * The server sent bytes that are not a valid replication message (a short frame, a pgoutput
 * message the decoder refuses). Reading the same WAL again gives the same bytes, so it is not
 * retried: the connector goes FAILED. Named DataError so the worker classifies it as bad data.
 */
export class ReplicationDataError extends Error {
  override name = 'DataError';
  readonly retriable = false;
  /** Start LSN of the XLogData it came in (the last valid one for a bad frame), null before any. */
  readonly lsn: Lsn | null;
  /** The pgoutput message type byte as a character ('' for a frame error or an empty message). */
  readonly messageType: string;

  constructor(message: string, lsn: Lsn | null, messageType: string, options?: ErrorOptions) {
    super(message, options);
    this.lsn = lsn;
    this.messageType = messageType;
  }
}

/** The replication connection went silent: a lost connection, the worker restarts from the stored offset. */
export class ReplicationTimeoutError extends RetriableError {
  override name = 'ReplicationTimeoutError';
}

/** The parts of pg's Connection this file touches (it is not in pg's types). */
interface WireConnection extends EventEmitter {
  stream?: { destroy?: () => void };
  sendCopyFromChunk(chunk: Buffer): void;
}

/** A decoded message and the walStart of the XLogData frame it came in. */
interface Parsed {
  msg: PgoutputMessage;
  walStart: Lsn;
}

export class ReplicationStream {
  #service: LogicalReplicationService;
  #clientConfig: pg.ClientConfig;
  #received = 0;
  #handled = 0;
  #failure: Error | null = null;
  /** Settles when a failure's clean-up (ending an abandoned walsender) is done; run() waits for it. */
  #failureSettled: Promise<void> = Promise.resolve();
  #stopping = false;
  /** Resolved by stop(): run() ends with it even while the connection is still being made. */
  #stopped = Promise.withResolvers<void>();
  #confirmed: Lsn = 0n;
  #halted = false;
  #current: Promise<void> = Promise.resolve();
  #client: pg.Client | null = null;
  #connection: WireConnection | null = null;
  #started = false;
  /** walStart of the last valid XLogData: what a decoding error is reported at. */
  #walStart: Lsn | null = null;
  #lastHeard = Date.now();
  #pinged = false;
  #watchdog: NodeJS.Timeout | null = null;

  constructor(clientConfig: pg.ClientConfig, handlers: StreamHandlers) {
    this.#clientConfig = clientConfig;
    this.#service = new LogicalReplicationService(clientConfig, {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: true },
    });
    // subscribe() gets its connection from client() and only then registers its copyData
    // listener: wrapping client() is the one place to put a check in front of the package's parsing.
    const service = this.#service as unknown as { client: () => Promise<[pg.Client, WireConnection]> };
    const connect = service.client.bind(service);
    service.client = async () => {
      const [client, connection] = await connect();
      if (this.#stopping) {
        // stop() came while this connection was being made, before the package kept it: it
        // would otherwise start streaming into a stream nobody reads any more.
        await client.end().catch(() => undefined);
        throw new Error('replication stream stopped while connecting');
      }
      this.#client = client;
      this.#connection = connection;
      this.#guard(connection);
      return [client, connection];
    };
    this.#service.on('start', () => {
      this.#started = true;
      this.#heard();
    });
    // The package's text LSN is not parsed back: parse() below hands over the message with the
    // walStart the guard read from the same frame.
    this.#service.on('data', (_lsn: string, data: Parsed | null) => {
      if (this.#failure || this.#stopping || this.#halted || data === null) return;
      const current = this.#handle(handlers, data);
      this.#current = current;
      return current;
    });
    this.#service.on('heartbeat', (lsn: string, _ts: number, replyRequested: boolean) => {
      if (this.#failure || this.#stopping) return;
      if (this.#halted) {
        // Draining: the position must not move past the final offset any more; just answer.
        if (replyRequested) this.confirm(this.#confirmed);
        return;
      }
      try {
        handlers.onKeepalive(parseLsn(lsn), this.#received === this.#handled, replyRequested);
        if (replyRequested) this.confirm(this.#confirmed);
      } catch (err) {
        this.#fail(err);
      }
    });
    // An error while stopping is the stop's own doing (the connection it ends), not a failure.
    this.#service.on('error', (err: Error) => {
      if (!this.#stopping) this.#fail(err);
    });
  }

  /** The last LSN confirmed to the server. */
  get confirmed(): Lsn {
    return this.#confirmed;
  }

  /**
   * Streams until stop() or a failure. Resolves when stopped cleanly; rejects with the first
   * error (connection loss, silence longer than the timeout, decoding error, a handler's error).
   */
  async run(opts: StreamOptions): Promise<void> {
    const decoder = new PgoutputDecoder({ protoVersion: 1 });
    const plugin = {
      name: 'pgoutput',
      options: {},
      // Runs as each CopyData arrives (before the message waits in the flow-control queue),
      // so counting here tells how many messages were received. It runs inside the socket's
      // data callback: it must not throw.
      parse: (buf: Buffer): Parsed | null => {
        this.#received++;
        try {
          // The guard has just read this frame's header (it runs first in the same callback).
          return { msg: decoder.decode(buf), walStart: this.#walStart! };
        } catch (err) {
          this.#fail(decodeFailure(err, buf, this.#walStart));
          return null;
        }
      },
      start: async (client: pg.Client, slot: string, lsn: string) => {
        // pgoutput knows the messages option from PostgreSQL 14; a 13 refuses START_REPLICATION with it.
        const messages = opts.messages === true && (await serverVersionNum(client)) >= 140000;
        return client.query(
          `START_REPLICATION SLOT "${slot.replaceAll('"', '""')}" LOGICAL ${lsn} ` +
            `(proto_version '1', publication_names '${opts.publication.replaceAll("'", "''")}'` +
            `${messages ? ", messages 'true'" : ''})`,
        );
      },
    };
    this.#confirmed = opts.startLsn;
    this.#startWatchdog(opts.slot, opts.timeoutMs ?? DEFAULT_REPLICATION_TIMEOUT_MS);
    const done = this.#service.subscribe(plugin as never, opts.slot, formatLsn(opts.startLsn));
    // A stop can end run() before subscribe() settles; its rejection then has nobody to tell.
    done.catch(() => undefined);
    const failed = new Promise<never>((_, reject) => {
      this.#rejectRun = reject;
    });
    try {
      await Promise.race([done, failed, this.#stopped.promise]);
    } catch (err) {
      await this.#failureSettled;
      if (this.#stopping && !this.#failure) return;
      throw this.#failure ?? err;
    } finally {
      if (this.#watchdog) clearInterval(this.#watchdog);
    }
    await this.#failureSettled;
    if (this.#failure) throw this.#failure;
    if (!this.#stopping) throw new Error('replication stream ended unexpectedly');
  }

  #rejectRun: (err: Error) => void = () => undefined;

  async #handle(handlers: StreamHandlers, data: Parsed): Promise<void> {
    try {
      await handlers.onMessage(data.msg, data.walStart);
      this.#handled++;
    } catch (err) {
      this.#fail(err);
    }
  }

  /** Tells the server that everything before `lsn` is durable (it may free that WAL). */
  confirm(lsn: Lsn): void {
    if (lsn < this.#confirmed) return;
    this.#confirmed = lsn;
    if (lsn > 0n && !this.#service.isStop()) void this.#service.acknowledge(formatLsn(lsn - 1n));
  }

  /**
   * Stops handling messages but keeps the connection open, so the caller can drain what was
   * handled and still confirm it. Resolves when the message being handled (if any) is done.
   */
  halt(): Promise<void> {
    this.#halted = true;
    return this.#current;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stopped.resolve();
    await this.#service.stop();
  }

  #fail(err: unknown): void {
    if (this.#failure) return;
    this.#failure = err instanceof Error ? err : new Error(String(err));
    this.#rejectRun(this.#failure);
    void this.#service.stop();
  }

  /** Validates every CopyData before pg-logical-replication's listener reads it. */
  #guard(connection: WireConnection): void {
    const emit = connection.emit.bind(connection);
    connection.emit = (event: string | symbol, ...args: unknown[]): boolean => {
      if (event !== 'copyData') return emit(event, ...args);
      if (this.#failure) return true; // nothing after the first failure is read
      const chunk = (args[0] as { chunk: Buffer }).chunk;
      let frame;
      try {
        frame = parseServerCopyData(chunk);
      } catch (err) {
        const after = this.#walStart === null ? '' : ` after ${formatLsn(this.#walStart)}`;
        this.#fail(
          new ReplicationDataError(
            `replication stream: bad CopyData frame${after}: ${(err as Error).message}`,
            this.#walStart,
            '',
            { cause: err },
          ),
        );
        return true;
      }
      this.#heard();
      if (frame.kind === 'xlog') this.#walStart = frame.walStart;
      try {
        return emit(event, ...args);
      } catch (err) {
        // Whatever the package's listener throws would otherwise escape the socket callback.
        this.#fail(err);
        return true;
      }
    };
  }

  #heard(): void {
    this.#lastHeard = Date.now();
    this.#pinged = false;
  }

  #startWatchdog(slot: string, timeoutMs: number): void {
    this.#heard();
    const period = Math.max(50, Math.min(1000, Math.floor(timeoutMs / 8)));
    this.#watchdog = setInterval(() => {
      if (this.#failure || this.#stopping || this.#halted) return;
      // While a message is being handled the package pauses the socket (flow control): keepalives
      // wait in the kernel, and the silence is ours, not the connection's.
      if (this.#received !== this.#handled) {
        this.#heard();
        return;
      }
      const silentMs = Date.now() - this.#lastHeard;
      if (silentMs >= timeoutMs) {
        this.#timedOut(slot, silentMs, timeoutMs);
      } else if (silentMs >= timeoutMs / 2 && !this.#pinged && this.#started) {
        // The server sends keepalives on its own only when it has not heard from us for half
        // of its wal_sender_timeout, and pgcdc's status updates are more frequent than that: ask.
        this.#pinged = true;
        const c = this.#confirmed;
        this.#connection?.sendCopyFromChunk(standbyStatusUpdate(c, c, c, nowMicros(), true));
      }
    }, period);
    this.#watchdog.unref();
  }

  #timedOut(slot: string, silentMs: number, timeoutMs: number): void {
    // pg sets processID from BackendKeyData; its type declarations leave it out.
    const pid = (this.#client as { processID?: number } | null)?.processID ?? null;
    const base =
      `replication connection silent for ${(silentMs / 1000).toFixed(1)} s ` +
      `(postgres.replicationTimeoutMs = ${timeoutMs}): no data and no keepalive from the server`;
    const failure = new ReplicationTimeoutError(base);
    this.#failure = failure;
    // A silent socket may never complete a clean close: drop it.
    this.#connection?.stream?.destroy?.();
    void this.#service.stop();
    this.#failureSettled = (async () => {
      const ended = await endAbandonedWalsender(this.#clientConfig, slot, pid);
      failure.message = `${base}; ${ended}`;
      this.#rejectRun(failure);
    })();
  }
}

/**
 * The server keeps the walsender of a connection that went silent (and so the slot, active) until
 * its own wal_sender_timeout; a restarted connector would find the slot in use. The one backend we
 * abandoned is ended here, on a new connection, only while it still holds this slot.
 */
async function endAbandonedWalsender(
  config: pg.ClientConfig,
  slot: string,
  pid: number | null,
): Promise<string> {
  if (pid === null || !Number.isInteger(pid)) return 'the server-side walsender is unknown';
  const client = new pg.Client(config);
  client.on('error', () => undefined);
  const literal = `'${slot.replaceAll("'", "''")}'`;
  try {
    await client.connect();
    await client.query(
      `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ${literal} AND active_pid = ${pid}`,
    );
    for (let i = 0; i < 50; i++) {
      const r = await client.query(
        `SELECT 1 FROM pg_replication_slots WHERE slot_name = ${literal} AND active_pid = ${pid}`,
      );
      if (r.rows.length === 0) return `ended its walsender (pid ${pid}) so the slot is free for the restart`;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return `its walsender (pid ${pid}) still holds slot ${slot}`;
  } catch (err) {
    return `could not end its walsender (pid ${pid}): ${(err as Error).message}; the server frees the slot after its wal_sender_timeout`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** server_version_num over the replication connection (SHOW is a replication command). */
async function serverVersionNum(client: pg.Client): Promise<number> {
  const r = await client.query<{ server_version_num: string }>('SHOW server_version_num');
  return Number(r.rows[0]?.server_version_num ?? 0);
}

/** A decoder error as the connector reports it: at which LSN, which message, why. */
function decodeFailure(err: unknown, buf: Buffer, walStart: Lsn | null): Error {
  const type = buf[0];
  const char = type === undefined ? '' : String.fromCharCode(type);
  const name = type === undefined ? 'empty' : describeType(type);
  const at = walStart === null ? 'an unknown LSN' : formatLsn(walStart);
  const reason = err instanceof PgoutputError ? err.reason : String((err as Error)?.message ?? err);
  const message = `pgoutput decode failed at ${at} (message ${name}): ${reason}`;
  if (err instanceof PgoutputError) return new ReplicationDataError(message, walStart, char, { cause: err });
  // Not the decoder's typed refusal: a bug in it, kept with its cause and stack.
  return new Error(message, { cause: err });
}

function describeType(b: number): string {
  const ch = String.fromCharCode(b);
  const shown = b >= 0x20 && b < 0x7f ? `'${ch}'` : `0x${b.toString(16).padStart(2, '0')}`;
  const name = MESSAGE_NAMES[ch];
  return name === undefined ? shown : `${shown} ${name}`;
}
