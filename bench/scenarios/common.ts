// What every scenario gets from the runner, and the clean-up after a worker run.
import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { deleteTopics, dropSlotIfExists, publicationName, slotName } from '../lib.ts';

export interface Context {
  /** N: rows of the initial load and of the large transaction. */
  rows: number;
  /** The table with N rows (snapshot and baselines). */
  table: string;
  db: pg.Client;
  admin: Admin;
  outDir: string;
  cores: number;
  /** Settings every worker gets on top of workerEnv (recorded in the JSON). */
  workerSettings: Record<string, string>;
  stream: { rates: number[]; stepSeconds: number; clients: number; backlogChanges: number };
  latency: { rate: number; seconds: number; clients: number };
  keepTopics: boolean;
}

/** Drops what a worker run left behind: its slot (it would hold WAL), publication and topics. */
export async function cleanUp(ctx: Context, name: string, extraSlots: string[] = []): Promise<void> {
  for (const s of [slotName(name), ...extraSlots]) await dropSlotIfExists(ctx.db, s);
  await ctx.db.query(`DROP PUBLICATION IF EXISTS ${publicationName(name)}`).catch(() => undefined);
  if (!ctx.keepTopics) {
    await deleteTopics(ctx.admin, `${name}.`);
    await deleteTopics(ctx.admin, `${name}-offsets`);
  }
}
