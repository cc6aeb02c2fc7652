// An SSH tunnel through a bastion (ssh2): one SSH connection per connector run, one forwarded
// channel (direct-tcpip) per PostgreSQL connection. The bastion's host key is pinned by its
// SHA256 fingerprint (as `ssh-keygen -lf` prints it). When the SSH connection drops, the
// connections through it fail; the next connection attempt opens a new SSH connection.
import { createHash } from 'node:crypto';
import { Duplex } from 'node:stream';
import ssh2, { type ClientChannel, type ConnectConfig } from 'ssh2';

const { Client, utils } = ssh2;
type Client = InstanceType<typeof Client>;
import { RetriableError, UserError } from '../errors.ts';

export interface SshSettings {
  enabled: boolean;
  host?: string;
  port: number;
  user?: string;
  /** Base64 of the private key text (OpenSSH or PEM). */
  privateKey?: string;
  passphrase?: string;
  /** SHA256:<base64>, as printed by ssh-keygen -lf. */
  hostKeyFingerprint?: string;
  acceptUnknownHostKey: boolean;
  /** SSH keepalive interval; 0 disables. Default 15 s. */
  keepaliveIntervalMs?: number;
  readyTimeoutMs?: number;
}

interface TunnelLog {
  info(msg: string, ctx?: Record<string, unknown>): void;
  warn(msg: string, ctx?: Record<string, unknown>): void;
}

/** The SHA256 fingerprint of an SSH public key blob, as ssh-keygen -lf prints it. */
export function sshFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** `SHA256:<base64>` without padding, with or without the prefix as given. */
export function normalizeFingerprint(fp: string): string {
  const t = fp.trim();
  const body = t.startsWith('SHA256:') ? t.slice(7) : t;
  return `SHA256:${body.replace(/=+$/, '')}`;
}

/** The private key text from its base64 form (a key pasted as text is accepted too). */
export function decodePrivateKey(value: string): string {
  const t = value.trim();
  if (t.startsWith('-----BEGIN')) return t;
  return Buffer.from(t, 'base64').toString('utf8');
}

export class SshTunnel {
  readonly #s: SshSettings;
  readonly #log: TunnelLog;
  #client: Client | null = null;
  #connecting: Promise<Client> | null = null;
  #closed = false;
  /** Fingerprint presented by the bastion on the last handshake. */
  presentedFingerprint: string | null = null;
  /** How many SSH connections were opened (reconnects included). */
  connects = 0;

  constructor(s: SshSettings, log: TunnelLog) {
    if (!s.host || !s.user || !s.privateKey) {
      throw new UserError('ssh.enabled needs ssh.host, ssh.user and ssh.privateKey');
    }
    if (!s.hostKeyFingerprint && !s.acceptUnknownHostKey) {
      throw new UserError('ssh.enabled needs ssh.hostKeyFingerprint (or ssh.acceptUnknownHostKey=true)');
    }
    this.#s = s;
    this.#log = log;
    // Fail early (and without echoing anything of the key) when the key cannot be read.
    const parsed = utils.parseKey(decodePrivateKey(s.privateKey), s.passphrase);
    if (parsed instanceof Error) {
      const encrypted = /encrypted|passphrase/i.test(parsed.message);
      throw new UserError(
        encrypted
          ? `ssh.privateKey is encrypted and ssh.passphrase is ${s.passphrase ? 'wrong' : 'not set'}`
          : `ssh.privateKey is not a private key pgcdc can read (${parsed.message.replace(/:.*/, '')}); give the base64 of an OpenSSH or PEM private key file`,
      );
    }
  }

  get endpoint(): string {
    return `${this.#s.host}:${this.#s.port}`;
  }

  /** A connected SSH client: the current one, or a new one when there is none or it dropped. */
  #ensure(): Promise<Client> {
    if (this.#closed) return Promise.reject(new Error('SSH tunnel closed'));
    if (this.#client) return Promise.resolve(this.#client);
    this.#connecting ??= this.#open().finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }

  #open(): Promise<Client> {
    const s = this.#s;
    const expected = s.hostKeyFingerprint ? normalizeFingerprint(s.hostKeyFingerprint) : null;
    let refusal: UserError | null = null;
    return new Promise<Client>((resolve, reject) => {
      const client = new Client();
      let ready = false;
      const config: ConnectConfig = {
        host: s.host,
        port: s.port,
        username: s.user,
        privateKey: decodePrivateKey(s.privateKey!),
        passphrase: s.passphrase,
        readyTimeout: s.readyTimeoutMs ?? 20_000,
        keepaliveInterval: s.keepaliveIntervalMs ?? 15_000,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => {
          const presented = sshFingerprint(key);
          this.presentedFingerprint = presented;
          if (expected) {
            if (presented === expected) return true;
            refusal = new UserError(
              `SSH host key of ${this.endpoint} is ${presented}, not the pinned ssh.hostKeyFingerprint ${expected}; ` +
                'refusing to connect (check the bastion, then update ssh.hostKeyFingerprint)',
            );
            return false;
          }
          this.#log.warn('SSH: accepting an unverified bastion host key (ssh.acceptUnknownHostKey=true)', {
            bastion: this.endpoint,
            fingerprint: presented,
          });
          return true;
        },
      };
      client.on('ready', () => {
        ready = true;
        this.connects++;
        this.#client = client;
        this.#log.info('SSH tunnel connected', {
          bastion: this.endpoint,
          fingerprint: this.presentedFingerprint,
        });
        resolve(client);
      });
      client.on('error', (err: Error & { level?: string }) => {
        if (!ready) {
          client.end();
          reject(refusal ?? describeSshError(err, this.endpoint, s.user!));
          return;
        }
        this.#log.warn('SSH tunnel error', { bastion: this.endpoint, err: err.message });
        if (this.#client === client) this.#client = null;
      });
      client.on('close', () => {
        if (this.#client === client) {
          this.#client = null;
          if (!this.#closed)
            this.#log.warn('SSH tunnel closed; the next connection opens it again', {
              bastion: this.endpoint,
            });
        }
        if (!ready)
          reject(
            refusal ?? new RetriableError(`SSH connection to ${this.endpoint} closed during the handshake`),
          );
      });
      client.connect(config);
    });
  }

  /** A channel from the bastion to host:port. */
  async forwardOut(host: string, port: number): Promise<ClientChannel> {
    const client = await this.#ensure();
    return new Promise<ClientChannel>((resolve, reject) => {
      client.forwardOut('127.0.0.1', 0, host, port, (err, channel) => {
        if (err) {
          reject(
            new RetriableError(
              `SSH bastion ${this.endpoint} could not open a connection to ${host}:${port} (${err.message}); ` +
                'check postgres.host/port as the bastion sees them and AllowTcpForwarding on the bastion',
            ),
          );
          return;
        }
        resolve(channel);
      });
    });
  }

  /** A pg `stream` factory: each pg connection gets its own forwarded channel to host:port. */
  streamFactory(host: string, port: number): () => Duplex {
    return () => new TunnelSocket(() => this.forwardOut(host, port));
  }

  async close(): Promise<void> {
    this.#closed = true;
    const client = this.#client ?? (await this.#connecting?.catch(() => null));
    this.#client = null;
    client?.end();
  }
}

function describeSshError(
  err: Error & { level?: string; code?: string },
  endpoint: string,
  user: string,
): Error {
  if (err.level === 'client-authentication') {
    return new UserError(
      `SSH bastion ${endpoint} refused the key of user ${user} (check ssh.user and ssh.privateKey)`,
    );
  }
  if (err.level === 'client-timeout') return new RetriableError(`SSH connection to ${endpoint} timed out`);
  if (err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EHOSTUNREACH') {
    return new RetriableError(
      `SSH bastion ${endpoint} is unreachable (${err.code}); check ssh.host and ssh.port`,
    );
  }
  return new RetriableError(`SSH connection to ${endpoint} failed: ${err.message}`);
}

/**
 * The socket pg sees: connect() opens the forwarded channel (asynchronously, as a TCP connect
 * would) and emits 'connect'; data flows both ways with backpressure. TLS, when negotiated,
 * runs on top of it like on a TCP socket.
 */
class TunnelSocket extends Duplex {
  #channel: ClientChannel | null = null;
  #open: () => Promise<ClientChannel>;
  #pending: Array<{ chunk: Buffer; cb: (err?: Error | null) => void }> = [];
  #ending: (() => void) | null = null;

  constructor(open: () => Promise<ClientChannel>) {
    super();
    this.#open = open;
  }

  connect(): this {
    this.#open().then(
      (channel) => {
        if (this.destroyed) {
          channel.close();
          return;
        }
        this.#channel = channel;
        channel.on('data', (d: Buffer) => {
          if (!this.push(d)) channel.pause();
        });
        channel.on('end', () => this.push(null));
        channel.on('close', () => {
          if (!this.destroyed) this.destroy();
        });
        channel.on('error', (e: Error) => this.destroy(e));
        this.emit('connect');
        for (const p of this.#pending.splice(0)) channel.write(p.chunk, p.cb);
        if (this.#ending) {
          channel.end();
          this.#ending();
        }
      },
      (err: Error) => this.destroy(err),
    );
    return this;
  }

  override _read(): void {
    this.#channel?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#channel) this.#channel.write(chunk, cb);
    else this.#pending.push({ chunk, cb });
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#channel) {
      this.#channel.end();
      cb();
    } else this.#ending = () => cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#channel?.close();
    for (const p of this.#pending.splice(0)) p.cb(err ?? new Error('socket destroyed'));
    cb(err);
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  setTimeout(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }
}
