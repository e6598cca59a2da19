// The vIOMMU lane (vm run --iommu): DMA from the NVMe controllers goes
// through Intel VT-d translation, and ordinary I/O still moves the right
// bytes. Without --iommu no IOMMU translates, so the other lanes test what
// they claim to.
import t from 'tap';
import * as fs from 'node:fs';
import { alignedBuffer, guest, nvmeControllers, readSysfs } from './helpers';

const iommu = process.env.P2PDMA_IOMMU === '1';

function iommuUnits(): string[] {
  return fs.existsSync('/sys/class/iommu') ? fs.readdirSync('/sys/class/iommu') : [];
}

t.test('with --iommu every NVMe controller sits in a DMA-translated IOMMU group', guest.skip ? guest : { skip: !iommu && 'not the vIOMMU lane' }, async (t) => {
  t.ok(iommuUnits().some((u) => u.startsWith('dmar')), `an Intel IOMMU unit (${iommuUnits().join(', ') || 'none'})`);
  const ctrls = nvmeControllers();
  t.equal(ctrls.length, 2);
  for (const c of ctrls) {
    const group = `/sys/bus/pci/devices/${c.bdf}/iommu_group`;
    t.ok(fs.existsSync(group), `${c.name} has an IOMMU group`);
    t.match(readSysfs(`${group}/type`), /^DMA(-FQ)?$/, `${c.name}'s DMA is translated`);
  }
});

t.test('with --iommu O_DIRECT I/O from host memory round-trips through the IOMMU', guest.skip ? guest : { skip: !iommu && 'not the vIOMMU lane' }, async (t) => {
  const [c] = nvmeControllers();
  const length = 1 << 20;
  const buf = alignedBuffer(length);
  for (let i = 0; i < length; i++) buf[i] = (i * 13 + (i >> 12)) & 0xff;
  const expected = Buffer.from(buf);
  const fd = fs.openSync(c.namespace, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  try {
    t.equal(fs.writeSync(fd, buf, 0, length, 8 << 20), length);
    buf.fill(0);
    t.equal(fs.readSync(fd, buf, 0, length, 8 << 20), length);
    t.ok(buf.equals(expected), 'bytes match');
  } finally {
    fs.closeSync(fd);
  }
});

t.test('without --iommu no IOMMU translates', guest.skip ? guest : { skip: iommu && 'the vIOMMU lane' }, async (t) => {
  t.same(iommuUnits(), [], 'no IOMMU unit');
  for (const c of nvmeControllers()) t.notOk(fs.existsSync(`/sys/bus/pci/devices/${c.bdf}/iommu_group`), `${c.name} has no IOMMU group`);
});
