// On-demand snapshots (issue 13 part 4) on a real worker (`pgcdc run` as a child process): a table
// re-read while the others stream, asked for by `pgcdc snapshot` (the HTTP API), by a SQL signal
// (pg_logical_emit_message), after a restart in the middle of one, cancelled, and for a table
// added to the selection while the connector was stopped. Re-read rows are marked 'incremental'.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stackSuite } from '../support/connectors.ts';
import { exited, freePort, spawnWorker, type WorkerProcess } from '../support/cli.ts';
import { eventually, replayByKey, uniqueName, workerEnv, type DecodedRecord } from '../support/pipeline.ts';

const logged = async (w: WorkerProcess, line: RegExp, what: string, count = 1): Promise<void> => {
  await eventually(
    what,
    async () => ((w.output().match(new RegExp(line, 'g')) ?? []).length >= count ? true : undefined),
    120_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}; worker output:\n${w.output().slice(-3000)}`);
  });
};

const marked = (records: DecodedRecord[], marker: string) =>
  records.filter((r) => r.value?.op === 'r' && (r.value.source as { snapshot?: string }).snapshot === marker);

async function post(
  port: number,
  name: string,
  method: string,
  body?: unknown,
): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/connectors/${name}/snapshot`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { status: res.status, text: await res.text() };
}

/** Rows of the re-read table: enough chunks (of 25) that a stop lands inside its re-read. */
const A_ROWS = 20_000;

describe('on-demand snapshots', () => {
  const { db, reader } = stackSuite();

  test('re-read one table while another streams: by the CLI, by a SQL signal, resumed after a restart, cancelled, and a table added later', async () => {
    const name = uniqueName('ondemand');
    const a = `${name}_a`;
    const b = `${name}_b`;
    const c = `${name}_c`;
    await db.query(`CREATE TABLE ${a} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${a} SELECT g, 'a' || g FROM generate_series(1, ${A_ROWS}) g`);
    await db.query(`CREATE TABLE ${b} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${b} SELECT g, 'b' || g FROM generate_series(1, 200) g`);
    await db.query(`CREATE TABLE ${c} (id int PRIMARY KEY, v text)`);
    await db.query(`INSERT INTO ${c} VALUES (1, 'c1'), (2, 'c2')`);
    const port = await freePort();
    const base = {
      PGCDC_HTTP_PORT: String(port),
      PGCDC_HTTP_HOST: '127.0.0.1',
      PGCDC_LOG_LEVEL: 'info',
      PGCDC_SNAPSHOT_BATCH_SIZE: '25',
    };
    const env = workerEnv(name, { ...base, PGCDC_TABLES_INCLUDE: `public.${a},public.${b}` });
    const topic = (t: string) => `${name}.public.${t}`;

    let w = spawnWorker(env);
    await logged(w, /"snapshot completed"/, 'the initial load');

    // 1. The CLI asks for a filtered re-read of a; b streams meanwhile.
    const cli = spawnWorker(env, [
      'snapshot',
      '--tables',
      `public.${a}`,
      '--filter',
      `public.${a}=id <= 100`,
    ]);
    assert.equal(await exited(cli.child), 0, cli.output());
    assert.match(cli.output(), /on-demand snapshot started/);
    await db.query(`UPDATE ${b} SET v = 'streamed' WHERE id = 1`);
    await logged(w, /"snapshot completed"/, 'the on-demand snapshot of a', 2);
    await eventually('the re-read rows and the streamed change', async () => {
      const ra = marked(await reader.read(topic(a)), 'incremental');
      const rb = replayByKey(await reader.read(topic(b)), (k) => String(k.id));
      return ra.length === 100 && rb.get('1')?.v === 'streamed' ? true : undefined;
    });
    const ids = marked(await reader.read(topic(a)), 'incremental').map((r) => Number(r.value!.after!.id));
    assert.deepEqual([Math.min(...ids), Math.max(...ids)], [1, 100], 'the filter chose the rows');
    assert.equal(marked(await reader.read(topic(b)), 'incremental').length, 0, 'b was not read again');

    // 2. Refusals name the problem: a table not captured, a malformed body, a second snapshot.
    const refused = await post(port, name, 'POST', { tables: ['public.nosuchtable'] });
    assert.equal(refused.status, 409);
    assert.match(refused.text, /public\.nosuchtable is not captured by connector/);
    const bad = await post(port, name, 'POST', '{"tables": 5}');
    assert.equal(bad.status, 400);
    assert.match((JSON.parse(bad.text) as { message: string }).message, /"tables" must be a non-empty list/);
    assert.equal((await post(port, name, 'DELETE')).status, 404, 'nothing to cancel');

    // 3. A SQL signal asks for b.
    await db.query(`SELECT pg_logical_emit_message(true, 'pgcdc', $1)`, [
      JSON.stringify({
        type: 'execute-snapshot',
        connector: name,
        data: { 'data-collections': [`public.${b}`] },
      }),
    ]);
    await logged(w, /"snapshot completed"/, 'the signalled snapshot of b', 3);
    await eventually('b re-read', async () =>
      marked(await reader.read(topic(b)), 'incremental').length === 200 ? true : undefined,
    );

    // 4. A restart in the middle of an on-demand snapshot goes on after its last chunk. Paused
    // at once, so that the stop lands inside it however fast the machine reads.
    assert.equal((await post(port, name, 'POST', { tables: [`public.${a}`] })).status, 202);
    const paused = await fetch(`http://127.0.0.1:${port}/connectors/${name}/pause`, { method: 'PUT' });
    assert.equal(paused.status, 202);
    await logged(w, /"on-demand snapshot requested"/, 'the request', 2);
    w.child.kill('SIGTERM');
    assert.equal(await exited(w.child), 0, w.output().slice(-2000));
    const before = marked(await reader.read(topic(a)), 'incremental').length - 100;
    w = spawnWorker(env);
    await logged(w, /"the chunked snapshot goes on after its last completed chunk"/, 'the resumed snapshot');
    await logged(w, /"snapshot completed"/, 'the resumed snapshot to complete');
    const reRead = marked(await reader.read(topic(a)), 'incremental').length - 100;
    assert.ok(before < A_ROWS, `the stop landed inside the snapshot (${before} rows before it)`);
    assert.ok(
      reRead >= A_ROWS && reRead <= A_ROWS + 25,
      `each row once, but for one chunk at most: ${reRead}`,
    );

    // 5. Cancel.
    assert.equal((await post(port, name, 'POST', { tables: [`public.${a}`] })).status, 202);
    assert.equal((await post(port, name, 'DELETE')).status, 202);
    await logged(w, /"snapshot cancelled"/, 'the cancellation');
    w.child.kill('SIGTERM');
    assert.equal(await exited(w.child), 0);

    // 6. A table added to the selection is read at the next start, the others are not.
    const countA = (await reader.read(topic(a))).length;
    w = spawnWorker({ ...env, PGCDC_TABLES_INCLUDE: `public.${a},public.${b},public.${c}` });
    await logged(w, /"tables added to the selection are read on demand"/, 'the new table noticed');
    assert.doesNotMatch(w.output(), /chunked snapshot resumed/, 'the cancelled snapshot did not come back');
    await eventually('c read', async () =>
      marked(await reader.read(topic(c)), 'incremental').length === 2 ? true : undefined,
    );
    await logged(w, /"snapshot completed"/, 'the new table read');
    assert.equal((await reader.read(topic(a))).length, countA, 'a was not read again');
    w.child.kill('SIGTERM');
    assert.equal(await exited(w.child), 0);
  });
});
