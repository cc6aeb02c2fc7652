// Keeps the benchmark harness from rotting: runs `bench/run.ts` with tiny sizes (2,000 rows, one
// repetition, short streaming steps) against the local stack and checks that the JSON result
// has every scenario and baseline with positive figures, and that the Markdown table was written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const RUN = fileURLToPath(new URL('../../bench/run.ts', import.meta.url));

interface Summary {
  median: number;
  n: number;
}

test(
  'bench harness: every scenario and baseline yields positive figures (tiny N)',
  { timeout: 90_000 },
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
        '--profile',
        `--out=${out}`,
      ];
      const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
        let text = '';
        const child = spawn(process.execPath, args, {
          env: process.env,
          stdio: ['ignore', 'pipe', 'pipe'],
          // Within the test's own timeout; the harness stops its workers on SIGTERM.
          timeout: 85_000,
        });
        child.stdout.on('data', (d: Buffer) => (text += d.toString()));
        child.stderr.on('data', (d: Buffer) => (text += d.toString()));
        child.on('close', (c) => resolve({ code: c, output: text }));
      });
      assert.equal(code, 0, output);

      const json = fs.readdirSync(out).find((f) => f.endsWith('.json'));
      assert.ok(json, `no .json in ${out}`);
      assert.ok(fs.existsSync(path.join(out, json.replace(/\.json$/, '.md'))), 'the .md beside the .json');
      const result = JSON.parse(fs.readFileSync(path.join(out, json), 'utf8')) as {
        environment: Record<string, unknown>;
        runs: Record<string, Array<Record<string, number>>>;
        summary: Record<string, Record<string, Summary>>;
        table: unknown[];
        profile?: { digest: { totalMs: number; top: unknown[] } };
      };
      for (const s of ['baselines', 'snapshot', 'stream', 'latency', 'bigtx']) {
        assert.equal(result.runs[s]?.length, 1, `${s}: one run`);
      }
      const positive: Record<string, string[]> = {
        baselines: [
          'copyRowsPerSec',
          'readRowsPerSec',
          'avroRowsPerSec',
          'kafkaRecordsPerSec',
          'avgRecordBytes',
        ],
        snapshot: ['seconds', 'rowsPerSec', 'kafkaMiBPerSec', 'peakRssMiB', 'cpuSeconds'],
        stream: ['maxSustainedChangesPerSec', 'peakRssMiB', 'pgDecodeChangesPerSec'],
        latency: ['changesPerSec', 'samples', 'appendP99Ms', 'visibleP99Ms', 'peakRssMiB'],
        bigtx: [
          'drainSeconds',
          'rowsPerSecAfterCommit',
          'peakRssMiB',
          'peakRssSmallTxMiB',
          'pgDecodeRowsPerSec',
        ],
      };
      for (const [s, metrics] of Object.entries(positive)) {
        for (const m of metrics) {
          const v = result.summary[s]?.[m]?.median;
          assert.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `${s}.${m} = ${v}`);
        }
      }
      // Latency percentiles may be 0 ms (millisecond resolution) but never negative or missing.
      for (const m of ['appendP50Ms', 'visibleP50Ms']) {
        const v = result.summary.latency?.[m]?.median;
        assert.ok(typeof v === 'number' && v >= 0, `latency.${m} = ${v}`);
      }
      assert.ok(result.table.length >= 10, 'the table has the rows of every scenario');
      assert.equal(typeof result.environment.postgres, 'string');
      assert.ok((result.profile?.digest.totalMs ?? 0) > 0, 'the snapshot profile was digested');
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  },
);
