// The worker as operators see it: `pgcdc run` as a child process with its HTTP server on the
// real stack — probes, Prometheus metrics after real changes, the Kafka Connect-style REST API
// (status, pause/resume, restart, offsets), and what a failed connector looks like.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite } from '../support/connectors.ts';
import { spawnWorker, exited, freePort } from '../support/cli.ts';
import { eventually, replayByKey, uniqueName, workerEnv } from '../support/pipeline.ts';

interface Http {
  get(path: string): Promise<{ status: number; body: unknown; text: string }>;
  send(method: string, path: string): Promise<{ status: number; text: string }>;
  metric(text: string, name: string, labels?: Record<string, string>): number | undefined;
}

function http(port: number): Http {
  const base = `http://127.0.0.1:${port}`;
  return {
    async get(path) {
      const res = await fetch(base + path);
      const text = await res.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      return { status: res.status, body, text };
    },
    async send(method, path) {
      const res = await fetch(base + path, { method });
      return { status: res.status, text: await res.text() };
    },
    metric(text, name, labels = {}) {
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
        const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
        if (ok) return Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return undefined;
    },
  };
}

type Status = {
  name: string;
  connector: { state: string; worker_id: string; trace?: string };
  tasks: Array<{ id: number; state: string; trace?: string }>;
  phase: string;
  lsn: { confirmed: string; position: { lsn: string } };
  snapshot: { state: string; tables: Record<string, { rows: number; done: boolean }> };
};

describe('observability', () => {
  const { db, reader } = stackSuite();

  test('probes, metrics, status, pause/resume, restart and offsets of a running worker', async () => {
    const name = uniqueName('obs');
    const table = `${name}_t`;
    const fqn = `public.${table}`;
    const topic = `${name}.public.${table}`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'seed' FROM generate_series(1, 100) g`);
    const port = await freePort();
    const api = http(port);
    const w = spawnWorker(
      workerEnv(name, {
        PGCDC_TABLES_INCLUDE: fqn,
        PGCDC_HTTP_PORT: String(port),
        PGCDC_HTTP_HOST: '127.0.0.1',
        PGCDC_LOG_LEVEL: 'info',
        PGCDC_LOG_FORMAT: 'json',
      }),
    );
    const ctx = () => `worker output:\n${w.output()}`;

    await eventually('/healthz 200', async () =>
      (await api.get('/healthz')).status === 200 ? true : undefined,
    );
    await eventually('/readyz 200', async () =>
      (await api.get('/readyz')).status === 200 ? true : undefined,
    );
    const status = async (): Promise<Status> => (await api.get(`/connectors/${name}/status`)).body as Status;
    await eventually('status RUNNING and streaming', async () => {
      const s = await status();
      return s.connector.state === 'RUNNING' && s.phase === 'STREAMING' ? s : undefined;
    });
    assert.deepEqual((await api.get('/connectors')).body, [name]);
    assert.equal((await api.get('/connectors/nope/status')).status, 404);
    assert.match((await api.get('/connectors/nope/status')).text, /not found/);

    // Changes: 10 inserts, 5 updates, 2 deletes (each with a tombstone).
    await db.query(`INSERT INTO ${table} SELECT g, 'new' FROM generate_series(101, 110) g`);
    for (let id = 1; id <= 5; id++) await db.query(`UPDATE ${table} SET v = 'upd' WHERE id = $1`, [id]);
    await db.query(`DELETE FROM ${table} WHERE id IN (6, 7)`);
    const metrics = await eventually(
      'records produced by table and op',
      async () => {
        const text = (await api.get('/metrics')).text;
        const n = (op: string) => api.metric(text, 'pgcdc_records_produced_total', { table: fqn, op });
        return n('r') === 100 && n('c') === 10 && n('u') === 5 && n('d') === 4 ? text : undefined;
      },
      60_000,
    );
    const m = (metric: string, labels?: Record<string, string>) => api.metric(metrics, metric, labels);
    assert.equal(m('pgcdc_connector_state', { state: 'STREAMING' }), 1);
    assert.equal(m('pgcdc_connector_state', { state: 'FAILED' }), 0);
    assert.equal(m('pgcdc_snapshot_rows', { table: fqn }), 100);
    assert.equal(m('pgcdc_snapshot_completed'), 1);
    assert.equal(m('pgcdc_snapshot_running'), 0);
    assert.ok(m('pgcdc_snapshot_rows_estimated', { table: fqn }) !== undefined);
    assert.ok((m('pgcdc_registry_calls_total') ?? 0) >= 2, 'key and value subjects registered');
    assert.equal(m('pgcdc_kafka_produce_errors_total'), 0);
    assert.ok(m('pgcdc_kafka_retries_total') !== undefined);
    assert.ok(m('pgcdc_inflight_bytes') !== undefined);
    assert.ok(m('process_cpu_user_seconds_total') !== undefined, 'default process metrics');
    await eventually(
      'commit-to-ack observed per transaction, slot lag and confirmed LSN reported',
      async () => {
        const text = (await api.get('/metrics')).text;
        const count = api.metric(text, 'pgcdc_commit_to_ack_seconds_count') ?? 0;
        const lag = api.metric(text, 'pgcdc_slot_lag_bytes');
        const retained = api.metric(text, 'pgcdc_slot_retained_wal_bytes');
        const confirmed = api.metric(text, 'pgcdc_confirmed_lsn') ?? 0;
        const reserved = api.metric(text, 'pgcdc_slot_wal_status', { status: 'reserved' });
        return count >= 7 &&
          lag !== undefined &&
          lag >= 0 &&
          retained !== undefined &&
          confirmed > 0 &&
          reserved === 1
          ? true
          : undefined;
      },
    );

    // Pause: changes made while paused do not arrive.
    assert.equal((await api.send('PUT', `/connectors/${name}/pause`)).status, 202);
    await eventually('status PAUSED', async () =>
      (await status()).connector.state === 'PAUSED' ? true : undefined,
    );
    assert.equal((await api.get('/readyz')).status, 200, 'a paused connector is ready');
    await eventually('paused state in metrics', async () =>
      api.metric((await api.get('/metrics')).text, 'pgcdc_connector_state', { state: 'PAUSED' }) === 1
        ? true
        : undefined,
    );
    await db.query(`INSERT INTO ${table} SELECT g, 'paused' FROM generate_series(201, 205) g`);
    // Give a running worker ample opportunity to pick them up (no duration is asserted).
    await new Promise((r) => setTimeout(r, 4_000));
    const whilePaused = replayByKey(await reader.read(topic), (k) => String(k.id));
    for (let id = 201; id <= 205; id++)
      assert.ok(!whilePaused.has(String(id)), `row ${id} must not arrive while paused`);
    assert.equal(
      api.metric((await api.get('/metrics')).text, 'pgcdc_records_produced_total', { table: fqn, op: 'c' }),
      10,
    );

    // Resume: they arrive.
    assert.equal((await api.send('PUT', `/connectors/${name}/resume`)).status, 202);
    await eventually('status RUNNING after resume', async () =>
      (await status()).connector.state === 'RUNNING' ? true : undefined,
    );
    await eventually('paused changes arrive after resume', async () => {
      const state = replayByKey(await reader.read(topic), (k) => String(k.id));
      return [201, 202, 203, 204, 205].every((id) => state.get(String(id))?.v === 'paused')
        ? true
        : undefined;
    });

    // Restart: a new connector instance in the same process, nothing lost.
    await db.query(`INSERT INTO ${table} SELECT g, 'before restart' FROM generate_series(301, 310) g`);
    assert.equal((await api.send('POST', `/connectors/${name}/restart`)).status, 204, ctx());
    await db.query(`INSERT INTO ${table} SELECT g, 'during restart' FROM generate_series(311, 320) g`);
    await eventually('status RUNNING and streaming after restart', async () => {
      const s = await status();
      return s.connector.state === 'RUNNING' && s.phase === 'STREAMING' ? true : undefined;
    });
    await db.query(`INSERT INTO ${table} SELECT g, 'after restart' FROM generate_series(321, 330) g`);
    await db.query(`UPDATE ${table} SET v = 'final' WHERE id = 101`);
    const { rows } = await db.query<{ id: number; v: string }>(`SELECT id, v FROM ${table}`);
    await eventually('topic replayed per key equals the table after the restart', async () => {
      const state = replayByKey(await reader.read(topic), (k) => String(k.id));
      if (state.size !== rows.length) return undefined;
      return rows.every((r) => state.get(String(r.id))?.v === r.v) ? true : undefined;
    });
    const after = (await api.get('/metrics')).text;
    assert.ok(
      (api.metric(after, 'pgcdc_records_produced_total', { table: fqn, op: 'c' }) ?? 0) >= 10 + 5 + 30,
      'counters survive the in-process restart',
    );

    // Offsets: the stored position, Kafka Connect's shape.
    const offsets = (await api.get(`/connectors/${name}/offsets`)).body as {
      offsets: Array<{ partition: { connector: string; slot: string }; offset: { lsn: string } }>;
    };
    assert.equal(offsets.offsets.length, 1);
    assert.equal(offsets.offsets[0]!.partition.connector, name);
    assert.match(offsets.offsets[0]!.offset.lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.notEqual(offsets.offsets[0]!.offset.lsn, '0/0');

    w.child.kill('SIGTERM');
    assert.equal(await exited(w.child), 0, ctx());
    for (const line of w
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      assert.equal(entry.connector, name);
      assert.ok(
        typeof entry.level === 'string' &&
          typeof entry.time === 'string' &&
          typeof entry.message === 'string',
      );
    }
  });

  test('a failed connector is reported FAILED, can be restarted through the API, and otherwise exits non-zero', async () => {
    const name = uniqueName('obsfail');
    const table = `${name}_t`;
    const publication = `${name}_pub`;
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${table} VALUES (1), (2)`);
    const port = await freePort();
    const api = http(port);
    // The publication does not exist and may not be created: a user's mistake, fixed while the worker waits.
    const env = workerEnv(name, {
      PGCDC_TABLES_INCLUDE: `public.${table}`,
      PGCDC_PUBLICATION_NAME: publication,
      PGCDC_PUBLICATION_AUTO_CREATE: 'false',
      PGCDC_HTTP_PORT: String(port),
      PGCDC_HTTP_HOST: '127.0.0.1',
      PGCDC_EXIT_ON_FAILURE_AFTER: 'never',
      // Past the start-up checks (which refuse a missing publication before starting), so that
      // the connector itself fails and reports it.
      PGCDC_SKIP_CHECKS: 'true',
    });
    const w = spawnWorker(env);
    const status = async (): Promise<Status> => (await api.get(`/connectors/${name}/status`)).body as Status;
    const failed = await eventually('status FAILED with the error', async () => {
      const s = await status().catch(() => undefined);
      return s?.connector.state === 'FAILED' ? s : undefined;
    });
    assert.equal(failed.tasks[0]!.state, 'FAILED');
    assert.match(failed.tasks[0]!.trace ?? '', /publication .* does not exist/);
    const ready = await api.get('/readyz');
    assert.equal(ready.status, 503);
    assert.match(ready.text, /failed/);
    assert.equal((await api.get('/healthz')).status, 200, 'the process itself is healthy');
    assert.equal(
      api.metric((await api.get('/metrics')).text, 'pgcdc_connector_state', { state: 'FAILED' }),
      1,
    );

    // Fix the cause, restart through the API: the connector runs.
    await db.query(`CREATE PUBLICATION ${publication} FOR TABLE ${table}`);
    assert.equal((await api.send('POST', `/connectors/${name}/restart`)).status, 204);
    await eventually('RUNNING after the restart', async () => {
      const s = await status();
      return s.connector.state === 'RUNNING' && s.phase === 'STREAMING' ? true : undefined;
    });
    assert.equal((await api.get('/readyz')).status, 200);
    w.child.kill('SIGTERM');
    assert.equal(await exited(w.child), 0, w.output());

    // Without a restart, the worker gives up after the grace period and exits non-zero.
    const w2 = spawnWorker({
      ...env,
      ...workerEnv(`${name}b`, {
        PGCDC_PUBLICATION_NAME: `${publication}_missing`,
        PGCDC_EXIT_ON_FAILURE_AFTER: '2',
      }),
    });
    const code = await exited(w2.child);
    assert.equal(code, 2, `a user's mistake exits 2; output:\n${w2.output()}`);
    assert.match(w2.output(), /connector failed/);
    assert.doesNotMatch(
      w2.output(),
      new RegExp(env.PGCDC_POSTGRES_PASSWORD!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')),
    );
  });
});
