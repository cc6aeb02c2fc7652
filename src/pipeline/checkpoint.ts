// Checkpointing: the position, the offset record that stores it, and the LSN confirmation.
// The rule lives here and nowhere else: the position moves only when the sink says the records
// before it are durable (afterDurable), the offset record is pushed through the same sink, and
// PostgreSQL is told an LSN only when the offset record that covers it is durable too.
//
// With a transactional sink (delivery.mode exactly-once, src/kafka/transactional.ts) the offset
// record is not pushed on its own: the sink asks for it when it commits a Kafka transaction, after
// the markers of that transaction moved the position, so the record is committed atomically with
// the records it covers; the LSN is confirmed once that commit is done.
import type { OffsetRecord, OffsetStore } from '../kafka/offsets.ts';
import type { CommitHook, TransactionalSink } from '../kafka/transactional.ts';
import { parseLsn, type Lsn } from '../postgres/lsn.ts';
import type { Sink } from './sink.ts';

/** What the position can be confirmed to: the replication stream's standby status updates. */
export interface LsnConfirmer {
  confirm(lsn: Lsn): void;
}

const isTransactional = (sink: Sink): sink is Sink & TransactionalSink =>
  (sink as Partial<TransactionalSink>).transactional === true;

export type PositionUpdate = Partial<Omit<OffsetRecord, 'ts_ms'>>;

/**
 * While a load inside the slot's exported snapshot runs, the slot stays at its consistent point
 * (streaming has not begun). A chunked load streams meanwhile: its position is confirmed as usual.
 */
const slotHeld = (offset: OffsetRecord): boolean =>
  offset.snapshot?.state === 'running' && offset.snapshot.method !== 'chunked';

export class Checkpoint {
  #sink: Sink;
  #offsets: OffsetStore;
  #confirmer: LsnConfirmer | null = null;
  /** The latest durable position; what the next offset record says. */
  #position: OffsetRecord = { lsn: '0/0', ts_ms: 0 };
  /** What the offsets topic has acknowledged (the stored offset at start until the first write). */
  #stored: OffsetRecord | null;
  #dirty = false;
  #writing = false;

  constructor(sink: Sink, offsets: OffsetStore, stored: OffsetRecord | null) {
    this.#sink = sink;
    this.#offsets = offsets;
    this.#stored = stored;
    if (isTransactional(sink)) sink.onCommit(() => this.#offsetForCommit());
  }

  /** The latest durable position (may be ahead of what is stored). */
  get position(): OffsetRecord {
    return this.#position;
  }

  /** The position the offsets topic has acknowledged; null when nothing is stored. */
  get stored(): OffsetRecord | null {
    return this.#stored;
  }

  /** Once the offset record is durable, its LSN goes to `confirmer` (null: confirm nothing). */
  confirmTo(confirmer: LsnConfirmer | null): void {
    this.#confirmer = confirmer;
  }

  /**
   * Starts from a position that is durable already: the stored offset on resume, a new slot's
   * consistent point before anything of it is pushed.
   */
  begin(position: PositionUpdate, dirty: boolean): void {
    this.#position = { lsn: '0/0', ...position, ts_ms: Date.now() };
    this.#dirty = dirty;
  }

  /**
   * Runs `step` once every record pushed so far is durable, and moves the position by what it
   * returns (nothing when it returns undefined). The only way the position moves.
   */
  afterDurable(step: () => PositionUpdate | undefined | void): void {
    this.#sink.mark(() => {
      const update = step();
      if (update) this.#apply(update);
    });
  }

  /** The position inside a transaction (or none, with undefined) is part of the update. */
  #apply(update: PositionUpdate): void {
    this.#position = { ...this.#position, ...update, ts_ms: Date.now() };
    if ('txCommitLsn' in update && update.txCommitLsn === undefined) {
      delete this.#position.txCommitLsn;
      delete this.#position.txSeq;
    }
    this.#dirty = true;
  }

  /** Something moved since the last offset write (e.g. snapshot progress kept by reference). */
  touch(): void {
    this.#dirty = true;
  }

  /**
   * Pushes the current position to the offsets topic; when that record is acknowledged, it is
   * the stored position and its LSN is confirmed. Never confirms more than the offset says.
   */
  async write(): Promise<void> {
    if (isTransactional(this.#sink)) {
      // The offset rides in the next Kafka transaction; this asks for it to be committed soon.
      if (!this.#sink.failure) await this.#sink.requestCommit();
      return;
    }
    if (!this.#dirty || this.#writing || this.#sink.failure) return;
    this.#writing = true;
    try {
      this.#dirty = false;
      const offset = structuredClone({ ...this.#position, ts_ms: Date.now() });
      await this.#sink.push(this.#offsets.record(offset));
      const lsn = parseLsn(offset.lsn);
      const holdSlot = slotHeld(offset);
      this.#sink.mark(() => {
        this.#stored = offset;
        if (!holdSlot) this.#confirmer?.confirm(lsn);
      });
    } finally {
      this.#writing = false;
    }
  }

  /** The offset record of the current position for the Kafka transaction being committed. */
  #offsetForCommit(): ReturnType<CommitHook> {
    if (!this.#dirty) return null;
    this.#dirty = false;
    const offset = structuredClone({ ...this.#position, ts_ms: Date.now() });
    const lsn = parseLsn(offset.lsn);
    const holdSlot = slotHeld(offset);
    return {
      record: this.#offsets.record(offset),
      committed: () => {
        this.#stored = offset;
        if (!holdSlot) this.#confirmer?.confirm(lsn);
      },
    };
  }

  /**
   * Forgets the stored position: a tombstone for the connector's key, through the same sink, so
   * the next start finds no offset. Durable when this resolves.
   */
  async forget(): Promise<void> {
    const r = this.#offsets.record(this.#position);
    await this.#sink.push({ topic: r.topic, key: r.key, value: null });
    // A boundary: a transactional sink commits the tombstone instead of aborting it as a tail.
    this.#sink.mark(() => undefined);
    await this.#sink.flush();
    this.#stored = null;
  }

  /** Waits for everything in flight, writes the final offset and waits for it too. */
  async drain(): Promise<void> {
    if (this.#sink.failure) return;
    await this.#sink.flush();
    while (this.#writing) await new Promise((r) => setTimeout(r, 10));
    await this.write();
    await this.#sink.flush();
  }
}
