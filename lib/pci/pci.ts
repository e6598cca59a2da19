/**
 * PCI devices as sysfs describes them (`/sys/bus/pci/devices/<bdf>`): ids,
 * class, driver, NUMA node, BARs, the chain of upstream bridges, and the
 * p2pmem pool a device publishes (NVMe CMBs). Read fresh on every call:
 * devices come and go (hotplug), and p2pmem `available` changes with every
 * allocation.
 *
 * Everything here is plain file reading; `options.sysfs` points it at
 * another tree (the host tests use a fake one).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { type CodedError, invalidArgType, invalidArgValue, validateObject } from '../core/errors';

/** One BAR (`resource` lines 0-5) with a non-empty range. */
export interface PciBar {
  /** BAR number, 0-5. */
  index: number;
  /** CPU physical address range, inclusive (as in `resource`). */
  start: bigint;
  end: bigint;
  size: bigint;
  type: 'mem' | 'io';
  prefetchable: boolean;
  /** A 64-bit memory BAR. */
  is64: boolean;
}

/** A device's peer-to-peer memory pool (`p2pmem/`: size, available, published). */
export interface P2pmemInfo {
  /** Bytes the device registered. */
  size: number;
  /** Bytes not allocated now. */
  available: number;
  /** Whether the driver offers the memory to others (`published` = 1). */
  published: boolean;
  /** `/sys/bus/pci/devices/<bdf>/p2pmem/allocate`, the file to mmap (Linux 6.2+); undefined when the kernel lacks it. */
  allocate: string | undefined;
}

export interface PciDevice {
  /** Domain:bus:device.function, `0000:03:00.0`. */
  bdf: string;
  domain: number;
  bus: number;
  /** Device (slot) number. */
  slot: number;
  function: number;
  vendorId: number;
  deviceId: number;
  subsystemVendorId: number | undefined;
  subsystemDeviceId: number | undefined;
  /** 24-bit class code: base class, subclass, programming interface (`0x010802`: NVMe). */
  classCode: number;
  revision: number | undefined;
  /** The bound driver's name, or undefined. */
  driver: string | undefined;
  /** NUMA node, -1 when the platform does not say. */
  numaNode: number;
  bars: PciBar[];
  /**
   * The bridges above this device, nearest first, up to the one on the root
   * bus (what `pci_upstream_bridge()` walks). Empty for a device on a root bus.
   */
  upstream: string[];
  /** The root bus (`pci0000:00`): devices under the same one share a host bridge. */
  rootBus: string;
  /** The device's directory in sysfs, symlinks resolved. */
  sysfsPath: string;
  /** Present when the device registered p2pmem. */
  p2pmem: P2pmemInfo | undefined;
}

export interface PciOptions {
  /** The sysfs mount. Default `/sys`. */
  sysfs?: string;
}

const BDF = /^([0-9a-f]{4,8}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/;
const SHORT_BDF = /^([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/;

// include/linux/ioport.h
const IORESOURCE_IO = 0x100n;
const IORESOURCE_MEM = 0x200n;
const IORESOURCE_PREFETCH = 0x2000n;
const IORESOURCE_MEM_64 = 0x100000n;

function notFound(bdf: string, file: string, caller: Function): CodedError {
  const e = new Error(`No PCI device ${bdf} (${file} does not exist)`) as CodedError;
  e.code = 'ERR_P2PDMA_NO_PCI_DEVICE';
  Error.captureStackTrace(e, caller);
  return e;
}

/**
 * `'0000:03:00.0'` or `'03:00.0'` (domain 0) -> the canonical lower-case
 * form; throws ERR_INVALID_ARG_VALUE for anything else.
 */
export function normalizeBdf(bdf: unknown, caller: Function = normalizeBdf): string {
  if (typeof bdf !== 'string') throw invalidArgType('bdf', 'of type string', bdf, caller);
  const s = bdf.toLowerCase();
  if (BDF.test(s)) return s;
  if (SHORT_BDF.test(s)) return `0000:${s}`;
  throw invalidArgValue('bdf', bdf, "must be a PCI address like '0000:03:00.0'", caller);
}

function sysfsRoot(options: unknown, caller: Function): string {
  validateObject(options, 'options', caller);
  const { sysfs = '/sys' } = options as PciOptions;
  if (typeof sysfs !== 'string') throw invalidArgType('options.sysfs', 'of type string', sysfs, caller);
  return sysfs;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function readHex(file: string): number | undefined {
  const s = readText(file);
  if (s === undefined || !/^0x[0-9a-f]+$/i.test(s)) return undefined;
  return parseInt(s, 16);
}

function readInt(file: string): number | undefined {
  const s = readText(file);
  return s !== undefined && /^-?\d+$/.test(s) ? Number(s) : undefined;
}

function parseBars(text: string | undefined): PciBar[] {
  if (text === undefined) return [];
  const bars: PciBar[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < Math.min(6, lines.length); index++) {
    const f = lines[index].trim().split(/\s+/);
    if (f.length < 3) continue;
    const [start, end, flags] = f.map((x) => BigInt(x));
    if (end === 0n && start === 0n) continue;
    const isMem = (flags & IORESOURCE_MEM) !== 0n;
    if (!isMem && (flags & IORESOURCE_IO) === 0n) continue;
    bars.push({
      index,
      start,
      end,
      size: end - start + 1n,
      type: isMem ? 'mem' : 'io',
      prefetchable: (flags & IORESOURCE_PREFETCH) !== 0n,
      is64: (flags & IORESOURCE_MEM_64) !== 0n,
    });
  }
  return bars;
}

// include/uapi/linux/pci_regs.h: the ACS extended capability.
const PCI_EXT_CAP_ID_ACS = 0x0d;
const PCI_ACS_CTRL = 6;
export const PCI_ACS_RR = 0x04;
export const PCI_ACS_CR = 0x08;
export const PCI_ACS_EC = 0x20;
/** The ACS control bits that send peer-to-peer requests upstream. */
export const PCI_ACS_REDIRECT = PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC;

/**
 * Offset of the ACS control register in a device's config space (its sysfs
 * `config` file, which only root reads past 64 bytes), or undefined when the
 * device has no ACS capability.
 */
export function acsControlOffset(config: Buffer): number | undefined {
  // Extended capabilities: a list from 0x100, each header id:16 ver:4 next:12.
  let pos = 0x100;
  for (let guard = 0; pos >= 0x100 && pos + 8 <= config.length && guard < 64; guard++) {
    const h = config.readUInt32LE(pos);
    if (h === 0 || h === 0xffffffff) return undefined;
    if ((h & 0xffff) === PCI_EXT_CAP_ID_ACS) return pos + PCI_ACS_CTRL;
    pos = h >>> 20;
  }
  return undefined;
}

/** The p2pmem pool of the device at `dir`, if it registered one. */
export function readP2pmem(dir: string): P2pmemInfo | undefined {
  const p = path.join(dir, 'p2pmem');
  const size = readInt(path.join(p, 'size'));
  if (size === undefined) return undefined;
  const allocate = path.join(p, 'allocate');
  return {
    size,
    available: readInt(path.join(p, 'available')) ?? 0,
    published: readText(path.join(p, 'published')) === '1',
    allocate: fs.existsSync(allocate) ? allocate : undefined,
  };
}

function readDevice(sys: string, bdf: string): PciDevice | undefined {
  const link = path.join(sys, 'bus', 'pci', 'devices', bdf);
  let real: string;
  try {
    real = fs.realpathSync(link);
  } catch {
    return undefined;
  }
  const m = BDF.exec(bdf)!;
  // .../pci0000:00/0000:00:01.0/0000:01:00.0/<bdf>: every BDF component
  // above the device is a bridge on its upstream path.
  const parts = real.split(path.sep);
  const at = parts.lastIndexOf(bdf);
  const above = parts.slice(0, at);
  const rootIndex = above.findIndex((p) => /^pci[0-9a-f]{4,8}:[0-9a-f]{2}$/.test(p));
  const upstream = above.slice(rootIndex + 1).filter((p) => BDF.test(p)).reverse();
  const classCode = readHex(path.join(real, 'class'));
  const driverLink = path.join(real, 'driver');
  let driver: string | undefined;
  try {
    driver = path.basename(fs.readlinkSync(driverLink));
  } catch {
    driver = undefined;
  }
  return {
    bdf,
    domain: parseInt(m[1], 16),
    bus: parseInt(m[2], 16),
    slot: parseInt(m[3], 16),
    function: parseInt(m[4], 16),
    vendorId: readHex(path.join(real, 'vendor')) ?? 0,
    deviceId: readHex(path.join(real, 'device')) ?? 0,
    subsystemVendorId: readHex(path.join(real, 'subsystem_vendor')),
    subsystemDeviceId: readHex(path.join(real, 'subsystem_device')),
    classCode: classCode ?? 0,
    revision: readHex(path.join(real, 'revision')),
    driver,
    numaNode: readInt(path.join(real, 'numa_node')) ?? -1,
    bars: parseBars(readText(path.join(real, 'resource'))),
    upstream,
    rootBus: rootIndex >= 0 ? above[rootIndex] : '',
    sysfsPath: real,
    p2pmem: readP2pmem(link),
  };
}

function listBdfs(sys: string): string[] {
  try {
    return fs.readdirSync(path.join(sys, 'bus', 'pci', 'devices')).filter((n) => BDF.test(n)).sort();
  } catch {
    return [];
  }
}

/** PCI devices from sysfs. */
export const Pci = {
  /** Every PCI device, sorted by address. No PCI bus (or no sysfs) gives []. */
  devices(options: PciOptions = {}): PciDevice[] {
    const sys = sysfsRoot(options, Pci.devices);
    // A device may vanish between readdir and reading it (hot unplug).
    return listBdfs(sys).flatMap((bdf) => readDevice(sys, bdf) ?? []);
  },

  /** One device; throws ERR_P2PDMA_NO_PCI_DEVICE when there is none at `bdf`. */
  device(bdf: string, options: PciOptions = {}): PciDevice {
    const b = normalizeBdf(bdf, Pci.device);
    const sys = sysfsRoot(options, Pci.device);
    const d = readDevice(sys, b);
    if (d === undefined) throw notFound(b, path.join(sys, 'bus', 'pci', 'devices', b), Pci.device);
    return d;
  },
};
