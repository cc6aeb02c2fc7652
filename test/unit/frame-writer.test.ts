// The encode path's two shortcuts must write exactly what the plain path writes: FrameWriter
// (Confluent frames written into shared slabs) against confluentFrame(id, type.toBuffer(v)), and
// the bigint long's direct number write against avsc's general bigint path, at the edges of both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import avsc from 'avsc';
import { avroTypeForSchema, bigintLongType } from '../../src/avro/envelope.ts';
import { LONG_MAX, LONG_MIN } from '../../src/avro/values.ts';
import { FrameWriter, confluentFrame } from '../../src/registry/registry.ts';

const type = avroTypeForSchema({
  type: 'record',
  name: 'Row',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'note', type: ['null', 'string'] },
    { name: 'ts', type: { type: 'long', logicalType: 'timestamp-micros' } },
  ],
});

test('FrameWriter: the same bytes as confluentFrame(id, toBuffer), across slab boundaries', () => {
  const frames = new FrameWriter();
  const written: Array<{ buf: Buffer; expected: Buffer }> = [];
  // Sizes from a few bytes to past a quarter slab (a buffer of its own), interleaved, so records
  // end exactly at, just before and past a slab's end.
  for (let i = 0; i < 5000; i++) {
    const len = i % 997 === 0 ? 70_000 + i : (i * 37) % 1500;
    const value = { id: BigInt(i) * 1_000_003n, note: i % 5 === 0 ? null : 'x'.repeat(len), ts: BigInt(-i) };
    const id = 1 + (i % 3);
    written.push({ buf: frames.frame(id, type, value), expected: confluentFrame(id, type.toBuffer(value)) });
  }
  // Compared only after all were written: a later record must not overwrite an earlier one.
  for (const [i, w] of written.entries()) assert.ok(w.buf.equals(w.expected), `record ${i}`);
});

test('FrameWriter: a record larger than a slab', () => {
  const frames = new FrameWriter();
  const value = { id: 1n, note: 'y'.repeat(3 * 1024 * 1024), ts: 0n };
  const small = frames.frame(7, type, { id: 2n, note: 'z', ts: 1n });
  const big = frames.frame(7, type, value);
  assert.ok(big.equals(confluentFrame(7, type.toBuffer(value))));
  assert.ok(small.equals(confluentFrame(7, type.toBuffer({ id: 2n, note: 'z', ts: 1n }))));
});

test('bigint long: the direct write matches avsc at the edges of the number range and of long', () => {
  // The general path: avsc's own bigint long (toBuffer + packLongBytes), without the shortcut.
  const general = avsc.types.LongType.__with({
    fromBuffer: (buf: Buffer): bigint => buf.readBigInt64LE(0),
    toBuffer: (n: bigint): Buffer => {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(n, 0);
      return b;
    },
    fromJSON: (v: unknown): bigint => BigInt(v as bigint),
    toJSON: (n: bigint): number => Number(n),
    isValid: (n: unknown): boolean => typeof n === 'bigint' && n >= LONG_MIN && n <= LONG_MAX,
    compare: (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0),
  });
  const safe = BigInt(Number.MAX_SAFE_INTEGER);
  const direct = 2n ** 52n; // the direct write's bound
  const values = [0n, 1n, -1n, 63n, 64n, -64n, -65n, 2n ** 31n, -(2n ** 31n), 2n ** 30n - 1n, -(2n ** 30n)];
  for (const v of [
    safe,
    -safe,
    safe + 1n,
    -safe - 1n,
    direct,
    -direct,
    direct + 1n,
    -direct - 1n,
    LONG_MAX,
    LONG_MIN,
  ])
    values.push(v);
  for (let i = 0n; i < 64n; i++) values.push(2n ** i - 1n, -(2n ** i));
  for (const v of values) {
    const fast = bigintLongType.toBuffer(v);
    assert.ok(fast.equals(general.toBuffer(v)), `${v}: ${fast.toString('hex')}`);
    assert.equal(bigintLongType.fromBuffer(fast), v);
  }
  assert.throws(() => bigintLongType.toBuffer(LONG_MAX + 1n));
  assert.throws(() => bigintLongType.toBuffer(1 as unknown as bigint));
});
