// eventfd(): a pollable counter as an EventFd handle.
import t from 'tap';
import * as fs from 'node:fs';

import { EventFd, Fd, eventfd } from '../../lib';
import { expectCode, leakGuard } from '../helpers';

const leaks = leakGuard();
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

t.test('eventfd() is an Fd, close-on-exec and non-blocking', async (t) => {
  using e = eventfd();
  t.type(e, EventFd);
  t.type(e, Fd);
  t.equal(fs.readlinkSync(`/proc/self/fd/${e.fd}`), 'anon_inode:[eventfd]');
  const flags = parseInt(fs.readFileSync(`/proc/self/fdinfo/${e.fd}`, 'utf8').match(/flags:\s+(\d+)/)![1], 8);
  t.ok(flags & O_CLOEXEC, 'O_CLOEXEC');
  t.ok(flags & O_NONBLOCK, 'O_NONBLOCK');
});

t.test('write() adds to the counter and readSync() takes all of it', async (t) => {
  using e = eventfd(2);
  e.write(3);
  e.write(5n);
  t.equal(e.readSync(), 10n);
  t.throws(() => e.readSync(), { code: 'EAGAIN', syscall: 'read' }, 'empty: would block');
});

t.test('semaphore mode takes one at a time', async (t) => {
  using e = eventfd(2, { semaphore: true });
  t.equal(e.readSync(), 1n);
  t.equal(e.readSync(), 1n);
  t.throws(() => e.readSync(), { code: 'EAGAIN' });
});

t.test('read() waits on the event loop for a write', async (t) => {
  using e = eventfd();
  setTimeout(() => e.write(4), 10);
  t.equal(await e.read(), 4n);
  await t.rejects(e.read({ timeoutMs: 10 }), { code: 'ETIMEDOUT' });
});

t.test('eventfd() and write() validate their arguments', async (t) => {
  t.throws(() => eventfd(-1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => eventfd('1' as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  using e = eventfd();
  t.throws(() => e.write(0), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => e.write(2n ** 64n - 1n), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => e.write(0.5), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => e.write('1' as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('eventfd() and read() refuse options that are not objects', async (t) => {
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  t.throws(() => eventfd(0, null as never), type, 'was a TypeError reading semaphore of null');
  t.throws(() => eventfd(0, { semaphore: 'yes' as never }), type);
  using e = eventfd(1);
  await t.rejects(e.read(null as never), type, 'was a TypeError reading signal of null');
  t.equal(e.readSync(), 1n, 'the count was not taken');
});

leaks.check(t);
