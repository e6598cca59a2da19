// Pci.devices()/device() parse sysfs: checked here against a fake tree laid
// out like the guest's; the guest suite checks the real one.
import t from 'tap';
import * as fs from 'node:fs';

import { Pci } from '../../lib';
import { fakeSysfs, SWITCH } from '../fake-sysfs';
import { expectCode } from '../helpers';

const sysfs = fakeSysfs(SWITCH);
t.teardown(() => fs.rmSync(sysfs, { recursive: true, force: true }));

t.test('devices() lists every function sorted by address', async (t) => {
  t.same(
    Pci.devices({ sysfs }).map((d) => d.bdf),
    ['0000:00:00.0', '0000:00:02.0', '0000:00:05.0', '0000:01:00.0', '0000:02:00.0', '0000:02:01.0', '0000:03:00.0', '0000:04:00.0'],
  );
});

t.test('device() reads ids, class, driver, NUMA node and BARs', async (t) => {
  const d = Pci.device('0000:03:00.0', { sysfs });
  t.equal(d.vendorId, 0x1b36);
  t.equal(d.deviceId, 0x0010);
  t.equal(d.classCode, 0x010802, 'NVMe class code');
  t.equal(d.driver, 'nvme');
  t.equal(d.numaNode, 0);
  t.same([d.domain, d.bus, d.slot, d.function], [0, 3, 0, 0]);
  t.same(d.bars, [
    { index: 0, start: 0xfe800000n, end: 0xfe803fffn, size: 0x4000n, type: 'mem', prefetchable: false, is64: true },
    { index: 2, start: 0xf4000000n, end: 0xf7ffffffn, size: 0x4000000n, type: 'mem', prefetchable: true, is64: true },
  ]);
  t.equal(Pci.device('0000:00:00.0', { sysfs }).driver, undefined, 'no driver bound');
  t.equal(Pci.device('0000:00:00.0', { sysfs }).numaNode, -1);
});

t.test('upstream is the bridge chain, nearest first; rootBus names the host bridge', async (t) => {
  const d = Pci.device('0000:04:00.0', { sysfs });
  t.same(d.upstream, ['0000:02:01.0', '0000:01:00.0', '0000:00:02.0']);
  t.equal(d.rootBus, 'pci0000:00');
  t.same(Pci.device('0000:00:05.0', { sysfs }).upstream, [], 'a device on the root bus has none');
});

t.test('p2pmem is reported where present', async (t) => {
  const d = Pci.device('0000:04:00.0', { sysfs });
  t.same({ ...d.p2pmem, allocate: d.p2pmem?.allocate?.endsWith('/p2pmem/allocate') }, {
    size: 67108864,
    available: 65011712,
    published: true,
    allocate: true,
  });
  t.equal(Pci.device('0000:00:05.0', { sysfs }).p2pmem, undefined);
});

t.test('device() accepts a short address, refuses bad ones and names a missing device', async (t) => {
  t.equal(Pci.device('03:00.0', { sysfs }).bdf, '0000:03:00.0');
  t.equal(Pci.device('0000:03:00.0'.toUpperCase(), { sysfs }).bdf, '0000:03:00.0');
  t.throws(() => Pci.device('3:0.0', { sysfs }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.throws(() => Pci.device(3 as never, { sysfs }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Pci.device('0000:09:00.0', { sysfs }), { code: 'ERR_P2PDMA_NO_PCI_DEVICE', message: /No PCI device 0000:09:00\.0/ });
  t.throws(() => Pci.devices(null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('no PCI bus gives an empty list; the host sysfs parses', async (t) => {
  t.same(Pci.devices({ sysfs: '/nonexistent' }), []);
  for (const d of Pci.devices()) t.match(d.bdf, /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/);
});
