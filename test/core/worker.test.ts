// Worker threads: a worker's handles are released when its environment is
// torn down, however it ends (FinalizationRegistry never runs then).
import t from 'tap';
import * as path from 'node:path';

import { leakGuard, report, runTs } from '../helpers';

const leaks = leakGuard();

interface Result {
  mode: string;
  opened: number;
  before: number;
  after: number;
  memfdsAfter: number;
}

const results = report<Result[]>(runTs(path.join(__dirname, '..', 'fixtures', 'worker-fds.ts')));
const byMode = (mode: string) => results.find((r) => r.mode === mode)!;

t.test('a terminated worker with open memfds, Fds and pending polls releases every fd', async (t) => {
  const r = byMode('terminate');
  t.ok(r.opened >= 20, `the worker had ${r.opened} fds open`);
  t.equal(r.after, r.before, '/proc/self/fd count back to the start');
  t.equal(r.memfdsAfter, 0);
});

t.test('a worker that exits normally without closing its handles releases every fd', async (t) => {
  const r = byMode('exit-normally');
  t.ok(r.opened >= 20);
  t.equal(r.after, r.before);
  t.equal(r.memfdsAfter, 0);
});

t.test('a worker that calls process.exit() with pending polls releases every fd', async (t) => {
  const r = byMode('process-exit');
  t.ok(r.opened >= 20);
  t.equal(r.after, r.before);
  t.equal(r.memfdsAfter, 0);
});

leaks.check(t);
