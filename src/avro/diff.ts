// What changed between two versions of a table's Key or Envelope schema, in words a user can
// act on ("column v: int → string"). Used when the schema registry refuses a new version, so the
// error names the column and the change rather than only the subject.

interface FieldJson {
  name: string;
  type: unknown;
  'pg.name'?: string;
}

/** The row fields of a Key record or of an Envelope's Value record (`before` branch). */
export function rowFieldsOf(schema: unknown): FieldJson[] | null {
  if (typeof schema !== 'object' || schema === null) return null;
  const rec = schema as { name?: string; fields?: FieldJson[] };
  if (!Array.isArray(rec.fields)) return null;
  const before = rec.fields.find((f) => f.name === 'before');
  if (rec.name === 'Envelope' && before) {
    const branch = Array.isArray(before.type) ? before.type.find((t) => typeof t === 'object') : before.type;
    return rowFieldsOf(branch);
  }
  return rec.fields;
}

/** A short rendering of an Avro type: `int`, `long(timestamp-micros)`, `bytes(decimal 10,2)`, `array<int>`. */
export function describeAvroType(type: unknown): string {
  if (typeof type === 'string') return type;
  if (Array.isArray(type)) {
    const branches = type.filter((t) => t !== 'null');
    const inner = branches.map(describeAvroType).join(' | ');
    return branches.length === type.length ? inner : `${inner}?`;
  }
  if (typeof type === 'object' && type !== null) {
    const t = type as {
      type: unknown;
      logicalType?: string;
      precision?: number;
      scale?: number;
      items?: unknown;
    };
    if (t.type === 'array') return `array<${describeAvroType(t.items)}>`;
    const base = describeAvroType(t.type);
    if (t.logicalType === 'decimal') return `${base}(decimal ${t.precision ?? '?'},${t.scale ?? 0})`;
    return t.logicalType ? `${base}(${t.logicalType})` : base;
  }
  return String(type);
}

const plain = (type: unknown): string => describeAvroType(type).replace(/\?$/, '');

/**
 * The differences between the row fields of two schema versions (Key or Envelope JSON), one
 * phrase each, in field order: `column x added`, `column y dropped`, `column v: int → string`,
 * `column a renamed to b` (a drop and an add of the same type at the same position), or
 * `key columns (id) → (id, k)` for Key schemas. Empty when the row fields are the same.
 */
export function describeSchemaChange(previous: unknown, next: unknown, kind: 'key' | 'value'): string[] {
  const before = rowFieldsOf(previous) ?? [];
  const after = rowFieldsOf(next) ?? [];
  const colName = (f: FieldJson): string => f['pg.name'] ?? f.name;
  if (kind === 'key') {
    const a = before.map(colName);
    const b = after.map(colName);
    const out: string[] = [];
    if (a.join('\u0000') !== b.join('\u0000')) out.push(`key columns (${a.join(', ')}) → (${b.join(', ')})`);
    for (const f of after) {
      const old = before.find((o) => o.name === f.name);
      if (old && plain(old.type) !== plain(f.type))
        out.push(`key column ${colName(f)}: ${plain(old.type)} → ${plain(f.type)}`);
    }
    return out;
  }
  const out: string[] = [];
  const oldNames = new Set(before.map((f) => f.name));
  const newNames = new Set(after.map((f) => f.name));
  const dropped = before.filter((f) => !newNames.has(f.name));
  const added = after.filter((f) => !oldNames.has(f.name));
  const renamed = new Set<FieldJson>();
  for (const d of dropped) {
    const i = before.indexOf(d);
    const candidate = after[i];
    if (candidate && added.includes(candidate) && plain(candidate.type) === plain(d.type)) {
      out.push(`column ${colName(d)} renamed to ${colName(candidate)}`);
      renamed.add(d).add(candidate);
    }
  }
  for (const d of dropped) if (!renamed.has(d)) out.push(`column ${colName(d)} dropped`);
  for (const f of after) {
    if (renamed.has(f)) continue;
    const old = before.find((o) => o.name === f.name);
    if (!old) out.push(`column ${colName(f)} added (${plain(f.type)})`);
    else if (plain(old.type) !== plain(f.type))
      out.push(`column ${colName(f)}: ${plain(old.type)} → ${plain(f.type)}`);
  }
  return out;
}
