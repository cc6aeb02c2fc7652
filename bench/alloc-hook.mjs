// Allocation sampling for a pgcdc worker started by the benchmark: V8's sampling heap profiler
// with the objects already collected kept in the profile, so it counts what was allocated (the
// garbage the collector has to deal with), not what is still alive. Loaded with --import:
//   PGCDC_BENCH_NODE_OPTIONS="--import $PWD/bench/alloc-hook.mjs" \
//     node bench/run.ts --rows 300000 --repeat 1 --scenario snapshot
//   node bench/alloc-report.ts "$(ls -t /tmp/pgcdc-alloc/*.json | head -1)" 300000
// The profile is written when the worker exits, to $PGCDC_ALLOC_DIR (default /tmp/pgcdc-alloc),
// one file per process (the bench's own worker runs included).
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.PGCDC_ALLOC_DIR ?? '/tmp/pgcdc-alloc';
const session = new Session();
session.connect();
session.post('HeapProfiler.enable');
session.post('HeapProfiler.startSampling', {
  samplingInterval: 8192,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
});
process.on('exit', () => {
  // A session of the same thread answers synchronously, so this runs before the process ends.
  session.post('HeapProfiler.stopSampling', (err, res) => {
    if (err) return void console.error(`alloc-hook: ${err.message}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `alloc-${process.pid}.json`), JSON.stringify(res.profile));
  });
});
