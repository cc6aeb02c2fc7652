// The publication decides which tables' changes the slot sends. pgcdc creates it for the
// selected tables when it is missing (publication.autoCreate) and refuses to run when a
// selected table is outside it, instead of silently capturing nothing for that table.
import type pg from 'pg';
import { UserError } from '../errors.ts';
import type { Logger } from '../worker/log.ts';
import { tableName, type TableRef } from './catalog.ts';
import { ident } from './connection.ts';

const qualified = (t: TableRef): string => `${ident(t.schema)}.${ident(t.table)}`;

export async function publishedTables(client: pg.Client, publication: string): Promise<Set<string> | null> {
  const exists = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  if (exists.rowCount === 0) return null;
  const { rows } = await client.query<{ schemaname: string; tablename: string }>(
    'SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1',
    [publication],
  );
  return new Set(rows.map((r) => `${r.schemaname}.${r.tablename}`));
}

export async function ensurePublication(
  client: pg.Client,
  pub: { name: string; autoCreate: boolean },
  tables: TableRef[],
  log: Logger,
): Promise<void> {
  const published = await publishedTables(client, pub.name);
  const list = tables.map(qualified).join(', ');
  if (published === null) {
    if (!pub.autoCreate) {
      throw new UserError(
        `publication ${pub.name} does not exist; run: CREATE PUBLICATION ${ident(pub.name)} FOR TABLE ${list}; (or set publication.autoCreate=true)`,
      );
    }
    await client.query(`CREATE PUBLICATION ${ident(pub.name)} FOR TABLE ${list}`);
    log.info('created publication', { publication: pub.name, tables: tables.map(tableName) });
    return;
  }
  const missing = tables.filter((t) => !published.has(tableName(t)));
  if (missing.length === 0) return;
  const missingList = missing.map(qualified).join(', ');
  if (!pub.autoCreate) {
    throw new UserError(
      `publication ${pub.name} does not include ${missing.map(tableName).join(', ')}; run: ALTER PUBLICATION ${ident(pub.name)} ADD TABLE ${missingList};`,
    );
  }
  await client.query(`ALTER PUBLICATION ${ident(pub.name)} ADD TABLE ${missingList}`);
  log.info('added tables to publication', { publication: pub.name, tables: missing.map(tableName) });
}
