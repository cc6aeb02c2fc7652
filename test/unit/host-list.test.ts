// postgres.host as a host list (failover) and the standby rule of pgcdc check, without a server.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostList } from '../../src/postgres/connection.ts';
import { primaryCheck } from '../../src/postgres/preflight/rules.ts';

describe('postgres.host list', () => {
  it('keeps a single host as it is (a colon in it is not a port: IPv6)', () => {
    assert.deepEqual(hostList({ host: 'db', port: 5432 }), [{ host: 'db', port: 5432 }]);
    assert.deepEqual(hostList({ host: '::1', port: 5433 }), [{ host: '::1', port: 5433 }]);
  });

  it('splits a comma-separated list, host or host:port, postgres.port where none is given', () => {
    assert.deepEqual(hostList({ host: 'a:5433, b ,[fe80::1]:6000,[::1]', port: 5432 }), [
      { host: 'a', port: 5433 },
      { host: 'b', port: 5432 },
      { host: 'fe80::1', port: 6000 },
      { host: '::1', port: 5432 },
    ]);
  });

  it('refuses a port out of range, naming the setting', () => {
    assert.throws(
      () => hostList({ host: 'a:70000,b', port: 5432 }),
      /postgres\.host: a:70000 has no valid port/,
    );
  });
});

describe('primary check on a standby', () => {
  it('fails before PostgreSQL 16, warns from 16 on (logical decoding on a standby)', () => {
    assert.equal(primaryCheck(true, 150000).status, 'failed');
    const r = primaryCheck(true, 160000);
    assert.equal(r.status, 'warning');
    assert.match(r.fix ?? '', /publication\.autoCreate=false/);
  });
});
