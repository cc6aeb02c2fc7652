// A worker's JSON log kept in memory, for tests that check what an operator would read.
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/worker/log.ts';

/** A JSON logger at info whose whole output the test can read as text. */
export function capturingLogger(connector: string): { log: Logger; lines: () => string } {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { log: createLogger({ connector, level: 'info', format: 'json', out }), lines: () => text };
}
