// Why a connection to PostgreSQL failed, told apart: an unreachable host, a TLS problem, a wrong
// password, an unknown database, a missing pg_hba.conf entry… each with its own fix.

export interface ConnectTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  sslmode: string;
  connectTimeoutMs?: number;
}

export interface ConnectProblem {
  /** A short kind, for tests and --json: unreachable, dns, timeout, tls, password, database, hba, role, … */
  kind: string;
  message: string;
  fix: string;
}

const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

function codeOf(err: unknown): string | undefined {
  const e = err as { code?: unknown; errors?: unknown[] } | null;
  if (!e) return undefined;
  if (typeof e.code === 'string') return e.code;
  // Node's happy-eyeballs connect reports an AggregateError of the attempts.
  const first = Array.isArray(e.errors) ? (e.errors[0] as { code?: unknown } | undefined) : undefined;
  return typeof first?.code === 'string' ? first.code : undefined;
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return (err.message || err.name).split('\n')[0]!;
  return String(err);
}

/**
 * Classifies a connection failure into a one-line message and its fix. `err` may be the driver's
 * error or connection.ts's one-line UserError/RetriableError around it (the original is its cause).
 */
export function describeConnectError(err: unknown, t: ConnectTarget): ConnectProblem {
  const cause = (err as { cause?: unknown } | null)?.cause;
  const ours = err instanceof Error && /^(UserError|RetriableError)$/.test(err.name);
  // Told in one line already, with no driver error under it (settings, SSH tunnel): the message
  // names the setting to change.
  // A host list with no primary in it (connection.ts): transient while a failover is under way.
  if (ours && /^no primary among postgres\.host/.test((err as Error).message)) {
    return {
      kind: 'unreachable',
      message: (err as Error).message.split('\n')[0]!,
      fix: 'list the primary in postgres.host, or promote a standby (docs/failover.md)',
    };
  }
  if (ours && !(cause instanceof Error)) {
    return { kind: 'settings', message: (err as Error).message.split('\n')[0]!, fix: '' };
  }
  const p = classify(cause instanceof Error ? cause : err, t);
  if (p.kind === 'other' && ours) {
    return {
      kind: 'other',
      message: (err as Error).message.split('\n')[0]!,
      fix: 'check the postgres.* settings',
    };
  }
  return p;
}

function classify(err: unknown, t: ConnectTarget): ConnectProblem {
  const code = codeOf(err);
  const msg = messageOf(err);
  const where = `${t.host}:${t.port}`;
  const seconds = Math.round((t.connectTimeoutMs ?? 10_000) / 100) / 10;
  switch (code) {
    case '28P01':
      return {
        kind: 'password',
        message: `password authentication failed for user ${t.user} at ${where}`,
        fix: 'check postgres.password (PGCDC_POSTGRES_PASSWORD) and postgres.user',
      };
    case '3D000':
      return {
        kind: 'database',
        message: `database ${t.database} does not exist on ${where}`,
        fix: 'check postgres.database (the databases: SELECT datname FROM pg_database;)',
      };
    case '28000': {
      if (/no pg_hba\.conf entry/i.test(msg)) {
        const ssl = /no encryption|SSL off/i.test(msg);
        return {
          kind: 'hba',
          message: `the server has no pg_hba.conf entry for this connection (${msg})`,
          fix:
            `add one to pg_hba.conf, e.g. "${ssl ? 'hostssl' : 'host'} ${t.database} ${t.user} <this machine's address>/32 scram-sha-256", then SELECT pg_reload_conf();` +
            (ssl && t.sslmode !== 'require' && !t.sslmode.startsWith('verify')
              ? ' or, if the server only accepts TLS, set postgres.sslmode=require (or verify-full)'
              : '') +
            ' (RDS/Aurora/Azure: allow the address in the security group or firewall rules)',
        };
      }
      if (/role .* does not exist/i.test(msg)) {
        return {
          kind: 'role',
          message: `role ${t.user} does not exist on ${where}`,
          fix: `check postgres.user, or create it: CREATE ROLE ${t.user} LOGIN PASSWORD '...' REPLICATION;`,
        };
      }
      return {
        kind: 'hba',
        message: `the server refused the connection (${msg})`,
        fix: 'check the pg_hba.conf entry that matches this user, database and address',
      };
    }
    case 'ECONNREFUSED':
      return {
        kind: 'unreachable',
        message: `connection refused by ${where}`,
        fix: 'check postgres.host and postgres.port, and that PostgreSQL runs and listens there (listen_addresses, port)',
      };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return {
        kind: 'dns',
        message: `host name ${t.host} does not resolve (${code})`,
        fix: 'check postgres.host',
      };
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return {
        kind: 'timeout',
        message: `no answer from ${where} (${code})`,
        fix: 'check postgres.host and postgres.port, and that firewalls or security groups let this machine reach the server',
      };
    case '53300':
      return {
        kind: 'too_many_connections',
        message: `the server refused the connection: ${msg}`,
        fix: /wal_senders|standby/i.test(msg)
          ? 'raise max_wal_senders (ALTER SYSTEM SET max_wal_senders = …; then restart) or stop an unused replication client'
          : 'close idle connections or raise max_connections',
      };
    case '57P03':
      return {
        kind: 'starting',
        message: `the server is not accepting connections yet (${msg})`,
        fix: 'wait until PostgreSQL has started (or finished recovery) and try again',
      };
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return {
        kind: 'tls',
        message: `TLS: the server's certificate is ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not valid yet'} (${code})`,
        fix: "renew the server's certificate (or check this machine's clock)",
      };
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return {
        kind: 'tls',
        message: `TLS: the server's certificate is not issued for ${t.host} (${msg})`,
        fix: 'connect with a host name the certificate names, or set postgres.sslmode=verify-ca (checks the CA, not the host name)',
      };
  }
  if (code && UNTRUSTED.has(code)) {
    return {
      kind: 'tls',
      message: `TLS: the server's certificate is not trusted (${code}) with postgres.sslmode=${t.sslmode}`,
      fix:
        'set postgres.sslRootCert to the CA that signed it (RDS/Aurora: the global-bundle.pem from truststore.pki.rds.amazonaws.com; ' +
        'Azure: the DigiCert Global Root G2 and Microsoft RSA Root 2017 certificates), or postgres.sslmode=require to encrypt without verifying',
    };
  }
  if (/does not support SSL/i.test(msg)) {
    return {
      kind: 'tls',
      message: `TLS: the server at ${where} does not support TLS and postgres.sslmode=${t.sslmode} requires it`,
      fix: 'enable TLS on the server (ssl = on with a certificate) or set postgres.sslmode=prefer (or disable)',
    };
  }
  if (/timeout|timed out/i.test(msg)) {
    return {
      kind: 'timeout',
      message: `no answer from ${where} within ${seconds} s`,
      fix:
        'check postgres.host and postgres.port, and that firewalls or security groups let this machine reach the server ' +
        '(postgres.connectTimeoutMs sets the wait)',
    };
  }
  if ((code && /^(ERR_SSL|ERR_TLS|EPROTO)/.test(code)) || /\bSSL\b|\bTLS\b|certificate/i.test(msg)) {
    return {
      kind: 'tls',
      message: `TLS handshake with ${where} failed (${code ? `${code}: ` : ''}${msg})`,
      fix: 'check postgres.sslmode and the certificates (postgres.sslRootCert, sslCert, sslKey)',
    };
  }
  if (/password must be a string|no password supplied|password authentication .* required/i.test(msg)) {
    return {
      kind: 'password',
      message: `${where} asks user ${t.user} for a password and postgres.password is not set`,
      fix: 'set postgres.password (PGCDC_POSTGRES_PASSWORD)',
    };
  }
  if (code === 'ECONNRESET' || /terminated unexpectedly/i.test(msg)) {
    return {
      kind: 'reset',
      message: `${where} closed the connection during the handshake (${msg})`,
      fix: "check that postgres.port is PostgreSQL's, postgres.sslmode, and the server log",
    };
  }
  return {
    kind: 'other',
    message: `cannot connect to ${where} as ${t.user} (${code ? `${code}: ` : ''}${msg})`,
    fix: 'check the postgres.* settings',
  };
}
