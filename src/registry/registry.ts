// Subjects and schema ids. Registration goes through @kafkajs/confluent-schema-registry; the
// id is cached per (subject, schema text) so each relation version costs one round trip.
// Encoding is done here, not by the library: we hold the avsc Type already (with the bigint
// long type), and the Confluent wire format is five bytes of header.
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { UserError } from '../errors.ts';

export interface RegistrySettings {
  url: string;
  username?: string;
  password?: string;
  token?: string;
}

export class Registry {
  #client: SchemaRegistry;
  #ids = new Map<string, Promise<number>>();
  #url: string;
  calls = 0;

  constructor(s: RegistrySettings) {
    this.#url = s.url;
    const auth = s.username ? { username: s.username, password: s.password ?? '' } : undefined;
    const middlewares = s.token
      ? [
          // Bearer token: mappersmith middleware that adds the header to every request.
          () => ({
            prepareRequest: (next: () => Promise<{ enhance: (o: object) => unknown }>) =>
              next().then((req) => req.enhance({ headers: { Authorization: `Bearer ${s.token}` } })),
          }),
        ]
      : undefined;
    this.#client = new SchemaRegistry({ host: s.url, auth, middlewares } as ConstructorParameters<
      typeof SchemaRegistry
    >[0]);
  }

  get client(): SchemaRegistry {
    return this.#client;
  }

  /** The schema id of `schema` under `subject`, registering it as the subject's next version when new. */
  register(subject: string, schema: string): Promise<number> {
    const cacheKey = `${subject}\u0000${schema}`;
    let id = this.#ids.get(cacheKey);
    if (!id) {
      this.calls++;
      id = this.#client
        .register({ type: SchemaType.AVRO, schema }, { subject })
        .then((r) => r.id)
        .catch((err: unknown) => {
          this.#ids.delete(cacheKey);
          throw describeRegistryError(err, subject, this.#url);
        });
      this.#ids.set(cacheKey, id);
    }
    return id;
  }
}

/** The Confluent wire format: magic byte 0, schema id (4 bytes, big-endian), Avro binary. */
export function confluentFrame(schemaId: number, avro: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + avro.length);
  out[0] = 0;
  out.writeInt32BE(schemaId, 1);
  avro.copy(out, 5);
  return out;
}

function describeRegistryError(err: unknown, subject: string, url: string): Error {
  const e = err as { status?: number; message?: string; code?: string };
  if (e.status === 409) {
    return new UserError(
      `schema registry refused a new version of subject ${subject} as incompatible with its compatibility rule ` +
        `(${e.message ?? 'HTTP 409'}); see docs/operations.md "Incompatible schema change"`,
    );
  }
  if (e.status === 401 || e.status === 403) {
    return new UserError(
      `schema registry ${url} refused the credentials (HTTP ${e.status}); check registry.username/password or registry.token`,
    );
  }
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOTFOUND') {
    return new UserError(`schema registry ${url} is unreachable (${e.code}); check registry.url`);
  }
  return err instanceof Error ? err : new Error(String(err));
}
