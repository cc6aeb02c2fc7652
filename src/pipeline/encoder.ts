// Change event → Kafka records: the per-table topic, the Avro key and Debezium envelope in the
// Confluent wire format, and the tombstone after a delete. Schemas are compiled once per relation
// shape and registered under <topic>-key / <topic>-value (TopicNameStrategy).
import type { ChangeEvent, Relation, Row } from '../change/event.ts';
import { compileRelation, envelopeValue, toAvroKey, type CompiledRelation } from '../avro/envelope.ts';
import {
  MESSAGE_KEY_SCHEMA,
  MESSAGE_VALUE_SCHEMA,
  TRANSACTION_KEY_SCHEMA,
  TRANSACTION_VALUE_SCHEMA,
  messageKeyType,
  messageValue,
  messageValueType,
  transactionKeyType,
  transactionValue,
  transactionValueType,
  type MessageInput,
  type TransactionBoundary,
} from '../avro/metadata.ts';
import { isPgcdc010Schema, upgradeError } from '../avro/upgrade.ts';
import { describeSchemaChange } from '../avro/diff.ts';
import { UserError } from '../errors.ts';
import type { OutRecord } from '../kafka/batcher.ts';
import type { Topics } from '../kafka/topics.ts';
import type { TypeCatalog } from '../postgres/types.ts';
import { FrameWriter, IncompatibleSchemaError, type Registry } from '../registry/registry.ts';
import { messageTopic, transactionTopic } from './messages.ts';
import type { PipelineSettings } from './settings.ts';
import type { TransactionBlock } from './tx-metadata.ts';

interface Prepared {
  compiled: CompiledRelation;
  topic: string;
  keyId: number | null;
  valueId: number;
}

/**
 * max.message.bytes of the topics pgcdc creates. Kafka's default (1 MiB) refuses a row with a
 * multi-megabyte TOASTed value; a PostgreSQL row can be far larger than that. Topics that exist
 * already keep their own setting (see docs/types.md, "Large values").
 */
export const TOPIC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const TABLE_TOPIC_CONFIG = [{ name: 'max.message.bytes', value: String(TOPIC_MAX_MESSAGE_BYTES) }];
/** Relations prepared at once by prepare(): registry round trips in flight. */
const PREPARE_CONCURRENCY = 8;

/** Everything of a relation that its schemas and topic derive from. */
function shapeKey(r: Relation): string {
  return JSON.stringify(r);
}

export const topicFor = (prefix: string, r: { schema: string; table: string }): string =>
  `${prefix}.${r.schema}.${r.table}`;

export class Encoder {
  #s: PipelineSettings;
  #registry: Registry;
  #topics: Topics;
  #types: TypeCatalog;
  #database: string;
  #prepared = new WeakMap<Relation, Promise<Prepared>>();
  #ready = new WeakMap<Relation, Prepared>();
  #frames = new FrameWriter();
  /** Prepared by prepare() before their first event, by shape (shapeKey). */
  #ahead = new Map<string, Promise<Prepared>>();
  /** Columns whose unchanged-TOAST values had to be emitted as null (type cannot hold the placeholder). */
  readonly toastNulls = new Map<string, number>();

  constructor(deps: {
    settings: PipelineSettings;
    registry: Registry;
    topics: Topics;
    types: TypeCatalog;
    database: string;
  }) {
    this.#s = deps.settings;
    this.#registry = deps.registry;
    this.#topics = deps.topics;
    this.#types = deps.types;
    this.#database = deps.database;
  }

  /** Schema ids of the message and transaction topics, registered once. */
  #fixed = new Map<string, Promise<{ keyId: number; valueId: number }>>();

  async records(event: ChangeEvent, transaction?: TransactionBlock): Promise<OutRecord[]> {
    // Prepared relations are looked up without an await (a microtask per event otherwise).
    const p = this.#ready.get(event.relation) ?? (await this.#prepare(event.relation));
    const row = event.after ?? event.before;
    const key =
      event.op === 't' || p.keyId === null || !p.compiled.keyType || !row
        ? null
        : toAvroKey(event.relation, row, p.compiled);
    const keyBytes = key && p.keyId !== null ? this.#frames.frame(p.keyId, p.compiled.keyType!, key) : null;
    const value = this.#frames.frame(
      p.valueId,
      p.compiled.valueType,
      envelopeValue(event, p.compiled, { transaction: transaction ?? null }),
    );
    const record: OutRecord = { topic: p.topic, key: keyBytes, value };
    // Debezium's primary-key change headers: the delete names the new key, the create the old one.
    if (event.newKeyRow) record.headers = { '__debezium.newkey': keyJson(event, event.newKeyRow, p) };
    if (event.oldKeyRow) record.headers = { '__debezium.oldkey': keyJson(event, event.oldKeyRow, p) };
    const out: OutRecord[] = [record];
    if (event.op === 'd' && keyBytes && this.#s.topics.tombstonesOnDelete) {
      out.push({ topic: p.topic, key: keyBytes, value: null });
    }
    return out;
  }

  /** An op 'm' record on <prefix>.message, keyed by the message's prefix (as Debezium keys it). */
  async messageRecord(m: MessageInput): Promise<OutRecord> {
    const topic = messageTopic(this.#s.topics.prefix);
    const ids = await this.#fixedIds(topic, MESSAGE_KEY_SCHEMA, MESSAGE_VALUE_SCHEMA);
    const value = messageValue(m, { name: this.#s.topics.prefix, database: this.#database });
    return {
      topic,
      key: this.#frames.frame(ids.keyId, messageKeyType, { prefix: m.prefix }),
      value: this.#frames.frame(ids.valueId, messageValueType, value),
    };
  }

  /** A BEGIN or END record on <prefix>.transaction, keyed by the transaction id. */
  async transactionRecord(t: TransactionBoundary): Promise<OutRecord> {
    const topic = transactionTopic(this.#s.topics.prefix);
    const ids = await this.#fixedIds(topic, TRANSACTION_KEY_SCHEMA, TRANSACTION_VALUE_SCHEMA);
    return {
      topic,
      key: this.#frames.frame(ids.keyId, transactionKeyType, { id: t.id }),
      value: this.#frames.frame(ids.valueId, transactionValueType, transactionValue(t)),
    };
  }

  #fixedIds(topic: string, key: object, value: object): Promise<{ keyId: number; valueId: number }> {
    let p = this.#fixed.get(topic);
    if (!p) {
      p = (async () => {
        await this.#topics.ensure(topic);
        const keyId = await this.#registry.register(`${topic}-key`, JSON.stringify(key));
        const valueId = await this.#registry.register(`${topic}-value`, JSON.stringify(value));
        return { keyId, valueId };
      })();
      p.catch(() => this.#fixed.delete(topic));
      this.#fixed.set(topic, p);
    }
    return p;
  }

  #prepare(relation: Relation): Promise<Prepared> {
    let p = this.#prepared.get(relation);
    if (!p) {
      // prepare() may have read an equal relation (another object) ahead of this one: taken once,
      // so a relation that arrives again later is built again (column defaults read afresh).
      const shape = this.#ahead.size > 0 ? shapeKey(relation) : '';
      p = this.#ahead.get(shape) ?? this.#build(relation);
      this.#ahead.delete(shape);
      p.then(
        (ready) => this.#ready.set(relation, ready),
        () => this.#prepared.delete(relation),
      );
      this.#prepared.set(relation, p);
    }
    return p;
  }

  async #build(original: Relation): Promise<Prepared> {
    const s = this.#s;
    const relation = await this.#withDefaults(original);
    const compiled = compileRelation(relation, {
      topicPrefix: s.topics.prefix,
      typeLookup: this.#types.lookup,
      options: s.avro,
      database: this.#database,
      serverName: s.topics.prefix,
      onToastNull: (r, c) => {
        const k = `${r.schema}.${r.table}.${c.name}`;
        this.toastNulls.set(k, (this.toastNulls.get(k) ?? 0) + 1);
      },
    });
    const topic = topicFor(s.topics.prefix, relation);
    await this.#topics.ensure(topic, TABLE_TOPIC_CONFIG);
    // Both subjects at once (one registry round trip per table, not two); a refused change still
    // names the key subject first when both are refused.
    const key = compiled.schemas.key
      ? this.#register(relation, `${topic}-key`, compiled.schemas.key, 'key')
      : Promise.resolve(null);
    const value = this.#register(relation, `${topic}-value`, compiled.schemas.value, 'value');
    value.catch(() => undefined); // awaited below, after the key
    const keyId = await key;
    const valueId = await value;
    return { compiled, topic, keyId, valueId };
  }

  /**
   * Creates the topics of `tables` in bulk, before their first rows: the initial load of many
   * tables then costs no CreateTopics round trip (and no wait for leaders) per table. Optional:
   * records() creates a missing topic itself, as it does for tables that appear later.
   */
  async prepareTables(tables: ReadonlyArray<{ schema: string; table: string }>): Promise<void> {
    await this.#topics.ensureAll(
      tables.map((t) => topicFor(this.#s.topics.prefix, t)),
      TABLE_TOPIC_CONFIG,
    );
  }

  /**
   * Prepares `relations` ahead of their first event: topics in bulk, then their schemas registered
   * a few at a time. Optional, as prepareTables; the first failure is thrown.
   */
  async prepare(relations: ReadonlyArray<Relation>): Promise<void> {
    await this.prepareTables(relations);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < relations.length) {
        const relation = relations[next++]!;
        if (this.#prepared.has(relation)) continue;
        const p = this.#build(relation);
        this.#prepared.set(relation, p);
        this.#ahead.set(shapeKey(relation), p);
        const ready = await p.catch((err: unknown) => {
          this.#prepared.delete(relation);
          this.#ahead.delete(shapeKey(relation));
          throw err;
        });
        this.#ready.set(relation, ready);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PREPARE_CONCURRENCY, relations.length) }, lane));
  }

  /**
   * The relation with its columns' constant defaults (pgoutput's Relation message has none), read
   * from the catalog for the snapshot and the stream alike so both register the same schema.
   */
  async #withDefaults(relation: Relation): Promise<Relation> {
    const defaults = await this.#types.columnDefaults(relation.oid);
    if (defaults.size === 0) return relation;
    return {
      ...relation,
      columns: relation.columns.map((c) => {
        const d = defaults.get(c.name);
        return d === undefined ? c : { ...c, defaultText: d };
      }),
    };
  }

  async #register(
    relation: Relation,
    subject: string,
    schema: object,
    kind: 'key' | 'value',
  ): Promise<number> {
    const text = JSON.stringify(schema);
    try {
      return await this.#registry.register(subject, text);
    } catch (err) {
      if (!(err instanceof IncompatibleSchemaError)) throw err;
      // A subject registered by pgcdc 0.1.0 (other temporal encodings): say so and how to upgrade.
      const latest = await this.#registry.latestSchema(subject).catch(() => null);
      if (latest && isPgcdc010Schema(latest)) {
        throw upgradeError(subject, this.#s.topics.prefix, noneCommand(this.#registry.url, subject));
      }
      throw await this.#incompatible(relation, subject, schema, kind, err);
    }
  }

  /**
   * One line for a refused schema change: the table, what changed (from the subject's latest
   * registered version), the registry's rule, and the ways out. Nothing past the change has been
   * confirmed to PostgreSQL, so acting on it and restarting loses nothing.
   */
  async #incompatible(
    relation: Relation,
    subject: string,
    schema: object,
    kind: 'key' | 'value',
    err: IncompatibleSchemaError,
  ): Promise<UserError> {
    const table = `${relation.schema}.${relation.table}`;
    let changes: string[] = [];
    let rule = 'its compatibility rule';
    try {
      const latest = await this.#registry.latestSchema(subject);
      if (latest) changes = describeSchemaChange(JSON.parse(latest), schema, kind);
      const c = await this.#registry.compatibility(subject);
      if (c.effective) {
        rule = `compatibility ${c.effective}`;
        if (c.global && c.global !== c.effective)
          rule += ` (set on the subject; the registry-wide level is ${c.global})`;
      }
    } catch {
      // The explanation is best effort; the refusal itself is what matters.
    }
    const what = changes.length > 0 ? changes.join('; ') : 'the schema changed';
    return new UserError(
      `incompatible schema change on table ${table}: ${what} — the schema registry refused it as a new version of ` +
        `subject ${subject} under ${rule} (${err.registryMessage}). The worker stopped before confirming anything ` +
        `past this change. To let it through, set the subject's compatibility to NONE (${noneCommand(this.#registry.url, subject)}) ` +
        `and restart; or restart with a new topics.prefix (new topics and subjects); ` +
        `see docs/schema-evolution.md`,
    );
  }
}

/** A key as JSON text (longs as exact numbers, bytes as hex), for the key-change headers. */
function keyJson(event: ChangeEvent, row: Row, p: Prepared): string {
  const key = toAvroKey(event.relation, row, p.compiled);
  return JSON.stringify(key, function (this: Record<string, unknown>, k: string, v: unknown) {
    const raw = this[k]; // before Buffer's own toJSON ran
    if (Buffer.isBuffer(raw)) return raw.toString('hex');
    if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : String(v);
    return v;
  });
}

/**
 * How to set one subject's compatibility to NONE. Confluent: `PUT /config/{subject}`. Apicurio
 * (its ccompat API lives under /apis/ccompat/v7) deletes the subject's rule on that request, so its
 * registry-wide rule applies again: there, NONE is an artifact rule of its own v3 API.
 */
export function noneCommand(url: string, subject: string): string {
  const apicurio = /^(.*)\/apis\/ccompat\/v\d+$/.exec(url);
  if (apicurio) {
    return (
      `Apicurio: curl -X POST -H 'Content-Type: application/json' -d '{"ruleType":"COMPATIBILITY","config":"NONE"}' ` +
      `${apicurio[1]}/apis/registry/v3/groups/default/artifacts/${encodeURIComponent(subject)}/rules`
    );
  }
  return `curl -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' -d '{"compatibility":"NONE"}' ${url}/config/${encodeURIComponent(subject)}`;
}
