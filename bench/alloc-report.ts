// Digest of an allocation profile written by bench/alloc-hook.mjs: bytes allocated per row (or
// per change), by function and by file, heaviest first.
//   node bench/alloc-report.ts <alloc-PID.json> <rows> [--top N]
import { readFileSync } from 'node:fs';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const [file, rowsArg] = process.argv.slice(2);
if (!file || !rowsArg) {
  console.error('usage: node bench/alloc-report.ts <alloc-PID.json> <rows> [--top N]');
  process.exit(2);
}
const rows = Number(rowsArg);
const at = process.argv.indexOf('--top');
const top = at > 0 ? Number(process.argv[at + 1]) : 25;
const profile = JSON.parse(readFileSync(file, 'utf8')) as { head: Node };

const where = (url: string): string =>
  url.replace(/^.*node_modules\//, 'node_modules/').replace(/^file:\/\/.*?\/(src|bench|test)\//, '$1/');
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
let total = 0;
const walk = (n: Node): void => {
  const url = where(n.callFrame.url);
  const name = `${n.callFrame.functionName || '(anonymous)'} ${url || '(native)'}:${n.callFrame.lineNumber + 1}`;
  total += n.selfSize;
  byFunction.set(name, (byFunction.get(name) ?? 0) + n.selfSize);
  const unit = url.startsWith('node_modules/') ? url.split('/').slice(0, 2).join('/') : url || '(native)';
  byFile.set(unit, (byFile.get(unit) ?? 0) + n.selfSize);
  for (const c of n.children) walk(c);
};
walk(profile.head);

const line = (bytes: number, what: string) =>
  `${(bytes / rows).toFixed(0).padStart(7)} B/row ${((100 * bytes) / total).toFixed(1).padStart(5)} %  ${what}`;
console.log(`${(total / 2 ** 20).toFixed(0)} MiB allocated, ${(total / rows).toFixed(0)} bytes per row`);
console.log('\nby function (the one that made the allocation):');
for (const [name, b] of [...byFunction].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(line(b, name));
console.log('\nby file or package:');
for (const [name, b] of [...byFile].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(line(b, name));
