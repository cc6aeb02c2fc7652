// Avro names from PostgreSQL identifiers. Avro names must match [A-Za-z_][A-Za-z0-9_]*; PostgreSQL
// identifiers can hold almost anything (quoted identifiers), so every name passes through here.
// The rule is documented in docs/types.md ("Name sanitising") and must stay deterministic:
// registered schemas depend on it.

const VALID_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const INVALID_CHAR = /[^A-Za-z0-9_]/g;

/**
 * Sanitises one identifier into a valid Avro name: every character outside [A-Za-z0-9_] (each
 * UTF-16 code unit, so non-ASCII letters too) becomes `_`; a leading digit gets a `_` prefix; the
 * empty string becomes `_`.
 */
export function avroName(pgName: string): string {
  if (VALID_NAME.test(pgName)) return pgName;
  let name = pgName.replace(INVALID_CHAR, '_');
  if (name === '' || (name.charCodeAt(0) >= 48 && name.charCodeAt(0) <= 57)) name = `_${name}`;
  return name;
}

/** True when `name` is already a valid Avro name (sanitising leaves it unchanged). */
export function isValidAvroName(name: string): boolean {
  return VALID_NAME.test(name);
}

/**
 * The Avro namespace for a table: the topic prefix split on `.`, then the schema and table, each
 * component sanitised with {@link avroName}. A dot inside a schema or table name does not create
 * a namespace level: it becomes `_` like any other invalid character.
 */
export function avroNamespace(topicPrefix: string, schema: string, table: string): string {
  return [...topicPrefix.split('.').map(avroName), avroName(schema), avroName(table)].join('.');
}

/**
 * Field names for a record's columns, in column order, unique and valid.
 *
 * Rule (stable under added and dropped columns as far as possible):
 * 1. A column whose name is already a valid Avro name keeps it, always.
 * 2. Every other column, in column order, gets `avroName(name)`; if that is taken (by a column
 *    from step 1 or by an earlier column from step 2), it gets `<sanitised>_2`, `_3`, ... — the
 *    first one not taken.
 */
export function assignFieldNames(pgNames: readonly string[]): string[] {
  const taken = new Set<string>();
  for (const n of pgNames) if (VALID_NAME.test(n)) taken.add(n);
  return pgNames.map((n) => {
    if (VALID_NAME.test(n)) return n;
    const base = avroName(n);
    let candidate = base;
    for (let i = 2; taken.has(candidate); i++) candidate = `${base}_${i}`;
    taken.add(candidate);
    return candidate;
  });
}
