// pollOnce / Poller: readiness on the event loop (uv_poll), never the pool.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Fd, Poller, eventfd, pollOnce } from '../../lib';
import { expectCode, leakGuard, report, runTs, tempFile } from '../helpers';

const leaks = leakGuard();
const isOpen = (fd: number) => fs.existsSync(`/proc/self/fd/${fd}`);
/** How many fds of this process refer to the same pipe/file as `fd`. */
function sameFile(fd: number): number {
  const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
  return fs.readdirSync('/proc/self/fd').filter((n) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${n}`) === target;
    } catch {
      return false;
    }
  }).length;
}
const later = (ms: number, fn: () => void) => setTimeout(fn, ms);

/** A pipe (from a FIFO: Node has no pipe(2)); both ends are Fd handles. */
function pipe(): { r: Fd; w: Fd } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-test-'));
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const r = new Fd(fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK));
  const w = new Fd(fs.openSync(fifo, fs.constants.O_WRONLY));
  fs.rmSync(dir, { recursive: true });
  return { r, w };
}

t.test('pollOnce resolves with [read] when an eventfd becomes readable later', async (t) => {
  using e = eventfd();
  later(20, () => e.write(1));
  t.same(await pollOnce(e), ['read']);
  t.equal(e.readSync(), 1n);
});

t.test('pollOnce resolves at once for an fd that is already ready', async (t) => {
  using e = eventfd(3);
  t.same(await pollOnce(e, { timeoutMs: 0 }), ['read']);
});

t.test('pollOnce waits for any of several events and reports those that fired', async (t) => {
  const { r, w } = pipe();
  t.same(await pollOnce(w, { events: ['read', 'write'] }), ['write'], 'an empty pipe is writable');
  later(10, () => fs.writeSync(w.fd, 'x'));
  t.same(await pollOnce(r, { events: ['read', 'priority'] }), ['read']);
  r.close();
  w.close();
});

t.test('pollOnce resolves while every thread-pool thread is blocked (child, UV_THREADPOOL_SIZE=4)', async (t) => {
  const r = report<{ poolBusyBefore: boolean; poolBusyDuring: boolean; events: string[]; count: string }>(
    runTs(path.join(__dirname, '..', 'fixtures', 'poll-pool.ts'), [], { UV_THREADPOOL_SIZE: '4' }),
  );
  t.ok(r.poolBusyBefore, 'an fs.stat could not run: the pool was saturated');
  t.ok(r.poolBusyDuring, 'still saturated when the poll resolved');
  t.same(r.events, ['read']);
  t.equal(r.count, '7');
});

t.test('an AbortSignal aborts a pending poll with an AbortError carrying the reason', async (t) => {
  const { r, w } = pipe();
  const ac = new AbortController();
  const reason = new Error('stop');
  const p = pollOnce(r, { signal: ac.signal });
  t.equal(sameFile(r.fd), 3, 'both ends and the dup the poll watches');
  later(10, () => ac.abort(reason));
  await t.rejects(p, { name: 'AbortError', code: 'ABORT_ERR', message: 'The operation was aborted', cause: reason });
  await new Promise((r) => setTimeout(r, 5)); // uv_close completes in the loop's close phase
  t.equal(sameFile(r.fd), 2, 'the dup is closed');
  t.notOk(r.closed, 'the handle itself stays open');
  r.close();
  w.close();
});

t.test('an already-aborted signal rejects before anything is watched', async (t) => {
  const { r, w } = pipe();
  const p = pollOnce(r, { signal: AbortSignal.abort('no') });
  t.equal(sameFile(r.fd), 2, 'no dup');
  r.close();
  w.close();
  await t.rejects(p, { name: 'AbortError', code: 'ABORT_ERR', cause: 'no' });
});

t.test('timeoutMs rejects with ETIMEDOUT; 0 only checks what is ready now', async (t) => {
  using e = eventfd();
  await t.rejects(pollOnce(e, { timeoutMs: 20 }), {
    code: 'ETIMEDOUT',
    errno: -110,
    syscall: 'poll',
    fd: e.fd,
    message: 'ETIMEDOUT: no event within 20 ms, poll',
  });
  await t.rejects(pollOnce(e, { timeoutMs: 0 }), { code: 'ETIMEDOUT', message: 'ETIMEDOUT: no event within 0 ms, poll' });
});

t.test('closing the Fd during a poll rejects it with ERR_P2PDMA_CLOSED; close(2) waits for uv_close', async (t) => {
  const e = eventfd();
  const fd = e.fd;
  const p = pollOnce(e);
  e.close();
  t.ok(e.closed, 'closed from JS at once');
  t.ok(isOpen(fd), 'the fd is still open while the event loop closes the poll');
  await t.rejects(p, { code: 'ERR_P2PDMA_CLOSED', message: `EventFd (fd ${fd}) is closed` });
  t.notOk(isOpen(fd), 'closed by the time the poll rejected');
});

t.test('two polls on one Fd both resolve (each watches its own dup)', async (t) => {
  using e = eventfd();
  const both = Promise.all([pollOnce(e), pollOnce(e)]);
  later(10, () => e.write(1));
  t.same(await both, [['read'], ['read']]);
});

t.test('an fd number or FileHandle can be polled, and closing it meanwhile does not disturb epoll', async (t) => {
  const { r, w } = pipe();
  const n = fs.openSync(`/proc/self/fd/${r.fd}`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const byNumber = pollOnce(n);
  fs.closeSync(n);
  const fh = await fs.promises.open(`/proc/self/fd/${r.fd}`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const byFileHandle = pollOnce(fh);
  await fh.close();
  fs.writeSync(w.fd, 'x');
  t.same(await Promise.all([byNumber, byFileHandle]), [['read'], ['read']]);
  await t.rejects(pollOnce(fh), { code: 'ERR_P2PDMA_CLOSED', message: 'FileHandle is closed' });
  r.close();
  w.close();
});

t.test('a regular file cannot be polled: EPERM from epoll_ctl', async (t) => {
  const file = tempFile(16);
  using f = Fd.open(file);
  await t.rejects(pollOnce(f), { code: 'EPERM', errno: -1, syscall: 'epoll_ctl', fd: f.fd, message: 'EPERM: operation not permitted, epoll_ctl' });
  t.throws(() => new Poller(f, () => {}), { code: 'EPERM', syscall: 'epoll_ctl' });
  fs.rmSync(path.dirname(file), { recursive: true });
});

t.test('pollOnce validates its arguments (rejecting)', async (t) => {
  using e = eventfd();
  await t.rejects(pollOnce('3' as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  await t.rejects(pollOnce(-1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  await t.rejects(pollOnce(e, null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  await t.rejects(pollOnce(e, { events: 'readable' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  await t.rejects(pollOnce(e, { events: [] }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  await t.rejects(pollOnce(e, { events: [1] as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  await t.rejects(pollOnce(e, { timeoutMs: -1 }), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  await t.rejects(pollOnce(e, { timeoutMs: 2 ** 31 }), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), 'beyond setTimeout');
  await t.rejects(pollOnce(e, { timeoutMs: Infinity }), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  await t.rejects(pollOnce(e, { timeoutMs: NaN }), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  await t.rejects(pollOnce(e, { timeoutMs: '5' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  await t.rejects(pollOnce(e, { signal: {} as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  const closed = eventfd();
  closed.close();
  await t.rejects(pollOnce(closed), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
});

t.test('a Poller calls back on every event until stopped, and again after start()', async (t) => {
  using e = eventfd();
  const seen: string[][] = [];
  let wake: () => void = () => {};
  using p = new Poller(e, (err, events) => {
    t.equal(err, null);
    seen.push(events);
    e.readSync();
    wake();
  });
  t.ok(p.active);
  for (const n of [1, 2]) {
    const got = new Promise<void>((r) => (wake = r));
    e.write(n);
    await got;
  }
  t.same(seen, [['read'], ['read']]);
  p.stop();
  t.notOk(p.active);
  e.write(1);
  await new Promise((r) => setTimeout(r, 20));
  t.equal(seen.length, 2, 'no events while stopped');
  const got = new Promise<void>((r) => (wake = r));
  p.start();
  await got;
  t.equal(seen.length, 3, 'the pending event arrives after start()');
});

t.test('closing the Poller in its own callback ends the callbacks', async (t) => {
  using e = eventfd(1);
  let calls = 0;
  const p = new Poller(e, () => {
    calls++;
    p.close();
  });
  await new Promise((r) => setTimeout(r, 20));
  t.equal(calls, 1, 'level-triggered, but closed after the first');
  t.ok(p.closed);
  t.throws(() => p.start(), { code: 'ERR_P2PDMA_CLOSED', message: 'Poller is closed' });
});

t.test('closing the watched Fd in a Poller callback: one ERR_P2PDMA_CLOSED callback, then the fd is closed', async (t) => {
  const e = eventfd(1);
  const fd = e.fd;
  const calls: (string | null)[] = [];
  const done = new Promise<void>((resolve) => {
    const p = new Poller(e, (err) => {
      calls.push(err === null ? null : (err as NodeJS.ErrnoException).code!);
      if (err === null) e.close();
      else {
        t.ok(p.closed);
        t.notOk(isOpen(fd));
        resolve();
      }
    });
  });
  await done;
  await new Promise((r) => setTimeout(r, 10));
  t.same(calls, [null, 'ERR_P2PDMA_CLOSED']);
});

t.test('Poller validates its arguments', async (t) => {
  using e = eventfd();
  t.throws(() => new Poller(e, undefined as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => new Poller(e, () => {}, { events: 'x' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.throws(() => new Poller({} as never, () => {}), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('an unref()ed Poller does not keep the process alive', async (t) => {
  const r = runTs(path.join(__dirname, '..', 'fixtures', 'poller-unref.ts'));
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), 'exited');
});

t.test('GC with a pending poll: the Fd stays open until the poll resolves, then is collected (child, --expose-gc)', async (t) => {
  const r = report<{ openWhilePending: boolean; events: string[]; closedAfter: boolean; stoppedPollerFdClosed: boolean; warnings: string[] }>(
    runTs(path.join(__dirname, '..', 'fixtures', 'gc-poll.ts'), ['--expose-gc']),
  );
  t.ok(r.openWhilePending);
  t.same(r.events, ['read']);
  t.ok(r.closedAfter);
  t.ok(r.stoppedPollerFdClosed, 'a stopped, unreachable Poller and its Fd are collected and closed');
  t.same(r.warnings, ['P2PDMA_GC_CLOSE', 'P2PDMA_GC_CLOSE']);
});

leaks.check(t);
