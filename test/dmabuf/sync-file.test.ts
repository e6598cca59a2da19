// SyncFile on the host: no fence exporter here (vgem is in the guest), so
// the error paths: foreign fds, bad names and options, closed handles.
import t from 'tap';

import { eventfd, memfd, SyncFile } from '../../lib';
import { expectCode, leakGuard, TEST_PREFIX } from '../helpers';

const leaks = leakGuard();

t.test('SyncFile.from refuses what is not a sync_file (ENOTTY) and takes nothing', async (t) => {
  using m = memfd(TEST_PREFIX);
  t.throws(() => SyncFile.from(m), { code: 'ENOTTY', syscall: 'ioctl', request: 'SYNC_IOC_FILE_INFO' });
  t.throws(() => SyncFile.from(m, { own: true }), { code: 'ENOTTY' });
  t.notOk(m.closed);
  t.throws(() => SyncFile.from(m, { own: 'yes' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => SyncFile.from(-3), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
});

t.test('methods on a SyncFile over a foreign fd fail cleanly', async (t) => {
  using s = new SyncFile(eventfd(1).release());
  t.throws(() => s.info(), { code: 'ENOTTY', request: 'SYNC_IOC_FILE_INFO' });
  using other = eventfd();
  t.throws(() => s.merge(other), { code: 'ENOTTY', request: 'SYNC_IOC_MERGE' });
  // The eventfd is readable, so the poll fires; then info() says it is no sync_file.
  await t.rejects(s.wait(), { code: 'ENOTTY' });
  t.throws(() => s.waitSync(), { code: 'ENOTTY' });
});

t.test('merge() names must fit in 31 bytes; wait options are checked', async (t) => {
  using s = new SyncFile(eventfd().release());
  using other = eventfd();
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => s.merge(other, 'x'.repeat(32)), range);
  t.throws(() => s.merge(other, 'a\0b'), range);
  t.throws(() => s.merge(other, 5 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => s.merge('x' as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  await t.rejects(s.wait({ timeoutMs: -5 }), range);
  t.throws(() => s.waitSync({ timeoutMs: 2 ** 31 }), range);
  t.throws(() => s.waitSync(null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('wait() times out, aborts, and waitSync() times out, on an fd that never becomes ready', async (t) => {
  using s = new SyncFile(eventfd().release());
  await t.rejects(s.wait({ timeoutMs: 20 }), { code: 'ETIMEDOUT', syscall: 'poll' });
  const ac = new AbortController();
  const p = s.wait({ signal: ac.signal });
  setTimeout(() => ac.abort(), 10);
  await t.rejects(p, { name: 'AbortError', code: 'ABORT_ERR' });
  t.throws(() => s.waitSync({ timeoutMs: 10 }), { code: 'ETIMEDOUT', syscall: 'poll' });
});

t.test('closing a SyncFile during wait() rejects it with ERR_P2PDMA_CLOSED', async (t) => {
  const s = new SyncFile(eventfd().release());
  const p = s.wait();
  s.close();
  await t.rejects(p, { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => s.info(), { code: 'ERR_P2PDMA_CLOSED' });
});

leaks.check(t);
