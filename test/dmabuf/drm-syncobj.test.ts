// DrmSyncobj on the host (no DRM device here; virtio-gpu is in the guest:
// test/guest/drm-syncobj.test.ts): argument checks before any ioctl, the
// request named in errors over a foreign fd, and the handle's constructor.
import t from 'tap';

import { DrmDevice, DrmSyncobj, memfd } from '../../lib';
import { syncobjRequests } from '../../lib/dmabuf/drm-syncobj';
import { ioc } from '../../lib/core/ioctl';
import { expectCode, leakGuard, TEST_PREFIX } from '../helpers';

const leaks = leakGuard();

function foreign(): DrmDevice {
  return new DrmDevice(memfd(TEST_PREFIX).release());
}

t.test('the request numbers match uapi drm/drm.h', async (t) => {
  // The values of DRM_IOCTL_SYNCOBJ_* on x86-64, from the kernel's header.
  t.same(
    Object.fromEntries(Object.entries(syncobjRequests).map(([k, v]) => [k, `0x${v.toString(16)}`])),
    {
      DRM_IOCTL_SYNCOBJ_CREATE: '0xc00864bf',
      DRM_IOCTL_SYNCOBJ_DESTROY: '0xc00864c0',
      DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD: '0xc01064c1',
      DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE: '0xc01064c2',
      DRM_IOCTL_SYNCOBJ_WAIT: '0xc02864c3',
      DRM_IOCTL_SYNCOBJ_RESET: '0xc01064c4',
      DRM_IOCTL_SYNCOBJ_SIGNAL: '0xc01064c5',
      DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT: '0xc03064ca',
      DRM_IOCTL_SYNCOBJ_QUERY: '0xc01864cb',
      DRM_IOCTL_SYNCOBJ_TRANSFER: '0xc02064cc',
      DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL: '0xc01864cd',
      DRM_IOCTL_SYNCOBJ_EVENTFD: '0xc01864cf',
    },
  );
  t.equal(ioc.size(syncobjRequests.DRM_IOCTL_SYNCOBJ_EVENTFD), 24);
});

t.test('DrmSyncobj is made by a DrmDevice only', async (t) => {
  using d = foreign();
  t.throws(() => new (DrmSyncobj as unknown as new (...a: unknown[]) => unknown)(Symbol('x'), d, 1), { code: 'ERR_ILLEGAL_CONSTRUCTOR' });
});

t.test('createSyncobj() and importSyncobj() check their arguments, then name the request in the kernel\'s error', async (t) => {
  using d = foreign();
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  t.throws(() => d.createSyncobj(null as never), type);
  t.throws(() => d.createSyncobj({ signaled: 1 as never }), type);
  t.throws(() => d.importSyncobj('3' as never), type);
  t.throws(() => d.importSyncobj(-1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => d.createSyncobj(), { code: 'ENOTTY', errno: -25, syscall: 'ioctl', request: 'DRM_IOCTL_SYNCOBJ_CREATE' });
  t.throws(() => d.createSyncobj({ signaled: true }), { code: 'ENOTTY', request: 'DRM_IOCTL_SYNCOBJ_CREATE' });
  using m = memfd(TEST_PREFIX);
  t.throws(() => d.importSyncobj(m), { code: 'ENOTTY', request: 'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE' });
});

t.test('a closed DrmDevice refuses sync objects', async (t) => {
  const d = foreign();
  d.close();
  t.throws(() => d.createSyncobj(), { code: 'ERR_P2PDMA_CLOSED' });
  using m = memfd(TEST_PREFIX);
  t.throws(() => d.importSyncobj(m), { code: 'ERR_P2PDMA_CLOSED' });
});

leaks.check(t);
