// A second, throwaway PostgreSQL cluster for tests that need a server configured differently from
// the stack's: started without TLS (ssl=off), optionally switched to TLS with a given certificate
// (ssl is reloadable). initdb and postgres run as the stack's unprivileged user when we are root,
// as deploy/local/postgres.ts does. Stopped (by its PID) and deleted by stop().
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../deploy/local/process.ts';

export interface ThrowawayPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Turns TLS on with these files (PEM paths) or off (null), then reloads the configuration. */
  setTls(tls: { cert: string; key: string } | null): Promise<void>;
  query(sql: string): Promise<pg.QueryResult>;
  stop(): Promise<void>;
}

const OS_USER = 'pgcdc';

function pgBin(): string {
  const base = '/usr/lib/postgresql';
  const versions = fs
    .readdirSync(base)
    .filter((v) => fs.existsSync(path.join(base, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error('no PostgreSQL server binaries (start the stack first: ./dev stack up)');
  return path.join(base, versions[0], 'bin');
}

function osUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => spawnSync('id', [flag, OS_USER], { encoding: 'utf8' });
  if (id('-u').status !== 0)
    throw new Error(`user ${OS_USER} missing (the stack creates it: ./dev stack up)`);
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

export async function startThrowawayPostgres(): Promise<ThrowawayPostgres> {
  const bin = pgBin();
  const user = osUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-pg-'));
  fs.chmodSync(dir, 0o755);
  const own = (f: string) => user && fs.chownSync(f, user.uid, user.gid);
  own(dir);
  const data = path.join(dir, 'data');
  const password = `pw${Math.random().toString(36).slice(2)}`;
  const pwFile = path.join(dir, 'pw');
  fs.writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  own(pwFile);
  const init = spawnSync(
    path.join(bin, 'initdb'),
    [
      '-D',
      data,
      '-U',
      'postgres',
      '--pwfile',
      pwFile,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      '--locale=C',
    ],
    { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH, LANG: 'C' }, ...user },
  );
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const port = await freePort();
  const base = [
    `listen_addresses = '127.0.0.1'`,
    `port = ${port}`,
    `unix_socket_directories = '${dir}'`,
    'fsync = off',
    'shared_buffers = 16MB',
    'max_connections = 20',
    `include_if_exists = 'tls.conf'`,
  ];
  fs.appendFileSync(path.join(data, 'postgresql.conf'), `\n${base.join('\n')}\n`);
  const tlsConf = path.join(data, 'tls.conf');
  const writeTls = (text: string) => {
    fs.writeFileSync(tlsConf, text, { mode: 0o600 });
    own(tlsConf);
  };
  writeTls('ssl = off\n');
  fs.writeFileSync(
    path.join(data, 'pg_hba.conf'),
    ['local all all scram-sha-256', 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n'),
  );
  own(path.join(data, 'pg_hba.conf'));
  const logFile = path.join(dir, 'postgres.log');
  const out = fs.openSync(logFile, 'a');
  const child: ChildProcess = spawn(path.join(bin, 'postgres'), ['-D', data], {
    cwd: dir,
    stdio: ['ignore', out, out],
    env: { PATH: process.env.PATH, LANG: 'C' },
    ...user,
  });
  fs.closeSync(out);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const connectAdmin = async (): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  const query = async (sql: string): Promise<pg.QueryResult> => {
    const c = await connectAdmin();
    try {
      return await c.query(sql);
    } finally {
      await c.end().catch(() => undefined);
    }
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await query('SELECT 1');
      break;
    } catch (err) {
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(
          `throwaway postgres did not start: ${(err as Error).message}\n${fs.readFileSync(logFile, 'utf8')}`,
          { cause: err },
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    database: 'postgres',
    query,
    async setTls(tls) {
      if (!tls) writeTls('ssl = off\n');
      else {
        // Postgres wants its key owned by itself and not group/world readable: copy both in.
        const cert = path.join(dir, 'server.crt');
        const key = path.join(dir, 'server.key');
        fs.copyFileSync(tls.cert, cert);
        fs.copyFileSync(tls.key, key);
        fs.chmodSync(key, 0o600);
        own(cert);
        own(key);
        writeTls(`ssl = on\nssl_cert_file = '${cert}'\nssl_key_file = '${key}'\n`);
      }
      const r = await query('SELECT pg_reload_conf()');
      if (!r.rows[0]) throw new Error('reload failed');
      // The postmaster applies the reload asynchronously: wait until new backends see it.
      const want = tls ? 'on' : 'off';
      for (let i = 0; i < 50; i++) {
        const s = await query('SHOW ssl');
        if ((s.rows[0] as { ssl: string }).ssl === want) return;
        await new Promise((r2) => setTimeout(r2, 100));
      }
      throw new Error(`ssl did not become ${want}: ${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGINT');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
