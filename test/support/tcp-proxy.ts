// A pass-through TCP proxy on a loopback port, for fault tests of PostgreSQL connections: a test
// can freeze one connection (nothing forwarded either way and no close passed on, as when a NAT
// entry is dropped or a peer hangs) or slip bytes into what the server sends, between two of its
// protocol messages. PostgreSQL framing (type byte + Int32 length) is followed on the server side
// once the client started in plain text (sslmode=disable): an SSL or GSS request switches it off.
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface ProxiedConnection {
  readonly id: number;
  /** The client's first bytes: a PostgreSQL StartupMessage when sslmode=disable. */
  readonly startup: Buffer;
  /** The StartupMessage asked for a replication connection (replication=database). */
  readonly replication: boolean;
  readonly frozen: boolean;
  readonly closed: boolean;
  /** Stops forwarding in both directions and keeps both sockets open (until the proxy closes). */
  freeze(): void;
  /** Sends `bytes` to the client between two server messages (now, when none is half forwarded). */
  injectToClient(bytes: Buffer): void;
  /**
   * From now on, passes a server keepalive (CopyData 'k') only as the answer to a client status
   * update that asked for one ('r' with replyRequested): a server that volunteers nothing.
   */
  keepalivesOnlyOnRequest(): void;
  /** Server keepalives dropped by keepalivesOnlyOnRequest(). */
  readonly droppedKeepalives: number;
}

export interface TcpProxy {
  host: string;
  port: number;
  readonly connections: readonly ProxiedConnection[];
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSS_REQUEST = 80877104;

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const connections: Connection[] = [];
  const server = net.createServer((client) => {
    const c = new Connection(connections.length + 1, client, target);
    connections.push(c);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.destroy();
        server.close(() => resolve());
      }),
  };
}

class Connection implements ProxiedConnection {
  readonly id: number;
  startup = Buffer.alloc(0);
  replication = false;
  frozen = false;
  closed = false;
  #client: net.Socket;
  #upstream: net.Socket;
  /** Server bytes of a message not yet complete; null while the framing is not followed. */
  #partial: Buffer | null = null;
  #injections: Buffer[] = [];
  /** Client bytes of a message not yet complete (after the StartupMessage). */
  #clientPartial = Buffer.alloc(0);
  #onlyRequestedKeepalives = false;
  #requestedKeepalives = 0;
  droppedKeepalives = 0;

  constructor(id: number, client: net.Socket, target: { host: string; port: number }) {
    this.id = id;
    this.#client = client;
    this.#upstream = net.connect(target.port, target.host);
    client.on('error', () => undefined);
    this.#upstream.on('error', () => undefined);
    client.on('data', (chunk: Buffer) => {
      if (this.startup.length === 0) this.#sawStartup(chunk);
      else if (this.#partial !== null) this.#fromClient(chunk);
      if (!this.frozen) this.#upstream.write(chunk);
    });
    this.#upstream.on('data', (chunk: Buffer) => {
      if (!this.frozen) this.#fromServer(chunk);
    });
    const closeBoth = (): void => {
      if (this.frozen) return; // a frozen path passes on nothing, not even a close
      this.destroy();
    };
    client.on('close', closeBoth);
    this.#upstream.on('close', closeBoth);
  }

  freeze(): void {
    this.frozen = true;
    this.#client.pause();
    this.#upstream.pause();
  }

  injectToClient(bytes: Buffer): void {
    if (this.#partial !== null && this.#partial.length > 0) this.#injections.push(bytes);
    else this.#client.write(bytes);
  }

  keepalivesOnlyOnRequest(): void {
    this.#onlyRequestedKeepalives = true;
  }

  destroy(): void {
    this.closed = true;
    this.#client.destroy();
    this.#upstream.destroy();
  }

  #sawStartup(chunk: Buffer): void {
    this.startup = Buffer.from(chunk);
    const code = chunk.length >= 8 ? chunk.readInt32BE(4) : 0;
    if (code === SSL_REQUEST || code === GSS_REQUEST) return; // encrypted or unframed from here on
    this.#partial = Buffer.alloc(0);
    this.replication = chunk.includes(Buffer.from('replication\0database\0'));
  }

  /** Counts the client's status updates that ask the server for an immediate keepalive. */
  #fromClient(chunk: Buffer): void {
    const buf = Buffer.concat([this.#clientPartial, chunk]);
    let pos = 0;
    for (const msg of messages(buf)) {
      pos += msg.length;
      // CopyData ('d') carrying a Standby status update ('r', 34 bytes) with replyRequested = 1.
      if (msg[0] === 0x64 && msg[5] === 0x72 && msg.length === 5 + 34 && msg[5 + 33] === 1) {
        this.#requestedKeepalives++;
      }
    }
    this.#clientPartial = Buffer.from(buf.subarray(pos));
  }

  /** Forwards complete server messages; injected bytes go out between two of them. */
  #fromServer(chunk: Buffer): void {
    if (this.#partial === null) {
      this.#client.write(chunk);
      return;
    }
    const buf = this.#partial.length > 0 ? Buffer.concat([this.#partial, chunk]) : chunk;
    let pos = 0;
    for (const msg of messages(buf)) {
      pos += msg.length;
      if (this.#onlyRequestedKeepalives && msg[0] === 0x64 && msg[5] === 0x6b) {
        if (this.#requestedKeepalives === 0) {
          this.droppedKeepalives++;
          continue;
        }
        this.#requestedKeepalives--;
      }
      this.#client.write(msg);
    }
    this.#partial = Buffer.from(buf.subarray(pos));
    if (this.#partial.length === 0) for (const b of this.#injections.splice(0)) this.#client.write(b);
  }
}

/** The complete PostgreSQL protocol messages (type byte + Int32 length) at the start of `buf`. */
function* messages(buf: Buffer): Generator<Buffer> {
  let pos = 0;
  while (buf.length - pos >= 5) {
    const len = buf.readInt32BE(pos + 1);
    if (buf.length - pos < 1 + len) return;
    yield buf.subarray(pos, pos + 1 + len);
    pos += 1 + len;
  }
}

/** A PostgreSQL CopyData message ('d') around `payload`, as the server sends it during replication. */
export function copyData(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = 0x64;
  head.writeInt32BE(4 + payload.length, 1);
  return Buffer.concat([head, payload]);
}
