// A small HTTPS reverse proxy with an authentication check, for registry tests: Apicurio's own
// auth needs an OIDC server, so the test puts this in front of its ccompat API instead. It serves
// the certificate it is given (the stack's server certificate: 127.0.0.1 and localhost, from the
// stack's CA), accepts only the configured Authorization header, and forwards everything else to
// the upstream base URL.
import https from 'node:https';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AuthProxy {
  /** https://127.0.0.1:<port> + the upstream URL's path. */
  url: string;
  /** Authorization headers received (in order), to prove what the client sent. */
  seen: string[];
  /** Requests refused with 401. */
  refused: number;
  close(): Promise<void>;
}

export async function startAuthProxy(opts: {
  upstream: string;
  cert: string;
  key: string;
  /** The one Authorization header value let through (e.g. `Basic ...` or `Bearer ...`). */
  authorization: string;
}): Promise<AuthProxy> {
  const upstream = new URL(opts.upstream);
  const state = { seen: [] as string[], refused: 0 };
  const server = https.createServer({ cert: opts.cert, key: opts.key }, (req, res) => {
    const auth = req.headers.authorization ?? '';
    state.seen.push(auth);
    if (auth !== opts.authorization) {
      state.refused++;
      res.writeHead(401, {
        'Content-Type': 'application/json',
        'WWW-Authenticate': 'Basic realm="registry"',
      });
      res.end(JSON.stringify({ error_code: 401, message: 'Unauthorized' }));
      return;
    }
    const headers = { ...req.headers, host: upstream.host };
    delete headers.authorization;
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', (err) => {
      res.writeHead(502);
      res.end(String(err));
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}${upstream.pathname.replace(/\/+$/, '')}`,
    get seen() {
      return state.seen;
    },
    get refused() {
      return state.refused;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
