// The benchmark report's pure logic: medians and spread, percentiles, ratios, table rows, the
// Markdown table, the CPU-profile digest and the bound-by verdict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  boundBy,
  buildRows,
  categorize,
  digestProfile,
  fmt,
  fmtSummary,
  markdownProfile,
  markdownTable,
  percentile,
  ratio,
  summarize,
  summarizeRuns,
  type CpuProfile,
} from '../../bench/report.ts';

test('summarize: median of odd and even counts, min and max, ignores NaN/undefined', () => {
  assert.deepEqual(summarize([3, 1, 2]), { median: 2, min: 1, max: 3, n: 3 });
  assert.deepEqual(summarize([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4, n: 4 });
  assert.deepEqual(summarize([5, NaN, undefined]), { median: 5, min: 5, max: 5, n: 1 });
  const empty = summarize([]);
  assert.equal(empty.n, 0);
  assert.ok(Number.isNaN(empty.median));
});

test('percentile: nearest rank', () => {
  const v = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
  assert.equal(percentile(v, 50), 50);
  assert.equal(percentile(v, 95), 95);
  assert.equal(percentile(v, 99), 99);
  assert.equal(percentile(v, 100), 100);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('ratio: NaN when either side is unknown or the baseline is 0', () => {
  assert.equal(ratio(50, 200), 0.25);
  assert.ok(Number.isNaN(ratio(1, 0)));
  assert.ok(Number.isNaN(ratio(NaN, 2)));
});

test('summarizeRuns: every metric of every run', () => {
  const s = summarizeRuns([{ a: 1, b: 10 }, { a: 3 }, { a: 2, b: 30 }]);
  assert.deepEqual(s.a, { median: 2, min: 1, max: 3, n: 3 });
  assert.deepEqual(s.b, { median: 20, min: 10, max: 30, n: 2 });
});

test('buildRows: ratio against the baseline median; missing metrics are skipped', () => {
  const sums = {
    snapshot: summarizeRuns([{ rowsPerSec: 40 }, { rowsPerSec: 50 }, { rowsPerSec: 60 }]),
    baselines: summarizeRuns([{ copy: 200 }, { copy: 100 }, { copy: 300 }]),
  };
  const rows = buildRows(
    [
      {
        scenario: 'Initial load',
        figure: 'rows/s',
        unit: 'rows/s',
        from: 'snapshot',
        metric: 'rowsPerSec',
        baseline: { name: 'COPY', from: 'baselines', metric: 'copy', unit: 'rows/s' },
        bottleneck: 'worker CPU',
      },
      { scenario: 'Streaming', figure: 'x', unit: 'x', from: 'stream', metric: 'missing' },
    ],
    sums,
  );
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.ratio, 0.25);
  assert.equal(rows[0]!.baseline!.value.median, 200);
  assert.equal(rows[0]!.bottleneck, 'worker CPU');
});

test('fmt and fmtSummary: readable numbers, spread only when there is one', () => {
  assert.equal(fmt(1234567.8), '1,234,568');
  assert.equal(fmt(123.4), '123');
  assert.equal(fmt(12.34), '12.3');
  assert.equal(fmt(1.234), '1.23');
  assert.equal(fmt(0.01234), '0.0123');
  assert.equal(fmt(NaN), '–');
  assert.equal(fmtSummary({ median: 2000, min: 1500, max: 2500, n: 3 }), '2,000 (1,500–2,500)');
  assert.equal(fmtSummary({ median: 5, min: 5, max: 5, n: 1 }), '5.00');
});

test('markdownTable: one line per row, pipes escaped, ratio as a percentage', () => {
  const md = markdownTable([
    {
      scenario: 'Initial load',
      figure: 'rows/s',
      unit: 'rows/s',
      value: { median: 50, min: 40, max: 60, n: 3 },
      baseline: { name: 'a|b', value: { median: 200, min: 200, max: 200, n: 3 }, unit: 'rows/s' },
      ratio: 0.25,
      bottleneck: 'worker CPU',
    },
    { scenario: 'Large transaction', figure: 'drain', unit: 's', value: { median: 3, min: 3, max: 3, n: 1 } },
  ]);
  const lines = md.split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^\| Scenario \| Figure \|/);
  assert.equal(
    lines[2],
    '| Initial load | rows/s | 50.0 (40.0–60.0) rows/s | a\\|b: 200 rows/s | 25 % | worker CPU |',
  );
  assert.equal(lines[3], '| Large transaction | drain | 3.00 s | – | – | – |');
});

test('categorize: scripts by where they live', () => {
  assert.equal(categorize('file:///w/node_modules/avsc/lib/types.js', 'f'), 'Avro (avsc)');
  assert.equal(categorize('file:///w/node_modules/kafkajs/src/x.js', 'f'), 'kafkajs');
  assert.equal(
    categorize('file:///w/node_modules/pg-protocol/dist/parser.js', 'f'),
    'pg driver (protocol, rows)',
  );
  assert.equal(categorize('file:///w/src/avro/values.ts', 'f'), 'pgcdc Avro conversion (src/avro)');
  assert.equal(categorize('file:///w/src/avro/writers.ts', 'f'), 'Avro (avsc)');
  assert.equal(categorize('', '(garbage collector)'), 'GC');
  assert.equal(categorize('', '(idle)'), 'idle (waiting for I/O)');
  assert.equal(categorize('node:internal/streams/readable', 'f'), 'Node.js core / builtins');
});

test('digestProfile: self time from samples and time deltas, per function and per category', () => {
  const profile: CpuProfile = {
    startTime: 0,
    endTime: 10_000,
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 } },
      {
        id: 2,
        callFrame: {
          functionName: 'writeRecord',
          url: 'file:///w/node_modules/avsc/lib/types.js',
          lineNumber: 9,
        },
      },
      { id: 3, callFrame: { functionName: '(garbage collector)', url: '', lineNumber: -1 } },
      {
        id: 4,
        callFrame: {
          functionName: 'writeRecord',
          url: 'file:///w/node_modules/avsc/lib/types.js',
          lineNumber: 9,
        },
      },
    ],
    samples: [2, 2, 3, 4, 2],
    timeDeltas: [1000, 2000, 3000, 1000, 3000],
  };
  const d = digestProfile(profile);
  assert.equal(d.totalMs, 10);
  assert.equal(d.top[0]!.name, 'writeRecord node_modules/avsc/lib/types.js:10');
  assert.equal(d.top[0]!.selfMs, 7); // two nodes of the same function are summed
  assert.equal(d.top[0]!.percent, 70);
  assert.deepEqual(
    d.categories.map((c) => [c.category, c.selfMs]),
    [
      ['Avro (avsc)', 7],
      ['GC', 3],
    ],
  );
  const md = markdownProfile(d);
  assert.match(md, /\| Avro \(avsc\) \| 0\.00700 s \| 70\.0 % \|/);
});

test('boundBy: the saturated resource, with the utilisations', () => {
  assert.match(
    boundBy({ worker: 0.97, postgres: 0.3, kafka: 0.4 }, 2),
    /^worker CPU .*worker 97 %, PG 30 %, Kafka 40 %$/,
  );
  assert.match(boundBy({ worker: 0.5, postgres: 0.95 }, 2), /^PostgreSQL backend CPU/);
  assert.match(boundBy({ worker: 0.7, postgres: 0.5, kafka: 0.7 }, 2), /^machine CPU \(2 cores shared\)/);
  assert.match(boundBy({ worker: 0.1, postgres: 0.05, kafka: 0.1 }, 2), /^waiting/);
});

test('stageOf: pgcdc’s own avsc writers are encoding, the rest of src/avro conversion', async () => {
  const { stageOf, snapshotStageOf } = await import('../../bench/catchup.ts');
  for (const classify of [stageOf, snapshotStageOf]) {
    assert.equal(classify('file:///w/src/avro/writers.ts', 'write'), 'encode (avsc, Confluent frame)');
    assert.equal(classify('file:///w/src/avro/values.ts', 'f'), 'convert (src/avro: values, envelope)');
  }
});
