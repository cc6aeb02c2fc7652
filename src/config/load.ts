// loadConfig: config file (YAML or JSON, with ${VAR} interpolation) < PGCDC_* env vars < --flags,
// coerced by convict, validated here so that every problem is reported at once.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import convict from 'convict';
import { parseDocument } from 'yaml';
import { ConfigError } from './errors.ts';
import { checkValue, registerFormats } from './formats.ts';
import { interpolate } from './interpolate.ts';
import { defaultPublicationName, defaultSlotName } from './names.ts';
import {
  buildConvictSchema,
  isLeaf,
  LEAF_BY_PATH,
  LEAVES,
  schema,
  SENSITIVE_PATHS,
  type LeafInfo,
  type Section,
} from './schema.ts';
import { closest } from './suggest.ts';
import { parseTableEntries, type TableRef } from './tables.ts';
import type { PgcdcConfig } from './types.ts';

export interface LoadConfigOptions {
  /** Path of a .yaml, .yml or .json config file. */
  file?: string;
  /** Environment for PGCDC_* variables and ${VAR} interpolation; default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * Command-line arguments; `--<path>=<value>` / `--<path> <value>` set a setting (e.g.
   * --postgres.host=db). Arguments that are not settings (like --config, or a sub-command) are
   * left alone. Default: none.
   */
  args?: readonly string[];
}

export const REDACTED = '[redacted]';

type Plain = Record<string, unknown>;

function isPlainObject(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `a ${typeof v}`;
}

function render(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// ---- file ---------------------------------------------------------------------------------------

function readConfigFile(file: string): unknown {
  const ext = extname(file).toLowerCase();
  if (ext !== '.yaml' && ext !== '.yml' && ext !== '.json') {
    throw new ConfigError([`config file ${file}: unsupported extension "${ext}" (use .yaml, .yml or .json)`]);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'not found'
        : code === 'EACCES'
          ? 'cannot be read (permission denied)'
          : code === 'EISDIR'
            ? 'is a directory'
            : `cannot be read (${code ?? (err as Error).message})`;
    throw new ConfigError([`config file ${file}: ${why}`]);
  }
  // Parser messages are reduced to their first line: the rest quotes the file, which may hold secrets.
  if (ext === '.json') {
    try {
      return text.trim() === '' ? {} : JSON.parse(text);
    } catch (err) {
      const m = /line (\d+) column (\d+)/.exec((err as Error).message);
      const where = m ? ` at line ${m[1]}, column ${m[2]}` : '';
      throw new ConfigError([`config file ${file}: not valid JSON${where}`]);
    }
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const first = (e.message.split('\n')[0] ?? '').replace(/:$/, '');
        return `config file ${file}: not valid YAML: ${first}`;
      }),
    );
  }
  try {
    return doc.toJS({ maxAliasCount: 1000 }) ?? {};
  } catch (err) {
    throw new ConfigError([`config file ${file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
}

// ---- flags --------------------------------------------------------------------------------------

const BOOL_WORDS = /^(true|false|yes|no|on|off|1|0)$/i;
const SECTIONS = new Set(Object.keys(schema).filter((k) => !isLeaf((schema as Section)[k]!)));

function parseFlags(args: readonly string[], problems: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') break;
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    let key = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let value: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    let info = LEAF_BY_PATH.get(key);
    if (!info && key.startsWith('no-') && value === undefined) {
      const negated = LEAF_BY_PATH.get(key.slice(3));
      if (negated?.leaf.format === 'pgcdc-bool') {
        info = negated;
        key = key.slice(3);
        value = 'false';
      }
    }
    if (!info) {
      const section = key.split('.')[0] ?? '';
      if (key.includes('.') && (SECTIONS.has(section) || closest(section, SECTIONS) !== undefined)) {
        const guess = closest(key, LEAF_BY_PATH.keys());
        problems.push(`--${key}: unknown setting${guess ? ` (did you mean --${guess}?)` : ''}`);
      }
      continue;
    }
    if (value === undefined) {
      const next = args[i + 1];
      if (info.leaf.format === 'pgcdc-bool') {
        if (next !== undefined && BOOL_WORDS.test(next)) {
          value = next;
          i++;
        } else {
          value = 'true';
        }
      } else if (next !== undefined && !next.startsWith('--')) {
        value = next;
        i++;
      } else {
        problems.push(`--${key}: needs a value (--${key}=<value>)`);
        continue;
      }
    }
    flags.set(key, value);
  }
  return flags;
}

// ---- file contents: unknown keys, interpolation -------------------------------------------------

interface FileWalk {
  env: NodeJS.ProcessEnv;
  flags: Map<string, string>;
  problems: string[];
  /** Paths whose interpolation failed (already reported; not validated again). */
  failed: Set<string>;
  /** Sensitive values seen in the file (before and after interpolation), to keep out of messages. */
  secrets: Set<string>;
}

function suggestKey(key: string, path: string, section: Section): string {
  const sibling = closest(key, Object.keys(section));
  if (sibling !== undefined) return ` (did you mean ${path.replace(/[^.]*$/, sibling)}?)`;
  const elsewhere = LEAVES.filter((l) => closest(key, [l.path.split('.').pop()!]) !== undefined).map(
    (l) => l.path,
  );
  if (elsewhere.length > 0 && elsewhere.length <= 3) return ` (did you mean ${elsewhere.join(' or ')}?)`;
  return '';
}

function interpolateLeaf(value: unknown, info: LeafInfo, w: FileWalk): unknown {
  if (typeof value === 'string') {
    const sensitive = info.leaf.sensitive === true;
    const result = interpolate(value, w.env);
    if (sensitive && result.missing.length + result.malformed.length === 0 && !value.includes('${')) {
      w.secrets.add(value);
    }
    if (sensitive) w.secrets.add(result.value);
    const overridden = w.flags.has(info.path) || w.env[info.env] !== undefined;
    if (!overridden) {
      if (result.missing.length + result.malformed.length > 0) w.failed.add(info.path);
      for (const name of result.missing) {
        w.problems.push(
          `${info.path}: environment variable ${name} is not set (the config file refers to it; ` +
            `write \${${name}:-default} for a default)`,
        );
      }
      for (const text of result.malformed) {
        const shown = sensitive ? '' : ` ${text}`;
        w.problems.push(
          `${info.path}: malformed reference${shown} (expected \${NAME} or \${NAME:-default}; $\${ stands for a literal \${)`,
        );
      }
    }
    return result.value;
  }
  if (Array.isArray(value)) return value.map((item) => interpolateLeaf(item, info, w));
  return value;
}

function walkFile(node: Plain, section: Section, prefix: string, w: FileWalk): Plain {
  const out: Plain = {};
  for (const [key, value] of Object.entries(node)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (path === '$schema') continue;
    const sub = Object.hasOwn(section, key) ? section[key] : undefined;
    if (sub === undefined) {
      w.problems.push(`${path}: unknown setting${suggestKey(key, path, section)}`);
      continue;
    }
    if (value === null || value === undefined) continue; // an empty value means the default
    if (isLeaf(sub)) {
      const info = LEAF_BY_PATH.get(path)!;
      out[key] = interpolateLeaf(value, info, w);
    } else if (isPlainObject(value)) {
      out[key] = walkFile(value, sub, path, w);
    } else {
      w.problems.push(
        `${path}: must be a mapping of settings (${Object.keys(sub).join(', ')}), not ${typeName(value)}`,
      );
    }
  }
  return out;
}

// ---- validation ---------------------------------------------------------------------------------

function getPath(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const k of path.split('.')) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function isUnset(v: unknown): boolean {
  return v === null || v === undefined || (typeof v === 'string' && v.trim() === '');
}

/**
 * Loads, merges and validates the configuration. Throws a ConfigError listing every problem (by
 * setting path, with what was expected); sensitive values never appear in it.
 */
export function loadConfig(options: LoadConfigOptions = {}): PgcdcConfig {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  const secrets = new Set<string>();

  const flags = parseFlags(options.args ?? [], problems);

  const walk: FileWalk = { env, flags, problems, failed: new Set(), secrets };
  let fileValues: Plain = {};
  if (options.file !== undefined) {
    const raw = readConfigFile(options.file);
    if (!isPlainObject(raw)) {
      throw new ConfigError([
        `config file ${options.file}: must contain a mapping of settings, not ${typeName(raw)}`,
      ]);
    }
    fileValues = walkFile(raw, schema, '', walk);
  }

  registerFormats();
  const conf = convict(buildConvictSchema() as convict.Schema<Plain>, { env, args: [] });
  conf.load(fileValues); // overlays the file, then re-applies the environment
  for (const [path, value] of flags) conf.set(path, value);
  const merged = conf.getProperties();

  const sourceOf = (info: LeafInfo): string =>
    flags.has(info.path) ? ` from ${info.flag}` : env[info.env] !== undefined ? ` from ${info.env}` : '';

  const resolved = new Map<string, unknown>();
  for (const info of LEAVES) {
    const { path, leaf } = info;
    if (walk.failed.has(path)) continue;
    let value = getPath(merged, path);
    if (leaf.sensitive && typeof value === 'string') secrets.add(value);
    if (leaf.default === null && (isUnset(value) || (Array.isArray(value) && value.length === 0)))
      value = undefined;
    if (value === undefined) {
      if (leaf.required) {
        problems.push(
          `${path}: required (set it in the config file, with ${info.env}, or with ${info.flag})`,
        );
      }
      continue;
    }
    if (leaf.format === 'pgcdc-tables' && (typeof value === 'string' || Array.isArray(value))) {
      const entries = Array.isArray(value) ? value : [value];
      if (entries.every((e) => typeof e === 'string')) {
        const parsed = parseTableEntries(entries as string[]);
        for (const p of parsed.problems) problems.push(`${path}: ${p}${sourceOf(info)}`);
        if (parsed.problems.length === 0) resolved.set(path, parsed.tables);
        continue;
      }
    }
    const bad = checkValue(leaf, value);
    if (bad !== undefined) {
      const src = sourceOf(info);
      const got = leaf.sensitive ? (src ? ` (value not shown;${src})` : '') : ` (got ${render(value)}${src})`;
      problems.push(`${path}: ${bad}${got}`);
      continue;
    }
    resolved.set(path, value);
  }

  crossFieldChecks(resolved, problems);

  if (problems.length > 0) throw new ConfigError(scrub(problems, secrets));
  return build(resolved);
}

function crossFieldChecks(r: Map<string, unknown>, problems: string[]): void {
  const has = (path: string) => r.has(path);
  const bad = (path: string) =>
    LEAF_BY_PATH.get(path)!.leaf.required === true || problems.some((p) => p.startsWith(`${path}:`));
  const need = (path: string, when: string) => {
    if (!has(path) && !bad(path)) problems.push(`${path}: required when ${when}`);
  };

  if (r.get('ssh.enabled') === true) {
    need('ssh.host', 'ssh.enabled is true');
    need('ssh.user', 'ssh.enabled is true');
    need('ssh.privateKey', 'ssh.enabled is true');
    if (
      !has('ssh.hostKeyFingerprint') &&
      r.get('ssh.acceptUnknownHostKey') !== true &&
      !bad('ssh.hostKeyFingerprint')
    ) {
      problems.push(
        'ssh.hostKeyFingerprint: required when ssh.enabled is true, to verify the bastion ' +
          '(from `ssh-keygen -lf` on its host key); or set ssh.acceptUnknownHostKey: true to skip verification (insecure)',
      );
    }
  }

  const mechanism = r.get('kafka.sasl.mechanism');
  if (typeof mechanism === 'string' && mechanism !== 'none') {
    need('kafka.sasl.username', `kafka.sasl.mechanism is ${mechanism}`);
    need('kafka.sasl.password', `kafka.sasl.mechanism is ${mechanism}`);
  }

  for (const [cert, key] of [
    ['postgres.sslCert', 'postgres.sslKey'],
    ['kafka.ssl.cert', 'kafka.ssl.key'],
  ] as const) {
    if (has(cert)) need(key, `${cert} is set`);
    if (has(key)) need(cert, `${key} is set`);
  }

  if (r.get('heartbeat.walCriticalAction') === 'stop' && r.get('heartbeat.walCriticalBytes') === 0) {
    problems.push(
      'heartbeat.walCriticalAction: stop needs a critical level; set heartbeat.walCriticalBytes above 0 (e.g. 10GiB)',
    );
  }

  if (r.get('capture.method') === 'xmin' && r.get('delivery.mode') === 'exactly-once') {
    problems.push(
      'delivery.mode: exactly-once cannot be combined with capture.method xmin (a poll reads a row again whenever its transaction was still running at the last poll, so no change is delivered exactly once); use delivery.mode at-least-once',
    );
  }

  if (has('registry.username')) need('registry.password', 'registry.username is set');
  if (has('registry.password')) need('registry.username', 'registry.password is set');
  if (has('registry.token') && (has('registry.username') || has('registry.password'))) {
    problems.push(
      'registry.token: cannot be combined with registry.username/registry.password (use a bearer token or basic auth)',
    );
  }
}

/** Removes every sensitive value from the messages, whatever field it ended up in (in any letter case). */
function scrub(problems: string[], secrets: Set<string>): string[] {
  const values = [...secrets].filter((s) => s.trim().length >= 3).sort((a, b) => b.length - a.length);
  if (values.length === 0) return problems;
  const pattern = new RegExp(values.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gi');
  return problems.map((p) => p.replace(pattern, REDACTED));
}

function build(r: Map<string, unknown>): PgcdcConfig {
  const v = <T>(path: string): T => r.get(path) as T;
  const opt = (path: string): string | undefined => r.get(path) as string | undefined;
  const name = v<string>('name');
  return {
    name,
    postgres: {
      host: v('postgres.host'),
      port: v('postgres.port'),
      database: v('postgres.database'),
      user: v('postgres.user'),
      password: v('postgres.password'),
      schemas: v('postgres.schemas'),
      sslmode: v('postgres.sslmode'),
      sslRootCert: opt('postgres.sslRootCert'),
      sslCert: opt('postgres.sslCert'),
      sslKey: opt('postgres.sslKey'),
      sslKeyPassword: opt('postgres.sslKeyPassword'),
      connectTimeoutMs: v('postgres.connectTimeoutMs'),
      replicationTimeoutMs: v('postgres.replicationTimeoutMs'),
    },
    ssh: {
      enabled: v('ssh.enabled'),
      host: opt('ssh.host'),
      port: v('ssh.port'),
      user: opt('ssh.user'),
      privateKey: opt('ssh.privateKey')?.replace(/\s+/g, ''),
      passphrase: opt('ssh.passphrase'),
      hostKeyFingerprint: opt('ssh.hostKeyFingerprint'),
      acceptUnknownHostKey: v('ssh.acceptUnknownHostKey'),
    },
    publication: {
      name: opt('publication.name') ?? defaultPublicationName(name),
      autoCreate: v('publication.autoCreate'),
    },
    slot: {
      name: opt('slot.name') ?? defaultSlotName(name),
      dropOnStop: v('slot.dropOnStop'),
      failover: v('slot.failover'),
    },
    snapshot: {
      mode: v('snapshot.mode'),
      batchSize: v('snapshot.batchSize'),
      method: v('snapshot.method'),
      chunkBytes: v('snapshot.chunkBytes'),
      parallelism: v('snapshot.parallelism'),
    },
    tables: {
      include: (r.get('tables.include') as TableRef[] | undefined) ?? [],
      exclude: (r.get('tables.exclude') as TableRef[] | undefined) ?? [],
    },
    capture: {
      method: v('capture.method'),
      xmin: {
        pollIntervalMs: v('capture.xmin.pollIntervalMs'),
        chunkRows: v('capture.xmin.chunkRows'),
        chunkBytes: v('capture.xmin.chunkBytes'),
      },
    },
    topics: {
      prefix: opt('topics.prefix') ?? name,
      partitions: v('topics.partitions'),
      replicationFactor: v('topics.replicationFactor'),
      tombstonesOnDelete: v('topics.tombstonesOnDelete'),
      truncateEvents: v('topics.truncateEvents'),
      messageEvents: v('topics.messageEvents'),
      messagePrefixes: v('topics.messagePrefixes'),
      transactionMetadata: v('topics.transactionMetadata'),
    },
    kafka: {
      brokers: v('kafka.brokers'),
      clientId: opt('kafka.clientId') ?? `pgcdc-${name}`,
      maxInFlightBytes: v('kafka.maxInFlightBytes'),
      maxInFlightRecords: v('kafka.maxInFlightRecords'),
      ssl: {
        enabled: v('kafka.ssl.enabled'),
        ca: opt('kafka.ssl.ca'),
        cert: opt('kafka.ssl.cert'),
        key: opt('kafka.ssl.key'),
      },
      sasl: {
        mechanism: v('kafka.sasl.mechanism'),
        username: opt('kafka.sasl.username'),
        password: opt('kafka.sasl.password'),
      },
      compression: v('kafka.compression'),
    },
    registry: {
      url: v('registry.url'),
      username: opt('registry.username'),
      password: opt('registry.password'),
      token: opt('registry.token'),
      ca: opt('registry.ca'),
    },
    delivery: {
      mode: v('delivery.mode'),
      transactionMs: v('delivery.transactionMs'),
      transactionMaxBytes: v('delivery.transactionMaxBytes'),
    },
    offsets: {
      topic: v('offsets.topic'),
      commitIntervalMs: v('offsets.commitIntervalMs'),
      statusIntervalMs: v('offsets.statusIntervalMs'),
    },
    avro: {
      toastPlaceholder: v('avro.toastPlaceholder'),
      decimalHandling: v('avro.decimalHandling'),
      binaryHandling: v('avro.binaryHandling'),
      timePrecision: v('avro.timePrecision'),
      typeMode: v('avro.typeMode'),
      arrayHandling: v('avro.arrayHandling'),
    },
    http: {
      port: v('http.port'),
      host: v('http.host'),
      mutations: v('http.mutations'),
      auth: {
        token: opt('http.auth.token'),
        readToken: opt('http.auth.readToken'),
        username: opt('http.auth.username'),
        password: opt('http.auth.password'),
        protectReads: v('http.auth.protectReads'),
        protectProbes: v('http.auth.protectProbes'),
      },
      tls: {
        cert: opt('http.tls.cert'),
        key: opt('http.tls.key'),
        clientCa: opt('http.tls.clientCa'),
        clientCertRole: v('http.tls.clientCertRole'),
      },
    },
    log: { level: v('log.level'), format: v('log.format') },
    heartbeat: {
      intervalMs: v('heartbeat.intervalMs'),
      query: opt('heartbeat.query'),
      walWarnBytes: v('heartbeat.walWarnBytes'),
      walCriticalBytes: v('heartbeat.walCriticalBytes'),
      walCriticalAction: v('heartbeat.walCriticalAction'),
    },
  };
}

/**
 * A copy of the configuration for logging: every sensitive setting that is set is replaced by
 * "[redacted]", and so is a password inside registry.url.
 */
export function redactedConfig(cfg: PgcdcConfig): PgcdcConfig {
  const copy = structuredClone(cfg);
  for (const path of SENSITIVE_PATHS) {
    const keys = path.split('.');
    const last = keys.pop()!;
    let parent: unknown = copy;
    for (const k of keys) parent = isPlainObject(parent) ? parent[k] : undefined;
    if (isPlainObject(parent) && typeof parent[last] === 'string' && parent[last] !== '')
      parent[last] = REDACTED;
  }
  copy.registry.url = copy.registry.url.replace(
    /^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i,
    `$1:${REDACTED}@`,
  );
  return copy;
}
