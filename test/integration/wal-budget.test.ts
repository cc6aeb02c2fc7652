// The WAL budget and invalidated slots, on real servers. A paused connector reads nothing and
// confirms nothing, so its slot holds every byte written after it: pg_switch_wal() makes that WAL
// cheaply (it ends the current 16 MiB segment), and the slot's retained WAL passes the levels.
//
// - On the stack's PostgreSQL: the warning level gives one log line (not one per poll) and the
//   budget metrics; the critical level with walCriticalAction=stop fails the worker visibly and
//   releases the slot (dropped, offset forgotten).
// - On a throwaway server (deploy/local/pg-versions.ts; PGCDC_PG_WAL_BUDGET=17,18, default 17)
//   with max_slot_wal_keep_size = 1MB: the server invalidates the slot while pgcdc is attached
//   (the walsender is terminated): the worker ends FAILED with one line naming the slot and the
//   reason, not in a reconnect loop; a start with snapshot.mode=initial is refused with that
//   line; snapshot.mode=when_needed announces and takes a new snapshot.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { stackSuite } from '../support/connectors.ts';
import { exited, freePort, spawnWorker, type WorkerProcess } from '../support/cli.ts';
import { eventually, serverEnv, uniqueName, workerEnv } from '../support/pipeline.ts';
import { startMatrixServer, type MatrixServer } from '../../deploy/local/pg-versions.ts';

/** The exit code, or 'still running' after `ms` (a worker that should have stopped and did not). */
const exitedWithin = (child: Parameters<typeof exited>[0], ms = 90_000): Promise<number | null | string> =>
  Promise.race([exited(child), new Promise<string>((r) => setTimeout(() => r('still running'), ms).unref())]);

const majors = (process.env.PGCDC_PG_WAL_BUDGET ?? '17')
  .split(',')
  .map(Number)
  .filter((v) => v > 0);

const MiB = 1024 ** 2;

interface Api {
  status(): Promise<{ phase?: string; connector?: { state?: string }; snapshot?: { state?: string } } | null>;
  metrics(): Promise<string>;
  pause(): Promise<void>;
}

function api(name: string, port: number): Api {
  const base = `http://127.0.0.1:${port}`;
  return {
    status: async () => {
      const res = await fetch(`${base}/connectors/${name}/status`).catch(() => null);
      return res?.ok ? ((await res.json()) as Awaited<ReturnType<Api['status']>>) : null;
    },
    metrics: async () => (await fetch(`${base}/metrics`).catch(() => null))?.text() ?? '',
    pause: async () => {
      const res = await fetch(`${base}/connectors/${name}/pause`, { method: 'PUT' });
      assert.equal(res.status, 202);
    },
  };
}

/** A metric's value by name and some of its labels (every series also has the connector label). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const line = text
    .split('\n')
    .find(
      (l) =>
        (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) &&
        Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)),
    );
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : undefined;
}

const lines = (w: WorkerProcess, re: RegExp): string[] =>
  w
    .output()
    .split('\n')
    .filter((l) => re.test(l));

type Query = (sql: string) => Promise<pg.QueryResult>;

/** Ends the current WAL segment (after writing a little, else there is nothing to end). */
async function switchWal(q: Query): Promise<void> {
  await q(`SELECT pg_logical_emit_message(false, 'pgcdc-test-filler', repeat('x', 1000))`);
  await q('SELECT pg_switch_wal()');
}

/** Writes WAL until the slot retains more than `bytes`. */
async function retainMore(q: Query, slot: string, bytes: number): Promise<void> {
  await eventually(`slot ${slot} retains more than ${bytes} bytes`, async () => {
    await switchWal(q);
    const { rows } = await q(
      `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8::text AS r FROM pg_replication_slots WHERE slot_name = '${slot}'`,
    );
    return Number(rows[0]?.r ?? 0) > bytes ? true : undefined;
  });
}

describe('WAL budget', () => {
  const { db } = stackSuite();

  test('warning level: one line and the budget metrics; critical with walCriticalAction=stop: FAILED, slot released', async () => {
    const name = uniqueName('walb');
    const table = `${name}_t`;
    const slot = `pgcdc_${name}`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    const port = await freePort();
    const w = spawnWorker(
      workerEnv(name, {
        PGCDC_TABLES_INCLUDE: `public.${table}`,
        PGCDC_SLOT_NAME: slot,
        PGCDC_HTTP_PORT: String(port),
        PGCDC_HEARTBEAT_WAL_WARN_BYTES: '8MiB',
        PGCDC_HEARTBEAT_WAL_CRITICAL_BYTES: '80MiB',
        PGCDC_HEARTBEAT_WAL_CRITICAL_ACTION: 'stop',
        PGCDC_EXIT_ON_FAILURE_AFTER: '5',
        PGCDC_LOG_FORMAT: 'json',
      }),
    );
    const a = api(name, port);
    await eventually(`streaming (${w.output().slice(-2000)})`, async () =>
      (await a.status())?.phase === 'STREAMING' ? true : undefined,
    );
    const first = await a.metrics();
    assert.equal(metric(first, 'pgcdc_slot_wal_budget_bytes', { level: 'warning' }), 8 * MiB);
    assert.equal(metric(first, 'pgcdc_slot_wal_budget_bytes', { level: 'critical' }), 80 * MiB);
    await a.pause();
    await retainMore((sql) => db.query(sql), slot, 9 * MiB);
    await eventually('warning state exported', async () =>
      metric(await a.metrics(), 'pgcdc_slot_wal_budget_state', { state: 'warning' }) === 1 ? true : undefined,
    );
    // At least one more poll (every 5 s) in the warning state: still the one line of the crossing.
    await new Promise((r) => setTimeout(r, 6_000));
    assert.equal(lines(w, /above heartbeat\.walWarnBytes/).length, 1, w.output());
    assert.equal(metric(await a.metrics(), 'pgcdc_slot_wal_warning'), 1);

    await retainMore((sql) => db.query(sql), slot, 81 * MiB);
    const code = await exitedWithin(w.child);
    assert.equal(code, 2, `a user-visible failure exits 2:\n${w.output().slice(-3000)}`);
    const failed = lines(w, /heartbeat\.walCriticalAction=stop/);
    assert.equal(failed.length, 1, w.output());
    assert.match(
      failed[0]!,
      new RegExp(
        `replication slot ${slot} retains .* above heartbeat\\.walCriticalBytes \\(80 MiB\\).*released replication slot ${slot} \\(dropped\\) and forgot the offset.*the next start takes a new snapshot \\(snapshot\\.mode=initial\\)`,
      ),
    );
    const left = await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    assert.equal(left.rowCount, 0, 'the slot is dropped');
    const show = spawnWorker(workerEnv(name, { PGCDC_SLOT_NAME: slot }), ['offsets', 'show']);
    assert.equal(await exitedWithin(show.child), 0, show.output());
    assert.match(show.output(), /no stored offset/);
  });

  const servers: MatrixServer[] = [];
  after(async () => {
    for (const s of servers) await s.remove();
  });

  for (const major of majors) {
    test(`PostgreSQL ${major}: a slot invalidated past max_slot_wal_keep_size fails the worker in one line; when_needed takes an announced new snapshot`, async () => {
      const pgs = await startMatrixServer(major);
      servers.push(pgs);
      const name = uniqueName(`walinv${major}`);
      const table = `${name}_t`;
      const slot = `pgcdc_${name}`;
      await pgs.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
      await pgs.query(`INSERT INTO ${table} VALUES (1), (2)`);
      const env = (extra: Record<string, string>) =>
        workerEnv(name, {
          ...serverEnv(pgs),
          PGCDC_TABLES_INCLUDE: `public.${table}`,
          PGCDC_SLOT_NAME: slot,
          PGCDC_EXIT_ON_FAILURE_AFTER: '0',
          PGCDC_LOG_FORMAT: 'json',
          ...extra,
        });
      const port = await freePort();
      const w = spawnWorker(env({ PGCDC_HTTP_PORT: String(port) }));
      const a = api(name, port);
      await eventually(`streaming (${w.output().slice(-2000)})`, async () =>
        (await a.status())?.phase === 'STREAMING' ? true : undefined,
      );
      await a.pause();
      await pgs.reload(['max_slot_wal_keep_size = 1MB']);
      const q = (sql: string) => pgs.query(sql);
      await eventually(`slot ${slot} invalidated`, async () => {
        for (let i = 0; i < 3; i++) await switchWal(q);
        await q('CHECKPOINT');
        const { rows } = await q(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = '${slot}'`);
        return rows[0]?.wal_status === 'lost' ? true : undefined;
      });
      // The server terminated the walsender; the worker's next start finds the slot invalidated.
      assert.equal(await exitedWithin(w.child), 2, w.output().slice(-3000));
      const reason = major >= 17 ? 'invalidation_reason = wal_removed' : 'wal_status = lost';
      const invalidated = lines(w, /was invalidated by the server/);
      assert.equal(invalidated.length, 1, w.output());
      assert.match(
        invalidated[0]!,
        new RegExp(`replication slot ${slot} was invalidated by the server \\(${reason}`),
      );
      assert.match(invalidated[0]!, /Set snapshot\.mode=when_needed/);
      assert.ok(lines(w, /connection lost; restarting/).length <= 1, `no reconnect loop:\n${w.output()}`);

      // A start with snapshot.mode=initial is refused before it begins, with the slot's line and the fix.
      const refused = spawnWorker(env({ PGCDC_HTTP_PORT: '0' }));
      assert.equal(await exitedWithin(refused.child), 2, refused.output());
      const slotLine = lines(refused, new RegExp(`slot ${slot} was invalidated`));
      assert.equal(slotLine.length, 1, refused.output());
      if (major >= 17) assert.match(slotLine[0]!, /invalidation_reason = wal_removed/);
      assert.match(refused.output(), /snapshot\.mode=when_needed/);
      // The check beside it: the default critical level cannot act below the server's limit.
      assert.match(
        refused.output(),
        /wal budget +heartbeat\.walCriticalBytes \(10 GiB\) is not below the server's max_slot_wal_keep_size \(1 MiB\)/,
      );

      await pgs.query(`INSERT INTO ${table} VALUES (3)`);
      const port2 = await freePort();
      const again = spawnWorker(env({ PGCDC_HTTP_PORT: String(port2), PGCDC_SNAPSHOT_MODE: 'when_needed' }));
      const a2 = api(name, port2);
      await eventually(`streaming again (${again.output().slice(-2000)})`, async () =>
        (await a2.status())?.phase === 'STREAMING' ? true : undefined,
      );
      const announced = lines(again, /snapshot\.mode=when_needed takes a new snapshot/);
      assert.equal(announced.length, 1, again.output());
      assert.match(announced[0]!, new RegExp(`replication slot ${slot} was invalidated by the server`));
      assert.equal((await a2.status())?.snapshot?.state, 'completed');
      const { rows } = await pgs.query<{ wal_status: string }>(
        'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      assert.notEqual(rows[0]?.wal_status, 'lost', 'a new slot');
      again.child.kill('SIGTERM');
      assert.equal(await exitedWithin(again.child), 0, again.output().slice(-3000));
    });
  }
});
