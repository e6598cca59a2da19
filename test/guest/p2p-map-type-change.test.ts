// Releasing a p2p attachment must undo what mapping did, even when the
// answer to "how does this importer reach that memory" has changed since
// (kernel series v2; v1's defect 2). Here the answer changes under a live
// mapping: ivshmem and a pci-testdev sit behind one PCIe root port, and
// the port's ACS redirect bits decide between peer-to-peer bus addresses
// (clear) and a DMA mapping through the host bridge (set), as ACS turned
// on for a hot-added bridge would. v1 recomputed the map type when
// unmapping: a range mapped with bus addresses was dma_unmap_resource()d,
// which behind the vIOMMU unmaps an IOVA never mapped (the IOMMU code
// WARNs; the harness fails on it), and a range mapped through the IOMMU
// was left mapped (a leaked IOVA). The same pair also gives the test
// module an IOVA, through which it must refuse to emulate DMA (defect 4).
// Runs in the acs-pair lane of make test: a host bridge P2PDMA allows
// (--topology host-bridge), --iommu, --acs-pair.
import t from 'tap';
import * as fs from 'node:fs';
import { P2pMem, Pci } from '../../lib';
import { acsControlOffset, PCI_ACS_CR, PCI_ACS_REDIRECT as REDIRECT, PCI_ACS_RR } from '../../lib/pci/pci';
import { inGuest, ivshmemBdf, ivshmemNode, kernel, kernelSeries } from './helpers';
import { mapIvshmemP2p } from './ivshmem-p2p';
import { VmaP2pImporter } from './vma-p2p-dev';

const PAGE = 4096;
const PAGES = 4;

const lane = process.env.P2PDMA_ACS_PAIR === '1';
const skip = !inGuest
  ? 'runs only in the p2pdma guest'
  : kernel === 'baseline'
    ? 'the baseline kernel has no p2p_map'
    : kernelSeries === 'v3'
      // v2's own importer (the test module) and exporter (ivshmem_p2p); v3's
      // exporters unmap with dma_buf_free_sgt(), which undoes the mapping the
      // sg_table records, not a map type computed again.
      ? 'kernel-patches/v2 (6.12) only; v3 unmaps what its sg_table recorded (dma_buf_free_sgt)'
      : !lane
      ? 'needs ivshmem behind an ACS-capable root port (vm run --acs-pair: the acs-pair lane of make test)'
      : false;

/** The ACS control register of a port, through its sysfs config file. */
class AcsControl {
  private readonly offset: number;

  constructor(private readonly file: string) {
    const offset = acsControlOffset(fs.readFileSync(file));
    if (offset === undefined) throw new Error(`${file}: no ACS capability`);
    this.offset = offset;
  }

  read(): number {
    const fd = fs.openSync(this.file, 'r');
    try {
      const b = Buffer.alloc(2);
      fs.readSync(fd, b, 0, 2, this.offset);
      return b.readUInt16LE(0);
    } finally {
      fs.closeSync(fd);
    }
  }

  write(value: number): void {
    const fd = fs.openSync(this.file, 'r+');
    try {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(value, 0);
      fs.writeSync(fd, b, 0, 2, this.offset);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** pci_p2pdma_map_type_dev() as the kernel answers now (through /dev/vma_p2p). */
const mapType = (provider: string, importer: string) => P2pMem.topology(provider, importer).kernel;

t.test('an attachment is released as it was mapped after the map type changed', { skip }, async (t) => {
  const provider = ivshmemBdf();
  if (!t.ok(provider, 'ivshmem-plain present') || !provider) return;
  const node = ivshmemNode(provider);
  if (!t.ok(node, 'ivshmem_p2p bound') || !node) return;
  const port = Pci.device(provider).upstream[0];
  const importer = Pci.devices().find((d) => d.upstream[0] === port && d.vendorId === 0x1b36 && d.deviceId === 0x0005)?.bdf;
  if (!t.ok(importer, `a pci-testdev beside ${provider} behind ${port}`) || !importer) return;

  const acs = new AcsControl(`${Pci.device(port).sysfsPath}/config`);
  const saved = acs.read();
  t.teardown(() => acs.write(saved));
  const dev = new VmaP2pImporter(t, importer);
  const bar = mapIvshmemP2p(t, node, PAGES * PAGE);
  const busAddr = bar.info().busAddr;

  await t.test('mapped with bus addresses, released after ACS redirect was turned on', async (t) => {
    acs.write(saved & ~REDIRECT);
    t.equal(mapType(provider, importer), 'BUS_ADDR', 'ACS redirect off: peer-to-peer below the port');
    const pa = dev.map(bar.map, PAGES);
    t.same(pa, Array.from({ length: PAGES }, (_, i) => busAddr + BigInt(i * PAGE)), 'the BAR\'s bus addresses');
    t.equal(bar.info().activeMaps, 1, 'one attachment');
    acs.write(saved | PCI_ACS_RR | PCI_ACS_CR);
    t.equal(mapType(provider, importer), 'THRU_HOST_BRIDGE', 'ACS redirect on: through the host bridge now');
    dev.unmap();
    t.equal(bar.info().activeMaps, 0, 'released; nothing was DMA-unmapped (the kernel would WARN)');
  });

  await t.test('mapped through the IOMMU, released after ACS redirect was turned off', async (t) => {
    acs.write(saved | PCI_ACS_RR | PCI_ACS_CR);
    t.equal(mapType(provider, importer), 'THRU_HOST_BRIDGE', 'ACS redirect on');
    const pa = dev.map(bar.map, PAGES);
    t.not(pa[0], busAddr, 'an IOVA, not the bus address');
    t.same(pa, Array.from({ length: PAGES }, (_, i) => pa[0] + BigInt(i * PAGE)), 'one contiguous DMA mapping');
    acs.write(saved & ~REDIRECT);
    t.equal(mapType(provider, importer), 'BUS_ADDR', 'ACS redirect off: bus addresses now');
    dev.unmap();
    t.equal(bar.info().activeMaps, 0, 'released');
  });

  // v1's defect 4: its test module ioremap()ed whatever address it got, an
  // IOVA here, and "emulated" the device's DMA on unrelated memory.
  await t.test('the test module does not emulate DMA through an IOVA', async (t) => {
    acs.write(saved | PCI_ACS_RR | PCI_ACS_CR);
    const pa = dev.map(bar.map, PAGES);
    t.not(pa[0], busAddr, 'mapped through the IOMMU');
    t.throws(() => dev.read(bar.map, 1), { code: 'EOPNOTSUPP', syscall: 'ioctl' }, 'refused: the CPU cannot use the importer\'s IOVAs');
    dev.unmap();
  });
});
