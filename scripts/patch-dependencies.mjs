// Runs after `npm ci` / `npm install` (package.json "postinstall"): small, exact fixes to
// dependencies, each applied only to the text it was written for. If a dependency changed, the
// install fails with the file named, so a patch is reviewed instead of silently not applied.
// Plain JavaScript with no imports beyond Node's own: it runs before anything else is built.
// Also a module: test/unit/patch-dependencies.test.ts imports `patches` to rebuild the original
// text and show the bug each patch fixes.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const patchText = (name) => readFileSync(`${root}scripts/patches/${name}`, 'utf8');

/** Each patch replaces the exact text `from` of `file` (relative to the repo) with `to`. */
export const patches = [
  {
    // kafkajs 2.2.4 copies a partition's whole message array for every message it groups
    // ([...current, message] inside a reduce): quadratic in the batch size, 13 % of the initial
    // load's CPU in the profile (docs/performance.md). Same result, built with push.
    file: 'node_modules/kafkajs/src/producer/groupMessagesPerPartition.js',
    from: `  return messages.reduce((result, message) => {
    const partition = partitioner({ topic, partitionMetadata, message })
    const current = result[partition] || []
    return Object.assign(result, { [partition]: [...current, message] })
  }, {})`,
    to: `  const result = {}
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message })
    ;(result[partition] || (result[partition] = [])).push(message)
  }
  return result`,
  },
  {
    // kafkajs 2.2.4 (tulios/kafkajs#1303, upstream PR #1798 still open): a retried sendBatch skips
    // the partitions whose new leader already answered an earlier attempt, and resolves — records
    // lost while reported as acknowledged. Patched to keep the state per topic-partition. The whole
    // function is replaced; the two texts are in scripts/patches/ for review.
    file: 'node_modules/kafkajs/src/producer/sendMessages.js',
    from: patchText('kafkajs-sendMessages.from.js'),
    to: patchText('kafkajs-sendMessages.to.js'),
  },
  {
    // kafkajs 2.2.4 starts with throttledUntil = -1, so when nothing is throttled it schedules the
    // pending-request check with a delay of about minus the current epoch in ms: Node >= 23 prints
    // a TimeoutNegativeWarning (a non-JSON line in the worker's JSON log) at every start. A delay
    // below 1 ms already meant "as soon as possible"; 0 says so without the warning.
    file: 'node_modules/kafkajs/src/network/requestQueue/index.js',
    from: `        this.checkPendingRequests()
      }, scheduleAt)`,
    to: `        this.checkPendingRequests()
      }, Math.max(0, scheduleAt))`,
  },
  {
    // kafkajs 2.2.4 checks before every send that its metadata covers every topic the producer
    // has sent to, scanning the metadata's topic list for each of them: 1,000 x 1,000 string
    // comparisons per send with 1,000 tables (2.6 s of 10.8 s of worker CPU in the profile of a
    // 1,000-table load, docs/performance.md "Many tables"). A Set of the metadata's topic names,
    // rebuilt when the metadata object is replaced (every refresh replaces it), gives the same
    // answer with one lookup per topic.
    file: 'node_modules/kafkajs/src/cluster/brokerPool.js',
    from: `    const shouldRefresh =
      this.metadata == null ||
      this.metadataExpireAt == null ||
      Date.now() > this.metadataExpireAt ||
      !topics.every(topic =>
        this.metadata.topicMetadata.some(topicMetadata => topicMetadata.topic === topic)
      )`,
    to: `    if (this.metadata != null && (!this.metadataTopics || this.metadataTopics.of !== this.metadata)) {
      this.metadataTopics = {
        of: this.metadata,
        names: new Set(this.metadata.topicMetadata.map(topicMetadata => topicMetadata.topic)),
      }
    }
    const shouldRefresh =
      this.metadata == null ||
      this.metadataExpireAt == null ||
      Date.now() > this.metadataExpireAt ||
      !topics.every(topic => this.metadataTopics.names.has(topic))`,
  },
  {
    // kafkajs 2.2.4's murmur2 (the Java client's partitioner hash) runs on its BigInt-backed Long:
    // four 64-bit multiplications and a Long allocation per 4 bytes of key, about 0.5 µs per
    // record while streaming (docs/performance.md "kafkajs's per-record cost"). The Java original
    // is 32-bit int arithmetic; Math.imul is that, so the hash (and every key's partition) is the
    // same. test/unit/patch-dependencies.test.ts compares it with the shipped one.
    file: 'node_modules/kafkajs/src/producer/partitioners/default/murmur2.js',
    from: patchText('kafkajs-murmur2.from.js'),
    to: patchText('kafkajs-murmur2.to.js'),
  },
  {
    // kafkajs 2.2.4's CRC32C reads one byte per table lookup; the same table extended to eight
    // (slice-by-8, the usual software CRC) reads eight bytes per step, same checksum.
    file: 'node_modules/kafkajs/src/protocol/recordBatch/crc32C/crc32C.js',
    from: `const crc32C = buffer => {
  let crc = 0 ^ -1
  for (let i = 0; i < buffer.length; i++) {
    crc = T[(crc ^ buffer[i]) & 0xff] ^ (crc >>> 8)
  }

  return (crc ^ -1) >>> 0
}`,
    to: patchText('kafkajs-crc32C.to.js'),
  },
  {
    // kafkajs 2.2.4's encoder zero-fills every buffer it allocates (a 512-byte one per record,
    // then every doubling of the request's), though it only ever exposes buf.slice(0, offset),
    // the bytes it wrote: allocUnsafe gives the same output without the fill.
    file: 'node_modules/kafkajs/src/protocol/encoder.js',
    from: `  constructor(initialSize = 511) {
    this.buf = Buffer.alloc(Encoder.nextPowerOfTwo(initialSize))`,
    to: `  constructor(initialSize = 511) {
    this.buf = Buffer.allocUnsafe(Encoder.nextPowerOfTwo(initialSize))`,
  },
  {
    file: 'node_modules/kafkajs/src/protocol/encoder.js',
    from: `      const newBuffer = Buffer.alloc(newLength)`,
    to: `      const newBuffer = Buffer.allocUnsafe(newLength)`,
  },
  {
    // kafkajs 2.2.4 writes each varint by building an array of its bytes and copying a
    // Buffer.from(array) of it: five to six Buffers per record. The same bytes written in place.
    file: 'node_modules/kafkajs/src/protocol/encoder.js',
    from: `  writeUVarInt(value) {
    const byteArray = []
    while ((value & UNSIGNED_INT32_MAX_NUMBER) !== 0) {
      byteArray.push((value & OTHER_BITS) | MOST_SIGNIFICANT_BIT)
      value >>>= 7
    }
    byteArray.push(value & OTHER_BITS)
    this.writeBufferInternal(Buffer.from(byteArray))
    return this
  }

  writeVarLong(value) {
    const byteArray = []`,
    to: `  writeUVarInt(value) {
    this.ensureAvailable(5)
    while ((value & UNSIGNED_INT32_MAX_NUMBER) !== 0) {
      this.buf[this.offset++] = (value & OTHER_BITS) | MOST_SIGNIFICANT_BIT
      value >>>= 7
    }
    this.buf[this.offset++] = value & OTHER_BITS
    return this
  }

  writeVarLong(value) {
    // A number in the int32 range (a record's timestamp delta): its zigzag fits 32 bits, and
    // the varint of that is the varlong's bytes; no Long arithmetic.
    if (typeof value === 'number' && (value | 0) === value) {
      return this.writeUVarInt(Encoder.encodeZigZag(value))
    }
    const byteArray = []`,
  },
  {
    file: 'node_modules/kafkajs/src/protocol/encoder.js',
    from: `  static sizeOfVarLong(value) {
    let longValue`,
    to: `  static sizeOfVarLong(value) {
    if (typeof value === 'number' && (value | 0) === value) return Encoder.sizeOfVarInt(value)
    let longValue`,
  },
  {
    // kafkajs 2.2.4 starts every record's encoder at 512 bytes whatever its size (a larger record
    // is then copied as the buffer doubles); the record's size is computed first, so it is the
    // initial size.
    file: 'node_modules/kafkajs/src/protocol/recordBatch/record/v0/index.js',
    from: `  return new Encoder()
    .writeVarInt(sizeOfBody)`,
    to: `  return new Encoder(Encoder.sizeOfVarInt(sizeOfBody) + sizeOfBody)
    .writeVarInt(sizeOfBody)`,
  },
];

/** Applies every patch; returns the files whose text was not the one its patch was written for. */
export function applyPatches() {
  const mismatched = [];
  for (const p of patches) {
    const path = `${root}${p.file}`;
    if (!existsSync(path)) continue; // not installed (e.g. a partial install): nothing to patch
    const text = readFileSync(path, 'utf8');
    if (text.includes(p.to)) continue;
    if (!text.includes(p.from)) {
      mismatched.push(p.file);
      continue;
    }
    writeFileSync(
      path,
      text.replace(p.from, () => p.to),
    );
  }
  return mismatched;
}

if (import.meta.main) {
  const mismatched = applyPatches();
  for (const file of mismatched) {
    process.stderr.write(
      `patch-dependencies: ${file} is not the version this patch was written for; review scripts/patch-dependencies.mjs\n`,
    );
  }
  process.exit(mismatched.length > 0 ? 1 : 0);
}
