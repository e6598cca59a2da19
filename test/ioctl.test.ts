// ioctl(): argument passing, errors, request encoding, async variant.
import t from 'tap';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';

import { Fd, ioc, ioctl, ioctlAsync, memfd, mmap, registerRequests, requestName, requests } from '../lib/index';
import { native } from '../lib/native';
import { expectCode, leakGuard } from './helpers';

const leaks = leakGuard();

/** A pipe with `n` bytes written into it; both ends are Fd handles. */
function pipeWith(n: number): { r: Fd; w: Fd } {
  // Node has no pipe(2): open both ends of a FIFO instead.
  const dir = fs.mkdtempSync('/tmp/p2pdma-test-fifo-');
  const fifo = `${dir}/fifo`;
  execFileSync('mkfifo', [fifo]);
  const r = new Fd(fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK));
  const w = new Fd(fs.openSync(fifo, fs.constants.O_WRONLY));
  fs.rmSync(dir, { recursive: true });
  if (n > 0) fs.writeSync(w.fd, Buffer.alloc(n, 1));
  return { r, w };
}

t.test('request encoders match the kernel _IO* macros', async (t) => {
  // Values printed from the uapi headers with gcc on x86-64.
  t.equal(requests.DMA_BUF_IOCTL_SYNC, 0x40086200);
  t.equal(requests.DMA_BUF_SET_NAME, 0x40086201);
  t.equal(requests.DMA_BUF_IOCTL_EXPORT_SYNC_FILE, 0xc0086202);
  t.equal(requests.DMA_BUF_IOCTL_IMPORT_SYNC_FILE, 0x40086203);
  t.equal(requests.DMA_HEAP_IOCTL_ALLOC, 0xc0184800);
  t.equal(requests.UDMABUF_CREATE, 0x40187542);
  t.equal(requests.UDMABUF_CREATE_LIST, 0x40087543);
  t.equal(requests.FIONREAD, 0x541b);
  t.equal(ioc.io('b', 0), 0x6200);
  t.equal(ioc.ior(0x62, 0, 8), 0x80086200);
  t.equal(ioc.iowr(0x48n, 0n, 24n), 0xc0184800, 'bigint inputs');
  t.ok(ioc.iowr('H', 0, 24) > 0, 'direction bit 31 never makes it negative');
  t.equal(ioc.dir(0xc0184800), ioc.READ | ioc.WRITE);
  t.equal(ioc.type(0xc0184800), 0x48);
  t.equal(ioc.nr(0xc0184800), 0);
  t.equal(ioc.size(0xc0184800), 24);
});

t.test('request encoders reject out-of-range fields', async (t) => {
  t.throws(() => ioc.iow('b', 256, 8), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => ioc.iow('b', 0, ioc.SIZE_MAX + 1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => ioc.iow('bb', 0, 8), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => ioc.iow('b', -1, 8), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
});

t.test('DMA_BUF_IOCTL_SYNC on a memfd fails with the full ENOTTY shape', async (t) => {
  using m = memfd('p2pdma-test-ioctl');
  const sync = Buffer.alloc(8);
  const err = t.throws(() => ioctl(m, requests.DMA_BUF_IOCTL_SYNC, sync)) as Error & Record<string, unknown>;
  t.equal(Object.getPrototypeOf(err), Error.prototype, 'a plain Error');
  t.equal(err.message, 'ENOTTY: inappropriate ioctl for device, ioctl DMA_BUF_IOCTL_SYNC');
  t.equal(err.code, 'ENOTTY');
  t.equal(err.errno, -25);
  t.equal(err.syscall, 'ioctl');
  t.equal(err.fd, m.fd);
  t.equal(err.request, 'DMA_BUF_IOCTL_SYNC');
  t.match(err.stack, /ioctl\.test\.ts/, 'stack starts at the caller');
});

t.test('a closed fd gives EBADF', async (t) => {
  const fd = fs.openSync('/dev/null', 'r');
  fs.closeSync(fd);
  t.throws(() => ioctl(fd, requests.FIONREAD, new Int32Array(1)), { code: 'EBADF', errno: -9, syscall: 'ioctl', fd });
});

t.test('a closed Fd handle throws ERR_P2PDMA_CLOSED without a syscall', async (t) => {
  const m = memfd('p2pdma-test-ioctl');
  m.close();
  t.throws(() => ioctl(m, requests.FIONREAD), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
});

t.test('FIONREAD through a typed array returns the byte count', async (t) => {
  const { r, w } = pipeWith(5);
  const count = new Int32Array(1);
  t.equal(ioctl(r, requests.FIONREAD, count), 0);
  t.equal(count[0], 5);
  const dv = new DataView(new ArrayBuffer(12), 4, 4);
  t.equal(ioctl(r.fd, BigInt(requests.FIONREAD), dv), 0, 'DataView at an offset, bigint request');
  t.equal(dv.getInt32(0, true), 5);
  const b = Buffer.alloc(8);
  ioctl(r, requests.FIONREAD, b.subarray(4));
  t.equal(b.readInt32LE(4), 5, 'Buffer subarray: written at its byteOffset');
  t.equal(b.readInt32LE(0), 0, 'bytes before the view untouched');
  r.close();
  w.close();
});

t.test('number and bigint arguments are passed by value', async (t) => {
  const { r, w } = pipeWith(3);
  using m = memfd('p2pdma-test-ioctl-arg');
  fs.ftruncateSync(m.fd, 4096);
  using map = mmap(m, 4096);
  const view = new Int32Array(map.buffer);
  t.equal(ioctl(r, requests.FIONREAD, map.address), 0, 'bigint address');
  t.equal(view[0], 3, 'the kernel wrote through the address');
  view[0] = 0;
  t.equal(ioctl(r, requests.FIONREAD, Number(map.address) + 4), 0, 'number address');
  t.equal(view[1], 3);
  t.throws(() => ioctl(r, requests.FIONREAD, 0), { code: 'EFAULT' }, '0 is passed as a NULL pointer');
  t.throws(() => ioctl(r, requests.FIONREAD), { code: 'EFAULT' }, 'no argument passes 0');
  r.close();
  w.close();
});

t.test('bad arguments throw before any syscall', async (t) => {
  using m = memfd('p2pdma-test-ioctl');
  const R = requests.FIONREAD;
  const buf = new Int32Array(1);
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => ioctl('3' as never, R, buf), type, 'fd string');
  t.throws(() => ioctl({} as never, R, buf), type, 'fd object');
  t.throws(() => ioctl(-1, R, buf), range, 'fd negative');
  t.throws(() => ioctl(1.5, R, buf), range, 'fd fraction');
  t.throws(() => ioctl(2 ** 31, R, buf), range, 'fd > int32');
  t.throws(() => ioctl(m, -1, buf), range, 'request negative');
  t.throws(() => ioctl(m, 2 ** 32, buf), range, 'request > u32');
  t.throws(() => ioctl(m, 2n ** 32n, buf), range, 'bigint request > u32');
  t.throws(() => ioctl(m, '1' as never, buf), type, 'request string');
  t.throws(() => ioctl(m, R, 1.5), range, 'arg fraction');
  t.throws(() => ioctl(m, R, 2 ** 53), range, 'arg beyond safe integers');
  t.throws(() => ioctl(m, R, 2n ** 64n), range, 'bigint arg > u64');
  t.throws(() => ioctl(m, R, -(2n ** 63n) - 1n), range, 'bigint arg < i64');
  t.throws(() => ioctl(m, R, 'x' as never), type, 'arg string');
  t.throws(() => ioctl(m, R, new ArrayBuffer(4) as never), type, 'bare ArrayBuffer');
});

t.test('ioctlAsync resolves with the result and writes the buffer', async (t) => {
  const { r, w } = pipeWith(7);
  const count = new Int32Array(1);
  t.equal(await ioctlAsync(r, requests.FIONREAD, count), 0);
  t.equal(count[0], 7);
  r.close();
  w.close();
});

t.test('ioctlAsync rejects with the same error shape', async (t) => {
  using m = memfd('p2pdma-test-ioctl');
  await t.rejects(ioctlAsync(m, requests.DMA_BUF_IOCTL_SYNC, Buffer.alloc(8)), {
    message: 'ENOTTY: inappropriate ioctl for device, ioctl DMA_BUF_IOCTL_SYNC',
    code: 'ENOTTY',
    errno: -25,
    syscall: 'ioctl',
    fd: m.fd,
    request: 'DMA_BUF_IOCTL_SYNC',
  });
  await t.rejects(ioctlAsync(m, -1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), 'bad arguments reject');
});

t.test('closing a handle during ioctlAsync defers close(2) until it settles', async (t) => {
  const { r, w } = pipeWith(2);
  const fd = r.fd;
  const count = new Int32Array(1);
  const p = ioctlAsync(r, requests.FIONREAD, count);
  r.close();
  t.ok(r.closed, 'closed from JS at once');
  t.equal(await p, 0, 'the ioctl ran on the still-open fd');
  t.equal(count[0], 2);
  t.notOk(fs.existsSync(`/proc/self/fd/${fd}`), 'fd closed after the ioctl settled');
  w.close();
});

t.test('unknown requests are named by their hex value', async (t) => {
  t.equal(requestName(0x1234), '0x00001234');
  registerRequests({ TEST_IOCTL_FROB: ioc.iow('z', 9, 4) });
  t.equal(requestName(ioc.iow('z', 9, 4)), 'TEST_IOCTL_FROB');
  using m = memfd('p2pdma-test-ioctl');
  t.throws(() => ioctl(m, ioc.iow('z', 9, 4), Buffer.alloc(4)), { request: 'TEST_IOCTL_FROB' });
  t.throws(() => ioctl(m, 0x1234), { message: 'ENOTTY: inappropriate ioctl for device, ioctl 0x00001234' });
});

t.test('native ioctl returns -errno rather than throwing (hot path contract)', async (t) => {
  t.equal(native.ioctl(0x7ffffff0, requests.FIONREAD, 0), -9);
  const { r, w } = pipeWith(1);
  t.equal(native.ioctlView(r.fd, requests.FIONREAD, new Int32Array(1)), undefined, '0 comes back as undefined');
  r.close();
  w.close();
});

leaks.check(t);
