// The prerequisite checks of capture.method xmin (docs/xmin.md): only what polling by xmin needs
// — SELECT on the tables and a key to read them in order — and none of logical decoding's
// (wal_level, REPLICATION, publication, replica identity, slots, WAL senders). A primary and a
// standby are both fine. The trade-offs against CDC are stated once, here and in `pgcdc check`.
import type pg from 'pg';
import type { TableRef } from '../../config/tables.ts';
import { formatTableRef } from '../../config/tables.ts';
import { probeSlots, probeTables } from './probe.ts';
import { failed, listSome, ok, warning, type CheckResult } from './result.ts';
import {
  schemaUsageCheck,
  selectCheck,
  selectionCheck,
  selectTables,
  type RoleFacts,
  type ServerFacts,
  type TableFacts,
} from './rules.ts';

export interface XminCheckSettings {
  schemas: string[];
  include: TableRef[];
  exclude: TableRef[];
  slot: { name: string };
  pollIntervalMs: number;
}

/** What xmin mode gives up against logical decoding, in one sentence each (check prints them). */
export const XMIN_TRADE_OFFS: readonly string[] = [
  'deletes are not captured: a deleted row simply stops appearing (detect deletes with a periodic reconciliation of the keys in Kafka against the table, or use capture.method logical)',
  'only the latest version of a row is read: several updates between two polls arrive as one record, and no record has a before image',
  'each poll reads every selected table through its primary key to find the changed rows (the xmin column has no index): load on the server grows with the table sizes, not with the change rate (pgcdc discover estimates each scan)',
  'latency is up to capture.xmin.pollIntervalMs plus one poll; with logical decoding changes arrive as they commit',
  'a long-running transaction holds the cursor back: while it is open, each poll reads again every row written since it began',
];

/** One line: the method, and that its trade-offs are listed (check prints them in full). */
export function captureMethodCheck(pollIntervalMs: number): CheckResult {
  return ok(
    'capture_method',
    `capture.method xmin: polls every ${pollIntervalMs / 1000} s with SELECT only (no wal_level, REPLICATION, publication or slot needed); it does not capture deletes (docs/xmin.md)`,
  );
}

/** Every selected table needs a key: xmin mode reads in key order so a poll resumes mid-table. */
export function primaryKeyCheck(tables: readonly TableFacts[]): CheckResult {
  const keyless = tables.filter((t) => t.primaryKey.length === 0 && t.replicaIdentity !== 'index');
  if (keyless.length === 0) {
    return ok('primary_key', `every selected table has a primary key (xmin mode reads in key order)`);
  }
  return failed(
    'primary_key',
    `${listSome(keyless.map(formatTableRef))} ${keyless.length === 1 ? 'has' : 'have'} no primary key; capture.method xmin reads each table in primary-key order (so an interrupted poll resumes where it stopped)`,
    `add one (ALTER TABLE ${keyless[0]!.sqlName} ADD PRIMARY KEY (...);) or leave ${keyless.length === 1 ? 'it' : 'them'} out with tables.exclude`,
  );
}

/** On a standby a chunk is a short query, but recovery conflicts can still cancel it. */
export function standbyReadCheck(inRecovery: boolean, hotStandbyFeedback: boolean): CheckResult {
  if (!inRecovery) return ok('primary', 'connected to a primary');
  if (hotStandbyFeedback) return ok('primary', 'connected to a standby: xmin mode reads it like a primary');
  return warning(
    'primary',
    'connected to a standby with hot_standby_feedback off: a chunk that conflicts with vacuum replayed from the primary may be cancelled (the connector then restarts and resumes)',
    'ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf(); on the standby (or raise max_standby_streaming_delay)',
  );
}

/** A slot of this connector left over from capture.method logical keeps WAL on the server for nothing. */
export function leftoverSlotCheck(slot: { name: string } | undefined, database: string): CheckResult | null {
  if (!slot) return null;
  return warning(
    'slot',
    `replication slot ${slot.name} exists but capture.method xmin does not read it: it keeps WAL on the server`,
    `if nothing else reads it: SELECT pg_drop_replication_slot('${slot.name}'); (database ${database})`,
  );
}

/** The checks of capture.method xmin, after the connection and server version lines. */
export async function xminChecks(
  client: pg.Client,
  server: ServerFacts,
  role: RoleFacts,
  s: XminCheckSettings,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [captureMethodCheck(s.pollIntervalMs)];
  const { rows } = await client.query<{ feedback: string }>(
    `SELECT current_setting('hot_standby_feedback') AS feedback`,
  );
  results.push(standbyReadCheck(server.inRecovery, rows[0]?.feedback === 'on'));
  let all: TableFacts[];
  try {
    all = await probeTables(client, {
      sizes: false,
      versionNum: server.versionNum,
      ...(s.include.length > 0 ? { only: s.include } : { schemas: s.schemas }),
    });
  } catch (err) {
    results.push(
      failed(
        'tables',
        `${role.user} cannot list tables (${(err as Error).message.split('\n')[0]})`,
        'the user needs read access to the catalog (pg_class, pg_namespace, pg_index)',
      ),
    );
    return results;
  }
  const sel = selectTables(all, s);
  results.push(selectionCheck(sel.selected, sel.missing, s));
  if (sel.selected.length > 0) {
    results.push(schemaUsageCheck(sel.selected, role));
    results.push(selectCheck(sel.selected, role, 'initial'));
    results.push(primaryKeyCheck(sel.selected));
  }
  const slot = (await probeSlots(client, server)).find((x) => x.name === s.slot.name);
  const leftover = leftoverSlotCheck(slot, role.database);
  if (leftover) results.push(leftover);
  return results;
}

/** What one xmin poll reads of a table, from the planner's statistics (no scan). */
export interface XminScanCost {
  /** Heap pages × block size, partitions included (the TOAST of wide values comes on top). */
  heapBytes: number;
  /** reltuples; null when never analyzed. */
  rows: number | null;
}

/** Per table (formatTableRef), the cost of one xmin poll's scan: pg_class.relpages and reltuples. */
export async function probeXminScanCost(
  client: pg.Client,
  tables: readonly TableRef[],
): Promise<Map<string, XminScanCost>> {
  const { rows } = await client.query<{ schema: string; table: string; pages: string; tuples: string }>(
    // pg_partition_tree lists a partitioned table's partitions, and nothing for an ordinary table.
    `WITH t AS (
       SELECT n.nspname AS schema, c.relname AS table, c.oid, c.relkind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN json_array_elements($1::json) e ON e->>0 = n.nspname AND e->>1 = c.relname)
     SELECT t.schema, t.table,
            (sum(GREATEST(pc.relpages, 0))::int8 * current_setting('block_size')::int8)::text AS pages,
            (CASE WHEN bool_and(pc.reltuples < 0) THEN -1 ELSE sum(GREATEST(pc.reltuples, 0)) END)::float8 AS tuples
       FROM t JOIN pg_class pc ON pc.oid = t.oid AND t.relkind <> 'p'
         OR pc.oid IN (SELECT relid FROM pg_partition_tree(t.oid) WHERE isleaf AND t.relkind = 'p')
      GROUP BY t.schema, t.table`,
    [JSON.stringify(tables.map((t) => [t.schema, t.table]))],
  );
  return new Map(
    rows.map((r) => {
      const tuples = Number(r.tuples);
      return [
        formatTableRef(r),
        { heapBytes: Number(r.pages ?? 0), rows: tuples < 0 ? null : Math.round(tuples) },
      ];
    }),
  );
}
