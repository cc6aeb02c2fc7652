// pgcdc command line. User mistakes (bad config, unreachable server, missing privilege) print one
// line and exit non-zero; anything else is a bug and prints its stack.
import { parseArgs } from 'node:util';
import { loadConfig, redactedConfig } from '../config/load.ts';
import { isUserError } from '../errors.ts';
import { Connector } from '../pipeline/connector.ts';
import { createLogger } from '../worker/log.ts';
import { PGCDC_VERSION } from '../avro/envelope.ts';

const USAGE = `pgcdc ${PGCDC_VERSION} — PostgreSQL change data capture to Kafka

Usage:
  pgcdc run [--config FILE] [--<setting>=<value> ...]   stream the database into Kafka
  pgcdc --version | --help

Settings come from the config file, then PGCDC_* environment variables, then --<setting> flags
(e.g. --postgres.host=db.internal --snapshot.mode=never). See docs/configuration.md.
`;

/** How long a SIGTERM may take to drain before the process gives up and exits non-zero. */
const STOP_TIMEOUT_MS = 30_000;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
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
  if (command !== 'run') {
    process.stderr.write(`pgcdc: unknown command '${command}'; see pgcdc --help\n`);
    return 2;
  }
  const file = typeof values.config === 'string' ? values.config : process.env.PGCDC_CONFIG;
  const config = loadConfig({ file, env: process.env, args: argv });
  const log = createLogger({ connector: config.name, level: config.log.level, format: config.log.format });
  log.debug('configuration', { config: redactedConfig(config) });
  const connector = new Connector(config, log);
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`received ${signal}: draining and stopping`);
    setTimeout(() => {
      log.error(`could not stop within ${STOP_TIMEOUT_MS} ms; exiting without a final offset`);
      process.exit(1);
    }, STOP_TIMEOUT_MS).unref();
    void connector.stop();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  await connector.run();
  log.info('stopped', { lsn: connector.position.lsn });
  return 0;
}

const isEntry = process.argv[1] && import.meta.url === new URL(process.argv[1], 'file://').href;
if (isEntry || process.argv[1]?.endsWith('/bin/pgcdc.js') || process.argv[1]?.endsWith('/bin/pgcdc')) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      if (isUserError(err)) {
        process.stderr.write(`pgcdc: ${(err as Error).message}\n`);
        process.exit(2);
      }
      process.stderr.write(
        `pgcdc: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}
