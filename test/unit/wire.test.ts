import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  STANDBY_STATUS_UPDATE_LENGTH,
  WireError,
  parsePrimaryKeepalive,
  parseServerCopyData,
  parseXLogData,
  standbyStatusUpdate,
} from '../../src/postgres/replication/wire.ts';
import {
  encodeBegin,
  encodePrimaryKeepalive,
  encodeXLogData,
  isoToMicros,
} from '../support/pgoutput-fixtures.ts';

const TS = isoToMicros('2024-02-29T12:34:56.123456Z');
const BIG = 0x1_0000_0000n + 0x16b3748n;
const NEAR_MAX = 0xffff_ffff_ffff_fffen;

describe('wire: XLogData', () => {
  it('round-trips, data is a view (no copy)', () => {
    const payload = encodeBegin({ finalLsn: BIG, commitTimeMicros: TS, xid: 7 });
    const bytes = encodeXLogData({ walStart: BIG, walEnd: NEAR_MAX, sendTimeMicros: TS, data: payload });
    const m = parseXLogData(bytes);
    assert.equal(m.kind, 'xlog');
    assert.equal(m.walStart, BIG);
    assert.equal(m.walEnd, NEAR_MAX);
    assert.equal(m.sendTimeMicros, TS);
    assert.deepEqual(m.data, payload);
    assert.equal(m.data.buffer, bytes.buffer);
    assert.equal(m.data.byteOffset, bytes.byteOffset + 25);
    assert.deepEqual(parseServerCopyData(bytes), m);
  });

  it('empty data is allowed', () => {
    const m = parseXLogData(
      encodeXLogData({ walStart: 1n, walEnd: 2n, sendTimeMicros: TS, data: Buffer.alloc(0) }),
    );
    assert.equal(m.data.length, 0);
  });

  it('header layout: w, walStart, walEnd, sendTime (PG epoch)', () => {
    const b = Buffer.alloc(25);
    b[0] = 0x77;
    b.writeBigUInt64BE(0x0102030405060708n, 1);
    b.writeBigUInt64BE(0xffffffffffffffffn, 9);
    b.writeBigInt64BE(762525296123456n, 17);
    const m = parseXLogData(b);
    assert.equal(m.walStart, 0x0102030405060708n);
    assert.equal(m.walEnd, 0xffffffffffffffffn);
    assert.equal(m.sendTimeMicros, 1709210096123456n);
  });

  it('truncated header and wrong type', () => {
    assert.throws(() => parseXLogData(Buffer.from('w1234')), WireError);
    assert.throws(() => parseXLogData(Buffer.alloc(30)), WireError);
  });

  it('every header shorter than 25 bytes is a WireError naming the frame (not a RangeError)', () => {
    const full = encodeXLogData({ walStart: BIG, walEnd: BIG, sendTimeMicros: TS, data: Buffer.alloc(0) });
    for (let n = 1; n < 25; n++) {
      assert.throws(
        () => parseServerCopyData(full.subarray(0, n)),
        (e: Error) =>
          e instanceof WireError && e.message === `XLogData truncated: ${n} bytes, header needs 25`,
        `n=${n}`,
      );
    }
  });
});

describe('wire: Primary keepalive', () => {
  for (const replyRequested of [true, false]) {
    it(`round-trips (replyRequested=${replyRequested})`, () => {
      const bytes = encodePrimaryKeepalive({ walEnd: NEAR_MAX, sendTimeMicros: TS, replyRequested });
      assert.equal(bytes.length, 18);
      const m = parsePrimaryKeepalive(bytes);
      assert.deepEqual(m, { kind: 'keepalive', walEnd: NEAR_MAX, sendTimeMicros: TS, replyRequested });
      assert.deepEqual(parseServerCopyData(bytes), m);
    });
  }

  it('wrong length', () => {
    assert.throws(() => parsePrimaryKeepalive(Buffer.from('k')), /expected 18/);
  });

  it('every frame shorter or longer than 18 bytes is a WireError naming the frame', () => {
    const full = encodePrimaryKeepalive({ walEnd: BIG, sendTimeMicros: TS, replyRequested: true });
    for (const frame of [
      ...Array.from({ length: 17 }, (_, i) => full.subarray(0, i + 1)),
      Buffer.concat([full, Buffer.of(0)]),
    ]) {
      assert.throws(
        () => parseServerCopyData(frame),
        (e: Error) =>
          e instanceof WireError &&
          e.message === `Primary keepalive has ${frame.length} bytes, expected 18` &&
          (e as WireError).retriable === false,
        `length ${frame.length}`,
      );
    }
  });
});

describe('wire: parseServerCopyData', () => {
  it('unknown type names the byte', () => {
    assert.throws(() => parseServerCopyData(Buffer.from('q')), /'q' \(0x71\)/);
    assert.throws(() => parseServerCopyData(Buffer.alloc(0)), /empty/);
  });
});

describe('wire: Standby status update', () => {
  it('34 bytes, checked byte by byte; LSNs sent exactly as given (no +1)', () => {
    const written = 0x0102030405060708n;
    const flushed = 0x1112131415161718n;
    const applied = 0xfffffffffffffffen;
    const b = standbyStatusUpdate(written, flushed, applied, TS, true);
    assert.equal(b.length, STANDBY_STATUS_UPDATE_LENGTH);
    assert.equal(b.length, 34);
    // PostgreSQL-epoch micros of 2024-02-29 12:34:56.123456 UTC.
    const clock = Buffer.alloc(8);
    clock.writeBigInt64BE(762525296123456n);
    // prettier-ignore
    const expected = [
      0x72, // 'r'
      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // written
      0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, // flushed
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, // applied
      ...clock, // client clock, PostgreSQL epoch
      0x01, // replyRequested
    ];
    assert.deepEqual([...b], expected);
    assert.equal(standbyStatusUpdate(1n, 1n, 1n, TS, false)[33], 0);
  });

  it('the clock field is microseconds since 2000-01-01', () => {
    const b = standbyStatusUpdate(0n, 0n, 0n, 946684800000000n, false);
    assert.equal(b.readBigInt64BE(25), 0n);
  });
});
