// The WAL budget during an outage: with Kafka unreachable the connector never gets past start-up
// (RECONNECTING) and its slot holds every byte written meanwhile. The guard reads the slot on a
// connection of its own, and walCriticalAction=stop releases it: the slot is dropped although the
// offset cannot be forgotten, and the one failure line says what the next start will do.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite } from '../support/connectors.ts';
import { exited, freePort, spawnWorker } from '../support/cli.ts';
import { eventually, uniqueName, workerEnv } from '../support/pipeline.ts';

/** The exit code, or 'still running' after `ms` (a worker that should have stopped and did not). */
const exitedWithin = (child: Parameters<typeof exited>[0], ms = 90_000): Promise<number | null | string> =>
  Promise.race([exited(child), new Promise<string>((r) => setTimeout(() => r('still running'), ms).unref())]);

describe('WAL budget while Kafka is down', () => {
  const { db } = stackSuite();

  test('walCriticalAction=stop releases the slot of a worker that cannot start', async () => {
    const name = uniqueName('walout');
    const table = `${name}_t`;
    const slot = `pgcdc_${name}`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    const env = (extra: Record<string, string>) =>
      workerEnv(name, {
        PGCDC_TABLES_INCLUDE: `public.${table}`,
        PGCDC_SLOT_NAME: slot,
        PGCDC_LOG_FORMAT: 'json',
        ...extra,
      });
    const status = async (port: number) => {
      const res = await fetch(`http://127.0.0.1:${port}/connectors/${name}/status`).catch(() => null);
      return res?.ok ? ((await res.json()) as { phase?: string }) : null;
    };

    // A first run creates the slot and stores an offset for it.
    const port = await freePort();
    const first = spawnWorker(env({ PGCDC_HTTP_PORT: String(port) }));
    await eventually(`streaming (${first.output().slice(-2000)})`, async () =>
      (await status(port))?.phase === 'STREAMING' ? true : undefined,
    );
    first.child.kill('SIGTERM');
    assert.equal(await exitedWithin(first.child), 0, first.output());

    // Kafka at an address where nothing listens.
    const port2 = await freePort();
    const w = spawnWorker(
      env({
        PGCDC_HTTP_PORT: String(port2),
        PGCDC_KAFKA_BROKERS: `127.0.0.1:${await freePort()}`,
        PGCDC_HEARTBEAT_WAL_CRITICAL_BYTES: '40MiB',
        PGCDC_HEARTBEAT_WAL_CRITICAL_ACTION: 'stop',
        PGCDC_EXIT_ON_FAILURE_AFTER: '0',
      }),
    );
    // Its first start hangs in kafkajs's retries (STARTING), later ones too (RECONNECTING).
    await eventually(`starting (${w.output().slice(-2000)})`, async () => {
      const phase = (await status(port2))?.phase;
      return phase === 'STARTING' || phase === 'RECONNECTING' ? true : undefined;
    });
    await eventually(`slot ${slot} retains more than 40 MiB`, async () => {
      await db.query(`SELECT pg_logical_emit_message(false, 'pgcdc-test-filler', repeat('x', 1000))`);
      await db.query('SELECT pg_switch_wal()');
      const { rows } = await db.query<{ r: string | null }>(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8::text AS r FROM pg_replication_slots WHERE slot_name = $1`,
        [slot],
      );
      return Number(rows[0]?.r ?? 0) > 40 * 1024 ** 2 ? true : undefined;
    });
    assert.equal(await exitedWithin(w.child), 2, w.output().slice(-3000));
    const failed = w
      .output()
      .split('\n')
      .filter((l) => /heartbeat\.walCriticalAction=stop/.test(l));
    assert.equal(failed.length, 1, w.output().slice(-3000));
    assert.match(failed[0]!, /could not forget the offset/);
    assert.match(failed[0]!, new RegExp(`dropped replication slot ${slot}`));
    assert.match(
      failed[0]!,
      /the next start refuses the stored offset \(snapshot\.mode=initial\); run pgcdc offsets reset --yes/,
    );
    const left = await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    assert.equal(left.rowCount, 0, 'the slot is dropped');
  });
});
