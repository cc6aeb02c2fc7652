// Debezium-compatible Avro schemas (Key, Value, Envelope) for a relation, compiled once per
// relation shape, and the per-row conversion into objects avsc encodes.
import { createRequire } from 'node:module';
import avsc from 'avsc';
import type { ChangeEvent, Column, ColumnValue, Relation } from '../change/event.ts';
import { UNCHANGED_TOAST } from '../change/event.ts';
import { DataError } from './errors.ts';
import { assignFieldNames, avroNamespace } from './names.ts';
import {
  planColumn,
  resolveAvroOptions,
  withBuiltins,
  type AvroOptions,
  type AvroSchema,
  type AvroSchemaObject,
  type Converter,
  type ResolvedAvroOptions,
  type ToastRepresentation,
  type TypeLookup,
} from './types.ts';
import { avroTypeForSchema } from './writers.ts';

export { avroTypeForSchema, bigintLongType } from './writers.ts';

// ---- schemas ---------------------------------------------------------------------------------

export const CONNECTOR = 'postgresql';
export const SOURCE_RECORD_NAME = 'io.debezium.connector.postgresql.Source';

/** pgcdc's version, for source.version. */
export const PGCDC_VERSION: string = (() => {
  try {
    // src/avro/envelope.ts and dist/avro/envelope.js are both two levels below package.json.
    const pkg = createRequire(import.meta.url)('../../package.json') as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

export interface SchemaOptions {
  /** Topic prefix (Debezium's topic.prefix); the first namespace component(s). */
  topicPrefix: string;
  /** Catalog lookup for OIDs beyond the built-in table (enums, domains, extension types). */
  typeLookup?: TypeLookup;
  options?: AvroOptions;
}

export interface RowField {
  column: Column;
  /** Index in the relation's columns (and in a Row). */
  index: number;
  /** Avro field name (sanitised; see names.ts). */
  name: string;
  /** The field's Avro type, not nullable. */
  schema: AvroSchema;
  convert: Converter;
  toast: ToastRepresentation;
}

export interface BuiltSchemas {
  /** `<prefix>.<schema>.<table>`, each component sanitised. */
  namespace: string;
  /** `<ns>.Key` with the key columns, or null when the relation has no key columns. */
  key: AvroSchemaObject | null;
  /** `<ns>.Envelope`, the record value schema. */
  value: AvroSchemaObject;
  /** Every column, relation order. */
  rowFields: RowField[];
  /** The key columns, relation order. */
  keyFields: RowField[];
}

const optional = (type: AvroSchema): AvroSchema => ['null', type];

/** Debezium 3.x's source.snapshot values, in its SnapshotRecord order (incremental: rows of an on-demand re-read). */
export const SNAPSHOT_VALUES =
  'true,first,first_in_data_collection,last_in_data_collection,last,false,incremental';

const optionalLong = (name: string): Record<string, unknown> => ({
  name,
  type: optional('long'),
  default: null,
});

/** The source block as Kafka Connect's AvroData writes Debezium 3.x's PostgreSQL source schema. */
export function sourceSchema(): AvroSchemaObject {
  return {
    type: 'record',
    name: 'Source',
    namespace: 'io.debezium.connector.postgresql',
    fields: [
      { name: 'version', type: 'string' },
      { name: 'connector', type: 'string' },
      { name: 'name', type: 'string' },
      { name: 'ts_ms', type: 'long' },
      {
        name: 'snapshot',
        type: [
          {
            type: 'string',
            'connect.version': 1,
            'connect.parameters': { allowed: SNAPSHOT_VALUES },
            'connect.default': 'false',
            'connect.name': 'io.debezium.data.Enum',
          },
          'null',
        ],
        default: 'false',
      },
      { name: 'db', type: 'string' },
      { name: 'sequence', type: optional('string'), default: null },
      optionalLong('ts_us'),
      optionalLong('ts_ns'),
      { name: 'schema', type: 'string' },
      { name: 'table', type: 'string' },
      optionalLong('txId'),
      optionalLong('lsn'),
      optionalLong('xmin'),
    ],
    'connect.version': 1,
    'connect.name': SOURCE_RECORD_NAME,
  };
}

function transactionSchema(): AvroSchemaObject {
  return {
    type: 'record',
    name: 'block',
    namespace: 'event',
    fields: [
      { name: 'id', type: 'string' },
      { name: 'total_order', type: 'long' },
      { name: 'data_collection_order', type: 'long' },
    ],
    'connect.version': 1,
    'connect.name': 'event.block',
  };
}

/**
 * A column default as Avro default JSON, or undefined when there is none or it cannot be written
 * exactly (non-finite floats, longs beyond 2^53, arrays).
 */
function defaultJson(f: RowField): unknown {
  const text = f.column.defaultText;
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = f.convert(text);
  } catch {
    return undefined; // a default the column's type cannot carry (numeric NaN in a decimal, ...)
  }
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : undefined;
  // Avro's JSON for bytes: one character per byte (ISO-8859-1).
  if (Buffer.isBuffer(value)) return value.toString('latin1');
  return undefined;
}

/** `schema` with AvroData's `connect.default` property (placed before connect.name, as AvroData does). */
function withConnectDefault(schema: AvroSchema, value: unknown): AvroSchema {
  if (typeof schema === 'string') return { type: schema, 'connect.default': value };
  if (Array.isArray(schema)) return schema;
  const out: AvroSchemaObject = { type: schema.type };
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'connect.name' || k === 'connect.type') out['connect.default'] = value;
    if (k !== 'type') out[k] = v;
  }
  if (!('connect.default' in out)) out['connect.default'] = value;
  return out;
}

/**
 * Key, Value and Envelope schemas for a relation, Debezium's shape. Same relation and options →
 * identical JSON (registration is idempotent).
 */
export function buildSchemas(relation: Relation, opts: SchemaOptions): BuiltSchemas {
  const lookup = withBuiltins(opts.typeLookup);
  const options = resolveAvroOptions(opts.options);
  const namespace = avroNamespace(opts.topicPrefix, relation.schema, relation.table);
  const table = `${relation.schema}.${relation.table}`;
  const names = assignFieldNames(relation.columns.map((c) => c.name));
  const rowFields: RowField[] = relation.columns.map((column, index) => {
    const plan = planColumn(column, lookup(column.typeOid), options, { table });
    return { column, index, name: names[index] as string, ...plan };
  });
  const keyFields = rowFields.filter((f) => f.column.isKey);

  // A column with a constant default gets it as the field default; an optional one then puts its
  // type before null (Avro takes a union's default from its first branch), as Connect's AvroData
  // writes an optional field with a default. Debezium mode also sets AvroData's connect.default,
  // which is where AvroData reads an optional field's default back from.
  const fieldJson = (f: RowField, nullable: boolean): Record<string, unknown> => {
    const dflt = defaultJson(f);
    let json: Record<string, unknown>;
    if (dflt === undefined) {
      json = { name: f.name, type: nullable ? optional(f.schema) : f.schema };
      if (nullable) json.default = null;
    } else {
      const type = options.typeMode === 'debezium' ? withConnectDefault(f.schema, dflt) : f.schema;
      json = { name: f.name, type: nullable ? [type, 'null'] : type, default: dflt };
    }
    if (f.name !== f.column.name) json['pg.name'] = f.column.name;
    return json;
  };

  const key: AvroSchemaObject | null =
    keyFields.length === 0
      ? null
      : {
          type: 'record',
          name: 'Key',
          namespace,
          fields: keyFields.map((f) => fieldJson(f, false)),
          'connect.name': `${namespace}.Key`,
        };
  const row: AvroSchemaObject = {
    type: 'record',
    name: 'Value',
    namespace,
    fields: rowFields.map((f) => fieldJson(f, true)),
    'connect.name': `${namespace}.Value`,
  };
  const value: AvroSchemaObject = {
    type: 'record',
    name: 'Envelope',
    namespace,
    fields: [
      { name: 'before', type: optional(row), default: null },
      { name: 'after', type: optional(`${namespace}.Value`), default: null },
      { name: 'source', type: sourceSchema() },
      { name: 'op', type: 'string' },
      optionalLong('ts_ms'),
      optionalLong('ts_us'),
      optionalLong('ts_ns'),
      { name: 'transaction', type: optional(transactionSchema()), default: null },
    ],
    // Debezium's Envelope schema version 2 (the one with ts_us / ts_ns).
    'connect.version': 2,
    'connect.name': `${namespace}.Envelope`,
  };
  return { namespace, key, value, rowFields, keyFields };
}

// ---- compiled relation and values ------------------------------------------------------------

export interface CompileOptions extends SchemaOptions {
  /** Database name, for source.db. */
  database: string;
  /** source.name (Debezium's logical server name); defaults to topicPrefix. */
  serverName?: string;
  /**
   * Called when an unchanged-TOAST value had to become null because the field's type cannot hold
   * the placeholder (numbers, dates, decimals...). Also counted in `CompiledRelation.toastNulls`.
   */
  onToastNull?: (relation: Relation, column: Column) => void;
}

export interface CompiledRelation {
  relation: Relation;
  schemas: BuiltSchemas;
  /** avsc type of the key schema; null for key-less relations. */
  keyType: avsc.Type | null;
  /** avsc type of the envelope schema. */
  valueType: avsc.Type;
  options: ResolvedAvroOptions;
  database: string;
  serverName: string;
  /** Unchanged-TOAST values emitted as null (see onToastNull). */
  toastNulls: number;
  onToastNull: ((relation: Relation, column: Column) => void) | undefined;
  /** @internal per-field TOAST replacement values; undefined = not representable. */
  toastValues: unknown[];
  /** @internal the last event's source block, for the events after it (sourceValue). */
  lastSource?: SourceCache;
}

function toastValueFor(kind: ToastRepresentation, placeholder: string): unknown {
  switch (kind) {
    case 'string':
      return placeholder;
    case 'bytes':
      return Buffer.from(placeholder, 'utf8');
    case 'string-array':
      return [placeholder];
    case 'bytes-array':
      return [Buffer.from(placeholder, 'utf8')];
    default:
      return undefined;
  }
}

/** Schemas, avsc types and converters for a relation; do this once per relation shape. */
export function compileRelation(relation: Relation, opts: CompileOptions): CompiledRelation {
  const schemas = buildSchemas(relation, opts);
  const options = resolveAvroOptions(opts.options);
  return {
    relation,
    schemas,
    keyType: schemas.key ? avroTypeForSchema(schemas.key) : null,
    valueType: avroTypeForSchema(schemas.value),
    options,
    database: opts.database,
    serverName: opts.serverName ?? opts.topicPrefix,
    toastNulls: 0,
    onToastNull: opts.onToastNull,
    toastValues: schemas.rowFields.map((f) => toastValueFor(f.toast, options.toastPlaceholder)),
  };
}

function checkShape(relation: Relation, compiled: CompiledRelation): void {
  if (relation !== compiled.relation && relation.columns.length !== compiled.relation.columns.length) {
    throw new Error(
      `${relation.schema}.${relation.table}: relation has ${relation.columns.length} columns but was compiled ` +
        `with ${compiled.relation.columns.length}; recompile after a schema change`,
    );
  }
}

function toastNull(compiled: CompiledRelation, column: Column): null {
  compiled.toastNulls++;
  compiled.onToastNull?.(compiled.relation, column);
  return null;
}

/** The Value record for a row (relation column order), ready for avsc. */
export function toAvroRow(
  relation: Relation,
  row: readonly ColumnValue[],
  compiled: CompiledRelation,
): Record<string, unknown> {
  checkShape(relation, compiled);
  const fields = compiled.schemas.rowFields;
  const out: Record<string, unknown> = {};
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i] as RowField;
    const v = row[i];
    if (typeof v === 'string') {
      out[f.name] = f.convert(v);
    } else if (v === UNCHANGED_TOAST) {
      const t = compiled.toastValues[i];
      out[f.name] = t === undefined ? toastNull(compiled, f.column) : t;
    } else {
      out[f.name] = null;
    }
  }
  return out;
}

/**
 * The Key record for a row (full row in relation column order; only key columns are read), or
 * null for a key-less relation. A null or unchanged-TOAST key value is a DataError: a wrong key
 * would silently break partitioning and compaction.
 */
export function toAvroKey(
  relation: Relation,
  row: readonly ColumnValue[],
  compiled: CompiledRelation,
): Record<string, unknown> | null {
  checkShape(relation, compiled);
  const fields = compiled.schemas.keyFields;
  if (fields.length === 0) return null;
  const table = `${compiled.relation.schema}.${compiled.relation.table}`;
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const v = row[f.index];
    if (typeof v === 'string') {
      out[f.name] = f.convert(v);
    } else if (v === UNCHANGED_TOAST) {
      throw new DataError(
        'key column value is an unchanged TOASTed value the server did not send; ' +
          'set REPLICA IDENTITY FULL on the table so the old row carries it',
        table,
        f.column.name,
      );
    } else {
      throw new DataError('key column value is null', table, f.column.name);
    }
  }
  return out;
}

export interface EnvelopeOptions {
  /** Envelope ts_ms / ts_us / ts_ns (processing time); defaults to Date.now(). */
  nowMs?: number;
  /** Debezium transaction block; null unless given. */
  transaction?: { id: string; totalOrder: bigint; dataCollectionOrder: bigint } | null;
}

/** The full envelope object for a change event, ready for `compiled.valueType.toBuffer`. */
export function envelopeValue(
  event: ChangeEvent,
  compiled: CompiledRelation,
  opts: EnvelopeOptions = {},
): Record<string, unknown> {
  const relation = event.relation;
  const tx = opts.transaction;
  const now = processingTime(opts.nowMs ?? Date.now());
  return {
    before: event.before ? toAvroRow(relation, event.before, compiled) : null,
    after: event.after ? toAvroRow(relation, event.after, compiled) : null,
    source: sourceValue(event, compiled),
    op: event.op,
    ts_ms: now.ms,
    ts_us: now.us,
    ts_ns: now.ns,
    transaction: tx
      ? { id: tx.id, total_order: tx.totalOrder, data_collection_order: tx.dataCollectionOrder }
      : null,
  };
}

interface SourceCache {
  relation: Relation;
  snapshot: ChangeEvent['snapshot'];
  commitLsn: bigint;
  lsn: bigint;
  commitTimeMicros: bigint;
  xid: number | null;
  xmin: bigint | undefined;
  value: Record<string, unknown>;
}

/**
 * The envelope's source block. An event with the same positions, time and marker as the last one
 * of its relation (the rows of a snapshot chunk) gets the same object, which the Source writer
 * (memoizedSource) then copies as bytes; the object is never changed once made.
 */
function sourceValue(event: ChangeEvent, compiled: CompiledRelation): Record<string, unknown> {
  const c = compiled.lastSource;
  if (
    c &&
    c.relation === event.relation &&
    c.lsn === event.lsn &&
    c.commitLsn === event.commitLsn &&
    c.snapshot === event.snapshot &&
    c.commitTimeMicros === event.commitTimeMicros &&
    c.xid === event.xid &&
    c.xmin === event.xmin
  )
    return c.value;
  const relation = event.relation;
  const commit = commitTime(event.commitTimeMicros);
  const value = Object.freeze({
    version: PGCDC_VERSION,
    connector: CONNECTOR,
    name: compiled.serverName,
    ts_ms: commit.ms,
    snapshot: event.snapshot,
    db: compiled.database,
    // Debezium's [commit LSN, change LSN] pair as decimal strings: orders events. An xmin read
    // (capture.method xmin) has no LSN: its xid8 is in source.xmin instead.
    sequence: event.xmin === undefined ? `["${event.commitLsn}","${event.lsn}"]` : null,
    ts_us: event.commitTimeMicros,
    ts_ns: commit.ns,
    schema: relation.schema,
    table: relation.table,
    txId: event.xid === null ? null : BigInt(event.xid),
    lsn: event.xmin === undefined ? event.lsn : null,
    xmin: event.xmin ?? null,
  });
  compiled.lastSource = {
    relation,
    snapshot: event.snapshot,
    commitLsn: event.commitLsn,
    lsn: event.lsn,
    commitTimeMicros: event.commitTimeMicros,
    xid: event.xid,
    xmin: event.xmin,
    value,
  };
  return value;
}

// Events come in runs of one transaction (one commit time) within one millisecond: the bigint
// arithmetic of their timestamps is done once per run, not per event.
let lastNow = { at: NaN, ms: 0n, us: 0n, ns: 0n };
function processingTime(ms: number): { ms: bigint; us: bigint; ns: bigint } {
  if (ms !== lastNow.at) {
    const b = BigInt(ms);
    lastNow = { at: ms, ms: b, us: b * 1000n, ns: b * 1_000_000n };
  }
  return lastNow;
}

let lastCommit = { micros: -1n, ms: 0n, ns: 0n };
function commitTime(micros: bigint): { ms: bigint; ns: bigint } {
  if (micros !== lastCommit.micros) lastCommit = { micros, ms: micros / 1000n, ns: micros * 1000n };
  return lastCommit;
}
