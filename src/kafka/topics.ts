// Topics are created on first use, or all at once for the tables known at start (ensureAll), with
// the configured partitions and replication factor.
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
  /** Topics waiting for the next CreateTopics (filled during one turn of the event loop). */
  #queue = new Map<string, Queued>();
  #flushing = false;
  /** The cluster's topics, read once (topics created here are added). */
  #existing: Promise<Set<string>> | null = null;

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

  /**
   * Makes sure `topic` exists (created with the configured partitions and replication factor and
   * `configEntries` when missing). Calls made in the same turn of the event loop share one
   * CreateTopics request: the cluster's topic list is read once per Topics, not per topic (a
   * listTopics is a metadata request for every topic in the cluster).
   */
  async ensure(topic: string, configEntries: ITopicConfig['configEntries'] = []): Promise<void> {
    if (this.#known.has(topic)) return;
    await this.#request(topic, configEntries);
  }

  /**
   * Makes sure every topic of `topics` exists, in as few CreateTopics requests as it takes (at
   * most CREATE_BATCH topics each): the bulk path for the tables known at start. Tables that
   * appear later still go through ensure().
   */
  async ensureAll(
    topics: ReadonlyArray<string>,
    configEntries: ITopicConfig['configEntries'] = [],
  ): Promise<void> {
    await Promise.all(topics.filter((t) => !this.#known.has(t)).map((t) => this.#request(t, configEntries)));
  }

  #request(topic: string, configEntries: ITopicConfig['configEntries']): Promise<void> {
    let p = this.#pending.get(topic);
    if (!p) {
      p = new Promise<void>((resolve, reject) => this.#queue.set(topic, { configEntries, resolve, reject }));
      this.#pending.set(topic, p);
      // A failure is the caller's; the pending entry must not hold it for the next attempt.
      p.catch(() => undefined).finally(() => this.#pending.delete(topic));
      if (!this.#flushing) {
        this.#flushing = true;
        setImmediate(() => void this.#flush());
      }
    }
    return p;
  }

  async #flush(): Promise<void> {
    const queued = [...this.#queue];
    this.#queue.clear();
    this.#flushing = false;
    try {
      this.#existing ??= this.#admin.listTopics().then((list) => new Set(list));
      const existing = await this.#existing.catch((err: unknown) => {
        this.#existing = null; // read again on the next attempt
        throw err;
      });
      const missing = queued.filter(([t]) => !existing.has(t));
      for (let i = 0; i < missing.length; i += CREATE_BATCH) {
        await this.#create(missing.slice(i, i + CREATE_BATCH));
      }
      for (const [topic, q] of queued) {
        existing.add(topic);
        this.#known.add(topic);
        q.resolve();
      }
    } catch (err) {
      for (const [, q] of queued) q.reject(err);
    }
  }

  async #create(topics: Array<[string, Queued]>): Promise<void> {
    try {
      await this.#admin.createTopics({
        waitForLeaders: true,
        // Creating hundreds of topics takes the controller longer than kafkajs's 5 s default.
        timeout: Math.max(5_000, topics.length * 50),
        topics: topics.map(([topic, q]) => ({
          topic,
          numPartitions: this.#settings.partitions,
          replicationFactor: this.#settings.replicationFactor,
          configEntries: q.configEntries,
        })),
      });
    } catch (err) {
      // Another worker (or a retry) created it between listTopics and createTopics. (When every
      // topic of a request exists, kafkajs answers false instead of failing.)
      if (err instanceof Error && /already exists/i.test(err.message)) return;
      // Created, but the broker answering kafkajs's wait did not know them yet (KRaft publishes
      // new topics to the brokers a moment after the controller answers): wait on.
      const type = (err as { type?: string }).type;
      if (type !== 'UNKNOWN_TOPIC_OR_PARTITION' && type !== 'LEADER_NOT_AVAILABLE') throw err;
      await this.#leaders(topics.map(([t]) => t));
    }
  }

  async #leaders(topics: string[]): Promise<void> {
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (;;) {
      try {
        const { topics: meta } = await this.#admin.fetchTopicMetadata({ topics });
        if (meta.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) return;
      } catch (err) {
        const type = (err as { type?: string }).type;
        if (type !== 'UNKNOWN_TOPIC_OR_PARTITION' && type !== 'LEADER_NOT_AVAILABLE') throw err;
      }
      if (Date.now() > deadline)
        throw new Error(
          `topics ${topics.slice(0, 3).join(', ')}${topics.length > 3 ? ', …' : ''} have no leader ${LEADER_WAIT_MS / 1000} s after their creation`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Topics per CreateTopics request; the broker handles them one by one, so one request does not grow unbounded. */
const CREATE_BATCH = 500;
const LEADER_WAIT_MS = 30_000;

interface Queued {
  configEntries: ITopicConfig['configEntries'];
  resolve: () => void;
  reject: (err: unknown) => void;
}
