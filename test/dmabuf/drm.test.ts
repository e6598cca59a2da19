// Drm on the host (no DRM device here; vgem is in the guest): listing,
// opening without devices, and argument and driver checks on a DrmDevice
// over a foreign fd.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Drm, DrmDevice, GemBuffer, memfd } from '../../lib';
import { drmDevices } from '../../lib/dmabuf/drm';
import { probeDrmVersion } from '../../lib/dmabuf/drm-nodes';
import { fakeDrm, VGEM_FAUX, VGEM_PLATFORM } from '../fake-sysfs';
import { expectCode, leakGuard, report, runTs, TEST_PREFIX } from '../helpers';

const leaks = leakGuard();
const hostHasDrm = fs.existsSync('/dev/dri');

t.test('Drm.devices() is [] and Drm.open() ENOENT without /dev/dri', { skip: hostHasDrm && 'this host has DRM devices' }, async (t) => {
  t.same(Drm.devices(), []);
  t.throws(() => Drm.open(), { code: 'ENOENT', message: /no primary DRM node \(have: none\)/ });
  t.throws(() => Drm.open({ driver: 'vgem', type: 'render' }), { code: 'ENOENT', message: /no render DRM node of driver 'vgem'/ });
  t.throws(() => Drm.open('/dev/dri/card0'), { code: 'ENOENT', path: '/dev/dri/card0' });
});

t.test('Drm.open() checks its argument', async (t) => {
  t.throws(() => Drm.open({ type: 'gpu' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.throws(() => Drm.open({ driver: 1 as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Drm.open(null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('Drm.devices() checks its options', async (t) => {
  t.throws(() => Drm.devices(null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Drm.devices({ devDir: 1 as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Drm.devices({ sysDir: '/sys\0x' }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.same(Drm.devices({ devDir: '/nonexistent-p2pdma', sysDir: '/nonexistent-p2pdma' }), []);
});

t.test('driver identification on a 7.x tree: vgem is a faux device bound to faux_driver (issue 29)', async (t) => {
  const root = fakeDrm(VGEM_FAUX);
  t.teardown(() => fs.rmSync(root, { recursive: true }));
  const opts = { devDir: `${root}/dev`, sysDir: `${root}/sys` };
  const sysfsDevice = fs.realpathSync(`${root}/sys/devices/faux/vgem`);
  const nodes = { primary: `${root}/dev/dri/card0`, render: `${root}/dev/dri/renderD128` };
  const expectSysfs = (name: string, type: string) => ({
    path: `${root}/dev/dri/${name}`, type, driver: 'vgem', driverFrom: 'sysfs', sysfsDevice, bus: 'faux', sysfsDriver: 'vgem', busType: 'virtual', nodes,
  });
  t.same(Drm.devices(opts), [expectSysfs('card0', 'primary'), expectSysfs('renderD128', 'render')], 'sysfs alone names vgem, not faux_driver (the nodes are plain files here)');

  const asked: string[] = [];
  const probe = (p: string) => (asked.push(path.basename(p)), 'vgem');
  const viaIoctl = drmDevices(opts, probe);
  t.same(asked, ['renderD128'], 'one DRM_IOCTL_VERSION per device, on its render node');
  t.same(viaIoctl.map((n) => [n.driver, n.driverFrom, n.bus]), [['vgem', 'ioctl', 'faux'], ['vgem', 'ioctl', 'faux']]);
});

t.test('driver identification on a 6.12 tree: vgem is a platform device with no driver bound', async (t) => {
  const root = fakeDrm(VGEM_PLATFORM);
  t.teardown(() => fs.rmSync(root, { recursive: true }));
  const nodes = Drm.devices({ devDir: `${root}/dev`, sysDir: `${root}/sys` });
  t.same(nodes.map((n) => [n.driver, n.driverFrom, n.bus, n.sysfsDriver, n.busType, n.pci]), [['vgem', 'sysfs', 'platform', 'vgem', 'virtual', undefined], ['vgem', 'sysfs', 'platform', 'vgem', 'virtual', undefined]]);
});

t.test('PCI info as drmGetDevices2 gives it: a DRM device on a virtio device reports the PCI function above it, a PCI GPU its own; a platform device with a firmware node is platform', async (t) => {
  const virtioPci = { vendor: 0x1af4, device: 0x1050, subvendor: 0x1af4, subdevice: 0x1100, revision: 0x01 };
  const amd = { vendor: 0x1002, device: 0x744c, subvendor: 0x1da2, subdevice: 0xe471, revision: 0xc8 };
  const root = fakeDrm([
    { name: 'card0', device: 'faux/vgem', bus: 'faux', driver: 'faux_driver' },
    { name: 'card1', device: 'pci0000:00/0000:00:05.0/virtio3', bus: 'virtio', driver: 'virtio_gpu', pci: virtioPci },
    { name: 'card2', device: 'pci0001:00/0001:00:01.0/0001:03:00.0', bus: 'pci', driver: 'amdgpu', pci: amd },
    { name: 'card3', device: 'platform/fd4a0000.gpu', bus: 'platform', driver: 'panfrost' },
    { name: 'renderD128', device: 'faux/vgem', bus: 'faux', driver: 'faux_driver' },
    { name: 'renderD129', device: 'pci0000:00/0000:00:05.0/virtio3', bus: 'virtio', driver: 'virtio_gpu' },
    { name: 'renderD130', device: 'pci0001:00/0001:00:01.0/0001:03:00.0', bus: 'pci', driver: 'amdgpu' },
  ]);
  t.teardown(() => fs.rmSync(root, { recursive: true }));
  fs.mkdirSync(`${root}/sys/devices/platform/fd4a0000.gpu/of_node`);
  const dri = `${root}/dev/dri`;
  const byName = new Map(Drm.devices({ devDir: `${root}/dev`, sysDir: `${root}/sys` }).map((n) => [path.basename(n.path), n]));
  t.match(byName.get('card0'), { bus: 'faux', busType: 'virtual', nodes: { primary: `${dri}/card0`, render: `${dri}/renderD128` } });
  t.equal(byName.get('card0')!.pci, undefined, 'vgem has no PCI function');
  t.same(byName.get('card1')!.pci, {
    address: '0000:00:05.0', domain: 0, bus: 0, dev: 5, func: 0, vendorId: 0x1af4, deviceId: 0x1050, subvendorId: 0x1af4, subdeviceId: 0x1100, revisionId: 1,
  });
  t.match(byName.get('card1'), { bus: 'virtio', busType: 'pci', driver: 'virtio_gpu', nodes: { primary: `${dri}/card1`, render: `${dri}/renderD129` } });
  t.same(byName.get('renderD129')!.pci, byName.get('card1')!.pci, 'both nodes of a device carry its PCI info');
  t.same(byName.get('renderD130')!.pci, {
    address: '0001:03:00.0', domain: 1, bus: 3, dev: 0, func: 0, vendorId: 0x1002, deviceId: 0x744c, subvendorId: 0x1da2, subdeviceId: 0xe471, revisionId: 0xc8,
  });
  t.match(byName.get('card3'), { bus: 'platform', busType: 'platform', nodes: { primary: `${dri}/card3` } });
  t.equal(byName.get('card3')!.nodes!.render, undefined, 'a device without a render node');
});

t.test('DRM_IOCTL_VERSION wins over sysfs; the card node is asked when the render node cannot be; sysfs stays as extra information', async (t) => {
  const root = fakeDrm([
    { name: 'card0', device: 'pci0000:00/0000:00:02.0', bus: 'pci', driver: 'virtio-pci' },
    { name: 'renderD128', device: 'pci0000:00/0000:00:02.0', bus: 'pci', driver: 'virtio-pci' },
    { name: 'card1', device: 'faux/vgem', bus: 'faux', driver: 'faux_driver' },
    { name: 'renderD129', device: 'faux/vgem', bus: 'faux', driver: 'faux_driver' },
  ]);
  t.teardown(() => fs.rmSync(root, { recursive: true }));
  const asked: string[] = [];
  const answers: Record<string, string | undefined> = { renderD128: 'virtio_gpu', renderD129: undefined, card1: 'vgem' };
  const nodes = drmDevices({ devDir: `${root}/dev`, sysDir: `${root}/sys` }, (p) => {
    asked.push(path.basename(p));
    return answers[path.basename(p)];
  });
  t.same(asked, ['renderD128', 'renderD129', 'card1']);
  t.same(
    nodes.map((n) => [path.basename(n.path), n.driver, n.driverFrom, n.sysfsDriver]),
    [
      ['card0', 'virtio_gpu', 'ioctl', 'virtio-pci'],
      ['card1', 'vgem', 'ioctl', 'vgem'],
      ['renderD128', 'virtio_gpu', 'ioctl', 'virtio-pci'],
      ['renderD129', 'vgem', 'ioctl', 'vgem'],
    ],
  );
});

t.test('the default DRM_IOCTL_VERSION probe answers nothing for what is not a DRM node', async (t) => {
  t.equal(probeDrmVersion('/dev/null'), undefined, 'a char device that is not DRM: ENOTTY');
  t.equal(probeDrmVersion('/nonexistent-p2pdma'), undefined);
  t.equal(probeDrmVersion(__filename), undefined, 'a regular file is not even opened');
});

function foreign(): DrmDevice {
  return new DrmDevice(memfd(TEST_PREFIX).release());
}

t.test('a DrmDevice over a foreign fd fails every ioctl with the request named', async (t) => {
  using d = foreign();
  t.throws(() => d.version(), { code: 'ENOTTY', syscall: 'ioctl', request: 'DRM_IOCTL_VERSION' });
  t.throws(() => d.createDumb({ width: 64, height: 64 }), { code: 'ENOTTY', request: 'DRM_IOCTL_MODE_CREATE_DUMB' });
  t.throws(() => d.exportBuffer(1), { code: 'ENOTTY', request: 'DRM_IOCTL_PRIME_HANDLE_TO_FD' });
  using m = memfd(TEST_PREFIX);
  t.throws(() => d.importBuffer(m), { code: 'ENOTTY', request: 'DRM_IOCTL_PRIME_FD_TO_HANDLE' });
  t.throws(() => d.createBuffer(4096), { code: 'ENOTTY', request: 'DRM_IOCTL_VERSION' }, 'the driver is asked first');
  t.throws(() => d.vgemFenceSignal(1), { code: 'ENOTTY', request: 'DRM_IOCTL_VERSION' });
  t.throws(() => d.getCap('PRIME'), { code: 'ENOTTY', request: 'DRM_IOCTL_GET_CAP' });
  t.throws(() => d.setClientCap('ATOMIC'), { code: 'ENOTTY', request: 'DRM_IOCTL_SET_CLIENT_CAP' });
});

t.test('DrmDevice methods check arguments before any ioctl', async (t) => {
  using d = foreign();
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  t.throws(() => d.createDumb({ width: 0, height: 1 }), range);
  t.throws(() => d.createDumb({ width: 1, height: 2 ** 32 }), range);
  t.throws(() => d.createDumb({ width: 1, height: 1, bpp: 0.5 }), range);
  t.throws(() => d.createDumb(undefined as never), type);
  t.throws(() => d.createBuffer(0), range);
  t.throws(() => d.createBuffer('1' as never), type);
  t.throws(() => d.exportBuffer(-1), range);
  t.throws(() => d.exportBuffer('1' as never), type);
  t.throws(() => d.exportBuffer(1, { rw: 1 as never }), type);
  t.throws(() => d.vgemFenceAttach(1, { write: 'yes' as never }), type);
  t.throws(() => d.vgemFenceSignal(-1), range);
  t.throws(() => d.importBuffer(-1), range);
  t.throws(() => d.getCap('NOPE' as never), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.throws(() => d.getCap(-1), range);
  t.throws(() => d.getCap(1n as never), type);
  t.throws(() => d.setClientCap('ATOMIC', -1), range);
  t.throws(() => d.setClientCap('ATOMIC', 2n ** 64n), range);
  t.throws(() => d.setClientCap('ATOMIC', '1' as never), type);
});

t.test('a GemBuffer of another device or a closed one is refused', async (t) => {
  using a = foreign();
  using b = foreign();
  const buf = new GemBuffer(b, 7, 4096);
  t.throws(() => a.exportBuffer(buf), { code: 'ERR_INVALID_ARG_VALUE', message: /another DrmDevice/ });
  t.throws(() => buf.close(), { code: 'ENOTTY', request: 'DRM_IOCTL_GEM_CLOSE' }, 'the last reference GEM_CLOSEs');
  t.ok(buf.closed);
  t.doesNotThrow(() => buf.close(), 'close is idempotent');
  t.throws(() => buf.map(), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => buf.export(), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => b.exportBuffer(buf), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => b.vgemFenceAttach(buf), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('GemBuffers of one handle share it: GEM_CLOSE exactly once, when the last closes (issue 22 defect 6)', async (t) => {
  // Over a memfd every GEM_CLOSE fails with ENOTTY: each attempt is a throw.
  using d = foreign();
  const x = new GemBuffer(d, 7, 4096, 256);
  const y = new GemBuffer(d, 7, 1);
  t.equal(y.size, 4096, 'the second object takes the size of the handle it shares');
  t.equal(y.pitch, 256);
  t.doesNotThrow(() => x.close(), 'the first close only drops a reference');
  t.ok(x.closed);
  t.notOk(y.closed, 'the other object is still open');
  t.throws(() => y.export(), { code: 'ENOTTY', request: 'DRM_IOCTL_PRIME_HANDLE_TO_FD' }, 'and still reaches the kernel');
  t.doesNotThrow(() => x.close(), 'closing the same object again does nothing');
  t.throws(() => y.close(), { code: 'ENOTTY', request: 'DRM_IOCTL_GEM_CLOSE' }, 'the last close is the one GEM_CLOSE');
  t.doesNotThrow(() => y.close());
  t.doesNotThrow(() => x.close());
  // The number again (the kernel reuses it): a new entry, not the old objects'.
  const z = new GemBuffer(d, 7, 8192);
  t.equal(z.size, 8192);
  t.notOk(z.closed);
  x.close();
  y.close();
  t.notOk(z.closed, 'closing the old objects again does not touch the new buffer');
  t.throws(() => z.close(), { code: 'ENOTTY', request: 'DRM_IOCTL_GEM_CLOSE' });
  const other = foreign();
  const w = new GemBuffer(other, 7, 4096);
  t.notOk(w.closed, 'tables are per device');
  other.close();
  w.close();
});

t.test('closing a DrmDevice with open buffers: it reads closed, its fd stays until the last buffer closes', async (t) => {
  const d = foreign();
  const fd = d.fd;
  const buf = new GemBuffer(d, 3, 4096);
  t.throws(() => d.release(), { code: 'ERR_P2PDMA_BUSY' }, 'release() is refused while buffers hold the fd');
  d.close();
  t.ok(d.closed);
  t.throws(() => d.exportBuffer(buf), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => new GemBuffer(d, 4, 4096), { code: 'ERR_P2PDMA_CLOSED' });
  t.notOk(buf.closed, 'the buffer is a child: still open');
  t.ok(fs.existsSync(`/proc/self/fd/${fd}`), 'the device fd is still open');
  t.throws(() => buf.export(), { code: 'ENOTTY', request: 'DRM_IOCTL_PRIME_HANDLE_TO_FD' }, 'the buffer still works through it');
  t.doesNotThrow(() => buf.close(), 'no GEM_CLOSE: the close(2) that follows frees every handle');
  t.notOk(fs.existsSync(`/proc/self/fd/${fd}`), 'the device fd is closed with the last buffer');
  t.throws(() => buf.map(), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('the GemBuffer constructor and the methods check their arguments', async (t) => {
  using d = foreign();
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => new GemBuffer({} as never, 1, 4096), type);
  t.throws(() => new GemBuffer(d, '1' as never, 4096), type);
  for (const h of [0, -1, 1.5, 2 ** 32, NaN]) t.throws(() => new GemBuffer(d, h, 4096), range, `handle ${h}`);
  t.throws(() => new GemBuffer(d, 1, -1), range);
  t.throws(() => new GemBuffer(d, 1, 2 ** 53), range);
  t.throws(() => new GemBuffer(d, 1, 1n as never), type);
  t.throws(() => new GemBuffer(d, 1, 4096, -1), range);
  t.throws(() => d.createBuffer(4096, { domain: 'cpu' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'), 'a bad domain is refused before any ioctl');
  t.throws(() => d.createBuffer(4096, { domain: 'toString' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.throws(() => d.createBuffer(2 ** 53), range);
  t.throws(() => d.exportBuffer(1, null as never), type);
  t.throws(() => d.importBuffer('3' as never), type);
  t.throws(() => d.importBuffer(2 ** 32), range);
  const closedFd = memfd(TEST_PREFIX);
  closedFd.close();
  t.throws(() => d.importBuffer(closedFd), { code: 'ERR_P2PDMA_CLOSED' });
  const buf = new GemBuffer(d, 5, 4096);
  t.throws(() => buf.map(null as never), type);
  t.throws(() => buf.export({ rw: 'yes' as never }), type);
  t.throws(() => buf.close(), { code: 'ENOTTY' });
});

t.test('every DrmDevice method refuses a closed device', async (t) => {
  const d = foreign();
  d.close();
  const closed = { code: 'ERR_P2PDMA_CLOSED' };
  t.throws(() => d.version(), closed);
  t.throws(() => d.createDumb({ width: 1, height: 1 }), closed);
  t.throws(() => d.createBuffer(4096), closed);
  t.throws(() => d.exportBuffer(1), closed);
  using m = memfd(TEST_PREFIX);
  t.throws(() => d.importBuffer(m), closed);
  t.throws(() => d.vgemFenceAttach(1), closed);
  t.throws(() => d.vgemFenceSignal(1), closed);
});

t.test('a GemBuffer collected while open drops its reference with a warning; the last one GEM_CLOSEs (child, --expose-gc)', async (t) => {
  const r = report<{
    fd: number;
    afterSharedGc: { message: string; code: string }[];
    keptOpen: boolean;
    lastClose: string;
    afterLastGc: { message: string; code: string }[];
    fdOpenWhileBufferLives: boolean;
    fdClosedAfterGc: boolean;
    afterDeviceClosedGc: { message: string; code: string }[];
  }>(runTs(path.join(__dirname, '..', 'fixtures', 'gc-gem.ts'), ['--expose-gc']));
  t.same(r.afterSharedGc, [{ message: 'Dropping a reference to GEM handle 7 on garbage collection', code: 'P2PDMA_GC_CLOSE' }], 'no GEM_CLOSE while another object holds the handle');
  t.ok(r.keptOpen);
  t.equal(r.lastClose, 'ENOTTY DRM_IOCTL_GEM_CLOSE', 'the survivor\'s close is the GEM_CLOSE');
  t.same(r.afterLastGc, [
    { message: 'Closing GEM handle 9 on garbage collection', code: 'P2PDMA_GC_CLOSE' },
    { message: 'GEM_CLOSE of GemBuffer (handle 9) on garbage collection failed', code: 'P2PDMA_CLOSE_FAILED' },
  ], 'the last reference GEM_CLOSEs, and its error is a warning');
  t.ok(r.fdOpenWhileBufferLives);
  t.ok(r.fdClosedAfterGc, 'the closed device\'s fd goes once the GC has closed its last buffer');
  t.same(r.afterDeviceClosedGc, [{ message: 'Closing GEM handle 11 on garbage collection', code: 'P2PDMA_GC_CLOSE' }]);
});

leaks.check(t);
