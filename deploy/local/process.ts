// Shared helpers of the local stack: paths, free ports, detached processes and their PID files,
// waiting for readiness, one-line failures.
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** Repository root (this file is deploy/local/process.ts). */
export const repoRoot = path.resolve(import.meta.dirname, '..', '..');
/**
 * All state, data and logs of the stack. Git-ignored. PGCDC_STACK_HOME moves it (a second,
 * throwaway stack for tests of the stack itself, which must never touch the one the suite uses);
 * deliberately not PGCDC_STACK_DIR, which `./dev stack env` exports to shells and would otherwise
 * point `up` in another clone at this clone's servers.
 */
export const stackDir = process.env.PGCDC_STACK_HOME
  ? path.resolve(process.env.PGCDC_STACK_HOME)
  : path.join(repoRoot, '.stack');
/** Downloaded artifacts (Kafka jars, Apicurio). Git-ignored; survives `rm -rf .stack`. */
export const cacheDir = path.join(repoRoot, '.cache');

/** A failure of one server, reported as a single line naming the server and its log. */
export class StackError extends Error {
  readonly server: string;
  readonly logFile: string | undefined;
  constructor(server: string, message: string, logFile?: string) {
    super(`${server}: ${message}${logFile ? ` (log: ${logFile})` : ''}`);
    this.name = 'StackError';
    this.server = server;
    this.logFile = logFile;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function errorText(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return errorText(err.errors[0]);
  const text = err instanceof Error ? err.message || err.name : String(err);
  return text.replace(/\s+/g, ' ').trim();
}

/** Asks the kernel for a currently free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not allocate a port'));
      });
    });
  });
}

/** True if nothing listens on 127.0.0.1:port (we can bind it ourselves). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** True if something accepts TCP connections on 127.0.0.1:port. */
export function portAccepts(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The command line of a live process, or undefined if there is none with that PID. */
export function processCommandLine(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return undefined;
  }
}

/**
 * True if `pid` is alive and is really ours: its command line contains `marker` (a path inside
 * .stack/), so a PID reused by an unrelated process after a crash is never mistaken for a server.
 */
export function isOurProcess(pid: number | undefined, marker: string): pid is number {
  if (!pid) return false;
  const cmd = processCommandLine(pid);
  if (cmd === undefined || cmd === '') return false; // gone, or a zombie
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/\) Z /.test(stat)) return false;
  } catch {
    return false;
  }
  return cmd.includes(marker);
}

/** The working directory of a live process (PostgreSQL's postmaster works in its data directory). */
export function processCwd(pid: number): string | undefined {
  try {
    return fs.realpathSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined;
  }
}

export function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(pidFile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export interface DetachedOptions {
  command: string;
  args: string[];
  cwd: string;
  logFile: string;
  pidFile: string;
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
}

/**
 * Starts a server detached from this process (own session, stdio to its log file, unref'd) so
 * that `up` can return while it keeps running, and records its PID.
 */
export function spawnDetached(opts: DetachedOptions): number {
  fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
  const log = fs.openSync(opts.logFile, 'a');
  try {
    fs.writeSync(
      log,
      `\n==== ${new Date().toISOString()} starting: ${opts.command} ${opts.args.join(' ')}\n`,
    );
    const child = spawn(opts.command, opts.args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: ['ignore', log, log],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    child.on('error', () => {}); // reported through the log / readiness timeout
    child.unref();
    if (!child.pid) throw new Error(`could not start ${opts.command}`);
    fs.writeFileSync(opts.pidFile, `${child.pid}\n`);
    return child.pid;
  } finally {
    fs.closeSync(log);
  }
}

/**
 * Stops a process we started: `signal` first, then SIGKILL after `graceMs`; waits until it is gone.
 * Returns false if it was not running.
 */
export async function stopProcess(
  pid: number,
  marker: string,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 30_000,
): Promise<boolean> {
  if (!isOurProcess(pid, marker)) return false;
  const send = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  send(signal);
  const deadline = Date.now() + graceMs;
  while (isOurProcess(pid, marker)) {
    if (Date.now() > deadline) {
      send('SIGKILL');
      const killDeadline = Date.now() + 10_000;
      while (isOurProcess(pid, marker) && Date.now() < killDeadline) await sleep(100);
      break;
    }
    await sleep(100);
  }
  return true;
}

/**
 * Polls `check` until it resolves true, or fails with one line naming the server and its log.
 * Fails early if the process died.
 */
export async function waitReady(
  server: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs: number; logFile: string; alive?: () => boolean; intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: unknown;
  while (true) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (opts.alive && !opts.alive()) {
      throw new StackError(server, 'process exited during startup', opts.logFile);
    }
    if (Date.now() > deadline) {
      const why = last ? `; last error: ${errorText(last)}` : '';
      throw new StackError(
        server,
        `not ready after ${Math.round(opts.timeoutMs / 1000)}s${why}`,
        opts.logFile,
      );
    }
    await sleep(opts.intervalMs ?? 300);
  }
}

/** Runs a command to completion; rejects with a StackError naming the server and the log on failure. */
export function run(
  server: string,
  command: string,
  args: string[],
  opts: SpawnOptions & { logFile: string },
): Promise<string> {
  const { logFile, ...spawnOpts } = opts;
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...spawnOpts, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stdout = '';
    child.stdout?.on('data', (b: Buffer) => {
      chunks.push(b);
      stdout += b.toString('utf8');
    });
    child.stderr?.on('data', (b: Buffer) => chunks.push(b));
    child.once('error', (err) => {
      fs.appendFileSync(logFile, `\n==== ${new Date().toISOString()} $ ${command} ${args.join(' ')}\n`);
      reject(new StackError(server, `${command} failed: ${errorText(err)}`, logFile));
    });
    child.once('close', (code, signal) => {
      const out = Buffer.concat(chunks).toString('utf8');
      fs.appendFileSync(logFile, `\n==== ${new Date().toISOString()} $ ${command} ${args.join(' ')}\n${out}`);
      if (code === 0) return resolve(stdout);
      // The first error line if there is one (Maven prints [ERROR] and then advice), else the last.
      const lines = out
        .replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '') // colours
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      const why = lines.find((l) => /\bERROR\b|FATAL|error:/i.test(l)) ?? lines.pop() ?? '';
      reject(
        new StackError(server, `${path.basename(command)} exited with ${code ?? signal}: ${why}`, logFile),
      );
    });
  });
}

/** True if `command` is on PATH. */
export function haveCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

let aptQueue: Promise<unknown> = Promise.resolve();

/** Installs Debian packages (apt-get update first; one apt-get at a time); sudo only when not root. */
export function aptInstall(server: string, packages: string[], logFile: string): Promise<void> {
  const root = process.getuid?.() === 0;
  const cmd = root ? 'apt-get' : 'sudo';
  const pre = root ? [] : ['-n', 'apt-get'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = async () => {
    process.stderr.write(`stack: ${server}: installing ${packages.join(' ')} with apt-get\n`);
    await run(server, cmd, [...pre, 'update'], { logFile, env });
    await run(server, cmd, [...pre, 'install', '-y', '--no-install-recommends', ...packages], {
      logFile,
      env,
    });
  };
  const next = aptQueue.then(install, install);
  aptQueue = next.catch(() => {});
  return next;
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function writeJson(file: string, value: unknown, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode });
  fs.renameSync(tmp, file);
}

/** Exclusive lock on the stack directory so concurrent `up`/`down` calls don't race. */
export async function withStackLock<T>(fn: () => Promise<T>, timeoutMs = 600_000): Promise<T> {
  fs.mkdirSync(stackDir, { recursive: true });
  const lockFile = path.join(stackDir, 'lock');
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  while (true) {
    try {
      fs.writeFileSync(lockFile, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = readPid(lockFile);
      if (!holder || processCommandLine(holder) === undefined) {
        fs.rmSync(lockFile, { force: true }); // stale: its owner is gone
        continue;
      }
      if (Date.now() > deadline) throw new StackError('stack', `locked by pid ${holder} (${lockFile})`);
      if (!announced) process.stderr.write(`stack: waiting for pid ${holder} (another stack command)\n`);
      announced = true;
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    if (readPid(lockFile) === process.pid) fs.rmSync(lockFile, { force: true });
  }
}

/** One line of `status`. */
export interface ServerStatus {
  server: string;
  pid: number | undefined;
  port: number | undefined;
  up: boolean;
  log: string;
}

/**
 * A server of the stack as a process: where its PID is recorded, what its command line contains
 * (so a recycled PID is never mistaken for it), and how it is asked to stop.
 */
export class ServerProcess {
  readonly name: string;
  readonly pidFile: string;
  readonly marker: string;
  readonly logFile: string;
  readonly stopSignal: NodeJS.Signals;
  readonly stopTimeoutMs: number;

  constructor(opts: {
    name: string;
    pidFile: string;
    marker: string;
    logFile: string;
    stopSignal: NodeJS.Signals;
    stopTimeoutMs: number;
  }) {
    this.name = opts.name;
    this.pidFile = opts.pidFile;
    this.marker = opts.marker;
    this.logFile = opts.logFile;
    this.stopSignal = opts.stopSignal;
    this.stopTimeoutMs = opts.stopTimeoutMs;
  }

  /** The PID of our running server, or undefined. */
  runningPid(): number | undefined {
    const pid = readPid(this.pidFile);
    return isOurProcess(pid, this.marker) ? pid : undefined;
  }

  async stop(): Promise<void> {
    const pid = this.runningPid();
    if (pid) await stopProcess(pid, this.marker, this.stopSignal, this.stopTimeoutMs);
    fs.rmSync(this.pidFile, { force: true });
  }

  status(port: number | undefined): ServerStatus {
    const pid = this.runningPid();
    return { server: this.name, pid, port, up: pid !== undefined, log: this.logFile };
  }
}

/**
 * kafkajs 2.2.4 calls setTimeout with a negative delay when a request queue has nothing pending
 * (requestQueue/index.js scheduleCheckPendingRequests); Node >= 23 warns about it. Harmless: the
 * timer fires at once, as it always did. Keep the CLI's output readable.
 */
export function silenceKafkajsTimeoutWarning(): void {
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
    const name = warning instanceof Error ? warning.name : type;
    if (name === 'TimeoutNegativeWarning') return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}
