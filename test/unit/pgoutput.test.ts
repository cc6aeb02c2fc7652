import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { UNCHANGED_TOAST } from '../../src/change/event.ts';
import type { Relation } from '../../src/change/event.ts';
import { PgoutputDecoder, PgoutputError } from '../../src/postgres/replication/pgoutput.ts';
import type { PgoutputMessage } from '../../src/postgres/replication/pgoutput.ts';
import {
  Writer,
  encodeBegin,
  encodeCommit,
  encodeDelete,
  encodeInsert,
  encodeMessage,
  encodeOrigin,
  encodeRelation,
  encodeStreamAbort,
  encodeStreamCommit,
  encodeStreamStart,
  encodeStreamStop,
  encodeTruncate,
  encodeType,
  encodeUpdate,
  isoToMicros,
} from '../support/pgoutput-fixtures.ts';

const OID = 16385;
const TS = isoToMicros('2024-02-29T12:34:56.123456Z');
const BIG_LSN = 0x1_0000_0000n + 0x16b3748n; // above 2^32
const MAX_LSN = 0xffff_ffff_ffff_fffen; // near 2^64

const usersWire = {
  oid: OID,
  schema: 'public',
  table: 'users',
  replicaIdentity: 'd',
  columns: [
    { name: 'id', typeOid: 23, isKey: true },
    { name: 'name', typeOid: 1043, typeMod: 68 },
    { name: 'bio', typeOid: 25 },
  ],
};

const users: Relation = {
  oid: OID,
  schema: 'public',
  table: 'users',
  replicaIdentity: 'default',
  columns: [
    { name: 'id', typeOid: 23, typeMod: -1, isKey: true },
    { name: 'name', typeOid: 1043, typeMod: 68, isKey: false },
    { name: 'bio', typeOid: 25, typeMod: -1, isKey: false },
  ],
};

function decoderWithUsers(replicaIdentity = 'd'): PgoutputDecoder {
  const d = new PgoutputDecoder();
  d.decode(encodeRelation({ ...usersWire, replicaIdentity }));
  return d;
}

describe('pgoutput decoder: every message type (encode → decode)', () => {
  const cases: { name: string; bytes: () => Buffer; expected: PgoutputMessage }[] = [
    {
      name: 'Begin',
      bytes: () => encodeBegin({ finalLsn: BIG_LSN, commitTimeMicros: TS, xid: 4_000_000_000 }),
      expected: { tag: 'begin', finalLsn: BIG_LSN, commitTimeMicros: TS, xid: 4_000_000_000 },
    },
    {
      name: 'Commit',
      bytes: () => encodeCommit({ commitLsn: BIG_LSN, endLsn: MAX_LSN, commitTimeMicros: TS }),
      expected: { tag: 'commit', flags: 0, commitLsn: BIG_LSN, endLsn: MAX_LSN, commitTimeMicros: TS },
    },
    {
      name: 'Origin',
      bytes: () => encodeOrigin({ lsn: BIG_LSN, name: 'pg_16390' }),
      expected: { tag: 'origin', lsn: BIG_LSN, name: 'pg_16390' },
    },
    {
      name: 'Relation',
      bytes: () => encodeRelation(usersWire),
      expected: { tag: 'relation', relation: users },
    },
    {
      name: 'Type',
      bytes: () => encodeType({ oid: 70000, schema: 'public', name: 'mood' }),
      expected: { tag: 'type', oid: 70000, schema: 'public', name: 'mood' },
    },
    {
      name: 'Insert',
      bytes: () => encodeInsert({ relationOid: OID, after: ['1', 'alice', null] }),
      expected: { tag: 'insert', relationOid: OID, relation: users, after: ['1', 'alice', null] },
    },
    {
      name: 'Update without old tuple',
      bytes: () => encodeUpdate({ relationOid: OID, after: ['1', 'bob', 'x'] }),
      expected: {
        tag: 'update',
        relationOid: OID,
        relation: users,
        before: null,
        beforeKind: null,
        after: ['1', 'bob', 'x'],
      },
    },
    {
      name: "Update with 'K' old key",
      bytes: () =>
        encodeUpdate({
          relationOid: OID,
          before: { kind: 'K', values: ['1', null, null] },
          after: ['2', 'bob', 'x'],
        }),
      expected: {
        tag: 'update',
        relationOid: OID,
        relation: users,
        before: ['1', null, null],
        beforeKind: 'key',
        after: ['2', 'bob', 'x'],
      },
    },
    {
      name: "Delete with 'K'",
      bytes: () => encodeDelete({ relationOid: OID, before: { kind: 'K', values: ['1', null, null] } }),
      expected: {
        tag: 'delete',
        relationOid: OID,
        relation: users,
        before: ['1', null, null],
        beforeKind: 'key',
      },
    },
    {
      name: "Delete with 'O'",
      bytes: () => encodeDelete({ relationOid: OID, before: { kind: 'O', values: ['1', 'a', 'b'] } }),
      expected: {
        tag: 'delete',
        relationOid: OID,
        relation: users,
        before: ['1', 'a', 'b'],
        beforeKind: 'old',
      },
    },
    {
      name: 'Truncate',
      bytes: () => encodeTruncate({ relationOids: [OID], cascade: true, restartIdentity: false }),
      expected: {
        tag: 'truncate',
        relationOids: [OID],
        relations: [users],
        cascade: true,
        restartIdentity: false,
      },
    },
    {
      name: 'Truncate RESTART IDENTITY',
      bytes: () => encodeTruncate({ relationOids: [OID], restartIdentity: true }),
      expected: {
        tag: 'truncate',
        relationOids: [OID],
        relations: [users],
        cascade: false,
        restartIdentity: true,
      },
    },
    {
      name: 'Message (transactional)',
      bytes: () =>
        encodeMessage({
          transactional: true,
          lsn: MAX_LSN,
          prefix: 'pgcdc',
          content: Buffer.from([0, 1, 255]),
        }),
      expected: {
        tag: 'message',
        transactional: true,
        lsn: MAX_LSN,
        prefix: 'pgcdc',
        content: Buffer.from([0, 1, 255]),
      },
    },
    {
      name: 'Message (non-transactional, empty content)',
      bytes: () => encodeMessage({ transactional: false, lsn: 1n, prefix: 'p', content: Buffer.alloc(0) }),
      expected: { tag: 'message', transactional: false, lsn: 1n, prefix: 'p', content: Buffer.alloc(0) },
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const d = decoderWithUsers();
      assert.deepEqual(d.decode(c.bytes()), c.expected);
    });
  }

  it('maps every replica identity character', () => {
    const d = new PgoutputDecoder();
    for (const [ch, name] of [
      ['d', 'default'],
      ['n', 'nothing'],
      ['f', 'full'],
      ['i', 'index'],
    ] as const) {
      const m = d.decode(encodeRelation({ ...usersWire, replicaIdentity: ch }));
      assert.equal(m.tag === 'relation' && m.relation.replicaIdentity, name);
    }
  });

  it("maps the empty namespace to 'pg_catalog' (Relation and Type)", () => {
    const d = new PgoutputDecoder();
    const t = d.decode(encodeType({ oid: 25, schema: '', name: 'text' }));
    assert.deepEqual(t, { tag: 'type', oid: 25, schema: 'pg_catalog', name: 'text' });
  });

  it('returns the cached relation', () => {
    const d = decoderWithUsers();
    assert.deepEqual(d.relation(OID), users);
    assert.equal(d.relations.size, 1);
    assert.equal(d.relation(1), undefined);
  });
});

describe('pgoutput decoder: TOAST', () => {
  it("(a) Update with 'O' old tuple: 'u' in the new tuple takes the old value", () => {
    const d = decoderWithUsers('f');
    const m = d.decode(
      encodeUpdate({
        relationOid: OID,
        before: { kind: 'O', values: ['1', 'alice', 'a very long bio'] },
        after: ['1', 'alicia', UNCHANGED_TOAST],
      }),
    );
    assert.equal(m.tag, 'update');
    if (m.tag !== 'update') return;
    assert.equal(m.beforeKind, 'old');
    assert.deepEqual(m.before, ['1', 'alice', 'a very long bio']);
    assert.deepEqual(m.after, ['1', 'alicia', 'a very long bio']);
  });

  it("(a) Update with 'K' old tuple: 'u' stays UNCHANGED_TOAST", () => {
    const d = decoderWithUsers();
    const m = d.decode(
      encodeUpdate({
        relationOid: OID,
        before: { kind: 'K', values: ['1', null, null] },
        after: ['2', 'bob', UNCHANGED_TOAST],
      }),
    );
    assert.ok(m.tag === 'update');
    assert.equal(m.after[2], UNCHANGED_TOAST);
  });

  it("(a) Update without old tuple: 'u' stays UNCHANGED_TOAST", () => {
    const d = decoderWithUsers();
    const m = d.decode(encodeUpdate({ relationOid: OID, after: ['1', 'bob', UNCHANGED_TOAST] }));
    assert.ok(m.tag === 'update');
    assert.deepEqual(m.after, ['1', 'bob', UNCHANGED_TOAST]);
    assert.equal(m.before, null);
  });

  it("(b) 'K' old tuple keeps the full row shape with nulls for non-key columns", () => {
    const d = decoderWithUsers();
    const m = d.decode(encodeDelete({ relationOid: OID, before: { kind: 'K', values: ['7', null, null] } }));
    assert.ok(m.tag === 'delete');
    assert.equal(m.before.length, users.columns.length);
    assert.deepEqual(m.before, ['7', null, null]);
  });
});

describe('pgoutput decoder: relation replacement (DDL)', () => {
  it('(c) a new Relation message replaces the cache with a new object; old events keep the old one', () => {
    const d = decoderWithUsers();
    const first = d.decode(encodeInsert({ relationOid: OID, after: ['1', 'a', 'b'] }));
    assert.ok(first.tag === 'insert');
    const oldRelation = first.relation;
    const oldSnapshot = structuredClone(oldRelation);

    const r2 = d.decode(
      encodeRelation({
        ...usersWire,
        columns: [...usersWire.columns, { name: 'email', typeOid: 25 }],
      }),
    );
    assert.ok(r2.tag === 'relation');
    assert.notEqual(r2.relation, oldRelation);
    assert.equal(r2.relation.columns.length, 4);
    assert.equal(d.relation(OID), r2.relation);
    // the old object is untouched
    assert.deepEqual(oldRelation, oldSnapshot);
    assert.equal(oldRelation.columns.length, 3);

    const second = d.decode(encodeInsert({ relationOid: OID, after: ['2', 'c', 'd', 'e@x'] }));
    assert.ok(second.tag === 'insert');
    assert.equal(second.relation, r2.relation);
    assert.deepEqual(second.after, ['2', 'c', 'd', 'e@x']);
  });

  it('a tuple whose column count does not match the relation is an error', () => {
    const d = decoderWithUsers();
    assert.throws(
      () => d.decode(encodeInsert({ relationOid: OID, after: ['1', 'a'] })),
      (e: Error) => e instanceof PgoutputError && /2 columns.*announced 3/.test(e.message),
    );
  });
});

describe('pgoutput decoder: text values', () => {
  it('unicode identifiers and values', () => {
    const d = new PgoutputDecoder();
    const rel = d.decode(
      encodeRelation({
        oid: 99,
        schema: 'schéma',
        table: '表_🚀',
        columns: [
          { name: 'ключ', typeOid: 25, isKey: true },
          { name: 'naïve', typeOid: 25 },
        ],
      }),
    );
    assert.ok(rel.tag === 'relation');
    assert.equal(rel.relation.schema, 'schéma');
    assert.equal(rel.relation.table, '表_🚀');
    assert.deepEqual(
      rel.relation.columns.map((c) => c.name),
      ['ключ', 'naïve'],
    );
    const ins = d.decode(encodeInsert({ relationOid: 99, after: ['😀 emoji', 'Zürich — 東京'] }));
    assert.ok(ins.tag === 'insert');
    assert.deepEqual(ins.after, ['😀 emoji', 'Zürich — 東京']);
  });

  it('empty string is not null', () => {
    const d = decoderWithUsers();
    const m = d.decode(encodeInsert({ relationOid: OID, after: ['', null, ''] }));
    assert.ok(m.tag === 'insert');
    assert.deepEqual(m.after, ['', null, '']);
    assert.equal(m.after[0], '');
    assert.equal(m.after[1], null);
  });

  it('relation with zero columns and an empty tuple', () => {
    const d = new PgoutputDecoder();
    d.decode(encodeRelation({ oid: 5, schema: 's', table: 't', replicaIdentity: 'n', columns: [] }));
    const m = d.decode(encodeInsert({ relationOid: 5, after: [] }));
    assert.ok(m.tag === 'insert');
    assert.deepEqual(m.after, []);
  });

  it('message content is a copy, independent of the input buffer', () => {
    const d = new PgoutputDecoder();
    const bytes = encodeMessage({ transactional: false, lsn: 1n, prefix: 'p', content: Buffer.from('abc') });
    const m = d.decode(bytes);
    bytes.fill(0);
    assert.ok(m.tag === 'message');
    assert.equal(m.content.toString(), 'abc');
  });
});

describe('pgoutput decoder: timestamps and LSNs', () => {
  it('commit timestamp exact to the microsecond (2024-02-29 12:34:56.123456 UTC)', () => {
    // Raw PostgreSQL-epoch value, independent of the fixture encoder's conversion.
    const pgMicros = 762525296123456n;
    const bytes = new Writer().byte('B').u64(1n).raw(int64(pgMicros)).u32(1).build();
    const m = new PgoutputDecoder().decode(bytes);
    assert.ok(m.tag === 'begin');
    assert.equal(m.commitTimeMicros, 1709210096123456n);
    assert.equal(m.commitTimeMicros, TS);
  });

  it('timestamps before 2000 (negative on the wire)', () => {
    const t = isoToMicros('1999-12-31T23:59:59.999999Z');
    const m = new PgoutputDecoder().decode(encodeBegin({ finalLsn: 1n, commitTimeMicros: t, xid: 1 }));
    assert.ok(m.tag === 'begin');
    assert.equal(m.commitTimeMicros, 946684799999999n);
  });

  it('LSNs above 2^32 and up to 2^64 - 1', () => {
    for (const lsn of [0n, 0xffff_ffffn, 0x1_0000_0000n, BIG_LSN, MAX_LSN, 0xffff_ffff_ffff_ffffn]) {
      const m = new PgoutputDecoder().decode(
        encodeCommit({ commitLsn: lsn, endLsn: lsn, commitTimeMicros: TS }),
      );
      assert.ok(m.tag === 'commit');
      assert.equal(m.commitLsn, lsn);
      assert.equal(m.endLsn, lsn);
    }
  });

  it('xid and OIDs are unsigned 32-bit', () => {
    const d = new PgoutputDecoder();
    const r = d.decode(encodeRelation({ ...usersWire, oid: 0xffff_fff0 }));
    assert.ok(r.tag === 'relation');
    assert.equal(r.relation.oid, 0xffff_fff0);
    const m = d.decode(encodeBegin({ finalLsn: 1n, commitTimeMicros: TS, xid: 0xffff_ffff }));
    assert.ok(m.tag === 'begin');
    assert.equal(m.xid, 0xffff_ffff);
  });
});

describe('pgoutput decoder: errors', () => {
  const isPgoutputError = (re: RegExp) => (e: Error) => e instanceof PgoutputError && re.test(e.message);

  it('unknown message byte names the byte', () => {
    assert.throws(
      () => new PgoutputDecoder().decode(Buffer.from('Zabc')),
      isPgoutputError(/unknown pgoutput message type 'Z' \(0x5a\)/),
    );
    assert.throws(() => new PgoutputDecoder().decode(Buffer.from([0x01])), isPgoutputError(/0x01/));
  });

  it('two-phase messages are refused by name', () => {
    assert.throws(
      () => new PgoutputDecoder().decode(Buffer.from('P')),
      isPgoutputError(/'P'.*Prepare.*two-phase/),
    );
  });

  it('empty message', () => {
    assert.throws(() => new PgoutputDecoder().decode(Buffer.alloc(0)), isPgoutputError(/empty/));
  });

  it('DML for an unknown relation', () => {
    const d = new PgoutputDecoder();
    assert.throws(
      () => d.decode(encodeInsert({ relationOid: 424242, after: ['1'] })),
      isPgoutputError(/Insert for unknown relation OID 424242/),
    );
    assert.throws(
      () => d.decode(encodeUpdate({ relationOid: 7, after: ['1'] })),
      isPgoutputError(/Update for unknown relation OID 7/),
    );
    assert.throws(
      () => d.decode(encodeDelete({ relationOid: 8, before: { kind: 'K', values: ['1'] } })),
      isPgoutputError(/Delete for unknown relation OID 8/),
    );
    assert.throws(
      () => d.decode(encodeTruncate({ relationOids: [9] })),
      isPgoutputError(/Truncate for unknown relation OID 9/),
    );
  });

  it("binary tuple data ('b') is refused", () => {
    const d = decoderWithUsers();
    assert.throws(
      () => d.decode(encodeInsert({ relationOid: OID, after: ['1', { binary: Buffer.from([1]) }, null] })),
      isPgoutputError(/binary tuple data not requested.*name.*public\.users/),
    );
  });

  it('unknown tuple kind and bad markers', () => {
    const d = decoderWithUsers();
    const bad = new Writer().byte('I').u32(OID).byte('N').i16(3).byte('x').build();
    assert.throws(() => d.decode(bad), isPgoutputError(/unknown tuple data kind 'x'/));
    const badMarker = new Writer().byte('I').u32(OID).byte('Q').build();
    assert.throws(() => d.decode(badMarker), isPgoutputError(/expected tuple marker 'N', got 'Q'/));
    const badDelete = new Writer().byte('D').u32(OID).byte('N').tuple(['1', null, null]).build();
    assert.throws(() => d.decode(badDelete), isPgoutputError(/expected tuple marker 'K' or 'O'/));
  });

  it('unknown replica identity', () => {
    assert.throws(
      () => new PgoutputDecoder().decode(encodeRelation({ ...usersWire, replicaIdentity: 'z' })),
      isPgoutputError(/unknown replica identity 'z'/),
    );
  });

  it('truncated messages (every prefix of a valid message)', () => {
    const full = encodeInsert({ relationOid: OID, after: ['1', 'alice', 'bio'] });
    for (let n = 1; n < full.length; n++) {
      const d = decoderWithUsers();
      assert.throws(() => d.decode(full.subarray(0, n)), isPgoutputError(/truncated|unterminated/), `n=${n}`);
    }
    const rel = encodeRelation(usersWire);
    for (let n = 1; n < rel.length; n++) {
      assert.throws(
        () => new PgoutputDecoder().decode(rel.subarray(0, n)),
        isPgoutputError(/truncated|unterminated/),
        `n=${n}`,
      );
    }
  });

  it('trailing bytes are an error', () => {
    const bytes = Buffer.concat([
      encodeCommit({ commitLsn: 1n, endLsn: 2n, commitTimeMicros: TS }),
      Buffer.of(0),
    ]);
    assert.throws(() => new PgoutputDecoder().decode(bytes), isPgoutputError(/1 unexpected trailing bytes/));
  });

  it('streaming messages need protoVersion >= 2', () => {
    assert.throws(
      () => new PgoutputDecoder().decode(encodeStreamStart({ xid: 1, firstSegment: true })),
      isPgoutputError(/Stream Start.*protoVersion >= 2/),
    );
    assert.throws(() => new PgoutputDecoder({ protoVersion: 5 }), RangeError);
  });

  it('the decoder keeps working after an error', () => {
    const d = decoderWithUsers();
    assert.throws(() => d.decode(Buffer.from('Z')));
    const m = d.decode(encodeInsert({ relationOid: OID, after: ['1', null, null] }));
    assert.ok(m.tag === 'insert');
  });
});

describe('pgoutput decoder: a rejected message changes no state', () => {
  const isPgoutputError = (re: RegExp) => (e: Error) => e instanceof PgoutputError && re.test(e.message);
  const widened = { ...usersWire, columns: [...usersWire.columns, { name: 'extra', typeOid: 25 }] };

  it('a Relation with trailing bytes does not replace the cached relation', () => {
    const d = decoderWithUsers();
    const bad = Buffer.concat([encodeRelation(widened), Buffer.of(0)]);
    assert.throws(() => d.decode(bad), isPgoutputError(/Relation message: 1 unexpected trailing bytes/));
    assert.equal(d.relation(OID)?.columns.length, 3, 'the cache keeps the last valid shape');
    const m = d.decode(encodeInsert({ relationOid: OID, after: ['1', 'a', 'b'] }));
    assert.ok(m.tag === 'insert');
    assert.deepEqual(m.after, ['1', 'a', 'b']);
  });

  it('a Relation with trailing bytes for a new oid is not cached', () => {
    const d = new PgoutputDecoder();
    assert.throws(() => d.decode(Buffer.concat([encodeRelation(usersWire), Buffer.of(1, 2)])));
    assert.equal(d.relation(OID), undefined);
  });

  it('a Stream Start or Stream Stop with trailing bytes does not open or close the stream block', () => {
    const d = new PgoutputDecoder({ protoVersion: 2 });
    assert.throws(
      () => d.decode(Buffer.concat([encodeStreamStart({ xid: 5, firstSegment: true }), Buffer.of(0)])),
      isPgoutputError(/Stream Start message: 1 unexpected trailing bytes/),
    );
    assert.equal(d.inStream, false);
    // Outside a stream block a Relation carries no xid: it still decodes as one.
    d.decode(encodeRelation(usersWire));
    d.decode(encodeStreamStart({ xid: 5, firstSegment: true }));
    assert.throws(
      () => d.decode(Buffer.concat([encodeStreamStop(), Buffer.of(0)])),
      isPgoutputError(/Stream Stop message: 1 unexpected trailing bytes/),
    );
    assert.equal(d.inStream, true);
    const m = d.decode(encodeInsert({ xid: 5, relationOid: OID, after: ['1', null, null] }));
    assert.ok(m.tag === 'insert');
    assert.equal(m.xid, 5);
  });
});

describe('pgoutput decoder: negative counts are refused', () => {
  const negative = (re: RegExp) => (e: Error) =>
    e instanceof PgoutputError && /negative/.test(e.message) && re.test(e.message);

  it('Relation column count', () => {
    const bad = new Writer().byte('R').u32(OID).cstring('public').cstring('t').byte('d').i16(-1).build();
    const d = new PgoutputDecoder();
    assert.throws(() => d.decode(bad), negative(/Relation message: negative column count \(-1\)/));
    assert.equal(d.relation(OID), undefined);
  });

  it('Truncate relation count', () => {
    const bad = new Writer().byte('T').i32(-1).u8(0).build();
    assert.throws(
      () => decoderWithUsers().decode(bad),
      negative(/Truncate message: negative relation count \(-1\)/),
    );
  });

  it('Message content length', () => {
    const bad = new Writer().byte('M').u8(1).u64(1n).cstring('p').i32(-5).build();
    assert.throws(
      () => new PgoutputDecoder().decode(bad),
      negative(/Message message: negative content length \(-5\)/),
    );
  });

  it('TupleData column count and value length', () => {
    const d = decoderWithUsers();
    const badCount = new Writer().byte('I').u32(OID).byte('N').i16(-3).build();
    assert.throws(() => d.decode(badCount), negative(/Insert message: negative tuple column count/));
    const badLen = new Writer().byte('I').u32(OID).byte('N').i16(3).byte('t').i32(-1).build();
    assert.throws(
      () => d.decode(badLen),
      negative(/negative value length \(-1\) in column id of public\.users/),
    );
  });

  it('the error carries the message type and the bare reason', () => {
    const bad = new Writer().byte('T').i32(-2).u8(0).build();
    assert.throws(
      () => new PgoutputDecoder().decode(bad),
      (e: Error) =>
        e instanceof PgoutputError && e.messageType === 'T' && e.reason === 'negative relation count (-2)',
    );
  });
});

describe('pgoutput decoder: protocol 2 streaming framing', () => {
  it('stream block: xid-prefixed messages, then stream commit', () => {
    const d = new PgoutputDecoder({ protoVersion: 2 });
    assert.deepEqual(d.decode(encodeStreamStart({ xid: 900, firstSegment: true })), {
      tag: 'streamStart',
      xid: 900,
      firstSegment: true,
    });
    const rel = d.decode(encodeRelation({ ...usersWire, xid: 900 }));
    assert.deepEqual(rel, { tag: 'relation', relation: users, xid: 900 });
    assert.deepEqual(d.decode(encodeType({ xid: 900, oid: 1, schema: 's', name: 'n' })), {
      tag: 'type',
      oid: 1,
      schema: 's',
      name: 'n',
      xid: 900,
    });
    assert.deepEqual(d.decode(encodeInsert({ xid: 901, relationOid: OID, after: ['1', 'a', null] })), {
      tag: 'insert',
      relationOid: OID,
      relation: users,
      after: ['1', 'a', null],
      xid: 901,
    });
    const upd = d.decode(encodeUpdate({ xid: 900, relationOid: OID, after: ['1', 'b', null] }));
    assert.ok(upd.tag === 'update' && upd.xid === 900);
    const del = d.decode(
      encodeDelete({ xid: 900, relationOid: OID, before: { kind: 'K', values: ['1', null, null] } }),
    );
    assert.ok(del.tag === 'delete' && del.xid === 900);
    const tr = d.decode(encodeTruncate({ xid: 900, relationOids: [OID] }));
    assert.ok(tr.tag === 'truncate' && tr.xid === 900);
    const msg = d.decode(
      encodeMessage({ xid: 900, transactional: true, lsn: 5n, prefix: 'x', content: Buffer.alloc(0) }),
    );
    assert.ok(msg.tag === 'message' && msg.xid === 900);
    assert.deepEqual(d.decode(encodeStreamStop()), { tag: 'streamStop' });
    assert.equal(d.inStream, false);
    assert.deepEqual(
      d.decode(encodeStreamCommit({ xid: 900, commitLsn: BIG_LSN, endLsn: MAX_LSN, commitTimeMicros: TS })),
      { tag: 'streamCommit', xid: 900, flags: 0, commitLsn: BIG_LSN, endLsn: MAX_LSN, commitTimeMicros: TS },
    );
    // outside a stream block, messages have no xid prefix
    const ins = d.decode(encodeInsert({ relationOid: OID, after: ['2', null, null] }));
    assert.ok(ins.tag === 'insert');
    assert.equal('xid' in ins, false);
  });

  it('stream abort, with and without the protocol 4 parallel fields', () => {
    const d = new PgoutputDecoder({ protoVersion: 4 });
    assert.deepEqual(d.decode(encodeStreamAbort({ xid: 1, subXid: 2 })), {
      tag: 'streamAbort',
      xid: 1,
      subXid: 2,
      abortLsn: null,
      abortTimeMicros: null,
    });
    assert.deepEqual(
      d.decode(encodeStreamAbort({ xid: 1, subXid: 2, abortLsn: BIG_LSN, abortTimeMicros: TS })),
      {
        tag: 'streamAbort',
        xid: 1,
        subXid: 2,
        abortLsn: BIG_LSN,
        abortTimeMicros: TS,
      },
    );
  });
});

function int64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(v);
  return b;
}
