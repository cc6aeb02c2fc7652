// Certificate and key settings given as file paths: read before anything connects, so that a
// mistyped path is its own failed line naming the setting and the path (`kafka.ssl.ca: file
// /etc/kafka/ca.pem does not exist`), not a connection error or a crash of the check.
import { readPem } from '../connection.ts';
import { failed, type CheckId, type CheckResult } from './result.ts';

/** The first of `settings` (setting name → value) that cannot be read, as a failed line of `id`. */
export function tlsFilesCheck(id: CheckId, settings: Record<string, string | undefined>): CheckResult | null {
  for (const [setting, value] of Object.entries(settings)) {
    if (!value) continue;
    try {
      readPem(value, setting);
    } catch (err) {
      return failed(id, (err as Error).message.split('\n')[0]!);
    }
  }
  return null;
}
