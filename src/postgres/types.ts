// pg_type lookups: what src/avro needs to map a column whose type is not a built-in one
// (enums, domains, arrays of those, extension types such as citext).
import type pg from 'pg';
import type { PgTypeInfo, PgTypeKind } from '../avro/types.ts';

const KIND: Record<string, PgTypeKind> = {
  b: 'base',
  e: 'enum',
  d: 'domain',
  c: 'composite',
  r: 'range',
  m: 'multirange',
  p: 'pseudo',
};

interface TypeRow {
  oid: string;
  typname: string;
  nspname: string;
  typtype: string;
  typcategory: string;
  typelem: string;
  typbasetype: string;
  typtypmod: string;
  typdelim: string;
  labels: string | null;
}

/** Type information by OID, loaded on demand and cached for the life of the worker. */
export class TypeCatalog {
  #types = new Map<number, PgTypeInfo>();
  #client: pg.Client;

  constructor(client: pg.Client) {
    this.#client = client;
  }

  readonly lookup = (oid: number): PgTypeInfo | undefined => this.#types.get(oid);

  /** Loads the types of these OIDs and everything they refer to (array elements, domain bases). */
  async load(oids: Iterable<number>): Promise<void> {
    let missing = [...new Set(oids)].filter((o) => !this.#types.has(o));
    const rows = new Map<number, TypeRow>();
    while (missing.length > 0) {
      const { rows: found } = await this.#client.query<TypeRow>(
        `SELECT t.oid::int8 AS oid, t.typname, n.nspname, t.typtype, t.typcategory, t.typelem::int8 AS typelem,
                t.typbasetype::int8 AS typbasetype, t.typtypmod, t.typdelim,
                (SELECT string_agg(e.enumlabel, E'\\x1f' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE t.oid = ANY($1::oid[])`,
        [`{${missing.join(',')}}`],
      );
      const next: number[] = [];
      for (const r of found) {
        rows.set(Number(r.oid), r);
        for (const ref of [Number(r.typelem), Number(r.typbasetype)]) {
          if (ref !== 0 && !rows.has(ref) && !this.#types.has(ref)) next.push(ref);
        }
      }
      missing = next;
    }
    const build = (oid: number): PgTypeInfo | undefined => {
      const known = this.#types.get(oid);
      if (known) return known;
      const r = rows.get(oid);
      if (!r) return undefined;
      const isArray = r.typcategory === 'A' && Number(r.typelem) !== 0;
      const info: PgTypeInfo = {
        oid,
        name: r.typname,
        schema: r.nspname,
        kind: isArray ? 'array' : (KIND[r.typtype] ?? 'base'),
      };
      this.#types.set(oid, info);
      if (isArray) {
        info.elem = build(Number(r.typelem));
        if (info.elem?.delimiter === undefined && info.elem)
          info.elem.delimiter = rows.get(info.elem.oid)?.typdelim;
      }
      if (info.kind === 'domain') {
        info.base = build(Number(r.typbasetype));
        info.typeMod = Number(r.typtypmod);
      }
      if (info.kind === 'enum') info.enumLabels = r.labels ? r.labels.split('\x1f') : [];
      info.delimiter = r.typdelim;
      return info;
    };
    for (const oid of rows.keys()) build(oid);
  }

  /**
   * Constant column defaults of a table, by column name, in PostgreSQL's text output format (the
   * session's DateStyle ISO, TimeZone UTC, IntervalStyle iso_8601). A default counts as constant
   * when its expression is a literal with casts (`7`, `'x'::text`, `'2024-01-01'::date`); anything
   * else (`now()`, `nextval(...)`, generated columns) has none, as in Debezium.
   */
  async columnDefaults(relationOid: number): Promise<Map<string, string>> {
    const { rows } = await this.#client.query<{ attname: string; expr: string }>(
      `SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) AS expr
         FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''`,
      [relationOid],
    );
    const out = new Map<string, string>();
    for (const r of rows) {
      if (!CONSTANT_DEFAULT.test(r.expr)) continue;
      // Evaluating a literal with casts has no side effects; ::text gives the type's output form.
      const { rows: v } = await this.#client.query<{ v: string | null }>(`SELECT (${r.expr})::text AS v`);
      const text = v[0]?.v;
      if (typeof text === 'string') out.set(r.attname, text);
    }
    return out;
  }
}

/** A literal (quoted string, number, boolean), optionally parenthesised and followed by casts. */
const CONSTANT_DEFAULT =
  /^\(*(?:'(?:[^']|'')*'|-?\d+(?:\.\d+)?(?:e[+-]?\d+)?|true|false)\)*(?:::(?:"[^"]+"|[a-z_][a-z0-9_ .]*(?:\([0-9, ]+\))?(?:\[\])*))*\)*$/i;
