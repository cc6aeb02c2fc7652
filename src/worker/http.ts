// The worker's HTTP server (plain node:http): probes, Prometheus metrics, and the part of Kafka
// Connect's REST API that makes sense for one connector with one task.
//
//   GET  /healthz                         200 while the process is alive and its event loop turns
//   GET  /readyz                          200 when connected and past start-up (SNAPSHOT, STREAMING, PAUSED)
//   GET  /metrics                         Prometheus text format
//   GET  /connectors                      ["<name>"]
//   GET  /connectors/{name}               {name, type, tasks}
//   GET  /connectors/{name}/status        Kafka Connect status + snapshot progress + LSNs
//   GET  /connectors/{name}/tasks/0/status
//   GET  /connectors/{name}/offsets       {offsets: [{partition, offset}]}
//   PUT  /connectors/{name}/pause         202
//   PUT  /connectors/{name}/resume        202
//   POST /connectors/{name}/restart       204 (also /tasks/0/restart)
//   POST /connectors/{name}/snapshot      202 {"tables": ["public.t"], "filters": {"public.t": "id > 10"}}
//   DELETE /connectors/{name}/snapshot    202 (cancels a running on-demand snapshot; 404 when none runs)
//
// Who may call what is decided before routing (src/worker/auth.ts), so an endpoint added here is
// covered by the same rules; every change (any method but GET/HEAD) leaves one audit line naming
// the caller's identity, never its credential.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext } from 'node:tls';
import { readPem } from '../postgres/connection.ts';
import { UserError } from '../errors.ts';
import type { PgcdcConfig } from '../config/types.ts';
import { parseTableEntries, type TableRef } from '../config/tables.ts';
import { authorize, classify, type HttpAccess } from './auth.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { WalGuard } from './wal-guard.ts';
import type { Worker } from './worker.ts';

/** A timer that notices when the event loop stops turning (a wedged process). */
export class Liveness {
  #lastTick = Date.now();
  #maxDelayMs = 0;
  #timer: NodeJS.Timeout;
  readonly tickMs: number;
  readonly staleAfterMs: number;

  constructor(opts: { tickMs?: number; staleAfterMs?: number } = {}) {
    this.tickMs = opts.tickMs ?? 1_000;
    this.staleAfterMs = opts.staleAfterMs ?? 30_000;
    this.#timer = setInterval(() => {
      const now = Date.now();
      this.#maxDelayMs = Math.max(0, now - this.#lastTick - this.tickMs);
      this.#lastTick = now;
    }, this.tickMs).unref();
  }

  check(): { alive: boolean; lastTickAgoMs: number; eventLoopDelayMs: number } {
    const ago = Date.now() - this.#lastTick;
    return { alive: ago <= this.staleAfterMs, lastTickAgoMs: ago, eventLoopDelayMs: this.#maxDelayMs };
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

export interface HttpServer {
  readonly port: number;
  readonly scheme: 'http' | 'https';
  close(): Promise<void>;
}

export interface HttpDeps {
  worker: Worker;
  metrics: Metrics;
  guard: WalGuard | null;
  liveness: Liveness;
  log: Logger;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export interface HttpTls {
  cert: string;
  key: string;
  clientCa?: string;
}

/** The server's TLS material, read now so that a bad path is a start-up error naming the setting. */
export function httpTls(tls: PgcdcConfig['http']['tls']): HttpTls | null {
  if (tls.cert === undefined || tls.key === undefined) return null;
  const out: HttpTls = {
    cert: readPem(tls.cert, 'http.tls.cert'),
    key: readPem(tls.key, 'http.tls.key'),
    ...(tls.clientCa !== undefined ? { clientCa: readPem(tls.clientCa, 'http.tls.clientCa') } : {}),
  };
  try {
    createSecureContext({ cert: out.cert, key: out.key });
  } catch (err) {
    // OpenSSL's reason (e.g. "key values mismatch"); it never quotes the key.
    const reason = (err as Error).message.replace(/^error:[0-9A-F]+:[^:]*:/i, '');
    throw new UserError(`http.tls.key: cannot be used with http.tls.cert (${reason})`);
  }
  if (out.clientCa !== undefined) {
    try {
      createSecureContext({ ca: out.clientCa });
    } catch (err) {
      throw new UserError(`http.tls.clientCa: not a usable CA certificate (${(err as Error).message})`);
    }
  }
  return out;
}

function pathOf(req: IncomingMessage): string {
  const url = new URL(req.url ?? '/', 'http://localhost');
  return url.pathname.replace(/\/+$/, '') || '/';
}

export async function startHttpServer(
  deps: HttpDeps,
  opts: { host: string; port: number; access: HttpAccess; tls?: HttpTls | null },
): Promise<HttpServer> {
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const method = req.method ?? 'GET';
    let path: string;
    try {
      path = pathOf(req);
    } catch {
      req.resume();
      json(res, 400, { error_code: 400, message: 'malformed request URL' });
      return;
    }
    const cls = classify(method, path);
    const verdict = authorize(opts.access, cls, req);
    if (cls === 'change') {
      const by = verdict.identity?.name ?? 'anonymous';
      const from = req.socket.remoteAddress ?? 'unknown';
      // 'close' rather than 'finish': a caller that hangs up before the answer is audited too.
      res.once('close', () => {
        const done = res.writableFinished;
        const status = done ? res.statusCode : null;
        const result =
          status === null
            ? 'aborted'
            : status < 400
              ? 'ok'
              : status === 401 || status === 403
                ? 'denied'
                : 'failed';
        const line = `audit: ${method} ${path} by ${by} from ${from}: ${status ?? 'no answer'} ${result}`;
        const audit = { method, path, identity: by, remote: from, status, result };
        if (result === 'ok') deps.log.info(line, { audit });
        else deps.log.warn(line, { audit });
      });
    }
    if (!verdict.ok) {
      req.resume();
      if (verdict.status === 401) res.setHeader('www-authenticate', opts.access.challenges);
      json(res, verdict.status, { error_code: verdict.status, message: verdict.message });
      return;
    }
    handle(deps, req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) deps.log.error('HTTP handler failed', { err, path });
      json(res, status, { error_code: status, message: err instanceof Error ? err.message : String(err) });
    });
  };
  const tls = opts.tls ?? null;
  // Client certificates are asked for but not required by the handshake: probes and callers with a
  // token still connect, and authorize() tells a verified certificate from a refused one.
  const server: Server = tls
    ? createTlsServer(
        {
          cert: tls.cert,
          key: tls.key,
          ...(tls.clientCa !== undefined
            ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false }
            : {}),
        },
        onRequest,
      )
    : createServer(onRequest);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const scheme = tls ? 'https' : 'http';
  deps.log.info('HTTP server listening', {
    host: opts.host,
    port,
    scheme,
    mutations: opts.access.mutations,
    auth: opts.access.openChanges ? 'none (loopback only)' : 'required for changes',
  });
  return {
    port,
    scheme,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text =
    status === 204 || body === null
      ? ''
      : JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

async function handle(deps: HttpDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { worker } = deps;
  const path = pathOf(req);
  const method = req.method ?? 'GET';
  const allow = (...methods: string[]): void => {
    if (!methods.includes(method) && !(method === 'HEAD' && methods.includes('GET'))) {
      res.setHeader('allow', methods.join(', '));
      throw new HttpError(405, `method ${method} not allowed on ${path}`);
    }
  };
  // Only the on-demand snapshot reads a body; every other one is discarded.
  const body = method === 'POST' && path.endsWith('/snapshot') ? await readBody(req) : (req.resume(), '');

  if (path === '/healthz') {
    allow('GET');
    const live = deps.liveness.check();
    json(res, live.alive ? 200 : 503, {
      status: live.alive ? 'ok' : 'wedged',
      ...(live.alive ? {} : { reason: `event loop did not turn for ${live.lastTickAgoMs} ms` }),
      ...live,
    });
    return;
  }
  if (path === '/readyz') {
    allow('GET');
    const r = worker.readiness();
    let reason = r.reason;
    if (r.ready && deps.guard?.lastPollError)
      reason = `PostgreSQL query connection: ${deps.guard.lastPollError.message}`;
    const ready = r.ready && reason === undefined;
    json(res, ready ? 200 : 503, {
      status: ready ? 'ready' : 'not ready',
      state: r.state,
      ...(reason ? { reason } : {}),
    });
    return;
  }
  if (path === '/metrics') {
    allow('GET');
    const text = await deps.metrics.text();
    res.writeHead(200, { 'content-type': deps.metrics.contentType });
    res.end(text);
    return;
  }
  if (path === '/connectors') {
    allow('GET');
    json(res, 200, [worker.name]);
    return;
  }
  const m = /^\/connectors\/([^/]+)(?:\/(.*))?$/.exec(path);
  if (!m) throw new HttpError(404, `no such endpoint: ${path}`);
  const name = decodeURIComponent(m[1]!);
  if (name !== worker.name) throw new HttpError(404, `Connector ${name} not found`);
  const rest = m[2] ?? '';
  switch (rest) {
    case '':
      allow('GET');
      json(res, 200, { name, type: 'source', tasks: [{ connector: name, task: 0 }] });
      return;
    case 'status':
      allow('GET');
      json(res, 200, worker.status());
      return;
    case 'tasks':
      allow('GET');
      json(res, 200, [{ id: { connector: name, task: 0 } }]);
      return;
    case 'tasks/0/status': {
      allow('GET');
      const tasks = worker.status().tasks as unknown[];
      json(res, 200, tasks[0]);
      return;
    }
    case 'offsets':
      allow('GET');
      json(res, 200, worker.offsets());
      return;
    case 'pause':
      allow('PUT');
      worker.pause();
      json(res, 202, null);
      return;
    case 'resume':
      allow('PUT');
      worker.resume();
      json(res, 202, null);
      return;
    case 'restart':
    case 'tasks/0/restart':
      allow('POST');
      try {
        await worker.restart();
      } catch (err) {
        throw new HttpError(409, err instanceof Error ? err.message : String(err));
      }
      json(res, 204, null);
      return;
    case 'snapshot': {
      allow('POST', 'DELETE');
      try {
        if (method === 'DELETE') {
          if (!worker.cancelSnapshot()) throw new HttpError(404, 'no on-demand snapshot is running');
          json(res, 202, null);
          return;
        }
        const request = snapshotRequest(body);
        json(res, 202, worker.requestSnapshot(request.tables, request.filters));
      } catch (err) {
        if (err instanceof HttpError) throw err;
        throw new HttpError(
          err instanceof UserError ? 409 : 500,
          err instanceof Error ? err.message : String(err),
        );
      }
      return;
    }
    default:
      throw new HttpError(404, `no such endpoint: ${path}`);
  }
}

const MAX_BODY = 64 * 1024;

async function readBody(req: IncomingMessage): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The body of POST /connectors/{name}/snapshot; 400 with every problem named. */
export function snapshotRequest(body: string): { tables: TableRef[]; filters: Record<string, string> } {
  let v: unknown;
  try {
    v = JSON.parse(body || '{}');
  } catch {
    throw new HttpError(
      400,
      'the body must be JSON: {"tables": ["schema.table", ...], "filters": {"schema.table": "SQL condition"}}',
    );
  }
  const o = (v ?? {}) as { tables?: unknown; filters?: unknown };
  if (!Array.isArray(o.tables) || o.tables.length === 0 || o.tables.some((t) => typeof t !== 'string'))
    throw new HttpError(400, '"tables" must be a non-empty list of schema.table names');
  const { tables, problems } = parseTableEntries(o.tables as string[]);
  const filters: Record<string, string> = {};
  if (o.filters !== undefined) {
    if (typeof o.filters !== 'object' || o.filters === null || Array.isArray(o.filters))
      throw new HttpError(400, '"filters" must be an object: {"schema.table": "SQL condition"}');
    for (const [name, cond] of Object.entries(o.filters as Record<string, unknown>)) {
      const parsed = parseTableEntries([name]);
      if (parsed.problems.length > 0 || typeof cond !== 'string' || cond.trim() === '') {
        problems.push(`filter for ${name}: a schema.table name and a non-empty SQL condition`);
        continue;
      }
      filters[`${parsed.tables[0]!.schema}.${parsed.tables[0]!.table}`] = cond;
    }
  }
  if (problems.length > 0) throw new HttpError(400, problems.join('; '));
  return { tables, filters };
}
