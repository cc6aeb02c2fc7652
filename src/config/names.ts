// Names derived from the connector name when not configured.

const MAX_NAME = 63;

/** Lower case, every character outside [a-z0-9_] replaced by `_`. */
export function sanitizeName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

/** `pgcdc_` + the sanitised connector name, at most 63 characters (a valid replication slot name). */
export function defaultSlotName(connectorName: string): string {
  return `pgcdc_${sanitizeName(connectorName)}`.slice(0, MAX_NAME);
}

/** The sanitised connector name + `_pub`, at most 63 characters. */
export function defaultPublicationName(connectorName: string): string {
  return `${sanitizeName(connectorName).slice(0, MAX_NAME - 4)}_pub`;
}
