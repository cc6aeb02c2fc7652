// Opening connections to PostgreSQL: one place that turns settings into a pg client, for the
// query connections (catalog, snapshot) and the replication connection alike.
import pg from 'pg';
import { readFileSync, existsSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface PostgresSettings {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  sslmode: SslMode;
  sslRootCert?: string;
  sslCert?: string;
  sslKey?: string;
  sslKeyPassword?: string;
  connectTimeoutMs?: number;
}

/**
 * Session settings that make every value's text form unambiguous and identical between the
 * snapshot (query connection) and the stream (pgoutput runs the type output functions in the
 * walsender, with the walsender's settings).
 */
const SESSION_OPTIONS = [
  '-c TimeZone=UTC',
  '-c DateStyle=ISO,MDY',
  '-c IntervalStyle=iso_8601',
  '-c extra_float_digits=3',
  '-c bytea_output=hex',
].join(' ');

/** Every value stays in PostgreSQL's text form; src/avro converts it once, exactly. */
const TEXT_TYPES = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/** A certificate or key given as a file path, inline PEM, or base64 of a PEM (as Kubernetes secrets carry them). */
export function readPem(value: string): string {
  const trimmed = value.trim();
  if (trimmed.startsWith('-----BEGIN')) return trimmed;
  if (existsSync(trimmed)) return readFileSync(trimmed, 'utf8');
  const decoded = Buffer.from(trimmed, 'base64').toString('utf8');
  if (decoded.includes('-----BEGIN')) return decoded;
  throw new Error('expected a file path, a PEM block or base64 of a PEM block');
}

function tlsOptions(s: PostgresSettings): ConnectionOptions | false {
  if (s.sslmode === 'disable') return false;
  const verify = s.sslmode === 'verify-ca' || s.sslmode === 'verify-full';
  const tls: ConnectionOptions = { rejectUnauthorized: verify };
  if (s.sslRootCert && verify) tls.ca = readPem(s.sslRootCert);
  if (s.sslCert) tls.cert = readPem(s.sslCert);
  if (s.sslKey) tls.key = readPem(s.sslKey);
  if (s.sslKeyPassword) tls.passphrase = s.sslKeyPassword;
  // verify-ca checks the chain but not the host name, as libpq does.
  if (s.sslmode === 'verify-ca') tls.checkServerIdentity = () => undefined;
  return tls;
}

export function clientConfig(
  s: PostgresSettings,
  opts: { replication?: boolean; applicationName?: string; ssl?: ConnectionOptions | false } = {},
): pg.ClientConfig {
  const config: pg.ClientConfig = {
    host: s.host,
    port: s.port,
    database: s.database,
    user: s.user,
    password: s.password,
    ssl: opts.ssl ?? tlsOptions(s),
    options: SESSION_OPTIONS,
    types: TEXT_TYPES,
    application_name: opts.applicationName ?? 'pgcdc',
    connectionTimeoutMillis: s.connectTimeoutMs ?? 10_000,
    keepAlive: true,
  };
  if (opts.replication) (config as Record<string, unknown>).replication = 'database';
  return config;
}

/** True when the server answered the SSL request with 'N' (no TLS). */
function isNoTlsError(err: unknown): boolean {
  return err instanceof Error && /does not support SSL/i.test(err.message);
}

/**
 * Connects with libpq's sslmode semantics for the fallback modes: `prefer` tries TLS first and
 * falls back to plaintext when the server has no TLS; `allow` tries plaintext first and falls
 * back to TLS when the server refuses it.
 */
export async function connect(
  s: PostgresSettings,
  opts: { replication?: boolean; applicationName?: string } = {},
): Promise<pg.Client> {
  const attempt = async (ssl: ConnectionOptions | false): Promise<pg.Client> => {
    const client = new pg.Client(clientConfig(s, { ...opts, ssl }));
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  };
  if (s.sslmode === 'prefer') {
    try {
      return await attempt(tlsOptions(s));
    } catch (err) {
      if (!isNoTlsError(err)) throw err;
      return attempt(false);
    }
  }
  if (s.sslmode === 'allow') {
    try {
      return await attempt(false);
    } catch (err) {
      if (!(err instanceof Error) || !/no pg_hba.conf entry|SSL/i.test(err.message)) throw err;
      return attempt({ rejectUnauthorized: false });
    }
  }
  return attempt(tlsOptions(s));
}

/** Quotes an identifier for SQL text. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
