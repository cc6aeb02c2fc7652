// The publication decides which tables' changes the slot sends. pgcdc creates it for the
// selected tables when it is missing (publication.autoCreate) and refuses to run when a
// selected table is outside it, instead of silently capturing nothing for that table.
// Partitioned tables need publish_via_partition_root, so that their partitions' changes (also of
// partitions attached later) arrive under the parent's name, on the parent's topic.
import type pg from 'pg';
import {
  publicationMembers,
  publicationOptions,
  tableKey,
  type CapturableTable,
} from '../capture/selection.ts';
import { UserError } from '../errors.ts';
import type { Logger } from '../worker/log.ts';
import { tableName } from './catalog.ts';
import { ident } from './connection.ts';

const qualified = (t: { schema: string; table: string }): string => `${ident(t.schema)}.${ident(t.table)}`;

export async function ensurePublication(
  client: pg.Client,
  pub: { name: string; autoCreate: boolean },
  tables: readonly CapturableTable[],
  log: Logger,
): Promise<void> {
  const { rows } = await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  const versionNum = Number(rows[0]!.v);
  const partitioned = tables.filter((t) => t.partitioned);
  if (partitioned.length > 0 && versionNum < 130000) {
    throw new UserError(
      `${partitioned.map(tableName).join(', ')} ${partitioned.length === 1 ? 'is a partitioned table' : 'are partitioned tables'}; ` +
        'capturing one needs PostgreSQL 13 or later (publish_via_partition_root); list its partitions in tables.include instead',
    );
  }
  const viaRoot = publicationOptions(tables);
  let members = await publicationMembers(client, pub.name, versionNum);
  const list = tables.map(qualified).join(', ');
  if (!members.exists) {
    if (!pub.autoCreate) {
      throw new UserError(
        `publication ${pub.name} does not exist; run: CREATE PUBLICATION ${ident(pub.name)} FOR TABLE ${list}${viaRoot}; (or set publication.autoCreate=true)`,
      );
    }
    await client.query(`CREATE PUBLICATION ${ident(pub.name)} FOR TABLE ${list}${viaRoot}`);
    log.info('created publication', { publication: pub.name, tables: tables.map(tableName) });
    return;
  }
  if (partitioned.length > 0 && !members.viaRoot) {
    const fix = `ALTER PUBLICATION ${ident(pub.name)} SET (publish_via_partition_root = true);`;
    if (!pub.autoCreate) {
      throw new UserError(
        `publication ${pub.name} publishes the partitions of ${partitioned.map(tableName).join(', ')} under their own names, which pgcdc does not capture; run: ${fix}`,
      );
    }
    await client.query(fix);
    log.info('set publish_via_partition_root on the publication', { publication: pub.name });
    members = await publicationMembers(client, pub.name, versionNum);
  }
  if (members.allTables) return;
  const missing = tables.filter((t) => !members.tables.has(tableKey(t)));
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
