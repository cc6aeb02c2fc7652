// Two kinds of failure: a user's mistake (bad config, missing privilege, wrong password) gets a
// one-line message with the fix and no stack trace; anything else is a bug and keeps its stack.

export class UserError extends Error {
  override name = 'UserError';
}

/** A failure that may pass on its own (broker restart, network blip): the worker retries it. */
export class RetriableError extends Error {
  override name = 'RetriableError';
  readonly retriable = true;
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError || (err instanceof Error && err.name === 'ConfigError');
}
