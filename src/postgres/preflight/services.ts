// Kafka and the schema registry: reachable with the configured settings? The lines name the
// brokers and the registry URL, never a credential.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { causeChain, failureKind } from '../../errors.ts';
import { describeKafkaError, kafkaClient, type KafkaSettings } from '../../kafka/client.ts';
import { OFFSET_READER_GROUP_PREFIX, OffsetStore } from '../../kafka/offsets.ts';
import { readPem } from '../connection.ts';
import { failed, ok, type CheckResult } from './result.ts';
import { tlsFilesCheck } from './tls-files.ts';

const TIMEOUT_MS = 15_000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const firstLine = (err: unknown): string =>
  (err instanceof Error ? err.message || err.name : String(err)).split('\n')[0]!;

export interface KafkaCheckSettings extends KafkaSettings {
  /** Also read the stored offset the way pgcdc run does at start (its ACLs: READ on the topic and the group prefix). */
  offsets?: { topic: string; connector: string; slot: string };
}

export async function kafkaCheck(s: KafkaCheckSettings, timeoutMs = TIMEOUT_MS): Promise<CheckResult> {
  const unreadable = s.ssl?.enabled
    ? tlsFilesCheck('kafka', {
        'kafka.ssl.ca': s.ssl.ca,
        'kafka.ssl.cert': s.ssl.cert,
        'kafka.ssl.key': s.ssl.key,
      })
    : null;
  if (unreadable) return unreadable;
  const brokers = s.brokers.join(',');
  const admin = kafkaClient(s).admin({ retry: { retries: 1, initialRetryTime: 300, maxRetryTime: 1_000 } });
  try {
    const cluster = await withTimeout(
      (async () => {
        await admin.connect();
        return admin.describeCluster();
      })(),
      timeoutMs,
      'Kafka',
    );
    const n = cluster.brokers.length;
    const reached = `reached ${brokers}: cluster ${cluster.clusterId}, ${n} broker${n === 1 ? '' : 's'}`;
    return s.offsets ? await offsetReadCheck(s, s.offsets, reached, timeoutMs) : ok('kafka', reached);
  } catch (err) {
    const why = firstLine(err);
    const auth = /SASL|authenticat/i.test(why);
    return failed(
      'kafka',
      `cannot reach Kafka at ${brokers} (${why})`,
      auth
        ? 'check kafka.sasl.mechanism, kafka.sasl.username and kafka.sasl.password'
        : 'check kafka.brokers (host:port the brokers advertise), kafka.ssl.enabled and the network path to the brokers',
    );
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** The offset read of pgcdc run's start, as a check: the topic and group-prefix ACLs it needs. */
async function offsetReadCheck(
  s: KafkaSettings,
  o: NonNullable<KafkaCheckSettings['offsets']>,
  reached: string,
  timeoutMs: number,
): Promise<CheckResult> {
  const store = new OffsetStore(kafkaClient(s), o.topic, { connector: o.connector, slot: o.slot });
  try {
    const r = await store.checkRead(timeoutMs);
    if (!r.topicExists) {
      return ok(
        'kafka',
        `${reached}; offsets topic ${o.topic} not created yet (pgcdc run creates it), group prefix ${OFFSET_READER_GROUP_PREFIX} answered`,
      );
    }
    return ok(
      'kafka',
      `${reached}; offsets topic ${o.topic} read (${r.stored ? `stored offset at ${r.stored.lsn}` : 'no offset stored for this connector'})`,
    );
  } catch (err) {
    const e = describeKafkaError(err, s);
    const denied = failureKind(e) === 'user';
    return failed(
      'kafka',
      `${reached}, but the stored offset cannot be read: ${causeChain(e)}`,
      denied
        ? `grant the principal READ and DESCRIBE on topic ${o.topic} and READ on consumer groups with prefix ${OFFSET_READER_GROUP_PREFIX} (docs/security.md "Kafka ACLs")`
        : 'check that every broker (the group coordinator included) is reachable at the address it advertises',
    );
  }
}

export interface RegistryCheckSettings {
  url: string;
  username?: string;
  password?: string;
  token?: string;
  ca?: string;
}

/** The URL without user:password@. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}

function get(
  url: URL,
  headers: Record<string, string>,
  ca: string | undefined,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'GET', headers, ...(ca ? { ca } : {}), timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 1_000_000) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}

export async function registryCheck(s: RegistryCheckSettings, timeoutMs = TIMEOUT_MS): Promise<CheckResult> {
  const unreadable = tlsFilesCheck('schema_registry', { 'registry.ca': s.ca });
  if (unreadable) return unreadable;
  const shown = displayUrl(s.url);
  let url: URL;
  try {
    url = new URL(`${s.url.replace(/\/+$/, '')}/subjects`);
  } catch {
    return failed('schema_registry', `registry.url ${shown} is not a URL`, 'set registry.url');
  }
  const headers: Record<string, string> = {
    Accept: 'application/vnd.schemaregistry.v1+json, application/json',
  };
  const user = s.username ?? decodeURIComponent(url.username);
  const password = s.password ?? decodeURIComponent(url.password);
  url.username = '';
  url.password = '';
  if (s.token) headers.Authorization = `Bearer ${s.token}`;
  else if (user) headers.Authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  try {
    const res = await get(url, headers, s.ca ? readPem(s.ca, 'registry.ca') : undefined, timeoutMs);
    if (res.status === 401 || res.status === 403) {
      return failed(
        'schema_registry',
        `schema registry ${shown} refused the credentials (HTTP ${res.status})`,
        'check registry.username/registry.password or registry.token',
      );
    }
    if (res.status !== 200) {
      return failed(
        'schema_registry',
        `schema registry ${shown} answered GET /subjects with HTTP ${res.status}`,
        "check registry.url: it is the Confluent-compatible API's base URL (Apicurio: …/apis/ccompat/v7)",
      );
    }
    let count = '';
    try {
      const subjects = JSON.parse(res.body) as unknown;
      if (Array.isArray(subjects)) count = `, ${subjects.length} subject${subjects.length === 1 ? '' : 's'}`;
    } catch {
      return failed(
        'schema_registry',
        `schema registry ${shown} answered GET /subjects with something other than JSON`,
        "check registry.url: it is the Confluent-compatible API's base URL",
      );
    }
    return ok('schema_registry', `reached ${shown} (GET /subjects: HTTP 200${count})`);
  } catch (err) {
    const code = (err as { code?: string }).code;
    return failed(
      'schema_registry',
      `cannot reach the schema registry at ${shown} (${code ?? firstLine(err)})`,
      'check registry.url and the network path to the registry' +
        (code?.includes('CERT') ? ' (registry.ca for its CA)' : ''),
    );
  }
}
