// Runs after `npm ci` / `npm install` (package.json "postinstall"): small, exact fixes to
// dependencies, each applied only to the text it was written for. If a dependency changed, the
// install fails with the file named, so a patch is reviewed instead of silently not applied.
// Plain JavaScript with no imports beyond Node's own: it runs before anything else is built.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

const patches = [
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
];

let failed = false;
for (const p of patches) {
  const path = `${root}${p.file}`;
  if (!existsSync(path)) continue; // not installed (e.g. a partial install): nothing to patch
  const text = readFileSync(path, 'utf8');
  if (text.includes(p.to)) continue;
  if (!text.includes(p.from)) {
    process.stderr.write(
      `patch-dependencies: ${p.file} is not the version this patch was written for; review scripts/patch-dependencies.mjs\n`,
    );
    failed = true;
    continue;
  }
  writeFileSync(path, text.replace(p.from, p.to));
}
process.exit(failed ? 1 : 0);
