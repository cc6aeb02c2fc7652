// Access to the local stack (npm run stack -- up) for integration tests.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { Kafka, logLevel, type KafkaConfig } from 'kafkajs';
import pg from 'pg';
import { STACK_ENV_KEYS, type StackEnv } from '../../deploy/local/state.ts';

export type { StackEnv };

const envJson = path.resolve(import.meta.dirname, '..', '..', '.stack', 'env.json');

/** The stack's coordinates: from PGCDC_* variables if set (scripts/test.ts exports them), else .stack/env.json. */
export function stackEnvSync(): StackEnv {
  const fromProcess = Object.fromEntries(STACK_ENV_KEYS.map((k) => [k, process.env[k]]));
  if (STACK_ENV_KEYS.every((k) => fromProcess[k])) return fromProcess as unknown as StackEnv;
  try {
    const fromFile = JSON.parse(fs.readFileSync(envJson, 'utf8')) as Partial<StackEnv>;
    if (STACK_ENV_KEYS.every((k) => typeof fromFile[k] === 'string')) return fromFile as StackEnv;
  } catch {
    // fall through
  }
  throw new Error('local stack is not running: run ./dev stack up');
}

export async function stackEnv(): Promise<StackEnv> {
  return stackEnvSync();
}

export interface PgClientOptions extends Omit<pg.ClientConfig, 'ssl'> {
  /** Connect with TLS, verifying the server against the stack's CA (and its hostname/IP). */
  tls?: boolean;
  /** Authenticate with the stack's client certificate as role pgcdc_cert (implies tls). */
  clientCert?: boolean;
  /** 'database': a logical replication (walsender) connection; pg supports it, @types/pg omits it. */
  replication?: 'database';
}

/** A connected pg.Client for the stack: database pgcdc, superuser, unless `opts` says otherwise. */
export async function pgClient(opts: PgClientOptions = {}): Promise<pg.Client> {
  const env = stackEnvSync();
  const { tls, clientCert, ...config } = opts;
  const ssl =
    tls || clientCert
      ? {
          ca: fs.readFileSync(env.PGCDC_PG_SSL_CA, 'utf8'),
          rejectUnauthorized: true,
          ...(clientCert
            ? {
                cert: fs.readFileSync(env.PGCDC_PG_SSL_CLIENT_CERT, 'utf8'),
                key: fs.readFileSync(env.PGCDC_PG_SSL_CLIENT_KEY, 'utf8'),
              }
            : {}),
        }
      : false;
  const client = new pg.Client({
    host: env.PGCDC_PG_HOST,
    port: Number(env.PGCDC_PG_PORT),
    database: env.PGCDC_PG_DATABASE,
    connectionTimeoutMillis: 5000,
    ...(clientCert ? { user: 'pgcdc_cert' } : { user: env.PGCDC_PG_USER, password: env.PGCDC_PG_PASSWORD }),
    ...config,
    ssl,
  });
  await client.connect();
  return client;
}

/** A kafkajs client for the stack's broker (quiet logs, short connection timeout). */
export function kafka(config: Partial<KafkaConfig> = {}): Kafka {
  const env = stackEnvSync();
  return new Kafka({
    clientId: 'pgcdc-test',
    brokers: env.PGCDC_KAFKA_BROKERS.split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    ...config,
  });
}

/** A Confluent-schema-registry client pointed at Apicurio's ccompat API. */
export function registry(): SchemaRegistry {
  const env = stackEnvSync();
  return new SchemaRegistry({ host: env.PGCDC_REGISTRY_URL });
}

/** A name no other test (or earlier run) uses: safe for topics, tables, slots, subjects. */
export function uniqueName(prefix: string): string {
  const clean = prefix.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return `${clean}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}
