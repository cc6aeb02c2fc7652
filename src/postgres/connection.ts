// Opening connections to PostgreSQL: one place that turns settings into a pg client, for the
// query connections (catalog, snapshot) and the replication connection alike — with libpq's
// sslmode semantics, negotiated once per endpoint, and optionally through an SSH tunnel.
import pg from 'pg';
import { readFileSync, existsSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { RetriableError, UserError } from '../errors.ts';
import type { SshTunnel } from '../tunnel/ssh.ts';

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

/**
 * Looks like a file path rather than base64: a leading `/`, `./`, `../` or `~`, or a file name
 * ending as certificates and keys do. (Base64 may contain `/` but never `.` or `~`.)
 */
function looksLikePath(value: string): boolean {
  return /^(\/|\.{1,2}\/|~)/.test(value) || /\.(pem|crt|cer|key|ca|der|p12|pfx)$/i.test(value);
}

/**
 * A certificate or key given as a file path, inline PEM, or base64 of a PEM (as Kubernetes secrets
 * carry them). With `setting`, a failure is a UserError naming it (`postgres.sslRootCert: file
 * /etc/ca.crt does not exist`), so a mistyped path reads as one, not as a generic format error.
 */
export function readPem(value: string, setting?: string): string {
  const fail = (why: string): never => {
    throw setting ? new UserError(`${setting}: ${why}`) : new Error(why);
  };
  const trimmed = value.trim();
  if (trimmed.startsWith('-----BEGIN')) return trimmed;
  if (existsSync(trimmed)) {
    try {
      return readFileSync(trimmed, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : code;
      return fail(`file ${trimmed} cannot be read (${why ?? (err as Error).message})`);
    }
  }
  if (looksLikePath(trimmed)) {
    return fail(`file ${trimmed} does not exist (give an existing file, the PEM text or its base64)`);
  }
  const decoded = Buffer.from(trimmed, 'base64').toString('utf8');
  if (decoded.includes('-----BEGIN')) return decoded;
  // Not echoed: it may be (a damaged copy of) a private key.
  return fail('expected a file path, a PEM block or base64 of a PEM block');
}

/**
 * The TLS options of a TLS attempt under `s.sslmode`, as libpq checks it:
 * - a root certificate (postgres.sslRootCert) makes every TLS attempt check the chain — libpq
 *   loads it and verifies the peer in any mode, which is why `require` with a root certificate
 *   behaves like `verify-ca`;
 * - verify-ca and verify-full need the root certificate; only verify-full checks the host name;
 * - without one, allow/prefer/require encrypt without checking who answers.
 */
export function tlsOptions(s: PostgresSettings): ConnectionOptions | false {
  if (s.sslmode === 'disable') return false;
  const verifyName = s.sslmode === 'verify-full';
  const verifyChain = verifyName || s.sslmode === 'verify-ca' || !!s.sslRootCert;
  if ((s.sslmode === 'verify-ca' || verifyName) && !s.sslRootCert) {
    throw new UserError(
      `postgres.sslmode=${s.sslmode} needs postgres.sslRootCert (the CA that signed the server certificate)`,
    );
  }
  const tls: ConnectionOptions = { rejectUnauthorized: verifyChain };
  if (s.sslRootCert) tls.ca = readPem(s.sslRootCert, 'postgres.sslRootCert');
  if (s.sslCert) tls.cert = readPem(s.sslCert, 'postgres.sslCert');
  if (s.sslKey) tls.key = readPem(s.sslKey, 'postgres.sslKey');
  if (s.sslKeyPassword) tls.passphrase = s.sslKeyPassword;
  // The chain is checked (or not) by rejectUnauthorized; the name only with verify-full.
  if (!verifyName) tls.checkServerIdentity = () => undefined;
  return tls;
}

export function clientConfig(
  s: PostgresSettings,
  opts: {
    replication?: boolean;
    applicationName?: string;
    ssl?: ConnectionOptions | false;
    stream?: () => Duplex;
  } = {},
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
  if (opts.stream) config.stream = opts.stream as unknown as pg.ClientConfig['stream'];
  if (opts.replication) (config as Record<string, unknown>).replication = 'database';
  return config;
}

/** The server answered the SSL request with 'N': it has no TLS. */
function isNoTlsError(err: unknown): boolean {
  return err instanceof Error && /does not support SSL/i.test(err.message);
}

/** A failure of the TLS layer itself (handshake, certificate), not of the server's reply. */
function isTlsError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return (
    typeof code === 'string' &&
    (/^ERR_(SSL|TLS|OSSL)_/.test(code) || TLS_CERT_CODES.has(code) || code === 'ECONNRESET')
  );
}

/** The server refused the connection during start-up (an ErrorResponse with a SQLSTATE). */
function isServerRefusal(err: unknown): boolean {
  const e = err as { code?: unknown; severity?: unknown };
  return typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string';
}

const TLS_CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);

/** One line that says what failed and what to check. Keeps the original as `cause`. */
export function describePgError(err: unknown, s: PostgresSettings, ssl: boolean): Error {
  if (!(err instanceof Error) || err instanceof UserError) return err as Error;
  const e = err as Error & { code?: string };
  const where = `PostgreSQL ${s.host}:${s.port}`;
  const mode = `postgres.sslmode=${s.sslmode}`;
  let message: string | null = null;
  let retriable = false;
  if (isNoTlsError(e)) {
    message = `${where} does not accept TLS connections (${mode}); enable ssl on the server, or set postgres.sslmode=prefer or disable`;
  } else if (e.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    message = `${where}: the server certificate does not match the host name ${s.host} (${e.message.replace(/^.*?: /, '')}); connect by a name the certificate lists, or use postgres.sslmode=verify-ca (${mode})`;
  } else if (e.code && TLS_CERT_CODES.has(e.code)) {
    message = `${where}: the server certificate is not trusted (${e.code}: ${e.message}); check postgres.sslRootCert (${mode})`;
  } else if (e.code === 'ERR_OSSL_BAD_DECRYPT' || /bad decrypt|bad password read/i.test(e.message)) {
    message = `${where}: cannot decrypt the client key postgres.sslKey; check postgres.sslKeyPassword`;
  } else if (isTlsError(e) && ssl) {
    message = `${where}: TLS connection failed (${e.code}: ${e.message}) (${mode})`;
    retriable = e.code === 'ECONNRESET';
  } else if (e.code === '28000' || e.code === '28P01') {
    message = `${where} refused user ${s.user} on database ${s.database}: ${e.message}${ssl ? '' : ' (without TLS)'}`;
  } else if (/password must be a string|no password supplied/i.test(e.message)) {
    message = `${where} asks user ${s.user} for a password and postgres.password is not set${ssl ? '' : ' (without TLS)'}`;
  } else if (e.code === '3D000') {
    message = `${where}: ${e.message}; check postgres.database`;
  } else if (
    e.code === 'ECONNREFUSED' ||
    e.code === 'ENOTFOUND' ||
    e.code === 'EHOSTUNREACH' ||
    e.code === 'ETIMEDOUT'
  ) {
    message = `${where} is unreachable (${e.code}); check postgres.host and postgres.port`;
    retriable = true;
  } else if (/timeout expired/i.test(e.message)) {
    message = `${where} did not answer within postgres.connectTimeoutMs`;
    retriable = true;
  }
  if (message === null) return e;
  const out = retriable ? new RetriableError(message, { cause: e }) : new UserError(message, { cause: e });
  return out;
}

/**
 * The servers of postgres.host: one, or a comma-separated list for failover, each `host` or
 * `host:port` (postgres.port where no port is given; `[v6]:port` for IPv6 with a port).
 */
export function hostList(s: Pick<PostgresSettings, 'host' | 'port'>): Array<{ host: string; port: number }> {
  if (!s.host.includes(',')) return [{ host: s.host, port: s.port }];
  return s.host
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean)
    .map((h) => {
      const m = /^\[(.+)\]:(\d+)$/.exec(h) ?? /^([^:]+):(\d+)$/.exec(h);
      const port = m ? Number(m[2]) : s.port;
      if (m && (port < 1 || port > 65535)) {
        throw new UserError(`postgres.host: ${h} has no valid port (1 to 65535)`);
      }
      return { host: m ? m[1]! : h.replace(/^\[(.*)\]$/, '$1'), port };
    });
}

/** pg_is_in_recovery() on a fresh connection: true on a standby (also over replication=database). */
async function inRecovery(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ r: unknown }>('SELECT pg_is_in_recovery() AS r');
  const r = rows[0]?.r;
  return r === true || r === 't';
}

export interface EndpointOptions {
  /** Every connection goes through this tunnel (a forwarded channel per connection). */
  tunnel?: SshTunnel | null;
  log?: { info(msg: string, ctx?: Record<string, unknown>): void };
}

/**
 * Where a connector's PostgreSQL connections come from. The first connect() negotiates TLS under
 * libpq's sslmode rules (prefer: TLS, plaintext when the server has none; allow: plaintext, TLS
 * when the server refuses plaintext) and every later connection — the replication connection
 * that pg-logical-replication opens from clientConfig() included — reuses what was negotiated.
 */
export class PostgresEndpoint {
  readonly settings: PostgresSettings;
  readonly #tunnel: SshTunnel | null;
  readonly #log: EndpointOptions['log'];
  /** undefined until negotiated. */
  #ssl: ConnectionOptions | false | undefined;
  /** The server of a host list that the last connect() found to be the primary. */
  #current: PostgresSettings;

  constructor(s: PostgresSettings, opts: EndpointOptions = {}) {
    this.settings = s;
    this.#current = s;
    this.#tunnel = opts.tunnel ?? null;
    this.#log = opts.log;
  }

  /** The server connections go to: postgres.host, or the primary found in its list. */
  get target(): { host: string; port: number } {
    return { host: this.#current.host, port: this.#current.port };
  }

  /** Whether connections use TLS; undefined before the first connect(). */
  get tls(): boolean | undefined {
    return this.#ssl === undefined ? undefined : this.#ssl !== false;
  }

  get tunnel(): SshTunnel | null {
    return this.#tunnel;
  }

  /** The pg configuration of a connection; connect() must have negotiated TLS before. */
  clientConfig(opts: { replication?: boolean; applicationName?: string } = {}): pg.ClientConfig {
    if (this.#ssl === undefined) throw new Error('PostgresEndpoint.clientConfig() before connect()');
    return this.#config(this.#ssl, opts);
  }

  #config(ssl: ConnectionOptions | false, opts: { replication?: boolean; applicationName?: string }) {
    const s = this.#current;
    const stream = this.#tunnel?.streamFactory(s.host, s.port);
    return clientConfig(s, { ...opts, ssl, ...(stream ? { stream } : {}) });
  }

  async #attempt(
    ssl: ConnectionOptions | false,
    opts: { replication?: boolean; applicationName?: string },
  ): Promise<pg.Client> {
    const client = new pg.Client(this.#config(ssl, opts));
    // A connection lost while idle is reported by its next query (or by the caller's own
    // 'error' listener); without a listener it would crash the process.
    client.on('error', () => undefined);
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  /**
   * A connection to postgres.host. With a host list, each is tried in order and the first that
   * is a primary (not in recovery) is used, as libpq's target_session_attrs=read-write does: after
   * a failover the promoted standby is found wherever it is in the list.
   */
  async connect(opts: { replication?: boolean; applicationName?: string } = {}): Promise<pg.Client> {
    const hosts = hostList(this.settings);
    if (hosts.length === 1) return this.#connectTo(this.settings, opts);
    const refused: string[] = [];
    let last: unknown;
    for (const h of hosts) {
      const s = { ...this.settings, host: h.host, port: h.port };
      this.#current = s;
      let client: pg.Client;
      try {
        client = await this.#connectTo(s, opts);
      } catch (err) {
        // A wrong password or certificate is wrong for every host: no point in trying on.
        if (err instanceof UserError) throw err;
        last = err;
        refused.push(`${h.host}:${h.port} (${(err as Error).message.split('\n')[0]})`);
        continue;
      }
      const standby = await inRecovery(client).catch((err: unknown) => {
        void client.end().catch(() => undefined);
        throw describePgError(err, s, this.#ssl !== false);
      });
      if (!standby) return client;
      await client.end().catch(() => undefined);
      refused.push(`${h.host}:${h.port} (a standby)`);
    }
    this.#current = this.settings;
    throw new RetriableError(
      `no primary among postgres.host: ${refused.join(', ')}; pgcdc retries (after a failover, until a standby is promoted)`,
      { cause: last },
    );
  }

  async #connectTo(
    s: PostgresSettings,
    opts: { replication?: boolean; applicationName?: string },
  ): Promise<pg.Client> {
    if (this.#ssl !== undefined) {
      const ssl = this.#ssl;
      return this.#attempt(ssl, opts).catch((err: unknown) => {
        throw describePgError(err, s, ssl !== false);
      });
    }
    const tls = tlsOptions(s);
    const first: ConnectionOptions | false = s.sslmode === 'allow' ? false : tls;
    let client: pg.Client;
    let used = first;
    try {
      client = await this.#attempt(first, opts);
    } catch (err) {
      const fallback =
        (s.sslmode === 'prefer' && (isNoTlsError(err) || isTlsError(err) || isServerRefusal(err))) ||
        (s.sslmode === 'allow' && isServerRefusal(err));
      if (!fallback) throw describePgError(err, s, first !== false);
      used = s.sslmode === 'allow' ? tls : false;
      try {
        client = await this.#attempt(used, opts);
      } catch (err2) {
        throw describePgError(err2, s, used !== false);
      }
    }
    this.#ssl = used;
    this.#log?.info('connected to PostgreSQL', {
      host: s.host,
      port: s.port,
      sslmode: s.sslmode,
      tls: used !== false,
      ...(this.#tunnel ? { via: `ssh ${this.#tunnel.endpoint}` } : {}),
    });
    return client;
  }

  async close(): Promise<void> {
    await this.#tunnel?.close();
  }
}

/**
 * One connection with libpq's sslmode semantics (a throwaway endpoint: nothing is shared with
 * later connections; a connector uses one PostgresEndpoint for all of its connections).
 */
export async function connect(
  s: PostgresSettings,
  opts: { replication?: boolean; applicationName?: string } = {},
): Promise<pg.Client> {
  return new PostgresEndpoint(s).connect(opts);
}

/** Quotes an identifier for SQL text. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/**
 * Ends a client, cutting its socket when the clean close does not finish within `ms`: a
 * Terminate message on a connection whose network went silent (a dropped NAT entry, a frozen
 * peer) is never answered, and a shutdown waiting on it would hang the restart that recovers.
 */
export async function endWithin(client: pg.Client, ms = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ended = client.end().then(
    () => true,
    () => true,
  );
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    if (await Promise.race([ended, late])) return;
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  } finally {
    clearTimeout(timer);
  }
}
