// What the pipeline needs from the configuration. The config module's PgcdcConfig satisfies it;
// keeping the pipeline's view narrow keeps its tests small.
import type { PostgresSettings } from '../postgres/connection.ts';
import type { KafkaSettings } from '../kafka/client.ts';
import type { RegistrySettings } from '../registry/registry.ts';
import type { TableRef } from '../postgres/catalog.ts';
import type { SshSettings } from '../tunnel/ssh.ts';
import type { AvroOptions } from '../avro/types.ts';

export type SnapshotMode = 'initial' | 'never' | 'always' | 'initial_only' | 'when_needed';

export interface PipelineSettings {
  name: string;
  postgres: PostgresSettings & { schemas: string[]; replicationTimeoutMs?: number };
  /** An SSH tunnel for every PostgreSQL connection (src/tunnel). */
  ssh?: SshSettings;
  publication: { name: string; autoCreate: boolean };
  /** dropOnStop: drop the slot after a graceful stop (the next start snapshots again). */
  slot: { name: string; dropOnStop?: boolean; failover?: boolean };
  /**
   * method: chunked (read in key chunks while streaming, the default) or exported (inside the
   * slot's exported snapshot, one point in time). batchSize: rows per chunk / fetch; chunkBytes:
   * the byte budget of a chunk; parallelism: tables read at once.
   */
  snapshot: {
    mode: SnapshotMode;
    batchSize: number;
    method?: 'chunked' | 'exported';
    chunkBytes?: number;
    parallelism?: number;
  };
  tables: { include: TableRef[]; exclude: TableRef[] };
  topics: {
    prefix: string;
    partitions: number;
    replicationFactor: number;
    tombstonesOnDelete: boolean;
    truncateEvents: boolean;
    /** op 'm' events on <prefix>.message (off unless set). */
    messageEvents?: boolean;
    /** Prefixes published as op 'm'; empty or unset: every prefix. */
    messagePrefixes?: string[];
    /** Debezium's provide.transaction.metadata (off unless set). */
    transactionMetadata?: boolean;
  };
  kafka: KafkaSettings & {
    maxInFlightBytes: number;
    maxInFlightRecords?: number;
    compression?: 'none' | 'gzip';
  };
  registry: RegistrySettings;
  /** exactly-once: records and the offset covering them in one Kafka transaction (src/kafka/transactional.ts). */
  delivery?: { mode: 'at-least-once' | 'exactly-once'; transactionMs: number; transactionMaxBytes: number };
  offsets: { topic: string; commitIntervalMs: number; statusIntervalMs: number };
  avro: AvroOptions;
  /** How changes are found: logical decoding (the default) or xmin polling (src/pipeline/xmin.ts). */
  capture?: CaptureSettings;
}

export interface CaptureSettings {
  method: 'logical' | 'xmin';
  xmin: { pollIntervalMs: number; chunkRows: number; chunkBytes: number };
}
