// Prerequisite checks: everything the setup guides ask users to do by hand (wal_level, the
// REPLICATION role, SELECT grants, the publication, REPLICA IDENTITY, a primary not a standby, a
// free slot and WAL sender…), checked with a handful of queries and reported one line per check
// with the fix. `pgcdc check` prints them (and --fix applies the safe fixes); `pgcdc run` runs the
// PostgreSQL part before it starts and refuses to start on a failure.
import type pg from 'pg';
import type { TableRef } from '../config/tables.ts';
import type { SshSettings } from '../tunnel/ssh.ts';
import { SshTunnel } from '../tunnel/ssh.ts';
import { PostgresEndpoint, type PostgresSettings } from './connection.ts';
import { capabilityChecks, failoverCheck, publicationFilterCheck } from './preflight/capabilities.ts';
import { describeConnectError } from './preflight/connect-errors.ts';
import { hostKeyCheck } from './preflight/ssh-host-key.ts';
import { applyFixes } from './preflight/fix.ts';
import {
  probePublication,
  probeReplicationConnection,
  probeServer,
  probeSlots,
  probeTables,
} from './preflight/probe.ts';
import { failed, ok, passed, type CheckResult, type FixAction } from './preflight/result.ts';
import {
  primaryCheck,
  publicationChecks,
  replicaIdentityChecks,
  replicationCheck,
  schemaUsageCheck,
  selectCheck,
  selectionCheck,
  selectTables,
  slotCapacityCheck,
  slotCheck,
  versionCheck,
  walLevelCheck,
  walSendersCheck,
  type CheckSettings,
  type ServerFacts,
} from './preflight/rules.ts';
import {
  kafkaCheck,
  registryCheck,
  type KafkaCheckSettings,
  type RegistryCheckSettings,
} from './preflight/services.ts';

import { probeWalLimits, walBudgetCheck, type WalBudgetSettings } from './preflight/wal-budget.ts';

import { xminChecks } from './preflight/xmin.ts';

export * from './preflight/result.ts';
export { describeConnectError, type ConnectProblem } from './preflight/connect-errors.ts';
export { displayUrl } from './preflight/services.ts';

/** What the checks read from the configuration (PgcdcConfig satisfies it). */
export interface PreflightConfig {
  /** capture.method xmin checks only what polling needs (src/postgres/preflight/xmin.ts). */
  capture?: { method: string; xmin: { pollIntervalMs: number } };
  postgres: PostgresSettings & { schemas: string[] };
  /** Connections go through this SSH tunnel when enabled, as the worker's do. */
  ssh?: SshSettings;
  publication: { name: string; autoCreate: boolean };
  slot: { name: string; failover?: boolean };
  snapshot: { mode: string };
  tables: { include: TableRef[]; exclude: TableRef[] };
  heartbeat: WalBudgetSettings;
}

export interface PreflightOptions {
  /** Apply the safe fixes first (pgcdc check --fix). */
  fix?: boolean;
  /** Also check that Kafka answers (admin describeCluster). */
  kafka?: KafkaCheckSettings | null;
  /** Also check that the schema registry answers (GET /subjects). */
  registry?: RegistryCheckSettings | null;
  /** The application_name of the checks' connections. */
  applicationName?: string;
  /** Where the SSH tunnel logs (silent by default). */
  log?: {
    info(msg: string, ctx?: Record<string, unknown>): void;
    warn(msg: string, ctx?: Record<string, unknown>): void;
  };
}

export interface PreflightReport {
  results: CheckResult[];
  /** What --fix did (or could not do). */
  fixes: FixAction[];
  /** No check failed (warnings are fine). */
  passed: boolean;
}

export async function runPreflight(
  cfg: PreflightConfig,
  opts: PreflightOptions = {},
): Promise<PreflightReport> {
  const services = Promise.all([
    opts.kafka ? kafkaCheck(opts.kafka) : null,
    opts.registry ? registryCheck(opts.registry) : null,
  ]);
  const { results, fixes } = await postgresChecks(cfg, opts);
  for (const r of await services) if (r) results.push(r);
  return { results, fixes, passed: passed(results) };
}

const SILENT = { info: () => undefined, warn: () => undefined };

/** Connection failures that may pass on their own (not a wrong setting or privilege). */
const TRANSIENT = new Set(['unreachable', 'timeout', 'dns', 'reset', 'starting', 'too_many_connections']);

/**
 * Opens the query connection the checks use, as the worker opens its own (TLS negotiated under
 * postgres.sslmode, through the SSH tunnel when ssh.enabled); a failure becomes the `connection` line.
 */
export async function connectForChecks(
  cfg: Pick<PreflightConfig, 'postgres' | 'ssh'>,
  opts: Pick<PreflightOptions, 'applicationName' | 'log'> = {},
): Promise<
  | { client: pg.Client; endpoint: PostgresEndpoint; hostKey: CheckResult | null }
  | { result: CheckResult; hostKey: CheckResult | null }
> {
  let endpoint: PostgresEndpoint | null = null;
  let tunnel: SshTunnel | null = null;
  // The bastion's key as accepted (or matched) during the handshake, also when PostgreSQL then fails.
  const hostKey = () => hostKeyCheck(cfg.ssh, tunnel?.presentedFingerprint);
  try {
    tunnel = cfg.ssh?.enabled ? new SshTunnel(cfg.ssh, opts.log ?? SILENT) : null;
    endpoint = new PostgresEndpoint(cfg.postgres, { tunnel });
    const client = await endpoint.connect({ applicationName: opts.applicationName ?? 'pgcdc-check' });
    return { client, endpoint, hostKey: hostKey() };
  } catch (err) {
    await endpoint?.close().catch(() => undefined);
    const p = describeConnectError(err, cfg.postgres);
    const transient = TRANSIENT.has(p.kind);
    return {
      result: { ...failed('connection', p.message, p.fix), ...(transient && { transient }) },
      hostKey: hostKey(),
    };
  }
}

/** What the server's version supports, the publication's filters, failover readiness. */
async function versionDependentChecks(
  client: pg.Client,
  server: ServerFacts,
  cfg: PreflightConfig,
  endpoint: PostgresEndpoint,
): Promise<CheckResult[]> {
  const out = capabilityChecks(server);
  const filters = await publicationFilterCheck(client, server, cfg.publication.name);
  if (filters) out.push(filters);
  if (!server.inRecovery) {
    out.push(
      await failoverCheck(
        client,
        server,
        {
          postgres: cfg.postgres,
          slot: cfg.slot,
          snapshotMode: cfg.snapshot.mode,
          tunnel: !!cfg.ssh?.enabled,
        },
        endpoint.target,
      ),
    );
  }
  return out;
}

async function postgresChecks(
  cfg: PreflightConfig,
  opts: PreflightOptions,
): Promise<{ results: CheckResult[]; fixes: FixAction[] }> {
  const results: CheckResult[] = [];
  let fixes: FixAction[] = [];
  const pgs = cfg.postgres;
  const opened = await connectForChecks(cfg, opts);
  if (opened.hostKey) results.push(opened.hostKey);
  if ('result' in opened) return { results: [...results, opened.result], fixes };
  const { client, endpoint } = opened;
  const settings: CheckSettings = {
    publication: cfg.publication,
    slot: cfg.slot,
    snapshotMode: cfg.snapshot.mode,
    schemas: pgs.schemas,
    include: cfg.tables.include,
    exclude: cfg.tables.exclude,
    walWarnBytes: cfg.heartbeat.walWarnBytes,
  };
  try {
    const { server, role } = await probeServer(client);
    results.push(
      ok(
        'connection',
        `connected to ${endpoint.target.host}:${endpoint.target.port}/${role.database} as ${role.user} (${server.ssl ? 'TLS' : 'no TLS'}${cfg.ssh?.enabled ? `, through SSH ${cfg.ssh.host}` : ''})`,
      ),
    );
    results.push(versionCheck(server));
    if (server.versionNum < 100000) return { results, fixes };
    if (cfg.capture?.method === 'xmin') {
      const xmin = { ...settings, pollIntervalMs: cfg.capture.xmin.pollIntervalMs };
      return { results: [...results, ...(await xminChecks(client, server, role, xmin))], fixes };
    }
    results.push(
      walLevelCheck(server.walLevel, server.platform),
      primaryCheck(server.inRecovery, server.versionNum),
    );
    const replication = await probeReplicationConnection(endpoint);
    results.push(replicationCheck(role, replication, server.platform));
    const slots = await probeSlots(client, server);
    results.push(slotCapacityCheck(server, slots, settings.slot.name), walSendersCheck(server));

    const scope = {
      sizes: false,
      versionNum: server.versionNum,
      ...(settings.include.length > 0 ? { only: settings.include } : { schemas: settings.schemas }),
    };
    let all;
    try {
      all = await probeTables(client, scope);
    } catch (err) {
      results.push(
        failed(
          'tables',
          `${role.user} cannot list tables (${(err as Error).message.split('\n')[0]})`,
          'the user needs read access to the catalog (pg_class, pg_namespace, pg_index)',
        ),
      );
      results.push(
        slotCheck(slots.find((x) => x.name === settings.slot.name) ?? null, settings, role.database),
      );
      return { results, fixes };
    }
    let sel = selectTables(all, settings);
    let pub = await probePublication(client, settings.publication.name, server.versionNum);
    if (opts.fix && sel.selected.length > 0) {
      fixes = await applyFixes(client, sel.selected, pub, role);
      if (fixes.some((f) => f.status === 'done')) {
        sel = selectTables(await probeTables(client, scope), settings);
        pub = await probePublication(client, settings.publication.name, server.versionNum);
      }
    }
    results.push(selectionCheck(sel.selected, sel.missing, settings));
    if (sel.selected.length > 0) {
      results.push(schemaUsageCheck(sel.selected, role));
      results.push(selectCheck(sel.selected, role, settings.snapshotMode));
      results.push(...publicationChecks(pub, sel.selected, role, settings.publication.autoCreate));
      results.push(...replicaIdentityChecks(sel.selected));
    }
    results.push(
      slotCheck(slots.find((x) => x.name === settings.slot.name) ?? null, settings, role.database),
    );
    if (server.versionNum >= 130000)
      results.push(walBudgetCheck(await probeWalLimits(client), cfg.heartbeat));
    results.push(...(await versionDependentChecks(client, server, cfg, endpoint)));
    return { results, fixes };
  } finally {
    await client.end().catch(() => undefined);
    await endpoint.close().catch(() => undefined);
  }
}
