// Configuration errors: every problem found, each one line naming the setting's path.

export class ConfigError extends Error {
  /** One entry per problem, e.g. `postgres.port: must be an integer between 1 and 65535 (got "abc")`. */
  readonly problems: string[];

  constructor(problems: string[], heading?: string) {
    const list = problems.length > 0 ? problems : ['unknown configuration problem'];
    const title =
      heading ??
      (list.length === 1 ? 'Invalid configuration:' : `Invalid configuration (${list.length} problems):`);
    super(`${title}\n${list.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = list;
  }
}

export function isConfigError(err: unknown): err is ConfigError {
  return err instanceof ConfigError;
}

/**
 * Text to show a user for an error thrown while loading configuration: the problem list for a
 * ConfigError (never a stack trace), the message for anything else.
 */
export function describeConfigError(err: unknown): string {
  if (err instanceof ConfigError) return err.message;
  if (err instanceof Error) return `Could not load configuration: ${err.message}`;
  return `Could not load configuration: ${String(err)}`;
}
