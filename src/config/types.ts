// The loaded, validated configuration. Field meanings: docs/configuration.md (and src/config/schema.ts).
import type { TableRef } from './tables.ts';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
export type SnapshotMode = 'initial' | 'never' | 'always' | 'initial_only' | 'when_needed';
export type SaslMechanism = 'none' | 'plain' | 'scram-sha-256' | 'scram-sha-512';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Optional string settings are undefined when unset (an empty string counts as unset). */
export interface PgcdcConfig {
  name: string;
  postgres: {
    host: string;
    port: number;
    database: string;
    user: string;
    /** Sensitive. '' when not set. */
    password: string;
    schemas: string[];
    sslmode: SslMode;
    /** File path, inline PEM or base64 PEM (as configured). */
    sslRootCert?: string;
    sslCert?: string;
    /** Sensitive. */
    sslKey?: string;
    /** Sensitive. */
    sslKeyPassword?: string;
    connectTimeoutMs: number;
    replicationTimeoutMs: number;
  };
  ssh: {
    enabled: boolean;
    /** Set when enabled. */
    host?: string;
    port: number;
    /** Set when enabled. */
    user?: string;
    /** Sensitive. Base64 of the PEM/OpenSSH key text, as configured (validated to decode to a private key). Set when enabled. */
    privateKey?: string;
    /** Sensitive. */
    passphrase?: string;
    /** SHA256:<base64> as printed by ssh-keygen -lf. When enabled, either this or acceptUnknownHostKey. */
    hostKeyFingerprint?: string;
    acceptUnknownHostKey: boolean;
  };
  publication: { name: string; autoCreate: boolean };
  slot: {
    name: string;
    dropOnStop: boolean;
    /** FAILOVER true at creation on PostgreSQL 17+. */
    failover?: boolean;
  };
  snapshot: {
    mode: SnapshotMode;
    batchSize: number;
    method: 'chunked' | 'exported';
    chunkBytes: number;
    parallelism: number;
  };
  tables: {
    /** Parsed from the configured list; empty means every table in postgres.schemas. */
    include: TableRef[];
    exclude: TableRef[];
  };
  /** logical: pgoutput through a slot; xmin: polling by the xmin system column (docs/xmin.md). */
  capture: {
    method: 'logical' | 'xmin';
    xmin: { pollIntervalMs: number; chunkRows: number; chunkBytes: number };
  };
  topics: {
    prefix: string;
    partitions: number;
    /** -1: the broker's default. */
    replicationFactor: number;
    tombstonesOnDelete: boolean;
    truncateEvents: boolean;
    /** op 'm' events for logical decoding messages (<prefix>.message). */
    messageEvents: boolean;
    /** Prefixes published as op 'm'; empty: every prefix. */
    messagePrefixes: string[];
    /** BEGIN/END on <prefix>.transaction and the transaction block in changes. */
    transactionMetadata: boolean;
  };
  kafka: {
    brokers: string[];
    clientId: string;
    maxInFlightBytes: number;
    maxInFlightRecords: number;
    ssl: { enabled: boolean; ca?: string; cert?: string; /** Sensitive. */ key?: string };
    sasl: { mechanism: SaslMechanism; username?: string; /** Sensitive. */ password?: string };
    compression: 'none' | 'gzip';
  };
  registry: {
    url: string;
    username?: string;
    /** Sensitive. */
    password?: string;
    /** Sensitive (bearer token). */
    token?: string;
    ca?: string;
  };
  delivery: { mode: 'at-least-once' | 'exactly-once'; transactionMs: number; transactionMaxBytes: number };
  offsets: { topic: string; commitIntervalMs: number; statusIntervalMs: number };
  avro: {
    toastPlaceholder: string;
    decimalHandling: 'precise' | 'string' | 'double';
    binaryHandling: 'bytes' | 'base64' | 'hex';
    timePrecision: 'adaptive' | 'adaptive_time_microseconds' | 'micros' | 'millis';
    typeMode: 'debezium' | 'avro';
    arrayHandling: 'array' | 'string';
  };
  http: {
    port: number;
    host: string;
    mutations: boolean;
    auth: {
      /** Sensitive. */
      token?: string;
      /** Sensitive. */
      readToken?: string;
      username?: string;
      /** Sensitive. */
      password?: string;
      protectReads: boolean;
      protectProbes: boolean;
    };
    tls: {
      cert?: string;
      /** Sensitive. */ key?: string;
      clientCa?: string;
      clientCertRole: 'operator' | 'read';
    };
  };
  log: { level: LogLevel; format: 'json' | 'pretty' | 'auto' };
  heartbeat: {
    intervalMs: number;
    query?: string;
    /** The WAL budget (src/worker/wal-guard.ts): warning and critical levels of retained WAL, 0 = off. */
    walWarnBytes: number;
    walCriticalBytes: number;
    walCriticalAction: 'warn' | 'stop';
  };
}
