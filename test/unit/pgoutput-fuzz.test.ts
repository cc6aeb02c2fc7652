// Mutation fuzzing of the pgoutput decoder, bounded and deterministic (fixed seed): valid messages
// of every type, then bit flips, byte overwrites, truncations, insertions and extreme count
// fields. Whatever the bytes, decode() either returns a message or throws PgoutputError, and a
// rejected message leaves the decoder's state (relation cache, stream block) exactly as it was.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PgoutputDecoder, PgoutputError } from '../../src/postgres/replication/pgoutput.ts';
import {
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
} from '../support/pgoutput-fixtures.ts';

const SEED = 0x5eed_c0de;
const ROUNDS = 20_000;
const OID = 16385;
const TS = 1_700_000_000_000_000n;

/** mulberry32: a small PRNG, so a failure names a seed and round that reproduce it. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const relation = {
  oid: OID,
  schema: 'public',
  table: 'users',
  replicaIdentity: 'f',
  columns: [
    { name: 'id', typeOid: 23, isKey: true },
    { name: 'name', typeOid: 1043, typeMod: 68 },
    { name: 'bio', typeOid: 25 },
  ],
};

function corpus(inStream: boolean): Buffer[] {
  const xid = inStream ? 77 : undefined;
  return [
    encodeBegin({ finalLsn: 0x16b3748n, commitTimeMicros: TS, xid: 5 }),
    encodeCommit({ commitLsn: 0x16b3748n, endLsn: 0x16b3790n, commitTimeMicros: TS }),
    encodeOrigin({ lsn: 1n, name: 'origin' }),
    encodeRelation({ ...relation, xid }),
    encodeType({ xid, oid: 600, schema: 'public', name: 'mood' }),
    encodeInsert({ xid, relationOid: OID, after: ['1', 'alice', null] }),
    encodeUpdate({
      xid,
      relationOid: OID,
      before: { kind: 'O', values: ['1', 'a', 'b'] },
      after: ['1', 'b', null],
    }),
    encodeDelete({ xid, relationOid: OID, before: { kind: 'K', values: ['1', null, null] } }),
    encodeTruncate({ xid, relationOids: [OID], cascade: true }),
    encodeMessage({ xid, transactional: true, lsn: 9n, prefix: 'p', content: Buffer.from('hello') }),
    encodeStreamStart({ xid: 77, firstSegment: true }),
    encodeStreamStop(),
    encodeStreamCommit({ xid: 77, commitLsn: 3n, endLsn: 4n, commitTimeMicros: TS }),
    encodeStreamAbort({ xid: 77, subXid: 78 }),
  ];
}

const EXTREMES = [0x00, 0xff, 0x7f, 0x80];

function mutate(src: Buffer, rnd: () => number): Buffer {
  const buf = Buffer.from(src);
  const pick = (n: number): number => Math.floor(rnd() * n);
  const edits = 1 + pick(3);
  let out = buf;
  for (let e = 0; e < edits; e++) {
    const kind = pick(6);
    if (out.length === 0) break;
    const at = pick(out.length);
    if (kind === 0) out[at]! ^= 1 << pick(8);
    else if (kind === 1) out[at] = pick(256);
    else if (kind === 2) out = out.subarray(0, at);
    else if (kind === 3) out = Buffer.concat([out.subarray(0, at), Buffer.of(pick(256)), out.subarray(at)]);
    else if (kind === 4) {
      // A count or length field turned extreme (negative, huge): four bytes at once.
      for (let i = 0; i < 4 && at + i < out.length; i++) out[at + i] = EXTREMES[pick(EXTREMES.length)]!;
    } else out = Buffer.concat([out, Buffer.of(pick(256))]);
  }
  return out;
}

function state(d: PgoutputDecoder): string {
  const rels = [...d.relations.entries()].map(([oid, r]) => [oid, r]);
  return JSON.stringify({ inStream: d.inStream, rels });
}

describe('pgoutput decoder: fuzzing', () => {
  for (const protoVersion of [1, 2]) {
    it(`${ROUNDS} mutated messages (protoVersion ${protoVersion}): only PgoutputError, and no state change on error`, () => {
      const rnd = prng(SEED + protoVersion);
      const d = new PgoutputDecoder({ protoVersion });
      d.decode(encodeRelation(relation));
      const plain = corpus(false);
      const streamed = corpus(true);
      let rejected = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const pool = d.inStream ? streamed : plain;
        const input = mutate(pool[Math.floor(rnd() * pool.length)]!, rnd);
        const before = state(d);
        try {
          d.decode(input);
        } catch (err) {
          rejected++;
          assert.ok(
            err instanceof PgoutputError,
            `round ${round} (seed ${SEED + protoVersion}): ${String(err)} for ${input.toString('hex')}`,
          );
          assert.equal(state(d), before, `round ${round}: a rejected message changed the decoder's state`);
        }
        // Keep the fuzzed decoder usable: the relation it needs is put back when a mutation replaced it.
        if (d.relation(OID)?.columns.length !== 3)
          d.decode(encodeRelation({ ...relation, xid: d.inStream ? 77 : undefined }));
      }
      assert.ok(rejected > ROUNDS / 10, `mutations were rejected (${rejected})`);
    });
  }
});
