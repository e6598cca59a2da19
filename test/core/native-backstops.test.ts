// The native layer's own checks, for a caller that bypasses lib/ (issue 22
// defect 7): numbers are never wrapped into other fds or flags, and an
// fd-creating ioctl adopts only an fd it created.
import t from 'tap';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';

import { requests } from '../../lib';
import { native } from '../../lib/core/native';
import { expectCode, leakGuard } from '../helpers';

const leaks = leakGuard();

t.test('new Mapping() refuses fd, prot and flags that Int32 conversion would wrap', async (t) => {
  const fd = fs.openSync('/dev/zero', 'r+');
  t.teardown(() => fs.closeSync(fd));
  const M = native.Mapping as unknown as new (fd: number, len: number, prot: number, flags: number, off: bigint) => unknown;
  const PROT_RW = 3;
  const MAP_SHARED = 1;
  const MAP_PRIVATE_ANON = 0x22;
  t.throws(() => new M(2 ** 32 + fd, 4096, PROT_RW, MAP_SHARED, 0n), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), '2**32 + fd is not fd');
  t.throws(() => new M(fd + 0.5, 4096, PROT_RW, MAP_SHARED, 0n), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => new M(-2, 4096, PROT_RW, MAP_SHARED, 0n), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => new M(-1, 4096, PROT_RW, MAP_SHARED, 0n), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), 'fd -1 only with MAP_ANONYMOUS');
  t.throws(() => new M(fd, 4096, 2 ** 32 + PROT_RW, MAP_SHARED, 0n), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => new M(fd, 4096, PROT_RW, 2 ** 32 + MAP_SHARED, 0n), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => new M(fd, 4096, -1, MAP_SHARED, 0n), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  const anon = new M(-1, 4096, PROT_RW, MAP_PRIVATE_ANON, 0n) as { unmap(): void };
  anon.unmap();
});

/** A pipe's ends as raw fds (a FIFO opened both ways). */
function pipe(): [number, number] {
  const dir = fs.mkdtempSync('/tmp/p2pdma-test-fifo-');
  execFileSync('mkfifo', [`${dir}/p`]);
  const r = fs.openSync(`${dir}/p`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const w = fs.openSync(`${dir}/p`, fs.constants.O_WRONLY);
  fs.rmSync(dir, { recursive: true });
  return [r, w];
}

t.test('the fd-creating entry points take only requests that create a dma-buf or sync_file', async (t) => {
  const [r, w] = pipe();
  t.teardown(() => {
    fs.closeSync(r);
    fs.closeSync(w);
  });
  const FD_IS_RESULT = -1;
  // FIONREAD returns 0: once adopted as "fd 0", closing it closed stdin.
  t.throws(() => native.ioctlFd(r, requests.FIONREAD, new Int32Array(2), FD_IS_RESULT), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => native.ioctlFdAsync(r, requests.FIONREAD, new Int32Array(2), FD_IS_RESULT), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.ok(fs.fstatSync(0), 'stdin is still open');
});

t.test('an fd-creating request that hands back an fd it did not create is an error, and nothing is adopted', async (t) => {
  // EXPORT_SYNC_FILE on a pipe fails with ENOTTY in the kernel; the
  // adoption check is reached on real devices (test/guest/). Here: the
  // kernel's error comes through, and the number in the argument (the
  // pipe's write end, not a sync_file) is not wrapped.
  const [r, w] = pipe();
  t.teardown(() => {
    fs.closeSync(r);
    fs.closeSync(w);
  });
  const arg = new Int32Array([1, w]);
  t.throws(() => native.ioctlFd(r, requests.DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg, 4), { sysErrno: 25, syscall: 'ioctl' }, 'ENOTTY from the kernel');
  t.ok(fs.fstatSync(w), 'the pipe is still open');
});

t.test('an fd-creating ioctl refuses a view smaller than the request encodes', async (t) => {
  const [r, w] = pipe();
  t.teardown(() => {
    fs.closeSync(r);
    fs.closeSync(w);
  });
  // DMA_HEAP_IOCTL_ALLOC encodes 24 bytes: the kernel would write past 8.
  t.throws(() => native.ioctlFd(r, requests.DMA_HEAP_IOCTL_ALLOC, new Uint8Array(8), 0), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => native.ioctlFdAsync(r, requests.DMA_HEAP_IOCTL_ALLOC, new Uint8Array(8), 0), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
});

leaks.check(t);
