// Fd: the handle base every resource type builds on.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Fd, ioctlSync, mmap, requests } from '../lib/index';
import { expectCode, leakGuard, report, runTs } from './helpers';

const leaks = leakGuard();
const isOpen = (fd: number) => fs.existsSync(`/proc/self/fd/${fd}`);

class Thing extends Fd {}

t.test('close() closes the fd and is idempotent', async (t) => {
  const h = Fd.open('/dev/null');
  const fd = h.fd;
  t.ok(isOpen(fd));
  t.notOk(h.closed);
  h.close();
  t.ok(h.closed);
  t.notOk(isOpen(fd), 'fd closed');
  t.doesNotThrow(() => h.close(), 'second close is a no-op');
  t.doesNotThrow(() => h[Symbol.dispose]());
});

t.test('a closed handle throws ERR_P2PDMA_CLOSED on use', async (t) => {
  const h = Thing.open('/dev/null');
  t.type(h, Thing, 'open() builds the subclass');
  const fd = h.fd;
  h.close();
  t.throws(() => h.fd, { code: 'ERR_P2PDMA_CLOSED', message: `Thing (fd ${fd}) is closed` });
  t.throws(() => ioctlSync(h, requests.FIONREAD), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
  t.throws(() => mmap(h, 4096), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
});

t.test("'using' closes at the end of the block", async (t) => {
  let fd: number;
  {
    using h = Fd.open('/dev/null');
    fd = h.fd;
    t.ok(isOpen(fd));
  }
  t.notOk(isOpen(fd), 'closed by Symbol.dispose');
});

t.test('close() reports close(2) failures as system errors', async (t) => {
  const raw = fs.openSync('/dev/null', 'r');
  const h = new Fd(raw);
  fs.closeSync(raw); // behind the handle's back
  t.throws(() => h.close(), { code: 'EBADF', errno: -9, syscall: 'close', fd: raw });
  t.ok(h.closed);
});

t.test('release() hands the fd over without closing it', async (t) => {
  const h = Fd.open('/dev/null');
  const fd = h.release();
  t.ok(h.closed);
  t.ok(isOpen(fd), 'still open');
  h.close();
  t.ok(isOpen(fd), 'close() after release() does not close it');
  fs.closeSync(fd);
});

t.test('the constructor validates the fd', async (t) => {
  t.throws(() => new Fd('3' as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => new Fd(-1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => new Fd(0.5), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
});

t.test('a handle collected while open closes its fd once and warns (child, --expose-gc)', async (t) => {
  const r = report<{
    fd: number;
    openBefore: boolean;
    closed: boolean;
    reused: number;
    reusedStillOpen: boolean;
    warnings: { message: string; code?: string }[];
  }>(runTs(path.join(__dirname, 'fixtures', 'gc-fd.ts'), ['--expose-gc']));
  t.ok(r.openBefore);
  t.ok(r.closed, 'the finalizer closed the fd');
  t.equal(r.reused, r.fd, 'the number was reused');
  t.ok(r.reusedStillOpen, 'the finalizer never closed it a second time');
  t.same(r.warnings, [{ message: `Closing fd ${r.fd} on garbage collection`, code: 'P2PDMA_GC_CLOSE' }]);
});

leaks.check(t);
