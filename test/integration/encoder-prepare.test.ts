// Encoder.prepare(relations): the topics and subjects of many tables made ahead of their rows, and
// the rows then published with the prepared schema ids, also when the load reads the relation
// again into another object. Real PostgreSQL catalog, Kafka and registry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChangeEvent, Relation } from '../../src/change/event.ts';
import { Topics } from '../../src/kafka/topics.ts';
import { relationFromCatalog } from '../../src/postgres/catalog.ts';
import { TypeCatalog } from '../../src/postgres/types.ts';
import { Encoder } from '../../src/pipeline/encoder.ts';
import { Registry } from '../../src/registry/registry.ts';
import { kafka } from '../support/stack.ts';
import { textPgClient, uniqueName, workerConfig } from '../support/pipeline.ts';

test('encoder: prepare() registers ahead; the rows of an equal relation reuse it; a new table is prepared on its first row', async () => {
  const name = uniqueName('eprep');
  // pgcdc reads the catalog as text (its clients parse no types): the same here.
  const db = await textPgClient();
  const admin = kafka().admin();
  await admin.connect();
  const tables = [`${name}_a`, `${name}_b`, `${name}_c`];
  try {
    for (const t of tables) await db.query(`CREATE TABLE ${t} (id bigint PRIMARY KEY, v text DEFAULT 'x')`);
    const settings = workerConfig(name);
    const registry = new Registry(settings.registry);
    const types = new TypeCatalog(db);
    const read = async (t: string): Promise<Relation> => {
      const r = await relationFromCatalog(db, { schema: 'public', table: t });
      await types.load(r.columns.map((c) => c.typeOid));
      return r;
    };
    // Preparing a relation reads its column defaults: counted, to see which ones were prepared again.
    let defaultsRead = 0;
    const counted = new Proxy(types, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === 'columnDefaults' && typeof v === 'function') {
          return (oid: number) => {
            defaultsRead++;
            return (v as (o: number) => unknown).call(target, oid);
          };
        }
        return typeof v === 'function' ? (v as () => unknown).bind(target) : v;
      },
    });
    const encoder = new Encoder({
      settings,
      registry,
      topics: new Topics(admin, settings.topics),
      types: counted,
      database: settings.postgres.database,
    });
    await encoder.prepare([await read(tables[0]!), await read(tables[1]!)]);
    assert.equal(registry.calls, 4, 'key and value subjects of both tables');
    const existing = new Set(await admin.listTopics());
    for (const t of tables.slice(0, 2)) assert.ok(existing.has(`${settings.topics.prefix}.public.${t}`), t);

    const event = (relation: Relation, id: string): ChangeEvent => ({
      op: 'r',
      relation,
      before: null,
      after: [id, 'v'],
      xid: null,
      lsn: 1n,
      commitLsn: 1n,
      commitTimeMicros: 1_700_000_000_000_000n,
      seq: 0,
      snapshot: 'true',
    });
    // The load reads the relation again: another object, the same shape.
    const [record] = await encoder.records(event(await read(tables[0]!), '1'));
    assert.equal(registry.calls, 4, 'no registration for a prepared relation');
    assert.equal(defaultsRead, 2, 'the prepared relation is not prepared again');
    const latest = (subject: string) =>
      fetch(`${registry.url}/subjects/${encodeURIComponent(subject)}/versions/latest`).then(
        (r) => r.json() as Promise<{ id: number }>,
      );
    const subject = `${settings.topics.prefix}.public.${tables[0]}`;
    assert.equal(record!.key!.readInt32BE(1), (await latest(`${subject}-key`)).id, 'the prepared key id');
    assert.equal(
      record!.value!.readInt32BE(1),
      (await latest(`${subject}-value`)).id,
      'the prepared value id',
    );

    // A table nobody prepared: topic and subjects on its first row.
    await encoder.records(event(await read(tables[2]!), '2'));
    assert.equal(registry.calls, 6);
    assert.equal(defaultsRead, 3);
    assert.ok((await admin.listTopics()).includes(`${settings.topics.prefix}.public.${tables[2]}`));
  } finally {
    for (const t of tables) await db.query(`DROP TABLE IF EXISTS ${t}`);
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(`${name}.`));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine }).catch(() => undefined);
    await admin.disconnect();
    await db.end();
  }
});
