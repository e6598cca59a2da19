// DRM sync objects on virtio-gpu (the guest's PCI DRM device; vgem has no
// DRIVER_SYNCOBJ): create, wait (eventfd on the event loop, and blocking),
// timeline points, reset, transfer, sync_file and dma-buf fences, sharing
// between files, bad input, close order and abort; the clear error on vgem;
// drmGetDevices2-style PCI info. The igt-gpu-tools syncobj_* ideas as tap
// tests, and libdrm's calls beside them on the same device.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

import { DmaHeap, Drm, type DrmDevice, DrmSyncobj, Fd, ioc, ioctlSync, memfd, SyncFile } from '../../lib';
import { packageRoot } from '../../lib/core/package-root';
import { dmabufLeakGuard } from './dmabuf-leaks';
import { guest, readSysfs } from './helpers';

const leaks = dmabufLeakGuard();

// Looked up once: Drm.open({ driver }) lists (and asks) every node each time.
const nodes = guest.skip ? [] : Drm.devices();
const renderNode = nodes.find((n) => n.driver === 'virtio_gpu' && n.type === 'render')?.path ?? '/dev/dri/renderD129';
const cardNode = nodes.find((n) => n.driver === 'virtio_gpu' && n.type === 'primary')?.path ?? '/dev/dri/card1';
const vgemNode = (type: 'primary' | 'render') => nodes.find((n) => n.driver === 'vgem' && n.type === type)?.path ?? (type === 'primary' ? '/dev/dri/card0' : '/dev/dri/renderD128');

function gpu(): DrmDevice {
  return Drm.open(renderNode);
}

const ETIME = { code: 'ETIME', errno: -62, syscall: 'ioctl' };
const closed = { code: 'ERR_P2PDMA_CLOSED' };
const pending = Symbol('pending');
/** What `p` has settled to after the event loop has run the ready callbacks (no timer: nothing waits on the machine's speed). */
async function state<T>(p: Promise<T>): Promise<T | typeof pending> {
  return Promise.race([p, new Promise<typeof pending>((r) => setImmediate(() => setImmediate(() => r(pending))))]);
}

/**
 * A sw_sync timeline (CONFIG_SW_SYNC, in debugfs): fences signalled by inc().
 * Disposing signals every fence it made before closing the timeline: closing
 * it with a fence pending whose last reference a syncobj eventfd waiter
 * holds deadlocks the kernel (6.12 and 7.3: sw_sync_debugfs_release signals
 * under the timeline lock without a reference of its own, the waiter's
 * callback drops the last one, and timeline_fence_release takes the lock
 * again). sync_timeline_signal (SW_SYNC_IOC_INC) holds references.
 */
class SwSync implements Disposable {
  // struct sw_sync_create_fence_data { __u32 value; char name[32]; __s32 fence; }
  static readonly CREATE_FENCE = ioc.iowr('W', 0, 40);
  static readonly INC = ioc.iow('W', 1, 4);
  readonly timeline = Fd.open('/sys/kernel/debug/sync/sw_sync', 'r+');
  #made = 0;
  #value = 0;
  fence(value: number): SyncFile {
    this.#made = Math.max(this.#made, value);
    const arg = Buffer.alloc(40);
    arg.writeUInt32LE(value, 0);
    arg.write('p2pdma', 4);
    ioctlSync(this.timeline, SwSync.CREATE_FENCE, arg, { name: 'SW_SYNC_IOC_CREATE_FENCE' });
    return SyncFile.from(arg.readInt32LE(36), { own: true });
  }
  inc(by = 1): void {
    const arg = Buffer.alloc(4);
    arg.writeUInt32LE(by);
    ioctlSync(this.timeline, SwSync.INC, arg, { name: 'SW_SYNC_IOC_INC' });
    this.#value += by;
  }
  [Symbol.dispose](): void {
    if (this.#made > this.#value) this.inc(this.#made - this.#value);
    this.timeline.close();
  }
}

t.test('Drm.devices(): virtio-gpu is a PCI device with its PCI function, as drmGetDevices2 reports it; vgem is virtual', guest, async (t) => {
  const v = nodes.filter((n) => n.driver === 'virtio_gpu');
  t.same(v.map((n) => n.type).sort(), ['primary', 'render'], 'a card and a render node (KMS off: the card node exists all the same)');
  const [card, render] = [v.find((n) => n.type === 'primary')!, v.find((n) => n.type === 'render')!];
  t.equal(card.busType, 'pci');
  t.equal(card.bus, 'pci', 'virtio-gpu makes the PCI function (not its virtio device) the DRM device\'s parent');
  const fn = card.sysfsDevice!;
  const hex = (f: string) => parseInt(readSysfs(`${fn}/${f}`), 16);
  t.same(card.pci, {
    address: '0000:00:1e.0', domain: 0, bus: 0, dev: 0x1e, func: 0,
    vendorId: 0x1af4, deviceId: 0x1050, subvendorId: hex('subsystem_vendor'), subdeviceId: hex('subsystem_device'), revisionId: hex('revision'),
  }, 'the slot harness/vm/qemu-args.ts gives it; virtio 1.0 GPU ids 1af4:1050');
  t.same(render.pci, card.pci);
  t.same(card.nodes, { primary: card.path, render: render.path });
  t.same(render.nodes, card.nodes);
  for (const n of nodes.filter((x) => x.driver === 'vgem')) {
    t.equal(n.busType, 'virtual', `vgem ${n.path}: no hardware bus`);
    t.match(n.bus, /^(platform|faux)$/);
    t.equal(n.pci, undefined);
  }
});

t.test('GET_CAP: virtio-gpu has binary and timeline sync objects, vgem neither; syncobj calls on vgem are EOPNOTSUPP naming what has them', guest, async (t) => {
  using d = gpu();
  t.equal(d.getCap('SYNCOBJ'), 1n);
  t.equal(d.getCap('SYNCOBJ_TIMELINE'), 1n);
  using vg = Drm.open(vgemNode('render'));
  t.equal(vg.getCap('SYNCOBJ'), 0n);
  const e = { code: 'EOPNOTSUPP', errno: -95, syscall: 'ioctl', request: 'DRM_IOCTL_SYNCOBJ_CREATE', message: /'vgem' driver has no DRM sync objects.*virtio-gpu/ };
  t.throws(() => vg.createSyncobj(), e);
  t.throws(() => vg.createSyncobj({ signaled: true }), e);
  using m = memfd('p2pdma-syncobj');
  t.throws(() => vg.importSyncobj(m), { code: 'EOPNOTSUPP', request: 'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE', message: /vgem.*virtio-gpu/ });
});

t.test('binary: a new object is unsignalled (waits time out with ETIME), signal() and CREATE_SIGNALED signal it, reset() unsignals', guest, async (t) => {
  using d = gpu();
  using s = d.createSyncobj();
  t.ok(s instanceof DrmSyncobj);
  t.equal(s.device, d);
  t.ok(s.handle > 0);
  t.throws(() => s.waitSync({ timeoutMs: 0 }), { ...ETIME, request: 'DRM_IOCTL_SYNCOBJ_WAIT' }, 'no fence yet: ETIME');
  t.throws(() => s.waitSync({ timeoutMs: 5 }), ETIME);
  await t.rejects(s.wait({ timeoutMs: 5 }), { ...ETIME, request: 'DRM_IOCTL_SYNCOBJ_WAIT' }, 'the promise form rejects with the same error');
  await t.rejects(s.wait({ timeoutMs: 0 }), ETIME);
  s.signal();
  t.doesNotThrow(() => s.waitSync({ timeoutMs: 0 }));
  await s.wait();
  s.reset();
  await t.rejects(s.wait({ timeoutMs: 0 }), ETIME, 'reset drops the fence');
  using on = d.createSyncobj({ signaled: true });
  await on.wait({ timeoutMs: 0 });
  on.waitSync();
});

t.test('wait() is on the event loop: it resolves when the object is signalled later, 32 waits at once', guest, async (t) => {
  using d = gpu();
  using s = d.createSyncobj();
  const waits = Array.from({ length: 32 }, () => s.wait());
  t.equal(await state(Promise.race(waits)), pending, 'unsignalled: pending');
  s.signal();
  await Promise.all(waits);
  t.pass('all 32 settled');
});

t.test('timeline points: signal, query, wait for a point, wait for availability, transfer', guest, async (t) => {
  using d = gpu();
  using s = d.createSyncobj();
  t.equal(s.query(), 0n);
  s.signal({ point: 1 });
  s.signal({ point: 3n });
  t.equal(s.query(), 3n);
  t.equal(s.query({ lastSubmitted: true }), 3n);
  await s.wait({ point: 2 });
  s.waitSync({ point: 3n, timeoutMs: 0 });
  t.throws(() => s.waitSync({ point: 5, timeoutMs: 0 }), { ...ETIME, request: 'DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT' });
  await t.rejects(s.wait({ point: 5, timeoutMs: 1 }), { ...ETIME, request: 'DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT' });
  const five = s.wait({ point: 5n });
  const avail = s.wait({ point: 5n, available: true });
  t.equal(await state(Promise.race([five, avail])), pending);
  s.signal({ point: 5 });
  await Promise.all([five, avail]);
  t.equal(s.query(), 5n);
  t.equal(s.query({ lastSubmitted: true }), 5n);

  // A timeline point into a binary object and back.
  using b = d.createSyncobj();
  b.transfer(s, { sourcePoint: 3n });
  await b.wait({ timeoutMs: 0 });
});

t.test('transfer: a binary fence to a point and a point to a binary fence; a missing source fence is EINVAL', guest, async (t) => {
  using d = gpu();
  using tl = d.createSyncobj();
  using bin = d.createSyncobj({ signaled: true });
  tl.transfer(bin, { point: 2 });
  t.equal(tl.query({ lastSubmitted: true }), 2n);
  await tl.wait({ point: 2 });
  using empty = d.createSyncobj();
  t.throws(() => tl.transfer(empty, { point: 4 }), { code: 'EINVAL', request: 'DRM_IOCTL_SYNCOBJ_TRANSFER' });
  using copy = d.createSyncobj();
  copy.transfer(tl, { sourcePoint: 2n });
  copy.waitSync({ timeoutMs: 0 });
});

t.test('sync_file: an sw_sync fence imported into an object (binary and at a point) holds its waits until the fence signals; export gives it back', guest, async (t) => {
  using d = gpu();
  using sw = new SwSync();
  using s = d.createSyncobj();
  using tl = d.createSyncobj();
  {
    using f = sw.fence(1);
    s.importSyncFile(f);
    using g = sw.fence(2);
    tl.importSyncFile(g.fd, { point: 4 });
  }
  t.equal(tl.query({ lastSubmitted: true }), 4n);
  const bin = s.wait();
  const point = tl.wait({ point: 4 });
  t.equal(await state(Promise.race([bin, point])), pending, 'unsignalled fences: both wait');
  await t.rejects(s.wait({ timeoutMs: 0 }), ETIME);
  using out = s.exportSyncFile();
  t.equal(out.info().state, 'active', 'the exported sync_file holds the same fence');
  t.equal(out.info().fences[0].driver, 'sw_sync');
  using outPoint = tl.exportSyncFile({ point: 4 });
  t.equal(outPoint.info().state, 'active');
  sw.inc();
  await bin;
  t.equal(out.info().state, 'signaled');
  t.equal(await state(point), pending, 'point 4 waits for the second fence');
  sw.inc();
  await point;
  await outPoint.wait();
  using empty = d.createSyncobj();
  t.throws(() => empty.exportSyncFile(), { code: 'EINVAL', request: 'DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD' }, 'no fence to export');
  t.throws(() => empty.exportSyncFile({ point: 9 }), { code: 'EINVAL', request: 'DRM_IOCTL_SYNCOBJ_TRANSFER' });
  using m = memfd('p2pdma-syncobj');
  t.throws(() => empty.importSyncFile(m), { code: 'EINVAL', request: 'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE' }, 'a memfd is no sync_file');
});

t.test("dma-buf implicit fences: a vgem buffer's fence signals a syncobj wait; a syncobj's fence holds a heap buffer's waitIdle", guest, async (t) => {
  using d = gpu();
  using vg = Drm.open(vgemNode('primary'));
  using bo = vg.createDumb({ width: 16, height: 16 });
  using buf = bo.export();
  const fence = vg.vgemFenceAttach(bo, { write: true });
  using s = d.createSyncobj();
  s.importDmaBufFences(buf, 'write');
  const w = s.wait();
  t.equal(await state(w), pending, "vgem's write fence, now in the syncobj");
  vg.vgemFenceSignal(fence);
  await w;

  using sw = new SwSync();
  using heap = DmaHeap.open('system');
  using hb = await heap.alloc(4096);
  using f = sw.fence(1);
  using s2 = d.createSyncobj();
  s2.importSyncFile(f);
  s2.exportToDmaBuf(hb, 'write');
  await t.rejects(hb.waitIdle('read', { timeoutMs: 0 }), { code: 'ETIMEDOUT' }, 'readers wait for the new write fence');
  sw.inc();
  await hb.waitIdle('write');
  using fromIdle = d.createSyncobj();
  fromIdle.importDmaBufFences(hb, 'read');
  await fromIdle.wait({ timeoutMs: 0 });
});

t.test('export() and importSyncobj(): two open files share one kernel object', guest, async (t) => {
  using a = gpu();
  using b = Drm.open(cardNode);
  using s = a.createSyncobj();
  using fd = s.export();
  using t2 = b.importSyncobj(fd);
  t.not(t2.device, s.device);
  const w = t2.wait();
  t.equal(await state(w), pending);
  s.signal();
  await w;
  t.throws(() => b.importSyncobj(fd.fd + 1000), { code: 'EINVAL', request: 'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE' }, 'not an open fd: the kernel says EINVAL');
  using m = memfd('p2pdma-syncobj');
  t.throws(() => b.importSyncobj(m), { code: 'EINVAL', request: 'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE' }, 'not a syncobj fd');
});

t.test('abort: a pre-aborted signal rejects before any ioctl; aborting ends a pending wait with an AbortError', guest, async (t) => {
  using d = gpu();
  using s = d.createSyncobj();
  await t.rejects(s.wait({ signal: AbortSignal.abort('early') }), { code: 'ABORT_ERR', name: 'AbortError', cause: 'early' });
  const ac = new AbortController();
  const w = s.wait({ signal: ac.signal });
  t.equal(await state(w), pending);
  ac.abort('late');
  await t.rejects(w, { code: 'ABORT_ERR', cause: 'late' });
  s.signal();
  await s.wait({ signal: new AbortController().signal });
  t.pass('a later wait still works');
});

t.test('close order: closing an object ends its waits; a device closed first keeps its objects working until they close', guest, async (t) => {
  const d = gpu();
  const s = d.createSyncobj();
  const w = s.wait();
  t.equal(await state(w), pending);
  s.close();
  t.ok(s.closed);
  await t.rejects(w, closed, 'the pending wait ends with ERR_P2PDMA_CLOSED');
  t.doesNotThrow(() => s.close(), 'close is idempotent');
  t.throws(() => s.signal(), closed);
  t.throws(() => s.waitSync(), closed);
  t.throws(() => s.query(), closed);
  t.throws(() => s.reset(), closed);
  t.throws(() => s.export(), closed);
  t.throws(() => s.exportSyncFile(), closed);
  await t.rejects(s.wait(), closed);

  const c = d.createSyncobj();
  const fd = d.fd;
  d.close();
  t.ok(d.closed);
  t.throws(() => d.createSyncobj(), closed);
  t.notOk(c.closed, 'a child of the device: still open');
  t.ok(fs.existsSync(`/proc/self/fd/${fd}`), "the device's fd stays");
  c.signal();
  await c.wait({ timeoutMs: 0 });
  c.close();
  t.notOk(fs.existsSync(`/proc/self/fd/${fd}`), 'and goes with the last object');
});

// One assertion over a table: tap's per-assertion cost (a source excerpt
// read over 9p for each promise assertion) would make this test the file's
// slowest on the DEBUG kernel.
t.test('bad input is refused before any ioctl', guest, async (t) => {
  using d = gpu();
  using s = d.createSyncobj();
  using other = gpu();
  using o = other.createSyncobj({ signaled: true });
  using heap = DmaHeap.open('system');
  using hb = await heap.alloc(4096);
  const code = (f: () => unknown): unknown => {
    try {
      f();
      return 'no error';
    } catch (e) {
      return (e as { code?: unknown }).code;
    }
  };
  const codeAsync = (f: () => Promise<unknown>): Promise<unknown> => f().then(() => 'no error', (e: { code?: unknown }) => e.code);
  const got: Record<string, unknown> = {};
  for (const point of [-1, 1.5, 2 ** 53, -1n, 2n ** 64n]) {
    got[`signal({ point: ${point} })`] = code(() => s.signal({ point }));
    got[`wait({ point: ${point} })`] = await codeAsync(() => s.wait({ point }));
  }
  Object.assign(got, {
    "signal({ point: '1' })": code(() => s.signal({ point: '1' as never })),
    'waitSync({ timeoutMs: -1 })': code(() => s.waitSync({ timeoutMs: -1 })),
    'wait({ timeoutMs: 2 ** 31 })': await codeAsync(() => s.wait({ timeoutMs: 2 ** 31 })),
    'wait({ signal: {} })': await codeAsync(() => s.wait({ signal: {} as never })),
    'wait({ available: 1 })': await codeAsync(() => s.wait({ available: 1 as never })),
    'wait(null)': await codeAsync(() => s.wait(null as never)),
    "query({ lastSubmitted: 'yes' })": code(() => s.query({ lastSubmitted: 'yes' as never })),
    'transfer({})': code(() => s.transfer({} as never)),
    'transfer(another device\'s)': code(() => s.transfer(o)),
    "importSyncFile('3')": code(() => s.importSyncFile('3' as never)),
    "importDmaBufFences({}, 'read')": code(() => s.importDmaBufFences({} as never, 'read')),
    "exportToDmaBuf(buf, 'readwrite')": code(() => s.exportToDmaBuf(hb, 'readwrite' as never)),
    "importDmaBufFences(buf, 'x')": code(() => s.importDmaBufFences(hb, 'x' as never)),
    'createSyncobj({ signaled: 1 })': code(() => d.createSyncobj({ signaled: 1 as never })),
  });
  const range = 'ERR_OUT_OF_RANGE';
  const type = 'ERR_INVALID_ARG_TYPE';
  const value = 'ERR_INVALID_ARG_VALUE';
  const expected: Record<string, unknown> = {};
  for (const point of [-1, 1.5, 2 ** 53, -1n, 2n ** 64n]) {
    expected[`signal({ point: ${point} })`] = range;
    expected[`wait({ point: ${point} })`] = range;
  }
  Object.assign(expected, {
    "signal({ point: '1' })": type,
    'waitSync({ timeoutMs: -1 })': range,
    'wait({ timeoutMs: 2 ** 31 })': range,
    'wait({ signal: {} })': type,
    'wait({ available: 1 })': type,
    'wait(null)': type,
    "query({ lastSubmitted: 'yes' })": type,
    'transfer({})': type,
    'transfer(another device\'s)': value,
    "importSyncFile('3')": type,
    "importDmaBufFences({}, 'read')": type,
    "exportToDmaBuf(buf, 'readwrite')": value,
    "importDmaBufFences(buf, 'x')": value,
    'createSyncobj({ signaled: 1 })': type,
  });
  t.same(got, expected, 'each call: the code of its error');
  t.notOk(s.closed, 'the object is still usable');
  s.signal();
  s.waitSync({ timeoutMs: 0 });
});

// libdrm beside the addon, on the same device: drmGetDevices2's PCI info
// and the drmSyncobj* calls (test/guest/c/drm_syncobj_libdrm.c). igt-gpu-tools,
// whose syncobj_* tests these follow, is not in Debian 12 (docs/guide.md).
t.test('libdrm on the same virtio-gpu: drmGetDevices2 gives the PCI info Drm.devices() gives; drmSyncobj* answers as the addon does', guest, async (t) => {
  const bin = libdrmProgram();
  if (bin === undefined) return t.fail('test/guest/c/drm_syncobj_libdrm did not build (libdrm-dev: scripts/setup.sh)');
  const render = nodes.find((n) => n.driver === 'virtio_gpu' && n.type === 'render')!;
  const r = spawnSync(bin, [render.path], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { devices: { bustype: string; primary: string; render: string; pci?: Record<string, number> }[] } & Record<string, number>;
  const lib = out.devices.find((d) => d.render === render.path);
  t.ok(lib, `libdrm lists ${render.path}`);
  const { address: _a, ...pci } = render.pci!;
  t.same(lib, { bustype: 'pci', primary: render.nodes!.primary, render: render.path, pci }, 'the same bus, nodes and PCI ids');
  // Step by step, what the addon's calls gave in the tests above.
  t.same(
    { ...out, devices: undefined, count: undefined },
    {
      devices: undefined, count: undefined, timeline: 1, create: 0, createSignaled: 0,
      waitUnsignaled: -62, waitSignaled: 0, signal: 0, waitAfterSignal: 0, reset: 0, waitAfterReset: -62,
      timelineSignal: 0, query: 0, queried: 3, timelineWait2: 0, timelineWait5: -62, transfer: 0,
      exportSyncFile: 0, importSyncFile: 0, exportEmpty: -22, destroy: 0, destroyAgain: -22,
    },
    'ETIME, EINVAL and successes where the addon has them',
  );
});

const libdrmSource = path.join(packageRoot, 'test/guest/c/drm_syncobj_libdrm.c');
/** The libdrm program: prebuilt by `make -C test/guest/c`, else built into /tmp now. */
function libdrmProgram(): string | undefined {
  const prebuilt = path.join(packageRoot, 'build/guest-c/drm_syncobj_libdrm');
  try {
    if (fs.statSync(prebuilt).mtimeMs >= fs.statSync(libdrmSource).mtimeMs) return prebuilt;
  } catch {
    // not built: build it below
  }
  const out = fs.mkdtempSync('/tmp/guest-c-');
  const r = spawnSync('make', ['-s', '-C', path.dirname(libdrmSource), `OUT=${out}`, `${out}/drm_syncobj_libdrm`], { encoding: 'utf8' });
  return r.status === 0 ? path.join(out, 'drm_syncobj_libdrm') : undefined;
}

leaks.check();
