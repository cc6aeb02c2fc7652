// The local stack's PostgreSQL module (deploy/local/postgres.ts) on a throwaway stack of its own
// (PGCDC_STACK_HOME in a temp directory), never the shared stack the other tests use:
// - after `pg_ctl restart -m immediate` (a new postmaster with a PID our pid file does not know),
//   `up` recognises the running server by its lock file and leaves that file alone (deleting it
//   made PostgreSQL shut itself down a minute later: "data directory lock file is invalid");
// - run as root from a directory other users cannot enter (mode 0700, like `mktemp -d` or /root),
//   `up` still starts the server, whose files then live where its OS user can reach them.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

const MODULE = new URL('../../deploy/local/postgres.ts', import.meta.url).href;
const STATE = new URL('../../deploy/local/state.ts', import.meta.url).href;
const root = process.getuid?.() === 0;

interface Driven {
  home: { dir: string; dataDir: string };
  live: { pid: number; port: number } | undefined;
  pidFile: number | undefined;
  port: number;
  password: string;
}

/** Runs `up` or `down` of the module in a fresh process, as `./dev stack up` would. */
function drive(stackHome: string, command: 'up' | 'down'): Driven {
  const code = `
    const pgm = await import(${JSON.stringify(MODULE)});
    const st = await import(${JSON.stringify(STATE)});
    const state = st.loadState();
    await st.allocatePort(state, 'postgres');
    if (process.env.CMD === 'up') await pgm.up(state);
    else await pgm.down();
    const fs = await import('node:fs');
    const path = await import('node:path');
    let pidFile;
    try { pidFile = Number(fs.readFileSync(path.join(process.env.PGCDC_STACK_HOME, 'postgres', 'pid'), 'utf8')); } catch {}
    const after = st.loadState();
    process.stdout.write(JSON.stringify({ home: pgm.currentHome(), live: pgm.livePostmaster(), pidFile,
      port: after.ports.postgres, password: after.pgPassword }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, PGCDC_STACK_HOME: stackHome, CMD: command },
    encoding: 'utf8',
    timeout: 10 * 60_000,
  });
  assert.equal(r.status, 0, `${command} failed: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as Driven;
}

/** The PID of the postmaster whose backend answers on `port` (a backend's parent). */
async function answeringPostmaster(d: Driven): Promise<number> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port: d.port,
    user: 'postgres',
    password: d.password,
    database: 'pgcdc',
  });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const stat = fs.readFileSync(`/proc/${rows[0]!.pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } finally {
    await client.end();
  }
}

/** Alive: exists and is not a zombie (a detached server, once stopped, may wait to be reaped). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function lockFile(d: Driven): string {
  return path.join(d.home.dataDir, 'postmaster.pid');
}

/** The OS user the server runs as when we are root (deploy/local/postgres.ts OS_USER). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (!root) return undefined;
  const id = (flag: string) => Number(spawnSync('id', [flag, 'pgcdc'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

function pgBin(): string {
  const base = '/usr/lib/postgresql';
  const v = fs.readdirSync(base).sort((a, b) => Number(b) - Number(a))[0]!;
  return path.join(base, v, 'bin');
}

describe('local stack: PostgreSQL', { timeout: 10 * 60_000 }, () => {
  const cleanups: Array<() => void> = [];
  after(() => {
    for (const c of cleanups.reverse()) c();
  });

  /** A throwaway stack; afterwards its server (found by its lock file, by PID) is stopped. */
  function throwawayStack(mode: number): string {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-stack-'));
    fs.chmodSync(tmp, mode);
    const stackHome = path.join(tmp, 'clone', '.stack');
    fs.mkdirSync(path.dirname(stackHome), { mode: 0o755 });
    cleanups.push(() => {
      for (const home of [path.join(stackHome, 'postgres'), readRecordedHome(stackHome)]) {
        if (!home) continue;
        try {
          const pid = Number(
            fs.readFileSync(path.join(home, 'data', 'postmaster.pid'), 'utf8').split('\n')[0],
          );
          if (pid > 0) process.kill(pid, 'SIGQUIT');
        } catch {
          // not running
        }
        if (home !== path.join(stackHome, 'postgres')) fs.rmSync(home, { recursive: true, force: true });
      }
      try {
        const pid = Number(fs.readFileSync(path.join(stackHome, 'postgres', 'pid'), 'utf8'));
        if (pid > 0 && alive(pid)) process.kill(pid, 'SIGQUIT'); // a server that lost its lock file
      } catch {
        // none recorded
      }
      fs.rmSync(tmp, { recursive: true, force: true });
    });
    return stackHome;
  }

  function readRecordedHome(stackHome: string): string | undefined {
    try {
      return fs.readFileSync(path.join(stackHome, 'postgres', 'server-home'), 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  test('after pg_ctl restart -m immediate, up recognises the server and keeps its lock file', async () => {
    const stackHome = throwawayStack(0o755);
    const first = drive(stackHome, 'up');
    assert.ok(first.live, 'up started a server');
    assert.equal(first.pidFile, first.live.pid);

    const user = serverUser();
    const restart = spawnSync(
      path.join(pgBin(), 'pg_ctl'),
      [
        'restart',
        '-m',
        'immediate',
        '-w',
        '-D',
        first.home.dataDir,
        '-l',
        path.join(first.home.dir, 'pg_ctl.log'),
      ],
      { cwd: first.home.dataDir, encoding: 'utf8', env: { PATH: process.env.PATH, LANG: 'C' }, ...user },
    );
    assert.equal(restart.status, 0, restart.stderr + restart.stdout);
    const lockBefore = fs.readFileSync(lockFile(first), 'utf8');
    const restarted = Number(lockBefore.split('\n')[0]);
    assert.notEqual(restarted, first.live.pid, 'pg_ctl started a new postmaster');

    const second = drive(stackHome, 'up');
    assert.equal(
      fs.readFileSync(lockFile(second), 'utf8'),
      lockBefore,
      'the lock file of the live server is untouched',
    );
    assert.equal(second.live?.pid, restarted);
    assert.equal(second.pidFile, restarted, 'the pid file follows the running server');
    assert.equal(second.port, first.port, 'the same port');
    assert.equal(
      await answeringPostmaster(second),
      restarted,
      'the restarted server answers (no second one)',
    );

    drive(stackHome, 'down');
    assert.equal(alive(restarted), false, 'down stops the restarted server');
  });

  test(
    'as root from a directory other users cannot enter, up starts the server',
    { skip: root ? false : 'needs root (the server then runs as another OS user)' },
    async () => {
      const stackHome = throwawayStack(0o700);
      assert.equal(fs.statSync(path.dirname(path.dirname(stackHome))).mode & 0o777, 0o700);
      const d = drive(stackHome, 'up');
      assert.ok(d.live, 'the server runs');
      assert.match(d.home.dir, /^\/var\/tmp\/pgcdc-stack-[0-9a-f]{16}$/);
      assert.equal(
        readRecordedHome(stackHome),
        d.home.dir,
        'the choice is recorded in .stack/postgres/server-home',
      );
      assert.equal(await answeringPostmaster(d), d.live.pid);

      // A second up finds it again (the recorded home), and down stops it.
      const again = drive(stackHome, 'up');
      assert.equal(again.live?.pid, d.live.pid);
      drive(stackHome, 'down');
      assert.equal(alive(d.live.pid), false, 'down stops it');
    },
  );
});
