// PostgreSQL of the local stack: a throwaway cluster (Debian's binaries) under .stack/postgres,
// logical decoding on, scram-sha-256 everywhere, TLS with a local CA and a client-cert role.
//
// Where the server's own files live (its "home": data directory, socket directory, its copy of
// the TLS files). PostgreSQL refuses to run as root, so when we are root it runs as OS_USER, and
// that user must be able to reach its files. A clone inside a directory other users cannot enter
// (a `mktemp -d` folder, /root) is unreachable for it: initdb then could not even read the
// password file. So, for a new cluster only, when we are root and OS_USER cannot enter
// .stack/, the home is /var/tmp/pgcdc-stack-<hash of the .stack path> (owned by OS_USER, 0700;
// /var/tmp rather than /tmp because it survives a reboot, like .stack/ does), and
// .stack/postgres/server-home records that choice. Everything else (pid file, log, state, the
// TLS files clients use) stays in .stack/. An existing cluster under .stack/postgres/data is
// never moved, so a stack that already runs keeps being recognised.
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import {
  aptInstall,
  isOurProcess,
  portIsFree,
  processCommandLine,
  processCwd,
  run,
  spawnDetached,
  stackDir,
  StackError,
  waitReady,
  ServerProcess,
  type ServerStatus,
} from './process.ts';
import {
  allocatePort,
  loadState,
  PG_CERT_USER,
  PG_DATABASE,
  PG_SUPERUSER,
  saveState,
  tlsDir,
  type StackState,
} from './state.ts';

const NAME = 'postgres';
/** Our own files about the server: pid file, log, the record of its home. */
const dir = path.join(stackDir, 'postgres');
const logFile = path.join(dir, 'postgres.log');
const pidFile = path.join(dir, 'pid');
const homeRecord = path.join(dir, 'server-home');
/** Postgres refuses to run as root; when we are root it runs as this system user. */
const OS_USER = 'pgcdc';
const READY_TIMEOUT_MS = 60_000;

interface OsUser {
  uid: number;
  gid: number;
}

/** The server's own files (see the top of this file for why they may live outside .stack/). */
export interface Home {
  dir: string;
  dataDir: string;
  runDir: string;
  /** Where the server reads its certificate, key and CA: .stack/tls, or its copy outside. */
  tlsDir: string;
}

function homeAt(home: string): Home {
  const outside = home !== dir;
  return {
    dir: home,
    dataDir: path.join(home, 'data'),
    runDir: path.join(home, 'run'),
    tlsDir: outside ? path.join(home, 'tls') : tlsDir,
  };
}

/** The home in use: the recorded one, else .stack/postgres (where every cluster lived before). */
export function currentHome(): Home {
  try {
    const recorded = fs.readFileSync(homeRecord, 'utf8').trim();
    if (recorded) return homeAt(recorded);
  } catch {
    // none recorded
  }
  return homeAt(dir);
}

/** /var/tmp/pgcdc-stack-<hash>: one per .stack directory, so two clones never share a cluster. */
export function outsideHomePath(): string {
  const real = fs.existsSync(stackDir) ? fs.realpathSync(stackDir) : stackDir;
  return path.join('/var/tmp', `pgcdc-stack-${createHash('sha256').update(real).digest('hex').slice(0, 16)}`);
}

/** True if `user` can enter `directory` (search permission on it and on every directory above). */
function canEnter(user: OsUser, directory: string): boolean {
  return spawnSync('test', ['-x', directory], { uid: user.uid, gid: user.gid, stdio: 'ignore' }).status === 0;
}

/** Chooses the home of a cluster that does not exist yet, and records the choice. */
function chooseHome(user: OsUser | undefined): Home {
  const current = currentHome();
  if (fs.existsSync(path.join(current.dataDir, 'PG_VERSION'))) return current;
  if (!user || canEnter(user, stackDir)) return current;
  const home = outsideHomePath();
  const st = fs.lstatSync(home, { throwIfNoEntry: false });
  if (st) {
    // World-writable /var/tmp: only a directory that OS_USER owns is ours (never follow a link).
    if (!st.isDirectory() || st.uid !== user.uid) {
      throw new StackError(
        NAME,
        `${home} exists and is not a directory owned by ${OS_USER}; remove it`,
        logFile,
      );
    }
    // Left by a .stack/ that was deleted since (its password is gone with it): start afresh,
    // unless a server still runs on it.
    if (livePostmaster(homeAt(home))) {
      throw new StackError(NAME, `a PostgreSQL server still runs on ${home}/data; stop it first`, logFile);
    }
    fs.rmSync(home, { recursive: true, force: true });
  }
  fs.mkdirSync(home, { mode: 0o700 });
  chown(home, user);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.writeFileSync(homeRecord, `${home}\n`);
  process.stderr.write(
    `stack: postgres: ${OS_USER} cannot enter ${stackDir}; the cluster lives in ${home} (recorded in ${homeRecord})\n`,
  );
  return homeAt(home);
}

/**
 * The postmaster running on this data directory, found through its lock file (first line: PID,
 * fourth: port), and only if that PID really is a live process working in the data directory.
 * Our own pid file can be out of date: `pg_ctl restart` starts a new postmaster with a new PID,
 * and a server that is alive must never lose its lock file (it shuts itself down when it finds
 * the file gone or rewritten: "data directory lock file is invalid").
 */
export function livePostmaster(home: Home = currentHome()): { pid: number; port: number } | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(home.dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(lines[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (!processCommandLine(pid)) return undefined; // gone (or a zombie)
  let real: string;
  try {
    real = fs.realpathSync(home.dataDir);
  } catch {
    return undefined;
  }
  if (processCwd(pid) !== real) return undefined; // the PID was reused by something else
  return { pid, port: Number.parseInt(lines[3] ?? '', 10) };
}

// SIGINT = PostgreSQL's "fast" shutdown: disconnects clients (SIGTERM would wait for them to leave).
function serverOf(home: Home): ServerProcess {
  return new ServerProcess({
    name: NAME,
    pidFile,
    marker: home.dataDir,
    logFile,
    stopSignal: 'SIGINT',
    stopTimeoutMs: 30_000,
  });
}

/** The `bin` directory of the newest installed PostgreSQL; installs Debian's package if none. */
async function pgBinDir(): Promise<string> {
  const find = () => {
    const base = '/usr/lib/postgresql';
    const versions = fs.existsSync(base)
      ? fs
          .readdirSync(base)
          .filter((v) => fs.existsSync(path.join(base, v, 'bin', 'postgres')))
          .sort((a, b) => Number(b) - Number(a))
      : [];
    return versions[0] ? path.join(base, versions[0], 'bin') : undefined;
  };
  let bin = find();
  if (!bin) {
    try {
      await aptInstall(NAME, ['postgresql-15'], logFile);
    } catch {
      await aptInstall(NAME, ['postgresql'], logFile);
    }
    bin = find();
  }
  if (!bin)
    throw new StackError(NAME, 'no /usr/lib/postgresql/*/bin/postgres after apt-get install', logFile);
  return bin;
}

/** Root: the unprivileged user postgres runs as (created if missing). Otherwise: ourselves. */
async function osUser(): Promise<OsUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => spawnSync('id', [flag, OS_USER], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    await run(
      NAME,
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
      { logFile },
    );
  }
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

function chown(file: string, user: OsUser | undefined): void {
  if (user) fs.chownSync(file, user.uid, user.gid);
}

/** CA, server certificate (CN=localhost, SAN DNS:localhost + IP:127.0.0.1) and client certificate. */
async function ensureTls(user: OsUser | undefined): Promise<void> {
  const files = ['ca.crt', 'server.crt', 'server.key', 'client.crt', 'client.key'];
  if (files.every((f) => fs.existsSync(path.join(tlsDir, f)))) return;
  fs.rmSync(tlsDir, { recursive: true, force: true });
  fs.mkdirSync(tlsDir, { recursive: true, mode: 0o755 });
  const ssl = (...args: string[]) => run(NAME, 'openssl', args, { cwd: tlsDir, logFile });
  const key = (file: string) =>
    ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);
  const days = '3650';
  await key('ca.key');
  const caExt = [
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ];
  await ssl(
    'req',
    '-x509',
    '-new',
    '-key',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    days,
    '-subj',
    '/CN=pgcdc local CA',
    ...caExt,
  );
  const issue = async (name: string, cn: string, ext: string[]) => {
    await key(`${name}.key`);
    await ssl('req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    fs.writeFileSync(path.join(tlsDir, `${name}.ext`), ['basicConstraints=CA:FALSE', ...ext, ''].join('\n'));
    const ca = ['-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'];
    await ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      ...ca,
      '-out',
      `${name}.crt`,
      '-days',
      days,
      '-extfile',
      `${name}.ext`,
    );
    fs.rmSync(path.join(tlsDir, `${name}.csr`));
    fs.rmSync(path.join(tlsDir, `${name}.ext`));
  };
  const usage = 'keyUsage=critical,digitalSignature,keyAgreement';
  await issue('server', 'localhost', [
    usage,
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  await issue('client', PG_CERT_USER, [usage, 'extendedKeyUsage=clientAuth']);
  for (const f of ['ca.key', 'server.key', 'client.key']) fs.chmodSync(path.join(tlsDir, f), 0o600);
  // Postgres insists that its key belongs to the user it runs as and is not group/world readable.
  chown(path.join(tlsDir, 'server.key'), user);
}

/** A home outside .stack/ gets its own copy of what the server reads (it cannot reach .stack/tls). */
function copyServerTls(home: Home, user: OsUser | undefined): void {
  if (home.tlsDir === tlsDir) return;
  fs.mkdirSync(home.tlsDir, { recursive: true, mode: 0o700 });
  chown(home.tlsDir, user);
  for (const f of ['ca.crt', 'server.crt', 'server.key']) {
    const to = path.join(home.tlsDir, f);
    fs.copyFileSync(path.join(tlsDir, f), to);
    fs.chmodSync(to, 0o600);
    chown(to, user);
  }
}

async function initCluster(
  bin: string,
  state: StackState,
  user: OsUser | undefined,
  home: Home,
): Promise<void> {
  const { dataDir } = home;
  if (fs.existsSync(path.join(dataDir, 'PG_VERSION'))) return;
  process.stderr.write('stack: postgres: creating the cluster (initdb)\n');
  fs.rmSync(dataDir, { recursive: true, force: true }); // a half-made one from an interrupted init
  fs.mkdirSync(home.dir, { recursive: true, mode: home.dir === dir ? 0o755 : 0o700 });
  chown(home.dir, user);
  state.pgPassword ??= randomBytes(18).toString('base64url');
  saveState(state);
  // In the server's home, not in .stack/: initdb runs as OS_USER and must be able to read it.
  const pwFile = path.join(home.dir, '.pwfile');
  fs.writeFileSync(pwFile, `${state.pgPassword}\n`, { mode: 0o600 });
  chown(pwFile, user);
  try {
    await run(
      NAME,
      path.join(bin, 'initdb'),
      [
        '-D',
        dataDir,
        '-U',
        PG_SUPERUSER,
        '--pwfile',
        pwFile,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
      ],
      { cwd: home.dir, logFile, env: { PATH: process.env.PATH, LANG: 'C' }, ...user },
    );
  } finally {
    fs.rmSync(pwFile, { force: true });
  }
  fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), "\ninclude_if_exists = 'pgcdc.conf'\n");
}

/** Settings rewritten at each start (the port may have moved). */
function writeConfig(port: number, user: OsUser | undefined, home: Home): void {
  const { dataDir, runDir } = home;
  fs.mkdirSync(runDir, { recursive: true, mode: 0o755 });
  chown(runDir, user);
  const q = (s: string) => `'${s.replace(/'/g, "''")}'`;
  const conf = [
    '# Written by deploy/local/postgres.ts at each start.',
    `listen_addresses = '127.0.0.1'`,
    `port = ${port}`,
    `unix_socket_directories = ${q(runDir)}`,
    `wal_level = logical`,
    // Test runs create many connectors (each with its own slot); the tests drop theirs.
    `max_replication_slots = 64`,
    `max_wal_senders = 64`,
    `password_encryption = 'scram-sha-256'`,
    `ssl = on`,
    `ssl_ca_file = ${q(path.join(home.tlsDir, 'ca.crt'))}`,
    `ssl_cert_file = ${q(path.join(home.tlsDir, 'server.crt'))}`,
    `ssl_key_file = ${q(path.join(home.tlsDir, 'server.key'))}`,
    // A throwaway cluster: durability against OS crashes is not needed, speed is. (Not
    // synchronous_commit=off: logical decoding only sees flushed WAL, so it would delay changes.)
    `fsync = off`,
    `full_page_writes = off`,
    `shared_buffers = 32MB`,
    `max_connections = 100`,
    `log_line_prefix = '%m [%p] %q%u@%d '`,
    '',
  ].join('\n');
  const hba = [
    '# Written by deploy/local/postgres.ts at each start.',
    `hostssl all ${PG_CERT_USER} 127.0.0.1/32 cert`,
    'local   all         all                 scram-sha-256',
    'local   replication all                 scram-sha-256',
    'host    all         all  127.0.0.1/32   scram-sha-256',
    'host    all         all  ::1/128        scram-sha-256',
    'host    replication all  127.0.0.1/32   scram-sha-256',
    'host    replication all  ::1/128        scram-sha-256',
    '',
  ].join('\n');
  for (const [name, text] of [
    ['pgcdc.conf', conf],
    ['pg_hba.conf', hba],
  ] as const) {
    const file = path.join(dataDir, name);
    fs.writeFileSync(file, text, { mode: 0o600 });
    chown(file, user);
  }
}

async function query(state: StackState, port: number, sql: string, params: unknown[] = []) {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: PG_SUPERUSER,
    password: state.pgPassword,
    database: 'postgres',
    connectionTimeoutMillis: 2000,
  });
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Database `pgcdc` and the client-certificate role exist (idempotent). */
async function provision(state: StackState, port: number): Promise<void> {
  const db = await query(state, port, 'SELECT 1 FROM pg_database WHERE datname = $1', [PG_DATABASE]);
  if (db.rowCount === 0) await query(state, port, `CREATE DATABASE ${PG_DATABASE}`);
  const role = await query(state, port, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [PG_CERT_USER]);
  if (role.rowCount === 0) await query(state, port, `CREATE ROLE ${PG_CERT_USER} LOGIN`);
}

export async function up(state: StackState): Promise<void> {
  let port = await allocatePort(state, 'postgres');
  let home = currentHome();
  // A live postmaster on our data directory is the server, whatever our pid file says.
  const live = livePostmaster(home);
  let pid = live?.pid;
  if (live) {
    fs.writeFileSync(pidFile, `${live.pid}\n`);
    if (Number.isInteger(live.port) && live.port !== port) {
      state.ports.postgres = port = live.port;
      saveState(state);
    }
  } else {
    const bin = await pgBinDir();
    const user = await osUser();
    home = chooseHome(user);
    await ensureTls(user);
    copyServerTls(home, user);
    await initCluster(bin, state, user, home);
    if (!(await portIsFree(port))) port = await allocatePort(state, 'postgres', true);
    writeConfig(port, user, home);
    // A lock file whose PID is not a live postmaster on this directory is stale; postgres would
    // refuse to start while that PID exists (reused, or a zombie not yet reaped).
    fs.rmSync(path.join(home.dataDir, 'postmaster.pid'), { force: true });
    for (const f of fs.existsSync(home.runDir) ? fs.readdirSync(home.runDir) : []) {
      if (f.startsWith('.s.PGSQL.')) fs.rmSync(path.join(home.runDir, f), { force: true }); // socket + its lock
    }
    pid = spawnDetached({
      command: path.join(bin, 'postgres'),
      args: ['-D', home.dataDir],
      cwd: home.dataDir,
      logFile,
      pidFile,
      env: { PATH: process.env.PATH, LANG: 'C' },
      ...user,
    });
  }
  const startedPid = pid;
  const { dataDir } = home;
  await waitReady(NAME, async () => (await query(state, port, 'SELECT 1')).rowCount === 1, {
    timeoutMs: READY_TIMEOUT_MS,
    logFile,
    // pg_ctl restart replaces the postmaster: then the one in the lock file is the server.
    alive: () => isOurProcess(startedPid, dataDir) || livePostmaster(home) !== undefined,
  });
  try {
    await provision(state, port);
  } catch (err) {
    throw new StackError(NAME, `provisioning failed: ${(err as Error).message}`, logFile);
  }
}

export async function down(): Promise<void> {
  const home = currentHome();
  const live = livePostmaster(home);
  if (live) fs.writeFileSync(pidFile, `${live.pid}\n`);
  await serverOf(home).stop();
}

export function status(state: StackState = loadState()): ServerStatus {
  const home = currentHome();
  const live = livePostmaster(home);
  if (live) return { server: NAME, pid: live.pid, port: state.ports.postgres, up: true, log: logFile };
  return serverOf(home).status(state.ports.postgres);
}
