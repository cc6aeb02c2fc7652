// Writes schemas/config.schema.json and the settings table of docs/configuration.md from the
// configuration schema (src/config/schema.ts). `--check`: exit 1 when either is out of date.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as prettier from 'prettier';
import { configJsonSchema, replaceReference } from '../src/config/json-schema.ts';
import { CHART_SCHEMA_FILE, renderChartSchema } from './gen-helm-schema.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const schemaFile = `${root}schemas/config.schema.json`;
const docsFile = `${root}docs/configuration.md`;
const check = process.argv.includes('--check');

const options = (await prettier.resolveConfig(schemaFile)) ?? {};
const json = await prettier.format(JSON.stringify(configJsonSchema(), null, 2), {
  ...options,
  filepath: schemaFile,
});
const docs = replaceReference(readFileSync(docsFile, 'utf8'));

let stale = false;
// The Helm chart's values schema types `config` from this schema (scripts/gen-helm-schema.ts).
for (const [file, text] of [
  [schemaFile, json],
  [docsFile, docs],
  [CHART_SCHEMA_FILE, renderChartSchema(json)],
] as const) {
  let current = '';
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    // missing: written below
  }
  if (current === text) continue;
  if (check) {
    console.error(`${file} is out of date: run node scripts/gen-config-schema.ts`);
    stale = true;
  } else {
    writeFileSync(file, text);
    console.log(`wrote ${file}`);
  }
}
if (stale) process.exit(1);
