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
