// What crosses between the pipeline's thread and the producer thread (producer-thread.ts): a
// batch of records packed into one transferable buffer, and errors as plain data that keep what
// pgcdc classifies them by (failureKind, describeKafkaError: name, message, code, type,
// retriable, and the cause chain). Pure functions, unit-tested without a thread.
import type { OutRecord } from './batcher.ts';

/** A batch as it is posted: the bytes once, the layout beside them. */
export interface PackedBatch {
  topics: string[];
  /** Records per topic, in the order of `topics`. */
  counts: number[];
  /** Per record: key length, value length (-1: null), in the order of the records. */
  layout: Int32Array;
  /** Every key and value, back to back. */
  data: Uint8Array;
  /** Headers of the records that have any, by record index (rare: primary-key changes). */
  headers: Array<[number, Record<string, string>]>;
}

/** The buffers to transfer with a packed batch (they are unusable here afterwards). */
export function transferList(p: PackedBatch): ArrayBuffer[] {
  return [p.layout.buffer as ArrayBuffer, p.data.buffer as ArrayBuffer];
}

export function packBatch(batch: Map<string, OutRecord[]>): PackedBatch {
  let records = 0;
  let bytes = 0;
  for (const list of batch.values()) {
    records += list.length;
    for (const r of list) bytes += (r.key?.length ?? 0) + (r.value?.length ?? 0);
  }
  const layout = new Int32Array(records * 2);
  // An ArrayBuffer of its own (not Node's shared pool), so it can be transferred.
  const data = new Uint8Array(new ArrayBuffer(bytes));
  const topics: string[] = [];
  const counts: number[] = [];
  const headers: PackedBatch['headers'] = [];
  let i = 0;
  let at = 0;
  for (const [topic, list] of batch) {
    topics.push(topic);
    counts.push(list.length);
    for (const r of list) {
      if (r.key) {
        data.set(r.key, at);
        at += r.key.length;
      }
      if (r.value) {
        data.set(r.value, at);
        at += r.value.length;
      }
      layout[2 * i] = r.key ? r.key.length : -1;
      layout[2 * i + 1] = r.value ? r.value.length : -1;
      if (r.headers) headers.push([i, r.headers]);
      i++;
    }
  }
  return { topics, counts, layout, data, headers };
}

/** The kafkajs topicMessages of a packed batch; keys and values are views of its buffer. */
export function unpackBatch(p: PackedBatch): Array<{ topic: string; messages: OutRecord[] }> {
  const buf = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  const headers = new Map(p.headers);
  const out: Array<{ topic: string; messages: OutRecord[] }> = [];
  let i = 0;
  let at = 0;
  for (let t = 0; t < p.topics.length; t++) {
    const topic = p.topics[t]!;
    const messages: OutRecord[] = [];
    for (let n = 0; n < p.counts[t]!; n++, i++) {
      const keyLen = p.layout[2 * i]!;
      const valueLen = p.layout[2 * i + 1]!;
      const key = keyLen < 0 ? null : buf.subarray(at, (at += keyLen));
      const value = valueLen < 0 ? null : buf.subarray(at, (at += valueLen));
      const h = headers.get(i);
      messages.push(h ? { topic, key, value, headers: h } : { topic, key, value });
    }
    out.push({ topic, messages });
  }
  return out;
}

/** An error as data: what structured cloning would lose (name, own fields, causes) kept. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  /** Scalar own fields: code, type, retriable, severity, retryCount, … */
  fields: Record<string, string | number | boolean>;
  cause?: WireError;
  originalError?: WireError;
  errors?: WireError[];
}

const MAX_DEPTH = 8;

export function toWireError(err: unknown, depth = 0): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err), fields: {} };
  const fields: WireError['fields'] = {};
  for (const [k, v] of Object.entries(err)) {
    if (k === 'name' || k === 'message' || k === 'stack') continue;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') fields[k] = v;
  }
  // Getters on the prototype (kafkajs puts none there, but a subclass may).
  const e = err as Error & { code?: unknown; type?: unknown; retriable?: unknown; cause?: unknown };
  for (const k of ['code', 'type', 'retriable'] as const) {
    const v = e[k];
    if (!(k in fields) && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'))
      fields[k] = v;
  }
  const w: WireError = { name: err.name, message: err.message, fields };
  if (err.stack) w.stack = err.stack;
  if (depth >= MAX_DEPTH) return w;
  const x = err as { cause?: unknown; originalError?: unknown; errors?: unknown };
  if (x.cause !== undefined && x.cause !== err) w.cause = toWireError(x.cause, depth + 1);
  if (x.originalError !== undefined && x.originalError !== err && x.originalError !== x.cause)
    w.originalError = toWireError(x.originalError, depth + 1);
  if (Array.isArray(x.errors)) w.errors = x.errors.map((c) => toWireError(c, depth + 1));
  return w;
}

/** The error again, as an Error with the same name, message, fields and causes. */
export function fromWireError(w: WireError): Error {
  const err = new Error(w.message, w.cause ? { cause: fromWireError(w.cause) } : undefined);
  // An own property, as kafkajs and pgcdc set it (failureKind reads the name).
  Object.defineProperty(err, 'name', {
    value: w.name,
    writable: true,
    enumerable: false,
    configurable: true,
  });
  Object.assign(err, w.fields);
  if (w.stack) err.stack = w.stack;
  if (w.originalError) (err as { originalError?: Error }).originalError = fromWireError(w.originalError);
  if (w.errors) (err as { errors?: Error[] }).errors = w.errors.map(fromWireError);
  return err;
}
