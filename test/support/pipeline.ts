// Helpers for pipeline tests: a connector configured for the local stack, and a reader that
// takes a topic from its beginning to its end and decodes every record with the registry.
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import avro from 'avsc';
import pg from 'pg';
import type { PgcdcConfig } from '../../src/config/types.ts';
import { loadConfig } from '../../src/config/load.ts';
import { defaultSlotName } from '../../src/config/names.ts';

export interface StackSettings {
  pgHost: string;
  pgPort: number;
  pgUser: string;
  pgPassword: string;
  pgDatabase: string;
  brokers: string;
  registryUrl: string;
}

export function stackSettings(env: NodeJS.ProcessEnv = process.env): StackSettings {
  const need = (k: string): string => {
    const v = env[k];
    if (!v)
      throw new Error(`${k} is not set: the local stack is not running (run ./dev stack up, or ./dev test)`);
    return v;
  };
  return {
    pgHost: need('PGCDC_PG_HOST'),
    pgPort: Number(need('PGCDC_PG_PORT')),
    pgUser: need('PGCDC_PG_USER'),
    pgPassword: need('PGCDC_PG_PASSWORD'),
    pgDatabase: need('PGCDC_PG_DATABASE'),
    brokers: need('PGCDC_KAFKA_BROKERS'),
    registryUrl: need('PGCDC_REGISTRY_URL'),
  };
}

/** Slots of the connectors this process configured: dropped by dropTestSlots(). */
const slotNames = new Set<string>();

/** Drops the (inactive) replication slots of every connector this test file configured. */
export async function dropTestSlots(): Promise<void> {
  const client = await pgClient();
  try {
    for (const slot of slotNames) {
      await client.query(
        'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active',
        [slot],
      );
    }
  } finally {
    await client.end();
  }
}

/** Environment variables that configure a pgcdc worker for the local stack (as a user would). */
export function workerEnv(name: string, extra: Record<string, string> = {}): Record<string, string> {
  slotNames.add(extra.PGCDC_SLOT_NAME ?? defaultSlotName(name));
  const s = stackSettings();
  return {
    PGCDC_NAME: name,
    PGCDC_POSTGRES_HOST: s.pgHost,
    PGCDC_POSTGRES_PORT: String(s.pgPort),
    PGCDC_POSTGRES_USER: s.pgUser,
    PGCDC_POSTGRES_PASSWORD: s.pgPassword,
    PGCDC_POSTGRES_DATABASE: s.pgDatabase,
    PGCDC_POSTGRES_SSLMODE: 'disable',
    PGCDC_KAFKA_BROKERS: s.brokers,
    PGCDC_REGISTRY_URL: s.registryUrl,
    PGCDC_OFFSETS_TOPIC: `${name}-offsets`,
    PGCDC_OFFSETS_COMMIT_INTERVAL_MS: '200',
    PGCDC_LOG_LEVEL: 'warn',
    ...extra,
  };
}

export function workerConfig(name: string, extra: Record<string, string> = {}): PgcdcConfig {
  return loadConfig({ env: workerEnv(name, extra) });
}

/** A client for the stack's database as its superuser, not yet connected. */
export function newPgClient(extra: pg.ClientConfig = {}): pg.Client {
  const s = stackSettings();
  return new pg.Client({
    host: s.pgHost,
    port: s.pgPort,
    user: s.pgUser,
    password: s.pgPassword,
    database: s.pgDatabase,
    ...extra,
  });
}

export async function pgClient(): Promise<pg.Client> {
  const client = newPgClient();
  await client.connect();
  return client;
}

/**
 * A connected client that returns every value as PostgreSQL's text output (no parsing by
 * node-pg), as pgcdc's own clients read the catalog; `options`: session settings (`-c k=v`).
 */
export async function textPgClient(options?: string): Promise<pg.Client> {
  const client = newPgClient({
    ...(options ? { options } : {}),
    types: { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig,
  });
  await client.connect();
  return client;
}

export const uniqueName = (prefix: string): string => `${prefix}_${randomUUID().slice(0, 8)}`;

export interface DecodedRecord {
  partition: number;
  offset: string;
  key: Record<string, unknown> | null;
  /** null for a tombstone. */
  value: Envelope | null;
}

export interface Envelope {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: Record<string, unknown>;
  op: string;
  ts_ms: number | null;
}

/**
 * A consumer's own Avro long: bigint, so int8 values beyond 2^53 decode exactly. Written here,
 * independently of pgcdc's encoder, like any registry-driven consumer would.
 */
const exactLong = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigInt64LE(),
  toBuffer: (n: bigint) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(n);
    return buf;
  },
  fromJSON: BigInt,
  toJSON: Number,
  isValid: (n: unknown) => typeof n === 'bigint',
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

/** Avro decimal (two's complement bytes + scale from the schema) as exact decimal text, e.g. "12.50". */
class DecimalText extends avro.types.LogicalType {
  readonly scale: number;
  constructor(schema: avro.Schema, opts?: avro.ForSchemaOptions) {
    super(schema, opts);
    this.scale = (schema as { scale?: number }).scale ?? 0;
  }
  override _fromValue(buf: Buffer): string {
    let n = 0n;
    for (const b of buf) n = (n << 8n) | BigInt(b);
    if (buf.length > 0 && (buf[0]! & 0x80) !== 0) n -= 1n << BigInt(buf.length * 8);
    const digits = (n < 0n ? -n : n).toString().padStart(this.scale + 1, '0');
    const text = this.scale > 0 ? `${digits.slice(0, -this.scale)}.${digits.slice(-this.scale)}` : digits;
    return n < 0n ? `-${text}` : text;
  }
  override _toValue(): never {
    throw new Error('read-only');
  }
}

/** Decodes Confluent-framed Avro with nothing but the schema registry's REST API and avsc. */
export class RegistryDecoder {
  #url: string;
  #types = new Map<number, Promise<avro.Type>>();

  constructor(url: string) {
    this.#url = url;
  }

  async decode(frame: Buffer): Promise<unknown> {
    if (frame[0] !== 0) throw new Error(`not Confluent wire format (magic byte ${frame[0]})`);
    const id = frame.readInt32BE(1);
    let type = this.#types.get(id);
    if (!type) {
      type = fetch(`${this.#url}/schemas/ids/${id}`)
        .then((r) => r.json() as Promise<{ schema: string }>)
        .then((body) =>
          avro.Type.forSchema(JSON.parse(body.schema) as avro.Schema, {
            logicalTypes: { decimal: DecimalText },
            typeHook: (schema) => {
              const t = typeof schema === 'string' ? schema : (schema as { type?: unknown }).type;
              return t === 'long' ? exactLong : undefined;
            },
          }),
        );
      this.#types.set(id, type);
    }
    return (await type).fromBuffer(frame.subarray(5));
  }
}

export class TopicReader {
  readonly kafka: Kafka;
  readonly registry: RegistryDecoder;

  constructor() {
    const s = stackSettings();
    this.kafka = new Kafka({
      brokers: s.brokers.split(','),
      clientId: 'pgcdc-test-reader',
      logLevel: logLevel.NOTHING,
    });
    this.registry = new RegistryDecoder(s.registryUrl);
  }

  /** Every record of the topic from the beginning to its current end, decoded. [] when the topic does not exist. */
  async read(topic: string): Promise<DecodedRecord[]> {
    const admin = this.kafka.admin();
    await admin.connect();
    let ends: Map<number, bigint>;
    try {
      if (!(await admin.listTopics()).includes(topic)) return [];
      const offsets = await admin.fetchTopicOffsets(topic);
      ends = new Map(
        offsets.filter((o) => BigInt(o.high) > BigInt(o.low)).map((o) => [o.partition, BigInt(o.high)]),
      );
    } finally {
      await admin.disconnect();
    }
    if (ends.size === 0) return [];
    const raw: Array<{ partition: number; offset: string; key: Buffer | null; value: Buffer | null }> = [];
    const consumer = this.kafka.consumer({ groupId: `pgcdc-test-${randomUUID()}` });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        consumer
          .run({
            autoCommit: false,
            eachMessage: async ({ partition, message }) => {
              raw.push({ partition, offset: message.offset, key: message.key, value: message.value });
              const end = ends.get(partition);
              if (end !== undefined && BigInt(message.offset) + 1n >= end) ends.delete(partition);
              if (ends.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }
    raw.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
    const out: DecodedRecord[] = [];
    for (const r of raw) {
      out.push({
        partition: r.partition,
        offset: r.offset,
        key: r.key ? ((await this.registry.decode(r.key)) as Record<string, unknown>) : null,
        value: r.value ? ((await this.registry.decode(r.value)) as Envelope) : null,
      });
    }
    return out;
  }
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs` with `what`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** Replays a topic per key (last value wins, a tombstone deletes): what a compacted topic converges to. */
export function replayByKey(
  records: DecodedRecord[],
  keyOf: (k: Record<string, unknown>) => string,
): Map<string, Record<string, unknown>> {
  const state = new Map<string, Record<string, unknown>>();
  for (const r of records) {
    if (!r.key) continue;
    const k = keyOf(r.key);
    if (r.value === null || r.value.op === 'd') state.delete(k);
    else if (r.value.after) state.set(k, r.value.after);
  }
  return state;
}

/** The connector settings that point a worker at a matrix server instead of the stack's. */
export function serverEnv(s: {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}): Record<string, string> {
  return {
    PGCDC_POSTGRES_HOST: s.host,
    PGCDC_POSTGRES_PORT: String(s.port),
    PGCDC_POSTGRES_USER: s.user,
    PGCDC_POSTGRES_PASSWORD: s.password,
    PGCDC_POSTGRES_DATABASE: s.database,
  };
}
