// Does an idle slot hold WAL while other tables are busy? pgcdc captures one table that nobody
// writes while another table of the same database is written without pause; once a second the
// slot's lag (current WAL − confirmed_flush_lsn) and retained WAL (current WAL − restart_lsn) are
// read from pg_replication_slots. Run once with heartbeats on and once with them off (the figures
// in docs/operations.md "Idle slots"). Against the local stack (./dev stack up):
//
//   node bench/idle-slot-wal.ts [--seconds 60] [--heartbeat-ms 10000]
import { parseArgs } from 'node:util';
import { exited } from '../test/support/cli.ts';
import { idleSlotScene } from '../test/support/idle-slot.ts';
import { dropTestSlots, pgClient } from '../test/support/pipeline.ts';
import { parseLsn } from '../src/postgres/lsn.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    'heartbeat-ms': { type: 'string', default: '10000' },
  },
});
const seconds = Number(values.seconds);
const heartbeatMs = Number(values['heartbeat-ms']);

interface Run {
  heartbeatMs: number;
  writtenBytes: number;
  lag: number[];
  retained: number[];
}

async function run(hb: number): Promise<Run> {
  const db = await pgClient();
  const {
    slot,
    captured,
    busy,
    worker: w,
    startWriter,
  } = await idleSlotScene(db, hb > 0 ? 'idlehb' : 'idlenohb', hb);
  const stopWriter = startWriter();
  const current = async () =>
    parseLsn((await db.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l);
  const from = await current();
  const out: Run = { heartbeatMs: hb, writtenBytes: 0, lag: [], retained: [] };
  try {
    for (let i = 0; i < seconds; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const { rows } = await db.query<{ lag: string; retained: string }>(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8::text AS lag,
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8::text AS retained
           FROM pg_replication_slots WHERE slot_name = $1`,
        [slot],
      );
      out.lag.push(Number(rows[0]!.lag));
      out.retained.push(Number(rows[0]!.retained));
    }
  } finally {
    await stopWriter();
    w.child.kill('SIGTERM');
    await exited(w.child);
    out.writtenBytes = Number((await current()) - from);
    await db.query(`DROP TABLE ${busy}, ${captured}`);
    await db.end();
    await dropTestSlots();
  }
  return out;
}

const mib = (n: number): string => (n / 1024 / 1024).toFixed(2);
const summary = (r: Run): string => {
  const late = (xs: number[]) => xs.slice(Math.floor(xs.length / 2));
  return [
    `heartbeats ${r.heartbeatMs > 0 ? `every ${r.heartbeatMs / 1000} s` : 'off'}:`,
    `busy table wrote ${mib(r.writtenBytes)} MiB of WAL in ${seconds} s;`,
    `slot lag max ${mib(Math.max(...r.lag))} MiB (2nd half max ${mib(Math.max(...late(r.lag)))}),`,
    `retained WAL max ${mib(Math.max(...r.retained))} MiB (2nd half max ${mib(Math.max(...late(r.retained)))}, last ${mib(r.retained.at(-1)!)})`,
  ].join(' ');
};

for (const hb of [heartbeatMs, 0]) {
  const r = await run(hb);
  console.log(summary(r));
  console.log(`  retained WAL per second (MiB): ${r.retained.map(mib).join(' ')}`);
}
process.exit(0);
