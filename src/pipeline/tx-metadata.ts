// Debezium's provide.transaction.metadata (topics.transactionMetadata), pure: which BEGIN/END
// boundaries a transaction gets and the transaction block {id, total_order, data_collection_order}
// of each of its changes. The connector pushes BEGIN just before the transaction's first
// published change and END just after its last, through the same sink, so both are ordered with
// the changes and covered by the same position rule.
//
// The id is `<xid>:<commit LSN>` (decimal), as Debezium's PostgreSQL connector writes `txId:LSN`;
// pgcdc uses the commit LSN for BEGIN, END and every change alike, so all records of one
// transaction carry one id (and BEGIN/END, keyed by it, land on one partition).
//
// Restarts: a restart inside a transaction skips the changes that were durable before it
// (transactions.ts); those are counted here through skipped(), so the orders and END's counts
// stay exact and BEGIN, which went out before them, is not sent again. A crash before any position
// inside the transaction was stored replays the whole transaction, BEGIN included: at-least-once,
// as for the changes themselves (Debezium repeats them too).
import type { Relation } from '../change/event.ts';
import type { TransactionBoundary } from '../avro/metadata.ts';
import type { Lsn } from '../postgres/lsn.ts';

export interface TransactionBlock {
  id: string;
  totalOrder: bigint;
  dataCollectionOrder: bigint;
}

interface Open {
  id: string;
  commitTimeMicros: bigint;
  total: number;
  perCollection: Map<string, number>;
}

export const transactionId = (xid: number, commitLsn: Lsn): string => `${xid}:${commitLsn}`;

export class TransactionMetadata {
  #tx: Open | null = null;

  begin(xid: number, commitLsn: Lsn, commitTimeMicros: bigint): void {
    this.#tx = { id: transactionId(xid, commitLsn), commitTimeMicros, total: 0, perCollection: new Map() };
  }

  /** A change that was published before a restart: counted, no BEGIN for it. */
  skipped(relation: Relation): void {
    this.#count(relation);
  }

  /** A change about to be published: its block, and the BEGIN to push first when it is the first one. */
  event(relation: Relation): { begin: TransactionBoundary | null; block: TransactionBlock } {
    const tx = this.#tx;
    if (!tx) throw new Error('transaction metadata: a change outside a transaction');
    const first = tx.total === 0;
    const collectionOrder = this.#count(relation);
    return {
      begin: first ? boundary(tx, 'BEGIN') : null,
      block: { id: tx.id, totalOrder: BigInt(tx.total), dataCollectionOrder: BigInt(collectionOrder) },
    };
  }

  /** Ends the transaction: its END, or null when nothing of it was published (no BEGIN either). */
  end(): TransactionBoundary | null {
    const tx = this.#tx;
    this.#tx = null;
    return tx && tx.total > 0 ? boundary(tx, 'END') : null;
  }

  #count(relation: Relation): number {
    const tx = this.#tx!;
    const name = `${relation.schema}.${relation.table}`;
    const n = (tx.perCollection.get(name) ?? 0) + 1;
    tx.perCollection.set(name, n);
    tx.total++;
    return n;
  }
}

function boundary(tx: Open, status: 'BEGIN' | 'END'): TransactionBoundary {
  return {
    status,
    id: tx.id,
    eventCount: status === 'END' ? tx.total : null,
    dataCollections:
      status === 'END'
        ? [...tx.perCollection].map(([dataCollection, eventCount]) => ({ dataCollection, eventCount }))
        : null,
    tsMs: tx.commitTimeMicros / 1000n,
  };
}
