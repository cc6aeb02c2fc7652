// Change event → Kafka records: the per-table topic, the Avro key and Debezium envelope in the
// Confluent wire format, and the tombstone after a delete. Schemas are compiled once per relation
// shape and registered under <topic>-key / <topic>-value (TopicNameStrategy).
import type { ChangeEvent, Relation } from '../change/event.ts';
import { compileRelation, envelopeValue, toAvroKey, type CompiledRelation } from '../avro/envelope.ts';
import type { OutRecord } from '../kafka/batcher.ts';
import type { Topics } from '../kafka/topics.ts';
import type { TypeCatalog } from '../postgres/types.ts';
import { confluentFrame, type Registry } from '../registry/registry.ts';
import type { PipelineSettings } from './settings.ts';

interface Prepared {
  compiled: CompiledRelation;
  topic: string;
  keyId: number | null;
  valueId: number;
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

  async records(event: ChangeEvent): Promise<OutRecord[]> {
    const p = await this.#prepare(event.relation);
    const row = event.after ?? event.before;
    const key =
      event.op === 't' || p.keyId === null || !p.compiled.keyType || !row
        ? null
        : toAvroKey(event.relation, row, p.compiled);
    const keyBytes =
      key && p.keyId !== null ? confluentFrame(p.keyId, p.compiled.keyType!.toBuffer(key)) : null;
    const value = confluentFrame(p.valueId, p.compiled.valueType.toBuffer(envelopeValue(event, p.compiled)));
    const out: OutRecord[] = [{ topic: p.topic, key: keyBytes, value }];
    if (event.op === 'd' && keyBytes && this.#s.topics.tombstonesOnDelete) {
      out.push({ topic: p.topic, key: keyBytes, value: null });
    }
    return out;
  }

  #prepare(relation: Relation): Promise<Prepared> {
    let p = this.#prepared.get(relation);
    if (!p) {
      p = this.#build(relation);
      p.catch(() => this.#prepared.delete(relation));
      this.#prepared.set(relation, p);
    }
    return p;
  }

  async #build(relation: Relation): Promise<Prepared> {
    const s = this.#s;
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
    await this.#topics.ensure(topic);
    const [keyId, valueId] = await Promise.all([
      compiled.schemas.key
        ? this.#registry.register(`${topic}-key`, JSON.stringify(compiled.schemas.key))
        : null,
      this.#registry.register(`${topic}-value`, JSON.stringify(compiled.schemas.value)),
    ]);
    return { compiled, topic, keyId, valueId };
  }
}
