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
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
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

export async function startHttpServer(
  deps: HttpDeps,
  opts: { host: string; port: number },
): Promise<HttpServer> {
  const server: Server = createServer((req, res) => {
    handle(deps, req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) deps.log.error('HTTP handler failed', { err, path: req.url });
      json(res, status, { error_code: status, message: err instanceof Error ? err.message : String(err) });
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  deps.log.info('HTTP server listening', { host: opts.host, port });
  return {
    port,
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
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname.replace(/\/+$/, '') || '/';
  const method = req.method ?? 'GET';
  const allow = (...methods: string[]): void => {
    if (!methods.includes(method) && !(method === 'HEAD' && methods.includes('GET'))) {
      res.setHeader('allow', methods.join(', '));
      throw new HttpError(405, `method ${method} not allowed on ${path}`);
    }
  };
  req.resume(); // no request bodies are read

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
    default:
      throw new HttpError(404, `no such endpoint: ${path}`);
  }
}
