// Persistent state of the local stack (.stack/state.json: ports, generated secrets) and the
// environment it exposes to shells and tests (.stack/env.json).
import fs from 'node:fs';
import path from 'node:path';
import { freePort, readJson, stackDir, writeJson } from './process.ts';

export interface StackPorts {
  postgres?: number;
  kafka?: number;
  kafkaController?: number;
  /** SASL_SSL listener (PLAIN, SCRAM-SHA-256/512) and SSL listener (client certificate required). */
  kafkaSasl?: number;
  kafkaSsl?: number;
  registry?: number;
}

export interface StackState {
  ports: StackPorts;
  pgPassword?: string;
  kafkaClusterId?: string;
  /** Password of the Kafka SASL user (PLAIN and SCRAM). */
  kafkaSaslPassword?: string;
  /** The SCRAM credentials of the SASL user exist in the cluster's metadata. */
  kafkaScramReady?: boolean;
}

/** What tests and shells need to reach the stack. Variable names are the keys. */
export interface StackEnv {
  PGCDC_PG_HOST: string;
  PGCDC_PG_PORT: string;
  PGCDC_PG_USER: string;
  PGCDC_PG_PASSWORD: string;
  PGCDC_PG_DATABASE: string;
  PGCDC_PG_SSL_CA: string;
  PGCDC_PG_SSL_CLIENT_CERT: string;
  PGCDC_PG_SSL_CLIENT_KEY: string;
  PGCDC_KAFKA_BROKERS: string;
  /**
   * SASL_SSL listener: user/password for PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; CA below. (Named
   * apart from pgcdc's own PGCDC_KAFKA_SASL_PASSWORD/PGCDC_KAFKA_SSL_* settings, so an evaluated
   * stack environment configures no worker by accident.)
   */
  PGCDC_KAFKA_SASL_BROKERS: string;
  PGCDC_KAFKA_SASL_USER: string;
  PGCDC_KAFKA_SASL_USER_PASSWORD: string;
  /** SSL listener that requires a client certificate (the PGCDC_PG_SSL_CLIENT_* pair works). */
  PGCDC_KAFKA_TLS_BROKERS: string;
  PGCDC_KAFKA_TLS_CA: string;
  PGCDC_REGISTRY_URL: string;
  PGCDC_STACK_DIR: string;
}

export const STACK_ENV_KEYS = [
  'PGCDC_PG_HOST',
  'PGCDC_PG_PORT',
  'PGCDC_PG_USER',
  'PGCDC_PG_PASSWORD',
  'PGCDC_PG_DATABASE',
  'PGCDC_PG_SSL_CA',
  'PGCDC_PG_SSL_CLIENT_CERT',
  'PGCDC_PG_SSL_CLIENT_KEY',
  'PGCDC_KAFKA_BROKERS',
  'PGCDC_KAFKA_SASL_BROKERS',
  'PGCDC_KAFKA_SASL_USER',
  'PGCDC_KAFKA_SASL_USER_PASSWORD',
  'PGCDC_KAFKA_TLS_BROKERS',
  'PGCDC_KAFKA_TLS_CA',
  'PGCDC_REGISTRY_URL',
  'PGCDC_STACK_DIR',
] as const satisfies readonly (keyof StackEnv)[];

export const stateFile = path.join(stackDir, 'state.json');
export const envFile = path.join(stackDir, 'env.json');
export const tlsDir = path.join(stackDir, 'tls');
export const PG_SUPERUSER = 'postgres';
export const PG_DATABASE = 'pgcdc';
export const PG_CERT_USER = 'pgcdc_cert';
export const KAFKA_SASL_USER = 'pgcdc';

export function loadState(): StackState {
  const state = readJson<StackState>(stateFile);
  return { ...state, ports: { ...state?.ports } };
}

export function saveState(state: StackState): void {
  writeJson(stateFile, state, 0o600);
}

/**
 * Returns the remembered port of `key`, or picks a free one (distinct from the other remembered
 * ports) and remembers it. `reassign` forces a new one (the old one is taken by someone else).
 */
export async function allocatePort(
  state: StackState,
  key: keyof StackPorts,
  reassign = false,
): Promise<number> {
  const current = state.ports[key];
  if (current && !reassign) return current;
  const taken = new Set(Object.values(state.ports));
  let port = await freePort();
  while (taken.has(port)) port = await freePort();
  state.ports[key] = port;
  saveState(state);
  return port;
}

export function computeEnv(state: StackState): StackEnv {
  const { postgres, kafka, kafkaSasl, kafkaSsl, registry } = state.ports;
  if (
    !postgres ||
    !kafka ||
    !kafkaSasl ||
    !kafkaSsl ||
    !registry ||
    !state.pgPassword ||
    !state.kafkaSaslPassword
  ) {
    throw new Error('local stack is not running: run ./dev stack up');
  }
  return {
    PGCDC_PG_HOST: '127.0.0.1',
    PGCDC_PG_PORT: String(postgres),
    PGCDC_PG_USER: PG_SUPERUSER,
    PGCDC_PG_PASSWORD: state.pgPassword,
    PGCDC_PG_DATABASE: PG_DATABASE,
    PGCDC_PG_SSL_CA: path.join(tlsDir, 'ca.crt'),
    PGCDC_PG_SSL_CLIENT_CERT: path.join(tlsDir, 'client.crt'),
    PGCDC_PG_SSL_CLIENT_KEY: path.join(tlsDir, 'client.key'),
    PGCDC_KAFKA_BROKERS: `127.0.0.1:${kafka}`,
    PGCDC_KAFKA_SASL_BROKERS: `127.0.0.1:${kafkaSasl}`,
    PGCDC_KAFKA_SASL_USER: KAFKA_SASL_USER,
    PGCDC_KAFKA_SASL_USER_PASSWORD: state.kafkaSaslPassword,
    PGCDC_KAFKA_TLS_BROKERS: `127.0.0.1:${kafkaSsl}`,
    PGCDC_KAFKA_TLS_CA: path.join(tlsDir, 'ca.crt'),
    PGCDC_REGISTRY_URL: `http://127.0.0.1:${registry}/apis/ccompat/v7`,
    PGCDC_STACK_DIR: stackDir,
  };
}

export function writeStackEnv(env: StackEnv): void {
  writeJson(envFile, env, 0o600);
}

/** The environment written by the last successful `up`, or undefined if there is none. */
export function readStackEnv(): StackEnv | undefined {
  if (!fs.existsSync(envFile)) return undefined;
  const env = readJson<Partial<StackEnv>>(envFile);
  if (!env || !STACK_ENV_KEYS.every((k) => typeof env[k] === 'string')) return undefined;
  return env as StackEnv;
}

/** Shell `export` lines, single-quoted so any value is safe to eval. */
export function envExports(env: StackEnv): string {
  const quote = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
  return STACK_ENV_KEYS.map((k) => `export ${k}=${quote(env[k])}`).join('\n');
}
