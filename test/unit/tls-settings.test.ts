// A TLS file setting that points nowhere is the user's mistake: one line naming the setting and
// the path, at start (run), not a bare ENOENT from deep inside the Kafka or registry client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserError } from '../../src/errors.ts';
import { kafkaClient } from '../../src/kafka/client.ts';
import { Registry } from '../../src/registry/registry.ts';

const missing = '/nonexistent/pgcdc-test/ca.pem';

for (const setting of ['ca', 'cert', 'key'] as const) {
  test(`kafka.ssl.${setting} naming a missing file is a UserError that names the setting and the path`, () => {
    assert.throws(
      () =>
        kafkaClient({ brokers: ['127.0.0.1:1'], clientId: 't', ssl: { enabled: true, [setting]: missing } }),
      (err: unknown) =>
        err instanceof UserError &&
        err.message.startsWith(`kafka.ssl.${setting}: `) &&
        err.message.includes(missing) &&
        /does not exist/.test(err.message),
    );
  });
}

test('registry.ca naming a missing file is a UserError that names the setting and the path', () => {
  assert.throws(
    () => new Registry({ url: 'https://registry.example:8081', ca: missing }),
    (err: unknown) =>
      err instanceof UserError && err.message.startsWith('registry.ca: ') && err.message.includes(missing),
  );
});
