// `pgcdc discover [--config FILE] [--json]`: the tables this user can replicate — key, replica
// identity, estimated rows, size, publication membership — and the selection as the
// comma-separated `schema.table` list tables.include takes (quoted where the config parser needs it).
import { formatTableRef } from '../config/tables.ts';
import { defaultPublicationName } from '../config/names.ts';
import { connectForChecks, formatLine, prettyBytes } from '../postgres/preflight.ts';
import { probePublication, probeServer, probeTables } from '../postgres/preflight/probe.ts';
import { selectTables, tableKey } from '../capture/selection.ts';
import type { TableFacts } from '../postgres/preflight/rules.ts';
import { probeXminScanCost, type XminScanCost } from '../postgres/preflight/xmin.ts';
import { loadConfigForChecks } from './check.ts';

/** `12 MiB, 100,000 rows`: what one xmin poll reads of a table (heap pages; TOAST on top). */
function xminScanText(c: XminScanCost | undefined): string {
  if (!c) return '?';
  return `${prettyBytes(c.heapBytes)}, ${c.rows === null ? '? rows (never analyzed)' : `${c.rows.toLocaleString('en-US')} rows`}`;
}

function xminScanSummary(selected: readonly DiscoveredTable[]): string {
  const bytes = selected.reduce((n, t) => n + (t.xminScan?.heapBytes ?? 0), 0);
  const rows = selected.reduce((n, t) => n + (t.xminScan?.rows ?? 0), 0);
  return (
    `capture.method xmin: every poll reads the selected tables through their primary keys, about ${prettyBytes(bytes)} ` +
    `(${rows.toLocaleString('en-US')} rows) per poll, however few rows changed (docs/xmin.md)`
  );
}

export interface DiscoveredTable {
  /** As tables.include takes it: `sales."Order.Items"`. */
  name: string;
  schema: string;
  table: string;
  partitioned: boolean;
  primaryKey: string[];
  replicaIdentity: TableFacts['replicaIdentity'];
  /** reltuples; null when the table was never analyzed. */
  estimatedRows: number | null;
  sizeBytes: number | null;
  size: string | null;
  /** In the connector's publication (false when the publication does not exist yet). */
  inPublication: boolean;
  /** Selected by the configuration (tables.include, or postgres.schemas, minus tables.exclude). */
  selected: boolean;
  /** capture.method xmin: what one poll reads of the table (planner statistics). */
  xminScan?: XminScanCost;
}

export interface Discovery {
  database: string;
  user: string;
  publication: { name: string; exists: boolean } | null;
  tables: DiscoveredTable[];
  /** Tables this user cannot read (no SELECT, or no USAGE on the schema): not listed above. */
  notReadable: string[];
  /** The selected tables as tables.include takes them. */
  include: string;
  /** capture.method: xmin adds each table's scan per poll. */
  capture?: 'logical' | 'xmin';
}

/** The tables.include text for these tables: `public.orders, sales."Order.Items"`. */
export function includeList(tables: readonly { schema: string; table: string }[]): string {
  return tables.map(formatTableRef).join(', ');
}

/** Columns padded to their widest cell; the last column is not padded. */
export function alignedTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatDiscovery(d: Discovery): string {
  const xmin = d.capture === 'xmin';
  const rows = d.tables.map((t) => [
    t.name + (t.partitioned ? ' (partitioned)' : ''),
    t.primaryKey.length > 0 ? t.primaryKey.join(',') : '-',
    t.replicaIdentity,
    t.estimatedRows === null ? '?' : t.estimatedRows.toLocaleString('en-US'),
    t.size ?? '?',
    d.publication ? (t.inPublication ? 'yes' : 'no') : '-',
    t.selected ? 'yes' : 'no',
    ...(xmin ? [xminScanText(t.xminScan)] : []),
  ]);
  const pub = d.publication
    ? `publication ${d.publication.name}${d.publication.exists ? '' : ' (does not exist yet)'}`
    : 'publication unknown (set name or publication.name)';
  const out = [
    `pgcdc discover: database ${d.database} as ${d.user}, ${pub}`,
    '',
    d.tables.length > 0
      ? alignedTable(
          [
            'TABLE',
            'PRIMARY KEY',
            'REPLICA IDENTITY',
            'ROWS (EST.)',
            'SIZE',
            'PUBLISHED',
            'SELECTED',
            ...(xmin ? ['XMIN SCAN PER POLL (EST.)'] : []),
          ],
          rows,
        )
      : `no table ${d.user} can read`,
  ];
  if (d.notReadable.length > 0) {
    out.push(
      '',
      `not listed: ${d.notReadable.length} table${d.notReadable.length === 1 ? '' : 's'} ${d.user} cannot read (no SELECT, or no USAGE on the schema): ${d.notReadable.slice(0, 5).join(', ')}${d.notReadable.length > 5 ? ', …' : ''}`,
    );
  }
  const selected = d.tables.filter((t) => t.selected).length;
  if (xmin) out.push('', xminScanSummary(d.tables.filter((t) => t.selected)));
  out.push(
    '',
    selected > 0
      ? `tables.include for the ${selected} selected table${selected === 1 ? '' : 's'} (edit and paste into the configuration):`
      : 'no table selected by the configuration (tables.include / postgres.schemas); every table listed:',
    d.include,
  );
  return `${out.join('\n')}\n`;
}

export interface DiscoverCommand {
  file?: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  json: boolean;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
}

export async function discoverCommand(c: DiscoverCommand): Promise<number> {
  const out = c.out ?? process.stdout;
  const { config, unset } = loadConfigForChecks({ file: c.file, env: c.env, args: c.args }, [
    'kafka.brokers',
    'registry.url',
    'name',
  ]);
  const opened = await connectForChecks(config, { applicationName: 'pgcdc-discover' });
  if ('result' in opened) {
    (c.err ?? process.stderr).write(`${formatLine(opened.result)}\n`);
    return 2;
  }
  const { client, endpoint } = opened;
  try {
    const { server, role } = await probeServer(client);
    const all = await probeTables(client, { sizes: true, versionNum: server.versionNum });
    // Without a connector name the default publication name is unknown.
    const pubName =
      unset.has('name') && config.publication.name === defaultPublicationName(config.name)
        ? null
        : config.publication.name;
    const pub = pubName ? await probePublication(client, pubName, server.versionNum) : null;
    const readable = all.filter((t) => t.canSelect && t.schemaUsage);
    const selected = new Set(
      selectTables(readable, {
        schemas: config.postgres.schemas,
        include: config.tables.include,
        exclude: config.tables.exclude,
      }).selected.map(tableKey),
    );
    const tables: DiscoveredTable[] = readable.map((t) => ({
      name: formatTableRef(t),
      schema: t.schema,
      table: t.table,
      partitioned: t.partitioned,
      primaryKey: t.primaryKey,
      replicaIdentity: t.replicaIdentity,
      estimatedRows: t.estimatedRows,
      sizeBytes: t.sizeBytes,
      size: t.sizeBytes === null ? null : prettyBytes(t.sizeBytes),
      inPublication: pub !== null && pub.exists && (pub.allTables || pub.tables.has(tableKey(t))),
      selected: selected.has(tableKey(t)),
    }));
    if (config.capture.method === 'xmin') {
      const costs = await probeXminScanCost(client, tables);
      for (const t of tables) t.xminScan = costs.get(t.name);
    }
    const chosen = tables.some((t) => t.selected) ? tables.filter((t) => t.selected) : tables;
    const d: Discovery = {
      database: role.database,
      user: role.user,
      publication: pub ? { name: pub.name, exists: pub.exists } : null,
      tables,
      notReadable: all.filter((t) => !(t.canSelect && t.schemaUsage)).map(formatTableRef),
      include: includeList(chosen),
      capture: config.capture.method,
    };
    out.write(c.json ? `${JSON.stringify(d, null, 2)}\n` : formatDiscovery(d));
    return 0;
  } finally {
    await client.end().catch(() => undefined);
    await endpoint.close().catch(() => undefined);
  }
}
