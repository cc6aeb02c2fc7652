// Topics are created on first use, with the configured partitions and replication factor.
import type { Admin, ITopicConfig } from 'kafkajs';

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
