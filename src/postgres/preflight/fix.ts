// `pgcdc check --fix`: the fixes that are safe to apply and that the user's privileges allow.
// REPLICA IDENTITY FULL only on tables without a primary key (DEFAULT with a key is fine), set
// before the tables join the publication: once a table without a replica identity is published,
// PostgreSQL refuses UPDATE and DELETE on it — so such a table is never added.
import type pg from 'pg';
import { publicationOptions } from '../../capture/selection.ts';
import { formatTableRef } from '../../config/tables.ts';
import { listSome, type FixAction } from './result.ts';
import {
  needsIdentityFix,
  tableKey,
  whyCannotPublish,
  type PublicationFacts,
  type RoleFacts,
  type TableFacts,
} from './rules.ts';

/** Without a usable replica identity: updates and deletes fail on the server once published. */
const lacksIdentity = (t: TableFacts): boolean =>
  t.replicaIdentity === 'nothing' || (t.replicaIdentity === 'default' && t.primaryKey.length === 0);

async function run(client: pg.Client, sql: string, blocked: string | null): Promise<FixAction> {
  if (blocked !== null) return { sql: `${sql};`, status: 'failed', message: `not applied: ${blocked}` };
  try {
    await client.query(sql);
    return { sql: `${sql};`, status: 'done' };
  } catch (err) {
    return { sql: `${sql};`, status: 'failed', message: (err as Error).message.split('\n')[0] };
  }
}

/**
 * Sets REPLICA IDENTITY FULL on the selected tables that have no primary key, then creates the
 * publication for the selected tables or adds the missing ones to it.
 */
export async function applyFixes(
  client: pg.Client,
  tables: readonly TableFacts[],
  pub: PublicationFacts,
  role: RoleFacts,
): Promise<FixAction[]> {
  const actions: FixAction[] = [];
  const stillLacking = new Set<string>();
  for (const t of tables) {
    if (!needsIdentityFix(t)) {
      if (lacksIdentity(t)) stillLacking.add(tableKey(t));
      continue;
    }
    const a = await run(
      client,
      `ALTER TABLE ${t.sqlName} REPLICA IDENTITY FULL`,
      t.owned ? null : `${role.user} does not own ${formatTableRef(t)} (${t.owner} does)`,
    );
    actions.push(a);
    if (a.status !== 'done') stillLacking.add(tableKey(t));
  }
  const eligible = tables.filter((t) => !stillLacking.has(tableKey(t)));
  const leftOut = tables.filter((t) => stillLacking.has(tableKey(t)));
  const note = (a: FixAction): FixAction =>
    leftOut.length === 0
      ? a
      : {
          ...a,
          message: [a.message, `left out ${listSome(leftOut.map(formatTableRef), 3)}: no replica identity`]
            .filter(Boolean)
            .join('; '),
        };
  const names = (ts: readonly TableFacts[]) => ts.map((t) => t.sqlName).join(', ');
  if (!pub.exists) {
    if (eligible.length > 0) {
      actions.push(
        note(
          await run(
            client,
            `CREATE PUBLICATION ${pub.sqlName} FOR TABLE ${names(eligible)}${publicationOptions(eligible)}`,
            whyCannotPublish(role, eligible, { create: true }),
          ),
        ),
      );
    }
  } else if (!pub.allTables) {
    const missing = eligible.filter((t) => !pub.tables.has(tableKey(t)));
    if (missing.length > 0) {
      actions.push(
        note(
          await run(
            client,
            `ALTER PUBLICATION ${pub.sqlName} ADD TABLE ${names(missing)}`,
            whyCannotPublish(role, missing, { create: false, publicationOwned: pub.owned }),
          ),
        ),
      );
    }
  }
  return actions;
}
