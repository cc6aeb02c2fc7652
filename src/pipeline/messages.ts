// Logical decoding messages (pg_logical_emit_message), which pgoutput sends with messages 'true':
// what each one is to the pipeline. pgcdc's own heartbeats (src/worker/wal-guard.ts) are never
// published: a non-transactional one is a position, passed by the same rule as a keepalive (the
// slot moves to it once nothing of ours is open and everything pushed is durable). Other messages
// become op 'm' events on <prefix>.message only with topics.messageEvents, and only for the
// prefixes in topics.messagePrefixes when that list is set.
import type { LogicalDecodingMessage } from '../postgres/replication/pgoutput.ts';

/** The prefix of pgcdc's heartbeat messages. */
export const HEARTBEAT_PREFIX = 'pgcdc-heartbeat';

/** The prefix of the chunked load's watermarks (src/pipeline/chunked-load.ts). */
export const WATERMARK_PREFIX = 'pgcdc-watermark';

export type MessageAction = 'heartbeat' | 'watermark' | 'publish' | 'ignore';

export interface MessageOptions {
  messageEvents?: boolean;
  messagePrefixes?: string[];
}

export function messageAction(msg: LogicalDecodingMessage, opts: MessageOptions): MessageAction {
  if (msg.prefix === HEARTBEAT_PREFIX) return 'heartbeat';
  if (msg.prefix === WATERMARK_PREFIX) return 'watermark';
  if (!opts.messageEvents) return 'ignore';
  const prefixes = opts.messagePrefixes ?? [];
  return prefixes.length === 0 || prefixes.includes(msg.prefix) ? 'publish' : 'ignore';
}

export const messageTopic = (prefix: string): string => `${prefix}.message`;
export const transactionTopic = (prefix: string): string => `${prefix}.transaction`;
