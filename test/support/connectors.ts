// Connectors run in-process by integration tests: started with the stack's settings, awaited until
// streaming, and all stopped (and their runs awaited) by stopConnectors() in a suite's after hook.
import { Connector } from '../../src/pipeline/connector.ts';
import { createLogger } from '../../src/worker/log.ts';
import { after, before } from 'node:test';
import type pg from 'pg';
import { killWorkers } from './cli.ts';
import { TopicReader, dropTestSlots, eventually, newPgClient, workerConfig } from './pipeline.ts';

export interface RunningConnector {
  connector: Connector;
  running: Promise<void>;
}

const log = createLogger({ connector: 'test', level: 'warn', format: 'json' });
const started: RunningConnector[] = [];

/** Starts a connector configured for the local stack plus `extra` PGCDC_* settings. */
export function startConnector(name: string, extra: Record<string, string> = {}): RunningConnector {
  const connector = new Connector(workerConfig(name, extra), log);
  const running = connector.run();
  running.catch(() => undefined);
  const w = { connector, running };
  started.push(w);
  return w;
}

/** Resolves once the connector streams; rejects with the connector's own error if it fails first. */
export async function streaming(w: RunningConnector): Promise<void> {
  let failure: unknown;
  w.running.catch((err: unknown) => (failure = err));
  await eventually(
    'the connector to stream',
    async () => (failure ? 'failed' : w.connector.state === 'STREAMING' ? 'ok' : undefined),
    120_000,
  );
  if (failure) throw failure as Error;
}

/** Stops every connector this file started and waits for their runs to end. */
export async function stopConnectors(): Promise<void> {
  await Promise.all(started.map((w) => w.connector.stop().then(() => w.running.catch(() => undefined))));
}

/**
 * The resources of a suite on the stack, with their hooks registered (call inside describe): a
 * database client (connected before the tests) and a topic reader; afterwards the suite's
 * spawned workers are killed, its connectors stopped, the client closed and the suite's replication slots dropped.
 */
export function stackSuite(): { db: pg.Client; reader: TopicReader } {
  const db = newPgClient();
  before(() => db.connect());
  after(async () => {
    await killWorkers();
    await stopConnectors();
    await db.end();
    await dropTestSlots();
  });
  return { db, reader: new TopicReader() };
}
