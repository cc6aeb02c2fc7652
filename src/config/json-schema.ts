// Generated artefacts of the configuration schema: the JSON Schema of the config file
// (schemas/config.schema.json) and the reference table of docs/configuration.md. Both are written
// by scripts/gen-config-schema.ts; a unit test fails when the committed copies are out of date.
import { BYTES_PATTERN, describeInt, formatBytes, type Leaf } from './formats.ts';
import { envVarFor, isLeaf, LEAVES, schema, type Section } from './schema.ts';

type Json = Record<string, unknown>;

/** A `${VAR}` reference: interpolated before the value is checked, so any setting may use one. */
const REFERENCE: Json = { type: 'string', pattern: '\\$\\{' };

function leafSchema(leaf: Leaf): Json {
  let s: Json;
  switch (leaf.format) {
    case 'pgcdc-string':
      s = { type: 'string' };
      if (leaf.pattern) s.pattern = leaf.pattern;
      if (leaf.maxLength !== undefined) s.maxLength = leaf.maxLength;
      break;
    case 'pgcdc-int': {
      const range: Json = { type: 'integer' };
      if (leaf.min !== undefined) range.minimum = leaf.min;
      if (leaf.max !== undefined) range.maximum = leaf.max;
      const specials = (leaf.special ?? []).map((n) => ({ const: n }));
      s = { anyOf: [...specials, range, REFERENCE] };
      break;
    }
    case 'pgcdc-bytes': {
      const n: Json = { type: 'integer', minimum: leaf.min ?? 0 };
      s = { anyOf: [n, { type: 'string', pattern: BYTES_PATTERN }, REFERENCE] };
      break;
    }
    case 'pgcdc-bool':
      s = { anyOf: [{ type: 'boolean' }, REFERENCE] };
      break;
    case 'pgcdc-enum':
      s = { anyOf: [{ enum: [...(leaf.values ?? [])] }, REFERENCE] };
      break;
    case 'pgcdc-list': {
      const item: Json = { type: 'string' };
      if (leaf.pattern) item.pattern = leaf.pattern;
      s = { anyOf: [{ type: 'array', items: item }, { type: 'string' }] };
      break;
    }
    case 'pgcdc-tables':
      s = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] };
      break;
  }
  const out: Json = { description: leafDescription(leaf), ...s };
  if (leaf.default !== null) out.default = leaf.default;
  if (leaf.sensitive) out.writeOnly = true;
  return out;
}

function leafDescription(leaf: Leaf): string {
  let text = leaf.doc;
  if (leaf.sensitive) text += ' Sensitive: never logged.';
  if (leaf.required) text += ' Required (here, or from the environment or a flag).';
  if (leaf.derived) text += ` Default: ${leaf.derived.replace(/`/g, '')}.`;
  return text;
}

function sectionSchema(section: Section, prefix: string): Json {
  const properties: Json = {};
  for (const [key, node] of Object.entries(section)) {
    const path = prefix ? `${prefix}.${key}` : key;
    properties[key] = isLeaf(node) ? leafSchema(node) : sectionSchema(node, path);
  }
  return { type: 'object', additionalProperties: false, properties };
}

/** JSON Schema (draft 2020-12) of a pgcdc config file. */
export function configJsonSchema(): Json {
  const root = sectionSchema(schema, '');
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'pgcdc configuration file',
    description:
      'Generated from src/config/schema.ts by scripts/gen-config-schema.ts; do not edit. ' +
      'Required settings are not marked required here because they may come from PGCDC_* environment variables or flags.',
    type: 'object',
    additionalProperties: false,
    properties: { $schema: { type: 'string' }, ...(root.properties as Json) },
  };
}

function mdDefault(leaf: Leaf): string {
  if (leaf.required) return '**required**';
  if (leaf.derived) return leaf.derived;
  if (leaf.default === null) return '(unset)';
  if (leaf.format === 'pgcdc-bytes') return `\`${leaf.default}\` (${formatBytes(leaf.default as number)})`;
  if (Array.isArray(leaf.default)) return `\`${(leaf.default as string[]).join(',')}\``;
  if (leaf.default === '') return '`""`';
  return `\`${String(leaf.default)}\``;
}

function mdMeaning(leaf: Leaf): string {
  let text = leaf.doc;
  if (leaf.format === 'pgcdc-enum')
    text += ` One of: ${(leaf.values ?? []).map((v) => `\`${v}\``).join(', ')}.`;
  if (leaf.format === 'pgcdc-int') text += ` ${describeInt(leaf).replace(/^./, (c) => c.toUpperCase())}.`;
  if (leaf.sensitive) text += ' **Sensitive.**';
  return text.replace(/\|/g, '\\|');
}

export const REFERENCE_BEGIN = '<!-- BEGIN GENERATED REFERENCE (scripts/gen-config-schema.ts) -->';
export const REFERENCE_END = '<!-- END GENERATED REFERENCE -->';

/** The settings reference table of docs/configuration.md (between the markers). */
export function configReferenceMarkdown(): string {
  const rows = LEAVES.map(
    ({ path, leaf }) => `| \`${path}\` | \`${envVarFor(path)}\` | ${mdDefault(leaf)} | ${mdMeaning(leaf)} |`,
  );
  return [
    REFERENCE_BEGIN,
    '',
    '| Path (file key / `--flag`) | Environment variable | Default | Meaning |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    REFERENCE_END,
  ].join('\n');
}

/** Replaces the generated section of a markdown document (which must contain both markers). */
export function replaceReference(markdown: string): string {
  const begin = markdown.indexOf(REFERENCE_BEGIN);
  const end = markdown.indexOf(REFERENCE_END);
  if (begin < 0 || end < begin)
    throw new Error('docs/configuration.md: generated reference markers not found');
  return markdown.slice(0, begin) + configReferenceMarkdown() + markdown.slice(end + REFERENCE_END.length);
}
