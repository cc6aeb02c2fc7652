// Apicurio Registry 3.x of the local stack (Quarkus app from Maven Central, H2 storage in a
// file under .stack/registry), with a global BACKWARD compatibility rule. Clients use its
// Confluent-compatible API at /apis/ccompat/v7.
import fs from 'node:fs';
import path from 'node:path';
import {
  cacheDir,
  isOurProcess,
  portIsFree,
  spawnDetached,
  stackDir,
  StackError,
  waitReady,
  ServerProcess,
  type ServerStatus,
} from './process.ts';
import { ensureJavaAndMaven, jvmOptions, mavenCache } from './java.ts';
import { allocatePort, type StackState } from './state.ts';

const NAME = 'registry';
/**
 * 3.0.x is the newest Apicurio Registry 3 line that runs on Java 17: 3.3.x is compiled for
 * Java 21 (class file 65) and fails with UnsupportedClassVersionError on Debian 12's JDK.
 */
export const APICURIO_VERSION = '3.0.9';
const ARTIFACT = `io.apicurio:apicurio-registry-app:${APICURIO_VERSION}:tar.gz:all`;
const appDir = path.join(cacheDir, `apicurio-registry-${APICURIO_VERSION}`);
const dir = path.join(stackDir, 'registry');
const dbDir = path.join(dir, 'db');
const logFile = path.join(dir, 'registry.log');
const pidFile = path.join(dir, 'pid');
const READY_TIMEOUT_MS = 120_000;

const server = new ServerProcess({
  name: NAME,
  pidFile,
  marker: dir,
  logFile,
  stopSignal: 'SIGTERM',
  stopTimeoutMs: 30_000,
});

async function ensureApp(): Promise<string> {
  await mavenCache(NAME, appDir, ARTIFACT, logFile, (out) => [
    'dependency:unpack',
    `-Dartifact=${ARTIFACT}`,
    `-DoutputDirectory=${out}`,
  ]);
  // 3.0.x ships a legacy "-runner.jar"; newer tarballs a fast-jar "quarkus-run.jar".
  const jar = ['quarkus-run.jar', `apicurio-registry-app-${APICURIO_VERSION}-runner.jar`]
    .map((f) => path.join(appDir, f))
    .find((f) => fs.existsSync(f));
  if (!jar) {
    fs.rmSync(appDir, { recursive: true, force: true }); // resolve it again next time
    throw new StackError(NAME, `no runnable jar in the unpacked ${ARTIFACT}`, logFile);
  }
  return jar;
}

const base = (port: number) => `http://127.0.0.1:${port}`;

async function http(url: string, init?: RequestInit): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
}

/** Ready = the Confluent-compatible API lists subjects. */
async function ready(port: number): Promise<boolean> {
  const res = await http(`${base(port)}/apis/ccompat/v7/subjects`);
  await res.arrayBuffer();
  return res.status === 200;
}

/** Global rule COMPATIBILITY=BACKWARD through the v3 admin API (create, or correct if different). */
async function ensureGlobalRule(port: number): Promise<void> {
  const rules = `${base(port)}/apis/registry/v3/admin/rules`;
  const body = JSON.stringify({ ruleType: 'COMPATIBILITY', config: 'BACKWARD' });
  const headers = { 'content-type': 'application/json' };
  const current = await http(`${rules}/COMPATIBILITY`);
  const text = await current.text();
  let res: Response | undefined;
  if (current.status === 404) res = await http(rules, { method: 'POST', headers, body });
  else if (current.status !== 200)
    throw new Error(`GET ${rules}/COMPATIBILITY: HTTP ${current.status} ${text}`);
  else if ((JSON.parse(text) as { config?: string }).config !== 'BACKWARD') {
    res = await http(`${rules}/COMPATIBILITY`, { method: 'PUT', headers, body });
  }
  if (res && !res.ok) throw new Error(`setting the global rule: HTTP ${res.status} ${await res.text()}`);
}

export async function up(state: StackState): Promise<void> {
  let pid = server.runningPid();
  let port = await allocatePort(state, 'registry');
  if (!pid) {
    await ensureJavaAndMaven(NAME, logFile);
    const jar = await ensureApp();
    if (!(await portIsFree(port))) port = await allocatePort(state, 'registry', true);
    fs.mkdirSync(dbDir, { recursive: true });
    pid = spawnDetached({
      command: 'java',
      args: [
        ...jvmOptions(dir),
        '-XX:TieredStopAtLevel=1',
        `-Dquarkus.http.host=127.0.0.1`,
        `-Dquarkus.http.port=${port}`,
        // Keep schemas across restarts, like Kafka keeps the messages that reference their ids.
        `-Dapicurio.datasource.url=jdbc:h2:file:${path.join(dbDir, 'registry')}`,
        `-Dapicurio.import.work-dir=${dir}`,
        `-Djava.io.tmpdir=${dir}`,
        '-jar',
        jar,
      ],
      cwd: dir,
      logFile,
      pidFile,
    });
  }
  const startedPid = pid;
  await waitReady(NAME, () => ready(port), {
    timeoutMs: READY_TIMEOUT_MS,
    logFile,
    alive: () => isOurProcess(startedPid, dir),
    intervalMs: 500,
  });
  try {
    await ensureGlobalRule(port);
  } catch (err) {
    throw new StackError(NAME, (err as Error).message, logFile);
  }
}

export async function down(): Promise<void> {
  await server.stop();
}

export function status(state: StackState): ServerStatus {
  return server.status(state.ports.registry);
}
