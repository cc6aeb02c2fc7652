// pgcdc command line. User mistakes (bad config, unreachable server, missing privilege) print one
// line and exit non-zero; anything else is a bug and prints its stack.
import { parseArgs } from 'node:util';
import { loadConfig, redactedConfig } from '../config/load.ts';
import { isUserError, UserError } from '../errors.ts';
import { createLogger } from '../worker/log.ts';
import { PGCDC_VERSION } from '../avro/envelope.ts';
import { configSecrets, Worker } from '../worker/worker.ts';
import { WalGuard } from '../worker/wal-guard.ts';
import { createMetrics } from '../worker/metrics.ts';
import { httpTls, Liveness, startHttpServer, type HttpServer } from '../worker/http.ts';
import { httpAccess } from '../worker/auth.ts';
import { ProgressReporter } from '../worker/progress.ts';
import { checkCommand, preflightBeforeRun } from './check.ts';
import { discoverCommand } from './discover.ts';
import { offsetsCommand } from './offsets.ts';
import { snapshotCommand } from './snapshot.ts';

const USAGE = `pgcdc ${PGCDC_VERSION} — PostgreSQL change data capture to Kafka

Usage:
  pgcdc run [--config FILE] [--<setting>=<value> ...]   stream the database into Kafka
  pgcdc check [--config FILE] [--fix] [--json]          check every prerequisite (exit 0: all passed)
  pgcdc discover [--config FILE] [--json]               list the tables and print a tables.include list
  pgcdc offsets [show|reset --yes] [--config FILE]      the stored position; reset: snapshot again at next start
  pgcdc snapshot --tables T[,T...] [--filter T=SQL]    ask the running worker to re-read tables while it
        [--cancel] [--url URL] [--config FILE]         streams (docs/snapshots.md); --cancel stops it
  pgcdc --version | --help

Settings come from the config file, then PGCDC_* environment variables, then --<setting> flags
(e.g. --postgres.host=db.internal --snapshot.mode=never). See docs/configuration.md.

  --exit-on-failure-after=SECONDS|never   after the connector fails, keep reporting FAILED on the
      HTTP API this long, then exit non-zero (default 120; 0 without the HTTP server). 'never' keeps
      the process up until a restart through the API or a signal. Also PGCDC_EXIT_ON_FAILURE_AFTER.
  --skip-checks   run: start without the prerequisite checks (see pgcdc check). Also PGCDC_SKIP_CHECKS=true.
  --fix           check: create the publication / add missing tables, REPLICA IDENTITY FULL on
      tables without a primary key, as far as the user's privileges allow.
  --json          check, discover: machine-readable output.

check and discover need only the postgres.* settings (check also tries Kafka and the registry
when they are set). See docs/prerequisites.md.
`;

/** Default time a FAILED connector stays visible (status, readyz, metrics) before the process exits. */
const DEFAULT_FAILURE_GRACE_S = 120;

function failureGraceMs(value: string | undefined, httpEnabled: boolean): number | null {
  if (value === undefined || value === '') return httpEnabled ? DEFAULT_FAILURE_GRACE_S * 1000 : 0;
  if (value === 'never') return null;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new UserError(`--exit-on-failure-after: expected a number of seconds or 'never', got '${value}'`);
  }
  return seconds * 1000;
}

/** How long a SIGTERM may take to drain before the process gives up and exits non-zero. */
const STOP_TIMEOUT_MS = 30_000;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
      'exit-on-failure-after': { type: 'string' },
      'skip-checks': { type: 'boolean' },
      fix: { type: 'boolean' },
      json: { type: 'boolean' },
      yes: { type: 'boolean' },
      tables: { type: 'string' },
      filter: { type: 'string', multiple: true },
      cancel: { type: 'boolean' },
      url: { type: 'string' },
    },
    strict: false,
    allowPositionals: true,
  });
  if (values.version) {
    process.stdout.write(`${PGCDC_VERSION}\n`);
    return 0;
  }
  const command = positionals[0];
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  const file = typeof values.config === 'string' ? values.config : process.env.PGCDC_CONFIG;
  if (command === 'check') {
    return checkCommand({
      file,
      env: process.env,
      args: argv,
      fix: values.fix === true,
      json: values.json === true,
    });
  }
  if (command === 'discover') {
    return discoverCommand({ file, env: process.env, args: argv, json: values.json === true });
  }
  if (command === 'offsets') {
    return offsetsCommand({
      action: positionals[1],
      file,
      env: process.env,
      args: argv,
      yes: values.yes === true,
    });
  }
  if (command === 'snapshot') {
    return snapshotCommand({
      file,
      env: process.env,
      args: argv,
      tables: typeof values.tables === 'string' ? values.tables : undefined,
      filters: (values.filter as string[] | undefined) ?? [],
      cancel: values.cancel === true,
      url: typeof values.url === 'string' ? values.url : undefined,
    });
  }
  if (command !== 'run') {
    process.stderr.write(`pgcdc: unknown command '${command}'; see pgcdc --help\n`);
    return 2;
  }
  const config = loadConfig({ file, env: process.env, args: argv });
  const log = createLogger({
    connector: config.name,
    level: config.log.level,
    format: config.log.format,
    secrets: configSecrets(config),
  });
  log.debug('configuration', { config: redactedConfig(config) });
  // Before the prerequisite checks: an API left open to the network is refused at once, not after
  // a minute of connecting to PostgreSQL.
  const httpEnabled = config.http.port > 0;
  const access = httpEnabled ? httpAccess(config.http) : null;
  const tls = httpEnabled ? httpTls(config.http.tls) : null;
  const skipChecks =
    values['skip-checks'] === true || /^(1|true|yes)$/i.test(process.env.PGCDC_SKIP_CHECKS ?? '');
  // The prerequisites (wal_level, privileges, publication, replica identity, slot): refuse to start
  // with the same lines as pgcdc check rather than fail later, half-way into a snapshot.
  if (!skipChecks && !(await preflightBeforeRun(config, log))) return 2;
  const graceArg = values['exit-on-failure-after'];
  const worker = new Worker(config, log, {
    failureGraceMs: failureGraceMs(
      typeof graceArg === 'string' ? graceArg : process.env.PGCDC_EXIT_ON_FAILURE_AFTER,
      config.http.port > 0,
    ),
  });
  // capture.method xmin has no slot: nothing holds WAL, and a heartbeat would only write some.
  const guard =
    config.capture.method === 'xmin'
      ? null
      : new WalGuard(worker, log, { slot: config.slot.name, heartbeat: config.heartbeat });
  const metrics = createMetrics(worker, guard);
  const liveness = new Liveness();
  let http: HttpServer | null = null;
  if (access) {
    try {
      http = await startHttpServer(
        { worker, metrics, guard, liveness, log },
        { host: config.http.host, port: config.http.port, access, tls },
      );
    } catch (err) {
      liveness.stop();
      const e = err as NodeJS.ErrnoException;
      throw new UserError(
        `cannot listen on ${config.http.host}:${config.http.port} (${e.code ?? e.message}); set http.port (0 disables the HTTP server)`,
      );
    }
  }
  guard?.start();
  const progress = new ProgressReporter(worker, log);
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`received ${signal}: draining and stopping`);
    setTimeout(() => {
      log.error(`could not stop within ${STOP_TIMEOUT_MS} ms; exiting without a final offset`);
      process.exit(1);
    }, STOP_TIMEOUT_MS).unref();
    void worker.stop();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  const outcome = await worker.run();
  progress.stop();
  guard?.stop();
  liveness.stop();
  await http?.close();
  if (outcome.failure) {
    // Already logged (redacted) when it happened; the exit code tells a user's mistake from a bug.
    const code = isUserError(outcome.failure) ? 2 : 1;
    log.error('exiting after connector failure', { exitCode: code });
    return code;
  }
  log.info('stopped', { lsn: worker.connector.position.lsn });
  return 0;
}

const isEntry = process.argv[1] && import.meta.url === new URL(process.argv[1], 'file://').href;
if (isEntry || process.argv[1]?.endsWith('/bin/pgcdc.js') || process.argv[1]?.endsWith('/bin/pgcdc')) {
  // Stdout to a pipe is written asynchronously: exiting at once would cut a long output (pgcdc
  // discover --json on a database of thousands of tables), so the exit waits for both streams.
  const exit = (code: number): void => {
    let pending = 2;
    const flushed = (): void => {
      if (--pending === 0) process.exit(code);
    };
    process.stdout.write('', flushed);
    process.stderr.write('', flushed);
  };
  main(process.argv.slice(2)).then(exit, (err: unknown) => {
    if (isUserError(err)) {
      process.stderr.write(`pgcdc: ${(err as Error).message}\n`);
      exit(2);
      return;
    }
    process.stderr.write(
      `pgcdc: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    exit(1);
  });
}
