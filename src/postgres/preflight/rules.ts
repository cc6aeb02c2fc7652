// The prerequisite checks as pure decisions: facts read from the server (probe.ts) in, lines with
// their fixes out. Identifiers in SQL fixes come quoted by the server (quote_ident); table names in
// messages are written as tables.include takes them.
import { formatTableRef, type TableRef } from '../../config/tables.ts';
import { publicationOptions } from '../../capture/selection.ts';
import { literal } from '../connection.ts';
import { failed, listSome, ok, prettyBytes, warning, type CheckResult } from './result.ts';

export type Platform = 'self-hosted' | 'rds' | 'aurora' | 'azure' | 'cloudsql';

export interface ServerFacts {
  /** server_version_num, e.g. 150018. */
  versionNum: number;
  version: string;
  platform: Platform;
  walLevel: string;
  inRecovery: boolean;
  maxReplicationSlots: number;
  maxWalSenders: number;
  /** WAL senders running (pg_stat_replication), not counting the checks' own replication connection. */
  activeWalSenders: number;
  /** The checks' query connection uses TLS. */
  ssl: boolean;
}

export interface RoleFacts {
  user: string;
  /** quote_ident(user). */
  sqlUser: string;
  database: string;
  superuser: boolean;
  /** The role's own REPLICATION attribute. */
  replication: boolean;
  /** Member of rds_replication (RDS/Aurora). */
  rdsReplication: boolean;
  /** Roles with REPLICATION the user is a member of: no use, the attribute is not inherited. */
  inheritedReplicationRoles: string[];
  /** CREATE on the database (CREATE PUBLICATION needs it). */
  createOnDatabase: boolean;
}

/** What opening a replication connection (and IDENTIFY_SYSTEM) did. */
export type ReplicationConnFacts = { ok: true } | { ok: false; code?: string; message: string };

export type ReplicaIdentity = 'default' | 'full' | 'nothing' | 'index';

export interface TableFacts extends TableRef {
  /** quote_ident(schema).quote_ident(table). */
  sqlName: string;
  sqlSchema: string;
  partitioned: boolean;
  owner: string;
  /** The user owns it (or is a member of the owning role, or a superuser). */
  owned: boolean;
  canSelect: boolean;
  schemaUsage: boolean;
  primaryKey: string[];
  replicaIdentity: ReplicaIdentity;
  /** reltuples; null when never analyzed. */
  estimatedRows: number | null;
  /** pg_total_relation_size (with partitions); null when not asked for. */
  sizeBytes: number | null;
}

export interface PublicationFacts {
  name: string;
  sqlName: string;
  exists: boolean;
  allTables: boolean;
  /** The user owns it (or is a superuser). */
  owned: boolean;
  /** tableKey() of every table it publishes. */
  tables: Set<string>;
  /** publish_via_partition_root (partitions' changes under the parent's name). */
  viaRoot?: boolean;
  publishes: { insert: boolean; update: boolean; delete: boolean; truncate: boolean };
}

export interface SlotFacts {
  name: string;
  type: string;
  plugin: string | null;
  database: string | null;
  active: boolean;
  activePid: number | null;
  activeApplication: string | null;
  activeClient: string | null;
  /** PostgreSQL 13+. */
  walStatus: string | null;
  /** pg_current_wal_lsn() - restart_lsn; null on a standby or without restart_lsn. */
  retainedBytes: number | null;
  /** PostgreSQL 17+: why the server invalidated the slot (wal_removed, idle_timeout, ...). */
  invalidationReason?: string | null;
}

export interface CheckSettings {
  publication: { name: string; autoCreate: boolean };
  slot: { name: string };
  snapshotMode: string;
  schemas: string[];
  include: TableRef[];
  exclude: TableRef[];
  /** heartbeat.walWarnBytes: retained WAL above this is a warning. */
  walWarnBytes: number;
}

export const tableKey = (t: TableRef): string => JSON.stringify([t.schema, t.table]);
const show = (t: TableRef): string => formatTableRef(t);

// ---- server -------------------------------------------------------------------------------------

export function versionCheck(s: Pick<ServerFacts, 'versionNum' | 'version'>): CheckResult {
  if (s.versionNum < 100000) {
    return failed(
      'server_version',
      `PostgreSQL ${s.version}: logical decoding with pgoutput needs PostgreSQL 10 or later`,
      'upgrade PostgreSQL (13 or later recommended)',
    );
  }
  if (s.versionNum < 130000) {
    return warning(
      'server_version',
      `PostgreSQL ${s.version}: supported, but before 13 a slot's WAL retention cannot be bounded or watched (no max_slot_wal_keep_size, wal_status)`,
      'upgrade to PostgreSQL 13 or later',
    );
  }
  return ok('server_version', `PostgreSQL ${s.version}`);
}

const WAL_LEVEL_FIX = {
  selfHosted:
    'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (or set wal_level = logical in postgresql.conf)',
  rds: 'set rds.logical_replication = 1 in the DB parameter group (Aurora: the DB cluster parameter group) and reboot',
  azure:
    'set the server parameter wal_level = logical (Flexible Server; Single Server: azure.replication_support = logical) and restart the server',
  cloudsql: 'set the database flag cloudsql.logical_decoding = on (the instance restarts)',
};

/** What to change so that wal_level becomes logical, for the platform the server runs on. */
export function walLevelFix(platform: Platform): string {
  switch (platform) {
    case 'rds':
    case 'aurora':
      return `${platform === 'aurora' ? 'Aurora' : 'RDS'}: ${WAL_LEVEL_FIX.rds}`;
    case 'azure':
      return `Azure: ${WAL_LEVEL_FIX.azure}`;
    case 'cloudsql':
      return `Cloud SQL: ${WAL_LEVEL_FIX.cloudsql}`;
    default:
      return `${WAL_LEVEL_FIX.selfHosted}; on RDS/Aurora: ${WAL_LEVEL_FIX.rds}; on Azure: ${WAL_LEVEL_FIX.azure}`;
  }
}

export function walLevelCheck(walLevel: string, platform: Platform): CheckResult {
  if (walLevel === 'logical') return ok('wal_level', 'wal_level = logical');
  return failed(
    'wal_level',
    `wal_level is ${walLevel}; logical decoding needs wal_level = logical`,
    walLevelFix(platform),
  );
}

export function primaryCheck(inRecovery: boolean, versionNum = 0): CheckResult {
  if (!inRecovery) return ok('primary', 'connected to the primary (not in recovery)');
  if (versionNum >= 160000) {
    // PostgreSQL 16+ decodes on a standby (tested: test/integration/standby-decoding.test.ts).
    return warning(
      'primary',
      'connected to a standby: PostgreSQL 16+ decodes there, but the publication must already exist (created on the primary) and the slot is invalidated when the primary removes rows it still needs',
      'create the publication on the primary and set publication.autoCreate=false; on the standby set hot_standby_feedback = on and primary_slot_name (docs/failover.md)',
    );
  }
  return failed(
    'primary',
    'connected to a standby (pg_is_in_recovery() is true): the publication, the slot and its snapshot need the primary',
    'set postgres.host to the primary (RDS/Aurora: the writer or cluster endpoint, not a reader or read replica)',
  );
}

// ---- replication --------------------------------------------------------------------------------

export function replicationGrantFix(role: Pick<RoleFacts, 'sqlUser'>, platform: Platform): string {
  const rds = `GRANT rds_replication TO ${role.sqlUser};`;
  const alter = `ALTER ROLE ${role.sqlUser} WITH REPLICATION;`;
  if (platform === 'rds' || platform === 'aurora') return rds;
  if (platform === 'self-hosted') return `${alter} (on RDS/Aurora: ${rds})`;
  return alter;
}

export function replicationCheck(
  role: RoleFacts,
  conn: ReplicationConnFacts | null,
  platform: Platform,
): CheckResult {
  const how = role.superuser
    ? 'superuser'
    : role.replication
      ? 'REPLICATION'
      : role.rdsReplication
        ? 'rds_replication'
        : null;
  if (conn?.ok || (conn === null && how)) {
    return ok(
      'replication',
      `${role.user} may open replication connections (${how ?? 'granted by the platform'})`,
    );
  }
  const denied =
    conn === null ||
    conn.code === '42501' ||
    /superuser or replication role|permission denied to start WAL sender|REPLICATION attribute/i.test(
      conn.message,
    );
  if (denied) {
    const inherited =
      role.inheritedReplicationRoles.length > 0
        ? ` (membership in ${role.inheritedReplicationRoles.join(', ')} does not count: REPLICATION is a role attribute and is not inherited)`
        : '';
    const rds = platform === 'rds' || platform === 'aurora' ? ' and is not a member of rds_replication' : '';
    return failed(
      'replication',
      `${role.user} may not open replication connections: it has no REPLICATION attribute${rds}${inherited}`,
      replicationGrantFix(role, platform),
    );
  }
  if (conn.code === '53300') {
    return failed(
      'replication',
      `cannot open a replication connection: ${conn.message}`,
      'raise max_wal_senders (then restart PostgreSQL) or stop an unused replication client',
    );
  }
  return failed('replication', `cannot open a replication connection: ${conn.message}`);
}

export function slotCapacityCheck(
  s: Pick<ServerFacts, 'maxReplicationSlots'>,
  slots: readonly SlotFacts[],
  slotName: string,
): CheckResult {
  const max = s.maxReplicationSlots;
  const raise = (n: number) =>
    `ALTER SYSTEM SET max_replication_slots = ${n}; then restart PostgreSQL (RDS/Aurora/Azure: the max_replication_slots parameter)`;
  if (max === 0) return failed('replication_slots', 'max_replication_slots is 0', raise(10));
  const used = slots.length;
  if (slots.some((x) => x.name === slotName)) {
    return ok('replication_slots', `${used} of ${max} slots in use, ${slotName} among them`);
  }
  if (used < max) return ok('replication_slots', `${max - used} of ${max} free (pgcdc needs 1)`);
  const inactive = slots.filter((x) => !x.active).map((x) => x.name);
  const drop = inactive
    .slice(0, 3)
    .map((n) => `SELECT pg_drop_replication_slot(${literal(n)});`)
    .join(' ');
  return failed(
    'replication_slots',
    `all ${max} replication slots are in use${inactive.length > 0 ? ` (${inactive.length} inactive: ${listSome(inactive, 3)})` : ''}; pgcdc needs one for ${slotName}`,
    `${inactive.length > 0 ? `drop an unused slot (${drop}) or ` : ''}${raise(max + 4)}`,
  );
}

export function walSendersCheck(s: Pick<ServerFacts, 'maxWalSenders' | 'activeWalSenders'>): CheckResult {
  const max = s.maxWalSenders;
  const raise = (n: number) =>
    `ALTER SYSTEM SET max_wal_senders = ${n}; then restart PostgreSQL (RDS/Aurora/Azure: the max_wal_senders parameter)`;
  if (max === 0) return failed('wal_senders', 'max_wal_senders is 0', raise(10));
  const free = max - s.activeWalSenders;
  if (free >= 1) return ok('wal_senders', `${free} of ${max} free (pgcdc streams over 1)`);
  return failed(
    'wal_senders',
    `all ${max} WAL senders are busy (${s.activeWalSenders} replication connections)`,
    `stop an unused replication client or ${raise(max + 4)}`,
  );
}

// ---- tables -------------------------------------------------------------------------------------

// The selection is decided once, for the worker, check and discover alike.
export { selectTables } from '../../capture/selection.ts';

export function selectionCheck(
  selected: readonly TableRef[],
  missing: readonly TableRef[],
  s: Pick<CheckSettings, 'schemas' | 'include'>,
): CheckResult {
  if (missing.length > 0) {
    return failed(
      'tables',
      `tables.include: ${missing.map(show).join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist`,
      'correct tables.include (pgcdc discover lists the tables and prints the list)',
    );
  }
  if (selected.length === 0) {
    return failed(
      'tables',
      s.include.length > 0
        ? 'no table selected (tables.exclude removes every tables.include entry)'
        : `no table selected: schema${s.schemas.length === 1 ? '' : 's'} ${s.schemas.join(', ')} ${s.schemas.length === 1 ? 'has' : 'have'} no tables`,
      'set tables.include (pgcdc discover lists the tables) or postgres.schemas',
    );
  }
  const n = selected.length;
  return ok('tables', `${n} table${n === 1 ? '' : 's'} selected: ${listSome(selected.map(show))}`);
}

export function schemaUsageCheck(tables: readonly TableFacts[], role: Pick<RoleFacts, 'user' | 'sqlUser'>) {
  const schemas = new Map<string, string>();
  for (const t of tables) if (!t.schemaUsage) schemas.set(t.schema, t.sqlSchema);
  if (schemas.size === 0) {
    const all = [...new Set(tables.map((t) => t.schema))];
    return ok(
      'schema_usage',
      `${role.user} has USAGE on schema${all.length === 1 ? '' : 's'} ${listSome(all)}`,
    );
  }
  return failed(
    'schema_usage',
    `${role.user} has no USAGE on schema${schemas.size === 1 ? '' : 's'} ${[...schemas.keys()].join(', ')}`,
    [...schemas.values()].map((s) => `GRANT USAGE ON SCHEMA ${s} TO ${role.sqlUser};`).join(' '),
  );
}

export function selectCheck(
  tables: readonly TableFacts[],
  role: Pick<RoleFacts, 'user' | 'sqlUser'>,
  snapshotMode: string,
): CheckResult {
  const bad = tables.filter((t) => !t.canSelect);
  if (bad.length === 0) {
    return ok(
      'select_privilege',
      `${role.user} can SELECT from ${tables.length === 1 ? 'the selected table' : `all ${tables.length} selected tables`}`,
    );
  }
  const message = `${role.user} cannot SELECT from ${listSome(bad.map(show))} (the initial load reads ${bad.length === 1 ? 'it' : 'them'})`;
  const fix = `GRANT SELECT ON ${bad.map((t) => t.sqlName).join(', ')} TO ${role.sqlUser};`;
  return snapshotMode === 'never'
    ? warning('select_privilege', `${message}; snapshot.mode=never does not read them now`, fix)
    : failed('select_privilege', message, fix);
}

/** Why the user cannot create the publication for these tables; null when it can. */
export function whyCannotPublish(
  role: Pick<RoleFacts, 'superuser' | 'createOnDatabase' | 'database'>,
  tables: readonly TableFacts[],
  opts: { create: boolean; publicationOwned?: boolean },
): string | null {
  if (role.superuser) return null;
  const reasons: string[] = [];
  if (opts.create && !role.createOnDatabase) reasons.push(`no CREATE privilege on database ${role.database}`);
  if (!opts.create && !opts.publicationOwned) reasons.push('not the owner of the publication');
  const notOwned = tables.filter((t) => !t.owned);
  if (notOwned.length > 0) reasons.push(`not the owner of ${listSome(notOwned.map(show), 3)}`);
  return reasons.length > 0 ? reasons.join('; ') : null;
}

export function publicationChecks(
  pub: PublicationFacts,
  tables: readonly TableFacts[],
  role: RoleFacts,
  autoCreate: boolean,
): CheckResult[] {
  const names = (ts: readonly TableFacts[]) => ts.map((t) => t.sqlName).join(', ');
  if (!pub.exists) {
    const create = `CREATE PUBLICATION ${pub.sqlName} FOR TABLE ${names(tables)}${publicationOptions(tables)};`;
    if (!autoCreate) {
      return [
        failed(
          'publication',
          `publication ${pub.name} does not exist (publication.autoCreate is false)`,
          `${create} (or pgcdc check --fix, or publication.autoCreate=true)`,
        ),
      ];
    }
    const why = whyCannotPublish(role, tables, { create: true });
    if (why === null) {
      return [
        warning(
          'publication',
          `publication ${pub.name} does not exist; pgcdc will create it for the selected tables`,
        ),
      ];
    }
    return [
      failed(
        'publication',
        `publication ${pub.name} does not exist and ${role.user} cannot create it (${why})`,
        `as a superuser or the tables' owner: ${create}`,
      ),
    ];
  }
  const out: CheckResult[] = [];
  const missing = pub.allTables ? [] : tables.filter((t) => !pub.tables.has(tableKey(t)));
  if (missing.length > 0) {
    const alter = `ALTER PUBLICATION ${pub.sqlName} ADD TABLE ${names(missing)};`;
    const list = listSome(missing.map(show));
    const why = whyCannotPublish(role, missing, { create: false, publicationOwned: pub.owned });
    if (!autoCreate) {
      out.push(
        failed(
          'publication',
          `publication ${pub.name} does not include ${list}: ${missing.length === 1 ? 'its' : 'their'} changes would not be captured`,
          `${alter} (or pgcdc check --fix, or publication.autoCreate=true)`,
        ),
      );
    } else if (why === null) {
      out.push(
        warning('publication', `publication ${pub.name} does not include ${list}; pgcdc will add them`),
      );
    } else {
      out.push(
        failed(
          'publication',
          `publication ${pub.name} does not include ${list} and ${role.user} cannot add them (${why})`,
          `as the publication's owner or a superuser: ${alter}`,
        ),
      );
    }
  } else {
    out.push(
      ok(
        'publication',
        pub.allTables
          ? `publication ${pub.name} publishes all tables`
          : `publication ${pub.name} includes the ${tables.length === 1 ? 'selected table' : `${tables.length} selected tables`}`,
      ),
    );
  }
  const partitioned = tables.filter((t) => t.partitioned);
  if (partitioned.length > 0 && pub.viaRoot === false) {
    const list = listSome(partitioned.map(show));
    const set = `ALTER PUBLICATION ${pub.sqlName} SET (publish_via_partition_root = true);`;
    out.push(
      autoCreate
        ? warning(
            'publication',
            `publication ${pub.name} publishes the partitions of ${list} under their own names; pgcdc will set publish_via_partition_root`,
          )
        : failed(
            'publication',
            `publication ${pub.name} publishes the partitions of ${list} under their own names: their changes would not be captured`,
            set,
          ),
    );
  }
  const unpublished = (['insert', 'update', 'delete'] as const).filter((a) => !pub.publishes[a]);
  if (unpublished.length > 0) {
    out.push(
      warning(
        'publication',
        `publication ${pub.name} does not publish ${unpublished.join(', ')}: those changes are not captured`,
        `ALTER PUBLICATION ${pub.sqlName} SET (publish = 'insert, update, delete, truncate');`,
      ),
    );
  }
  return out;
}

/** Tables whose updates and deletes cannot be captured; `--fix` sets FULL on those without a primary key. */
export function needsIdentityFix(t: Pick<TableFacts, 'replicaIdentity' | 'primaryKey'>): boolean {
  return t.primaryKey.length === 0 && (t.replicaIdentity === 'default' || t.replicaIdentity === 'nothing');
}

export function replicaIdentityChecks(tables: readonly TableFacts[]): CheckResult[] {
  const out: CheckResult[] = [];
  let byKey = 0;
  let full = 0;
  let index = 0;
  for (const t of tables) {
    const name = show(t);
    if (t.replicaIdentity === 'full') full++;
    else if (t.replicaIdentity === 'index') index++;
    else if (t.replicaIdentity === 'default' && t.primaryKey.length > 0) byKey++;
    else {
      const what =
        t.replicaIdentity === 'nothing'
          ? 'has REPLICA IDENTITY NOTHING'
          : 'has no primary key and REPLICA IDENTITY DEFAULT';
      const fix =
        t.primaryKey.length > 0
          ? `ALTER TABLE ${t.sqlName} REPLICA IDENTITY DEFAULT; (or FULL for complete before-images)`
          : `ALTER TABLE ${t.sqlName} REPLICA IDENTITY FULL; (or add a primary key)`;
      out.push({
        ...failed(
          'replica_identity',
          `${name} ${what}: its updates and deletes cannot be captured (and PostgreSQL refuses UPDATE and DELETE on it once it is published)`,
          fix,
        ),
        table: name,
      });
    }
  }
  const parts: string[] = [];
  if (byKey > 0) {
    parts.push(
      `${byKey} by primary key (REPLICA IDENTITY DEFAULT: updates carry no before-image, deletes only the key, ` +
        'and unchanged TOASTed values arrive as a placeholder; REPLICA IDENTITY FULL sends whole rows)',
    );
  }
  if (full > 0) parts.push(`${full} FULL`);
  if (index > 0) parts.push(`${index} USING INDEX`);
  if (parts.length > 0) {
    const good = byKey + full + index;
    out.unshift(ok('replica_identity', `${good} table${good === 1 ? '' : 's'}: ${parts.join(', ')}`));
  }
  return out;
}

// ---- slot ---------------------------------------------------------------------------------------

export function slotCheck(
  slot: SlotFacts | null,
  s: Pick<CheckSettings, 'slot' | 'snapshotMode' | 'walWarnBytes'>,
  database: string,
): CheckResult {
  const name = s.slot.name;
  const drop = `SELECT pg_drop_replication_slot(${literal(name)});`;
  if (!slot) return ok('slot', `slot ${name} does not exist yet; pgcdc creates it (pgoutput) at start`);
  if (slot.type !== 'logical') {
    return failed('slot', `slot ${name} is a ${slot.type} slot`, `set slot.name, or drop it: ${drop}`);
  }
  if (slot.database !== database) {
    return failed(
      'slot',
      `slot ${name} belongs to database ${slot.database}, not ${database}`,
      `set slot.name (its default derives from name), or drop it: ${drop}`,
    );
  }
  if (slot.plugin !== 'pgoutput') {
    return failed(
      'slot',
      `slot ${name} uses the ${slot.plugin} plugin; pgcdc needs pgoutput`,
      `set slot.name, or drop it (pgcdc then creates it and takes a new snapshot): ${drop}`,
    );
  }
  if (slot.active) {
    const who = [
      slot.activePid !== null ? `pid ${slot.activePid}` : null,
      slot.activeApplication ? `application ${slot.activeApplication}` : null,
      slot.activeClient ? `from ${slot.activeClient}` : null,
    ].filter((x) => x !== null);
    return failed(
      'slot',
      `slot ${name} is in use by another connection${who.length > 0 ? ` (${who.join(', ')})` : ''}`,
      `stop the other consumer${slot.activePid !== null ? ` (or end it: SELECT pg_terminate_backend(${slot.activePid});)` : ''}, or give this worker its own slot.name`,
    );
  }
  const retained = slot.retainedBytes !== null ? prettyBytes(slot.retainedBytes) : null;
  if (slot.walStatus === 'lost') {
    const why = slot.invalidationReason ? `, invalidation_reason = ${slot.invalidationReason}` : '';
    const message = `slot ${name} was invalidated by the server and has lost WAL it needed (wal_status = lost${why})`;
    if (s.snapshotMode === 'when_needed' || s.snapshotMode === 'always') {
      // Not a warning: the configured mode handles it, and `pgcdc run` would say it twice (the
      // start plan announces the new snapshot in its own line).
      return ok('slot', `${message}; snapshot.mode=${s.snapshotMode} takes a new snapshot at start`);
    }
    return failed(
      'slot',
      `${message}: changes since its position cannot be read`,
      `set snapshot.mode=when_needed to take a new snapshot, or drop the slot (${drop}) and start again`,
    );
  }
  if (slot.walStatus === 'unreserved') {
    return warning(
      'slot',
      `slot ${name} retains ${retained ?? 'WAL'} beyond max_wal_size (wal_status = unreserved): it loses WAL at the next checkpoint unless it catches up`,
      `start pgcdc now, raise max_slot_wal_keep_size, or drop the slot if unused: ${drop}`,
    );
  }
  if (slot.retainedBytes !== null && slot.retainedBytes > s.walWarnBytes) {
    return warning(
      'slot',
      `slot ${name} retains ${retained} of WAL (more than heartbeat.walWarnBytes, ${prettyBytes(s.walWarnBytes)})`,
      `start pgcdc so that it catches up, or drop the slot if it is no longer used: ${drop}`,
    );
  }
  return ok(
    'slot',
    `slot ${name} exists (pgoutput, inactive)${retained !== null ? `, retains ${retained} of WAL` : ''}${slot.walStatus ? ` (wal_status ${slot.walStatus})` : ''}`,
  );
}
