// Keeps the benchmark harness from rotting: runs `bench/run.ts` with tiny sizes (2,000 rows, one
// repetition, short streaming steps) against the local stack and checks that the JSON result is
// well formed (every scenario and baseline, every figure a number where one is due, figures
// consistent with each other) and that the Markdown table was written. It asserts nothing about
// how fast the machine is: on a loaded CI machine a 300 changes/s step may not be sustained, and
// the harness must then say so (maxSustainedChangesPerSec = 0), which is a well-formed result.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const RUN = fileURLToPath(new URL('../../bench/run.ts', import.meta.url));

interface Summary {
  /** JSON has no NaN: an unmeasured figure is null. */
  median: number | null;
  n: number;
}

interface Step {
  offeredChangesPerSec: number;
  generatedChangesPerSec: number;
  producedChangesPerSec: number;
  drainSeconds: number;
  maxWalLagBytes: number;
  sustained: boolean;
  generatorLimited: boolean;
}

interface BenchJson {
  environment: Record<string, unknown>;
  runs: Record<string, Array<Record<string, number | null>>>;
  summary: Record<string, Record<string, Summary>>;
  streamSteps: Step[][];
  table: Array<{ scenario: string; value: Summary }>;
  profile?: {
    digest: { totalMs: number; top: unknown[] };
    stages?: Array<{ stage: string; usPerRow: number; share: number }>;
  };
}

const SCENARIOS = ['baselines', 'snapshot', 'stream', 'latency', 'bigtx', 'tables'];

/** Amounts of work done and resources used: more than nothing on any machine, however slow. */
const POSITIVE: Record<string, string[]> = {
  baselines: ['avgRecordBytes', 'copyBytes', 'tableMiB'],
  snapshot: ['kafkaBytes', 'peakRssMiB', 'cpuSeconds'],
  stream: ['backlogChanges', 'peakRssMiB', 'catchUpPeakRssMiB'],
  latency: ['samples', 'recordsInTopic', 'peakRssMiB'],
  bigtx: ['peakRssMiB', 'peakRssSmallTxMiB', 'pgDecodeMessages', 'cpuSeconds'],
  tables: ['recordsAt3', 'cpuSecondsAt3'],
};

/** Rates and durations: measured (a finite number, not negative), whatever their size. */
const MEASURED: Record<string, string[]> = {
  baselines: ['copyRowsPerSec', 'readRowsPerSec', 'avroRowsPerSec', 'kafkaRecordsPerSec', 'copySeconds'],
  snapshot: ['seconds', 'rowsPerSec', 'kafkaMiBPerSec', 'firstRecordSec'],
  stream: [
    'maxSustainedChangesPerSec',
    'maxSustainedRecordsPerSec',
    'maxProducedChangesPerSec',
    'pgDecodeChangesPerSec',
    'catchUpSeconds',
    'catchUpChangesPerSec',
  ],
  latency: ['changesPerSec', 'appendP50Ms', 'appendP99Ms', 'visibleP50Ms', 'visibleP99Ms'],
  bigtx: ['drainSeconds', 'rowsPerSecAfterCommit', 'pgDecodeRowsPerSec', 'totalSeconds'],
  tables: ['secondsAt3', 'perTableMsAt3', 'lateTableMsAt3'],
};

function assertWellFormed(result: BenchJson, offeredRates: number[]): void {
  for (const s of SCENARIOS) {
    assert.equal(result.runs[s]?.length, 1, `${s}: one run`);
    for (const [m, v] of Object.entries(result.runs[s]![0]!)) {
      assert.ok(v === null || typeof v === 'number', `${s}.${m} = ${JSON.stringify(v)}`);
    }
  }
  const median = (s: string, m: string): number => {
    const v = result.summary[s]?.[m]?.median;
    assert.ok(typeof v === 'number' && Number.isFinite(v), `${s}.${m} = ${v}`);
    return v;
  };
  for (const [s, metrics] of Object.entries(POSITIVE)) {
    for (const m of metrics) assert.ok(median(s, m) > 0, `${s}.${m} = ${median(s, m)}`);
  }
  for (const [s, metrics] of Object.entries(MEASURED)) {
    for (const m of metrics) assert.ok(median(s, m) >= 0, `${s}.${m} = ${median(s, m)}`);
  }
  // Percentiles are ordered (millisecond resolution: 0 ms is possible).
  for (const kind of ['append', 'visible']) {
    const [p50, p95, p99, max] = ['P50Ms', 'P95Ms', 'P99Ms', 'MaxMs'].map((p) => median('latency', kind + p));
    assert.ok(p50! <= p95! && p95! <= p99! && p99! <= max!, `${kind}: p50 ≤ p95 ≤ p99 ≤ max`);
  }

  // The streaming steps: escalation in the offered order, stopping at the first step that was not
  // sustained; the reported maximum is the best sustained step, or 0 when none was.
  const steps = result.streamSteps[0];
  assert.ok(steps && steps.length >= 1 && steps.length <= offeredRates.length, 'stream: the steps run');
  steps.forEach((step, i) => {
    assert.equal(step.offeredChangesPerSec, offeredRates[i], `step ${i}: offered rate`);
    for (const k of [
      'generatedChangesPerSec',
      'producedChangesPerSec',
      'drainSeconds',
      'maxWalLagBytes',
    ] as const) {
      assert.ok(Number.isFinite(step[k]) && step[k] >= 0, `step ${i}: ${k} = ${step[k]}`);
    }
    assert.equal(typeof step.sustained, 'boolean', `step ${i}: sustained`);
    assert.equal(typeof step.generatorLimited, 'boolean', `step ${i}: generatorLimited`);
    if (i < steps.length - 1)
      assert.ok(step.sustained && !step.generatorLimited, `step ${i}: escalated past`);
  });
  const sustained = steps.filter((s) => s.sustained).map((s) => s.generatedChangesPerSec);
  assert.equal(median('stream', 'maxSustainedChangesPerSec'), Math.max(0, ...sustained));
  assert.equal(
    median('stream', 'maxProducedChangesPerSec'),
    Math.max(...steps.map((s) => s.producedChangesPerSec)),
  );

  for (const s of ['Initial load', 'Streaming', 'Latency', 'Large transaction', 'Many tables']) {
    assert.ok(
      result.table.some((r) => r.scenario.startsWith(s)),
      `the table has a row of ${s}: ${result.table.map((r) => r.scenario).join(', ')}`,
    );
  }
  for (const r of result.table) {
    assert.ok(r.value.median === null || Number.isFinite(r.value.median), `table: ${r.scenario}`);
  }
  assert.equal(typeof result.environment.postgres, 'string');
  assert.ok((result.profile?.digest.totalMs ?? 0) > 0, 'the snapshot profile was digested');
  // CPU per row by stage: the reader and the producer are among them, the shares add up to 1.
  const stages = result.profile?.stages ?? [];
  assert.ok(
    stages.some((s) => s.stage.startsWith('read (snapshot reader')),
    `stages: ${JSON.stringify(stages)}`,
  );
  assert.ok(
    stages.some((s) => s.stage.startsWith('produce')),
    `stages: ${JSON.stringify(stages)}`,
  );
  assert.ok(Math.abs(stages.reduce((a, s) => a + s.share, 0) - 1) < 1e-9);
  for (const s of stages) assert.ok(Number.isFinite(s.usPerRow) && s.usPerRow >= 0, s.stage);
}

/** Runs a bench script with node; its exit code and everything it printed. */
function runScript(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    let text = '';
    const child = spawn(process.execPath, args, {
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Within the test's own timeout; the harness stops its workers on SIGTERM.
      timeout: timeoutMs,
    });
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('close', (c) => resolve({ code: c, output: text }));
  });
}

test(
  'bench harness: every scenario and baseline yields well-formed figures (tiny N)',
  // A hang guard only: a loaded machine may take many times longer than an idle one.
  { timeout: 15 * 60_000 },
  async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-bench-'));
    try {
      const args = [
        RUN,
        '--rows=2000',
        '--repeat=1',
        '--scenario=all',
        '--stream-rates=300,600',
        '--step-seconds=2',
        '--latency-rate=300',
        '--latency-seconds=2',
        '--clients=2',
        '--backlog-changes=3000',
        '--tables=3',
        '--profile',
        `--out=${out}`,
      ];
      const { code, output } = await runScript(args, 14 * 60_000);
      assert.equal(code, 0, output);

      const json = fs.readdirSync(out).find((f) => f.endsWith('.json'));
      assert.ok(json, `no .json in ${out}`);
      assert.ok(fs.existsSync(path.join(out, json.replace(/\.json$/, '.md'))), 'the .md beside the .json');
      assertWellFormed(JSON.parse(fs.readFileSync(path.join(out, json), 'utf8')) as BenchJson, [300, 600]);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  },
);

test(
  'bench/thread-split.ts: both ways deliver every row of the table to Kafka (tiny N)',
  { timeout: 5 * 60_000 },
  async () => {
    // The script fails when a way hands kafkajs fewer or more records than the table has rows.
    const script = fileURLToPath(new URL('../../bench/thread-split.ts', import.meta.url));
    const { code, output } = await runScript([script, '--rows=3000', '--repeat=1', '--queue=2'], 4 * 60_000);
    assert.equal(code, 0, output);
    assert.match(output, /^one thread +median \d+ rows\/s/m);
    assert.match(output, /^two threads +median \d+ rows\/s/m);
    assert.match(output, /reading thread [\d.]+ µs/);
  },
);
