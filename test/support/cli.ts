// Running `pgcdc run` as a child process, configured by environment variables alone (plus PATH),
// as a user's shell or a Kubernetes pod would.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface WorkerProcess {
  child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output: () => string;
}

/** Workers spawned by this process: killWorkers() ends those still running. */
const spawned: ChildProcess[] = [];

export function spawnWorker(env: Record<string, string>, args: string[] = ['run']): WorkerProcess {
  let output = '';
  const child = spawn(process.execPath, ['--disable-warning=TimeoutNegativeWarning', CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.push(child);
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  return { child, output: () => output };
}

/** SIGKILLs every spawned worker still running and waits for them to exit. */
export async function killWorkers(): Promise<void> {
  for (const c of spawned) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(spawned.map((c) => exited(c)));
}

/** The exit code (null when killed by a signal). */
export const exited = (child: ChildProcess): Promise<number | null> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}
