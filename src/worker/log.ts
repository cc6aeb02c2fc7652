// Structured logs: one JSON object per line (level, time, connector, message, context), or a
// readable line when writing to a terminal.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, ctx?: Record<string, unknown>): void;
  info(msg: string, ctx?: Record<string, unknown>): void;
  warn(msg: string, ctx?: Record<string, unknown>): void;
  error(msg: string, ctx?: Record<string, unknown>): void;
}

export function createLogger(opts: {
  connector: string;
  level: LogLevel;
  format: 'json' | 'pretty' | 'auto';
  out?: NodeJS.WritableStream & { isTTY?: boolean };
}): Logger {
  const out = opts.out ?? process.stderr;
  const pretty = opts.format === 'pretty' || (opts.format === 'auto' && out.isTTY === true);
  const min = RANK[opts.level];
  const write = (level: LogLevel, message: string, ctx?: Record<string, unknown>): void => {
    if (RANK[level] < min) return;
    const time = new Date().toISOString();
    if (pretty) {
      const extra = ctx && Object.keys(ctx).length > 0 ? ` ${JSON.stringify(ctx, bigintJson)}` : '';
      out.write(`${time} ${level.toUpperCase().padEnd(5)} ${message}${extra}\n`);
    } else {
      out.write(
        `${JSON.stringify({ level, time, connector: opts.connector, message, ...ctx }, bigintJson)}\n`,
      );
    }
  };
  return {
    debug: (m, c) => write('debug', m, c),
    info: (m, c) => write('info', m, c),
    warn: (m, c) => write('warn', m, c),
    error: (m, c) => write('error', m, c),
  };
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
