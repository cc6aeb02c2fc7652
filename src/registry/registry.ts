// Subjects and schema ids, through the Confluent schema registry REST API (Confluent, or a
// compatible one such as Apicurio's ccompat API). The id is cached per (subject, schema text) so
// each relation version costs one round trip. Encoding is done by the caller: it holds the avsc
// Type already (with the bigint long type), and the Confluent wire format is five bytes of header.
//
// Registration is a plain `POST /subjects/{subject}/versions` — nothing else. (The
// @kafkajs/confluent-schema-registry client it replaced first compared the subject's
// compatibility with its own option and refused to register when they differed — so a subject a
// user had set to NONE to let an incompatible change through could never be registered again —
// and it wrote a subject-level BACKWARD config on every new subject, overriding the registry's
// global rule. pgcdc leaves compatibility to the registry and its operator.)
import { Agent } from 'undici';
import { ConnectionLost, UserError, causeChain, failureKind } from '../errors.ts';
import { readPem } from '../postgres/connection.ts';

export interface RegistrySettings {
  url: string;
  username?: string;
  password?: string;
  token?: string;
  /** CA certificate(s) for an https registry: file path, PEM or base64 PEM. */
  ca?: string;
}

/** HTTP 409 on registration: the registry's compatibility rule refused the schema. */
export class IncompatibleSchemaError extends UserError {
  override name = 'IncompatibleSchemaError';
  readonly subject: string;
  /** The registry's own explanation (its response's `message`). */
  readonly registryMessage: string;

  constructor(subject: string, registryMessage: string) {
    super(
      `schema registry refused a new version of subject ${subject} as incompatible with its compatibility rule ` +
        `(${registryMessage}); see docs/schema-evolution.md "Incompatible changes"`,
    );
    this.subject = subject;
    this.registryMessage = registryMessage;
  }
}

/** A registry answer other than success. */
class RegistryHttpError extends Error {
  readonly status: number;
  readonly errorCode: number | undefined;
  /** Read by failureKind() where the error reaches the worker undescribed. */
  readonly retriable: boolean;
  constructor(status: number, message: string, errorCode?: number) {
    super(message);
    this.status = status;
    this.errorCode = errorCode;
    this.retriable = status >= 500 || status === 408 || status === 429;
  }
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
const ATTEMPTS = 4;
const TIMEOUT_MS = 30_000;

export class Registry {
  #ids = new Map<string, Promise<number>>();
  #url: string;
  #headers: Record<string, string>;
  /** Trusts registry.ca (instead of the system CAs) when set. */
  #dispatcher: Agent | undefined;
  calls = 0;

  constructor(s: RegistrySettings) {
    // fetch refuses URLs with credentials: user:password@ in the URL becomes Basic auth.
    const url = new URL(s.url);
    let username = s.username;
    let password = s.password;
    if (url.username && !username) {
      username = decodeURIComponent(url.username);
      password = decodeURIComponent(url.password);
    }
    url.username = '';
    url.password = '';
    this.#url = url.toString().replace(/\/+$/, '');
    this.#headers = { Accept: `${CONTENT_TYPE}, application/json` };
    if (s.ca) this.#dispatcher = new Agent({ connect: { ca: readPem(s.ca, 'registry.ca') } });
    if (s.token) this.#headers.Authorization = `Bearer ${s.token}`;
    else if (username) {
      const basic = Buffer.from(`${username}:${password ?? ''}`).toString('base64');
      this.#headers.Authorization = `Basic ${basic}`;
    }
  }

  get url(): string {
    return this.#url;
  }

  /** The schema id of `schema` under `subject`, registering it as the subject's next version when new. */
  register(subject: string, schema: string): Promise<number> {
    const cacheKey = `${subject}\u0000${schema}`;
    let id = this.#ids.get(cacheKey);
    if (!id) {
      this.calls++;
      id = this.#request<{ id: number }>('POST', `/subjects/${encodeURIComponent(subject)}/versions`, {
        schema,
      })
        .then((r) => {
          if (typeof r.id !== 'number')
            throw new Error(`schema registry answered without an id: ${JSON.stringify(r)}`);
          return r.id;
        })
        .catch((err: unknown) => {
          this.#ids.delete(cacheKey);
          throw this.#describe(err, subject);
        });
      this.#ids.set(cacheKey, id);
    }
    return id;
  }

  /** The latest registered schema text of `subject`, or null when the subject does not exist. */
  async latestSchema(subject: string): Promise<string | null> {
    try {
      const r = await this.#request<{ schema: string }>(
        'GET',
        `/subjects/${encodeURIComponent(subject)}/versions/latest`,
      );
      return r.schema;
    } catch (err) {
      if (err instanceof RegistryHttpError && err.status === 404) return null;
      throw this.#describe(err, subject);
    }
  }

  /**
   * The compatibility level in effect for `subject` (its own, else the registry-wide default) and
   * the registry-wide default; null where the registry does not say. Asked with
   * `defaultToGlobal=true`: without it Apicurio answers NONE for a subject with no level of its own.
   */
  async compatibility(subject: string): Promise<{ effective: string | null; global: string | null }> {
    const read = async (path: string): Promise<string | null> => {
      try {
        const r = await this.#request<{ compatibilityLevel?: string; compatibility?: string }>('GET', path);
        const level = r.compatibilityLevel ?? r.compatibility;
        return level ? level.toUpperCase() : null;
      } catch (err) {
        if (err instanceof RegistryHttpError && err.status === 404) return null;
        throw err;
      }
    };
    const global = await read('/config');
    const effective = (await read(`/config/${encodeURIComponent(subject)}?defaultToGlobal=true`)) ?? global;
    return { effective, global };
  }

  async #request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(`${this.#url}${path}`, {
          method,
          headers: body === undefined ? this.#headers : { ...this.#headers, 'Content-Type': CONTENT_TYPE },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(TIMEOUT_MS),
          ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
        } as RequestInit);
      } catch (err) {
        // Network failure or timeout: retried, then reported with its cause.
        if (attempt < ATTEMPTS) {
          await sleep(300 * 2 ** attempt);
          continue;
        }
        throw err;
      }
      const text = await res.text();
      if (res.ok) return (text ? JSON.parse(text) : {}) as T;
      let message = text || res.statusText;
      let errorCode: number | undefined;
      try {
        const parsed = JSON.parse(text) as { message?: string; error_code?: number };
        if (parsed.message) message = parsed.message;
        errorCode = parsed.error_code;
      } catch {
        // not JSON: keep the text
      }
      if (res.status >= 500 && attempt < ATTEMPTS) {
        await sleep(300 * 2 ** attempt);
        continue;
      }
      throw new RegistryHttpError(res.status, message, errorCode);
    }
  }

  /**
   * The registry's failures by kind: a refused schema, refused credentials, a URL with no registry
   * API behind it (404) and an untrusted certificate are the user's; a registry that is down,
   * unreachable, overloaded (5xx, 408, 429) or slow is a ConnectionLost that the worker waits out.
   * A host name that does not resolve counts as unreachable (a DNS outage looks the same).
   */
  #describe(err: unknown, subject: string): Error {
    const url = this.#url;
    if (err instanceof RegistryHttpError) {
      if (err.status === 409) return new IncompatibleSchemaError(subject, err.message);
      if (err.status === 401 || err.status === 403) {
        return new UserError(
          `schema registry ${url} refused the credentials (HTTP ${err.status}); check registry.username/password or registry.token`,
        );
      }
      if (err.status === 404) {
        return new UserError(
          `schema registry ${url} answered HTTP 404 for subject ${subject} (${err.message}); check registry.url: it is the Confluent-compatible API's base URL (Apicurio: …/apis/ccompat/v7)`,
        );
      }
      if (err.status >= 500 || err.status === 408 || err.status === 429) {
        return new ConnectionLost(
          `schema registry ${url} is unavailable (HTTP ${err.status} for subject ${subject}: ${err.message})`,
          { cause: err },
        );
      }
      if (err.status === 422) {
        return new Error(
          `schema registry rejected the schema of subject ${subject} as invalid: ${err.message}`,
        );
      }
      return new Error(`schema registry ${url}: HTTP ${err.status} for subject ${subject}: ${err.message}`);
    }
    const cause = (err as { cause?: { code?: string } }).cause;
    const code = cause?.code ?? (err as { code?: string }).code;
    if (code && /CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ERR_SSL|HOSTNAME_MISMATCH/.test(code)) {
      return new UserError(`schema registry ${url}: TLS failed (${code}); check registry.ca`);
    }
    if (err instanceof Error && err.name === 'TimeoutError') {
      return new ConnectionLost(
        `schema registry ${url} did not answer within ${TIMEOUT_MS / 1000}s (subject ${subject})`,
        { cause: err },
      );
    }
    if (failureKind(err) === 'connection') {
      return new ConnectionLost(`schema registry ${url} is unreachable (${code ?? causeChain(err)})`, {
        cause: err,
      });
    }
    return err instanceof Error ? err : new Error(String(err));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The Confluent wire format: magic byte 0, schema id (4 bytes, big-endian), Avro binary. */
export function confluentFrame(schemaId: number, avro: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + avro.length);
  out[0] = 0;
  out.writeInt32BE(schemaId, 1);
  avro.copy(out, 5);
  return out;
}

/** Room for many records per slab; a larger record gets a buffer of its own. */
const SLAB_BYTES = 256 * 1024;

/** What FrameWriter needs of an avsc Type. */
interface Encodable {
  /** Writes `value` at `pos`; returns the end position, or minus the bytes missing. */
  encode(value: unknown, buf: Buffer, pos: number): number;
}

/**
 * Confluent-framed Avro records written straight into shared slabs: one write per record, where
 * avsc's toBuffer (a zero-filled buffer and a copy) and confluentFrame (a second buffer and copy)
 * cost three. A record is a view of its slab; the slab is freed with the last record on it, which
 * the sink drops once Kafka has acknowledged it.
 */
export class FrameWriter {
  #slab = Buffer.allocUnsafe(0);
  #pos = 0;

  frame(schemaId: number, type: Encodable, value: unknown): Buffer {
    for (;;) {
      const start = this.#pos;
      const end = this.#slab.length - start > 5 ? type.encode(value, this.#slab, start + 5) : -1;
      if (end > 0) {
        this.#slab[start] = 0;
        this.#slab.writeInt32BE(schemaId, start + 1);
        this.#pos = end;
        return this.#slab.subarray(start, end);
      }
      const needed = Math.max(0, this.#slab.length - start - 5) - end + 5;
      if (needed > SLAB_BYTES / 4) {
        const own = Buffer.allocUnsafe(needed);
        const written = type.encode(value, own, 5);
        if (written !== needed) throw new Error(`Avro encoding wrote ${written} bytes of ${needed}`);
        own[0] = 0;
        own.writeInt32BE(schemaId, 1);
        return own;
      }
      this.#slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.#pos = 0;
    }
  }
}
