/**
 * A fake sysfs tree for the host tests of lib/pci/pci.ts and lib/pci/p2pmem.ts:
 * only the files those modules read, laid out as the kernel does
 * (/sys/devices/pciDDDD:BB/<bridge>/.../<bdf>, /sys/bus/pci/devices/<bdf>
 * symlinks). The real thing is tested in the guest.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { TEST_PREFIX } from './helpers';

export interface FakeDevice {
  /** Path below /sys/devices, e.g. 'pci0000:00/0000:00:01.0/0000:01:00.0'. */
  at: string;
  vendor?: number;
  device?: number;
  class?: number;
  driver?: string;
  numaNode?: number;
  /** `resource` lines (start, end, flags). */
  resource?: [bigint, bigint, bigint][];
  p2pmem?: { size: number; available: number; published: boolean; allocate?: boolean };
  /** ACS control word; gives the device an ACS extended capability at 0x100. */
  acsCtrl?: number;
  /** /sys/class/nvme/<name> pointing at this device. */
  nvme?: { name: string; cmbsz?: number; cmbloc?: number };
}

const hex = (n: number, w: number) => `0x${n.toString(16).padStart(w, '0')}`;

/** A 4 KiB config space with an ACS extended capability (id 0x000d) at 0x100. */
function configSpace(acsCtrl: number | undefined): Buffer {
  const b = Buffer.alloc(4096);
  if (acsCtrl !== undefined) {
    b.writeUInt32LE(0x000d | (1 << 16) | (0 << 20), 0x100); // id, version 1, no next
    b.writeUInt16LE(0x5f, 0x104); // capabilities
    b.writeUInt16LE(acsCtrl, 0x106);
  }
  return b;
}

/** Builds the tree in a new temp dir and returns its root (use as `{ sysfs: root }`). */
export function fakeSysfs(devices: FakeDevice[], cpuinfo = 'vendor_id\t: GenuineIntel\ncpu family\t: 6\n'): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `${TEST_PREFIX}-sysfs-`));
  const bus = path.join(root, 'bus', 'pci', 'devices');
  fs.mkdirSync(bus, { recursive: true });
  for (const d of devices) {
    const dir = path.join(root, 'devices', d.at);
    const bdf = path.basename(d.at);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'vendor'), `${hex(d.vendor ?? 0x1b36, 4)}\n`);
    fs.writeFileSync(path.join(dir, 'device'), `${hex(d.device ?? 0x0010, 4)}\n`);
    fs.writeFileSync(path.join(dir, 'class'), `${hex(d.class ?? 0x010802, 6)}\n`);
    fs.writeFileSync(path.join(dir, 'numa_node'), `${d.numaNode ?? -1}\n`);
    fs.writeFileSync(path.join(dir, 'config'), configSpace(d.acsCtrl));
    const lines = Array.from({ length: 13 }, (_, i) => {
      const r = d.resource?.[i];
      return r ? r.map((x) => `0x${x.toString(16).padStart(16, '0')}`).join(' ') : '0x0000000000000000 0x0000000000000000 0x0000000000000000';
    });
    fs.writeFileSync(path.join(dir, 'resource'), `${lines.join('\n')}\n`);
    if (d.driver !== undefined) {
      const drv = path.join(root, 'bus', 'pci', 'drivers', d.driver);
      fs.mkdirSync(drv, { recursive: true });
      fs.symlinkSync(drv, path.join(dir, 'driver'));
    }
    if (d.p2pmem) {
      const p = path.join(dir, 'p2pmem');
      fs.mkdirSync(p);
      fs.writeFileSync(path.join(p, 'size'), `${d.p2pmem.size}\n`);
      fs.writeFileSync(path.join(p, 'available'), `${d.p2pmem.available}\n`);
      fs.writeFileSync(path.join(p, 'published'), d.p2pmem.published ? '1\n' : '0\n');
      if (d.p2pmem.allocate !== false) fs.writeFileSync(path.join(p, 'allocate'), '');
    }
    if (d.nvme) {
      const c = path.join(dir, 'nvme', d.nvme.name);
      fs.mkdirSync(c, { recursive: true });
      if (d.nvme.cmbsz !== undefined) fs.writeFileSync(path.join(c, 'cmbsz'), `${d.nvme.cmbsz}\n`);
      if (d.nvme.cmbloc !== undefined) fs.writeFileSync(path.join(c, 'cmbloc'), `${d.nvme.cmbloc}\n`);
      fs.mkdirSync(path.join(root, 'class', 'nvme'), { recursive: true });
      fs.symlinkSync(c, path.join(root, 'class', 'nvme', d.nvme.name));
    }
    fs.symlinkSync(path.relative(bus, dir), path.join(bus, bdf));
  }
  fs.writeFileSync(path.join(root, 'cpuinfo'), cpuinfo);
  return root;
}

/** The guest's switch topology: two NVMe behind one switch, ivshmem on the root bus. */
export const SWITCH: FakeDevice[] = [
  { at: 'pci0000:00/0000:00:00.0', vendor: 0x8086, device: 0x29c0, class: 0x060000 },
  { at: 'pci0000:00/0000:00:02.0', vendor: 0x1b36, device: 0x000c, class: 0x060400, driver: 'pcieport' },
  { at: 'pci0000:00/0000:00:02.0/0000:01:00.0', vendor: 0x104c, device: 0x8232, class: 0x060400, driver: 'pcieport' },
  { at: 'pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:00.0', vendor: 0x104c, device: 0x8233, class: 0x060400, driver: 'pcieport' },
  { at: 'pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:01.0', vendor: 0x104c, device: 0x8233, class: 0x060400, driver: 'pcieport' },
  {
    at: 'pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:00.0/0000:03:00.0',
    driver: 'nvme',
    numaNode: 0,
    resource: [
      [0xfe800000n, 0xfe803fffn, 0x140204n],
      [0n, 0n, 0n],
      [0xf4000000n, 0xf7ffffffn, 0x14220cn],
    ],
    p2pmem: { size: 67108864, available: 67108864, published: true },
    nvme: { name: 'nvme0', cmbsz: 0x4001f, cmbloc: 2 },
  },
  {
    at: 'pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:01.0/0000:04:00.0',
    driver: 'nvme',
    p2pmem: { size: 67108864, available: 65011712, published: true },
    nvme: { name: 'nvme1', cmbsz: 0x4001f, cmbloc: 2 },
  },
  { at: 'pci0000:00/0000:00:05.0', vendor: 0x1af4, device: 0x1110, class: 0x050000, resource: [[0xfea00000n, 0xfea000ffn, 0x40200n]] },
];

/** Both NVMe on the root bus (the host-bridge and none topologies). */
export const ROOT: FakeDevice[] = [
  { at: 'pci0000:00/0000:00:00.0', vendor: 0x8086, device: 0x29c0, class: 0x060000 },
  { at: 'pci0000:00/0000:00:03.0', driver: 'nvme', p2pmem: { size: 67108864, available: 67108864, published: true } },
  { at: 'pci0000:00/0000:00:04.0', driver: 'nvme', p2pmem: { size: 67108864, available: 67108864, published: false } },
];

export const AMD_ZEN = 'vendor_id\t: AuthenticAMD\ncpu family\t: 23\n';
export const AMD_K8 = 'vendor_id\t: AuthenticAMD\ncpu family\t: 15\n';

/** A DRM node of a fake tree: `/dev/dri/<name>` and its sysfs class entry. */
export interface FakeDrmNode {
  /** `'card0'`, `'renderD128'` */
  name: string;
  /** The device, below /sys/devices: `'faux/vgem'`, `'platform/vgem'`, `'pci0000:00/0000:00:02.0'`. */
  device: string;
  /** Its bus (the `subsystem` link): `'faux'`, `'platform'`, `'pci'`. */
  bus?: string;
  /** The bound driver (the `driver` link), if any. */
  driver?: string;
  /**
   * The PCI function's config-space files (vendor, device, subsystem_vendor,
   * subsystem_device, revision), written in the device directory when it is
   * named by a PCI address, else in its parent (virtio-gpu's virtio device
   * sits below its PCI function), whose `subsystem` then links to bus/pci.
   */
  pci?: { vendor: number; device: number; subvendor: number; subdevice: number; revision: number };
}

/**
 * A fake /dev/dri plus /sys/class/drm and /sys/devices, laid out as the
 * kernel does (/sys/class/drm/<node> -> ../../devices/<device>/drm/<node>,
 * whose `device` link points back at the device). The /dev/dri entries are
 * regular files: DRM_IOCTL_VERSION cannot answer for them. Returns the root
 * (use `${root}/dev` and `${root}/sys`).
 */
export function fakeDrm(nodes: FakeDrmNode[], root = fs.mkdtempSync(path.join(os.tmpdir(), `${TEST_PREFIX}-drm-`))): string {
  const sys = path.join(root, 'sys');
  fs.mkdirSync(path.join(root, 'dev', 'dri'), { recursive: true });
  fs.mkdirSync(path.join(sys, 'class', 'drm'), { recursive: true });
  for (const n of nodes) {
    fs.writeFileSync(path.join(root, 'dev', 'dri', n.name), '');
    const dev = path.join(sys, 'devices', n.device);
    const cls = path.join(dev, 'drm', n.name);
    fs.mkdirSync(cls, { recursive: true });
    fs.symlinkSync(`../../../${path.basename(dev)}`, path.join(cls, 'device'));
    fs.symlinkSync(path.relative(path.join(sys, 'class', 'drm'), cls), path.join(sys, 'class', 'drm', n.name));
    if (n.bus !== undefined && !fs.existsSync(path.join(dev, 'subsystem'))) {
      fs.mkdirSync(path.join(sys, 'bus', n.bus), { recursive: true });
      fs.symlinkSync(path.relative(dev, path.join(sys, 'bus', n.bus)), path.join(dev, 'subsystem'));
    }
    if (n.driver !== undefined && !fs.existsSync(path.join(dev, 'driver'))) {
      const drv = path.join(sys, 'bus', n.bus ?? 'platform', 'drivers', n.driver);
      fs.mkdirSync(drv, { recursive: true });
      fs.symlinkSync(path.relative(dev, drv), path.join(dev, 'driver'));
    }
    if (n.pci !== undefined) {
      const fn = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(path.basename(dev)) ? dev : path.dirname(dev);
      const files = { vendor: n.pci.vendor, device: n.pci.device, subsystem_vendor: n.pci.subvendor, subsystem_device: n.pci.subdevice };
      for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(fn, f), `${hex(v, 4)}\n`);
      fs.writeFileSync(path.join(fn, 'revision'), `${hex(n.pci.revision, 2)}\n`);
      if (!fs.existsSync(path.join(fn, 'subsystem'))) {
        fs.mkdirSync(path.join(sys, 'bus', 'pci'), { recursive: true });
        fs.symlinkSync(path.relative(fn, path.join(sys, 'bus', 'pci')), path.join(fn, 'subsystem'));
      }
    }
  }
  return root;
}

/** vgem up to 6.14: a platform device named vgem, no driver bound. */
export const VGEM_PLATFORM: FakeDrmNode[] = [
  { name: 'card0', device: 'platform/vgem', bus: 'platform' },
  { name: 'renderD128', device: 'platform/vgem', bus: 'platform' },
];

/** vgem since 6.15 (7.3 checked): a faux device, bound to faux_driver. */
export const VGEM_FAUX: FakeDrmNode[] = [
  { name: 'card0', device: 'faux/vgem', bus: 'faux', driver: 'faux_driver' },
  { name: 'renderD128', device: 'faux/vgem', bus: 'faux', driver: 'faux_driver' },
];
