// The configuration schema: every setting with its type, default, documentation, environment
// variable and command-line flag. It is a convict schema (see buildConvictSchema) and the source of
// schemas/config.schema.json and the reference table in docs/configuration.md.
import type { Leaf } from './formats.ts';

export interface Section {
  [key: string]: Leaf | Section;
}

type Opts = Omit<Leaf, 'doc' | 'format' | 'default'>;

function str(doc: string, def: string | null = null, opts: Opts = {}): Leaf {
  return { doc, format: 'pgcdc-string', default: def, ...opts };
}
function int(doc: string, def: number, opts: Opts = {}): Leaf {
  return { doc, format: 'pgcdc-int', default: def, ...opts };
}
function bytes(doc: string, def: number, opts: Opts = {}): Leaf {
  return { doc, format: 'pgcdc-bytes', default: def, min: 0, ...opts };
}
function bool(doc: string, def: boolean): Leaf {
  return { doc, format: 'pgcdc-bool', default: def };
}
function oneOf(doc: string, values: readonly string[], def: string): Leaf {
  return { doc, format: 'pgcdc-enum', default: def, values };
}
function list(doc: string, def: string[] | null, opts: Opts = {}): Leaf {
  return { doc, format: 'pgcdc-list', default: def, ...opts };
}
function tables(doc: string): Leaf {
  return { doc, format: 'pgcdc-tables', default: '' };
}

const PEM_OR_FILE = 'A file path, inline PEM text, or base64-encoded PEM.';
const TOPIC_PATTERN = '^[A-Za-z0-9._-]+$';
const TOPIC_EXPECT = 'a Kafka topic name of letters, digits, ".", "_" and "-"';

function checkBroker(v: string): string | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : 0;
  return m && port >= 1 && port <= 65535 ? undefined : 'host:port with a port between 1 and 65535';
}

function checkUrl(v: string): string | undefined {
  try {
    const url = new URL(v);
    return url.protocol === 'http:' || url.protocol === 'https:' ? undefined : 'an http:// or https:// URL';
  } catch {
    return 'an http:// or https:// URL';
  }
}

function checkPrivateKey(v: string): string | undefined {
  const text = v.trim();
  if (text.startsWith('-----BEGIN')) {
    return 'base64-encoded (this looks like the PEM text itself; use the output of `base64 -w0 <keyfile>`)';
  }
  const compact = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 === 1) {
    return 'a base64-encoded private key (the output of `base64 -w0 <keyfile>`)';
  }
  const decoded = Buffer.from(compact, 'base64').toString('utf8');
  return /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(decoded)
    ? undefined
    : 'a base64-encoded private key in PEM or OpenSSH format (it decodes to something else)';
}

// Sent in an Authorization header: visible ASCII only, and long enough not to be guessed.
function checkHttpToken(v: string): string | undefined {
  if (!/^[\x21-\x7e]+$/.test(v)) return 'visible ASCII characters only (no spaces)';
  return v.length >= 16 ? undefined : 'at least 16 characters (e.g. the output of `openssl rand -hex 32`)';
}

export const schema = {
  name: str(
    'Connector name; the default of the slot, publication, topic prefix and Kafka client id derive from it.',
    null,
    {
      required: true,
      pattern: '^[A-Za-z0-9._-]+$',
      expect: 'letters, digits, ".", "_" and "-" only',
      maxLength: 200,
    },
  ),
  postgres: {
    host: str(
      'PostgreSQL host name or IP address (through the tunnel when ssh.enabled). For failover, a comma-separated list of `host` or `host:port` (postgres.port where none is given): tried in order, the first primary (not in recovery) is used, as libpq target_session_attrs=read-write (docs/failover.md).',
      null,
      {
        required: true,
      },
    ),
    port: int('PostgreSQL port.', 5432, { min: 1, max: 65535 }),
    database: str('Database to capture.', null, { required: true }),
    user: str('User with the REPLICATION attribute (and SELECT on the captured tables).', null, {
      required: true,
    }),
    password: str('Password of postgres.user.', '', { sensitive: true }),
    schemas: list(
      'Schemas whose tables are captured when tables.include is empty. A list, or comma-separated in env vars and flags.',
      ['public'],
      { minItems: 1, pattern: '^.+$', expect: 'a non-empty schema name' },
    ),
    sslmode: oneOf(
      'TLS mode, with libpq meanings.',
      ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'],
      'prefer',
    ),
    sslRootCert: str(`CA certificate(s) to verify the server with. ${PEM_OR_FILE}`),
    sslCert: str(`Client certificate. ${PEM_OR_FILE}`),
    sslKey: str(`Client certificate's private key. ${PEM_OR_FILE}`, null, { sensitive: true }),
    sslKeyPassword: str('Passphrase of postgres.sslKey, when encrypted.', null, { sensitive: true }),
    connectTimeoutMs: int('Timeout for establishing a connection, in milliseconds.', 10000, {
      min: 1,
      max: 3_600_000,
    }),
    replicationTimeoutMs: int(
      'A replication connection that brings nothing (no data, no keepalive) for this long is treated as lost and the connector restarts from its stored offset, in milliseconds. After half of it pgcdc asks the server for a keepalive.',
      60000,
      { min: 1000, max: 3_600_000 },
    ),
  },
  ssh: {
    enabled: bool('Reach PostgreSQL through an SSH tunnel via a bastion host.', false),
    host: str('Bastion host (required when ssh.enabled).'),
    port: int('Bastion SSH port.', 22, { min: 1, max: 65535 }),
    user: str('SSH user on the bastion (required when ssh.enabled).'),
    privateKey: str(
      'Base64-encoded private key (PEM or OpenSSH format), e.g. `base64 -w0 id_ed25519` (required when ssh.enabled).',
      null,
      { sensitive: true, check: checkPrivateKey },
    ),
    passphrase: str('Passphrase of ssh.privateKey, when encrypted.', null, { sensitive: true }),
    hostKeyFingerprint: str(
      "Expected SHA256 fingerprint of the bastion's host key, as printed by `ssh-keygen -lf`: SHA256:<base64>.",
      null,
      {
        pattern: '^SHA256:[A-Za-z0-9+/]{43}=?$',
        expect: 'SHA256:<43 base64 characters>, as printed by ssh-keygen -lf',
      },
    ),
    acceptUnknownHostKey: bool(
      'Accept any host key (insecure; only when no fingerprint is known). Either this or ssh.hostKeyFingerprint is required when ssh.enabled.',
      false,
    ),
  },
  publication: {
    name: str('Publication to stream from.', null, {
      derived: '`<name>_pub`, sanitised: lower case, [a-z0-9_] only, at most 63 characters',
      maxLength: 63,
      pattern: '^[^\\u0000]+$',
      expect: 'a non-empty name',
    }),
    autoCreate: bool('Create the publication for the selected tables when it does not exist.', true),
  },
  slot: {
    name: str('Logical replication slot (created when missing).', null, {
      derived: '`pgcdc_<name>`, sanitised: lower case, [a-z0-9_] only, at most 63 characters',
      pattern: '^[a-z0-9_]{1,63}$',
      expect: 'at most 63 characters from [a-z0-9_] (a valid replication slot name)',
    }),
    dropOnStop: bool('Drop the slot when the connector stops (the next start snapshots again).', false),
    failover: bool(
      'Create the slot with FAILOVER true on PostgreSQL 17+ (ignored before 17): standbys with sync_replication_slots = on keep a copy, so after a promotion pgcdc resumes on the new primary without a new snapshot (docs/failover.md).',
      true,
    ),
  },
  snapshot: {
    mode: oneOf(
      'When to take a consistent snapshot of the tables (Debezium snapshot.mode): initial (when no offset is stored), ' +
        'never, always, initial_only (snapshot, then stop), when_needed (also when the stored offset is no longer available).',
      ['initial', 'never', 'always', 'initial_only', 'when_needed'],
      'initial',
    ),
    batchSize: int(
      'Rows per chunk of the chunked load (and per round trip of the exported-snapshot load).',
      10000,
      { min: 1, max: 1_000_000 },
    ),
    method: oneOf(
      "How tables are read: chunked (in primary-key chunks while the stream runs, DBLog watermarks; a crash resumes after the last chunk on the same slot; the default) or exported (inside the slot's exported snapshot: one point in time, but an interrupted load starts over on a new slot; docs/snapshots.md).",
      ['chunked', 'exported'],
      'chunked',
    ),
    chunkBytes: bytes(
      'The byte budget of one chunk: a chunk ends at snapshot.batchSize rows or at this many bytes of column text, whichever comes first, so memory stays bounded for any row width. An integer or with a unit (8MiB).',
      8 * 1024 ** 2,
    ),
    parallelism: int('Tables the chunked load reads at once (one chunk of each held at a time).', 2, {
      min: 1,
      max: 64,
    }),
  },
  tables: {
    include: tables(
      'Tables to capture: comma-separated schema.table names (or a list); empty means every table in postgres.schemas. ' +
        'Quote names with capitals, dots or spaces: "My Schema"."Order.Items".',
    ),
    exclude: tables('Tables not to capture, same form as tables.include.'),
  },
  capture: {
    method: oneOf(
      'How changes are found: logical (logical decoding through a publication and a replication slot: every insert, update and delete, in commit order) or xmin (each table polled for the rows whose xmin is at or past a stored cursor: needs only SELECT and a primary key, works on a standby and without wal_level=logical, but sees no deletes and only the latest version of a row; docs/xmin.md).',
      ['logical', 'xmin'],
      'logical',
    ),
    xmin: {
      pollIntervalMs: int(
        'capture.method xmin: the pause between the end of one poll of every table and the start of the next, in milliseconds (the latency of a change is up to this plus a poll).',
        10_000,
        { min: 10, max: 86_400_000 },
      ),
      chunkRows: int(
        'capture.method xmin: rows per chunk; a chunk is one short REPEATABLE READ transaction read in primary-key order, and an interrupted poll resumes after the last chunk Kafka acknowledged.',
        10_000,
        { min: 1, max: 1_000_000 },
      ),
      chunkBytes: bytes(
        'capture.method xmin: a chunk also ends at the first row that brings it to this many bytes of column text, so memory stays bounded for any row width. An integer or with a unit (8MiB).',
        8 * 1024 ** 2,
        { min: 1 },
      ),
    },
  },
  topics: {
    prefix: str('Topic prefix; change topics are <prefix>.<schema>.<table>.', null, {
      derived: '`<name>`',
      pattern: TOPIC_PATTERN,
      expect: TOPIC_EXPECT,
      maxLength: 200,
    }),
    partitions: int('Partitions of the change topics pgcdc creates.', 1, { min: 1, max: 100_000 }),
    replicationFactor: int(
      'Replication factor of the topics pgcdc creates; -1 means the broker default.',
      -1,
      {
        min: 1,
        max: 32767,
        special: [-1],
      },
    ),
    tombstonesOnDelete: bool(
      'After a delete event, also send a tombstone (null value) for log compaction.',
      true,
    ),
    truncateEvents: bool(
      "Emit TRUNCATE as an event with op 't'. Off by default, as in Debezium: consumers such as Flink's debezium-avro-confluent format refuse op 't'.",
      false,
    ),
    messageEvents: bool(
      "Publish logical decoding messages (pg_logical_emit_message) as op 'm' events on <prefix>.message, as Debezium does. Off by default, as in Debezium; pgcdc's own heartbeats are never published.",
      false,
    ),
    messagePrefixes: list(
      'Only messages with one of these prefixes become op m events (comma-separated or a list); empty means every prefix.',
      [],
    ),
    transactionMetadata: bool(
      "Debezium's provide.transaction.metadata: BEGIN/END events on <prefix>.transaction and a transaction block {id, total_order, data_collection_order} in every change. Off by default, as in Debezium.",
      false,
    ),
  },
  kafka: {
    brokers: list('Bootstrap brokers, host:port. A list, or comma-separated in env vars and flags.', null, {
      required: true,
      minItems: 1,
      check: checkBroker,
    }),
    clientId: str('Kafka client id.', null, { derived: '`pgcdc-<name>`' }),
    maxInFlightBytes: bytes(
      'Backpressure: stop reading the replication stream while this many bytes of records are sent but not yet acknowledged by Kafka. An integer or with a unit (64MiB).',
      64 * 1024 ** 2,
      { min: 1 },
    ),
    maxInFlightRecords: int(
      'Backpressure: stop reading the replication stream while this many records are sent but not yet acknowledged by Kafka. Whichever limit is reached first applies.',
      100_000,
      { min: 1 },
    ),
    ssl: {
      enabled: bool('Connect to the brokers with TLS (acks are always "all").', false),
      ca: str(`CA certificate(s) to verify the brokers with (default: the system CAs). ${PEM_OR_FILE}`),
      cert: str(`Client certificate for mutual TLS. ${PEM_OR_FILE}`),
      key: str(`Private key of kafka.ssl.cert. ${PEM_OR_FILE}`, null, { sensitive: true }),
    },
    sasl: {
      mechanism: oneOf(
        'SASL authentication mechanism.',
        ['none', 'plain', 'scram-sha-256', 'scram-sha-512'],
        'none',
      ),
      username: str('SASL user name (required unless kafka.sasl.mechanism is none).'),
      password: str('SASL password (required unless kafka.sasl.mechanism is none).', null, {
        sensitive: true,
      }),
    },
    compression: oneOf('Compression of produced batches.', ['none', 'gzip'], 'none'),
  },
  registry: {
    url: str('Confluent-compatible schema registry URL.', null, { required: true, check: checkUrl }),
    username: str('Basic-auth user name.'),
    password: str('Basic-auth password.', null, { sensitive: true }),
    token: str('Bearer token (instead of username/password).', null, { sensitive: true }),
    ca: str(`CA certificate(s) to verify the registry with. ${PEM_OR_FILE}`),
  },
  delivery: {
    mode: oneOf(
      'at-least-once: records and offsets are acknowledged separately; a crash repeats what was acknowledged after the last stored offset. exactly-once: each Kafka transaction holds whole PostgreSQL transactions and the offset that covers them, so a consumer with isolation.level=read_committed sees every change once (needs transactional.id ACLs and a broker with transactions; see docs/durability.md "Exactly-once").',
      ['at-least-once', 'exactly-once'],
      'at-least-once',
    ),
    transactionMs: int(
      'exactly-once: a Kafka transaction is committed at the first PostgreSQL commit (or snapshot batch) after it is this old, in milliseconds, once the previous commit is done; lower means less latency, more commits.',
      20,
      { min: 1, max: 30_000 },
    ),
    transactionMaxBytes: bytes(
      'exactly-once: a Kafka transaction is committed at the first PostgreSQL commit (or position inside a large transaction, or snapshot batch) after it holds this many bytes of records.',
      16 * 1024 ** 2,
      { min: 1 },
    ),
  },
  offsets: {
    topic: str('Compacted topic where source offsets are stored.', 'pgcdc-offsets', {
      pattern: TOPIC_PATTERN,
      expect: TOPIC_EXPECT,
      maxLength: 249,
    }),
    commitIntervalMs: int(
      'How often the offset of acknowledged records is written to the offsets topic and then confirmed to the slot, in milliseconds.',
      1000,
      { min: 1, max: 3_600_000 },
    ),
    statusIntervalMs: int(
      "Interval of standby status updates to the server, in milliseconds; keep it below the server's wal_sender_timeout.",
      10000,
      { min: 1, max: 3_600_000 },
    ),
  },
  avro: {
    toastPlaceholder: str(
      "Value for an unchanged TOASTed column the server did not send (Debezium's unavailable.value.placeholder).",
      '__debezium_unavailable_value',
    ),
    decimalHandling: oneOf(
      'numeric/decimal as Avro decimal bytes (precise), a string, or a double.',
      ['precise', 'string', 'double'],
      'precise',
    ),
    binaryHandling: oneOf(
      'bytea as Avro bytes, or a base64 or hex string.',
      ['bytes', 'base64', 'hex'],
      'bytes',
    ),
    typeMode: oneOf(
      "How column types are written: debezium (Kafka Connect semantic types as Debezium's connector writes them: io.debezium.time.*, connect.* properties; what Connect sinks and ksqlDB read) or avro (the Avro specification's logical types, for Avro readers, Spark, Iceberg; out-of-range values are clamped). See docs/types.md.",
      ['debezium', 'avro'],
      'debezium',
    ),
    timePrecision: oneOf(
      "Unit of time and timestamp values (Debezium's time.precision.mode): adaptive (by the column's precision: milliseconds for p <= 3, else microseconds), adaptive_time_microseconds (time always microseconds), micros, or millis (floored).",
      ['adaptive', 'adaptive_time_microseconds', 'micros', 'millis'],
      'adaptive',
    ),
    arrayHandling: oneOf(
      "Arrays as Avro arrays of nullable elements (one dimension), or as PostgreSQL's array text (any dimension).",
      ['array', 'string'],
      'array',
    ),
  },
  http: {
    port: int('Port of the health and metrics HTTP server; 0 disables it.', 8080, { min: 0, max: 65535 }),
    host: str(
      'Address the HTTP server listens on. The default is loopback only: set 0.0.0.0 (as the Helm chart does) to serve probes and metrics to other hosts, which needs http.auth.token (or another credential) or http.mutations: false.',
      '127.0.0.1',
      { pattern: '^.+$', expect: 'a non-empty address' },
    ),
    mutations: bool(
      'Serve the endpoints that change the connector (pause, resume, restart and every other non-GET request); false answers them 403. While on, a credential (http.auth.token, http.auth.username/password or http.tls.clientCa) is required unless http.host is a loopback address.',
      true,
    ),
    auth: {
      token: str(
        'Bearer token of the operator role: may pause, resume and restart (and read). At least 16 visible ASCII characters, e.g. `openssl rand -hex 32`.',
        null,
        { sensitive: true, check: checkHttpToken },
      ),
      readToken: str(
        'Bearer token of the read role: may read protected endpoints (http.auth.protectReads), gets 403 on changes.',
        null,
        { sensitive: true, check: checkHttpToken },
      ),
      username: str('Basic-auth user of the operator role (with http.auth.password).', null, {
        pattern: '^[^:\\s]+$',
        expect: 'a user name without ":" or spaces',
      }),
      password: str('Basic-auth password of http.auth.username (at least 16 characters).', null, {
        sensitive: true,
        check: checkHttpToken,
      }),
      protectReads: bool(
        'Also require a credential (either role) for /metrics and the GET endpoints under /connectors (status, offsets).',
        false,
      ),
      protectProbes: bool(
        'Also require a credential for /healthz and /readyz (Kubernetes probes then need an Authorization header).',
        false,
      ),
    },
    tls: {
      cert: str(
        `Server certificate (chain); with http.tls.key the HTTP server speaks HTTPS only. ${PEM_OR_FILE}`,
      ),
      key: str(`Private key of http.tls.cert. ${PEM_OR_FILE}`, null, { sensitive: true }),
      clientCa: str(
        `CA certificate(s) of client certificates: a client presenting a certificate it signed is identified by the certificate's subject. Asked for, not required, so probes without one keep working. ${PEM_OR_FILE}`,
      ),
      clientCertRole: oneOf(
        'Role of a client verified by http.tls.clientCa.',
        ['operator', 'read'],
        'operator',
      ),
    },
  },
  log: {
    level: oneOf('Log level.', ['debug', 'info', 'warn', 'error'], 'info'),
    format: oneOf(
      'Log format; auto is pretty on a terminal and json otherwise.',
      ['json', 'pretty', 'auto'],
      'auto',
    ),
  },
  heartbeat: {
    intervalMs: int(
      'Heartbeat interval in milliseconds: a non-transactional logical message that comes back through the replication stream and moves the slot even when the captured tables are idle and others are busy (docs/operations.md); 0 turns heartbeats off.',
      10_000,
      { min: 0, max: 86_400_000 },
    ),
    query: str('Optional SQL run on every heartbeat (e.g. an UPDATE of a heartbeat table).'),
    walWarnBytes: bytes(
      "The WAL budget's warning level: warn (log line, pgcdc_slot_wal_budget_state) when the slot retains more WAL than this; 0 turns the warning off. An integer or with a unit (1GiB).",
      1024 ** 3,
    ),
    walCriticalBytes: bytes(
      "The WAL budget's critical level: retained WAL above it is critical (log line, metric, the chart's PgcdcSlotWalCritical alert) and heartbeat.walCriticalAction applies; 0 turns it off. Keep it below the server's max_slot_wal_keep_size, which invalidates the slot first (pgcdc check says so).",
      10 * 1024 ** 3,
    ),
    walCriticalAction: oneOf(
      'What happens past heartbeat.walCriticalBytes: warn (metrics and a log line only, the slot keeps its WAL) or stop (the connector stops FAILED and releases the slot: drops it and forgets the offset, so the disk is safe but the position is lost and the next start follows snapshot.mode; docs/operations.md).',
      ['warn', 'stop'],
      'warn',
    ),
  },
} satisfies Section;

export function isLeaf(node: Leaf | Section): node is Leaf {
  return typeof (node as Leaf).format === 'string' && 'default' in node;
}

/** sslRootCert → SSL_ROOT_CERT */
function upperSnake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** The environment variable of a setting: PGCDC_ + the path in upper snake case, e.g. PGCDC_POSTGRES_SSL_ROOT_CERT. */
export function envVarFor(path: string): string {
  return `PGCDC_${path.split('.').map(upperSnake).join('_')}`;
}

/** The command-line flag of a setting: `--` + its path, e.g. --postgres.host. */
export function flagFor(path: string): string {
  return `--${path}`;
}

export interface LeafInfo {
  path: string;
  leaf: Leaf;
  env: string;
  flag: string;
}

function collect(section: Section, prefix: string, out: LeafInfo[]): void {
  for (const [key, node] of Object.entries(section)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isLeaf(node)) out.push({ path, leaf: node, env: envVarFor(path), flag: flagFor(path) });
    else collect(node, path, out);
  }
}

/** Every setting, in schema order. */
export const LEAVES: readonly LeafInfo[] = (() => {
  const out: LeafInfo[] = [];
  collect(schema, '', out);
  const envs = new Set<string>();
  for (const l of out) {
    if (envs.has(l.env)) throw new Error(`config schema: two settings map to ${l.env}`);
    envs.add(l.env);
  }
  return out;
})();

export const LEAF_BY_PATH: ReadonlyMap<string, LeafInfo> = new Map(LEAVES.map((l) => [l.path, l]));

export const SENSITIVE_PATHS: readonly string[] = LEAVES.filter((l) => l.leaf.sensitive).map((l) => l.path);

/** The schema in convict's form: each setting with its `env` and `arg`. */
export function buildConvictSchema(section: Section = schema, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, node] of Object.entries(section)) {
    const path = prefix ? `${prefix}.${key}` : key;
    out[key] = isLeaf(node) ? { ...node, env: envVarFor(path), arg: path } : buildConvictSchema(node, path);
  }
  return out;
}
