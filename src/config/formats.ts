// Value formats of the configuration schema: how each kind of setting is coerced from text (env
// vars, flags, `${VAR}` interpolation) and checked. Registered with convict under `pgcdc-*` names
// so convict's own coercion uses them; loadConfig calls checkValue itself to report every problem.
import convict from 'convict';
import { parseTableEntries } from './tables.ts';

export type FormatName =
  'pgcdc-string' | 'pgcdc-int' | 'pgcdc-bytes' | 'pgcdc-bool' | 'pgcdc-enum' | 'pgcdc-list' | 'pgcdc-tables';

/** One setting. Also a valid convict schema node (convict keeps the extra keys). */
export interface Leaf {
  doc: string;
  format: FormatName;
  /** null: unset (required settings, optional settings, derived defaults). */
  default: unknown;
  required?: boolean;
  sensitive?: boolean;
  /** Documentation of a default computed from other settings (e.g. the slot name). */
  derived?: string;
  min?: number;
  max?: number;
  /** Integers allowed outside min..max (e.g. -1 for "broker default"). */
  special?: number[];
  values?: readonly string[];
  /** For strings and list entries: a regular expression (valid in JS and JSON Schema). */
  pattern?: string;
  /** What the pattern means, for error messages ("must be ..."). */
  expect?: string;
  maxLength?: number;
  minItems?: number;
  /** Extra check of a string (or each list entry); returns what was expected when it fails. */
  check?: (value: string) => string | undefined;
}

const INT_TEXT = /^[+-]?\d+$/;
const BYTES_TEXT = /^(\d+)\s*(B|KiB|MiB|GiB|TiB)?$/i;
const UNIT: Record<string, number> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };
export const BYTES_PATTERN = '^\\d+\\s*([Bb]|[KkMmGgTt]i[Bb])?$';

export function parseBytes(text: string): number | undefined {
  const m = BYTES_TEXT.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * UNIT[(m[2] ?? 'b').toLowerCase()]!;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Human form of a byte count, e.g. 64 MiB. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return `${n} bytes`;
}

const TRUE = new Set(['true', 'yes', 'on', '1']);
const FALSE = new Set(['false', 'no', 'off', '0']);

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Converts text (from an env var, a flag or interpolation) to the setting's type when it can. */
export const coercers: Record<FormatName, (text: string) => unknown> = {
  'pgcdc-string': (t) => t,
  'pgcdc-int': (t) => (INT_TEXT.test(t.trim()) ? Number(t.trim()) : t),
  'pgcdc-bytes': (t) => parseBytes(t) ?? t,
  'pgcdc-bool': (t) => {
    const v = t.trim().toLowerCase();
    return TRUE.has(v) ? true : FALSE.has(v) ? false : t;
  },
  'pgcdc-enum': (t) => t.trim().toLowerCase(),
  'pgcdc-list': splitList,
  'pgcdc-tables': (t) => t,
};

export function describeInt(leaf: Leaf): string {
  const { min, max, special } = leaf;
  const range =
    min !== undefined && max !== undefined
      ? `an integer between ${min} and ${max}`
      : min !== undefined
        ? `an integer >= ${min}`
        : max !== undefined
          ? `an integer <= ${max}`
          : 'an integer';
  return special?.length ? `${special.join(' or ')} or ${range}` : range;
}

function describeString(leaf: Leaf): string {
  return leaf.expect ?? (leaf.pattern ? `a string matching ${leaf.pattern}` : 'a string');
}

function checkString(leaf: Leaf, v: string): string | undefined {
  if (leaf.pattern && !new RegExp(leaf.pattern, 'u').test(v)) return `must be ${describeString(leaf)}`;
  if (leaf.maxLength !== undefined && v.length > leaf.maxLength) {
    return `must be at most ${leaf.maxLength} characters long`;
  }
  const extra = leaf.check?.(v);
  return extra === undefined ? undefined : `must be ${extra}`;
}

const NOT_A_STRING = 'must be a string (quote the value in YAML)';

/** Returns what was expected when `value` is not valid for `leaf` (null means unset: not checked here). */
export function checkValue(leaf: Leaf, value: unknown): string | undefined {
  switch (leaf.format) {
    case 'pgcdc-string':
      if (typeof value !== 'string') return NOT_A_STRING;
      return checkString(leaf, value);
    case 'pgcdc-int': {
      const ok =
        typeof value === 'number' &&
        Number.isSafeInteger(value) &&
        (leaf.special?.includes(value) ||
          ((leaf.min === undefined || value >= leaf.min) && (leaf.max === undefined || value <= leaf.max)));
      return ok ? undefined : `must be ${describeInt(leaf)}`;
    }
    case 'pgcdc-bytes': {
      const ok =
        typeof value === 'number' &&
        Number.isSafeInteger(value) &&
        (leaf.min === undefined || value >= leaf.min) &&
        (leaf.max === undefined || value <= leaf.max);
      return ok
        ? undefined
        : `must be a number of bytes >= ${leaf.min ?? 0}: an integer, or with a unit like 512KiB, 64MiB, 1GiB`;
    }
    case 'pgcdc-bool':
      return typeof value === 'boolean' ? undefined : 'must be true or false';
    case 'pgcdc-enum':
      return typeof value === 'string' && leaf.values?.includes(value)
        ? undefined
        : `must be one of ${(leaf.values ?? []).join(', ')}`;
    case 'pgcdc-list': {
      if (!Array.isArray(value)) return 'must be a list of strings or a comma-separated string';
      for (const item of value as unknown[]) {
        if (typeof item !== 'string')
          return `must be a list of strings (entry ${JSON.stringify(item)} is not)`;
        const bad = checkString(leaf, item);
        if (bad !== undefined) return `entry ${JSON.stringify(item)} ${bad}`;
      }
      if (leaf.minItems !== undefined && value.length < leaf.minItems) {
        return `must have at least ${leaf.minItems} ${leaf.minItems === 1 ? 'entry' : 'entries'}`;
      }
      return undefined;
    }
    case 'pgcdc-tables': {
      if (typeof value !== 'string' && !(Array.isArray(value) && value.every((e) => typeof e === 'string'))) {
        return 'must be a comma-separated string of schema.table names, or a list of them';
      }
      const { problems } = parseTableEntries(value as string | string[]);
      return problems.length > 0 ? problems.join('; ') : undefined;
    }
  }
}

let registered = false;

/** Registers the pgcdc-* formats with convict (its format registry is global). Idempotent. */
export function registerFormats(): void {
  if (registered) return;
  registered = true;
  for (const name of Object.keys(coercers) as FormatName[]) {
    convict.addFormat({
      name,
      coerce: coercers[name],
      validate(value: unknown, schema: convict.SchemaObj) {
        if (value === null && !schema.required) return;
        const problem = checkValue(schema as unknown as Leaf, value);
        if (problem !== undefined) throw new Error(problem);
      },
    });
  }
}
