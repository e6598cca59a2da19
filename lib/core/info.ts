/**
 * machineInfo(): what `p2pdma info` reports. capabilities() (heaps, udmabuf,
 * DRM, p2pmem, RDMA devices, libibverbs) plus what a user of P2P asks next:
 * whether the kernel carries this project's p2p_map series, which device can
 * DMA into which provider's memory and why (the P2P matrix), RDMA port state
 * and GID types, librdmacm, io_uring and the IOMMU. Read-only probing of
 * /proc, /sys and /dev; every missing piece says why.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { capabilities, list, readText, type Capabilities, type Capability } from './capabilities';
import { invalidArgType, invalidArgValue, validateObject } from './errors';
import { native } from './native';
import { topologyAmong, type MapType } from '../pci/p2pmem';
import { Pci, type PciDevice } from '../pci/pci';
import { ports as rdmaPorts } from '../rdma';

/** The kernel-patches/ series' entry points (v2, mm/vma_p2p.c), as /proc/kallsyms names them. */
export const SERIES_SYMBOLS = ['vma_p2p_map', 'vma_p2p_remap', 'vma_p2p_unmap'] as const;
/** kernel-patches/v3's entry point (mm/memory.c): the dma-buf behind a mapping. */
export const V3_SERIES_SYMBOLS = ['vma_p2p_dma_buf'] as const;
const ALL_SERIES_SYMBOLS = [...SERIES_SYMBOLS, ...V3_SERIES_SYMBOLS];

export interface SeriesInfo {
  /** Whether the running kernel has the series; undefined when it cannot be told. */
  present: boolean | undefined;
  /** The series' symbols the kernel has. */
  symbols: string[];
  /** How it was decided, or why it could not be. */
  reason: string;
}

export type P2pClientKind = 'nvme' | 'network' | 'gpu' | 'p2pmem';

export interface P2pMatrixEntry {
  /** The p2pmem provider. */
  provider: string;
  /** A DMA-capable PCI device. */
  client: string;
  clientKind: P2pClientKind;
  /** The map type estimated from sysfs (P2pMem.topology). */
  mapType: MapType;
  /** The kernel's own answer where the patched kernel offers one (/dev/vma_p2p). */
  kernel: MapType | undefined;
  reason: string;
}

export interface RdmaPortState {
  port: number;
  /** `'4: ACTIVE'` */
  state: string | undefined;
  /** `'Ethernet'` (RoCE) or `'InfiniBand'` */
  linkLayer: string | undefined;
  /** Distinct types of the port's valid GIDs (`'RoCE v2'`, `'IB/RoCE v1'`). */
  gidTypes: string[];
}

export interface RdmaDeviceState {
  name: string;
  /** The PCI function behind it, or for a software device its network interface (`parent`). */
  pci: string | undefined;
  netdev: string | undefined;
  ports: RdmaPortState[];
}

export interface IoUringInfo extends Capability {
  /** /proc/sys/kernel/io_uring_disabled: 0 all, 1 only io_uring_group, 2 nobody. */
  disabled: number | undefined;
}

export interface IommuInfo {
  /** IOMMU units (`dmar0`, `amd_iommu_0`); empty without one. */
  units: string[];
  /** Each p2pmem provider and P2P client: its IOMMU group's domain type (`DMA`, `identity`), or undefined without a group. */
  devices: { bdf: string; group: string | undefined; type: string | undefined }[];
}

export interface MachineInfo extends Capabilities {
  series: SeriesInfo;
  p2pMatrix: P2pMatrixEntry[];
  rdmaDevices: RdmaDeviceState[];
  librdmacm: Capability & { path?: string };
  ioUring: IoUringInfo;
  iommu: IommuInfo;
}

export interface MachineInfoOptions {
  /** Default `'/sys'`. */
  sysDir?: string;
  /** Default `'/dev'`. */
  devDir?: string;
  /** Default `'/proc'`. */
  procDir?: string;
  /** Default `<procDir>/cpuinfo`. */
  cpuinfo?: string;
  /** The patched kernel's test importer for the kernel's own map type; `null` skips it. Default `/dev/vma_p2p`. */
  vmaP2p?: string | null;
  /** Default `'libibverbs.so.1'`. */
  libibverbs?: string;
  /** Default `'librdmacm.so.1'`. */
  librdmacm?: string;
}

const namesIn = (dir: string) => list(dir).names;

/** A /proc/kallsyms line ("ADDRESS TYPE NAME[\t[MODULE]]") naming one of either series' symbols. */
const SERIES_LINE = new RegExp(`^\\S+ \\S (${ALL_SERIES_SYMBOLS.join('|')})(?:\\s|$)`, 'gm');

function series(proc: string): SeriesInfo {
  const file = path.join(proc, 'kallsyms');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    return { present: undefined, symbols: [], reason: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}` };
  }
  if (text.length === 0) return { present: undefined, symbols: [], reason: `${file} is empty (kernel without CONFIG_KALLSYMS)` };
  // One regex pass: splitting the host's 200k lines took most of the call.
  const names = new Set([...text.matchAll(SERIES_LINE)].map((m) => m[1]));
  const symbols = ALL_SERIES_SYMBOLS.filter((s) => names.has(s));
  if (symbols.length === 0) {
    return { present: false, symbols, reason: `no ${ALL_SERIES_SYMBOLS.join('/')} in ${file}: a kernel without kernel-patches/ (build one with 'p2pdma kernel build patched')` };
  }
  const v3 = symbols.every((s) => (V3_SERIES_SYMBOLS as readonly string[]).includes(s));
  return { present: true, symbols, reason: `${symbols.join(', ')} in ${file}${v3 ? ' (kernel-patches/v3)' : ''}` };
}

/** What a PCI device is to the matrix, by class code; undefined for devices that are not P2P clients here. */
function clientKind(d: PciDevice): P2pClientKind | undefined {
  if (d.p2pmem) return 'p2pmem';
  const base = d.classCode >> 16;
  if (d.classCode >> 8 === 0x0108) return 'nvme';
  if (base === 0x02) return 'network';
  if (base === 0x03) return 'gpu';
  return undefined;
}

function matrix(devices: PciDevice[], o: Required<Pick<MachineInfoOptions, 'sysDir' | 'cpuinfo'>> & { vmaP2p: string | null }): P2pMatrixEntry[] {
  const providers = devices.filter((d) => d.p2pmem);
  const clients = devices.flatMap((d) => {
    const kind = clientKind(d);
    return kind ? [{ d, kind }] : [];
  });
  const entries: P2pMatrixEntry[] = [];
  for (const p of providers) {
    for (const { d, kind } of clients) {
      if (d.bdf === p.bdf) continue;
      const topo = topologyAmong(devices, p, d, { sysfs: o.sysDir, cpuinfo: o.cpuinfo, vmaP2p: o.vmaP2p });
      entries.push({ provider: p.bdf, client: d.bdf, clientKind: kind, mapType: topo.mapType, kernel: topo.kernel, reason: topo.reason });
    }
  }
  return entries;
}

function rdmaDevices(sys: string): RdmaDeviceState[] {
  const dir = path.join(sys, 'class', 'infiniband');
  return namesIn(dir).map((name) => {
    const dev = path.join(dir, name);
    let pci: string | undefined;
    try {
      const target = path.basename(fs.realpathSync(path.join(dev, 'device')));
      if (/^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(target)) pci = target;
    } catch {
      // a software device (rxe, siw) has no device link
    }
    const ports = rdmaPorts(name, sys).map(({ port, stateText, linkLayer, gids }) => ({
      port,
      // sysfs' own words ('4: ACTIVE'), as `rdma link` and ibv_devinfo print them: ports() read them.
      state: stateText,
      linkLayer: linkLayer === 'unknown' ? undefined : linkLayer,
      gidTypes: [...new Set(gids.flatMap((g) => (g.type ? [g.type] : [])))].sort(),
    }));
    return { name, pci, netdev: readText(path.join(dev, 'parent')), ports };
  });
}

function ioUring(proc: string): IoUringInfo {
  const file = path.join(proc, 'sys', 'kernel', 'io_uring_disabled');
  const text = readText(file);
  if (text === undefined) {
    return { available: false, disabled: undefined, reason: `no ${file}: a kernel before 6.6 or without CONFIG_IO_URING (cannot tell which from here)` };
  }
  const disabled = Number(text);
  if (disabled === 0) return { available: true, disabled };
  if (disabled === 1) return { available: false, disabled, reason: `${file} is 1: only members of kernel.io_uring_group may create rings` };
  return { available: false, disabled, reason: `${file} is ${text}: io_uring is disabled for everyone (sysctl kernel.io_uring_disabled=0 enables it)` };
}

function iommu(sys: string, bdfs: string[]): IommuInfo {
  return {
    units: namesIn(path.join(sys, 'class', 'iommu')),
    devices: bdfs.map((bdf) => {
      const link = path.join(sys, 'bus', 'pci', 'devices', bdf, 'iommu_group');
      let group: string | undefined;
      try {
        group = path.basename(fs.realpathSync(link));
      } catch {
        return { bdf, group: undefined, type: undefined };
      }
      return { bdf, group, type: readText(path.join(link, 'type')) };
    }),
  };
}

/** Probes this machine for `p2pdma info`. Never throws for a missing feature. */
export function machineInfo(options: MachineInfoOptions = {}): MachineInfo {
  validateObject(options, 'options', machineInfo);
  const {
    sysDir = '/sys', devDir = '/dev', procDir = '/proc', libibverbs = 'libibverbs.so.1', librdmacm = 'librdmacm.so.1',
  } = options;
  const cpuinfo = options.cpuinfo ?? path.join(procDir, 'cpuinfo');
  const vmaP2p = options.vmaP2p === undefined ? path.join(devDir, 'vma_p2p') : options.vmaP2p;
  for (const [name, v] of [['procDir', procDir], ['cpuinfo', cpuinfo], ['librdmacm', librdmacm]] as const) {
    if (typeof v !== 'string') throw invalidArgType(`options.${name}`, 'of type string', v, machineInfo);
    // A NUL would cut the name short in the C string dlopen() or open() gets.
    if (v.includes('\0')) throw invalidArgValue(`options.${name}`, v, 'must not contain null bytes', machineInfo);
  }
  if (vmaP2p !== null && typeof vmaP2p !== 'string') throw invalidArgType('options.vmaP2p', 'of type string or null', vmaP2p, machineInfo);
  const caps = capabilities({ sysDir, devDir, libibverbs });
  let devices: PciDevice[] = [];
  try {
    devices = Pci.devices({ sysfs: sysDir });
  } catch {
    // no PCI bus in sysfs: the matrix is empty and p2pmem says why
  }
  const rdmacm = native.dlprobe(librdmacm);
  const p2pMatrix = matrix(devices, { sysDir, cpuinfo, vmaP2p });
  const involved = [...new Set(p2pMatrix.flatMap((e) => [e.provider, e.client]))].sort();
  return {
    ...caps,
    series: series(procDir),
    p2pMatrix,
    rdmaDevices: rdmaDevices(sysDir),
    librdmacm: rdmacm.ok
      ? { available: true, ...(rdmacm.path !== undefined ? { path: rdmacm.path } : {}) }
      : { available: false, reason: `dlopen(${librdmacm}) failed: ${rdmacm.error} (install librdmacm1 from rdma-core)` },
    ioUring: ioUring(procDir),
    iommu: iommu(sysDir, involved),
  };
}

const MiB = 1 << 20;
const yesNo = (c: Capability, detail: string) => (c.available ? `yes${detail ? `: ${detail}` : ''}` : `no: ${c.reason}`);

/** `p2pdma info` without --json. */
export function formatMachineInfo(info: MachineInfo): string {
  const rows: [string, string][] = [
    ['kernel', `${info.kernel}; p2p_map series: ${info.series.present === undefined ? 'unknown' : info.series.present ? 'present' : 'absent'} (${info.series.reason})`],
    ['dma-heaps', yesNo(info.dmaHeaps, info.dmaHeaps.heaps.join(', '))],
    ['udmabuf', yesNo(info.udmabuf, info.udmabuf.path)],
    ['DRM', yesNo(info.drm, info.drm.nodes.map((n) => `${n.name} (${n.driver ?? 'driver unknown'}${n.accessible ? '' : ', no access'})`).join(', '))],
    ['p2pmem', yesNo(info.p2pmem, info.p2pmem.providers.map((p) =>
      `${p.bdf} ${p.size / MiB} MiB, ${(p.available / MiB).toFixed(1)} MiB free${p.published ? ', published' : ', not published'}`).join('; '))],
    ['RDMA', yesNo(info.rdma, info.rdmaDevices.map((d) =>
      `${d.name} (${d.pci ?? `software, on ${d.netdev ?? '?'}`}) ${d.ports.map((p) => `port ${p.port} ${p.state ?? '?'} ${p.linkLayer ?? ''} ${p.gidTypes.join('/')}`.trim()).join(', ')}`).join('; '))],
    ['libibverbs', yesNo(info.libibverbs, info.libibverbs.path ?? '')],
    ['librdmacm', yesNo(info.librdmacm, info.librdmacm.path ?? '')],
    ['io_uring', yesNo(info.ioUring, '')],
    ['IOMMU', info.iommu.units.length === 0 ? 'none' : `${info.iommu.units.join(', ')}; ${info.iommu.devices.map((d) => `${d.bdf} ${d.type ?? 'no group'}`).join(', ')}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  let out = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}\n`).join('');
  out += '\nP2P matrix (provider <- client: map type):\n';
  if (info.p2pMatrix.length === 0) out += '  none: no p2pmem provider with a DMA-capable PCI peer\n';
  for (const e of info.p2pMatrix) {
    const kernel = e.kernel === undefined ? '' : e.kernel === e.mapType ? ' (kernel agrees)' : ` (kernel says ${e.kernel})`;
    out += `  ${e.provider} <- ${e.client} ${e.clientKind}: ${e.mapType}${kernel}\n    ${e.reason}\n`;
  }
  const software = info.rdmaDevices.filter((d) => d.pci === undefined);
  if (software.length > 0) {
    const mr = info.series.present ? 'this kernel has the p2p_map series, so an MR on p2p memory works' : 'an MR on p2p memory needs the p2p_map series';
    out += `  ${software.map((d) => d.name).join(', ')}: software RDMA (copies with the CPU, no PCI map type); ${mr}\n`;
  }
  return out;
}
