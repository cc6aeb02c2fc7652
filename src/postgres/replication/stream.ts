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
import { LogicalReplicationService } from 'pg-logical-replication';
import type pg from 'pg';
import { formatLsn, parseLsn, type Lsn } from '../lsn.ts';
import { PgoutputDecoder, type PgoutputMessage } from './pgoutput.ts';

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
}

export class ReplicationStream {
  #service: LogicalReplicationService;
  #received = 0;
  #handled = 0;
  #failure: Error | null = null;
  #stopping = false;
  #confirmed: Lsn = 0n;
  #halted = false;
  #current: Promise<void> = Promise.resolve();

  constructor(clientConfig: pg.ClientConfig, handlers: StreamHandlers) {
    this.#service = new LogicalReplicationService(clientConfig, {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: true },
    });
    this.#service.on('data', async (lsn: string, msg: PgoutputMessage) => {
      if (this.#failure || this.#stopping || this.#halted) return;
      const current = (async () => {
        try {
          await handlers.onMessage(msg, parseLsn(lsn));
          this.#handled++;
        } catch (err) {
          this.#fail(err);
        }
      })();
      this.#current = current;
      await current;
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
    this.#service.on('error', (err: Error) => this.#fail(err));
  }

  /** The last LSN confirmed to the server. */
  get confirmed(): Lsn {
    return this.#confirmed;
  }

  /**
   * Streams until stop() or a failure. Resolves when stopped cleanly; rejects with the first
   * error (connection loss, decoding error, a handler's error).
   */
  async run(opts: StreamOptions): Promise<void> {
    const decoder = new PgoutputDecoder({ protoVersion: 1 });
    const plugin = {
      name: 'pgoutput',
      options: {},
      // Runs as each CopyData arrives (before the message waits in the flow-control queue),
      // so counting here tells how many messages were received.
      parse: (buf: Buffer) => {
        this.#received++;
        return decoder.decode(buf);
      },
      start: (client: pg.Client, slot: string, lsn: string) =>
        client.query(
          `START_REPLICATION SLOT "${slot.replaceAll('"', '""')}" LOGICAL ${lsn} ` +
            `(proto_version '1', publication_names '${opts.publication.replaceAll("'", "''")}')`,
        ),
    };
    this.#confirmed = opts.startLsn;
    const done = this.#service.subscribe(plugin as never, opts.slot, formatLsn(opts.startLsn));
    const failed = new Promise<never>((_, reject) => {
      this.#rejectRun = reject;
    });
    try {
      await Promise.race([done, failed]);
    } catch (err) {
      if (this.#stopping && !this.#failure) return;
      throw this.#failure ?? err;
    }
    if (this.#failure) throw this.#failure;
    if (!this.#stopping) throw new Error('replication stream ended unexpectedly');
  }

  #rejectRun: (err: Error) => void = () => undefined;

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
    await this.#service.stop();
  }

  #fail(err: unknown): void {
    if (this.#failure) return;
    this.#failure = err instanceof Error ? err : new Error(String(err));
    this.#rejectRun(this.#failure);
    void this.#service.stop();
  }
}
