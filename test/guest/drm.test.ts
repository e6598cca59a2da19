// DRM with vgem in the guest: dumb buffers, both mmap routes, PRIME, fdinfo,
// vgem fences against waitIdle and sync_file (the igt dmabuf_sync_file and
// prime_vgem ideas, as tap tests).
import t from 'tap';
import * as fs from 'node:fs';

import { capabilities, DmaBuf, Drm, DRM_CAPS, DrmDevice, SyncFile } from '../../lib';
import { dmabufLeakGuard } from './dmabuf-leaks';
import { guest } from './helpers';

const leaks = dmabufLeakGuard();

const W = 64;
const H = 32;

function vgem(): DrmDevice {
  return Drm.open({ driver: 'vgem' });
}

t.test('Drm.devices() lists vgem\'s card and render nodes; the driver comes from DRM_IOCTL_VERSION, sysfs adds the device (issue 29)', guest, async (t) => {
  const nodes = Drm.devices().filter((n) => n.driver === 'vgem');
  t.same(nodes.map((n) => n.type).sort(), ['primary', 'render']);
  // 6.12: a platform device with no driver bound; 6.15+: a faux device bound to faux_driver.
  const faux = fs.existsSync('/sys/devices/faux/vgem');
  for (const n of nodes) {
    t.equal(n.driverFrom, 'ioctl', `${n.path}: named by the node itself`);
    t.equal(n.sysfsDevice, faux ? '/sys/devices/faux/vgem' : '/sys/devices/platform/vgem');
    t.equal(n.bus, faux ? 'faux' : 'platform');
    t.equal(n.sysfsDriver, 'vgem');
  }
  using d = vgem();
  const v = d.version();
  t.equal(v.name, 'vgem');
  t.type(v.major, 'number');
  t.ok(v.desc.length > 0, `desc '${v.desc}'`);
  t.ok(v.date.length > 0, `date '${v.date}' (the kernel says '0' once drivers have none)`);
  using r = Drm.open({ driver: 'vgem', type: 'render' });
  t.equal(r.version().name, 'vgem');
  d.close();
  t.throws(() => d.version(), { code: 'ERR_P2PDMA_CLOSED' }, 'a closed device does not answer from its cache');
});

t.test('capabilities() names vgem from DRM_IOCTL_VERSION too', guest, async (t) => {
  const drm = capabilities().drm;
  const nodes = drm.nodes.filter((n) => n.driver === 'vgem');
  t.equal(nodes.length, 2);
  t.ok(nodes.every((n) => n.driverFrom === 'ioctl'));
});

t.test('GET_CAP and SET_CLIENT_CAP on vgem: PRIME both ways, no sync objects; modeset-only caps and every client cap refused', guest, async (t) => {
  using d = Drm.open({ driver: 'vgem' });
  t.equal(d.getCap('PRIME'), 3n, 'DRM_PRIME_CAP_IMPORT | DRM_PRIME_CAP_EXPORT');
  t.equal(d.getCap(DRM_CAPS.TIMESTAMP_MONOTONIC), 1n, 'by number');
  // vgem's driver_features are DRIVER_GEM | DRIVER_RENDER: no DRIVER_SYNCOBJ,
  // which is why the guest cannot test DRM sync objects.
  t.equal(d.getCap('SYNCOBJ'), 0n, 'no sync objects on vgem');
  // drm_getcap(): vgem has no DRIVER_MODESET, so every cap past the four
  // generic ones is EOPNOTSUPP, DUMB_BUFFER included (vgem has dumb buffers
  // all the same: createDumb works).
  t.throws(() => d.getCap('DUMB_BUFFER'), { code: 'EOPNOTSUPP', request: 'DRM_IOCTL_GET_CAP' });
  t.throws(() => d.getCap('CURSOR_WIDTH'), { code: 'EOPNOTSUPP', request: 'DRM_IOCTL_GET_CAP' });
  // drm_setclientcap(): every client cap needs DRIVER_MODESET.
  t.throws(() => d.setClientCap('ATOMIC'), { code: 'EOPNOTSUPP', request: 'DRM_IOCTL_SET_CLIENT_CAP' }, 'atomic needs modesetting');
  t.throws(() => d.setClientCap('STEREO_3D', 0), { code: 'EOPNOTSUPP', request: 'DRM_IOCTL_SET_CLIENT_CAP' });
});

t.test('a dumb buffer round-trips data through MAP_DUMB and the PRIME dma-buf mapping', guest, async (t) => {
  using d = vgem();
  using bo = d.createDumb({ width: W, height: H, bpp: 32 });
  t.equal(bo.pitch, W * 4);
  t.ok(bo.size >= W * H * 4);
  using m1 = bo.map();
  new Uint32Array(m1.buffer).forEach((_, i, a) => (a[i] = i * 2654435761));
  using buf = bo.export();
  t.type(buf, DmaBuf);
  t.equal(buf.size, bo.size);
  using m2 = buf.map();
  const seen = buf.withCpuAccess('read', () => new Uint32Array(m2.buffer).slice());
  t.ok(seen.every((x, i) => x === (i * 2654435761) >>> 0), 'written via MAP_DUMB, read via the dma-buf');
  buf.withCpuAccess('write', () => new Uint8Array(m2.buffer).fill(0x5a, 0, 64));
  t.ok(new Uint8Array(m1.buffer, 0, 64).every((b) => b === 0x5a), 'written via the dma-buf, read via MAP_DUMB');
});

t.test('fdinfo shows the PRIME exporter and the name set by setName', guest, async (t) => {
  using d = vgem();
  using bo = d.createDumb({ width: W, height: H });
  using buf = d.exportBuffer(bo, { rw: true });
  const before = buf.info();
  t.equal(before.exporter, 'drm');
  t.equal(before.size, bo.size);
  buf.setName('p2pdma-vgem');
  t.equal(buf.info().name, 'p2pdma-vgem');
});

t.test('importBuffer of our own export shares the handle: GEM_CLOSE once, when the last object closes (issue 22 defect 6)', guest, async (t) => {
  using d = vgem(); // a fresh file: handles start at 1
  const bo = d.createDumb({ width: W, height: H });
  using buf = d.exportBuffer(bo);
  const b1 = d.importBuffer(buf);
  const b2 = d.importBuffer(buf);
  t.equal(b1.handle, bo.handle, 'the kernel gives back the same handle');
  t.equal(b2.handle, bo.handle);
  t.equal(b1.size, bo.size);
  t.equal(b1.pitch, bo.pitch, 'the shared handle keeps what createDumb learned');
  t.not(b1, b2, 'one object per import');
  const handle = bo.handle;

  bo.close();
  t.ok(bo.closed);
  t.notOk(b1.closed);
  {
    using again = b1.export();
    t.equal(again.size, bo.size, 'the handle survives closing the first object');
  }
  b1.close();
  b1.close(); // idempotent
  t.notOk(b2.closed);
  {
    using m = b2.map();
    t.equal(m.length, bo.size, 'and closing the second');
  }
  b2.close();
  t.throws(() => d.exportBuffer(handle), { code: 'ENOENT', request: 'DRM_IOCTL_PRIME_HANDLE_TO_FD' }, 'the last close GEM_CLOSEd it');

  // The kernel reuses the number for a new buffer: closing the old objects
  // again must not touch it.
  using c = d.createDumb({ width: W, height: H });
  t.equal(c.handle, handle, 'the number came back');
  {
    using m = c.map();
    new Uint8Array(m.buffer).fill(0xa5);
  }
  bo.close();
  b1.close();
  b2.close();
  t.notOk(c.closed);
  using cbuf = d.exportBuffer(c);
  using cm = cbuf.map();
  t.ok(cbuf.withCpuAccess('read', () => new Uint8Array(cm.buffer).every((x) => x === 0xa5)), 'the new buffer survived, with its data');
});

t.test('a second import while the first is open, then close in any order; an import of a foreign dma-buf twice shares too', guest, async (t) => {
  using d = vgem();
  using other = Drm.open({ driver: 'vgem', type: 'render' });
  using src = d.createDumb({ width: W, height: H });
  using exported = src.export();
  // `other` is another open file of vgem: the dma-buf is foreign to it.
  const i1 = other.importBuffer(exported);
  const i2 = other.importBuffer(exported.fd);
  t.equal(i1.handle, i2.handle);
  t.equal(i2.size, i1.size);
  i2.close();
  t.notOk(i1.closed);
  using again = i1.export();
  t.equal(again.size, src.size);
  i1.close();
  t.throws(() => other.exportBuffer(i1.handle), { code: 'ENOENT' }, 'closed with the last object');
});

t.test('closing the DrmDevice with buffers open: they keep working, the fd goes with the last one', guest, async (t) => {
  const d = vgem();
  const fd = d.fd;
  const bo = d.createDumb({ width: W, height: H });
  d.close();
  t.ok(d.closed);
  t.throws(() => d.createDumb({ width: W, height: H }), { code: 'ERR_P2PDMA_CLOSED' });
  t.notOk(bo.closed);
  {
    using m = bo.map();
    new Uint8Array(m.buffer).fill(1);
    using buf = bo.export();
    t.equal(buf.size, bo.size);
  }
  t.ok(fs.existsSync(`/proc/self/fd/${fd}`), 'still open for the buffer');
  bo.close();
  t.notOk(fs.existsSync(`/proc/self/fd/${fd}`), 'closed with it');
});

t.test('GEM_CLOSE: a closed handle can no longer be exported', guest, async (t) => {
  using d = vgem();
  const bo = d.createDumb({ width: W, height: H });
  const handle = bo.handle;
  bo.close();
  t.throws(() => d.exportBuffer(bo), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => d.exportBuffer(handle), { code: 'ENOENT', request: 'DRM_IOCTL_PRIME_HANDLE_TO_FD' }, 'the kernel forgot the handle');
  t.throws(() => d.createDumb({ width: 1 << 20, height: 1 << 20, bpp: 32 }), { code: /^E/, syscall: 'ioctl', request: 'DRM_IOCTL_MODE_CREATE_DUMB' }, 'an absurd dumb buffer is refused by the kernel');
});

t.test('createBuffer() is EOPNOTSUPP on vgem, naming the driver', guest, async (t) => {
  using d = vgem();
  t.throws(() => d.createBuffer(4096), { code: 'EOPNOTSUPP', message: /not the 'vgem' driver/ });
});

t.test('a vgem write fence makes waitIdle(\'read\') wait while the event loop runs, until signalled', guest, async (t) => {
  using d = vgem();
  using bo = d.createDumb({ width: W, height: H });
  using buf = bo.export();
  const fence = d.vgemFenceAttach(bo, { write: true });
  await t.rejects(buf.waitIdle('read', { timeoutMs: 0 }), { code: 'ETIMEDOUT' }, 'busy now');
  let ticks = 0;
  const timer = setInterval(() => ticks++, 20);
  const start = Date.now();
  setTimeout(() => d.vgemFenceSignal(fence), 400);
  await buf.waitIdle('read');
  clearInterval(timer);
  t.ok(Date.now() - start >= 350, `waited ${Date.now() - start} ms for the fence`);
  t.ok(ticks >= 2, `the event loop kept running: ${ticks} timer ticks meanwhile`);
  await buf.waitIdle('rw', { timeoutMs: 0 });
  t.doesNotThrow(() => buf.waitIdleSync('rw', { timeoutMs: 0 }), 'idle now');
});

t.test('a read fence blocks writers only', guest, async (t) => {
  using d = vgem();
  using bo = d.createDumb({ width: W, height: H });
  using buf = bo.export();
  const fence = d.vgemFenceAttach(bo, { write: false });
  await buf.waitIdle('read', { timeoutMs: 0 });
  t.throws(() => buf.waitIdleSync('write', { timeoutMs: 10 }), { code: 'ETIMEDOUT', syscall: 'poll' });
  d.vgemFenceSignal(fence);
  buf.waitIdleSync('write', { timeoutMs: 1000 });
  t.pass('idle for writers once signalled');
});

t.test('waitIdle aborts and times out cleanly mid-wait', guest, async (t) => {
  using d = vgem();
  using bo = d.createDumb({ width: W, height: H });
  using buf = bo.export();
  const fence = d.vgemFenceAttach(bo, { write: true });
  const ac = new AbortController();
  const p = buf.waitIdle('read', { signal: ac.signal });
  setTimeout(() => ac.abort(new Error('enough')), 30);
  await t.rejects(p, { name: 'AbortError', cause: { message: 'enough' } });
  await t.rejects(buf.waitIdle('read', { timeoutMs: 30 }), { code: 'ETIMEDOUT' });
  const closing = buf.waitIdle('read');
  buf.close();
  await t.rejects(closing, { code: 'ERR_P2PDMA_CLOSED' });
  d.vgemFenceSignal(fence);
  t.throws(() => d.vgemFenceSignal(fence), { code: 'ENOENT', request: 'DRM_IOCTL_VGEM_FENCE_SIGNAL' }, 'a fence id is spent once signalled');
});

t.test('exportSyncFile reports the vgem fence; it signals with the fence; importSyncFile carries it to another buffer', guest, async (t) => {
  using d = vgem();
  using a = d.createDumb({ width: W, height: H });
  using b = d.createDumb({ width: W, height: H });
  using bufA = a.export();
  using bufB = b.export();
  const fence = d.vgemFenceAttach(a, { write: true });
  using sf = bufA.exportSyncFile('read');
  t.type(sf, SyncFile);
  const info = sf.info();
  t.equal(info.state, 'active');
  t.equal(info.fences.length, 1);
  t.equal(info.fences[0].driver, 'vgem');
  t.equal(info.fences[0].state, 'active');
  await t.rejects(sf.wait({ timeoutMs: 10 }), { code: 'ETIMEDOUT' });

  bufB.importSyncFile(sf, 'write');
  await t.rejects(bufB.waitIdle('read', { timeoutMs: 0 }), { code: 'ETIMEDOUT' }, 'B now waits for A\'s fence');
  using bFences = bufB.exportSyncFile('rw');
  t.equal(bFences.info().fences[0].driver, 'vgem');
  if (process.env.P2PDMA_LEAK_TRACE) console.log(`# fds: bufA ${bufA.fd} bufB ${bufB.fd} sf ${sf.fd} bFences ${bFences.fd} card ${d.fd}`);

  setTimeout(() => d.vgemFenceSignal(fence), 50);
  await sf.wait({ timeoutMs: 5000 });
  const done = sf.info();
  t.equal(done.state, 'signaled');
  t.equal(done.fences[0].state, 'signaled');
  t.ok(done.fences[0].timestampNs > 0n, 'signalled at a time');
  await bufB.waitIdle('read', { timeoutMs: 1000 });
  t.doesNotThrow(() => bFences.waitSync({ timeoutMs: 0 }));
});

t.test('merge() joins two sync_files; the merge signals when both have', guest, async (t) => {
  using d = vgem();
  using a = d.createDumb({ width: W, height: H });
  using b = d.createDumb({ width: W, height: H });
  using bufA = a.export();
  using bufB = b.export();
  const fa = d.vgemFenceAttach(a, { write: true });
  const fb = d.vgemFenceAttach(b, { write: true });
  using sa = bufA.exportSyncFile('rw');
  using sb = bufB.exportSyncFile('rw');
  using m = sa.merge(sb, 'both');
  t.equal(m.info().name, 'both');
  t.equal(m.info().fences.length, 2);
  d.vgemFenceSignal(fa);
  t.throws(() => m.waitSync({ timeoutMs: 10 }), { code: 'ETIMEDOUT' }, 'one of two is not enough');
  d.vgemFenceSignal(fb);
  await m.wait({ timeoutMs: 1000 });
  using fromFd = SyncFile.from(m.fd);
  t.equal(fromFd.info().state, 'signaled');
});

leaks.check();
