import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatLsn, parseLsn } from '../../src/postgres/lsn.ts';

test('LSN text round-trips through bigint, including values above 2^32', () => {
  for (const text of ['0/0', '0/16B3748', '1/0', 'FFFFFFFF/FFFFFFFF', 'A/B']) {
    assert.equal(formatLsn(parseLsn(text)), text);
  }
  assert.equal(parseLsn('1/0'), 1n << 32n);
  assert.equal(parseLsn('0/16b3748'), 0x16b3748n);
});

test('a malformed LSN is refused with the expected form', () => {
  assert.throws(() => parseLsn('16B3748'), /expected the form X\/Y/);
  assert.throws(() => parseLsn('1/2/3'), /invalid LSN/);
});
