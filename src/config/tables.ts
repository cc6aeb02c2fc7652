// Table lists as users paste them from a table picker: `public.orders, sales."Order.Items"`.
import { ConfigError } from './errors.ts';

export interface TableRef {
  /** Exact schema name as stored in the catalog (quotes removed, unquoted names as written). */
  schema: string;
  /** Exact table name as stored in the catalog. */
  table: string;
}

/** PostgreSQL's NAMEDATALEN - 1. */
const MAX_IDENTIFIER_BYTES = 63;
const UNQUOTED = /^[A-Za-z_][A-Za-z0-9_$]*$/;
const PLAIN = /^[a-z_][a-z0-9_$]*$/;

/** Splits on commas that are not inside double quotes. */
function splitEntries(text: string): string[] {
  const entries: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      entries.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  entries.push(current);
  return entries.map((e) => e.trim()).filter((e) => e !== '');
}

type Parsed = { ok: true; name: string; rest: string } | { ok: false; error: string };

function parseIdentifier(text: string, what: 'schema' | 'table'): Parsed {
  if (text.startsWith('"')) {
    let name = '';
    let i = 1;
    for (;;) {
      if (i >= text.length)
        return { ok: false, error: `the quoted ${what} name has no closing double quote` };
      const ch = text[i]!;
      if (ch === '"') {
        if (text[i + 1] === '"') {
          name += '"';
          i += 2;
          continue;
        }
        break;
      }
      name += ch;
      i++;
    }
    if (name === '') return { ok: false, error: `the ${what} name is empty ("")` };
    return checkLength({ ok: true, name, rest: text.slice(i + 1) }, what);
  }
  const m = /^[^.\s"]*/.exec(text)!;
  const word = m[0];
  if (word === '') return { ok: false, error: `the ${what} name is missing` };
  if (!UNQUOTED.test(word)) {
    return {
      ok: false,
      error: `${what} name ${word} has characters that need double quotes (write "${word.replace(/"/g, '""')}")`,
    };
  }
  if (!PLAIN.test(word)) {
    return {
      ok: false,
      error:
        `unquoted ${what} name ${word} has upper-case letters, which PostgreSQL folds to lower case; ` +
        `write "${word}" in double quotes for the mixed-case name, or ${word.toLowerCase()}`,
    };
  }
  return checkLength({ ok: true, name: word, rest: text.slice(word.length) }, what);
}

function checkLength(p: Parsed, what: string): Parsed {
  if (p.ok && Buffer.byteLength(p.name) > MAX_IDENTIFIER_BYTES) {
    return { ok: false, error: `the ${what} name is longer than ${MAX_IDENTIFIER_BYTES} bytes` };
  }
  return p;
}

function parseEntry(entry: string): TableRef | string {
  const schema = parseIdentifier(entry, 'schema');
  if (!schema.ok) return schema.error;
  let rest = schema.rest.trimStart();
  if (!rest.startsWith('.')) {
    return rest === ''
      ? 'expected schema.table (e.g. public.orders), not a table name alone'
      : `expected a dot between schema and table, found ${JSON.stringify(rest)}`;
  }
  rest = rest.slice(1).trimStart();
  const table = parseIdentifier(rest, 'table');
  if (!table.ok) return table.error;
  const trailing = table.rest.trim();
  if (trailing !== '') {
    return trailing.startsWith('.')
      ? 'expected schema.table; a name with a dot in it needs double quotes (e.g. public."a.b")'
      : `unexpected ${JSON.stringify(trailing)} after the table name (separate entries with commas)`;
  }
  return { schema: schema.name, table: table.name };
}

/**
 * Parses a comma-separated list (or the entries of a list) of `schema.table` names without
 * throwing: the tables, de-duplicated and in order, and one message per bad entry.
 */
export function parseTableEntries(input: string | readonly string[]): {
  tables: TableRef[];
  problems: string[];
} {
  const entries = typeof input === 'string' ? splitEntries(input) : input.flatMap((e) => splitEntries(e));
  const tables: TableRef[] = [];
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    const result = parseEntry(entry);
    if (typeof result === 'string') {
      problems.push(`bad table entry '${entry}': ${result}`);
      continue;
    }
    const key = JSON.stringify([result.schema, result.table]);
    if (seen.has(key)) continue;
    seen.add(key);
    tables.push(result);
  }
  return { tables, problems };
}

/**
 * Parses `public.orders, "My Schema"."Order.Items"` into table references. Unquoted names must be
 * lower case (as PostgreSQL folds them); double quotes keep dots, spaces and capitals, with `""` for
 * a literal quote. Empty entries (a trailing comma) are ignored. Throws a ConfigError naming every
 * bad entry.
 */
export function parseTableList(text: string | readonly string[]): TableRef[] {
  const { tables, problems } = parseTableEntries(text);
  if (problems.length > 0) throw new ConfigError(problems, 'Invalid table list:');
  return tables;
}

function quoteIfNeeded(name: string): string {
  return PLAIN.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** The canonical text form of a table reference, quoted where needed: `public."Order.Items"`. */
export function formatTableRef(ref: TableRef): string {
  return `${quoteIfNeeded(ref.schema)}.${quoteIfNeeded(ref.table)}`;
}
