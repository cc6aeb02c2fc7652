// `pgcdc offsets show|reset`: the stored position as a user sees it, and the deliberate
// "start from zero": after a reset the next start takes a new snapshot.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { exited, spawnWorker } from '../support/cli.ts';
import { stackSuite, startConnector, streaming } from '../support/connectors.ts';
import { uniqueName, workerEnv } from '../support/pipeline.ts';

async function cli(
  env: Record<string, string>,
  args: string[],
): Promise<{ code: number | null; out: string }> {
  const w = spawnWorker(env, args);
  const code = await exited(w.child);
  return { code, out: w.output() };
}

describe('pgcdc offsets', () => {
  const { db, reader } = stackSuite();

  test('show prints the stored offset; reset needs --yes, forgets it, and the next start snapshots again', async () => {
    const name = uniqueName('off');
    const t = `${name}_t`;
    await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY)`);
    await db.query(`INSERT INTO ${t} VALUES (1), (2)`);
    const extra = { PGCDC_TABLES_INCLUDE: `public.${t}` };
    const env = workerEnv(name, extra);

    const before = await cli(env, ['offsets', 'show']);
    assert.equal(before.code, 0);
    assert.match(before.out, /no stored offset/);

    let w = startConnector(name, extra);
    await streaming(w);
    await w.connector.stop();
    await w.running;

    const shown = await cli(env, ['offsets', 'show']);
    assert.equal(shown.code, 0, shown.out);
    const body = JSON.parse(shown.out) as { offset: { lsn: string; snapshot: { state: string } } };
    assert.equal(body.offset.lsn, w.connector.position.lsn);
    assert.equal(body.offset.snapshot.state, 'done');

    const refused = await cli(env, ['offsets', 'reset']);
    assert.equal(refused.code, 2);
    assert.match(refused.out, /Add --yes/);
    assert.doesNotMatch(refused.out, /\n\s+at /, 'no stack trace');

    const reset = await cli(env, ['offsets', 'reset', '--yes']);
    assert.equal(reset.code, 0, reset.out);
    assert.match((await cli(env, ['offsets', 'show'])).out, /no stored offset/);

    w = startConnector(name, extra);
    await streaming(w);
    await w.connector.stop();
    await w.running;
    const ops = (await reader.read(`${name}.public.${t}`)).map((r) => r.value?.op);
    assert.deepEqual(ops, ['r', 'r', 'r', 'r'], 'a second snapshot after the reset');
  });
});
