// Structured logs: one JSON object per line (level, time, connector, message, context), or a
// readable line when writing to a terminal. Secrets never reach the output: the configured secret
// values are replaced wherever they appear (messages, context, error messages and stacks), and so
// are passwords in URLs (scheme://user:password@host) and password=... pairs.
//
// On a terminal the logger can also keep a status block (the snapshot progress) below the log
// lines: a log line erases it, is written, and the block is drawn again.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, ctx?: Record<string, unknown>): void;
  info(msg: string, ctx?: Record<string, unknown>): void;
  warn(msg: string, ctx?: Record<string, unknown>): void;
  error(msg: string, ctx?: Record<string, unknown>): void;
  /** A logger that adds `ctx` to every line. */
  child?(ctx: Record<string, unknown>): Logger;
  /** Terminal only: replaces the status block under the log lines (null or [] clears it). */
  status?(lines: string[] | null): void;
  /** True when status() draws (a terminal in pretty format). */
  readonly interactive?: boolean;
}

export const REDACTED = '[redacted]';

export interface LoggerOptions {
  connector: string;
  level: LogLevel;
  format: 'json' | 'pretty' | 'auto';
  out?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Values that must never be written (passwords, keys, tokens). */
  secrets?: Iterable<string>;
  /** Colors in pretty format; default: when `out` is a terminal and NO_COLOR is unset. */
  color?: boolean;
}

/** Replaces secrets, URL passwords and password=... values in `text`. */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4 && out.includes(s)) out = out.replaceAll(s, REDACTED);
  return out
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s/@:]*):[^\s/@]+@/gi, `$1:${REDACTED}@`)
    .replace(
      /\b(password|passwd|pwd|passphrase|secret|token)(\s*[=:]\s*)(?!\[redacted\])("[^"]*"|'[^']*'|[^\s&;,'"}]+)/gi,
      `$1$2${REDACTED}`,
    );
}

/** An error as log context: name, message, code, and the stack unless it is a user's mistake. */
export function errorContext(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as Error & { code?: unknown; cause?: unknown };
  const out: Record<string, unknown> = { name: e.name, message: e.message };
  if (e.code !== undefined) out.code = e.code;
  if (e.name !== 'UserError' && e.name !== 'ConfigError' && e.stack) out.stack = e.stack;
  if (e.cause !== undefined) out.cause = errorContext(e.cause);
  return out;
}

const COLORS: Record<LogLevel, string> = {
  debug: '\x1b[90m',
  info: '\x1b[36m',
  warn: '\x1b[33m',
  error: '\x1b[31m',
};
const DIM = '\x1b[2m';
const RESET = '\x1b[0m';

export function createLogger(opts: LoggerOptions): Logger {
  const out = opts.out ?? process.stderr;
  const tty = out.isTTY === true;
  const pretty = opts.format === 'pretty' || (opts.format === 'auto' && tty);
  const color = opts.color ?? (tty && pretty && !process.env.NO_COLOR);
  const interactive = tty && pretty;
  const min = RANK[opts.level];
  const secrets = [...(opts.secrets ?? [])].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  let statusLines: string[] = [];

  // The block is drawn without a final newline: clearing goes to its first line and erases below.
  const clearStatus = (): string => {
    const n = statusLines.length;
    if (n === 0) return '';
    return `\r${n > 1 ? `\x1b[${n - 1}A` : ''}\x1b[J`;
  };
  const drawStatus = (): string => statusLines.join('\n');

  const write = (
    level: LogLevel,
    message: string,
    bound: Record<string, unknown>,
    ctx?: Record<string, unknown>,
  ): void => {
    if (RANK[level] < min) return;
    const time = new Date().toISOString();
    const context = normalize({ ...bound, ...ctx });
    let line: string;
    if (pretty) {
      const extra = Object.keys(context).length > 0 ? ` ${prettyContext(context)}` : '';
      const lvl = level.toUpperCase().padEnd(5);
      line = color
        ? `${DIM}${time}${RESET} ${COLORS[level]}${lvl}${RESET} ${message}${DIM}${extra}${RESET}`
        : `${time} ${lvl} ${message}${extra}`;
    } else {
      line = JSON.stringify({ level, time, connector: opts.connector, message, ...context }, bigintJson);
    }
    line = redactText(line, secrets);
    if (interactive && statusLines.length > 0) out.write(`${clearStatus()}${line}\n${drawStatus()}`);
    else out.write(`${line}\n`);
  };

  const make = (bound: Record<string, unknown>): Logger => ({
    debug: (m, c) => write('debug', m, bound, c),
    info: (m, c) => write('info', m, bound, c),
    warn: (m, c) => write('warn', m, bound, c),
    error: (m, c) => write('error', m, bound, c),
    child: (c) => make({ ...bound, ...c }),
    status: (lines) => {
      if (!interactive) return;
      const width = (out as { columns?: number }).columns || 120;
      const next = (lines ?? []).map((l) => redactText(l, secrets).slice(0, Math.max(20, width - 1)));
      const prefix = clearStatus();
      statusLines = next;
      out.write(`${prefix}${drawStatus()}`);
    },
    interactive,
  });
  return make({});
}

/** Errors become their context object; bigints stay exact (as strings in JSON). */
function normalize(ctx: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ctx)) {
    if (v === undefined) continue;
    out[k] = v instanceof Error ? errorContext(v) : v;
  }
  return out;
}

function prettyContext(ctx: Record<string, unknown>): string {
  const parts: string[] = [];
  let stack = '';
  for (const [k, v] of Object.entries(ctx)) {
    if (k === 'err' || k === 'error') {
      const e = v as Record<string, unknown>;
      if (typeof e?.stack === 'string') {
        stack = `\n${e.stack}`;
        const { stack: _s, ...rest } = e;
        parts.push(`${k}=${JSON.stringify(rest, bigintJson)}`);
        continue;
      }
    }
    parts.push(
      `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) && v !== '' ? v : JSON.stringify(v, bigintJson)}`,
    );
  }
  return parts.join(' ') + stack;
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
