// A real OpenSSH server for tunnel tests: Debian's sshd (installed with apt-get when missing, as
// the stack installs PostgreSQL) on a free loopback port, with its own config, host key,
// client keys (ed25519 without passphrase, RSA with one) and authorized_keys in a temp dir.
// sshd runs in its own process group, so stop() ends the per-connection children too.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, portAccepts } from '../../deploy/local/process.ts';

const SSHD = '/usr/sbin/sshd';

export interface TestSshd {
  host: string;
  port: number;
  user: string;
  dir: string;
  /** SHA256:… of the host key, as ssh-keygen -lf prints it. */
  fingerprint: string;
  /** Base64 of the private key files (what ssh.privateKey takes). */
  ed25519Key: string;
  rsaKey: string;
  rsaPassphrase: string;
  /** sshd's own output. */
  log(): string;
  start(): Promise<void>;
  /** SIGKILL to the whole process group: the listener and every open connection. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

function ensureSshd(): void {
  if (fs.existsSync(SSHD)) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'openssh-server'], {
      env,
      encoding: 'utf8',
    });
  if (install().status !== 0) {
    spawnSync('apt-get', ['update'], { env, encoding: 'utf8' });
    const r = install();
    if (r.status !== 0) throw new Error(`apt-get install openssh-server failed: ${r.stderr}`);
  }
}

/** Every process below `pid` (from /proc: each process's parent). */
function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      /* exited meanwhile */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of parents.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

export async function createSshd(): Promise<TestSshd> {
  ensureSshd();
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation directory
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-sshd-'));
  const keygen = (...args: string[]) =>
    execFileSync('ssh-keygen', ['-q', ...args], { cwd: dir, stdio: 'pipe' });
  keygen('-t', 'ed25519', '-N', '', '-C', 'host', '-f', 'host_ed25519');
  keygen('-t', 'ed25519', '-N', '', '-C', 'client-ed25519', '-f', 'client_ed25519');
  const rsaPassphrase = 'rsa-pass-phrase';
  keygen('-t', 'rsa', '-b', '2048', '-N', rsaPassphrase, '-C', 'client-rsa', '-f', 'client_rsa');
  fs.writeFileSync(
    path.join(dir, 'authorized_keys'),
    fs.readFileSync(path.join(dir, 'client_ed25519.pub'), 'utf8') +
      fs.readFileSync(path.join(dir, 'client_rsa.pub'), 'utf8'),
    { mode: 0o600 },
  );
  const fingerprint = execFileSync('ssh-keygen', ['-lf', path.join(dir, 'host_ed25519.pub')], {
    encoding: 'utf8',
  })
    .split(' ')[1]!
    .trim();
  const port = await freePort();
  const user = os.userInfo().username;
  fs.writeFileSync(
    path.join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_ed25519')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      'X11Forwarding no',
      'PrintMotd no',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  const logFile = path.join(dir, 'sshd.log');
  let child: ChildProcess | null = null;

  const kill = async (): Promise<void> => {
    const c = child;
    child = null;
    if (!c?.pid || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    // sshd's per-connection processes start their own sessions (setsid): find them by parent PID.
    for (const pid of [c.pid, ...descendants(c.pid)]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await exited;
  };
  const read = (f: string) => fs.readFileSync(path.join(dir, f)).toString('base64');
  return {
    host: '127.0.0.1',
    port,
    user,
    dir,
    fingerprint,
    ed25519Key: read('client_ed25519'),
    rsaKey: read('client_rsa'),
    rsaPassphrase,
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
    async start() {
      if (child) return;
      const out = fs.openSync(logFile, 'a');
      child = spawn(SSHD, ['-D', '-e', '-f', path.join(dir, 'sshd_config')], {
        detached: true,
        stdio: ['ignore', out, out],
      });
      fs.closeSync(out);
      const deadline = Date.now() + 10_000;
      while (!(await portAccepts(port, 500))) {
        if (child.exitCode !== null || Date.now() > deadline) {
          throw new Error(
            `sshd did not start:\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    kill,
    async stop() {
      await kill();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
