// The WAL budget while Kafka is down: the connector cannot start (STARTING, then RECONNECTING) and
// its slot holds every byte written meanwhile. The guard reads the slot on a connection of its
// own.
// - A first start that never reached Kafka has not read the stored offset, so nothing vouches that
//   the slot is pgcdc's: walCriticalAction=stop names it in one line and does not drop it.
// - PGCDC_TEST_WAL_OUTAGE=1 (about 2 minutes, not in CI): a worker that streamed on a throwaway
//   broker, which is then killed: past the critical level the slot is released (dropped; the
//   offset cannot be forgotten) and the one failure line says what the next start will do.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { stackSuite } from '../support/connectors.ts';
import { exited, freePort, spawnWorker, type WorkerProcess } from '../support/cli.ts';
import { eventually, uniqueName, workerEnv } from '../support/pipeline.ts';
import { ThrowawayKafka } from '../support/throwaway-kafka.ts';

const CRITICAL = 40 * 1024 ** 2;

/** The exit code, or 'still running' after `ms` (a worker that should have stopped and did not). */
const exitedWithin = (child: Parameters<typeof exited>[0], ms = 90_000): Promise<number | null | string> =>
  Promise.race([exited(child), new Promise<string>((r) => setTimeout(() => r('still running'), ms).unref())]);

const lines = (w: WorkerProcess, re: RegExp): string[] =>
  w
    .output()
    .split('\n')
    .filter((l) => re.test(l));

async function status(name: string, port: number): Promise<{ phase?: string } | null> {
  const res = await fetch(`http://127.0.0.1:${port}/connectors/${name}/status`).catch(() => null);
  return res?.ok ? ((await res.json()) as { phase?: string }) : null;
}

/** Writes WAL (a segment switch at a time) until the slot retains more than the critical level. */
async function pastCritical(db: pg.Client, slot: string): Promise<void> {
  await eventually(`slot ${slot} retains more than ${CRITICAL} bytes`, async () => {
    await db.query(`SELECT pg_logical_emit_message(false, 'pgcdc-test-filler', repeat('x', 1000))`);
    await db.query('SELECT pg_switch_wal()');
    const { rows } = await db.query<{ r: string | null }>(
      `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8::text AS r FROM pg_replication_slots WHERE slot_name = $1`,
      [slot],
    );
    return Number(rows[0]?.r ?? 0) > CRITICAL ? true : undefined;
  });
}

describe('WAL budget while Kafka is down', () => {
  const { db } = stackSuite();

  const setup = async (prefix: string) => {
    const name = uniqueName(prefix);
    const table = `${name}_t`;
    const slot = `pgcdc_${name}`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    const env = (extra: Record<string, string>) =>
      workerEnv(name, {
        PGCDC_TABLES_INCLUDE: `public.${table}`,
        PGCDC_SLOT_NAME: slot,
        PGCDC_LOG_FORMAT: 'json',
        PGCDC_HEARTBEAT_WAL_CRITICAL_BYTES: String(CRITICAL),
        PGCDC_HEARTBEAT_WAL_CRITICAL_ACTION: 'stop',
        PGCDC_EXIT_ON_FAILURE_AFTER: '0',
        ...extra,
      });
    return { name, slot, env };
  };

  test('a first start that cannot reach Kafka does not drop the slot: one line with the SQL instead', async () => {
    const { name, slot, env } = await setup('walout');
    // A first run creates the slot and stores an offset for it.
    const port = await freePort();
    const first = spawnWorker(env({ PGCDC_HTTP_PORT: String(port) }));
    await eventually(`streaming (${first.output().slice(-2000)})`, async () =>
      (await status(name, port))?.phase === 'STREAMING' ? true : undefined,
    );
    first.child.kill('SIGTERM');
    assert.equal(await exitedWithin(first.child), 0, first.output());

    // Kafka at an address where nothing listens: the stored offset cannot be read.
    const port2 = await freePort();
    const w = spawnWorker(
      env({ PGCDC_HTTP_PORT: String(port2), PGCDC_KAFKA_BROKERS: `127.0.0.1:${await freePort()}` }),
    );
    await eventually(`starting (${w.output().slice(-2000)})`, async () => {
      const phase = (await status(name, port2))?.phase;
      return phase === 'STARTING' || phase === 'RECONNECTING' ? true : undefined;
    });
    await pastCritical(db, slot);
    const refusal = new RegExp(
      `replication slot ${slot} retains .* above heartbeat\\.walCriticalBytes \\(40 MiB\\); heartbeat\\.walCriticalAction=stop does not release it: .*no stored offset vouches .*SELECT pg_drop_replication_slot\\('${slot}'\\)`,
    );
    await eventually(`the refusal line (${w.output().slice(-2000)})`, async () =>
      lines(w, refusal).length > 0 ? true : undefined,
    );
    // Another poll (every 5 s) past the level: still one line, the slot still there, the worker still trying.
    await new Promise((r) => setTimeout(r, 6_000));
    assert.equal(lines(w, refusal).length, 1, w.output().slice(-3000));
    const left = await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    assert.equal(left.rowCount, 1, 'the slot is kept');
    assert.equal(w.child.exitCode, null, 'the worker keeps trying');
    w.child.kill('SIGTERM');
    await exitedWithin(w.child);
  });

  test(
    'a worker that streamed and lost Kafka releases its slot past the critical level',
    {
      skip:
        process.env.PGCDC_TEST_WAL_OUTAGE === '1'
          ? false
          : 'PGCDC_TEST_WAL_OUTAGE=1 runs it (about 2 minutes)',
    },
    async () => {
      const k = await ThrowawayKafka.start();
      after(() => k.destroy());
      const { name, slot, env } = await setup('walkdown');
      const port = await freePort();
      const w = spawnWorker(env({ PGCDC_HTTP_PORT: String(port), PGCDC_KAFKA_BROKERS: k.brokers }));
      await eventually(`streaming (${w.output().slice(-2000)})`, async () =>
        (await status(name, port))?.phase === 'STREAMING' ? true : undefined,
      );
      await k.kill();
      await eventually(
        'reconnecting',
        async () => ((await status(name, port))?.phase === 'RECONNECTING' ? true : undefined),
        180_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; worker output:\n${w.output().slice(-4000)}`);
      });
      await pastCritical(db, slot);
      assert.equal(await exitedWithin(w.child, 150_000), 2, w.output().slice(-3000));
      const failed = lines(w, /heartbeat\.walCriticalAction=stop: the connector stopped/);
      assert.equal(failed.length, 1, w.output().slice(-3000));
      assert.match(failed[0]!, /could not forget the offset/);
      assert.match(failed[0]!, new RegExp(`dropped replication slot ${slot}`));
      assert.match(
        failed[0]!,
        /the next start refuses the stored offset \(snapshot\.mode=initial\); run pgcdc offsets reset --yes/,
      );
      const left = await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      assert.equal(left.rowCount, 0, 'the slot is dropped');
    },
  );
});
