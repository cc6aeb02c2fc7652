// PostgreSQL of the local stack: a throwaway cluster (Debian's binaries) under .stack/postgres,
// logical decoding on, scram-sha-256 everywhere, TLS with a local CA and a client-cert role.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import {
  aptInstall,
  isOurProcess,
  portIsFree,
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
  PG_CERT_USER,
  PG_DATABASE,
  PG_SUPERUSER,
  saveState,
  tlsDir,
  type StackState,
} from './state.ts';

const NAME = 'postgres';
const dir = path.join(stackDir, 'postgres');
const dataDir = path.join(dir, 'data');
const runDir = path.join(dir, 'run');
const logFile = path.join(dir, 'postgres.log');
const pidFile = path.join(dir, 'pid');
/** Postgres refuses to run as root; when we are root it runs as this system user. */
const OS_USER = 'pgcdc';
const READY_TIMEOUT_MS = 60_000;

// SIGINT = PostgreSQL's "fast" shutdown: disconnects clients (SIGTERM would wait for them to leave).
const server = new ServerProcess({
  name: NAME,
  pidFile,
  marker: dataDir,
  logFile,
  stopSignal: 'SIGINT',
  stopTimeoutMs: 30_000,
});

interface OsUser {
  uid: number;
  gid: number;
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

async function initCluster(bin: string, state: StackState, user: OsUser | undefined): Promise<void> {
  if (fs.existsSync(path.join(dataDir, 'PG_VERSION'))) return;
  process.stderr.write('stack: postgres: creating the cluster (initdb)\n');
  fs.rmSync(dataDir, { recursive: true, force: true }); // a half-made one from an interrupted init
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  chown(dir, user);
  state.pgPassword ??= randomBytes(18).toString('base64url');
  saveState(state);
  const pwFile = path.join(dir, '.pwfile');
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
      { cwd: dir, logFile, env: { PATH: process.env.PATH, LANG: 'C' }, ...user },
    );
  } finally {
    fs.rmSync(pwFile, { force: true });
  }
  fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), "\ninclude_if_exists = 'pgcdc.conf'\n");
}

/** Settings rewritten at each start (the port may have moved). */
function writeConfig(port: number, user: OsUser | undefined): void {
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
    `ssl_ca_file = ${q(path.join(tlsDir, 'ca.crt'))}`,
    `ssl_cert_file = ${q(path.join(tlsDir, 'server.crt'))}`,
    `ssl_key_file = ${q(path.join(tlsDir, 'server.key'))}`,
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
  let pid = server.runningPid();
  let port = await allocatePort(state, 'postgres');
  if (!pid) {
    const bin = await pgBinDir();
    const user = await osUser();
    await ensureTls(user);
    await initCluster(bin, state, user);
    if (!(await portIsFree(port))) port = await allocatePort(state, 'postgres', true);
    writeConfig(port, user);
    // Lock files left by a killed server make postgres refuse to start while their PID exists
    // (reused, or a zombie not yet reaped); we know no server of ours runs on this directory.
    fs.rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
    for (const f of fs.existsSync(runDir) ? fs.readdirSync(runDir) : []) {
      if (f.startsWith('.s.PGSQL.')) fs.rmSync(path.join(runDir, f), { force: true }); // socket + its lock
    }
    pid = spawnDetached({
      command: path.join(bin, 'postgres'),
      args: ['-D', dataDir],
      cwd: dataDir,
      logFile,
      pidFile,
      env: { PATH: process.env.PATH, LANG: 'C' },
      ...user,
    });
  }
  const startedPid = pid;
  await waitReady(NAME, async () => (await query(state, port, 'SELECT 1')).rowCount === 1, {
    timeoutMs: READY_TIMEOUT_MS,
    logFile,
    alive: () => isOurProcess(startedPid, dataDir),
  });
  try {
    await provision(state, port);
  } catch (err) {
    throw new StackError(NAME, `provisioning failed: ${(err as Error).message}`, logFile);
  }
}

export async function down(): Promise<void> {
  await server.stop();
}

export function status(state: StackState): ServerStatus {
  return server.status(state.ports.postgres);
}
