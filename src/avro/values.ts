// Text → Avro value conversion. Input is PostgreSQL's text output format (what pgoutput and a
// text-mode SELECT produce, with DateStyle ISO, IntervalStyle iso_8601 and bytea_output hex —
// though the other bytea and interval styles are accepted too). These are pure functions; they
// throw a plain Error on malformed input and the per-column converter (types.ts) turns that into a
// DataError naming the column.

/** Avro long values are bigint throughout pgcdc (see {@link bigintLongType} in envelope.ts). */
export const LONG_MAX = 9223372036854775807n;
export const LONG_MIN = -9223372036854775808n;
/** Avro int date for PostgreSQL 'infinity' / '-infinity'. */
export const DATE_POSITIVE_INFINITY = 2147483647;
export const DATE_NEGATIVE_INFINITY = -2147483648;

const MICROS_PER_DAY = 86_400_000_000n;

function bad(what: string, text: string): Error {
  const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  return new Error(`invalid ${what} text ${JSON.stringify(shown)}`);
}

// ---- numbers --------------------------------------------------------------------------------

const INTEGER = /^[+-]?\d+$/;

export function parseInt32(text: string): number {
  if (!INTEGER.test(text)) throw bad('integer', text);
  return Number(text);
}

export function parseInt64(text: string): bigint {
  if (!INTEGER.test(text)) throw bad('integer', text);
  return BigInt(text);
}

/** float4/float8 and numeric in 'double' mode: PostgreSQL prints NaN, Infinity, -Infinity. */
export function parseFloatText(text: string): number {
  const n = Number(text);
  if (Number.isNaN(n) && text !== 'NaN') throw bad('floating-point', text);
  if (text === '' || text.trim() !== text) throw bad('floating-point', text);
  return n;
}

export function parseBool(text: string): boolean {
  if (text === 't' || text === 'true') return true;
  if (text === 'f' || text === 'false') return false;
  throw bad('boolean', text);
}

// ---- numeric as Avro decimal -----------------------------------------------------------------

const NUMERIC = /^([+-]?)(\d*)(?:\.(\d*))?$/;

/** True for numeric's special values, which an Avro decimal cannot hold. */
export function isNumericSpecial(text: string): boolean {
  return text === 'NaN' || text === 'Infinity' || text === '-Infinity';
}

/** The unscaled integer of a numeric text at `scale`; throws if that would need rounding. */
export function numericUnscaled(text: string, scale: number): bigint {
  const m = NUMERIC.exec(text);
  if (!m || (m[2] === '' && (m[3] === undefined || m[3] === ''))) throw bad('numeric', text);
  const sign = m[1] === '-' ? '-' : '';
  const intPart = m[2] || '0';
  let frac = m[3] ?? '';
  if (frac.length > scale) {
    // PostgreSQL prints exactly `scale` digits for numeric(p,s); more is only accepted when the
    // extra digits are zeros (no rounding, ever).
    if (!/^0*$/.test(frac.slice(scale)))
      throw new Error(`numeric ${text} has more than ${scale} decimal places`);
    frac = frac.slice(0, scale);
  }
  return BigInt(sign + intPart + frac.padEnd(scale, '0'));
}

const SMALL_LIMIT = 1n << 47n;

/** Minimal two's-complement big-endian bytes of `n` (Avro decimal's encoding). */
export function bigintToTwosComplement(n: bigint): Buffer {
  // Fast path (the common case): up to 6 bytes, exact in double arithmetic.
  if (n > -SMALL_LIMIT && n < SMALL_LIMIT) return smallToTwosComplement(Number(n));
  if (n >= 0n) {
    let hex = n.toString(16);
    if (hex.length % 2 === 1) hex = `0${hex}`;
    if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
    return Buffer.from(hex, 'hex');
  }
  let bytes = 1;
  while (n < -(1n << BigInt(bytes * 8 - 1))) bytes++;
  const hex = ((1n << BigInt(bytes * 8)) + n).toString(16).padStart(bytes * 2, '0');
  return Buffer.from(hex, 'hex');
}

export function twosComplementToBigint(buf: Uint8Array): bigint {
  if (buf.length === 0) return 0n;
  let n = BigInt(`0x${Buffer.from(buf).toString('hex')}`);
  if ((buf[0] as number) & 0x80) n -= 1n << BigInt(buf.length * 8);
  return n;
}

export function numericToDecimalBytes(text: string, scale: number): Buffer {
  const small = smallUnscaled(text, scale);
  if (small !== undefined) return smallToTwosComplement(small);
  return bigintToTwosComplement(numericUnscaled(text, scale));
}

/**
 * The unscaled value of a plain numeric text (`-123.45`) as a number, when it has at most 14
 * digits at `scale` (so it is below 2^47 and exact); undefined for anything else, which
 * numericUnscaled then parses (and refuses) as before. No regex, no BigInt: the common case of
 * the snapshot's numeric columns.
 */
function smallUnscaled(text: string, scale: number): number | undefined {
  const n = text.length;
  let i = text.charCodeAt(0) === 0x2d ? 1 : 0;
  const neg = i === 1;
  let v = 0;
  let digits = 0;
  let frac = -1; // digits after the point, once one is seen
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      v = v * 10 + (c - 0x30);
      digits++;
      if (frac >= 0) frac++;
    } else if (c === 0x2e && frac < 0 && digits > 0) {
      frac = 0;
    } else {
      return undefined;
    }
  }
  if (frac < 0) frac = 0;
  if (digits === 0 || frac > scale || digits + scale - frac > 14) return undefined;
  for (let k = frac; k < scale; k++) v *= 10;
  return neg ? -v : v;
}

/** Minimal two's-complement big-endian bytes of a safe integer below 2^47 in magnitude. */
function smallToTwosComplement(v: number): Buffer {
  let bytes = 1;
  while (v >= 2 ** (bytes * 8 - 1) || v < -(2 ** (bytes * 8 - 1))) bytes++;
  let u = v < 0 ? v + 2 ** (bytes * 8) : v;
  const buf = Buffer.allocUnsafe(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    buf[i] = u % 256;
    u = Math.floor(u / 256);
  }
  return buf;
}

/** Inverse of {@link numericToDecimalBytes}: the decimal text with exactly `scale` places. */
export function decimalBytesToText(buf: Uint8Array, scale: number): string {
  const n = twosComplementToBigint(buf);
  const neg = n < 0n;
  const digits = (neg ? -n : n).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return neg ? `-${text}` : text;
}

// ---- bytea -----------------------------------------------------------------------------------

/** bytea text: hex format `\x0a0b` (the default), or the old escape format. */
export function parseBytea(text: string): Buffer {
  if (text.startsWith('\\x')) {
    const hex = text.slice(2);
    if (hex.length % 2 !== 0 || !/^[0-9A-Fa-f]*$/.test(hex)) throw bad('bytea', text);
    return Buffer.from(hex, 'hex');
  }
  // Escape format: `\\` is a backslash, `\ooo` an octal byte, anything else a byte as is.
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x5c) {
      if (c > 0xff) throw bad('bytea', text);
      out.push(c);
    } else if (text[i + 1] === '\\') {
      out.push(0x5c);
      i++;
    } else if (/^[0-3][0-7]{2}$/.test(text.slice(i + 1, i + 4))) {
      out.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      throw bad('bytea', text);
    }
  }
  return Buffer.from(out);
}

// ---- dates and times -------------------------------------------------------------------------

/** Days since 1970-01-01 of a proleptic-Gregorian date (astronomical year: 1 BC is year 0). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** The decimal number of text[at, at + count), or -1 when one of them is not a digit. */
function digits(text: string, at: number, count: number): number {
  let v = 0;
  for (let i = at; i < at + count; i++) {
    const d = text.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

function astronomicalYear(yearText: string, bc: boolean): number {
  const y = Number(yearText);
  return bc ? 1 - y : y;
}

const DATE = /^(\d{4,})-(\d{2})-(\d{2})( BC)?$/;

/** date → days since the epoch; 'infinity' / '-infinity' → int max / min. */
export function parseDate(text: string): number {
  // YYYY-MM-DD (years 1000..9999, what PostgreSQL prints for nearly every date): no regex.
  if (text.length === 10 && text.charCodeAt(4) === 0x2d && text.charCodeAt(7) === 0x2d) {
    const year = digits(text, 0, 4);
    const month = digits(text, 5, 2);
    const day = digits(text, 8, 2);
    if (year >= 1000 && month >= 0 && day >= 0) return daysFromCivil(year, month, day);
  }
  const m = DATE.exec(text);
  if (!m) {
    if (text === 'infinity') return DATE_POSITIVE_INFINITY;
    if (text === '-infinity') return DATE_NEGATIVE_INFINITY;
    throw bad('date', text);
  }
  return daysFromCivil(astronomicalYear(m[1] as string, m[4] !== undefined), Number(m[2]), Number(m[3]));
}

function fractionMicros(frac: string | undefined): number {
  if (frac === undefined) return 0;
  return Number(frac.padEnd(6, '0'));
}

const TIME = /^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$/;

/** time → microseconds since midnight (`24:00:00` is 86 400 000 000). */
export function parseTime(text: string): bigint {
  const m = TIME.exec(text);
  if (!m) throw bad('time', text);
  const h = Number(m[1]);
  const min = Number(m[2]);
  const s = Number(m[3] ?? 0);
  const micros = ((h * 60 + min) * 60 + s) * 1_000_000 + fractionMicros(m[4]);
  if (min > 59 || s > 60 || micros > 86_400_000_000) throw bad('time', text);
  return BigInt(micros);
}

const TIMESTAMP =
  /^(\d{4,})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?)?( BC)?$/;

function timestampMicros(text: string, withZone: boolean): bigint {
  const m = TIMESTAMP.exec(text);
  if (!m) {
    if (text === 'infinity') return LONG_MAX;
    if (text === '-infinity') return LONG_MIN;
    throw bad(withZone ? 'timestamptz' : 'timestamp', text);
  }
  const hasZone = m[8] !== undefined;
  if (withZone !== hasZone) throw bad(withZone ? 'timestamptz' : 'timestamp', text);
  const days = daysFromCivil(
    astronomicalYear(m[1] as string, m[12] !== undefined),
    Number(m[2]),
    Number(m[3]),
  );
  const timeMicros =
    ((Number(m[4]) * 60 + Number(m[5])) * 60 + Number(m[6])) * 1_000_000 + fractionMicros(m[7]);
  let offsetMicros = 0;
  if (hasZone) {
    const offsetSeconds = (Number(m[9]) * 60 + Number(m[10] ?? 0)) * 60 + Number(m[11] ?? 0);
    offsetMicros = (m[8] === '-' ? -offsetSeconds : offsetSeconds) * 1_000_000;
  }
  // local = UTC + offset, so UTC = local - offset. Within ±270 years of 1970 doubles are exact.
  const micros =
    days > -100_000 && days < 100_000
      ? BigInt(days * 86_400_000_000 + timeMicros - offsetMicros)
      : BigInt(days) * MICROS_PER_DAY + BigInt(timeMicros) - BigInt(offsetMicros);
  // PostgreSQL counts from 2000-01-01, so its last ~30 years (after 294247 AD) do not fit a 64-bit
  // count from 1970; the extremes are also reserved for ±infinity.
  if (micros >= LONG_MAX || micros <= LONG_MIN) {
    throw new Error(`${text} is outside the range of a 64-bit microsecond timestamp since 1970`);
  }
  return micros;
}

/**
 * Microseconds → milliseconds, floored (toward −∞); the ±infinity sentinels (long max/min) stay
 * as they are.
 */
export function microsToMillis(micros: bigint): bigint {
  if (micros === LONG_MAX || micros === LONG_MIN) return micros;
  const q = micros / 1000n;
  return micros < 0n && q * 1000n !== micros ? q - 1n : q;
}

/** timestamp (without time zone) → microseconds since 1970-01-01 00:00 of the same wall clock. */
export function parseTimestamp(text: string): bigint {
  return timestampMicros(text, false);
}

/** timestamptz → microseconds since the Unix epoch (UTC), whatever offset the text carries. */
export function parseTimestamptz(text: string): bigint {
  return timestampMicros(text, true);
}

// ---- interval --------------------------------------------------------------------------------

const POSTGRES_INTERVAL_PART = /^([+-]?\d+) (year|years|mon|mons|day|days)$/;
const POSTGRES_INTERVAL_TIME = /^([+-])?(\d+):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;

/**
 * interval → ISO-8601 duration in PostgreSQL's own `iso_8601` IntervalStyle form
 * (`P1Y2M3DT4H5M6.789S`, `PT0S`, signed components like `P-1Y-2M`). Text already in that style
 * passes through; the default `postgres` style (`1 year 2 mons 3 days 04:05:06.789`) is converted
 * to the identical string.
 */
export function intervalToIso(text: string): string {
  if (text.startsWith('P') || text.startsWith('-P')) return text;
  let years = 0;
  let months = 0;
  let days = 0;
  let timeNegative = false;
  let hours = 0;
  let minutes = 0;
  let seconds = '0';
  const tokens = text.split(' ');
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i] as string;
    const t = POSTGRES_INTERVAL_TIME.exec(token);
    if (t) {
      timeNegative = t[1] === '-';
      hours = Number(t[2]);
      minutes = Number(t[3]);
      seconds = t[5] ? `${Number(t[4])}.${t[5].replace(/0+$/, '')}`.replace(/\.$/, '') : String(Number(t[4]));
      continue;
    }
    const p = POSTGRES_INTERVAL_PART.exec(`${token} ${tokens[i + 1] ?? ''}`);
    if (!p) throw bad('interval', text);
    i++;
    const n = Number(p[1]);
    if (p[2]!.startsWith('year')) years = n;
    else if (p[2]!.startsWith('mon')) months = n;
    else days = n;
  }
  let out = 'P';
  if (years) out += `${years}Y`;
  if (months) out += `${months}M`;
  if (days) out += `${days}D`;
  if (hours || minutes || seconds !== '0') {
    const sign = timeNegative ? '-' : '';
    out += 'T';
    if (hours) out += `${sign}${hours}H`;
    if (minutes) out += `${sign}${minutes}M`;
    if (seconds !== '0') out += `${sign}${seconds}S`;
  }
  return out === 'P' ? 'PT0S' : out;
}

// ---- arrays ----------------------------------------------------------------------------------

export type ArrayText = Array<string | null | ArrayText>;

/**
 * PostgreSQL array text → nested JS arrays of element texts (null for an unquoted NULL).
 * Handles quoting, backslash escapes, multiple dimensions and a leading dimension decoration
 * (`[0:1]={1,2}`, whose lower bounds are dropped).
 */
export function parseArray(text: string, delimiter = ','): ArrayText {
  let pos = 0;
  if (text.startsWith('[')) {
    const eq = text.indexOf('=');
    if (eq < 0) throw bad('array', text);
    pos = eq + 1;
  }
  const fail = (): never => {
    throw bad('array', text);
  };
  const parseLevel = (): ArrayText => {
    if (text[pos] !== '{') fail();
    pos++;
    const out: ArrayText = [];
    if (text[pos] === '}') {
      pos++;
      return out;
    }
    while (true) {
      while (text[pos] === ' ') pos++;
      const c = text[pos];
      if (c === '{') {
        out.push(parseLevel());
      } else if (c === '"') {
        pos++;
        let s = '';
        while (true) {
          const ch = text[pos];
          if (ch === undefined) fail();
          if (ch === '\\') {
            if (pos + 1 >= text.length) fail();
            s += text[pos + 1];
            pos += 2;
          } else if (ch === '"') {
            pos++;
            break;
          } else {
            s += ch;
            pos++;
          }
        }
        out.push(s);
      } else {
        let s = '';
        let escaped = false;
        while (pos < text.length && text[pos] !== delimiter && text[pos] !== '}') {
          if (text[pos] === '\\') {
            if (pos + 1 >= text.length) fail();
            s += text[pos + 1];
            escaped = true;
            pos += 2;
          } else {
            s += text[pos];
            pos++;
          }
        }
        if (!escaped) s = s.trim();
        if (s === '' && !escaped) fail();
        out.push(!escaped && s.toUpperCase() === 'NULL' ? null : s);
      }
      while (text[pos] === ' ') pos++;
      if (text[pos] === delimiter) {
        pos++;
      } else if (text[pos] === '}') {
        pos++;
        return out;
      } else {
        fail();
      }
    }
  };
  const result = parseLevel();
  if (pos !== text.length) fail();
  return result;
}
