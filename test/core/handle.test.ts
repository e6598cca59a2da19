// Fd: the handle base every resource type builds on.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Fd, eventfd, ioctl, ioctlSync, mmap, pollOnce, requests } from '../../lib';
import { hold, holdDuring, toFd } from '../../lib/core/handle';
import { expectCode, leakGuard, report, runTs } from '../helpers';

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

t.test('Fd.open() refuses a path that is not a string, Buffer or URL before fs reads it', async (t) => {
  const symbols = new Proxy({}, { get: () => Symbol('p') });
  // fs.openSync threw an uncoded TypeError ("Cannot use 'in' operator") for this one.
  t.throws(() => Fd.open(symbols as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Fd.open(3 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Fd.open('/dev/null', 'r', symbols as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'), 'mode: the same uncoded TypeError from fs');
  t.throws(() => Fd.open('/dev/null', symbols as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'), 'flags');
  using h = Fd.open(new URL('file:///dev/null'));
  t.throws(() => Fd.open('/dev/null', 'r', 'rw' as never), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.equal(fs.readlinkSync(`/proc/self/fd/${h.fd}`), '/dev/null');
});

t.test('Fd.open() never hands fs.openSync a flags or mode that aborts Node (child process)', async (t) => {
  // Each of these failed a C++ assertion in fs.openSync: SIGABRT, not an exception.
  const r = runTs(path.join(__dirname, '..', 'fixtures', 'open-modes.ts'));
  t.equal(r.signal, null, 'not aborted');
  t.same(report(r), [
    'mode -0: opened',
    'flags -0: opened',
    'mode 2**31: ERR_OUT_OF_RANGE',
    "mode '20000000000': ERR_OUT_OF_RANGE",
    'mode 0o10000: ERR_OUT_OF_RANGE',
    "mode '644': opened",
  ]);
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
  }>(runTs(path.join(__dirname, '..', 'fixtures', 'gc-fd.ts'), ['--expose-gc']));
  t.ok(r.openBefore);
  t.ok(r.closed, 'the finalizer closed the fd');
  t.equal(r.reused, r.fd, 'the number was reused');
  t.ok(r.reusedStillOpen, 'the finalizer never closed it a second time');
  t.same(r.warnings, [{ message: `Closing fd ${r.fd} on garbage collection`, code: 'P2PDMA_GC_CLOSE' }]);
});

t.test('release() while busy throws ERR_P2PDMA_BUSY and keeps the handle open', async (t) => {
  const h = Fd.open('/dev/null');
  const fd = h.fd;
  const release = hold(h);
  t.throws(() => h.release(), { code: 'ERR_P2PDMA_BUSY', message: `Fd (fd ${fd}) is busy: 1 operation in flight` });
  t.notOk(h.closed);
  release();
  release(); // a second call does nothing
  t.equal(h.release(), fd);
  fs.closeSync(fd);
});

t.test('a pending poll makes the handle busy too', async (t) => {
  const e = eventfd();
  const p = pollOnce(e);
  t.throws(() => e.release(), { code: 'ERR_P2PDMA_BUSY' });
  e.close();
  await t.rejects(p, { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('close() while held defers close(2) until the hold is released', async (t) => {
  const h = Fd.open('/dev/null');
  const fd = h.fd;
  const release = hold(h);
  h.close();
  t.ok(h.closed);
  t.ok(isOpen(fd), 'still open while held');
  release();
  t.notOk(isOpen(fd), 'closed by the last release');
});

t.test('holdDuring releases the hold when the call throws synchronously', async (t) => {
  const h = Fd.open('/dev/null');
  const fd = h.fd;
  await t.rejects(
    holdDuring(h, () => {
      throw new Error('native threw');
    }),
    { message: 'native threw' },
  );
  h.close();
  t.notOk(isOpen(fd), 'close() was not deferred: nothing holds the handle');
});

t.test('a deferred close(2) that fails is reported as a P2PDMA_CLOSE_FAILED warning', async (t) => {
  const h = Fd.open('/dev/null');
  const fd = h.fd;
  const release = hold(h);
  h.close();
  fs.closeSync(fd); // behind the handle's back
  const warning = new Promise<Error & { code?: string; cause?: unknown }>((r) => process.once('warning', r));
  release();
  const w = await warning;
  t.equal(w.code, 'P2PDMA_CLOSE_FAILED');
  t.equal(w.message, `Deferred close of Fd (fd ${fd}) failed: EBADF: bad file descriptor, close`);
  t.match(w.cause, { code: 'EBADF', errno: -9, syscall: 'close', fd });
});

t.test('await using waits for operations in flight, then closes', async (t) => {
  let fd = -1;
  let release: () => void = () => {};
  let disposed = false;
  const block = (async () => {
    await using h = Fd.open('/dev/null');
    fd = h.fd;
    release = hold(h);
  })().then(() => (disposed = true));
  await new Promise((r) => setTimeout(r, 10));
  t.notOk(disposed, 'disposal waits for the hold');
  t.ok(isOpen(fd));
  release();
  await block;
  t.notOk(isOpen(fd));
});

t.test('Symbol.asyncDispose rejects with the deferred close error instead of warning', async (t) => {
  const h = Fd.open('/dev/null');
  const fd = h.fd;
  const release = hold(h);
  const warnings: unknown[] = [];
  // Only the close-failure kind: another test's GC close or Node's own warnings may land meanwhile.
  const onWarning = (w: Error & { code?: string }) => {
    if (w.code === 'P2PDMA_CLOSE_FAILED') warnings.push(w);
  };
  process.on('warning', onWarning);
  const p = h[Symbol.asyncDispose]();
  fs.closeSync(fd);
  release();
  await t.rejects(p, { code: 'EBADF', syscall: 'close', fd });
  await new Promise((r) => setImmediate(r));
  process.off('warning', onWarning);
  t.same(warnings, []);
  await t.resolves(h[Symbol.asyncDispose](), 'later calls resolve');
});

t.test('toFd accepts an fs.promises FileHandle; a closed one throws ERR_P2PDMA_CLOSED', async (t) => {
  const fh = await fs.promises.open('/dev/null');
  t.equal(toFd(fh), fh.fd);
  t.throws(() => ioctlSync(fh, requests.FIONREAD), { code: 'ENOTTY', fd: fh.fd }, 'usable wherever an fd is');
  await fh.close();
  t.throws(() => toFd(fh), { code: 'ERR_P2PDMA_CLOSED', message: 'FileHandle is closed' });
  t.throws(() => toFd({ fd: 3 }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

leaks.check(t);
