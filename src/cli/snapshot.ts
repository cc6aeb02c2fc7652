// pgcdc snapshot: asks the running worker (its HTTP API) for an on-demand snapshot of some tables,
// or cancels the one that runs. Reads the same configuration as `pgcdc run` for the connector's
// name, the API's address and its token, so in a pod it is `pgcdc snapshot --tables public.orders`.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { loadConfig } from '../config/load.ts';
import { UserError } from '../errors.ts';

export interface SnapshotCommand {
  file?: string;
  env: NodeJS.ProcessEnv;
  args: string[];
  tables?: string;
  /** `schema.table=SQL condition`, repeatable. */
  filters: string[];
  cancel: boolean;
  /** The API's base URL, when not the configured one (e.g. through a port-forward). */
  url?: string;
}

export async function snapshotCommand(cmd: SnapshotCommand): Promise<number> {
  const config = loadConfig({ file: cmd.file, env: cmd.env, args: cmd.args });
  if (config.http.port <= 0 && !cmd.url) {
    process.stderr.write(
      'pgcdc snapshot: the worker has no HTTP API (http.port is 0); set http.port or --url\n',
    );
    return 2;
  }
  const tls = Boolean(config.http.tls.cert);
  const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
  const base =
    cmd.url ?? `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${config.http.port}`;
  const url = new URL(`/connectors/${encodeURIComponent(config.name)}/snapshot`, base);
  let body = '';
  if (!cmd.cancel) {
    const tables = (cmd.tables ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    if (tables.length === 0) {
      process.stderr.write(
        'pgcdc snapshot: name the tables: --tables schema.table[,schema.table...] (or --cancel)\n',
      );
      return 2;
    }
    const filters: Record<string, string> = {};
    for (const f of cmd.filters) {
      const at = f.indexOf('=');
      if (at <= 0) {
        process.stderr.write(`pgcdc snapshot: --filter '${f}': expected schema.table=SQL condition\n`);
        return 2;
      }
      filters[f.slice(0, at).trim()] = f.slice(at + 1);
    }
    body = JSON.stringify({ tables, ...(Object.keys(filters).length > 0 ? { filters } : {}) });
  }
  const token = config.http.auth.token;
  const res = await call(url, cmd.cancel ? 'DELETE' : 'POST', body, token);
  if (res.status === 202) {
    process.stdout.write(
      cmd.cancel
        ? 'on-demand snapshot cancelled\n'
        : `on-demand snapshot started: ${res.body || 'accepted'}\n`,
    );
    return 0;
  }
  let message = res.body;
  try {
    message = (JSON.parse(res.body) as { message?: string }).message ?? res.body;
  } catch {
    // not JSON: print as is
  }
  process.stderr.write(`pgcdc snapshot: ${url.origin} answered ${res.status}: ${message}\n`);
  return 1;
}

function call(
  url: URL,
  method: string,
  body: string,
  token?: string,
): Promise<{ status: number; body: string }> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method,
        headers: {
          'content-type': 'application/json',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', (err) =>
      reject(new UserError(`cannot reach the worker at ${url.origin}: ${err.message}`)),
    );
    req.end(body);
  });
}
