// The devices the harness promises inside the guest are really there.
import t from 'tap';
import * as fs from 'node:fs';
import { guest, nvmeControllers, readSysfs } from './helpers';

t.test('two NVMe controllers each publish a 64 MiB CMB as p2pmem', guest, async (t) => {
  const ctrls = nvmeControllers();
  t.equal(ctrls.length, 2, 'two controllers');
  for (const c of ctrls) {
    t.equal(readSysfs(`${c.p2pmem}/size`), String(64 << 20), `${c.name} size`);
    // Other guest test files allocate from the CMBs at the same time.
    t.ok(Number(readSysfs(`${c.p2pmem}/available`)) <= 64 << 20, `${c.name} available <= size`);
    t.equal(readSysfs(`${c.p2pmem}/published`), '1', `${c.name} published`);
    t.ok(fs.statSync(`${c.p2pmem}/allocate`).isFile(), `${c.name} has p2pmem/allocate`);
    t.ok(fs.statSync(c.namespace).isBlockDevice(), `${c.namespace} is a block device`);
  }
});

t.test('udmabuf and the system dma-heap exist', guest, async (t) => {
  t.ok(fs.statSync('/dev/udmabuf').isCharacterDevice());
  t.ok(fs.statSync('/dev/dma_heap/system').isCharacterDevice());
});

t.test('vgem provides a DRM card and render node', guest, async (t) => {
  const nodes = fs.readdirSync('/dev/dri');
  t.ok(nodes.includes('card0'), 'card0');
  t.ok(nodes.includes('renderD128'), 'renderD128');
  // The device is named vgem: a platform device up to 6.14, a faux device
  // (/sys/devices/faux/vgem, driver link to faux_driver) from 6.15.
  const device = fs.realpathSync('/sys/class/drm/renderD128/device');
  t.match(device, /\/vgem$/, 'render node belongs to vgem');
});

t.test('soft-RoCE rxe0 is ACTIVE on eth0', guest, async (t) => {
  t.equal(readSysfs('/sys/class/infiniband/rxe0/ports/1/state'), '4: ACTIVE');
  t.equal(readSysfs('/sys/class/infiniband/rxe0/parent'), 'eth0');
});

t.test('huge pages are reserved for hugetlb-backed udmabufs', guest, async (t) => {
  const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
  const total = Number(/HugePages_Total:\s+(\d+)/.exec(meminfo)?.[1]);
  t.ok(total >= 8, `HugePages_Total ${total} >= 8`);
});

t.test('the ivshmem-plain BAR device is present', guest, async (t) => {
  const found = fs.readdirSync('/sys/bus/pci/devices').some((bdf) => {
    const dev = `/sys/bus/pci/devices/${bdf}`;
    return readSysfs(`${dev}/vendor`) === '0x1af4' && readSysfs(`${dev}/device`) === '0x1110';
  });
  t.ok(found, '1af4:1110 present');
});
