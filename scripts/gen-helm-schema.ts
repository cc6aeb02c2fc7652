// Writes the `config` part of helm/pgcdc/values.schema.json from schemas/config.schema.json (itself
// generated from src/config/schema.ts by scripts/gen-config-schema.ts), so the chart refuses at
// `helm lint`/`helm install` time what pgcdc would refuse when the pod starts (a port that is not
// a number, an unknown sslmode, a misspelt key). The rest of the values schema (image, Secret,
// pod settings) is the chart's own and stays hand-written in the same file.
// `--check`: exit 1 when the file is out of date (test/unit/helm.test.ts checks it too).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Json = Record<string, unknown>;

const root = fileURLToPath(new URL('..', import.meta.url));
export const CHART_SCHEMA_FILE = `${root}helm/pgcdc/values.schema.json`;
export const CONFIG_SCHEMA_FILE = `${root}schemas/config.schema.json`;

const SECRET_NOTE =
  ' In the chart: only a ${VAR} reference here; the value itself belongs in the Secret (existingSecret.keys).';

/**
 * Helm checks patterns with Go's RE2, which has no `\uXXXX` escape (ECMAScript's, which the config
 * schema uses): the same code point as `\x{XXXX}`, which RE2 reads and which means the same.
 */
function re2(node: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'pattern' && typeof v === 'string') out[k] = v.replace(/\\u([0-9a-fA-F]{4})/g, '\\x{$1}');
    else if (Array.isArray(v))
      out[k] = v.map((x: unknown) => (x && typeof x === 'object' ? re2(x as Json) : x));
    else if (v && typeof v === 'object') out[k] = re2(v as Json);
    else out[k] = v;
  }
  return out;
}

/** Sensitive leaves keep their type; the chart's template refuses them in clear with a clearer message. */
function chartSection(section: Json): Json {
  const properties: Json = {};
  for (const [key, node] of Object.entries((section.properties ?? {}) as Record<string, Json>)) {
    if (node.type === 'object' && node.properties) properties[key] = chartSection(node);
    else if (node.writeOnly)
      properties[key] = { ...node, description: `${String(node.description)}${SECRET_NOTE}` };
    else properties[key] = node;
  }
  return { ...section, properties };
}

/** The chart's values schema with `properties.config` derived from the config file's schema. */
export function chartValuesSchema(chart: Json, config: Json): Json {
  const { $schema: _ignored, ...settings } = (config.properties ?? {}) as Record<string, Json>;
  const section = chartSection(re2({ type: 'object', properties: settings }));
  const props = section.properties as Record<string, Json>;
  const http = props.http!;
  const httpProps = http.properties as Record<string, Json>;
  props.http = {
    ...http,
    properties: {
      ...httpProps,
      port: {
        ...httpProps.port,
        description: `${String(httpProps.port?.description)} Set by the chart from containerPort.`,
      },
    },
  };
  const chartProps = chart.properties as Record<string, Json>;
  return {
    ...chart,
    properties: {
      ...chartProps,
      config: {
        description:
          'The pgcdc configuration file (docs/configuration.md), non-secret settings. ' +
          'Generated from schemas/config.schema.json by scripts/gen-helm-schema.ts; do not edit. ' +
          'Only name is required here: the other required settings may come from PGCDC_* variables (existingSecret, extraEnv).',
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: props,
      },
    },
  };
}

/** The chart's values schema as it should be, from the config schema's text (default: the committed file). */
export function renderChartSchema(configSchemaText = readFileSync(CONFIG_SCHEMA_FILE, 'utf8')): string {
  const chart = JSON.parse(readFileSync(CHART_SCHEMA_FILE, 'utf8')) as Json;
  const config = JSON.parse(configSchemaText) as Json;
  return `${JSON.stringify(chartValuesSchema(chart, config), null, 2)}\n`;
}

if (import.meta.main) {
  const text = renderChartSchema();
  if (readFileSync(CHART_SCHEMA_FILE, 'utf8') === text) process.exit(0);
  if (process.argv.includes('--check')) {
    console.error(`${CHART_SCHEMA_FILE} is out of date: run node scripts/gen-helm-schema.ts`);
    process.exit(1);
  }
  writeFileSync(CHART_SCHEMA_FILE, text);
  console.log(`wrote ${CHART_SCHEMA_FILE}`);
}
