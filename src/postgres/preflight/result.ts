// What a prerequisite check reports: one line per check, `ok` / `warning` / `failed`, with the
// exact SQL or setting that fixes a failure. The same lines serve `pgcdc check` and the checks
// `pgcdc run` makes before it starts.

export type CheckStatus = 'ok' | 'warning' | 'failed';

export type CheckId =
  | 'config'
  | 'ssh'
  | 'connection'
  | 'server_version'
  | 'wal_level'
  | 'primary'
  | 'replication'
  | 'replication_slots'
  | 'wal_senders'
  | 'tables'
  | 'schema_usage'
  | 'select_privilege'
  | 'publication'
  | 'replica_identity'
  | 'slot'
  | 'wal_budget'
  | 'capability'
  | 'publication_filters'
  | 'failover'
  | 'kafka'
  | 'schema_registry'
  | 'capture_method'
  | 'primary_key';

/** The label printed for each check (second column). */
export const LABELS: Record<CheckId, string> = {
  config: 'configuration',
  ssh: 'ssh host key',
  connection: 'connection',
  server_version: 'server version',
  wal_level: 'wal_level',
  primary: 'primary',
  replication: 'replication privilege',
  replication_slots: 'replication slots',
  wal_senders: 'wal senders',
  tables: 'tables',
  schema_usage: 'schema usage',
  select_privilege: 'select privilege',
  publication: 'publication',
  replica_identity: 'replica identity',
  slot: 'slot',
  wal_budget: 'wal budget',
  capability: 'server supports',
  publication_filters: 'publication filters',
  failover: 'failover',
  kafka: 'kafka',
  schema_registry: 'schema registry',
  capture_method: 'capture method',
  primary_key: 'primary key',
};

export interface CheckResult {
  id: CheckId;
  status: CheckStatus;
  /** What was found, one sentence. */
  message: string;
  /** What fixes it: the SQL to run or the setting to change. */
  fix?: string;
  /** The table a per-table line is about (`schema.table`). */
  table?: string;
  /** A failure that may pass on its own (server unreachable or starting): `run` starts and retries. */
  transient?: boolean;
}

/** A change `pgcdc check --fix` made (or could not make). */
export interface FixAction {
  sql: string;
  status: 'done' | 'failed';
  message?: string;
}

export const ok = (id: CheckId, message: string): CheckResult => ({ id, status: 'ok', message });
export const warning = (id: CheckId, message: string, fix?: string): CheckResult =>
  fix ? { id, status: 'warning', message, fix } : { id, status: 'warning', message };
export const failed = (id: CheckId, message: string, fix?: string): CheckResult =>
  fix ? { id, status: 'failed', message, fix } : { id, status: 'failed', message };

const LABEL_WIDTH = Math.max(...Object.values(LABELS).map((l) => l.length));

/** `failed   wal_level              wal_level is replica …; fix: ALTER SYSTEM …` — one line, no newline. */
export function formatLine(r: CheckResult): string {
  const text = r.fix ? `${r.message}; fix: ${r.fix}` : r.message;
  return `${r.status.padEnd(7)}  ${LABELS[r.id].padEnd(LABEL_WIDTH)}  ${text}`.replace(/\s*\n\s*/g, ' ');
}

export function formatFix(a: FixAction): string {
  const head = a.status === 'done' ? 'fixed  ' : 'failed ';
  return `${head}  ${'--fix'.padEnd(LABEL_WIDTH)}  ${a.sql}${a.message ? ` (${a.message})` : ''}`;
}

/** True when nothing failed (warnings do not stop pgcdc). */
export function passed(results: readonly CheckResult[]): boolean {
  return results.every((r) => r.status !== 'failed');
}

/** `2 failed, 1 warning, 11 ok`. */
export function summarize(results: readonly CheckResult[]): string {
  const count = (s: CheckStatus) => results.filter((r) => r.status === s).length;
  const f = count('failed');
  const w = count('warning');
  const parts = [`${f} failed`, `${w} warning${w === 1 ? '' : 's'}`, `${count('ok')} ok`];
  return parts.join(', ');
}

/** Human byte count with binary units, one decimal: `512 bytes`, `1.5 KiB`, `3.2 GiB`. */
export function prettyBytes(n: number | bigint): string {
  let v = Number(n);
  if (!Number.isFinite(v)) return String(n);
  const sign = v < 0 ? '-' : '';
  v = Math.abs(v);
  if (v < 1024) return `${sign}${v} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = -1;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = v >= 100 ? v.toFixed(0) : v.toFixed(1).replace(/\.0$/, '');
  return `${sign}${text} ${units[i]}`;
}

/** `a, b, c and 4 more`. */
export function listSome(items: readonly string[], max = 5): string {
  if (items.length <= max) return items.join(', ');
  return `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}
