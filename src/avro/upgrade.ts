// Subjects registered by pgcdc 0.1.0 used other encodings (Avro logical types on date, time and
// timestamps, timestamptz as a long, int2 as a plain int, no ts_us/ts_ns). The registry refuses
// the new schema as a next version of such a subject under BACKWARD; this recognises that case so
// the error can say what happened and the two ways out, instead of a bare compatibility refusal.
import { UserError } from '../errors.ts';

/** True when `schemaText` (a subject's latest version) has pgcdc 0.1.0's shape. */
export function isPgcdc010Schema(schemaText: string): boolean {
  let schema: unknown;
  try {
    schema = JSON.parse(schemaText);
  } catch {
    return false;
  }
  if (typeof schema !== 'object' || schema === null) return false;
  const rec = schema as { name?: string; fields?: Array<{ name?: string }> };
  if (rec.name === 'Envelope' && Array.isArray(rec.fields)) {
    return !rec.fields.some((f) => f.name === 'ts_us');
  }
  // Key subjects: a Debezium semantic name beside an Avro logical type is 0.1.0's mark.
  return /"logicalType":"[a-z-]+","connect\.name":"io\.debezium\.time\./.test(schemaText);
}

/** The error for a refused registration on a subject that pgcdc 0.1.0 registered. */
export function upgradeError(subject: string, topicPrefix: string, noneCommand: string): UserError {
  return new UserError(
    `subject ${subject} was registered by pgcdc 0.1.0, whose date/time/timestamp encodings this version replaces ` +
      `with Debezium's (io.debezium.time.*), and the schema registry refuses the change. Either restart with a new ` +
      `topics.prefix (e.g. ${topicPrefix}_v2: new topics and subjects, consumers move over), or let the subject take ` +
      `the new encodings once by setting its compatibility to NONE (${noneCommand}) and restarting; ` +
      `see docs/schema-evolution.md, "Upgrading from 0.1.0"`,
  );
}
