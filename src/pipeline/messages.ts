// Logical decoding messages (pg_logical_emit_message), which pgoutput sends with messages 'true':
// what each one is to the pipeline. pgcdc's own heartbeats (src/worker/wal-guard.ts) are never
// published: a non-transactional one is a position, passed by the same rule as a keepalive (the
// slot moves to it once nothing of ours is open and everything pushed is durable). Other messages
// become op 'm' events on <prefix>.message only with topics.messageEvents, and only for the
// prefixes in topics.messagePrefixes when that list is set.
import type { LogicalDecodingMessage } from '../postgres/replication/pgoutput.ts';
import { parseTableEntries, type TableRef } from '../config/tables.ts';

/** The prefix of pgcdc's heartbeat messages. */
export const HEARTBEAT_PREFIX = 'pgcdc-heartbeat';

/** The prefix of the chunked load's watermarks (src/pipeline/chunked-load.ts). */
export const WATERMARK_PREFIX = 'pgcdc-watermark';

/** The prefix of signals to pgcdc (pg_logical_emit_message(true, 'pgcdc', '{...}')). */
export const SIGNAL_PREFIX = 'pgcdc';

export type MessageAction = 'heartbeat' | 'watermark' | 'signal' | 'publish' | 'ignore';

export interface MessageOptions {
  messageEvents?: boolean;
  messagePrefixes?: string[];
}

export function messageAction(msg: LogicalDecodingMessage, opts: MessageOptions): MessageAction {
  if (msg.prefix === HEARTBEAT_PREFIX) return 'heartbeat';
  if (msg.prefix === WATERMARK_PREFIX) return 'watermark';
  if (msg.prefix === SIGNAL_PREFIX) return 'signal';
  if (!opts.messageEvents) return 'ignore';
  const prefixes = opts.messagePrefixes ?? [];
  return prefixes.length === 0 || prefixes.includes(msg.prefix) ? 'publish' : 'ignore';
}

export const messageTopic = (prefix: string): string => `${prefix}.message`;
export const transactionTopic = (prefix: string): string => `${prefix}.transaction`;

export type Signal =
  | { kind: 'execute-snapshot'; tables: TableRef[]; filters: Record<string, string> }
  | { kind: 'stop-snapshot' };

/**
 * A signal in Debezium's format: {"type": "execute-snapshot", "data": {"data-collections":
 * ["public.t"], "additional-conditions": [{"data-collection": "public.t", "filter": "id > 10"}]}}
 * or {"type": "stop-snapshot"}; "connector": "<name>" addresses one connector when several read
 * the database (absent: every one). Null: not for this connector. Throws with one line on a
 * malformed signal.
 */
export function parseSignal(text: string, connector: string): Signal | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error('not JSON');
  }
  const o = (v ?? {}) as { type?: unknown; connector?: unknown; data?: Record<string, unknown> };
  if (o.connector !== undefined && o.connector !== connector) return null;
  if (o.type === 'stop-snapshot') return { kind: 'stop-snapshot' };
  if (o.type !== 'execute-snapshot')
    throw new Error(`unknown signal type ${JSON.stringify(o.type)} (execute-snapshot or stop-snapshot)`);
  const collections = o.data?.['data-collections'];
  if (!Array.isArray(collections) || collections.some((c) => typeof c !== 'string'))
    throw new Error('execute-snapshot needs data["data-collections"]: a list of schema.table names');
  const filters: Record<string, string> = {};
  const conditions = o.data?.['additional-conditions'] ?? [];
  if (!Array.isArray(conditions)) throw new Error('data["additional-conditions"] must be a list');
  for (const c of conditions as Array<Record<string, unknown>>) {
    if (typeof c['data-collection'] !== 'string' || typeof c.filter !== 'string')
      throw new Error('each additional condition needs "data-collection" and "filter" strings');
    const [t] = tablesOf([c['data-collection']]);
    filters[`${t!.schema}.${t!.table}`] = c.filter;
  }
  return { kind: 'execute-snapshot', tables: tablesOf(collections as string[]), filters };
}

function tablesOf(names: string[]): TableRef[] {
  const { tables, problems } = parseTableEntries(names);
  if (problems.length > 0) throw new Error(problems.join('; '));
  return tables;
}
