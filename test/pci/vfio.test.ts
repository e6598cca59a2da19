// Vfio's argument checks and request numbers, here; binding, dma-buf export
// and revocation need vfio-pci and a device: test/guest/vfio.test.ts.
import t from 'tap';

import { ioc, Vfio, vfioRequests } from '../../lib';

t.test('request numbers are linux/vfio.h\'s _IO(\';\', 100 + n)', async (t) => {
  t.equal(vfioRequests.VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
  t.equal(vfioRequests.VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
  t.equal(vfioRequests.VFIO_DEVICE_RESET, 0x3b6f);
  t.equal(vfioRequests.VFIO_DEVICE_FEATURE, 0x3b75);
  t.equal(ioc.size(vfioRequests.VFIO_DEVICE_FEATURE), 0, 'VFIO encodes no sizes');
});

t.test('Vfio.open: a malformed address is refused before any sysfs write; a missing device is ENOENT', async (t) => {
  t.throws(() => Vfio.open('not-a-bdf'), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => Vfio.open(3 as never), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => Vfio.open('0000:fe:1f.7'), { code: 'ENOENT', syscall: 'open', path: '/sys/bus/pci/devices/0000:fe:1f.7' });
  t.throws(() => Vfio.setNoIommuMode('Y' as never), { code: 'ERR_INVALID_ARG_TYPE' });
});

t.test('Vfio has no public constructor', async (t) => {
  t.throws(() => new (Vfio as unknown as new () => Vfio)(), { code: 'ERR_ILLEGAL_CONSTRUCTOR' });
});
