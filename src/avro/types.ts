// PostgreSQL type → Avro type mapping, and the matching text → value converter. Both come from
// one function (planColumn) so the schema and the values can never disagree. The mapping table
// is docs/types.md; keep the two in step.
import type { Column } from '../change/event.ts';
import { DataError } from './errors.ts';
import {
  avroDate,
  avroLocalTimestampMicros,
  avroLocalTimestampMillis,
  avroTimeMicros,
  avroTimeMillis,
  avroTimestampMicros,
  avroTimestampMillis,
  debeziumDate,
  debeziumMicroTimestamp,
  debeziumTime,
  debeziumTimestamp,
  zonedTime,
  zonedTimestamp,
} from './temporal.ts';
import {
  isNumericSpecial,
  numericToDecimalBytes,
  parseArray,
  parseBool,
  parseBytea,
  parseFloatText,
  parseInt32,
  parseInt64,
  parseTime,
  intervalToIso,
  type ArrayText,
} from './values.ts';

// ---- catalog type information ----------------------------------------------------------------

export type PgTypeKind =
  'base' | 'enum' | 'domain' | 'array' | 'composite' | 'range' | 'pseudo' | 'multirange';

/** A pg_type row as pgcdc needs it; the catalog query (src/postgres) produces these. */
export interface PgTypeInfo {
  oid: number;
  /** pg_type.typname, e.g. 'int4', '_int4', 'citext'. */
  name: string;
  /** Namespace of the type, e.g. 'pg_catalog', 'public'. */
  schema: string;
  kind: PgTypeKind;
  /** Element type, for kind 'array'. */
  elem?: PgTypeInfo;
  /** Base type, for kind 'domain'. */
  base?: PgTypeInfo;
  /** Labels in sort order, for kind 'enum'. */
  enumLabels?: string[];
  /**
   * Domains only: pg_type.typtypmod (the base type's modifier the domain declares, e.g. numeric(10,2)),
   * used when the column itself has no modifier (-1). Optional.
   */
  typeMod?: number;
  /** Array element delimiter (pg_type.typdelim of the element type); ',' when absent (all but box). */
  delimiter?: string;
}

export type TypeLookup = (oid: number) => PgTypeInfo | undefined;

const BASE_TYPES: Array<[number, string]> = [
  [16, 'bool'],
  [17, 'bytea'],
  [18, 'char'],
  [19, 'name'],
  [20, 'int8'],
  [21, 'int2'],
  [23, 'int4'],
  [25, 'text'],
  [26, 'oid'],
  [114, 'json'],
  [142, 'xml'],
  [600, 'point'],
  [650, 'cidr'],
  [700, 'float4'],
  [701, 'float8'],
  [774, 'macaddr8'],
  [790, 'money'],
  [829, 'macaddr'],
  [869, 'inet'],
  [1042, 'bpchar'],
  [1043, 'varchar'],
  [1082, 'date'],
  [1083, 'time'],
  [1114, 'timestamp'],
  [1184, 'timestamptz'],
  [1186, 'interval'],
  [1266, 'timetz'],
  [1560, 'bit'],
  [1562, 'varbit'],
  [1700, 'numeric'],
  [2950, 'uuid'],
  [3220, 'pg_lsn'],
  [3614, 'tsvector'],
  [3802, 'jsonb'],
  [4072, 'jsonpath'],
];

/** [array OID, element OID] */
const ARRAY_TYPES: Array<[number, number]> = [
  [1000, 16],
  [1001, 17],
  [1002, 18],
  [1003, 19],
  [1016, 20],
  [1005, 21],
  [1007, 23],
  [1009, 25],
  [1028, 26],
  [199, 114],
  [143, 142],
  [651, 650],
  [1021, 700],
  [1022, 701],
  [791, 790],
  [1040, 829],
  [1041, 869],
  [1014, 1042],
  [1015, 1043],
  [1182, 1082],
  [1183, 1083],
  [1115, 1114],
  [1185, 1184],
  [1187, 1186],
  [1270, 1266],
  [1231, 1700],
  [2951, 2950],
  [3807, 3802],
];

const RANGE_TYPES: Array<[number, string]> = [
  [3904, 'int4range'],
  [3906, 'numrange'],
  [3908, 'tsrange'],
  [3910, 'tstzrange'],
  [3912, 'daterange'],
  [3926, 'int8range'],
];

function buildBuiltins(): ReadonlyMap<number, PgTypeInfo> {
  const map = new Map<number, PgTypeInfo>();
  for (const [oid, name] of BASE_TYPES) map.set(oid, { oid, name, schema: 'pg_catalog', kind: 'base' });
  for (const [oid, elemOid] of ARRAY_TYPES) {
    const elem = map.get(elemOid) as PgTypeInfo;
    map.set(oid, { oid, name: `_${elem.name}`, schema: 'pg_catalog', kind: 'array', elem });
  }
  for (const [oid, name] of RANGE_TYPES) map.set(oid, { oid, name, schema: 'pg_catalog', kind: 'range' });
  for (const t of map.values()) Object.freeze(t);
  return map;
}

/** Built-in pg_catalog types with fixed OIDs: the common case needs no catalog lookup. */
export const BUILTIN_TYPES: ReadonlyMap<number, PgTypeInfo> = buildBuiltins();

export const builtinTypeLookup: TypeLookup = (oid) => BUILTIN_TYPES.get(oid);

/** A lookup that tries `lookup` first and falls back to {@link BUILTIN_TYPES}. */
export function withBuiltins(lookup: TypeLookup | undefined): TypeLookup {
  if (!lookup) return builtinTypeLookup;
  return (oid) => lookup(oid) ?? BUILTIN_TYPES.get(oid);
}

// ---- options ---------------------------------------------------------------------------------

export type DecimalHandling = 'precise' | 'string' | 'double';
export type BinaryHandling = 'bytes' | 'base64' | 'hex';
export type ArrayHandling = 'array' | 'string';
export type TimePrecision = 'adaptive' | 'adaptive_time_microseconds' | 'micros' | 'millis';
/**
 * 'debezium': Kafka Connect semantic types as Debezium's connector writes them (io.debezium.time.*,
 * no Avro logical type on temporal fields), so Connect's AvroData and every Connect sink read them.
 * 'avro': the Avro specification's logical types (date, time-*, timestamp-*, local-timestamp-*,
 * uuid), for Avro readers, Spark, Iceberg; values outside what those readers represent are clamped.
 */
export type TypeMode = 'debezium' | 'avro';

export interface AvroOptions {
  /** numeric: 'precise' (default) Avro decimal when declared numeric(p,s), else string; 'string'; 'double'. */
  decimalHandling?: DecimalHandling;
  /** bytea: 'bytes' (default), or a 'base64' / 'hex' string. */
  binaryHandling?: BinaryHandling;
  /** arrays: 'array' (default) Avro array of nullable elements, or 'string' (PostgreSQL's array text). */
  arrayHandling?: ArrayHandling;
  /** Stands in for unchanged TOASTed values; default {@link DEFAULT_TOAST_PLACEHOLDER}. */
  toastPlaceholder?: string;
  /**
   * time/timestamp(tz): Debezium's time.precision.mode. 'adaptive' (default): by the column's
   * declared precision, milliseconds for p <= 3, microseconds otherwise. 'adaptive_time_microseconds':
   * time always in microseconds, timestamps adaptive. 'micros' / 'millis': always that unit
   * ('millis' floors). timestamptz in Debezium mode is an ISO string whatever the setting.
   */
  timePrecision?: TimePrecision;
  /** 'debezium' (default) or 'avro'; see {@link TypeMode}. */
  typeMode?: TypeMode;
}

export const DEFAULT_TOAST_PLACEHOLDER = '__debezium_unavailable_value';

export interface ResolvedAvroOptions {
  decimalHandling: DecimalHandling;
  binaryHandling: BinaryHandling;
  arrayHandling: ArrayHandling;
  toastPlaceholder: string;
  timePrecision: TimePrecision;
  typeMode: TypeMode;
}

export function resolveAvroOptions(options: AvroOptions | undefined): ResolvedAvroOptions {
  const o = options ?? {};
  const pick = <T extends string>(name: string, value: T | undefined, allowed: readonly T[]): T => {
    if (value === undefined) return allowed[0] as T;
    if (!allowed.includes(value)) {
      throw new Error(`${name}: '${value}' is not one of ${allowed.join(', ')}`);
    }
    return value;
  };
  return {
    decimalHandling: pick('decimalHandling', o.decimalHandling, ['precise', 'string', 'double']),
    binaryHandling: pick('binaryHandling', o.binaryHandling, ['bytes', 'base64', 'hex']),
    arrayHandling: pick('arrayHandling', o.arrayHandling, ['array', 'string']),
    toastPlaceholder: o.toastPlaceholder ?? DEFAULT_TOAST_PLACEHOLDER,
    timePrecision: pick('timePrecision', o.timePrecision, [
      'adaptive',
      'adaptive_time_microseconds',
      'micros',
      'millis',
    ]),
    typeMode: pick('typeMode', o.typeMode, ['debezium', 'avro']),
  };
}

// ---- schemas and plans -----------------------------------------------------------------------

/** Avro schema JSON, as registered with the schema registry. */
export type AvroSchema = string | AvroSchemaObject | AvroSchema[];
export interface AvroSchemaObject {
  type: AvroSchema;
  [property: string]: unknown;
}

/**
 * How an unchanged-TOAST value can be represented in a field: as the placeholder string, its
 * UTF-8 bytes, a one-element array of either — or not at all ('none': null, reported).
 */
export type ToastRepresentation = 'string' | 'bytes' | 'string-array' | 'bytes-array' | 'none';

/** Converts one non-null text value; throws DataError when it cannot be represented. */
export type Converter = (text: string) => unknown;

export interface ColumnPlan {
  /** The column's Avro type, not nullable (the record builder adds the null union). */
  schema: AvroSchema;
  convert: Converter;
  toast: ToastRepresentation;
}

/** Where a column lives, for error messages. */
export interface ColumnContext {
  /** `schema.table` */
  table?: string;
}

interface Plan {
  schema: AvroSchema;
  /** Throws plain Errors or DataErrors; planColumn attaches the column name. */
  convert: Converter;
  toast: ToastRepresentation;
}

const identity: Converter = (text) => text;
const STRING: Plan = { schema: 'string', convert: identity, toast: 'string' };

function stringWith(props: Record<string, unknown>, convert: Converter = identity): Plan {
  return { schema: { type: 'string', ...props }, convert, toast: 'string' };
}

/** numeric(p,s) typmod → [precision, scale] (PostgreSQL 15+ allows negative and > precision scales). */
export function numericPrecisionScale(typeMod: number): [number, number] | undefined {
  if (typeMod < 4) return undefined;
  const t = typeMod - 4;
  return [(t >> 16) & 0xffff, ((t & 0x7ff) ^ 1024) - 1024];
}

function numericPlan(typeMod: number, o: ResolvedAvroOptions, where: () => [string?, string?]): Plan {
  if (o.decimalHandling === 'string') return STRING;
  if (o.decimalHandling === 'double') return { schema: 'double', convert: parseFloatText, toast: 'none' };
  const ps = numericPrecisionScale(typeMod);
  if (!ps) return STRING; // numeric without (p,s): variable scale, kept lossless as its text.
  let [precision, scale] = ps;
  if (scale < 0) {
    // numeric(5,-2) holds multiples of 100 with up to 7 integer digits; Avro needs scale >= 0.
    precision -= scale;
    scale = 0;
  }
  if (scale > precision) precision = scale; // numeric(3,5): Avro needs scale <= precision.
  return {
    // AvroData's own layout for a Connect Decimal (what Debezium registers).
    schema: {
      type: 'bytes',
      scale,
      precision,
      'connect.version': 1,
      'connect.parameters': { scale: String(scale), 'connect.decimal.precision': String(precision) },
      'connect.name': 'org.apache.kafka.connect.data.Decimal',
      logicalType: 'decimal',
    },
    convert: (text) => {
      if (isNumericSpecial(text)) {
        const [table, column] = where();
        throw new DataError(
          `numeric value ${text} cannot be represented as an Avro decimal; set decimalHandling to ` +
            `'string' (or 'double') to carry NaN and infinities`,
          table,
          column,
        );
      }
      return numericToDecimalBytes(text, scale);
    },
    toast: 'none',
  };
}

function byteaPlan(o: ResolvedAvroOptions): Plan {
  switch (o.binaryHandling) {
    case 'base64':
      return { schema: 'string', convert: (t) => parseBytea(t).toString('base64'), toast: 'string' };
    case 'hex':
      return { schema: 'string', convert: (t) => parseBytea(t).toString('hex'), toast: 'string' };
    default:
      return { schema: 'bytes', convert: parseBytea, toast: 'bytes' };
  }
}

/** Debezium's semantic type: connect.version 1 and connect.name, in AvroData's property order. */
function semantic(type: string, name: string, extra: Record<string, unknown> = {}): AvroSchemaObject {
  return { type, 'connect.version': 1, ...extra, 'connect.name': name };
}

/** Declared fractional-second precision of time/timestamp(tz) (atttypmod); -1 means 6. */
function temporalPrecision(typeMod: number): number {
  return typeMod >= 0 && typeMod <= 6 ? typeMod : 6;
}

function inMillis(kind: 'time' | 'timestamp', p: number, precision: TimePrecision): boolean {
  switch (precision) {
    case 'millis':
      return true;
    case 'micros':
      return false;
    case 'adaptive_time_microseconds':
      return kind === 'timestamp' && p <= 3;
    default:
      return p <= 3;
  }
}

/** date, time, timestamp, timestamptz, timetz in the configured type mode. */
function temporalPlan(
  name: 'date' | 'time' | 'timestamp' | 'timestamptz' | 'timetz',
  typeMod: number,
  o: ResolvedAvroOptions,
): Plan {
  const p = temporalPrecision(typeMod);
  const plan = (schema: AvroSchema, convert: Converter): Plan => ({ schema, convert, toast: 'none' });
  if (o.typeMode === 'debezium') {
    switch (name) {
      case 'date':
        return plan(semantic('int', 'io.debezium.time.Date'), debeziumDate);
      case 'time':
        return inMillis('time', p, o.timePrecision)
          ? plan(semantic('int', 'io.debezium.time.Time'), debeziumTime)
          : plan(semantic('long', 'io.debezium.time.MicroTime'), parseTime);
      case 'timestamp':
        return inMillis('timestamp', p, o.timePrecision)
          ? plan(semantic('long', 'io.debezium.time.Timestamp'), debeziumTimestamp)
          : plan(semantic('long', 'io.debezium.time.MicroTimestamp'), debeziumMicroTimestamp);
      case 'timestamptz':
        return {
          schema: semantic('string', 'io.debezium.time.ZonedTimestamp'),
          convert: (text) => zonedTimestamp(text, p),
          toast: 'string',
        };
      default:
        return {
          schema: semantic('string', 'io.debezium.time.ZonedTime'),
          convert: zonedTime,
          toast: 'string',
        };
    }
  }
  switch (name) {
    case 'date':
      return plan({ type: 'int', logicalType: 'date' }, avroDate);
    case 'time':
      return inMillis('time', p, o.timePrecision)
        ? plan({ type: 'int', logicalType: 'time-millis' }, avroTimeMillis)
        : plan({ type: 'long', logicalType: 'time-micros' }, avroTimeMicros);
    case 'timestamp':
      return inMillis('timestamp', p, o.timePrecision)
        ? plan({ type: 'long', logicalType: 'local-timestamp-millis' }, avroLocalTimestampMillis)
        : plan({ type: 'long', logicalType: 'local-timestamp-micros' }, avroLocalTimestampMicros);
    case 'timestamptz':
      return inMillis('timestamp', p, o.timePrecision)
        ? plan({ type: 'long', logicalType: 'timestamp-millis' }, avroTimestampMillis)
        : plan({ type: 'long', logicalType: 'timestamp-micros' }, avroTimestampMicros);
    default:
      // Avro has no zoned time: PostgreSQL's text with its offset, lossless.
      return STRING;
  }
}

function basePlan(
  info: PgTypeInfo,
  typeMod: number,
  o: ResolvedAvroOptions,
  where: () => [string?, string?],
): Plan {
  if (info.name === 'citext') return STRING; // extension type, OID varies per database
  if (info.schema !== 'pg_catalog') return STRING;
  switch (info.name) {
    case 'bool':
      return { schema: 'boolean', convert: parseBool, toast: 'none' };
    case 'int2':
      // connect.type int16: Connect's AvroData reads it back as INT16 (a smallint column in sinks).
      return { schema: { type: 'int', 'connect.type': 'int16' }, convert: parseInt32, toast: 'none' };
    case 'int4':
      return { schema: 'int', convert: parseInt32, toast: 'none' };
    case 'int8':
    case 'oid':
      return { schema: 'long', convert: parseInt64, toast: 'none' };
    case 'float4':
      return { schema: 'float', convert: parseFloatText, toast: 'none' };
    case 'float8':
      return { schema: 'double', convert: parseFloatText, toast: 'none' };
    case 'numeric':
      return numericPlan(typeMod, o, where);
    case 'bytea':
      return byteaPlan(o);
    case 'date':
    case 'time':
    case 'timestamp':
    case 'timestamptz':
    case 'timetz':
      return temporalPlan(info.name, typeMod, o);
    case 'interval':
      // Debezium's interval.handling.mode=string.
      return {
        schema: semantic('string', 'io.debezium.time.Interval'),
        convert: intervalToIso,
        toast: 'string',
      };
    case 'uuid':
      return o.typeMode === 'avro'
        ? stringWith({ logicalType: 'uuid', 'connect.version': 1, 'connect.name': 'io.debezium.data.Uuid' })
        : { schema: semantic('string', 'io.debezium.data.Uuid'), convert: identity, toast: 'string' };
    case 'json':
    case 'jsonb':
      return { schema: semantic('string', 'io.debezium.data.Json'), convert: identity, toast: 'string' };
    case 'xml':
      return { schema: semantic('string', 'io.debezium.data.Xml'), convert: identity, toast: 'string' };
    default:
      // text, varchar, bpchar, char, name, and every type without a dedicated mapping (inet, cidr,
      // macaddr, money, bit, tsvector, point, ...): the text form, unchanged.
      return STRING;
  }
}

function arrayPlan(
  info: PgTypeInfo,
  typeMod: number,
  o: ResolvedAvroOptions,
  where: () => [string?, string?],
  depth: number,
): Plan {
  const elemInfo = info.elem;
  if (o.arrayHandling === 'string' || !elemInfo) return STRING;
  const elem = plan(elemInfo, typeMod, o, where, depth + 1);
  const delimiter = info.delimiter ?? elemInfo.delimiter ?? (elemInfo.name === 'box' ? ';' : ',');
  const convertElem = elem.convert;
  const multi = (): never => {
    const [table, column] = where();
    throw new DataError(
      `multi-dimensional array values are not supported (the column maps to a one-dimensional Avro ` +
        `array); set avro.arrayHandling=string to carry arrays as PostgreSQL array text`,
      table,
      column,
    );
  };
  return {
    schema: { type: 'array', items: ['null', elem.schema] },
    convert: (text) => {
      const parsed: ArrayText = parseArray(text, delimiter);
      const out = new Array<unknown>(parsed.length);
      for (let i = 0; i < parsed.length; i++) {
        const e = parsed[i];
        if (e === null || e === undefined) out[i] = null;
        else if (typeof e === 'string') out[i] = convertElem(e);
        else multi();
      }
      return out;
    },
    toast: elem.toast === 'string' ? 'string-array' : elem.toast === 'bytes' ? 'bytes-array' : 'none',
  };
}

function plan(
  info: PgTypeInfo | undefined,
  typeMod: number,
  o: ResolvedAvroOptions,
  where: () => [string?, string?],
  depth = 0,
): Plan {
  if (!info || depth > 16) return STRING;
  switch (info.kind) {
    case 'base':
      return basePlan(info, typeMod, o, where);
    case 'domain':
      if (!info.base) return STRING;
      return plan(
        info.base,
        typeMod === -1 && info.typeMod !== undefined ? info.typeMod : typeMod,
        o,
        where,
        depth + 1,
      );
    case 'enum':
      return {
        schema: semantic('string', 'io.debezium.data.Enum', {
          'connect.parameters': { allowed: (info.enumLabels ?? []).join(',') },
        }),
        convert: identity,
        toast: 'string',
      };
    case 'array':
      return arrayPlan(info, typeMod, o, where, depth);
    default:
      // composite, range, multirange, pseudo: the text form.
      return STRING;
  }
}

/**
 * The column's Avro type and converter. `typeInfo` undefined (an OID the lookup does not know)
 * falls back to string. Converter errors are DataErrors naming `context.table` and the column.
 */
export function planColumn(
  column: Column,
  typeInfo: PgTypeInfo | undefined,
  options?: AvroOptions | ResolvedAvroOptions,
  context: ColumnContext = {},
): ColumnPlan {
  const o = resolveAvroOptions(options);
  const where = (): [string?, string?] => [context.table, column.name];
  const p = plan(typeInfo, column.typeMod, o, where);
  const inner = p.convert;
  const convert: Converter = (text) => {
    try {
      return inner(text);
    } catch (err) {
      if (err instanceof DataError) throw err;
      throw new DataError((err as Error).message, context.table ?? '?', column.name);
    }
  };
  return { schema: p.schema, convert, toast: p.toast };
}

/** The Avro type (not nullable; with logical types and Debezium `connect.*` properties) for a column. */
export function avroTypeFor(
  column: Column,
  typeInfo: PgTypeInfo | undefined,
  options?: AvroOptions,
): AvroSchema {
  return planColumn(column, typeInfo, options).schema;
}
