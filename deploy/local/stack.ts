// The local stack: PostgreSQL + Kafka (KRaft) + Apicurio Registry on 127.0.0.1, state under .stack/.
//
//   npm run stack -- up       start what is not running, wait until ready (idempotent)
//   npm run stack -- up --brokers 3
//                             also a three-broker Kafka cluster (deploy/local/kafka-cluster.ts)
//                             for the durability tests; the single broker stays the quick path
//   npm run stack -- down     stop exactly the processes `up` started (the cluster's too)
//   npm run stack -- status   server, pid, port, up/down
//   npm run stack -- env      `export PGCDC_...=...` lines (eval "$(npm run -s stack -- env)")
//
// Also a module: tests and scripts call stackUp() / readStackEnv().
import fs from 'node:fs';
import * as kafka from './kafka.ts';
import * as kafkaCluster from './kafka-cluster.ts';
import * as postgres from './postgres.ts';
import { errorText, portAccepts, StackError, withStackLock, type ServerStatus } from './process.ts';
import * as registry from './registry.ts';
import {
  allocatePort,
  computeEnv,
  envExports,
  envFile,
  loadState,
  readStackEnv,
  writeStackEnv,
  type StackEnv,
  type StackState,
} from './state.ts';

export { readStackEnv, type StackEnv };

interface Server {
  up(state: StackState): Promise<void>;
  down(): Promise<void>;
  status(state: StackState): ServerStatus;
}

const servers: Record<string, Server> = { postgres, kafka, registry };

/** Starts whatever is not running (all servers in parallel), waits until ready, returns the env. */
export async function stackUp(): Promise<StackEnv> {
  return withStackLock(async () => {
    const state = loadState();
    // Ports first, one at a time, so that the parallel starts below don't race for them.
    for (const key of ['postgres', 'kafka', 'kafkaController', 'kafkaSasl', 'kafkaSsl', 'registry'] as const)
      await allocatePort(state, key);
    const results = await Promise.allSettled(Object.values(servers).map((s) => s.up(state)));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) {
      throw new Error(failures.map((f) => (f instanceof StackError ? f.message : errorText(f))).join('\n'));
    }
    const env = computeEnv(loadState());
    writeStackEnv(env);
    return env;
  });
}

/** Stops every server this stack started (and only those), waiting until they have exited. */
export async function stackDown(): Promise<void> {
  await withStackLock(async () => {
    const results = await Promise.allSettled([
      ...Object.values(servers).map((s) => s.down()),
      kafkaCluster.down(),
    ]);
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [errorText(r.reason)] : []));
    if (failures.length > 0) throw new StackError('stack', `down: ${failures.join('; ')}`);
    // Tests then say "not running" instead of timing out against dead ports. Data and ports stay.
    fs.rmSync(envFile, { force: true });
  });
}

/** Starts the three-broker cluster (beside the stack); returns its bootstrap list. */
export async function clusterUp(): Promise<string> {
  return withStackLock(() => kafkaCluster.up());
}

export async function stackStatus(): Promise<ServerStatus[]> {
  const state = loadState();
  return Promise.all(
    [...Object.values(servers).map((s) => s.status(state)), ...kafkaCluster.status()].map(async (st) => ({
      ...st,
      up: st.up && st.port !== undefined && (await portAccepts(st.port)),
    })),
  );
}

async function main(argv: string[]): Promise<number> {
  const command = argv[0] ?? 'status';
  switch (command) {
    case 'up': {
      const started = Date.now();
      const brokers = argv.includes('--brokers') ? argv[argv.indexOf('--brokers') + 1] : '1';
      if (brokers !== '1' && brokers !== '3') {
        process.stderr.write('stack: --brokers is 1 (the default) or 3\n');
        return 2;
      }
      await stackUp();
      if (brokers === '3') await clusterUp();
      for (const s of await stackStatus()) process.stderr.write(formatStatus(s));
      process.stderr.write(
        `stack: up in ${((Date.now() - started) / 1000).toFixed(1)}s; env: .stack/env.json\n`,
      );
      return 0;
    }
    case 'down':
      await stackDown();
      process.stderr.write('stack: down\n');
      return 0;
    case 'status': {
      const all = await stackStatus();
      for (const s of all) process.stdout.write(formatStatus(s));
      return all.every((s) => s.up || s.server.startsWith('kafka-')) ? 0 : 3;
    }
    case 'env': {
      const env = readStackEnv();
      if (!env) throw new StackError('stack', 'local stack is not running: run ./dev stack up');
      process.stdout.write(`${envExports(env)}\n`);
      return 0;
    }
    default:
      process.stderr.write('usage: npm run stack -- up [--brokers 3]|down|status|env\n');
      return 2;
  }
}

function formatStatus(s: ServerStatus): string {
  const cols = [
    s.server.padEnd(9),
    `pid ${String(s.pid ?? '-').padEnd(8)}`,
    `port ${String(s.port ?? '-').padEnd(6)}`,
  ];
  return `${cols.join(' ')} ${s.up ? 'up  ' : 'down'}  ${s.log}\n`;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      const known = err instanceof StackError || (err instanceof Error && err.message.includes('(log: '));
      process.stderr.write(`${known ? (err as Error).message : `stack: ${errorText(err)}`}\n`);
      process.exit(1);
    },
  );
}
