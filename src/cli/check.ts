// `pgcdc check [--config FILE] [--fix] [--json]`: every prerequisite, one line each, with the fix;
// exit 0 only when nothing failed. Also the checks `pgcdc run` makes before it starts.
import { ConfigError, isConfigError } from '../config/errors.ts';
import { loadConfig } from '../config/load.ts';
import type { PgcdcConfig } from '../config/types.ts';
import {
  displayUrl,
  formatFix,
  formatLine,
  LABELS,
  passed,
  runPreflight,
  summarize,
  warning,
  type CheckResult,
  type PreflightReport,
} from '../postgres/preflight.ts';
import { XMIN_TRADE_OFFS } from '../postgres/preflight/xmin.ts';
import type { Logger } from '../worker/log.ts';

/** Settings a PostgreSQL-only command can do without; a placeholder stands in (never contacted). */
const PLACEHOLDERS: Record<string, string> = {
  'kafka.brokers': 'unset.invalid:9092',
  'registry.url': 'http://unset.invalid',
  name: 'pgcdc',
};

/**
 * loadConfig for check and discover: the same file, env and flags, but the `relax` settings may be
 * missing (their `required` problems are dropped and a placeholder stands in). Every other problem
 * is reported as loadConfig reports it. `run` keeps using loadConfig itself.
 */
export function loadConfigForChecks(
  opts: { file?: string; env: NodeJS.ProcessEnv; args: string[] },
  relax: readonly string[],
): { config: PgcdcConfig; unset: Set<string> } {
  try {
    return { config: loadConfig(opts), unset: new Set() };
  } catch (err) {
    if (!isConfigError(err)) throw err;
    const unset = new Set<string>();
    const rest: string[] = [];
    for (const p of err.problems) {
      const m = /^([\w.]+): required \(/.exec(p);
      if (m && relax.includes(m[1]!)) unset.add(m[1]!);
      else rest.push(p);
    }
    if (unset.size === 0) throw err;
    if (rest.length > 0) throw new ConfigError(rest);
    const placeholders = [...unset].map((p) => `--${p}=${PLACEHOLDERS[p]}`);
    return { config: loadConfig({ ...opts, args: [...placeholders, ...opts.args] }), unset };
  }
}

function resultJson(r: CheckResult): Record<string, unknown> {
  return {
    check: r.id,
    label: LABELS[r.id],
    status: r.status,
    message: r.message,
    ...(r.fix && { fix: r.fix }),
    ...(r.table && { table: r.table }),
  };
}

export function reportJson(report: PreflightReport): string {
  return JSON.stringify(
    {
      passed: report.passed,
      summary: summarize(report.results),
      checks: report.results.map(resultJson),
      fixes: report.fixes,
    },
    null,
    2,
  );
}

export interface CheckCommand {
  file?: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  fix: boolean;
  json: boolean;
  out?: NodeJS.WritableStream;
}

/** Runs `pgcdc check`; resolves to the exit code (0: every required check passed, 2: one failed). */
export async function checkCommand(c: CheckCommand): Promise<number> {
  const out = c.out ?? process.stdout;
  const { config, unset } = loadConfigForChecks({ file: c.file, env: c.env, args: c.args }, [
    'kafka.brokers',
    'registry.url',
  ]);
  // The Kafka line also reads the stored offset as pgcdc run does (topic and group-prefix ACLs).
  const kafka = {
    ...config.kafka,
    offsets: { topic: config.offsets.topic, connector: config.name, slot: config.slot.name },
  };
  const report = await runPreflight(config, {
    fix: c.fix,
    kafka: unset.has('kafka.brokers') ? null : kafka,
    registry: unset.has('registry.url') ? null : config.registry,
  });
  if (unset.has('kafka.brokers')) {
    report.results.push(
      warning('kafka', 'kafka.brokers is not set: not checked', 'set kafka.brokers (pgcdc run needs it)'),
    );
  }
  if (unset.has('registry.url')) {
    report.results.push(
      warning(
        'schema_registry',
        'registry.url is not set: not checked',
        'set registry.url (pgcdc run needs it)',
      ),
    );
  }
  if (c.json) {
    out.write(`${reportJson(report)}\n`);
    return report.passed ? 0 : 2;
  }
  const p = config.postgres;
  out.write(
    `pgcdc check: connector ${config.name}, PostgreSQL ${p.host}:${p.port}/${p.database} as ${p.user}` +
      `${unset.has('kafka.brokers') ? '' : `, Kafka ${config.kafka.brokers.join(',')}`}` +
      `${unset.has('registry.url') ? '' : `, registry ${displayUrl(config.registry.url)}`}\n\n`,
  );
  if (c.fix) {
    if (report.fixes.length === 0) out.write('--fix: nothing to fix\n\n');
    else out.write(`${report.fixes.map(formatFix).join('\n')}\n\n`);
  }
  out.write(`${report.results.map(formatLine).join('\n')}\n\n`);
  if (config.capture.method === 'xmin') {
    out.write(
      `capture.method xmin, against logical decoding (capture.method logical):\n${XMIN_TRADE_OFFS.map((t) => `  - ${t}`).join('\n')}\n\n`,
    );
  }
  const summary = summarize(report.results);
  const fixable = report.results.some(
    (r) => r.status === 'failed' && (r.id === 'publication' || r.id === 'replica_identity'),
  );
  out.write(
    report.passed
      ? `${summary}: pgcdc run can start\n`
      : `${summary}: pgcdc run would refuse to start; fix the failed lines${fixable && !c.fix ? ' (pgcdc check --fix creates the publication and sets REPLICA IDENTITY FULL where it can)' : ''}\n`,
  );
  return report.passed ? 0 : 2;
}

/**
 * The checks `pgcdc run` makes before it starts: the PostgreSQL ones (Kafka and the registry are
 * left to the worker, whose clients retry a broker that is still starting instead of refusing to
 * start). False (after printing the failed lines to `err`) when the worker must not start.
 */
export async function preflightBeforeRun(
  config: PgcdcConfig,
  log: Logger,
  err: NodeJS.WritableStream = process.stderr,
): Promise<boolean> {
  const started = Date.now();
  const report = await runPreflight(config, { applicationName: `pgcdc-${config.name}-check`, log });
  const warnings = report.results.filter((r) => r.status === 'warning');
  const failures = report.results.filter((r) => r.status === 'failed');
  if (failures.length > 0 && failures.every((r) => r.transient)) {
    // PostgreSQL unreachable or starting: the worker retries its connection (with backoff) and
    // reports it, as it does when the connection is lost later; refusing would only crash-loop.
    for (const f of failures)
      log.warn(`prerequisite checks skipped: ${formatLine(f).replace(/^failed\s+/, '')}`);
    return true;
  }
  if (!passed(report.results)) {
    const shown = report.results.filter((r) => r.status !== 'ok');
    err.write(
      `pgcdc: not starting: prerequisite checks failed\n${shown.map(formatLine).join('\n')}\n` +
        `${summarize(report.results)}; fix the failed lines (pgcdc check lists every check; --skip-checks starts anyway)\n`,
    );
    return false;
  }
  for (const w of warnings) log.warn(`prerequisite check: ${formatLine(w).replace(/^warning\s+/, '')}`);
  log.info('prerequisite checks passed', { ms: Date.now() - started, summary: summarize(report.results) });
  return true;
}
