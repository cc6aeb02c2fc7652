// Who may call the worker's HTTP API. Requests fall into three classes: probes (/healthz, /readyz),
// reads (every other GET/HEAD) and changes (every other method: pause, resume, restart and whatever
// is added under /connectors later, so a new endpoint is protected without anyone remembering to).
// Changes need an identity of the operator role; reads and probes are open unless
// http.auth.protectReads / protectProbes say otherwise.
//
// Identities: the operator token, the read token, the basic-auth user, or a client certificate
// verified by http.tls.clientCa (named by its subject). Secrets are compared as SHA-256 digests
// with timingSafeEqual: equal lengths whatever was sent, and no early exit on the first wrong byte.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { PgcdcConfig } from '../config/types.ts';
import { UserError } from '../errors.ts';

export type Role = 'operator' | 'read';
export type RequestClass = 'probe' | 'read' | 'change';

export interface Identity {
  /** Printable, never a secret: operator-token, read-token, user:<name>, cert:<subject> (no "token:", which the log redaction would eat). */
  name: string;
  role: Role;
}

interface Secret {
  name: string;
  role: Role;
  digest: Buffer;
}

export interface HttpAccess {
  mutations: boolean;
  /** No credential configured (allowed on loopback only): changes need no identity. */
  openChanges: boolean;
  protectReads: boolean;
  protectProbes: boolean;
  tokens: readonly Secret[];
  basic: { username: Buffer; password: Buffer; name: string } | null;
  /** Role of a verified client certificate; null when client certificates are not asked for. */
  certRole: Role | null;
  /** The WWW-Authenticate challenges of a 401. */
  challenges: string[];
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** Constant-time equality of a presented value with a stored digest. */
function matches(presented: string, stored: Buffer): boolean {
  return timingSafeEqual(digest(presented), stored);
}

/** 127.0.0.0/8, ::1, localhost: only processes on the same host (or pod) can connect. */
export function isLoopback(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h === '::1') return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped !== null && mapped[1]!.startsWith('127.');
}

/**
 * The access rules of the HTTP server, checked against the rest of the settings. Throws a one-line
 * UserError naming what to set when the combination leaves the API open where it must not be.
 */
export function httpAccess(http: PgcdcConfig['http']): HttpAccess {
  const { auth, tls } = http;
  if (auth.username !== undefined && auth.password === undefined) {
    throw new UserError('http.auth.password: required when http.auth.username is set');
  }
  if (auth.password !== undefined && auth.username === undefined) {
    throw new UserError('http.auth.username: required when http.auth.password is set');
  }
  if (auth.token !== undefined && auth.token === auth.readToken) {
    throw new UserError('http.auth.readToken: must differ from http.auth.token (one token, one role)');
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new UserError(
      tls.cert === undefined
        ? 'http.tls.cert: required when http.tls.key is set'
        : 'http.tls.key: required when http.tls.cert is set',
    );
  }
  if (tls.clientCa !== undefined && tls.cert === undefined) {
    throw new UserError(
      'http.tls.cert: required when http.tls.clientCa is set (client certificates need HTTPS)',
    );
  }
  const tokens: Secret[] = [];
  if (auth.token !== undefined)
    tokens.push({ name: 'operator-token', role: 'operator', digest: digest(auth.token) });
  if (auth.readToken !== undefined)
    tokens.push({ name: 'read-token', role: 'read', digest: digest(auth.readToken) });
  const basic =
    auth.username !== undefined && auth.password !== undefined
      ? { username: digest(auth.username), password: digest(auth.password), name: `user:${auth.username}` }
      : null;
  const certRole = tls.clientCa !== undefined ? tls.clientCertRole : null;
  const operatorCredential = auth.token !== undefined || basic !== null || certRole === 'operator';
  const anyCredential = tokens.length > 0 || basic !== null || certRole !== null;

  if (http.mutations && !operatorCredential && !isLoopback(http.host)) {
    throw new UserError(
      `http.auth.token: required when the HTTP server listens on ${http.host} (not loopback) with http.mutations on, ` +
        'or anyone who can reach it may pause and restart the connector; set http.auth.token ' +
        '(PGCDC_HTTP_AUTH_TOKEN, e.g. `openssl rand -hex 32`), or http.mutations: false, or http.host: 127.0.0.1',
    );
  }
  for (const [setting, on] of [
    ['http.auth.protectReads', auth.protectReads],
    ['http.auth.protectProbes', auth.protectProbes],
  ] as const) {
    if (on && !anyCredential) {
      throw new UserError(
        `${setting}: needs a credential to check (set http.auth.token, http.auth.readToken, http.auth.username/password or http.tls.clientCa)`,
      );
    }
  }
  const challenges = ['Bearer realm="pgcdc"'];
  if (basic) challenges.push('Basic realm="pgcdc", charset="UTF-8"');
  return {
    mutations: http.mutations,
    openChanges: !anyCredential,
    protectReads: auth.protectReads,
    protectProbes: auth.protectProbes,
    tokens,
    basic,
    certRole,
    challenges,
  };
}

export function classify(method: string, path: string): RequestClass {
  if (method !== 'GET' && method !== 'HEAD') return 'change';
  return path === '/healthz' || path === '/readyz' ? 'probe' : 'read';
}

export type Verdict =
  | { ok: true; identity: Identity | null }
  | { ok: false; status: 401 | 403; message: string; identity: Identity | null };

/** Subject of a certificate as one line: CN=ops,O=acme (the order the certificate gives). */
function subjectLine(subject: object | undefined): string {
  if (!subject) return '';
  return Object.entries(subject as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
    .join(',');
}

type Presented = { identity: Identity } | { invalid: string } | null;

function presented(access: HttpAccess, req: IncomingMessage): Presented {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (bearer) {
      // Every token is compared, so the time taken does not tell which one (if any) was close.
      let found: Secret | null = null;
      for (const t of access.tokens) if (matches(bearer[1]!, t.digest) && !found) found = t;
      return found
        ? { identity: { name: found.name, role: found.role } }
        : { invalid: 'invalid bearer token' };
    }
    const basicAuth = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (basicAuth) {
      const text = Buffer.from(basicAuth[1]!, 'base64').toString('utf8');
      const colon = text.indexOf(':');
      if (access.basic && colon > 0) {
        const userOk = matches(text.slice(0, colon), access.basic.username);
        const passwordOk = matches(text.slice(colon + 1), access.basic.password);
        if (userOk && passwordOk) return { identity: { name: access.basic.name, role: 'operator' } };
      }
      return { invalid: 'invalid user name or password' };
    }
    return { invalid: 'unsupported Authorization scheme (use Bearer or Basic)' };
  }
  if (access.certRole !== null) {
    const socket = req.socket as TLSSocket;
    if (typeof socket.getPeerCertificate === 'function') {
      const cert = socket.getPeerCertificate();
      if (cert && Object.keys(cert).length > 0) {
        if (!socket.authorized) {
          return { invalid: `client certificate not accepted (${String(socket.authorizationError)})` };
        }
        return { identity: { name: `cert:${subjectLine(cert.subject)}`, role: access.certRole } };
      }
    }
  }
  return null;
}

/** Whether the request may go on; a 401 or 403 with a message that never quotes what was sent. */
export function authorize(access: HttpAccess, cls: RequestClass, req: IncomingMessage): Verdict {
  const p = presented(access, req);
  const identity = p && 'identity' in p ? p.identity : null;
  const needed =
    (cls === 'change' && !access.openChanges) ||
    (cls === 'read' && access.protectReads) ||
    (cls === 'probe' && access.protectProbes);
  if (p && 'invalid' in p && (needed || req.headers.authorization !== undefined)) {
    // A wrong credential is refused even where none is needed: a caller should learn that it is wrong.
    return { ok: false, status: 401, message: p.invalid, identity: null };
  }
  if (cls === 'change' && !access.mutations) {
    return {
      ok: false,
      status: 403,
      message: 'endpoints that change the connector are turned off (http.mutations: false)',
      identity,
    };
  }
  if (!needed) return { ok: true, identity };
  if (!identity) {
    return {
      ok: false,
      status: 401,
      message: 'authentication required (Authorization: Bearer <token>)',
      identity: null,
    };
  }
  if (cls === 'change' && identity.role !== 'operator') {
    return {
      ok: false,
      status: 403,
      message: `${identity.name} has the ${identity.role} role; changing the connector needs the operator role`,
      identity,
    };
  }
  return { ok: true, identity };
}
