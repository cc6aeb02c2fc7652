// The facts the checks decide on, read with a handful of catalog queries (every value arrives as
// text: see connection.ts) and one short replication connection.
import type pg from 'pg';
import type { TableRef } from '../../config/tables.ts';
import type { PostgresEndpoint } from '../connection.ts';
import type {
  Platform,
  PublicationFacts,
  ReplicaIdentity,
  ReplicationConnFacts,
  RoleFacts,
  ServerFacts,
  SlotFacts,
  TableFacts,
} from './rules.ts';
import { CAPTURABLE_TABLE, publicationMembers } from '../../capture/selection.ts';

const t = (v: unknown): boolean => v === 't' || v === true || v === 'true';
const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export async function probeServer(client: pg.Client): Promise<{ server: ServerFacts; role: RoleFacts }> {
  const { rows } = await client.query<Record<string, string | null>>(
    `SELECT current_setting('server_version_num') AS version_num,
            current_setting('server_version') AS version,
            current_setting('wal_level') AS wal_level,
            pg_is_in_recovery() AS in_recovery,
            current_setting('max_replication_slots') AS max_slots,
            current_setting('max_wal_senders') AS max_senders,
            (SELECT count(*) FROM pg_stat_replication) AS active_senders,
            COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS ssl,
            current_user AS usr, quote_ident(current_user) AS sql_user, current_database() AS db,
            r.rolsuper, r.rolreplication,
            has_database_privilege(current_database(), 'CREATE') AS db_create,
            CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication')
                 THEN pg_has_role('rds_replication', 'MEMBER') ELSE false END AS rds_replication,
            (SELECT COALESCE(json_agg(b.rolname ORDER BY b.rolname), '[]') FROM pg_roles b
              WHERE b.rolreplication AND b.rolname <> current_user AND pg_has_role(b.oid, 'MEMBER')) AS repl_roles,
            current_setting('rds.logical_replication', true) AS rds_logical,
            EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'aurora_version') AS aurora,
            COALESCE(current_setting('azure.replication_support', true), current_setting('azure.extensions', true)) AS azure,
            current_setting('cloudsql.logical_decoding', true) AS cloudsql
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const r = rows[0]!;
  const platform: Platform = t(r.aurora)
    ? 'aurora'
    : r.rds_logical
      ? 'rds'
      : r.azure
        ? 'azure'
        : r.cloudsql
          ? 'cloudsql'
          : 'self-hosted';
  return {
    server: {
      versionNum: num(r.version_num),
      version: String(r.version).split(' ')[0]!,
      platform,
      walLevel: String(r.wal_level),
      inRecovery: t(r.in_recovery),
      maxReplicationSlots: num(r.max_slots),
      maxWalSenders: num(r.max_senders),
      activeWalSenders: num(r.active_senders),
      ssl: t(r.ssl),
    },
    role: {
      user: String(r.usr),
      sqlUser: String(r.sql_user),
      database: String(r.db),
      superuser: t(r.rolsuper),
      replication: t(r.rolreplication),
      rdsReplication: t(r.rds_replication),
      inheritedReplicationRoles: JSON.parse(String(r.repl_roles)) as string[],
      createOnDatabase: t(r.db_create),
    },
  };
}

/** Opens a replication connection as the worker does and runs IDENTIFY_SYSTEM. */
export async function probeReplicationConnection(endpoint: PostgresEndpoint): Promise<ReplicationConnFacts> {
  let client: pg.Client | null = null;
  try {
    client = await endpoint.connect({ replication: true, applicationName: 'pgcdc-check' });
    await client.query('IDENTIFY_SYSTEM');
    return { ok: true };
  } catch (err) {
    // connection.ts wraps the server's error in a one-line UserError; the SQLSTATE is on the cause.
    const cause = (err as { cause?: unknown }).cause;
    const e = (cause instanceof Error ? cause : err) as { code?: string; message?: string };
    return { ok: false, code: e.code, message: String(e.message ?? err).split('\n')[0]! };
  } finally {
    await client?.end().catch(() => undefined);
  }
}

export async function probeSlots(client: pg.Client, server: ServerFacts): Promise<SlotFacts[]> {
  const v13 = server.versionNum >= 130000;
  const { rows } = await client.query<Record<string, string | null>>(
    `SELECT s.slot_name, s.slot_type, s.plugin, s.database, s.active, s.active_pid,
            a.application_name, host(a.client_addr) AS client_addr,
            ${v13 ? 's.wal_status' : 'NULL::text AS wal_status'},
            to_jsonb(s) ->> 'invalidation_reason' AS invalidation_reason,
            ${server.inRecovery ? 'NULL::numeric' : 'pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)'} AS retained
       FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
      ORDER BY s.slot_name`,
  );
  return rows.map((r) => ({
    name: String(r.slot_name),
    type: String(r.slot_type),
    plugin: str(r.plugin),
    database: str(r.database),
    active: t(r.active),
    activePid: numOrNull(r.active_pid),
    activeApplication: r.application_name || null,
    activeClient: r.client_addr || null,
    walStatus: str(r.wal_status),
    retainedBytes: numOrNull(r.retained),
    invalidationReason: str(r.invalidation_reason),
  }));
}

const IDENTITY: Record<string, ReplicaIdentity> = { d: 'default', n: 'nothing', f: 'full', i: 'index' };

/**
 * Every table pgcdc could capture (CAPTURABLE_TABLE in src/capture/selection.ts), with what the
 * checks and discover need. `sizes`: also their size on disk.
 */
export async function probeTables(
  client: pg.Client,
  opts: { sizes: boolean; versionNum: number; only?: readonly TableRef[]; schemas?: readonly string[] },
): Promise<TableFacts[]> {
  const partitionTree = opts.versionNum >= 120000;
  const size = !opts.sizes
    ? 'NULL::int8'
    : partitionTree
      ? `CASE WHEN c.relkind = 'p' THEN (SELECT sum(pg_total_relation_size(p.relid)) FROM pg_partition_tree(c.oid) p)
              ELSE pg_total_relation_size(c.oid) END`
      : 'pg_total_relation_size(c.oid)';
  const rowsEstimate = partitionTree
    ? `CASE WHEN c.relkind = 'p' THEN (SELECT sum(GREATEST(pc.reltuples, 0)) FROM pg_partition_tree(c.oid) p
              JOIN pg_class pc ON pc.oid = p.relid WHERE p.isleaf) ELSE c.reltuples END`
    : 'c.reltuples';
  const params: unknown[] = [];
  let filter = '';
  if (opts.only) {
    params.push(JSON.stringify(opts.only.map((x) => [x.schema, x.table])));
    filter = `AND EXISTS (SELECT 1 FROM json_array_elements($1::json) e WHERE e->>0 = n.nspname AND e->>1 = c.relname)`;
  } else if (opts.schemas) {
    params.push(JSON.stringify(opts.schemas));
    filter = `AND n.nspname IN (SELECT json_array_elements_text($1::json))`;
  }
  const { rows } = await client.query<Record<string, string | null>>(
    `SELECT n.nspname AS schema, c.relname AS table,
            quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql_name, quote_ident(n.nspname) AS sql_schema,
            c.relkind, c.relreplident, pg_get_userbyid(c.relowner) AS owner,
            pg_has_role(c.relowner, 'USAGE') AS owned,
            has_table_privilege(c.oid, 'SELECT') AS can_select,
            has_schema_privilege(n.oid, 'USAGE') AS schema_usage,
            (SELECT COALESCE(json_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum)), '[]')
               FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
              WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
            (${rowsEstimate})::float8 AS reltuples,
            (${size})::int8 AS size_bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE ${CAPTURABLE_TABLE} ${filter}
      ORDER BY 1, 2`,
    params,
  );
  return rows.map((r) => {
    const estimate = Number(r.reltuples);
    return {
      schema: String(r.schema),
      table: String(r.table),
      sqlName: String(r.sql_name),
      sqlSchema: String(r.sql_schema),
      partitioned: r.relkind === 'p',
      owner: String(r.owner),
      owned: t(r.owned),
      canSelect: t(r.can_select),
      schemaUsage: t(r.schema_usage),
      primaryKey: JSON.parse(String(r.pk)) as string[],
      replicaIdentity: IDENTITY[String(r.relreplident)] ?? 'default',
      // -1: never vacuumed or analyzed (PostgreSQL 14+); 0 before 14 means the same or empty.
      estimatedRows: estimate < 0 ? null : Math.round(estimate),
      sizeBytes: numOrNull(r.size_bytes),
    };
  });
}

export async function probePublication(
  client: pg.Client,
  name: string,
  versionNum: number,
): Promise<PublicationFacts> {
  const truncate = versionNum >= 110000 ? 'p.pubtruncate' : 'false';
  const { rows } = await client.query<Record<string, string | null>>(
    `SELECT quote_ident($1) AS sql_name, p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete,
            ${truncate} AS pubtruncate, pg_has_role(p.pubowner, 'USAGE') AS owned
       FROM (SELECT 1) x LEFT JOIN pg_publication p ON p.pubname = $1`,
    [name],
  );
  const r = rows[0]!;
  const members = await publicationMembers(client, name, versionNum);
  const exists = members.exists;
  const tables = members.tables;
  return {
    name,
    sqlName: String(r.sql_name),
    exists,
    allTables: t(r.puballtables),
    owned: t(r.owned),
    tables,
    viaRoot: members.viaRoot,
    publishes: {
      insert: t(r.pubinsert),
      update: t(r.pubupdate),
      delete: t(r.pubdelete),
      truncate: t(r.pubtruncate),
    },
  };
}
