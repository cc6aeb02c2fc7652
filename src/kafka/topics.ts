// Topics are created on first use, with the configured partitions and replication factor.
import kafkajs, { type Admin, type ITopicConfig } from 'kafkajs';

// kafkajs is CommonJS: its enums are reachable through the default export only.
const { ConfigResourceTypes } = kafkajs;

export interface TopicSettings {
  partitions: number;
  /** -1: the broker's default.replication.factor. */
  replicationFactor: number;
}

export class Topics {
  #admin: Admin;
  #settings: TopicSettings;
  #known = new Set<string>();
  #pending = new Map<string, Promise<void>>();

  constructor(admin: Admin, settings: TopicSettings) {
    this.#admin = admin;
    this.#settings = settings;
  }

  /** The replication factor new topics get: the configured one, or the broker's default for -1. */
  async replicationFactor(): Promise<number> {
    if (this.#settings.replicationFactor > 0) return this.#settings.replicationFactor;
    const { brokers } = await this.#admin.describeCluster();
    const broker = brokers[0];
    if (!broker) return 1;
    const described = await this.#admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        {
          type: ConfigResourceTypes.BROKER,
          name: String(broker.nodeId),
          configNames: ['default.replication.factor'],
        },
      ],
    });
    const value = described.resources[0]?.configEntries.find(
      (e) => e.configName === 'default.replication.factor',
    );
    const rf = Number(value?.configValue);
    return Number.isInteger(rf) && rf > 0 ? rf : 1;
  }

  async ensure(topic: string, configEntries: ITopicConfig['configEntries'] = []): Promise<void> {
    if (this.#known.has(topic)) return;
    let p = this.#pending.get(topic);
    if (!p) {
      p = this.#create(topic, configEntries).finally(() => this.#pending.delete(topic));
      this.#pending.set(topic, p);
    }
    await p;
  }

  async #create(topic: string, configEntries: ITopicConfig['configEntries']): Promise<void> {
    const existing = await this.#admin.listTopics();
    if (!existing.includes(topic)) {
      try {
        await this.#admin.createTopics({
          waitForLeaders: true,
          topics: [
            {
              topic,
              numPartitions: this.#settings.partitions,
              replicationFactor: this.#settings.replicationFactor,
              configEntries,
            },
          ],
        });
      } catch (err) {
        // Another worker (or a retry) created it between listTopics and createTopics.
        if (!(err instanceof Error && /already exists/i.test(err.message))) throw err;
      }
    }
    this.#known.add(topic);
  }
}
