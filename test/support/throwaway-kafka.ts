// A single-broker KRaft Kafka of the test's own, for faults the shared stack's broker must not
// suffer (stopped for a minute, an authorizer switched on). Same jars as the local stack
// (.cache/kafka-libs, resolved by `./dev stack up`), a temporary directory, free ports on
// 127.0.0.1; the test stops and starts it by PID and removes it at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel, type KafkaConfig } from 'kafkajs';
import { cacheDir } from '../../deploy/local/process.ts';
import { jvmOptions } from '../../deploy/local/java.ts';

const libsDir = path.join(cacheDir, 'kafka-libs');

/** Ports handed out by this process: the kernel may give a just-released port out again. */
const handedOut = new Set<number>();

async function freePort(): Promise<number> {
  for (;;) {
    const port = await anyFreePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

async function anyFreePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface ThrowawayKafkaOptions {
  /**
   * Switch on KRaft's StandardAuthorizer and add a SASL/PLAIN listener with these users. The
   * PLAINTEXT listener's principal (ANONYMOUS) is a super user, so `admin()` can set ACLs; SASL
   * users get only the ACLs the test grants.
   */
  saslUsers?: Record<string, string>;
}

export class ThrowawayKafka {
  readonly dir: string;
  readonly port: number;
  readonly saslPort: number | null;
  #controllerPort: number;
  #child: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();

  private constructor(dir: string, port: number, controllerPort: number, saslPort: number | null) {
    this.dir = dir;
    this.port = port;
    this.#controllerPort = controllerPort;
    this.saslPort = saslPort;
  }

  /** Formats and starts a broker; resolves when it answers metadata requests. */
  static async start(opts: ThrowawayKafkaOptions = {}): Promise<ThrowawayKafka> {
    if (!fs.existsSync(path.join(libsDir, '.pgcdc-complete')))
      throw new Error(`no Kafka jars in ${libsDir}: run ./dev stack up first`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgcdc-kafka-'));
    const k = new ThrowawayKafka(
      dir,
      await freePort(),
      await freePort(),
      opts.saslUsers ? await freePort() : null,
    );
    k.#writeConfig(opts);
    await k.#run([
      'kafka.tools.StorageTool',
      'format',
      '-t',
      randomBytes(16).toString('base64url').replace(/^-/, 'A'),
      '-c',
      k.#props,
    ]);
    await k.resume();
    return k;
  }

  get brokers(): string {
    return `127.0.0.1:${this.port}`;
  }

  get saslBrokers(): string {
    if (this.saslPort === null) throw new Error('started without saslUsers');
    return `127.0.0.1:${this.saslPort}`;
  }

  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  get #props(): string {
    return path.join(this.dir, 'server.properties');
  }

  /** A super-user client on the PLAINTEXT listener. */
  client(config: Partial<KafkaConfig> = {}): Kafka {
    return new Kafka({
      clientId: 'pgcdc-test-throwaway',
      brokers: [this.brokers],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 2000,
      ...config,
    });
  }

  /** Starts the broker again (same data, same ports); resolves when it answers. */
  async resume(timeoutMs = 120_000): Promise<void> {
    if (this.#child) return;
    const log = fs.openSync(path.join(this.dir, 'kafka.log'), 'a');
    const child = spawn(
      'java',
      [
        ...jvmOptions(this.dir, '256m'),
        `-Dlog4j2.configurationFile=${path.join(this.dir, 'log4j2.properties')}`,
        '-cp',
        path.join(libsDir, '*'),
        'kafka.Kafka',
        this.#props,
      ],
      { cwd: this.dir, stdio: ['ignore', log, log] },
    );
    fs.closeSync(log);
    this.#child = child;
    // A test process that dies must not leave its broker behind.
    const reap = (): void => void child.kill('SIGKILL');
    process.once('exit', reap);
    this.#exited = new Promise((resolve) =>
      child.once('exit', () => {
        process.off('exit', reap);
        resolve();
      }),
    );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`throwaway Kafka exited; see ${this.dir}/kafka.log`);
      if (await this.#answers()) return;
      if (Date.now() > deadline) throw new Error(`throwaway Kafka not ready; see ${this.dir}/kafka.log`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  /** Kills the broker (SIGKILL: an outage, not a shutdown) and waits until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await this.#exited;
    this.#child = null;
  }

  async destroy(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async #answers(): Promise<boolean> {
    const admin = this.client({ retry: { retries: 0 }, requestTimeout: 3000 }).admin();
    try {
      await admin.connect();
      const c = await admin.describeCluster();
      return c.brokers.length > 0 && c.controller !== null && c.controller >= 0;
    } catch {
      return false;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  #run(args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const child = spawn(
        'java',
        [
          '-Xmx128m',
          `-Dlog4j2.configurationFile=${path.join(this.dir, 'log4j2.properties')}`,
          '-cp',
          path.join(libsDir, '*'),
          ...args,
        ],
        { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => out.push(d));
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`${args[0]} exited ${code}: ${Buffer.concat(out).toString()}`)),
      );
    });
  }

  #writeConfig(opts: ThrowawayKafkaOptions): void {
    const sasl = opts.saslUsers;
    const listeners = [
      `PLAINTEXT://127.0.0.1:${this.port}`,
      ...(sasl ? [`SASL_PLAINTEXT://127.0.0.1:${this.saslPort}`] : []),
    ];
    const props = [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${this.#controllerPort}`,
      `listeners=${[...listeners, `CONTROLLER://127.0.0.1:${this.#controllerPort}`].join(',')}`,
      `advertised.listeners=${listeners.join(',')}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT',
      ...(sasl
        ? [
            'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer',
            'super.users=User:ANONYMOUS',
            'listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN',
            `listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required ${Object.entries(
              sasl,
            )
              .map(([u, p]) => `user_${u}="${p}"`)
              .join(' ')};`,
          ]
        : []),
      `log.dirs=${path.join(this.dir, 'data')}`,
      'num.partitions=1',
      'default.replication.factor=1',
      'min.insync.replicas=1',
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=3',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'transaction.state.log.num.partitions=3',
      'share.coordinator.state.topic.replication.factor=1',
      'share.coordinator.state.topic.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      'auto.create.topics.enable=false',
      '',
    ].join('\n');
    fs.writeFileSync(this.#props, props);
    fs.writeFileSync(
      path.join(this.dir, 'log4j2.properties'),
      [
        'status = warn',
        'appender.out.type = Console',
        'appender.out.name = STDOUT',
        'appender.out.layout.type = PatternLayout',
        'appender.out.layout.pattern = [%d] %p %m (%c)%n',
        'rootLogger.level = WARN',
        'rootLogger.appenderRef.out.ref = STDOUT',
        '',
      ].join('\n'),
    );
  }
}
