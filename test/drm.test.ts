// Drm on the host (no DRM device here; vgem is in the guest): listing,
// opening without devices, and argument and driver checks on a DrmDevice
// over a foreign fd.
import t from 'tap';
import * as fs from 'node:fs';

import { Drm, DrmDevice, GemBuffer, memfd } from '../lib/index';
import { expectCode, leakGuard, TEST_PREFIX } from './helpers';

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
});

t.test('a GemBuffer of another device or a closed one is refused; GemBuffer close is idempotent after the device closes', async (t) => {
  using a = foreign();
  const b = foreign();
  const buf = new GemBuffer(b, 7, 4096);
  t.throws(() => a.exportBuffer(buf), { code: 'ERR_INVALID_ARG_VALUE', message: /another DrmDevice/ });
  b.close();
  t.ok(buf.closed, 'closing the device closes its buffers');
  t.doesNotThrow(() => buf.close());
  t.throws(() => buf.map(), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => b.exportBuffer(buf), { code: 'ERR_P2PDMA_CLOSED' });
});

leaks.check(t);
