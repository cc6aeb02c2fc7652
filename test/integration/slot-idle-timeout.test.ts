// PostgreSQL 18's idle_replication_slot_timeout: the server invalidates a slot that has had no
// reader for that long (checked at checkpoints). pgcdc was stopped; its next start names the slot
// and the reason (invalidation_reason = idle_timeout) in one line: refused with snapshot.mode
// initial, a new snapshot announced with when_needed.
//
// Which majors: PGCDC_PG_IDLE_TIMEOUT=18 (the default; the setting is new in 18).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { exited, freePort, killWorkers, spawnWorker, type WorkerProcess } from '../support/cli.ts';
import { dropTestSlots, eventually, serverEnv, uniqueName, workerEnv } from '../support/pipeline.ts';
import { startMatrixServer, type MatrixServer } from '../../deploy/local/pg-versions.ts';

/** The exit code, or 'still running' after `ms` (a worker that should have stopped and did not). */
const exitedWithin = (child: Parameters<typeof exited>[0], ms = 90_000): Promise<number | null | string> =>
  Promise.race([exited(child), new Promise<string>((r) => setTimeout(() => r('still running'), ms).unref())]);

const majors = (process.env.PGCDC_PG_IDLE_TIMEOUT ?? '18')
  .split(',')
  .map(Number)
  .filter((v) => v >= 18);

const lines = (w: WorkerProcess, re: RegExp): string[] =>
  w
    .output()
    .split('\n')
    .filter((l) => re.test(l));

describe('idle_replication_slot_timeout', () => {
  const servers: MatrixServer[] = [];
  after(async () => {
    await killWorkers();
    for (const s of servers) await s.remove();
    await dropTestSlots().catch(() => undefined);
  });

  for (const major of majors) {
    test(`PostgreSQL ${major}: a stopped connector's slot invalidated as idle; initial refuses in one line, when_needed snapshots`, async () => {
      const pgs = await startMatrixServer(major);
      servers.push(pgs);
      const name = uniqueName(`walidle${major}`);
      const table = `${name}_t`;
      const slot = `pgcdc_${name}`;
      await pgs.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
      await pgs.query(`INSERT INTO ${table} VALUES (1)`);
      const env = (extra: Record<string, string>) =>
        workerEnv(name, {
          ...serverEnv(pgs),
          PGCDC_TABLES_INCLUDE: `public.${table}`,
          PGCDC_SLOT_NAME: slot,
          PGCDC_LOG_FORMAT: 'json',
          ...extra,
        });
      const status = async (port: number) => {
        const res = await fetch(`http://127.0.0.1:${port}/connectors/${name}/status`).catch(() => null);
        return res?.ok ? ((await res.json()) as { phase?: string; snapshot?: { state?: string } }) : null;
      };
      const port = await freePort();
      const first = spawnWorker(env({ PGCDC_HTTP_PORT: String(port) }));
      await eventually(`streaming (${first.output().slice(-2000)})`, async () =>
        (await status(port))?.phase === 'STREAMING' ? true : undefined,
      );
      first.child.kill('SIGTERM');
      assert.equal(await exitedWithin(first.child), 0, first.output());

      await pgs.reload(['idle_replication_slot_timeout = 1s']);
      await eventually(`slot ${slot} invalidated as idle`, async () => {
        await pgs.query('CHECKPOINT');
        const { rows } = await pgs.query<{ reason: string | null }>(
          'SELECT invalidation_reason AS reason FROM pg_replication_slots WHERE slot_name = $1',
          [slot],
        );
        return rows[0]?.reason === 'idle_timeout' ? true : undefined;
      });
      // The new slot must not be invalidated while this test reads it.
      await pgs.reload(['idle_replication_slot_timeout = 0']);

      const refused = spawnWorker(env({ PGCDC_HTTP_PORT: '0' }));
      assert.equal(await exitedWithin(refused.child), 2, refused.output());
      const slotLine = lines(refused, new RegExp(`slot ${slot} was invalidated`));
      assert.equal(slotLine.length, 1, refused.output());
      assert.match(slotLine[0]!, /invalidation_reason = idle_timeout/);
      assert.match(slotLine[0]!, /snapshot\.mode=when_needed/);

      const port2 = await freePort();
      const again = spawnWorker(env({ PGCDC_HTTP_PORT: String(port2), PGCDC_SNAPSHOT_MODE: 'when_needed' }));
      await eventually(`streaming again (${again.output().slice(-2000)})`, async () =>
        (await status(port2))?.phase === 'STREAMING' ? true : undefined,
      );
      const announced = lines(again, /was invalidated by the server/);
      assert.equal(announced.length, 1, again.output());
      assert.match(
        announced[0]!,
        new RegExp(
          `replication slot ${slot} was invalidated by the server \\(invalidation_reason = idle_timeout: it was idle longer than idle_replication_slot_timeout\\); snapshot\\.mode=when_needed takes a new snapshot`,
        ),
      );
      assert.equal((await status(port2))?.snapshot?.state, 'completed');
      again.child.kill('SIGTERM');
      assert.equal(await exitedWithin(again.child), 0, again.output().slice(-3000));
    });
  }
});
