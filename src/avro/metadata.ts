// The Avro schemas and values of the two non-table topics Debezium consumers know: logical
// decoding messages (op 'm' on <prefix>.message) and transaction boundaries (BEGIN/END on
// <prefix>.transaction, provide.transaction.metadata). Names as Kafka Connect's AvroData writes
// Debezium 3.x's Connect schemas, so the same converters read them.
import type { Lsn } from '../postgres/lsn.ts';
import { CONNECTOR, PGCDC_VERSION, avroTypeForSchema, sourceSchema } from './envelope.ts';
import type { AvroSchemaObject } from './types.ts';

const optionalLong = (name: string): Record<string, unknown> => ({
  name,
  type: ['null', 'long'],
  default: null,
});

export const MESSAGE_KEY_SCHEMA: AvroSchemaObject = {
  type: 'record',
  name: 'MessageKey',
  namespace: 'io.debezium.connector.postgresql',
  fields: [{ name: 'prefix', type: ['null', 'string'], default: null }],
  'connect.name': 'io.debezium.connector.postgresql.MessageKey',
};

export const MESSAGE_VALUE_SCHEMA: AvroSchemaObject = {
  type: 'record',
  name: 'MessageValue',
  namespace: 'io.debezium.connector.postgresql',
  fields: [
    { name: 'op', type: 'string' },
    optionalLong('ts_ms'),
    optionalLong('ts_us'),
    optionalLong('ts_ns'),
    { name: 'source', type: sourceSchema() },
    {
      name: 'message',
      type: [
        'null',
        {
          type: 'record',
          name: 'Message',
          namespace: 'io.debezium.connector.postgresql',
          fields: [
            { name: 'prefix', type: ['null', 'string'], default: null },
            { name: 'content', type: ['null', 'bytes'], default: null },
          ],
          'connect.name': 'io.debezium.connector.postgresql.Message',
        },
      ],
      default: null,
    },
  ],
  'connect.name': 'io.debezium.connector.postgresql.MessageValue',
};

export const TRANSACTION_KEY_SCHEMA: AvroSchemaObject = {
  type: 'record',
  name: 'TransactionMetadataKey',
  namespace: 'io.debezium.connector.common',
  fields: [{ name: 'id', type: 'string' }],
  'connect.name': 'io.debezium.connector.common.TransactionMetadataKey',
};

export const TRANSACTION_VALUE_SCHEMA: AvroSchemaObject = {
  type: 'record',
  name: 'TransactionMetadataValue',
  namespace: 'io.debezium.connector.common',
  fields: [
    { name: 'status', type: 'string' },
    { name: 'id', type: 'string' },
    optionalLong('event_count'),
    {
      name: 'data_collections',
      type: [
        'null',
        {
          type: 'array',
          items: {
            type: 'record',
            name: 'collection',
            namespace: 'event',
            fields: [
              { name: 'data_collection', type: 'string' },
              { name: 'event_count', type: 'long' },
            ],
            'connect.name': 'event.collection',
          },
        },
      ],
      default: null,
    },
    { name: 'ts_ms', type: 'long' },
  ],
  'connect.name': 'io.debezium.connector.common.TransactionMetadataValue',
};

export const messageKeyType = avroTypeForSchema(MESSAGE_KEY_SCHEMA);
export const messageValueType = avroTypeForSchema(MESSAGE_VALUE_SCHEMA);
export const transactionKeyType = avroTypeForSchema(TRANSACTION_KEY_SCHEMA);
export const transactionValueType = avroTypeForSchema(TRANSACTION_VALUE_SCHEMA);

export interface MessageInput {
  transactional: boolean;
  lsn: Lsn;
  prefix: string;
  content: Buffer;
  /** The enclosing transaction's xid and commit (transactional messages only). */
  xid: number | null;
  commitLsn: Lsn | null;
  commitTimeMicros: bigint | null;
}

/** An op 'm' value. A non-transactional message has no commit: its source time is when pgcdc read it. */
export function messageValue(
  m: MessageInput,
  server: { name: string; database: string },
  nowMs: number = Date.now(),
): Record<string, unknown> {
  const now = BigInt(nowMs);
  const micros = m.commitTimeMicros ?? now * 1000n;
  return {
    op: 'm',
    ts_ms: now,
    ts_us: now * 1000n,
    ts_ns: now * 1_000_000n,
    source: {
      version: PGCDC_VERSION,
      connector: CONNECTOR,
      name: server.name,
      ts_ms: micros / 1000n,
      snapshot: 'false',
      db: server.database,
      sequence: `["${m.commitLsn ?? m.lsn}","${m.lsn}"]`,
      ts_us: micros,
      ts_ns: micros * 1000n,
      // Debezium leaves both empty for a message: it belongs to no table.
      schema: '',
      table: '',
      txId: m.xid === null ? null : BigInt(m.xid),
      lsn: m.lsn,
      xmin: null,
    },
    message: { prefix: m.prefix, content: m.content },
  };
}

export interface TransactionBoundary {
  status: 'BEGIN' | 'END';
  id: string;
  /** END only. */
  eventCount: number | null;
  /** END only: events per `<schema>.<table>`, in first-seen order. */
  dataCollections: Array<{ dataCollection: string; eventCount: number }> | null;
  tsMs: bigint;
}

export function transactionValue(t: TransactionBoundary): Record<string, unknown> {
  return {
    status: t.status,
    id: t.id,
    event_count: t.eventCount === null ? null : BigInt(t.eventCount),
    data_collections:
      t.dataCollections?.map((d) => ({
        data_collection: d.dataCollection,
        event_count: BigInt(d.eventCount),
      })) ?? null,
    ts_ms: t.tsMs,
  };
}
