/**
 * PCI peer-to-peer memory (p2pmem): the pools devices publish (NVMe CMBs),
 * buffers allocated from them, and whether two devices can reach each other.
 *
 * A `P2pBuffer` is a `Mapping` of `/sys/bus/pci/devices/<bdf>/p2pmem/allocate`
 * (shared, offset 0, Linux 6.2+): the kernel allocates device memory for the
 * mapping and gives it back to the pool when the mapping goes away, so
 * `close()` (or `using`) returns it at once. Passed to O_DIRECT I/O
 * (`Nvme.read/write`) the device memory is the DMA target: peer to peer.
 *
 * `P2pMem.topology(provider, client)` estimates, from sysfs, the map type the
 * kernel's P2PDMA code (drivers/pci/p2pdma.c, calc_map_type_and_dist())
 * would choose for `client` DMAing to `provider`'s memory, with the reason.
 * Where the kernel offers its own answer (the patched kernel's test module,
 * /dev/vma_p2p: pci_p2pdma_map_type_dev()), `kernel` reports it too.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { type CodedError, fromNative, invalidArgType, outOfRange, validateObject } from '../core/errors';
import { Fd } from '../core/handle';
import { ioc, ioctlSync } from '../core/ioctl';
import { Mapping, pageSize } from '../core/mmap';
import { native, type NativeMapping } from '../core/native';
import { acsControlOffset, normalizeBdf, Pci, PCI_ACS_REDIRECT, readP2pmem, type P2pmemInfo, type PciDevice, type PciOptions } from './pci';

/** How a client reaches a provider's memory (the kernel's enum pci_p2pdma_map_type). */
export type MapType = 'BUS_ADDR' | 'THRU_HOST_BRIDGE' | 'NOT_SUPPORTED';

/** A PCI device with a p2pmem pool. */
export type P2pmemProvider = PciDevice & { p2pmem: P2pmemInfo };

export interface P2pMemOptions extends PciOptions {
  /** Where the CPU vendor and family are read. Default `/proc/cpuinfo`. */
  cpuinfo?: string;
  /** The patched kernel's test importer. Default `/dev/vma_p2p`; `null` skips the kernel query. */
  vmaP2p?: string | null;
  /** The kernel release whose P2PDMA whitelist the estimate uses (it grew after 6.12). Default `os.release()`. */
  kernelRelease?: string;
}

export interface P2pTopology {
  provider: string;
  client: string;
  /** The map type estimated from sysfs, as calc_map_type_and_dist() decides it. */
  mapType: MapType;
  /** The kernel's P2PDMA distance (hops through bridges), -1 when NOT_SUPPORTED. */
  distance: number;
  /** The nearest device both sit under; undefined when only a host bridge joins them. */
  commonBridge: string | undefined;
  /** Devices on the path whose ACS redirect bits (RR, CR, EC) are set. */
  acsRedirect: string[];
  /** The host bridge device of the provider's root bus and whether the kernel whitelists it. */
  hostBridge: { bdf: string; vendorId: number; deviceId: number; whitelisted: boolean } | undefined;
  /** An AMD Zen or newer CPU: the kernel allows P2P through any of its host bridges. */
  cpuAllowsP2p: boolean;
  /** Why, in words. */
  reason: string;
  /** The kernel's own answer (pci_p2pdma_map_type_dev() through /dev/vma_p2p), when it offers one. */
  kernel: MapType | undefined;
}

// drivers/pci/p2pdma.c: pci_p2pdma_whitelist[]: [vendor, device (-1: any),
// REQ_SAME_HOST_BRIDGE, added after 6.12]. The last group is in 7.3 and not
// in 6.12; it applies on kernels newer than 6.12 (one of 6.13-7.2 may lack
// some of them: the estimate then says whitelisted where that kernel does not).
const WHITELIST: ReadonlyArray<readonly [number, number, boolean, boolean]> = [
  [0x8086, 0x3c00, true, false],
  [0x8086, 0x3c01, true, false],
  [0x8086, 0x2f00, true, false],
  [0x8086, 0x2f01, true, false],
  [0x8086, 0x2030, false, false],
  [0x8086, 0x2031, false, false],
  [0x8086, 0x2032, false, false],
  [0x8086, 0x2033, false, false],
  [0x8086, 0x2020, false, false],
  [0x8086, 0x09a2, false, false],
  // Intel DSA/IAX (SPR, GNR-D, DMR) and QAT (4xxx...6xxx) as root ports
  [0x8086, 0x0b25, false, true],
  [0x8086, 0x0cfe, false, true],
  [0x8086, 0x11fb, false, true],
  [0x8086, 0x1212, false, true],
  [0x8086, 0x1216, false, true],
  [0x8086, 0x4940, false, true],
  [0x8086, 0x4942, false, true],
  [0x8086, 0x4944, false, true],
  [0x8086, 0x4946, false, true],
  [0x8086, 0x4948, false, true],
  // Google SoCs: any device
  [0x1ae0, -1, false, true],
  // NVIDIA CPUs
  [0x10de, 0x2f95, false, true],
  [0x10de, 0x2f96, false, true],
  [0x10de, 0x2f97, false, true],
  [0x10de, 0x2f98, false, true],
];

/** Whether a kernel release string (`uname -r`) is newer than 6.12; unparsable reads as newer. */
function newerThan612(release: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (m === null) return true;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > 6 || (maj === 6 && min > 12);
}

// lib/test_vma_p2p_uapi.h (kernel-patches/0006)
const VMA_P2P_SET_IMPORTER = ioc.iow('P', 0xa0, 24);
const VMA_P2P_MAP_TYPE = ioc.iowr('P', 0xa1, 24);
const VMA_P2P_TYPES: Record<number, MapType> = { 1: 'NOT_SUPPORTED', 2: 'BUS_ADDR', 3: 'THRU_HOST_BRIDGE' };

function p2pError(code: string, message: string, caller: Function, cause?: unknown): CodedError {
  const e = new Error(message, cause === undefined ? undefined : { cause }) as CodedError;
  e.code = code;
  Error.captureStackTrace(e, caller);
  return e;
}

function toOptions(options: unknown, caller: Function): P2pMemOptions {
  validateObject(options, 'options', caller);
  const { kernelRelease } = options as P2pMemOptions;
  if (kernelRelease !== undefined && typeof kernelRelease !== 'string') throw invalidArgType('options.kernelRelease', 'of type string', kernelRelease, caller);
  return options as P2pMemOptions;
}

function toDevice(v: unknown, name: string, options: PciOptions, caller: Function): PciDevice {
  if (typeof v === 'string') {
    normalizeBdf(v, caller);
    return Pci.device(v, options);
  }
  if (typeof v === 'object' && v !== null && typeof (v as PciDevice).bdf === 'string') return Pci.device((v as PciDevice).bdf, options);
  throw invalidArgType(name, 'a PCI address string or a PciDevice', v, caller);
}

/** ACS redirect bits set in the device's config space (needs root to read past 64 bytes). */
function acsRedirect(dev: PciDevice): boolean {
  let cfg: Buffer;
  try {
    cfg = fs.readFileSync(path.join(dev.sysfsPath, 'config'));
  } catch {
    return false;
  }
  const ctrl = acsControlOffset(cfg);
  return ctrl !== undefined && (cfg.readUInt16LE(ctrl) & PCI_ACS_REDIRECT) !== 0;
}

function readCpu(file: string): { vendor: string; family: number } {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    // not x86 or no procfs: no CPU exception applies
  }
  const vendor = /^vendor_id\s*:\s*(\S+)/m.exec(text)?.[1] ?? 'unknown';
  const family = Number(/^cpu family\s*:\s*(\d+)/m.exec(text)?.[1] ?? -1);
  return { vendor, family };
}

/** pci_host_bridge_dev(): the first device on the root bus, if it is 00.0 or a root port. */
function hostBridgeOf(dev: PciDevice, all: PciDevice[]): PciDevice | undefined {
  const onRoot = all.filter((d) => d.rootBus === dev.rootBus && d.upstream.length === 0).sort((a, b) => (a.bdf < b.bdf ? -1 : 1));
  const first = onRoot[0];
  if (first === undefined) return undefined;
  if (first.slot === 0 && first.function === 0) return first;
  if (first.classCode >> 8 === 0x0604) return first;
  return undefined;
}

function whitelisted(bridge: PciDevice | undefined, sameHostBridge: boolean, release: string): boolean {
  if (bridge === undefined) return false;
  const newer = newerThan612(release);
  // As the kernel: the first entry that matches vendor and device decides.
  const e = WHITELIST.find(([v, d, , late]) => v === bridge.vendorId && (d === -1 || d === bridge.deviceId) && (!late || newer));
  return e !== undefined && (!e[2] || sameHostBridge);
}

const hex4 = (n: number) => n.toString(16).padStart(4, '0');

/** The kernel's answer through the patched kernel's /dev/vma_p2p, or undefined where there is none. */
function kernelMapType(provider: PciDevice, client: PciDevice, dev: string | null | undefined): MapType | undefined {
  const file = dev === undefined ? '/dev/vma_p2p' : dev;
  if (file === null || !fs.existsSync(file)) return undefined;
  using fd = Fd.open(file, 'r+');
  const devfn = (d: PciDevice) => (d.slot << 3) | d.function;
  ioctlSync(fd, VMA_P2P_SET_IMPORTER, new Uint32Array([0, client.domain, client.bus, devfn(client), 0, 0]), { name: 'VMA_P2P_SET_IMPORTER' });
  const q = new Uint32Array([0, provider.domain, provider.bus, devfn(provider), 0, 0]);
  ioctlSync(fd, VMA_P2P_MAP_TYPE, q, { name: 'VMA_P2P_MAP_TYPE' });
  return VMA_P2P_TYPES[q[4]];
}

/** calc_map_type_and_dist() from sysfs. */
function estimate(provider: PciDevice, client: PciDevice, options: P2pMemOptions, all = Pci.devices(options)): Omit<P2pTopology, 'kernel'> {
  const byBdf = new Map(all.map((d) => [d.bdf, d]));
  const chain = (d: PciDevice) => [d.bdf, ...d.upstream];
  const aChain = chain(provider);
  const bChain = chain(client);
  const acs: string[] = [];
  const hasAcs = (bdf: string) => {
    const d = byBdf.get(bdf);
    if (d !== undefined && acsRedirect(d)) acs.push(bdf);
  };
  let common: string | undefined;
  let distA = 0;
  let distB = 0;
  for (const a of aChain) {
    hasAcs(a);
    const i = bChain.indexOf(a);
    if (i >= 0) {
      common = a;
      distB = i;
      break;
    }
    distA++;
  }
  if (common === undefined) distB = bChain.length;
  else for (const b of bChain.slice(0, distB)) hasAcs(b);

  const cpu = readCpu(options.cpuinfo ?? '/proc/cpuinfo');
  const cpuAllowsP2p = cpu.vendor === 'AuthenticAMD' && cpu.family >= 0x17;
  const hb = hostBridgeOf(provider, all);
  const sameHost = provider.rootBus === client.rootBus;
  const release = options.kernelRelease ?? os.release();
  const hbOk = whitelisted(hb, sameHost, release) && (sameHost || whitelisted(hostBridgeOf(client, all), false, release));
  const hostBridge = hb && { bdf: hb.bdf, vendorId: hb.vendorId, deviceId: hb.deviceId, whitelisted: whitelisted(hb, sameHost, release) };
  const base = { provider: provider.bdf, client: client.bdf, commonBridge: common, acsRedirect: acs, hostBridge, cpuAllowsP2p };
  const distance = distA + distB;
  const pair = `${client.bdf} -> ${provider.bdf}`;

  if (common !== undefined && acs.length === 0) {
    const how = common === provider.bdf ? 'the same device' : `under ${common}`;
    return { ...base, mapType: 'BUS_ADDR', distance, reason: `${pair}: ${how} with no ACS redirect on the path, so PCI bus addresses` };
  }
  const why = common !== undefined
    ? `ACS redirect is set on ${acs.join(', ')}, so traffic under ${common} goes through the host bridge`
    : `no common upstream bridge (${sameHost ? `both on root bus ${provider.rootBus || '?'}` : `root buses ${provider.rootBus || '?'} and ${client.rootBus || '?'}`}), so traffic goes through the host bridge`;
  if (cpuAllowsP2p) {
    return { ...base, mapType: 'THRU_HOST_BRIDGE', distance, reason: `${pair}: ${why}, which this CPU (AMD family 0x${cpu.family.toString(16)}, Zen or newer) allows` };
  }
  if (hbOk) {
    return { ...base, mapType: 'THRU_HOST_BRIDGE', distance, reason: `${pair}: ${why}, whose ${hex4(hb!.vendorId)}:${hex4(hb!.deviceId)} is in the kernel's P2PDMA whitelist` };
  }
  const bridge = hb ? `host bridge ${hex4(hb.vendorId)}:${hex4(hb.deviceId)} (${hb.bdf})` : 'host bridge (no 00.0 device on the root bus)';
  return {
    ...base,
    mapType: 'NOT_SUPPORTED',
    distance: -1,
    reason:
      `${pair}: ${why}, but the ${bridge} is not in the kernel's P2PDMA whitelist ` +
      `and the CPU (${cpu.vendor} family ${cpu.family}) is not an AMD Zen or newer`,
  };
}

/**
 * Device memory from a p2pmem pool, mapped into this process. A `Mapping`
 * (shared, read-write, offset 0) that also owns the `allocate` file: `close()`,
 * `unmap()` and `using` all unmap it and close the file, and the kernel puts
 * the memory back in the pool (at once, or when the last I/O still pinning
 * its pages completes).
 */
export class P2pBuffer extends Mapping {
  /** The provider's PCI address. */
  readonly provider: string;

  /** @internal use P2pMem.allocate() */
  constructor(nativeMapping: NativeMapping, length: number, source: Fd, provider: string) {
    super(nativeMapping, length, 0n, native.mmapConstants.PROT_READ | native.mmapConstants.PROT_WRITE, source);
    this.provider = provider;
  }

  /** Unmaps and closes the `allocate` file. Idempotent. */
  override unmap(): void {
    if (this.closed) return;
    super.unmap();
    this.source!.close();
  }
}

/** Peer-to-peer memory providers, buffers and reachability. */
export const P2pMem = {
  /** The PCI devices that registered p2pmem, published or not. */
  providers(options: PciOptions = {}): P2pmemProvider[] {
    return Pci.devices(options).filter((d): d is P2pmemProvider => d.p2pmem !== undefined);
  },

  /**
   * Allocates `size` bytes (a multiple of the page size) of the provider's
   * p2pmem. Refuses up front, with an error that says so, a provider with no
   * p2pmem (ERR_P2PDMA_NO_P2PMEM), one that does not publish it
   * (ERR_P2PDMA_P2PMEM_UNPUBLISHED), a kernel without `p2pmem/allocate`
   * (ERR_P2PDMA_P2PMEM_NO_ALLOCATE, Linux < 6.2) and more than is available
   * (ERR_P2PDMA_P2PMEM_EXHAUSTED, also when the pool is too fragmented).
   */
  allocate(providerOrBdf: string | PciDevice, size: number, options: PciOptions = {}): P2pBuffer {
    const opts = toOptions(options, P2pMem.allocate);
    if (typeof size !== 'number') throw invalidArgType('size', 'of type number', size, P2pMem.allocate);
    if (!Number.isSafeInteger(size) || size <= 0 || size % pageSize !== 0) {
      throw outOfRange('size', `a positive multiple of the page size (${pageSize})`, size, P2pMem.allocate);
    }
    const dev = toDevice(providerOrBdf, 'providerOrBdf', opts, P2pMem.allocate);
    const p = dev.p2pmem;
    if (p === undefined) {
      throw p2pError('ERR_P2PDMA_NO_P2PMEM', `${dev.bdf} has no p2pmem (no ${dev.sysfsPath}/p2pmem; is it an NVMe with a CMB and CONFIG_PCI_P2PDMA on?)`, P2pMem.allocate);
    }
    if (!p.published) {
      throw p2pError('ERR_P2PDMA_P2PMEM_UNPUBLISHED', `${dev.bdf} does not publish its p2pmem (p2pmem/published is 0: its driver keeps it for itself)`, P2pMem.allocate);
    }
    if (p.allocate === undefined) {
      throw p2pError('ERR_P2PDMA_P2PMEM_NO_ALLOCATE', `this kernel has no ${dev.sysfsPath}/p2pmem/allocate to map p2pmem from (Linux 6.2 or later)`, P2pMem.allocate);
    }
    if (size > p.available) {
      throw p2pError('ERR_P2PDMA_P2PMEM_EXHAUSTED', `${dev.bdf} has ${p.available} bytes of p2pmem available (of ${p.size}); ${size} requested`, P2pMem.allocate);
    }
    const fd = Fd.open(p.allocate, 'r+');
    let m: NativeMapping;
    try {
      const C = native.mmapConstants;
      m = new native.Mapping(fd.fd, size, C.PROT_READ | C.PROT_WRITE, C.MAP_SHARED, 0);
    } catch (e) {
      fd.close();
      const err = fromNative(e, { path: p.allocate }, P2pMem.allocate) as { code?: string };
      if (err.code === 'ENOMEM') {
        throw p2pError('ERR_P2PDMA_P2PMEM_EXHAUSTED', `${dev.bdf} could not allocate ${size} bytes of p2pmem (${readAvailable(dev)} available; the pool may be fragmented)`, P2pMem.allocate, err);
      }
      throw err;
    }
    return new P2pBuffer(m, size, fd, dev.bdf);
  },

  /**
   * The map type and path between `provider` (whose memory is the target)
   * and `client` (the device that DMAs), estimated from sysfs, plus the
   * kernel's own answer where it offers one.
   */
  topology(provider: string | PciDevice, client: string | PciDevice, options: P2pMemOptions = {}): P2pTopology {
    const opts = toOptions(options, P2pMem.topology);
    const p = toDevice(provider, 'provider', opts, P2pMem.topology);
    const c = toDevice(client, 'client', opts, P2pMem.topology);
    return topologyAmong(Pci.devices(opts), p, c, opts);
  },

  /** The kernel's P2PDMA distance from `client` to `provider`'s memory; -1 when they cannot reach each other. */
  distance(provider: string | PciDevice, client: string | PciDevice, options: P2pMemOptions = {}): number {
    const opts = toOptions(options, P2pMem.distance);
    return estimate(toDevice(provider, 'provider', opts, P2pMem.distance), toDevice(client, 'client', opts, P2pMem.distance), opts).distance;
  },
};

/**
 * P2pMem.topology() for many pairs from one snapshot of the bus (`all`, from
 * Pci.devices()): machineInfo()'s matrix. Enumerating the bus per pair cost
 * 0.6 s each in the DEBUG guest, 13 s for its 24 pairs.
 */
export function topologyAmong(all: PciDevice[], provider: PciDevice, client: PciDevice, options: P2pMemOptions = {}): P2pTopology {
  return { ...estimate(provider, client, options, all), kernel: kernelMapType(provider, client, options.vmaP2p) };
}

function readAvailable(dev: PciDevice): number | string {
  return readP2pmem(dev.sysfsPath)?.available ?? '?';
}
