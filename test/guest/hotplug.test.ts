// Hot unplug and replug through the harness's QMP relay (harness/vm/host-control.ts):
// the NVMe controller behind the switch's second downstream port is removed
// by QEMU's device_del (the guest's pciehp powers the slot off) and comes back
// with device_add, CMB and namespace working. scripts/guest-suite.sh runs this
// file alone: other files use that controller.
import t from 'tap';
import * as fs from 'node:fs';
import { hostQmp } from '../../harness/vm/guest-control';
import { nvmeDeviceProps } from '../../harness/vm/qemu-args';
import { alignedBuffer, guest, nvmeController, readSysfs, topology, waitFor } from './helpers';

const SERIAL = 'p2pdma1';
const opts = guest.skip ? guest : { skip: topology === 'switch' ? false : `the ${topology} topology has no hot-plug slot (NVMe on the root complex)` };



t.test('device_del of the NVMe behind a switch downstream port unplugs it; device_add brings it back', opts, async (t) => {
  const before = nvmeController(SERIAL);
  t.ok(before, `controller ${SERIAL} present before`);
  if (!before) return;
  const p2pmem = `/sys/bus/pci/devices/${before.bdf}/p2pmem`;
  const cmbBytes = Number(readSysfs(`${p2pmem}/size`));

  await hostQmp('device_del', { id: 'nvme1' });
  t.notOk(fs.existsSync(`/sys/bus/pci/devices/${before.bdf}`), `PCI function ${before.bdf} removed`);
  t.notOk(nvmeController(SERIAL), 'controller gone from /sys/class/nvme');
  t.ok(nvmeController('p2pdma0'), 'the other controller stays');

  await hostQmp('device_add', nvmeDeviceProps(1, cmbBytes >> 20, 'switch'));
  const after = await waitFor('the replugged controller', () => nvmeController(SERIAL));
  t.equal(after.bdf, before.bdf, 'same slot, same PCI address');
  const published = await waitFor('its CMB published as p2pmem', () =>
    fs.existsSync(`${p2pmem}/published`) && readSysfs(`${p2pmem}/published`) === '1' ? true : undefined);
  t.equal(published, true);
  t.equal(Number(readSysfs(`${p2pmem}/size`)), cmbBytes, 'CMB size as before');

  // The namespace works again: a block written O_DIRECT reads back.
  const ns = await waitFor('its namespace', () => {
    const dev = `/dev/${after.name}n1`;
    return fs.existsSync(dev) ? dev : undefined;
  });
  const fd = fs.openSync(ns, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  try {
    const aligned = alignedBuffer(4096);
    aligned.fill(0x5a);
    t.equal(fs.writeSync(fd, aligned, 0, 4096, 1 << 20), 4096);
    aligned.fill(0);
    t.equal(fs.readSync(fd, aligned, 0, 4096, 1 << 20), 4096);
    t.ok(aligned.every((b) => b === 0x5a), 'data written after the replug reads back');
  } finally {
    fs.closeSync(fd);
  }
});

t.test('the relay refuses QMP commands a guest must not run', opts, async (t) => {
  await t.rejects(hostQmp('quit'), { name: 'QmpError', message: /not allowed from the guest: quit/ });
  await t.rejects(hostQmp('device_del', { id: 'no-such-device' }), { name: 'QmpError', code: 'DeviceNotFound' });
});
