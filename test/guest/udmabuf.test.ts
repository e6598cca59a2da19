// udmabuf in the guest: the upstream kselftest
// (tools/testing/selftests/drivers/dma-buf/udmabuf.c) cases through the raw
// ioctl (the kernel's own answers), then our Udmabuf API on top.
import t from 'tap';
import * as fs from 'node:fs';

import { DmaBuf, Drm, Fd, ioctlSync, memfd, requests, Udmabuf } from '../../lib';
import { native } from '../../lib/core/native';
import { dmabufLeakGuard } from './dmabuf-leaks';
import { guest } from './helpers';

const leaks = dmabufLeakGuard();

const PAGE = 4096;
const S = guest.skip ? ({} as Record<string, number>) : native.sealConstants;
const UDMABUF_FLAGS_CLOEXEC = 1;

function sealedMemfd(size: number, seal = true): Fd {
  const m = memfd('p2pdma-test-udmabuf', { allowSealing: true });
  fs.ftruncateSync(m.fd, size);
  if (seal) native.addSeals(m.fd, S.F_SEAL_SHRINK);
  return m;
}

function createArg(memfdFd: number, offset: number, size: number): Buffer {
  const a = Buffer.alloc(24);
  a.writeUInt32LE(memfdFd, 0);
  a.writeUInt32LE(UDMABUF_FLAGS_CLOEXEC, 4);
  a.writeBigUInt64LE(BigInt(offset), 8);
  a.writeBigUInt64LE(BigInt(size), 16);
  return a;
}

t.test('kselftest 1: an unaligned offset or size is EINVAL', guest, async (t) => {
  using dev = Fd.open('/dev/udmabuf', 'r+');
  using m = sealedMemfd(64 * PAGE);
  t.throws(() => ioctlSync(dev, requests.UDMABUF_CREATE, createArg(m.fd, PAGE + 1, PAGE)), { code: 'EINVAL', request: 'UDMABUF_CREATE' }, 'offset');
  t.throws(() => ioctlSync(dev, requests.UDMABUF_CREATE, createArg(m.fd, 0, PAGE + 1)), { code: 'EINVAL' }, 'size');
});

t.test('kselftest 2: a memfd without F_SEAL_SHRINK is EINVAL', guest, async (t) => {
  using dev = Fd.open('/dev/udmabuf', 'r+');
  using m = sealedMemfd(64 * PAGE, false);
  t.throws(() => ioctlSync(dev, requests.UDMABUF_CREATE, createArg(m.fd, 0, PAGE)), { code: 'EINVAL' });
});

t.test('kselftest 3: an fd that is not a memfd is refused', guest, async (t) => {
  using dev = Fd.open('/dev/udmabuf', 'r+');
  t.throws(() => ioctlSync(dev, requests.UDMABUF_CREATE, createArg(dev.fd, 0, PAGE)), { syscall: 'ioctl', code: 'EBADFD', request: 'UDMABUF_CREATE' });
});

t.test('kselftest 4: a range past the memfd is EINVAL, one inside works', guest, async (t) => {
  using dev = Fd.open('/dev/udmabuf', 'r+');
  using m = sealedMemfd(64 * PAGE);
  t.throws(() => ioctlSync(dev, requests.UDMABUF_CREATE, createArg(m.fd, 0, 128 * PAGE)), { code: 'EINVAL' });
  const fd = ioctlSync(dev, requests.UDMABUF_CREATE, createArg(m.fd, 0, 64 * PAGE));
  using buf = DmaBuf.from(fd, { own: true });
  t.equal(buf.size, 64 * PAGE);
});

t.test('data written through the memfd shows through the dma-buf mapping, and back', guest, async (t) => {
  using u = Udmabuf.createSync({ size: 16 * PAGE });
  const mfd = (u.memfd as Fd).fd;
  const pattern = Buffer.alloc(16 * PAGE, 0);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7) & 0xff;
  fs.writeSync(mfd, pattern, 0, pattern.length, 0);
  using m = u.map();
  t.ok(u.withCpuAccess('read', () => Buffer.from(m.buffer).equals(pattern)), 'memfd -> dma-buf');
  u.withCpuAccess('write', () => new Uint8Array(m.buffer).fill(0x3c, PAGE, 2 * PAGE));
  const back = Buffer.alloc(PAGE);
  fs.readSync(mfd, back, 0, PAGE, PAGE);
  t.ok(back.every((b) => b === 0x3c), 'dma-buf -> memfd');
});

t.test('Udmabuf over the caller\'s memfd at an offset; the memfd stays the caller\'s', guest, async (t) => {
  const m = sealedMemfd(8 * PAGE);
  fs.writeSync(m.fd, Buffer.alloc(PAGE, 0x11), 0, PAGE, 2 * PAGE);
  const u = await Udmabuf.create({ memfd: m, offset: 2 * PAGE, size: 2 * PAGE });
  t.equal(u.memfd, m);
  t.equal(u.size, 2 * PAGE);
  t.equal(u.info().exporter, 'udmabuf');
  using map = u.map();
  t.equal(new Uint8Array(map.buffer)[0], 0x11);
  u.close();
  t.notOk(m.closed, 'closing the udmabuf leaves the caller\'s memfd open');
  m.close();
});

t.test('Udmabuf.create({ size }) makes a memfd sealed against shrinking and closes it with the buffer', guest, async (t) => {
  const u = Udmabuf.createSync({ size: PAGE });
  const mem = u.memfd as Fd;
  t.equal(native.getSeals(mem.fd) & S.F_SEAL_SHRINK, S.F_SEAL_SHRINK);
  t.throws(() => fs.ftruncateSync(mem.fd, 0), { code: 'EPERM' }, 'cannot shrink under the device');
  u.close();
  t.ok(mem.closed);
});

t.test('createList concatenates memfd ranges in order', guest, async (t) => {
  using a = sealedMemfd(2 * PAGE);
  using b = sealedMemfd(PAGE);
  fs.writeSync(a.fd, Buffer.alloc(2 * PAGE, 0xaa), 0, 2 * PAGE, 0);
  fs.writeSync(b.fd, Buffer.alloc(PAGE, 0xbb), 0, PAGE, 0);
  using u = Udmabuf.createListSync([{ memfd: a, size: PAGE, offset: PAGE }, { memfd: b, size: PAGE }, { size: PAGE }]);
  t.equal(u.size, 3 * PAGE);
  t.equal(u.memfds.length, 3);
  using m = u.map();
  const v = new Uint8Array(m.buffer);
  t.same([v[0], v[PAGE - 1], v[PAGE], v[2 * PAGE - 1], v[2 * PAGE]], [0xaa, 0xaa, 0xbb, 0xbb, 0], 'a[1], b[0], then a new zeroed page');
  using async = await Udmabuf.createList([{ memfd: b, size: PAGE }]);
  t.equal(async.size, PAGE);
});

t.test('a udmabuf imports into vgem', guest, async (t) => {
  using u = Udmabuf.createSync({ size: 4 * PAGE });
  using vgem = Drm.open({ driver: 'vgem' });
  using gem = vgem.importBuffer(u);
  t.equal(gem.size, 4 * PAGE);
});

t.test('create() aborted while the kernel pins pages rejects at once and leaves no fd once it lands', guest, async (t) => {
  const count = () => fs.readdirSync('/proc/self/fd').length;
  const before = count();
  const ac = new AbortController();
  const p = Udmabuf.create({ size: 32 << 20, signal: ac.signal });
  ac.abort();
  await t.rejects(p, { name: 'AbortError' });
  for (let i = 0; i < 100 && count() !== before; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(count(), before, 'the udmabuf, its memfd and /dev/udmabuf all closed');
});

leaks.check();
