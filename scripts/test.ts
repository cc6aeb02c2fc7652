// npm test [-- <test files or node --test options>]
// npm test -- --cluster   (npm run test:cluster): the three-broker durability suite, test/cluster
//
// 1. unit tests (test/unit/**/*.test.ts) with node's test runner;
// 2. the local stack: started, or reused if running (deploy/local/stack.ts);
// 3. integration tests (test/integration/**/*.test.ts), one file at a time, with the stack's
//    PGCDC_* variables in their environment.
// File arguments select what runs (a unit file needs no stack); other arguments (e.g.
// --test-name-pattern=...) go to `node --test`. Exits non-zero if anything failed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { clusterUp, stackUp } from '../deploy/local/stack.ts';

const root = path.resolve(import.meta.dirname, '..');

function glob(pattern: string): string[] {
  return fs.globSync(pattern, { cwd: root }).sort();
}

/** Pass/fail counts of every run, from a TAP copy of its results, for the closing total. */
const totals = { passed: 0, failed: 0 };

function countTap(file: string): void {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  // The summary lines of the top-level stream (no indentation) are the run's totals.
  totals.passed += Number(/^# pass (\d+)$/m.exec(text)?.[1] ?? 0);
  totals.failed += Number(/^# fail (\d+)$/m.exec(text)?.[1] ?? 0);
  fs.rmSync(file, { force: true });
}

function runNodeTest(label: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  process.stdout.write(`\n# ${label}: node --test ${args.join(' ')}\n`);
  const tap = path.join(root, '.cache', `test-${label.replace(/\W+/g, '-')}.tap`);
  fs.mkdirSync(path.dirname(tap), { recursive: true });
  const reporters = [
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
  ];
  return new Promise<number>((resolve) => {
    // No warning is silenced: kafkajs's negative timeout is fixed at its cause (scripts/patch-dependencies.mjs).
    const child = spawn(process.execPath, ['--test', ...reporters, ...args], {
      cwd: root,
      env,
      stdio: 'inherit',
    });
    child.on('error', (err) => {
      process.stderr.write(`test: could not run node --test: ${err.message}\n`);
      resolve(1);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  }).then((code) => {
    countTap(tap);
    return code;
  });
}

async function main(argv: string[]): Promise<number> {
  const options = argv.filter((a) => a.startsWith('-'));
  const files = argv.filter((a) => !a.startsWith('-'));
  const isUnit = (f: string) =>
    path.relative(root, path.resolve(root, f)).startsWith(`test${path.sep}unit${path.sep}`);
  const isCluster = (f: string) =>
    path.relative(root, path.resolve(root, f)).startsWith(`test${path.sep}cluster${path.sep}`);
  // --cluster: the three-broker durability suite (test/cluster), on its own: it is slow.
  const clusterSuite = options.includes('--cluster');
  if (clusterSuite) options.splice(options.indexOf('--cluster'), 1);
  if (clusterSuite && files.length === 0) files.push(...glob('test/cluster/**/*.test.ts'));
  const unit = files.length > 0 ? files.filter(isUnit) : glob('test/unit/**/*.test.ts');
  const cluster = files.filter(isCluster);
  const integration =
    files.length > 0
      ? files.filter((f) => !isUnit(f) && !isCluster(f))
      : glob('test/integration/**/*.test.ts');

  let failed = false;
  if (unit.length > 0) {
    failed = (await runNodeTest('unit tests', [...options, ...unit], process.env)) !== 0 || failed;
  } else if (files.length === 0) {
    process.stdout.write('\n# unit tests: none in test/unit yet\n');
  }

  for (const [suite, list] of [
    ['integration tests', integration],
    ['three-broker tests', cluster],
  ] as const) {
    if (list.length === 0) continue;
    const brokers = suite === 'three-broker tests' ? ' --brokers 3' : '';
    process.stdout.write(`\n# local stack: npm run stack -- up${brokers}\n`);
    let env;
    try {
      env = await stackUp();
      // The cluster's bootstrap list replaces the single broker: every helper of test/support
      // (workerEnv, TopicReader) then talks to the three brokers.
      if (brokers) env = { ...env, PGCDC_KAFKA_BROKERS: await clusterUp() };
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n`);
      process.stdout.write(`# ${suite} not run: the local stack did not start\n# fail 1\n`);
      return 1;
    }
    // A hung test must not hang CI: 5 minutes per test unless told otherwise.
    const timeout = options.some((o) => o.startsWith('--test-timeout')) ? [] : ['--test-timeout=300000'];
    // --test-force-exit: a file whose tests are done but that left a client open (a Kafka
    // consumer, a pg connection) must not keep the run waiting forever.
    const args = ['--test-concurrency=1', '--test-force-exit', ...timeout, ...options, ...list];
    failed = (await runNodeTest(suite, args, { ...process.env, ...env })) !== 0 || failed;
  }
  // One closing line for all runs (CI reads it).
  process.stdout.write(`\ntotal: ${totals.passed} passed, ${totals.failed} failed\n`);
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`test: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
