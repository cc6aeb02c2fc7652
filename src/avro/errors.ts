import { UserError } from '../errors.ts';

/**
 * A column value that pgcdc cannot represent in the column's Avro type (for example numeric NaN
 * in a decimal column, or a multi-dimensional array). Names the table and column and, where one
 * exists, the setting that avoids it. Never thrown for valid, representable data. A UserError:
 * the fix is a setting (or the data), not code.
 */
export class DataError extends UserError {
  override name = 'DataError';
  /** `schema.table`, when known. */
  readonly table: string | undefined;
  readonly column: string | undefined;

  constructor(message: string, table?: string, column?: string) {
    super(table !== undefined && column !== undefined ? `${table}.${column}: ${message}` : message);
    this.table = table;
    this.column = column;
  }
}
