import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/load.ts';
import { createMetrics } from '../../src/worker/metrics.ts';
import { configSecrets, Worker } from '../../src/worker/worker.ts';
import { createLogger } from '../../src/worker/log.ts';

const config = loadConfig({
  env: {
    PGCDC_NAME: 'orders',
    PGCDC_POSTGRES_HOST: 'db',
    PGCDC_POSTGRES_USER: 'u',
    PGCDC_POSTGRES_PASSWORD: 'very-secret-pw',
    PGCDC_POSTGRES_DATABASE: 'app',
    PGCDC_KAFKA_BROKERS: 'k:9092',
    PGCDC_REGISTRY_URL: 'http://r:8081',
  },
});
const log = createLogger({ connector: 'orders', level: 'error', format: 'json' });

function value(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(line + ' '));
  return found ? Number(found.slice(line.length + 1)) : undefined;
}

test('metrics follow the observer hooks and read the connector state', async () => {
  const worker = new Worker(config, log, { failureGraceMs: 0, workerId: 'w:1' });
  const metrics = createMetrics(worker, null, { defaultMetrics: false });
  metrics.observer.onRecords!('public.t', 'c', 1);
  metrics.observer.onRecords!('public.t', 'd', 2);
  metrics.observer.onRecords!('public.t', 'c', 1);
  metrics.observer.onDurable!(BigInt(Date.now() - 1500) * 1000n);
  metrics.observer.onKafkaRetry!();
  metrics.observer.onProduceError!(new Error('x'));
  worker.connector.snapshot.state = 'running';
  worker.connector.snapshot.tables['public.t'] = { rows: 5, estimatedRows: 10, done: false };
  const text = await metrics.text();
  assert.equal(value(text, 'pgcdc_records_produced_total{table="public.t",op="c",connector="orders"}'), 2);
  assert.equal(value(text, 'pgcdc_records_produced_total{table="public.t",op="d",connector="orders"}'), 2);
  assert.equal(value(text, 'pgcdc_connector_state{state="STARTING",connector="orders"}'), 1);
  assert.equal(value(text, 'pgcdc_connector_state{state="FAILED",connector="orders"}'), 0);
  assert.equal(value(text, 'pgcdc_commit_to_ack_seconds_count{connector="orders"}'), 1);
  assert.equal(value(text, 'pgcdc_commit_to_ack_seconds_bucket{le="1",connector="orders"}'), 0);
  assert.equal(value(text, 'pgcdc_commit_to_ack_seconds_bucket{le="2.5",connector="orders"}'), 1);
  assert.equal(value(text, 'pgcdc_kafka_retries_total{connector="orders"}'), 1);
  assert.equal(value(text, 'pgcdc_kafka_produce_errors_total{connector="orders"}'), 1);
  assert.equal(value(text, 'pgcdc_snapshot_running{connector="orders"}'), 1);
  assert.equal(value(text, 'pgcdc_snapshot_rows{table="public.t",connector="orders"}'), 5);
  assert.equal(value(text, 'pgcdc_snapshot_rows_estimated{table="public.t",connector="orders"}'), 10);
  assert.equal(value(text, 'pgcdc_registry_calls_total{connector="orders"}'), 0);
  assert.equal(value(text, 'pgcdc_inflight_bytes{connector="orders"}'), 0);
});

test('paused shows as PAUSED once reading; status in the Kafka Connect shape', () => {
  const worker = new Worker(config, log, { failureGraceMs: 0, workerId: 'w:1' });
  worker.pause();
  assert.equal(worker.state, 'STARTING');
  worker.connector.state = 'STREAMING';
  assert.equal(worker.state, 'PAUSED');
  const status = worker.status() as {
    connector: { state: string; worker_id: string };
    tasks: Array<{ state: string }>;
  };
  assert.equal(status.connector.state, 'PAUSED');
  assert.equal(status.connector.worker_id, 'w:1');
  assert.equal(status.tasks[0]!.state, 'PAUSED');
  assert.deepEqual(worker.readiness(), { ready: true, state: 'PAUSED' });
  worker.resume();
  assert.equal(worker.state, 'STREAMING');
  // Nothing stored yet: the offsets endpoint reports the stored position only, so none.
  assert.deepEqual(worker.offsets(), { offsets: [] });
});

test('configured secrets are collected for redaction', () => {
  assert.deepEqual(configSecrets(config), ['very-secret-pw']);
});
