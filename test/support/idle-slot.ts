// The WAL-growth scene shared by the WAL guard's tests and bench/idle-slot-wal.ts: pgcdc captures
// one table nobody writes while another table of the same database can be written without pause.
import type pg from 'pg';
import { freePort, spawnWorker, type WorkerProcess } from './cli.ts';
import { eventually, pgClient, uniqueName, workerEnv } from './pipeline.ts';

export interface IdleSlotScene {
  name: string;
  captured: string;
  busy: string;
  slot: string;
  worker: WorkerProcess;
  /** Starts writing the busy table; the function it returns stops and waits for the writer. */
  startWriter(): () => Promise<void>;
}

/** Creates both tables and starts a worker on the captured one; resolves once it is STREAMING. */
export async function idleSlotScene(
  db: pg.Client,
  prefix: string,
  heartbeatMs: number,
): Promise<IdleSlotScene> {
  const name = uniqueName(prefix);
  const captured = `${name}_captured`;
  const busy = `${name}_busy`;
  const slot = `pgcdc_${name}`;
  await db.query(`CREATE TABLE ${captured} (id int PRIMARY KEY)`);
  await db.query(`CREATE TABLE ${busy} (id serial PRIMARY KEY, payload text)`);
  const port = await freePort();
  const worker = spawnWorker(
    workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${captured}`,
      PGCDC_SLOT_NAME: slot,
      PGCDC_HEARTBEAT_INTERVAL_MS: String(heartbeatMs),
      PGCDC_HTTP_PORT: String(port),
      PGCDC_HTTP_HOST: '127.0.0.1',
    }),
  );
  await eventually(`streaming (worker output: ${worker.output().slice(-2000)})`, async () => {
    const res = await fetch(`http://127.0.0.1:${port}/connectors/${name}/status`).catch(() => null);
    const body = res ? ((await res.json()) as { phase?: string }) : null;
    return body?.phase === 'STREAMING' ? true : undefined;
  });
  const startWriter = (): (() => Promise<void>) => {
    let writing = true;
    const writer = (async () => {
      const c = await pgClient();
      try {
        while (writing)
          await c.query(`INSERT INTO ${busy} (payload) SELECT repeat('x', 200) FROM generate_series(1, 50)`);
      } finally {
        await c.end();
      }
    })();
    return async () => {
      writing = false;
      await writer;
    };
  };
  return { name, captured, busy, slot, worker, startWriter };
}
