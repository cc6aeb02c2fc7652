// kafkajs's log lines reach pgcdc's log: at pgcdc's levels, redacted, rate-limited, and the
// retry count the metrics read keeps working. Driven through a real kafkajs logger (kafkajs's own
// createLogger), as the client wires it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { logLevel, type logCreator } from 'kafkajs';
import { kafkajsLogCreator } from '../../src/kafka/client.ts';
import { createLogger } from '../../src/worker/log.ts';

const require = createRequire(import.meta.url);
const { createLogger: kafkajsLogger } = require('kafkajs/src/loggers/index.js') as {
  createLogger(o: { level: number; logCreator: logCreator }): {
    namespace(n: string): Record<'error' | 'warn' | 'info' | 'debug', (m: string, extra?: object) => void>;
  };
};

function setup(opts: { secrets?: string[]; configSecrets?: string[]; level?: 'debug' | 'info' } = {}) {
  const lines: Array<Record<string, unknown>> = [];
  const out = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const log = createLogger({
    connector: 'c',
    level: opts.level ?? 'debug',
    format: 'json',
    out,
    secrets: opts.configSecrets,
  });
  let clock = 0;
  let retries = 0;
  const creator = kafkajsLogCreator(log, {
    onRetry: () => retries++,
    secrets: opts.secrets,
    now: () => clock,
  });
  const root = kafkajsLogger({ level: logLevel.INFO, logCreator: creator });
  return {
    lines,
    producer: root.namespace('Producer'),
    advance: (ms: number) => (clock += ms),
    retries: () => retries,
  };
}

describe('kafkajs log lines in pgcdc’s log', () => {
  test('ERROR and WARN become warn, INFO becomes debug; context scalars kept, stack dropped', () => {
    const t = setup();
    t.producer.error('Failed to send messages: Connection error: connect ECONNREFUSED', {
      retryCount: 1,
      retryTime: 300,
      stack: 'Error\n at x',
    });
    t.producer.warn('Broker 127.0.0.1:9092 is not reachable');
    t.producer.info('Starting', { groupId: 'g' });
    t.producer.debug('not at INFO');
    // Bounded retries are pgcdc's choice (a restart from the stored offset follows): not a warning.
    t.producer.warn('Limiting retries for the idempotent producer may invalidate EoS guarantees');
    assert.deepEqual(
      t.lines.map((l) => l.level),
      ['warn', 'warn', 'debug', 'debug'],
    );
    const first = t.lines[0]!;
    assert.equal(first.message, 'kafkajs: Failed to send messages: Connection error: connect ECONNREFUSED');
    assert.equal(first.component, 'kafkajs');
    assert.equal(first.namespace, 'Producer');
    assert.equal(first.retryCount, 1);
    assert.equal(first.stack, undefined);
    assert.equal(t.lines[2]!.groupId, 'g');
  });

  test('the retry hook counts every failed attempt, also those the rate limit drops', () => {
    const t = setup();
    for (let i = 0; i < 5; i++)
      t.producer.error('Failed to send messages: x', { retryCount: i, retryTime: 300 });
    t.producer.error('Crash: KafkaJSNumberOfRetriesExceeded'); // no retryCount: not a retry
    assert.equal(t.retries(), 5);
  });

  test('a repeated line is written once per window, then once more with the number dropped', () => {
    const t = setup();
    for (let i = 0; i < 50; i++) t.producer.error('Connection error: connect ECONNREFUSED 127.0.0.1:9092');
    assert.equal(t.lines.length, 1);
    t.advance(10_001);
    t.producer.error('Connection error: connect ECONNREFUSED 127.0.0.1:9092');
    assert.equal(t.lines.length, 2);
    assert.equal(t.lines[1]!.repeatedSinceLastLine, 49);
    t.producer.error('another line');
    assert.equal(t.lines.length, 3);
  });

  test('clients writing to one logger share the limit (a restarted connector makes new clients)', () => {
    const lines: string[] = [];
    const log = { debug: () => {}, info: () => {}, warn: (m: string) => lines.push(m), error: () => {} };
    for (let i = 0; i < 3; i++) {
      const creator = kafkajsLogCreator(log, { now: () => 1000 + i });
      kafkajsLogger({ level: logLevel.INFO, logCreator: creator })
        .namespace('Connection')
        .error('Connection error: connect ECONNREFUSED');
    }
    assert.equal(lines.length, 1);
  });

  test('the SASL password never appears, even when the logger was given no secrets', () => {
    const t = setup({ secrets: ['s3cr3t-pass'] });
    t.producer.error('SASL PLAIN authentication failed for s3cr3t-pass', {
      detail: 'password s3cr3t-pass',
      request: { password: 's3cr3t-pass' },
    });
    const text = JSON.stringify(t.lines);
    assert.doesNotMatch(text, /s3cr3t-pass/);
    assert.match(text, /\[redacted\]/);
  });

  test('without a logger only the retry hook runs', () => {
    let retries = 0;
    const creator = kafkajsLogCreator(undefined, { onRetry: () => retries++ });
    kafkajsLogger({ level: logLevel.ERROR, logCreator: creator })
      .namespace('P')
      .error('x', { retryCount: 0 });
    assert.equal(retries, 1);
  });
});
