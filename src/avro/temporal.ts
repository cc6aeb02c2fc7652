// Temporal values in the two type modes. Debezium mode reproduces what Debezium's PostgreSQL
// connector emits (io.debezium.time.*), including its infinity sentinels, so that Kafka Connect
// sinks read pgcdc's records as Debezium's. Avro mode keeps every value inside the range a
// standard Avro reader with logical types can represent (years 1..9999, times before 24:00), so
// that no value makes a record undecodable there.
import {
  LONG_MAX,
  LONG_MIN,
  DATE_NEGATIVE_INFINITY,
  DATE_POSITIVE_INFINITY,
  daysFromCivil,
  microsToMillis,
  parseDate,
  parseTime,
  parseTimestamp,
  parseTimestamptz,
} from './values.ts';

const MICROS_PER_DAY = 86_400_000_000n;

// ---- Debezium's infinity sentinels -------------------------------------------------------------
// Debezium maps PostgreSQL's ±infinity through pgjdbc's constants (PGStatement.DATE_POSITIVE_INFINITY
// and friends), so the values below are what its connector puts in the record.

/** date 'infinity' / '-infinity': LocalDate -5877611-06-21 / -06-22 as epoch days. */
export const DEBEZIUM_DATE_POSITIVE_INFINITY = -2147472692;
export const DEBEZIUM_DATE_NEGATIVE_INFINITY = -2147472691;
/** timestamp 'infinity' / '-infinity' as io.debezium.time.MicroTimestamp. */
export const DEBEZIUM_TIMESTAMP_POSITIVE_INFINITY_MICROS = 9223372036825200000n;
export const DEBEZIUM_TIMESTAMP_NEGATIVE_INFINITY_MICROS = -9223372036832400000n;

/** date → io.debezium.time.Date (days since the epoch, Debezium's infinity sentinels). */
export function debeziumDate(text: string): number {
  const days = parseDate(text);
  if (days === DATE_POSITIVE_INFINITY) return DEBEZIUM_DATE_POSITIVE_INFINITY;
  if (days === DATE_NEGATIVE_INFINITY) return DEBEZIUM_DATE_NEGATIVE_INFINITY;
  return days;
}

/** timestamp → io.debezium.time.MicroTimestamp. */
export function debeziumMicroTimestamp(text: string): bigint {
  const micros = parseTimestamp(text);
  if (micros === LONG_MAX) return DEBEZIUM_TIMESTAMP_POSITIVE_INFINITY_MICROS;
  if (micros === LONG_MIN) return DEBEZIUM_TIMESTAMP_NEGATIVE_INFINITY_MICROS;
  return micros;
}

/** timestamp → io.debezium.time.Timestamp (milliseconds, floored). */
export function debeziumTimestamp(text: string): bigint {
  return floorMillis(debeziumMicroTimestamp(text));
}

function floorMillis(micros: bigint): bigint {
  const q = micros / 1000n;
  return micros < 0n && q * 1000n !== micros ? q - 1n : q;
}

/** time → io.debezium.time.Time (milliseconds past midnight, floored; 24:00:00 is 86 400 000). */
export function debeziumTime(text: string): number {
  return Number(parseTime(text) / 1000n);
}

// ---- ISO-8601 text as java.time prints it -------------------------------------------------------

/** Proleptic-Gregorian civil date of a day count since 1970-01-01 (inverse of daysFromCivil). */
export function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [era * 400 + yoe + (month <= 2 ? 1 : 0), month, day];
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** java.time's ISO year: at least 4 digits, '+' beyond 9999, '-' before year 0 (1 BC is 0000). */
function isoYear(year: number): string {
  if (year > 9999) return `+${year}`;
  if (year < 0) return `-${pad(-year, 4)}`;
  return pad(year, 4);
}

/**
 * Fraction of a second: `width` digits exactly when width > 0 (Debezium's per-precision
 * formatter), else as DateTimeFormatter.ISO_LOCAL_TIME prints it (no trailing zeros, none at all
 * for whole seconds).
 */
function fraction(micros: number, width: number): string {
  const digits = pad(micros, 6);
  if (width > 0) return `.${digits.slice(0, width)}`;
  const trimmed = digits.replace(/0+$/, '');
  return trimmed === '' ? '' : `.${trimmed}`;
}

function clock(microsOfDay: number, width: number): string {
  const totalSeconds = Math.floor(microsOfDay / 1_000_000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${fraction(microsOfDay % 1_000_000, width)}`;
}

/**
 * timestamptz → io.debezium.time.ZonedTimestamp: the instant in UTC, ISO-8601, with exactly
 * `precision` fraction digits (Debezium formats by the column's precision; 0 prints none).
 * 'infinity' and '-infinity' pass through as those strings, as in Debezium.
 */
export function zonedTimestamp(text: string, precision: number): string {
  if (text === 'infinity' || text === '-infinity') return text;
  // pgcdc's sessions run with TimeZone UTC, so PostgreSQL already prints the instant in UTC: only
  // the separators and the fraction's width change (years 1000..9999, the common case).
  const fast = zonedTimestampUtc(text, precision);
  if (fast !== undefined) return fast;
  const micros = parseTimestamptz(text);
  const days = micros >= 0n ? micros / MICROS_PER_DAY : -((-micros + MICROS_PER_DAY - 1n) / MICROS_PER_DAY);
  const microsOfDay = Number(micros - days * MICROS_PER_DAY);
  const [y, mo, d] = civilFromDays(Number(days));
  return `${isoYear(y)}-${pad(mo, 2)}-${pad(d, 2)}T${clock(microsOfDay, precision)}Z`;
}

/** Fraction digits as wide as a precision: '', '0', '00', … '000000'. */
const ZEROS = ['', '0', '00', '000', '0000', '00000', '000000'];

/**
 * `YYYY-MM-DD HH:MM:SS[.f{1,6}]+00` (years 1000..9999 in UTC, what a UTC session prints) as
 * ISO-8601 with `precision` fraction digits, checked character by character (no regex: it is
 * every timestamptz of every row); undefined for any other text.
 */
export function zonedTimestampUtc(text: string, precision: number): string | undefined {
  const n = text.length;
  if (
    n < 22 ||
    n > 29 ||
    text.charCodeAt(n - 3) !== 0x2b ||
    text.charCodeAt(n - 2) !== 0x30 ||
    text.charCodeAt(n - 1) !== 0x30
  )
    return undefined;
  const c0 = text.charCodeAt(0);
  if (c0 < 0x31 || c0 > 0x39) return undefined;
  for (let i = 1; i < 19; i++) {
    const c = text.charCodeAt(i);
    const sep = i === 4 || i === 7 ? 0x2d : i === 10 ? 0x20 : i === 13 || i === 16 ? 0x3a : 0;
    if (sep ? c !== sep : c < 0x30 || c > 0x39) return undefined;
  }
  // The fraction: nothing (n = 22), or a point and 1..6 digits.
  let width = 0;
  if (n > 22) {
    if (text.charCodeAt(19) !== 0x2e || n === 23) return undefined;
    width = n - 23;
    for (let i = 20; i < n - 3; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return undefined;
    }
  }
  const date = text.slice(0, 10);
  const time = text.slice(11, 19);
  if (precision <= 0) return `${date}T${time}Z`;
  if (precision > 6) precision = 6;
  if (width >= precision) return `${date}T${time}.${text.slice(20, 20 + precision)}Z`;
  return `${date}T${time}${width > 0 ? text.slice(19, 20 + width) : '.'}${ZEROS[precision - width]}Z`;
}

const TIMETZ = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?$/;

/**
 * timetz → io.debezium.time.ZonedTime: the time shifted to UTC, ISO-8601 (`08:00:00Z`,
 * `12:34:56.789Z`), as DateTimeFormatter.ISO_OFFSET_TIME prints it. `24:00:00` at offset zero
 * stays `24:00:00Z` (Debezium's boundary value); other times wrap around midnight.
 */
export function zonedTime(text: string): string {
  const m = TIMETZ.exec(text);
  if (!m) throw new Error(`invalid timetz text ${JSON.stringify(text.slice(0, 40))}`);
  const local =
    ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1_000_000 +
    Number((m[4] ?? '').padEnd(6, '0'));
  const offsetSeconds = (Number(m[6]) * 60 + Number(m[7] ?? 0)) * 60 + Number(m[8] ?? 0);
  const offset = (m[5] === '-' ? -offsetSeconds : offsetSeconds) * 1_000_000;
  const day = 86_400_000_000;
  if (local === day && offset === 0) return '24:00:00Z';
  const utc = (((local - offset) % day) + day) % day;
  return `${clock(utc, 0)}Z`;
}

// ---- Avro mode: clamped to what standard readers represent ---------------------------------------

/** 0001-01-01 and 9999-12-31 as epoch days: the range of Python's datetime, Java's Instant... */
export const AVRO_MIN_DAYS = daysFromCivil(1, 1, 1);
export const AVRO_MAX_DAYS = daysFromCivil(9999, 12, 31);
export const AVRO_MIN_MICROS = BigInt(AVRO_MIN_DAYS) * MICROS_PER_DAY;
export const AVRO_MAX_MICROS = BigInt(AVRO_MAX_DAYS + 1) * MICROS_PER_DAY - 1n;
const LAST_MICRO_OF_DAY = 86_399_999_999n;

/** date → Avro `date`: days, clamped to 0001-01-01 … 9999-12-31 (±infinity are the ends). */
export function avroDate(text: string): number {
  const days = parseDate(text);
  return Math.min(AVRO_MAX_DAYS, Math.max(AVRO_MIN_DAYS, days));
}

function clampMicros(micros: bigint): bigint {
  return micros > AVRO_MAX_MICROS ? AVRO_MAX_MICROS : micros < AVRO_MIN_MICROS ? AVRO_MIN_MICROS : micros;
}

/** timestamp → Avro `local-timestamp-micros`, clamped to 0001-01-01 … 9999-12-31 23:59:59.999999. */
export function avroLocalTimestampMicros(text: string): bigint {
  return clampMicros(parseTimestamp(text));
}

/** timestamptz → Avro `timestamp-micros`, clamped like {@link avroLocalTimestampMicros}. */
export function avroTimestampMicros(text: string): bigint {
  return clampMicros(parseTimestamptz(text));
}

export const avroLocalTimestampMillis = (text: string): bigint =>
  microsToMillis(avroLocalTimestampMicros(text));
export const avroTimestampMillis = (text: string): bigint => microsToMillis(avroTimestampMicros(text));

/** time → Avro `time-micros`; `24:00:00` becomes 23:59:59.999999 (readers refuse a full day). */
export function avroTimeMicros(text: string): bigint {
  const micros = parseTime(text);
  return micros > LAST_MICRO_OF_DAY ? LAST_MICRO_OF_DAY : micros;
}

/** time → Avro `time-millis`; `24:00:00` becomes 23:59:59.999. */
export function avroTimeMillis(text: string): number {
  return Number(avroTimeMicros(text) / 1000n);
}
