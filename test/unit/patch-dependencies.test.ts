import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const file = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');

test('the kafkajs grouping patch is applied (scripts/patch-dependencies.mjs, run by npm ci)', () => {
  const text = readFileSync(file, 'utf8');
  assert.match(text, /\.push\(message\)/);
  assert.doesNotMatch(text, /\[\.\.\.current, message\]/);
});

test('the patched grouping keeps kafkajs semantics: per partition, in order', () => {
  const group = require(file) as (args: {
    topic: string;
    partitionMetadata: unknown[];
    messages: Array<{ key: string }>;
    partitioner: (a: { message: { key: string } }) => number;
  }) => Record<number, Array<{ key: string }>>;
  const messages = Array.from({ length: 10 }, (_, i) => ({ key: String(i) }));
  const grouped = group({
    topic: 't',
    partitionMetadata: [{}, {}, {}],
    messages,
    partitioner: ({ message }) => Number(message.key) % 3,
  });
  assert.deepEqual(Object.fromEntries(Object.entries(grouped).map(([p, ms]) => [p, ms.map((m) => m.key)])), {
    0: ['0', '3', '6', '9'],
    1: ['1', '4', '7'],
    2: ['2', '5', '8'],
  });
  assert.deepEqual(group({ topic: 't', partitionMetadata: [], messages, partitioner: () => 0 }), {});
});
