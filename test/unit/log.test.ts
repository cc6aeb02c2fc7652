import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, errorContext, redactText } from '../../src/worker/log.ts';
import { UserError } from '../../src/errors.ts';
import { formatDuration, formatProgress, formatTableLine, RateTracker } from '../../src/worker/progress.ts';

function sink(isTTY = false) {
  const chunks: string[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  }) as Writable & { isTTY?: boolean; columns?: number };
  out.isTTY = isTTY;
  out.columns = 80;
  return { out, text: () => chunks.join(''), chunks };
}

describe('logger', () => {
  test('JSON lines carry level, time, connector, message and context', () => {
    const s = sink();
    const log = createLogger({ connector: 'orders', level: 'info', format: 'auto', out: s.out });
    log.debug('hidden');
    log.info('started', { lsn: '0/16B3748', n: 12n });
    const lines = s.text().trim().split('\n');
    assert.equal(lines.length, 1);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(entry.level, 'info');
    assert.equal(entry.connector, 'orders');
    assert.equal(entry.message, 'started');
    assert.equal(entry.lsn, '0/16B3748');
    assert.equal(entry.n, '12');
    assert.ok(!Number.isNaN(Date.parse(entry.time as string)));
  });

  test('child loggers add their context', () => {
    const s = sink();
    const log = createLogger({ connector: 'c', level: 'debug', format: 'json', out: s.out });
    log.child!({ table: 'public.t' }).warn('slow', { ms: 5 });
    const entry = JSON.parse(s.text()) as Record<string, unknown>;
    assert.equal(entry.table, 'public.t');
    assert.equal(entry.ms, 5);
  });

  test('secrets never reach the output: configured values, URL passwords, password= pairs, in errors too', () => {
    const s = sink();
    const secret = 'S3cr3t-pa55word';
    const log = createLogger({
      connector: 'c',
      level: 'debug',
      format: 'json',
      out: s.out,
      secrets: [secret],
    });
    const err = new Error(`connect failed for postgres://app:${secret}@db:5432/x`);
    log.error('connector failed', { err, dsn: 'host=db user=app password=hunter2 dbname=x' });
    log.info(`registry https://u:tok3n@registry.example/apis`);
    const text = s.text();
    assert.doesNotMatch(text, /S3cr3t-pa55word/);
    assert.doesNotMatch(text, /hunter2/);
    assert.doesNotMatch(text, /tok3n/);
    assert.match(text, /\[redacted\]/);
    const first = JSON.parse(text.split('\n')[0]!) as { err: { message: string; stack: string } };
    assert.match(first.err.message, /postgres:\/\/app:\[redacted\]@db/);
    assert.doesNotMatch(first.err.stack, /S3cr3t/);
  });

  test('redactText leaves ordinary text alone', () => {
    assert.equal(
      redactText('snapshot table public.orders (12 rows)'),
      'snapshot table public.orders (12 rows)',
    );
    assert.equal(redactText('http://registry:8081/apis'), 'http://registry:8081/apis');
  });

  test('errors: user mistakes without a stack, bugs with it', () => {
    assert.equal(errorContext(new UserError('publication p does not exist')).stack, undefined);
    assert.match(String(errorContext(new TypeError('x')).stack), /TypeError: x/);
    assert.deepEqual(errorContext('plain'), { message: 'plain' });
  });

  test('pretty format on a terminal, with a status block redrawn under log lines', () => {
    const s = sink(true);
    const log = createLogger({ connector: 'c', level: 'info', format: 'auto', out: s.out, color: false });
    assert.equal(log.interactive, true);
    log.status!(['snapshot: 0/1 tables', '  public.t  10 rows']);
    log.info('hello', { a: 1 });
    log.status!(null);
    const text = s.text();
    assert.ok(text.includes('INFO  hello a=1'));
    // The log line erases the block (up one line, clear to the end) and draws it again after.
    const erase = '\r\x1b[1A\x1b[J';
    const at = text.indexOf(`${erase}`);
    assert.ok(at >= 0);
    assert.ok(text.slice(at).includes('hello a=1\nsnapshot: 0/1 tables\n  public.t  10 rows'));
    assert.ok(text.endsWith('\r\x1b[1A\x1b[J'));
  });

  test('no status block when not interactive', () => {
    const s = sink(false);
    const log = createLogger({ connector: 'c', level: 'info', format: 'json', out: s.out });
    log.status!(['x']);
    assert.equal(s.text(), '');
  });
});

describe('snapshot progress', () => {
  test('table lines: rows, estimate, percentage, rate and ETA', () => {
    assert.equal(
      formatTableLine('public.orders', { rows: 25_000, estimatedRows: 100_000, done: false, rate: 5_000 }),
      '  public.orders  25,000 / 100,000 rows  25.0%  5,000 rows/s  ETA 15s',
    );
    assert.equal(
      formatTableLine('public.t', { rows: 10, estimatedRows: 0, done: false, rate: null }),
      '  public.t  10 rows',
    );
    assert.equal(
      formatTableLine('public.t', { rows: 10, estimatedRows: 8, done: true, rate: null }),
      '  public.t  10 rows  done',
    );
  });

  test('durations', () => {
    assert.equal(formatDuration(5), '5s');
    assert.equal(formatDuration(125), '2m05s');
    assert.equal(formatDuration(7260), '2h01m');
    assert.equal(formatDuration(Number.NaN), '?');
  });

  test('the block: a total line, active tables only', () => {
    const lines = formatProgress({
      'public.a': { rows: 100, estimatedRows: 100, done: true, rate: null },
      'public.b': { rows: 50, estimatedRows: 200, done: false, rate: 10 },
      'public.c': { rows: 0, estimatedRows: 0, done: false, rate: null },
    });
    assert.equal(lines[0], 'snapshot: 1/3 tables, 150 / ~300 rows, 10 rows/s, ETA 15s');
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /public\.b {2}50 \/ 200 rows/);
  });

  test('rates come from successive samples', () => {
    const tracker = new RateTracker();
    const snap = {
      state: 'running' as const,
      tables: { 'public.t': { rows: 0, estimatedRows: 1000, done: false } },
    };
    assert.equal(tracker.sample(snap, 1_000)['public.t']!.rate, null);
    snap.tables['public.t'].rows = 500;
    assert.equal(tracker.sample(snap, 2_000)['public.t']!.rate, 500);
  });
});
