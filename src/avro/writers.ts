// The avsc types pgcdc encodes with: avsc's own, with three writers of their own where avsc's
// general ones cost the most per row (longs as bigint, unions of null and one type, the envelope's
// source block). Reading, schema JSON and everything else stay avsc's; test/unit/avro-writers.test.ts
// and test/unit/frame-writer.test.ts compare each writer's bytes with avsc's.
import avsc from 'avsc';
import type { AvroSchema } from './types.ts';
import { LONG_MAX, LONG_MIN } from './values.ts';

// ---- bigint longs ----------------------------------------------------------------------------

const scratch = Buffer.alloc(8);

/**
 * avsc's `long` with JS bigint values: exact over the whole 64-bit range (avsc's default long is
 * a JS number and loses precision above 2^53). Every `long` in pgcdc's schemas, including those
 * with logical types (timestamps, times), is encoded and decoded through this type. The schema
 * JSON is still plain `"long"`.
 */
const generalLongType: avsc.types.LongType = avsc.types.LongType.__with({
  fromBuffer: (buf: Buffer): bigint => buf.readBigInt64LE(0),
  toBuffer: (n: bigint): Buffer => {
    // avsc copies the bytes into its output at once, so one scratch buffer serves every write.
    scratch.writeBigInt64LE(n, 0);
    return scratch;
  },
  fromJSON: (v: unknown): bigint => BigInt(v as bigint | number | string),
  // JSON has no 64-bit integers; only avsc's JSON helpers (defaults, toString) use this.
  toJSON: (n: bigint): number => Number(n),
  isValid: (n: unknown): boolean => typeof n === 'bigint' && n >= LONG_MIN && n <= LONG_MAX,
  compare: (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0),
});

/**
 * The common case written directly: a long within ±2^52 is exact as a JS number, and so is avsc's
 * zigzag of it (2|n| − 1 stays below 2^53), which its number writer does in place. avsc's bigint path (isValid, toBuffer into 8 bytes,
 * packLongBytes) cost about 0.3 µs per long, and an envelope has eight of them. (avsc freezes its
 * types: the fast writer is an object of its own that inherits everything else.)
 */
const SAFE_MAX = 2n ** 52n;
const SAFE_MIN = -SAFE_MAX;
interface LongTap {
  writeLong(n: number): void;
}
const generalWrite = (generalLongType as unknown as { _write(tap: LongTap, val: unknown): void })._write.bind(
  generalLongType,
);
export const bigintLongType: avsc.types.LongType = Object.freeze(
  Object.create(generalLongType, {
    _write: {
      value: (tap: LongTap, val: unknown): void => {
        if (typeof val === 'bigint' && val <= SAFE_MAX && val >= SAFE_MIN) tap.writeLong(Number(val));
        else generalWrite(tap, val);
      },
    },
  }) as avsc.types.LongType,
);

function isLongSchema(s: unknown): boolean {
  if (s === 'long') return true;
  return (
    typeof s === 'object' && s !== null && !Array.isArray(s) && (s as { type?: unknown }).type === 'long'
  );
}

// ---- nullable unions ---------------------------------------------------------------------------

interface WriteTap extends LongTap {
  pos: number;
}
interface AvscInternals {
  types: AvscInternals[];
  _write(tap: WriteTap, val: unknown): void;
  _check(val: unknown): boolean;
}

/** A two-branch union with a null branch (`["null", T]` or `[T, "null"]`), as schema JSON. */
function nullableBranch(s: unknown): number {
  if (!Array.isArray(s) || s.length !== 2) return -1;
  if (s[0] === 'null' && s[1] !== 'null') return 1;
  if (s[1] === 'null' && s[0] !== 'null') return 0;
  return -1;
}

/**
 * avsc's union writer looks a value's branch up by its JS type, and a union holding a type it
 * cannot bucket (the bigint long, so every optional long) checks the value against each branch.
 * Every optional field of pgcdc's schemas is a union of null and one type, so its branch is
 * decided by `val === null` alone; the branch type's own writer still rejects a wrong value. The
 * schema, reading and every other behaviour are avsc's union's (the fast writer inherits them).
 */
function nullableUnion(schema: unknown, opts: avsc.ForSchemaOptions): avsc.Type | undefined {
  const branch = nullableBranch(schema);
  if (branch < 0) return undefined;
  const union = new avsc.types.UnwrappedUnionType(schema as avsc.Schema, opts) as unknown as avsc.Type;
  const type = (union as unknown as AvscInternals).types[branch]!;
  const nullIndex = 1 - branch;
  const generalUnionWrite = (union as unknown as AvscInternals)._write.bind(union);
  // A function of its own per union (as avsc compiles its record writers), so that V8 keeps each
  // one's call of its branch writer monomorphic; one shared closure would see every branch type.
  const write = new Function(
    'type',
    'general',
    `return function writeNullable(tap, val) {
      if (val === null) tap.writeLong(${nullIndex});
      else if (val === undefined) general(tap, val);
      else { tap.writeLong(${branch}); type._write(tap, val); }
    };`,
  )(type, generalUnionWrite) as (tap: WriteTap, val: unknown) => void;
  return Object.freeze(Object.create(union, { _write: { value: write } })) as avsc.Type;
}

// ---- the source block ----------------------------------------------------------------------

interface BytesTap extends WriteTap {
  buf: Buffer;
  writeFixed(buf: Buffer, len: number): void;
}

let buildingSource = false;

/**
 * The Source record, writing the bytes of its last value again when handed the same object:
 * envelopeValue() hands every row of a snapshot chunk (and every event of a run with the same
 * positions) one source object, whose 16 fields then cost one copy instead of about 0.7 µs.
 * Objects handed to it must not change afterwards (envelopeValue's never do).
 */
function memoizedSource(schema: unknown, opts: avsc.ForSchemaOptions): avsc.Type | undefined {
  const s = schema as { type?: unknown; name?: unknown; namespace?: unknown };
  if (buildingSource || typeof s !== 'object' || s === null || s.type !== 'record' || s.name !== 'Source')
    return undefined;
  if (s.namespace !== 'io.debezium.connector.postgresql') return undefined;
  let record: AvscInternals;
  buildingSource = true;
  try {
    record = avsc.Type.forSchema(schema as avsc.Schema, opts) as unknown as AvscInternals;
  } finally {
    buildingSource = false;
  }
  let last: unknown = undefined;
  let bytes = Buffer.allocUnsafe(256);
  let length = 0;
  const write = (tap: BytesTap, val: unknown): void => {
    if (val === last) {
      tap.writeFixed(bytes, length);
      return;
    }
    const start = tap.pos;
    record._write(tap, val);
    // Past the end of the buffer the bytes are incomplete (the caller retries with a larger one).
    if (tap.pos > tap.buf.length) return;
    length = tap.pos - start;
    if (length > bytes.length) bytes = Buffer.allocUnsafe(length * 2);
    tap.buf.copy(bytes, 0, start, tap.pos);
    last = val;
  };
  return Object.freeze(Object.create(record, { _write: { value: write } })) as avsc.Type;
}

/**
 * avsc Type for schema JSON built here: longs are bigint ({@link bigintLongType}), nullable unions
 * and the source block written by the faster writers above. Reading is avsc's own throughout.
 */
export function avroTypeForSchema(schema: AvroSchema): avsc.Type {
  return avsc.Type.forSchema(schema as avsc.Schema, {
    typeHook: (s, opts) =>
      isLongSchema(s) ? bigintLongType : (nullableUnion(s, opts) ?? memoizedSource(s, opts)),
  });
}
