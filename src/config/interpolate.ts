// `${VAR}` and `${VAR:-default}` in the config file's string values.

export interface InterpolationResult {
  value: string;
  /** Variables referenced without a default that are not set. */
  missing: string[];
  /** The text of malformed references, e.g. an unclosed `${` or `${not a name}`. */
  malformed: string[];
}

const REFERENCE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Replaces `${VAR}` with the variable's value and `${VAR:-default}` with its value or, when unset
 * or empty (shell semantics), the default. `$${` stands for a literal `${`.
 */
export function interpolate(text: string, env: NodeJS.ProcessEnv): InterpolationResult {
  const missing: string[] = [];
  const malformed: string[] = [];
  const value = text.replace(REFERENCE, (match: string, body: string | undefined) => {
    if (match === '$${') return '${';
    if (body === undefined) {
      malformed.push(match);
      return match;
    }
    const sep = body.indexOf(':-');
    const name = (sep >= 0 ? body.slice(0, sep) : body).trim();
    if (!VAR_NAME.test(name)) {
      malformed.push(match);
      return match;
    }
    const set = env[name];
    if (sep >= 0) return set === undefined || set === '' ? body.slice(sep + 2) : set;
    if (set === undefined) {
      missing.push(name);
      return '';
    }
    return set;
  });
  return { value, missing, malformed };
}

/** True when the string contains an interpolation reference. */
export function hasReference(text: string): boolean {
  return /\$\{/.test(text.replace(/\$\$\{/g, ''));
}
