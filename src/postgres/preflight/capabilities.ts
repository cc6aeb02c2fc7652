// What this server's logical decoding supports (one `capability` line each, by version), what
// the publication asks that pgcdc handles only in part (row filters, column lists, generated
// columns), and whether the slot survives a failover (PostgreSQL 17+ failover slots, checked on
// the standbys of a postgres.host list as well).
import type pg from 'pg';
import { hostList, ident, literal, PostgresEndpoint, type PostgresSettings } from '../connection.ts';
import { ok, warning, type CheckResult } from './result.ts';
import type { ServerFacts } from './rules.ts';

const t = (v: unknown): boolean => v === 't' || v === true || v === 'true';

interface Capability {
  since: number;
  what: string;
  /** How pgcdc uses it. */
  use: string;
}

/** By the major that brought it; pgcdc's use of each is stated so that the line is actionable. */
const CAPABILITIES: readonly Capability[] = [
  {
    since: 14,
    what: 'pgoutput protocol 2 (streaming of large in-progress transactions)',
    use: 'pgcdc uses protocol 1: a transaction is decoded once it commits',
  },
  {
    since: 14,
    what: 'logical decoding messages (pgoutput messages option)',
    use: 'needed for heartbeats that come back through the stream',
  },
  { since: 14, what: 'binary transfer (pgoutput binary option)', use: 'pgcdc reads the text form' },
  {
    since: 15,
    what: 'two-phase decoding (pgoutput protocol 3)',
    use: 'pgcdc sees a prepared transaction at COMMIT PREPARED',
  },
  {
    since: 15,
    what: 'row filters and column lists in publications',
    use: 'see the publication filters line',
  },
  {
    since: 16,
    what: 'logical decoding on a standby',
    use: 'pgcdc can stream from a standby, with the publication created on the primary (docs/failover.md)',
  },
  {
    since: 16,
    what: 'origin filter (pgoutput origin option)',
    use: 'pgcdc captures changes of every origin',
  },
  { since: 17, what: 'failover slots (sync_replication_slots)', use: 'slot.failover' },
  {
    since: 18,
    what: 'generated columns in publications (publish_generated_columns)',
    use: 'see the publication filters line',
  },
  {
    since: 18,
    what: 'idle_replication_slot_timeout (the server invalidates idle slots)',
    use: 'see the wal budget line',
  },
];

/** One `capability` line per feature: supported here or from which major on. */
export function capabilityChecks(server: ServerFacts): CheckResult[] {
  const major = Math.floor(server.versionNum / 10000);
  return CAPABILITIES.map((c) =>
    ok(
      'capability',
      major >= c.since
        ? `${c.what}: supported (${c.use})`
        : `${c.what}: not before PostgreSQL ${c.since} (this server is ${server.version})`,
    ),
  );
}

/**
 * Publications whose tables have a row filter or a column list (15+) or that publish generated
 * columns (18+): reported so the user sees what is captured. The initial load reads the same rows
 * and columns as the stream sends (src/postgres/catalog.ts publishedShape).
 */
export async function publicationFilterCheck(
  client: pg.Client,
  server: ServerFacts,
  publication: string,
): Promise<CheckResult | null> {
  if (server.versionNum < 150000) return null;
  const gencols = server.versionNum >= 180000 ? `p.pubgencols::text` : `'n'`;
  const { rows } = await client.query<Record<string, string | null>>(
    `SELECT n.nspname || '.' || c.relname AS tbl, pg_get_expr(r.prqual, r.prrelid) AS filter,
            (SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_attribute a
              WHERE a.attrelid = r.prrelid AND a.attnum = ANY(r.prattrs)) AS cols,
            ${gencols} AS gencols
       FROM pg_publication p
       JOIN pg_publication_rel r ON r.prpubid = p.oid
       JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE p.pubname = $1
      ORDER BY 1`,
    [publication],
  );
  const notes: string[] = [];
  for (const r of rows) {
    if (r.filter) notes.push(`${r.tbl} has the row filter WHERE ${r.filter}`);
    if (r.cols) notes.push(`${r.tbl} has the column list (${r.cols})`);
  }
  const gen = server.versionNum >= 180000 && rows.some((r) => r.gencols === 's');
  if (gen) notes.push('it publishes generated columns (publish_generated_columns = stored)');
  if (notes.length === 0) {
    return ok(
      'publication_filters',
      `publication ${publication} has no row filter, column list or generated columns`,
    );
  }
  return ok(
    'publication_filters',
    `publication ${publication}: ${notes.join('; ')}; the initial load reads the same rows and columns as the stream`,
  );
}

interface StandbyFacts {
  where: string;
  error?: string;
  inRecovery?: boolean;
  syncSlots?: boolean;
  hotStandbyFeedback?: boolean;
  primarySlot?: string;
  slot?: { synced: boolean; temporary: boolean; invalidation: string | null } | null;
}

async function probeStandby(s: PostgresSettings, slot: string): Promise<StandbyFacts> {
  const where = `${s.host}:${s.port}`;
  const endpoint = new PostgresEndpoint(s);
  let client: pg.Client | null = null;
  try {
    client = await endpoint.connect({ applicationName: 'pgcdc-check' });
    const { rows } = await client.query<Record<string, string | null>>(
      `SELECT pg_is_in_recovery() AS rec, current_setting('sync_replication_slots', true) AS sync,
              current_setting('hot_standby_feedback') AS hsf, current_setting('primary_slot_name') AS pslot,
              (SELECT json_build_object('synced', synced, 'temporary', temporary, 'invalidation', invalidation_reason)
                 FROM pg_replication_slots WHERE slot_name = $1) AS slot`,
      [slot],
    );
    const r = rows[0]!;
    return {
      where,
      inRecovery: t(r.rec),
      syncSlots: r.sync === 'on',
      hotStandbyFeedback: r.hsf === 'on',
      primarySlot: r.pslot ?? '',
      slot: r.slot ? (JSON.parse(r.slot) as StandbyFacts['slot']) : null,
    };
  } catch (err) {
    return { where, error: (err as Error).message.split('\n')[0]! };
  } finally {
    await client?.end().catch(() => undefined);
    await endpoint.close().catch(() => undefined);
  }
}

/**
 * Failover readiness: before 17 the slot exists only on the primary; from 17 on it must be a
 * failover slot, the primary should name the standby's slot in synchronized_standby_slots, and
 * each standby of a postgres.host list must sync slots (sync_replication_slots, hot_standby_feedback,
 * primary_slot_name) and hold a synced, persistent copy of ours.
 */
export async function failoverCheck(
  client: pg.Client,
  server: ServerFacts,
  settings: {
    postgres: PostgresSettings;
    slot: { name: string; failover?: boolean };
    snapshotMode: string;
    tunnel: boolean;
  },
  current: { host: string; port: number },
): Promise<CheckResult> {
  const slot = settings.slot.name;
  const standbys = await client.query<{ n: string; slots: string | null }>(
    `SELECT count(*) AS n,
            (SELECT string_agg(slot_name, ',') FROM pg_replication_slots WHERE slot_type = 'physical') AS slots
       FROM pg_stat_replication r
      WHERE r.state IN ('streaming', 'catchup')
        -- logical walsenders (pgcdc, subscriptions) always have a logical slot; standbys do not
        AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_type = 'logical')`,
  );
  const physical = Number(standbys.rows[0]?.n ?? 0);
  const physicalSlots = standbys.rows[0]?.slots ?? '';
  if (server.versionNum < 170000) {
    const then =
      settings.snapshotMode === 'when_needed' || settings.snapshotMode === 'always'
        ? `snapshot.mode=${settings.snapshotMode} then takes a new snapshot`
        : `pgcdc then stops with "slot no longer exists" (snapshot.mode=${settings.snapshotMode})`;
    const message = `PostgreSQL ${server.version} has no failover slots: after a failover the new primary lacks slot ${slot}; ${then}`;
    return physical > 0
      ? warning(
          'failover',
          `${message} (${physical} standby streaming from this server)`,
          'upgrade to PostgreSQL 17+ for failover slots, or set snapshot.mode=when_needed (docs/failover.md)',
        )
      : ok('failover', message);
  }
  const facts = await client.query<{ failover: unknown; sss: string | null }>(
    `SELECT (SELECT failover FROM pg_replication_slots WHERE slot_name = $1) AS failover,
            current_setting('synchronized_standby_slots', true) AS sss`,
    [slot],
  );
  const f = facts.rows[0]!;
  const problems: string[] = [];
  const fixes: string[] = [];
  if (settings.slot.failover === false) {
    problems.push('slot.failover is false');
    fixes.push('set slot.failover=true');
  }
  if (f.failover !== null && !t(f.failover)) {
    problems.push(`slot ${slot} is not a failover slot`);
    fixes.push(
      `psql "dbname=${settings.postgres.database} replication=database" -c ${literal(`ALTER_REPLICATION_SLOT ${ident(slot)} (FAILOVER true)`)}`,
    );
  }
  if (physical > 0 && !f.sss) {
    problems.push(
      'synchronized_standby_slots is empty, so pgcdc may receive changes a standby does not have yet',
    );
    fixes.push(
      `ALTER SYSTEM SET synchronized_standby_slots = ${literal(physicalSlots || '<standby slot>')}; SELECT pg_reload_conf();`,
    );
  }
  // The other servers of the host list are the standbys a failover would promote.
  const others = settings.tunnel
    ? []
    : hostList(settings.postgres).filter((h) => h.host !== current.host || h.port !== current.port);
  const synced: string[] = [];
  for (const h of others) {
    const sb = await probeStandby({ ...settings.postgres, host: h.host, port: h.port }, slot);
    if (sb.error) {
      problems.push(`standby ${sb.where} cannot be checked (${sb.error})`);
      continue;
    }
    if (!sb.inRecovery) {
      problems.push(`${sb.where} is not a standby (two primaries in postgres.host)`);
      continue;
    }
    if (!sb.syncSlots) {
      problems.push(`standby ${sb.where} has sync_replication_slots off`);
      fixes.push(`on ${sb.where}: ALTER SYSTEM SET sync_replication_slots = on; SELECT pg_reload_conf();`);
    }
    if (!sb.hotStandbyFeedback) {
      problems.push(`standby ${sb.where} has hot_standby_feedback off`);
      fixes.push(`on ${sb.where}: ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf();`);
    }
    if (!sb.primarySlot) {
      problems.push(`standby ${sb.where} has no primary_slot_name`);
      fixes.push(`on ${sb.where}: set primary_slot_name to a physical slot of the primary`);
    }
    if (f.failover !== null && (!sb.slot || !sb.slot.synced || sb.slot.temporary || sb.slot.invalidation)) {
      problems.push(
        `standby ${sb.where} has no usable synced copy of slot ${slot}${sb.slot?.temporary ? ' (still temporary: the standby has not caught up with it)' : ''}${sb.slot?.invalidation ? ` (invalidated: ${sb.slot.invalidation})` : ''}`,
      );
    } else synced.push(sb.where);
  }
  if (problems.length > 0) {
    return warning(
      'failover',
      `not ready for a failover: ${problems.join('; ')}`,
      fixes.length > 0 ? fixes.join('; ') : 'see docs/failover.md',
    );
  }
  const where =
    synced.length > 0
      ? f.failover === null
        ? `; ${synced.join(', ')} ${synced.length === 1 ? 'is a standby' : 'are standbys'} set to sync it`
        : `, synced to ${synced.join(', ')}`
      : others.length === 0
        ? '; no standby in postgres.host to check its copy (give the standbys as a host list, docs/failover.md)'
        : '';
  const state =
    f.failover === null
      ? `slot ${slot} is created with FAILOVER true at start`
      : `slot ${slot} is a failover slot`;
  return ok('failover', `${state}${where}${physical > 0 ? `; synchronized_standby_slots = ${f.sss}` : ''}`);
}
