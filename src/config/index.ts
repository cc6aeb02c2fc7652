// Configuration: loadConfig (file < env < flags), validation with every problem at once, redaction.
export { loadConfig, redactedConfig, REDACTED, type LoadConfigOptions } from './load.ts';
export { ConfigError, describeConfigError, isConfigError } from './errors.ts';
export { parseTableList, parseTableEntries, formatTableRef, type TableRef } from './tables.ts';
export { defaultPublicationName, defaultSlotName, sanitizeName } from './names.ts';
export { envVarFor, flagFor, LEAVES, SENSITIVE_PATHS } from './schema.ts';
export type { PgcdcConfig, SslMode, SnapshotMode, SaslMechanism, LogLevel } from './types.ts';
