// Prometheus metrics, one registry per worker. They observe the core from outside: gauges read
// the worker, the current connector and the WAL guard when scraped; counters and the
// commit-to-ack histogram follow the connector's observer hooks. Counters stay monotonic across
// in-process restarts (a restart makes a new Connector instance).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PGCDC_VERSION } from '../avro/envelope.ts';
import type { ConnectorObserver } from '../pipeline/connector.ts';
import { WAL_BUDGET_STATES, type WalBudget, type WalGuard } from './wal-guard.ts';
import { WORKER_STATES, type Worker } from './worker.ts';

export interface Metrics {
  readonly registry: Registry;
  readonly observer: ConnectorObserver;
  text(): Promise<string>;
  readonly contentType: string;
}

export function createMetrics(
  worker: Worker,
  guard: WalGuard | null,
  opts: { defaultMetrics?: boolean } = {},
): Metrics {
  const budget: WalBudget | null = guard?.budget ?? null;
  const registry = new Registry();
  registry.setDefaultLabels({ connector: worker.name });
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  new Gauge({
    name: 'pgcdc_info',
    help: 'pgcdc version (always 1).',
    labelNames: ['version'],
    registers,
    collect() {
      this.set({ version: PGCDC_VERSION }, 1);
    },
  });

  new Gauge({
    name: 'pgcdc_connector_state',
    help: 'The connector state: 1 for the current state, 0 for the others.',
    labelNames: ['state'],
    registers,
    collect() {
      const current = worker.state;
      for (const s of WORKER_STATES) this.set({ state: s }, s === current ? 1 : 0);
    },
  });

  // Counted here per event and handed to prom-client when scraped: its inc() hashes and checks the
  // label object on every call, a cost paid per change (docs/performance.md "other pgcdc").
  const pendingRecords = new Map<string, Map<string, number>>();
  new Counter({
    name: 'pgcdc_records_produced_total',
    help: 'Records handed to Kafka, by table and operation (r snapshot, c, u, d, t); a delete counts its tombstone too.',
    labelNames: ['table', 'op'],
    registers,
    collect() {
      for (const [table, ops] of pendingRecords) {
        for (const [op, n] of ops) if (n > 0) this.inc({ table, op }, n);
      }
      pendingRecords.clear();
    },
  });

  new Gauge({
    name: 'pgcdc_snapshot_rows',
    help: 'Snapshot rows acknowledged by Kafka, per table.',
    labelNames: ['table'],
    registers,
    collect() {
      for (const [table, t] of Object.entries(worker.connector.snapshot.tables)) this.set({ table }, t.rows);
    },
  });
  new Gauge({
    name: 'pgcdc_snapshot_rows_estimated',
    help: "Rows per table according to PostgreSQL's statistics (pg_class.reltuples) when the table's snapshot began.",
    labelNames: ['table'],
    registers,
    collect() {
      for (const [table, t] of Object.entries(worker.connector.snapshot.tables))
        this.set({ table }, t.estimatedRows);
    },
  });
  new Gauge({
    name: 'pgcdc_snapshot_running',
    help: '1 while the initial load runs.',
    registers,
    collect() {
      this.set(worker.connector.snapshot.state === 'running' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'pgcdc_snapshot_completed',
    help: '1 once the initial load is complete (in this run or an earlier one, as the stored offset says).',
    registers,
    collect() {
      this.set(worker.connector.snapshot.state === 'completed' ? 1 : 0);
    },
  });

  const commitToAck = new Histogram({
    name: 'pgcdc_commit_to_ack_seconds',
    help: "Time from a transaction's commit in PostgreSQL to Kafka acknowledging all its records (server and worker clocks).",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    registers,
  });

  new Gauge({
    name: 'pgcdc_confirmed_lsn',
    help: 'The last LSN confirmed to PostgreSQL (as a number of bytes).',
    registers,
    collect() {
      this.set(Number(worker.connector.confirmedLsn));
    },
  });

  const slotGauge = (name: string, help: string, read: () => number | null | undefined): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const v = read();
        if (v === null || v === undefined) this.reset();
        else this.set(v);
      },
    });
  };
  slotGauge(
    'pgcdc_slot_lag_bytes',
    "WAL bytes between the server's current position and the slot's confirmed_flush_lsn.",
    () => guard?.last?.lagBytes,
  );
  slotGauge(
    'pgcdc_slot_retained_wal_bytes',
    'WAL bytes the slot keeps on the server (current position − restart_lsn).',
    () => guard?.last?.retainedBytes,
  );
  slotGauge(
    'pgcdc_slot_safe_wal_size_bytes',
    'Bytes of WAL that can still be written before the slot risks invalidation (pg_replication_slots.safe_wal_size); -1 when unlimited.',
    () => (guard?.last ? (guard.last.safeWalSizeBytes ?? -1) : null),
  );
  slotGauge(
    'pgcdc_max_slot_wal_keep_size_bytes',
    "The server's max_slot_wal_keep_size in bytes; -1 when unlimited.",
    () => (guard?.last ? (guard.last.maxSlotWalKeepSizeBytes ?? -1) : null),
  );
  slotGauge('pgcdc_slot_wal_warning', '1 while the retained WAL is above heartbeat.walWarnBytes.', () =>
    guard ? (guard.warning ? 1 : 0) : null,
  );
  new Gauge({
    name: 'pgcdc_slot_wal_budget_bytes',
    help: 'The WAL budget: retained-WAL levels in bytes (warning: heartbeat.walWarnBytes, critical: heartbeat.walCriticalBytes); a level set to 0 is not exported.',
    labelNames: ['level'],
    registers,
    collect() {
      this.reset();
      const levels = { warning: budget?.walWarnBytes ?? 0, critical: budget?.walCriticalBytes ?? 0 };
      for (const [level, bytes] of Object.entries(levels)) if (bytes > 0) this.set({ level }, bytes);
    },
  });
  new Gauge({
    name: 'pgcdc_slot_wal_budget_state',
    help: "Where the slot's retained WAL stands against the budget: 1 for the current state (ok, warning, critical; critical also when the server is about to invalidate the slot or has: wal_status unreserved or lost).",
    labelNames: ['state'],
    registers,
    collect() {
      this.reset();
      if (!guard?.last) return;
      for (const s of WAL_BUDGET_STATES) this.set({ state: s }, s === guard.budgetState ? 1 : 0);
    },
  });
  slotGauge('pgcdc_slot_active', '1 when the slot has an active reader.', () =>
    guard?.last ? (guard.last.active ? 1 : 0) : null,
  );
  new Gauge({
    name: 'pgcdc_slot_wal_status',
    help: 'pg_replication_slots.wal_status: 1 for the current value (reserved, extended, unreserved, lost).',
    labelNames: ['status'],
    registers,
    collect() {
      this.reset();
      const current = guard?.last?.walStatus;
      if (!current) return;
      for (const s of ['reserved', 'extended', 'unreserved', 'lost'])
        this.set({ status: s }, s === current ? 1 : 0);
    },
  });
  new Counter({
    name: 'pgcdc_heartbeats_total',
    help: 'Heartbeats executed on the query connection.',
    registers,
    collect() {
      this.reset();
      this.inc(guard?.heartbeats ?? 0);
    },
  });
  new Counter({
    name: 'pgcdc_heartbeat_errors_total',
    help: 'Heartbeats that failed.',
    registers,
    collect() {
      this.reset();
      this.inc(guard?.heartbeatErrors ?? 0);
    },
  });

  const produceErrors = new Counter({
    name: 'pgcdc_kafka_produce_errors_total',
    help: 'Kafka sends that failed for good (each one fails the connector).',
    registers,
  });
  const retries = new Counter({
    name: 'pgcdc_kafka_retries_total',
    help: 'Produce attempts that failed and that kafkajs retried.',
    registers,
  });

  // Per-instance counts summed over the connector instances this worker ran.
  let base = 0;
  let seen = worker.connector;
  let seenCalls = 0;
  new Counter({
    name: 'pgcdc_registry_calls_total',
    help: 'Schema registry registrations/lookups (one per new schema version and subject).',
    registers,
    collect() {
      const c = worker.connector;
      if (c !== seen) {
        base += seenCalls;
        seen = c;
      }
      seenCalls = c.registryCalls;
      this.reset();
      this.inc(base + seenCalls);
    },
  });
  new Gauge({
    name: 'pgcdc_inflight_bytes',
    help: 'Bytes handed to Kafka and not yet acknowledged.',
    registers,
    collect() {
      this.set(worker.connector.inFlightBytes);
    },
  });

  const observer: ConnectorObserver = {
    onRecords: (table, op, n) => {
      let ops = pendingRecords.get(table);
      if (!ops) pendingRecords.set(table, (ops = new Map()));
      ops.set(op, (ops.get(op) ?? 0) + n);
    },
    onDurable: (commitTimeMicros) => {
      const seconds = (Date.now() * 1000 - Number(commitTimeMicros)) / 1e6;
      commitToAck.observe(Math.max(0, seconds));
    },
    onProduceError: () => produceErrors.inc(),
    onKafkaRetry: () => retries.inc(),
  };
  worker.addObserver(observer);

  return {
    registry,
    observer,
    contentType: registry.contentType,
    text: () => registry.metrics(),
  };
}
