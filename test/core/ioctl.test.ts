// ioctlSync() and its promise form ioctlSync(): argument passing, size checks,
// errors, request encoding.
import t from 'tap';
import * as fs from 'node:fs';

import { Fd, ioc, ioctl, ioctlSync, memfd, mmap, registerRequests, requestName, requests } from '../../lib';
import { argSize, IOCTL_MAX_COPY } from '../../lib/core/ioctl';
import { native } from '../../lib/core/native';
import { expectCode, leakGuard, pipeWith } from '../helpers';

const leaks = leakGuard();

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

t.test('request decoders, requestName and registerRequests refuse what is not a u32 request', async (t) => {
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.equal(ioc.size(BigInt(requests.DMA_HEAP_IOCTL_ALLOC)), 24, 'bigint requests decode like numbers');
  t.equal(ioc.dir(0xc0184800n), ioc.READ | ioc.WRITE);
  for (const decode of [ioc.dir, ioc.type, ioc.nr, ioc.size]) {
    t.throws(() => decode(Symbol() as never), type, `${decode.name}(Symbol): was a TypeError without code`);
    t.throws(() => decode(2n ** 40n), range, `${decode.name}(2n ** 40n): was a TypeError mixing BigInt`);
    t.throws(() => decode(-1), range);
    t.throws(() => decode(NaN), range, `${decode.name}(NaN) used to return 0`);
  }
  t.throws(() => requestName(undefined as never), type, 'requestName(): was a TypeError reading toString');
  t.throws(() => requestName(2 ** 32), range);
  t.throws(() => registerRequests(null as never), type, 'registerRequests(null): was a TypeError from Object.entries');
  t.throws(() => registerRequests({ TEST_BAD: -1 }), range);
  t.throws(() => registerRequests({ TEST_FIRST_OK: 0x7a00, TEST_BAD: 'x' as never }), type);
  t.equal(requestName(0x7a00), '0x00007a00', 'a table with a bad entry registers nothing');
});

t.test('DMA_BUF_IOCTL_SYNC on a memfd fails with the full ENOTTY shape', async (t) => {
  using m = memfd('p2pdma-test-ioctl');
  const sync = Buffer.alloc(8);
  const err = t.throws(() => ioctlSync(m, requests.DMA_BUF_IOCTL_SYNC, sync)) as Error & Record<string, unknown>;
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
  t.throws(() => ioctlSync(fd, requests.FIONREAD, new Int32Array(1)), { code: 'EBADF', errno: -9, syscall: 'ioctl', fd });
});

t.test('a closed Fd handle throws ERR_P2PDMA_CLOSED without a syscall', async (t) => {
  const m = memfd('p2pdma-test-ioctl');
  m.close();
  t.throws(() => ioctlSync(m, requests.FIONREAD), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
});

t.test('FIONREAD through a typed array returns the byte count', async (t) => {
  const { r, w } = pipeWith(5);
  const count = new Int32Array(1);
  t.equal(ioctlSync(r, requests.FIONREAD, count), 0);
  t.equal(count[0], 5);
  const dv = new DataView(new ArrayBuffer(12), 4, 4);
  t.equal(ioctlSync(r.fd, BigInt(requests.FIONREAD), dv), 0, 'DataView at an offset, bigint request');
  t.equal(dv.getInt32(0, true), 5);
  const b = Buffer.alloc(8);
  ioctlSync(r, requests.FIONREAD, b.subarray(4));
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
  t.equal(ioctlSync(r, requests.FIONREAD, map.address), 0, 'bigint address');
  t.equal(view[0], 3, 'the kernel wrote through the address');
  view[0] = 0;
  t.equal(ioctlSync(r, requests.FIONREAD, Number(map.address) + 4), 0, 'number address');
  t.equal(view[1], 3);
  t.throws(() => ioctlSync(r, requests.FIONREAD, 0), { code: 'EFAULT' }, '0 is passed as a NULL pointer');
  t.throws(() => ioctlSync(r, requests.FIONREAD), { code: 'EFAULT' }, 'no argument passes 0');
  r.close();
  w.close();
});

t.test('bad arguments throw before any syscall', async (t) => {
  using m = memfd('p2pdma-test-ioctl');
  const R = requests.FIONREAD;
  const buf = new Int32Array(1);
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => ioctlSync('3' as never, R, buf), type, 'fd string');
  t.throws(() => ioctlSync({} as never, R, buf), type, 'fd object');
  t.throws(() => ioctlSync(-1, R, buf), range, 'fd negative');
  t.throws(() => ioctlSync(1.5, R, buf), range, 'fd fraction');
  t.throws(() => ioctlSync(2 ** 31, R, buf), range, 'fd > int32');
  t.throws(() => ioctlSync(m, -1, buf), range, 'request negative');
  t.throws(() => ioctlSync(m, 2 ** 32, buf), range, 'request > u32');
  t.throws(() => ioctlSync(m, 2n ** 32n, buf), range, 'bigint request > u32');
  t.throws(() => ioctlSync(m, '1' as never, buf), type, 'request string');
  t.throws(() => ioctlSync(m, R, 1.5), range, 'arg fraction');
  t.throws(() => ioctlSync(m, R, 2 ** 53), range, 'arg beyond safe integers');
  t.throws(() => ioctlSync(m, R, 2n ** 64n), range, 'bigint arg > u64');
  t.throws(() => ioctlSync(m, R, -(2n ** 63n) - 1n), range, 'bigint arg < i64');
  t.throws(() => ioctlSync(m, R, 'x' as never), type, 'arg string');
  t.throws(() => ioctlSync(m, R, new ArrayBuffer(4) as never), type, 'bare ArrayBuffer');
});

t.test('ioctl (promise) resolves with the result and writes the view back', async (t) => {
  const { r, w } = pipeWith(7);
  const count = new Int32Array(1);
  t.equal(await ioctl(r, requests.FIONREAD, count), 0);
  t.equal(count[0], 7);
  r.close();
  w.close();
});

t.test('ioctl (promise) rejects with the same error shape', async (t) => {
  using m = memfd('p2pdma-test-ioctl');
  await t.rejects(ioctl(m, requests.DMA_BUF_IOCTL_SYNC, Buffer.alloc(8)), {
    message: 'ENOTTY: inappropriate ioctl for device, ioctl DMA_BUF_IOCTL_SYNC',
    code: 'ENOTTY',
    errno: -25,
    syscall: 'ioctl',
    fd: m.fd,
    request: 'DMA_BUF_IOCTL_SYNC',
  });
  await t.rejects(ioctl(m, -1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), 'bad arguments reject');
});

t.test('closing a handle during ioctl (promise) defers close(2) until it settles', async (t) => {
  const { r, w } = pipeWith(2);
  const fd = r.fd;
  const count = new Int32Array(1);
  const p = ioctl(r, requests.FIONREAD, count);
  r.close();
  t.ok(r.closed, 'closed from JS at once');
  t.equal(await p, 0, 'the ioctl ran on the still-open fd');
  t.equal(count[0], 2);
  t.notOk(fs.existsSync(`/proc/self/fd/${fd}`), 'fd closed after the ioctl settled');
  w.close();
});

t.test('a synchronous throw from the native promise form leaves the handle unheld: close() closes at once', async (t) => {
  const h = Fd.open('/dev/null');
  const fd = h.fd;
  const ioctlAsync = native.ioctlAsync;
  native.ioctlAsync = () => {
    throw Object.assign(new RangeError('out of range: arg'), { code: 'ERR_OUT_OF_RANGE' });
  };
  try {
    await t.rejects(ioctl(h, requests.FIONREAD, new Int32Array(1)), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  } finally {
    native.ioctlAsync = ioctlAsync;
  }
  h.close();
  t.notOk(fs.existsSync(`/proc/self/fd/${fd}`), 'fd closed by close(), not deferred');
});

t.test('unknown requests are named by their hex value', async (t) => {
  t.equal(requestName(0x1234), '0x00001234');
  registerRequests({ TEST_IOCTL_FROB: ioc.iow('z', 9, 4) });
  t.equal(requestName(ioc.iow('z', 9, 4)), 'TEST_IOCTL_FROB');
  using m = memfd('p2pdma-test-ioctl');
  t.throws(() => ioctlSync(m, ioc.iow('z', 9, 4), Buffer.alloc(4)), { request: 'TEST_IOCTL_FROB' });
  t.throws(() => ioctlSync(m, 0x1234), { message: 'ENOTTY: inappropriate ioctl for device, ioctl 0x00001234' });
});

t.test('native ioctl returns -errno rather than throwing (hot path contract)', async (t) => {
  t.equal(native.ioctl(0x7ffffff0, requests.FIONREAD, 0), -9);
  const { r, w } = pipeWith(1);
  t.equal(native.ioctlView(r.fd, requests.FIONREAD, new Int32Array(1)), undefined, '0 comes back as undefined');
  r.close();
  w.close();
});

// ---------------------------------------------------------------------------
// The view must hold the request's argument size.

/** RNDGETENTCNT, `_IOR('R', 0x00, int)`: any user may ask /dev/urandom; the kernel writes 4 bytes. */
const RNDGETENTCNT = ioc.ior('R', 0, 4);
registerRequests({ RNDGETENTCNT });

/** `size` bytes of 0xaa; the test passes its first `view` bytes and checks the rest stay 0xaa. */
function guarded(size: number): Buffer {
  return Buffer.alloc(size, 0xaa);
}

t.test('argSize: the encoded size, else a known old-style size, else 0', async (t) => {
  t.equal(argSize(ioc.ior('x', 1, 24)), 24, '_IOR');
  t.equal(argSize(ioc.iowr('x', 1, ioc.SIZE_MAX)), ioc.SIZE_MAX, '_IOWR');
  t.equal(argSize(ioc.io('x', 1)), 0, '_IO passes no memory');
  t.equal(argSize(requests.FIONREAD), 4, 'FIONREAD (0x541b, no size encoded): int');
  t.equal(argSize(0x5499), 0, 'an unknown old-style request is not checked');
});

t.test('ioctlSync refuses a view smaller than an _IOR request encodes, before the kernel writes past it', async (t) => {
  using urandom = Fd.open('/dev/urandom');
  const buf = guarded(8);
  t.throws(() => ioctlSync(urandom, RNDGETENTCNT, buf.subarray(0, 1)), {
    constructor: RangeError,
    code: 'ERR_OUT_OF_RANGE',
    message: 'The value of "arg.byteLength" is out of range. It must be >= 4 (the argument size of RNDGETENTCNT). Received 1',
  });
  t.same([...buf], Array(8).fill(0xaa), 'no byte written');
  t.equal(ioctlSync(urandom, RNDGETENTCNT, buf.subarray(0, 4)), 0, 'exactly the encoded size is enough');
  t.same([...buf.subarray(4)], [0xaa, 0xaa, 0xaa, 0xaa], 'and the kernel wrote no further');
});

t.test('ioctl (promise) refuses a view smaller than the request encodes', async (t) => {
  using urandom = Fd.open('/dev/urandom');
  const buf = guarded(8);
  await t.rejects(ioctl(urandom, RNDGETENTCNT, new DataView(buf.buffer, buf.byteOffset + 6, 2)), {
    code: 'ERR_OUT_OF_RANGE',
    message: /It must be >= 4 \(the argument size of RNDGETENTCNT\)\. Received 2$/,
  });
  t.same([...buf], Array(8).fill(0xaa), 'no byte written');
});

t.test('FIONREAD (old-style, no encoded size) needs 4 bytes: a 1-byte view is refused', async (t) => {
  const { r, w } = pipeWith(5);
  const buf = guarded(8);
  t.throws(() => ioctlSync(r, requests.FIONREAD, buf.subarray(0, 1)), {
    code: 'ERR_OUT_OF_RANGE',
    message: /It must be >= 4 \(the argument size of FIONREAD\)\. Received 1$/,
  });
  await t.rejects(ioctl(r, requests.FIONREAD, buf.subarray(0, 1)), { code: 'ERR_OUT_OF_RANGE' });
  t.same([...buf], Array(8).fill(0xaa), 'no byte written');
  r.close();
  w.close();
});

t.test("the view's own length counts, not a redefined byteLength: the kernel never writes past it", async (t) => {
  const { r, w } = pipeWith(5);
  const buf = guarded(8);
  const lyingProperty = Object.defineProperty(buf.subarray(0, 1), 'byteLength', { value: 4 });
  t.throws(() => ioctlSync(r, requests.FIONREAD, lyingProperty), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), 'own property');
  class LyingGetter extends Uint8Array {
    override get byteLength(): number {
      return 4;
    }
  }
  const lyingGetter = new LyingGetter(buf.buffer, buf.byteOffset, 1);
  t.throws(() => ioctlSync(r, requests.FIONREAD, lyingGetter), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), 'subclass getter');
  await t.rejects(ioctl(r, requests.FIONREAD, lyingGetter), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), 'promise form');
  t.same([...buf], Array(8).fill(0xaa), 'no byte written');
  const big = Object.defineProperty(new Uint8Array(IOCTL_MAX_COPY + 1), 'byteLength', { value: 4 });
  await t.rejects(ioctl(r, requests.FIONREAD, big), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), 'a large view that says it is small is not copied');
  r.close();
  w.close();
});

t.test('the native promise form refuses a too-small view on its own', async (t) => {
  using urandom = Fd.open('/dev/urandom');
  const buf = guarded(8);
  t.throws(() => native.ioctlAsync(urandom.fd, RNDGETENTCNT, buf.subarray(0, 3)), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.same([...buf], Array(8).fill(0xaa), 'no byte written');
});

t.test('options.name names the request in errors, ahead of the registered name', async (t) => {
  using m = memfd('p2pdma-test-ioctl');
  const DRM_IOCTL_VERSION = ioc.iowr('d', 0x00, 64);
  registerRequests({ SOME_OTHER_DRIVER_IOCTL: DRM_IOCTL_VERSION });
  t.throws(() => ioctlSync(m, DRM_IOCTL_VERSION, Buffer.alloc(64), { name: 'DRM_IOCTL_VERSION' }), {
    message: 'ENOTTY: inappropriate ioctl for device, ioctl DRM_IOCTL_VERSION',
    request: 'DRM_IOCTL_VERSION',
  });
  await t.rejects(ioctl(m, DRM_IOCTL_VERSION, Buffer.alloc(64), { name: 'DRM_IOCTL_VERSION' }), { request: 'DRM_IOCTL_VERSION' });
  t.throws(() => ioctlSync(m, DRM_IOCTL_VERSION, Buffer.alloc(1), { name: 'DRM_IOCTL_VERSION' }), {
    message: /\(the argument size of DRM_IOCTL_VERSION\)/,
  });
  t.throws(() => ioctlSync(m, DRM_IOCTL_VERSION, Buffer.alloc(64)), { request: 'SOME_OTHER_DRIVER_IOCTL' }, 'the table is the fallback');
  t.throws(() => ioctlSync(m, DRM_IOCTL_VERSION, Buffer.alloc(64), { name: 1 } as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  await t.rejects(ioctl(m, DRM_IOCTL_VERSION, Buffer.alloc(64), { signal: {} } as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

// ---------------------------------------------------------------------------
// The promise form works on a copy of the view.

/** Moves `ab`'s memory to a new ArrayBuffer, detaching `ab`, as user code can while a call is pending. */
function transfer(ab: ArrayBuffer, how: 'transfer' | 'structuredClone'): ArrayBuffer {
  if (how === 'transfer') return (ab as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
  return structuredClone(ab, { transfer: [ab] });
}

// No blocking ioctl is needed: the bytes are copied when ioctl() returns, so
// whether the pool thread ran before or after the buffer moved, the memory
// given away must stay untouched (before the fix it received the count).
for (const how of ['transfer', 'structuredClone'] as const) {
  const skip = how === 'transfer' && !('transfer' in ArrayBuffer.prototype) ? 'ArrayBuffer.prototype.transfer needs Node 22+' : false;
  t.test(`a buffer moved away (${how}) while ioctl is pending is never written`, { skip }, async (t) => {
    const { r, w } = pipeWith(5);
    const ab = new ArrayBuffer(8);
    const count = new Int32Array(ab, 4, 1);
    const p = ioctl(r, requests.FIONREAD, count);
    const moved = transfer(ab, how);
    t.equal(await p, 0, 'the call itself succeeded, on its copy');
    t.equal(count.byteLength, 0, 'the view is detached');
    t.same([...new Int32Array(moved)], [0, 0], 'the memory it gave away was not written');
    r.close();
    w.close();
  });
}

t.test('a view whose length changed while ioctl was pending is not written back', async (t) => {
  const { r, w } = pipeWith(5);
  const ab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void })(4, {
    maxByteLength: 16,
  });
  const tracking = new Int32Array(ab);
  const p = ioctl(r, requests.FIONREAD, tracking);
  ab.resize(8);
  t.equal(await p, 0);
  t.same([...tracking], [0, 0], 'length 4 -> 8: not copied back');
  r.close();
  w.close();
});

t.test('unmapping the memory under a pending ioctl is safe: the call ran on its copy', async (t) => {
  const { r, w } = pipeWith(5);
  using m = memfd('p2pdma-test-ioctl-unmap');
  fs.ftruncateSync(m.fd, 4096);
  const map = mmap(m, 4096);
  const count = new Int32Array(map.buffer, 0, 1);
  const p = ioctl(r, requests.FIONREAD, count);
  map.unmap();
  t.equal(await p, 0, 'no EFAULT, no write into the unmapped range');
  t.equal(count.byteLength, 0);
  r.close();
  w.close();
});

t.test('ioctl (promise) refuses views over 16 KiB; ioctlSync takes them', async (t) => {
  const { r, w } = pipeWith(5);
  const big = new Uint8Array(IOCTL_MAX_COPY + 1);
  await t.rejects(ioctl(r, requests.FIONREAD, big), {
    constructor: RangeError,
    code: 'ERR_OUT_OF_RANGE',
    message: /It must be <= 16384 \(ioctl\(\) copies the view; use ioctlSync\(\) or pass the address of memory that stays mapped\)\. Received 16385$/,
  });
  t.equal(await ioctl(r, requests.FIONREAD, new Uint8Array(IOCTL_MAX_COPY)), 0, '16 KiB exactly is copied');
  t.equal(ioctlSync(r, requests.FIONREAD, big), 0);
  t.equal(big[0], 5);
  r.close();
  w.close();
});

t.test('an already aborted signal rejects with AbortError before any syscall', async (t) => {
  const ac = new AbortController();
  const reason = new Error('stop');
  ac.abort(reason);
  const count = new Int32Array(1);
  // fd 0x7ffffff0 is not open: a syscall would fail with EBADF.
  const err = (await t.rejects(ioctl(0x7ffffff0, requests.FIONREAD, count, { signal: ac.signal }))) as unknown;
  t.match(err, { name: 'AbortError', code: 'ABORT_ERR', message: 'The operation was aborted' });
  t.equal((err as Error).cause, reason, 'cause is the signal reason');
});

t.test('an abort while ioctl is pending rejects at once and leaves the view unwritten', async (t) => {
  const { r, w } = pipeWith(5);
  const fd = r.fd;
  const ac = new AbortController();
  const count = new Int32Array(1);
  const p = ioctl(r, requests.FIONREAD, count, { signal: ac.signal });
  ac.abort();
  await t.rejects(p, { name: 'AbortError', code: 'ABORT_ERR' });
  // The syscall still runs; the handle stays held until it returns, so the
  // deferred close marks the moment it settled.
  r.close();
  while (fs.existsSync(`/proc/self/fd/${fd}`)) await new Promise((res) => setTimeout(res, 1));
  t.equal(count[0], 0, 'the result was not copied back');
  w.close();
});

t.test('an abort after ioctl settled changes nothing', async (t) => {
  const { r, w } = pipeWith(5);
  const ac = new AbortController();
  const count = new Int32Array(1);
  t.equal(await ioctl(r, requests.FIONREAD, count, { signal: ac.signal }), 0);
  ac.abort();
  t.equal(count[0], 5);
  r.close();
  w.close();
});

// ---------------------------------------------------------------------------
// Native argument checks: Node-API's int32/uint32 getters wrap, so 2**32
// once read as fd 0.

t.test('the native binding rejects out-of-range and fractional numbers instead of wrapping them', async (t) => {
  const R = requests.FIONREAD;
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  const view = new Int32Array(1);
  for (const fd of [2 ** 32, 2 ** 32 + 1, -1, 1.5, NaN, Infinity, 2 ** 31]) {
    t.throws(() => native.ioctl(fd, R, 0), range, `ioctl fd ${fd}`);
    t.throws(() => native.ioctlView(fd, R, view), range, `ioctlView fd ${fd}`);
    t.throws(() => native.ioctlBigInt(fd, R, 0n), range, `ioctlBigInt fd ${fd}`);
    t.throws(() => native.ioctlAsync(fd, R, view), range, `ioctlAsync fd ${fd}`);
  }
  for (const req of [2 ** 32, 2 ** 32 + R, -1, R + 0.5]) {
    t.throws(() => native.ioctl(0x7ffffff0, req, 0), range, `ioctl request ${req}`);
    t.throws(() => native.ioctlAsync(0x7ffffff0, req, 0), range, `ioctlAsync request ${req}`);
  }
  for (const arg of [1.5, 2 ** 53, -(2 ** 53), NaN]) {
    t.throws(() => native.ioctl(0x7ffffff0, R, arg), range, `ioctl arg ${arg}`);
    t.throws(() => native.ioctlAsync(0x7ffffff0, R, arg), range, `ioctlAsync arg ${arg}`);
  }
  t.throws(() => native.ioctl('3' as never, R, 0), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'), 'a string fd');
  t.equal(native.ioctl(0x7fffffff, R, 0), -9, 'the largest fd is accepted (EBADF from the kernel)');
});

leaks.check(t);
