// Transaction decoding: pgoutput messages in, change events out. Pure (no I/O), so every rule
// about positions inside a transaction is unit-tested without a server.
//
// Every change gets its position {commitLsn, seq}: the commit LSN of its transaction and the
// index in it of the pgoutput change message (insert, update, delete, truncate) it comes from.
// That is what a restart resumes by: given the stored {txCommitLsn, txSeq}, the replayed
// transaction's first txSeq messages are skipped. It counts what PostgreSQL sent, not what pgcdc
// made of it, so it does not depend on the configuration or the catalog: a truncate counts whether
// or not topics.truncateEvents publishes it, a key-changing update (delete + create) counts once,
// a change of an unselected table counts too. A transactional logical decoding message counts too
// (it is part of the transaction whether or not it is published). A position is only ever stored
// between messages.
import type { ChangeEvent, Relation, Row } from '../change/event.ts';
import type { Lsn } from '../postgres/lsn.ts';
import type { PgoutputMessage } from '../postgres/replication/pgoutput.ts';

/** A position inside a transaction: the change messages below `seq` are handled (durable, or skipped). */
export interface TxPosition {
  commitLsn: Lsn;
  seq: number;
}

type Dml = Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;
type Begin = Extract<PgoutputMessage, { tag: 'begin' }>;
type Commit = Extract<PgoutputMessage, { tag: 'commit' }>;
type Message = Extract<PgoutputMessage, { tag: 'message' }>;

interface OpenTransaction {
  commitLsn: Lsn;
  xid: number;
  commitTimeMicros: bigint;
  seq: number;
  /** Change messages below this seq were durable before a restart: skip them (no duplicates). */
  skipBelow: number;
}

export interface TransactionOptions {
  /** Where the previous run stopped inside a transaction (from the stored offset). */
  resume: TxPosition | null;
  /** Emit 't' events for TRUNCATE (topics.truncateEvents). */
  truncateEvents: boolean;
  /** Whether changes of this relation are captured (the selection). */
  selected: (relation: Relation) => boolean;
  /** Each selected change skipped on resume (it was published before): the transaction metadata counts it. */
  onSkipped?: (event: ChangeEvent) => void;
}

/** The transaction a transactional message belongs to, and whether it was handled before a restart. */
export interface MessageContext {
  xid: number;
  commitLsn: Lsn;
  commitTimeMicros: bigint;
  skip: boolean;
}

export class Transactions {
  #opts: TransactionOptions;
  #relations = new Map<number, Relation>();
  #tx: OpenTransaction | null = null;

  constructor(opts: TransactionOptions) {
    this.#opts = opts;
  }

  /**
   * The open transaction's position (every change below seq handed out, or durable before a
   * restart); null between transactions. Never behind the resumed position: while a replayed
   * transaction's durable prefix is skipped, the end of that prefix is the position. Storing the
   * count skipped so far instead moved the stored offset back, and a crash then published again
   * what Kafka already had (the exactly-once test's 200,000-row transaction caught it).
   */
  get open(): TxPosition | null {
    const tx = this.#tx;
    return tx ? { commitLsn: tx.commitLsn, seq: Math.max(tx.seq, tx.skipBelow) } : null;
  }

  /**
   * True while the open transaction is replaying its durable prefix: no message of it has been
   * handed out since the restart, so there is no new position to store.
   */
  get replaying(): boolean {
    return this.#tx !== null && this.#tx.seq <= this.#tx.skipBelow;
  }

  /** The open transaction's xid; null between transactions. */
  get xid(): number | null {
    return this.#tx?.xid ?? null;
  }

  /** A relation as the pipeline enriched it (types loaded, keys decided); later changes use it. */
  relation(relation: Relation): void {
    this.#relations.set(relation.oid, relation);
  }

  begin(msg: Begin): void {
    const resume = this.#opts.resume;
    this.#tx = {
      commitLsn: msg.finalLsn,
      xid: msg.xid,
      commitTimeMicros: msg.commitTimeMicros,
      seq: 0,
      skipBelow: resume && resume.commitLsn === msg.finalLsn ? resume.seq : 0,
    };
  }

  /**
   * The change events of one DML message that are to be published, each with the message's seq.
   * Messages of unselected tables and messages already durable before a restart are counted, not
   * returned.
   */
  changes(msg: Dml, walStart: Lsn): ChangeEvent[] {
    const tx = this.#tx;
    if (!tx) throw new Error(`pgoutput ${msg.tag} outside a transaction`);
    const seq = tx.seq++;
    const skip = seq < tx.skipBelow;
    if (skip && !this.#opts.onSkipped) return [];
    const out: ChangeEvent[] = [];
    for (const event of changeEvents(msg, this.#relations, tx, walStart, this.#opts.truncateEvents)) {
      if (!this.#opts.selected(event.relation)) continue;
      if (skip) {
        this.#opts.onSkipped!(event);
        continue;
      }
      event.seq = seq;
      out.push(event);
    }
    return out;
  }

  /**
   * A logical decoding message: a transactional one takes a seq like a change (null when it is
   * not transactional, or arrives outside a transaction).
   */
  message(msg: Message): MessageContext | null {
    const tx = this.#tx;
    if (!msg.transactional || !tx) return null;
    const seq = tx.seq++;
    return {
      xid: tx.xid,
      commitLsn: tx.commitLsn,
      commitTimeMicros: tx.commitTimeMicros,
      skip: seq < tx.skipBelow,
    };
  }

  /** Ends the transaction: the position after it is its end LSN. */
  commit(msg: Commit): { endLsn: Lsn; commitTimeMicros: bigint } {
    this.#tx = null;
    return { endLsn: msg.endLsn, commitTimeMicros: msg.commitTimeMicros };
  }
}

/** The change events of one DML message; an update that changes the key becomes delete + create, as in Debezium. */
function changeEvents(
  msg: Dml,
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
    // Each half names the other key (Debezium's __debezium.newkey / __debezium.oldkey headers).
    return [
      { ...base, op: 'd', relation, before: msg.before, after: null, newKeyRow: msg.after },
      { ...base, op: 'c', relation, before: null, after: msg.after, oldKeyRow: msg.before },
    ];
  }
  return [
    { ...base, op: 'u', relation, before: msg.beforeKind === 'old' ? msg.before : null, after: msg.after },
  ];
}

function keyChanged(relation: Relation, before: Row, after: Row): boolean {
  return relation.columns.some((c, i) => c.isKey && before[i] !== after[i]);
}
