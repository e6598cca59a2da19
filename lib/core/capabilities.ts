/**
 * capabilities(): what this kernel and machine offer, each item with the
 * reason when it is absent. Read-only probing: /dev, /sys and a dlopen() of
 * libibverbs (never linked, closed again at once).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { listDrmNodes } from '../dmabuf/drm-nodes';
import { invalidArgType, invalidArgValue, validateObject } from './errors';
import { native } from './native';

export interface Capability {
  available: boolean;
  /** Why it is not available (only when `available` is false). */
  reason?: string;
}

export interface DmaHeapsCapability extends Capability {
  /** Heap names under /dev/dma_heap (e.g. `'system'`), usable or not. */
  heaps: string[];
}

export interface UdmabufCapability extends Capability {
  path: string;
}

export interface DrmNode {
  /** `'renderD128'`, `'card0'` */
  name: string;
  path: string;
  type: 'render' | 'primary';
  /** Kernel driver (`'vgem'`, `'amdgpu'`...): what DRM_IOCTL_VERSION says, else what sysfs suggests. */
  driver?: string;
  /** Where `driver` came from: the node (`'ioctl'`) or sysfs (the node could not be opened). */
  driverFrom?: 'ioctl' | 'sysfs';
  /** The device's bus in sysfs (`'pci'`, `'platform'`, `'faux'`...). */
  bus?: string;
  /** Whether this process may open it read-write. */
  accessible: boolean;
}

export interface DrmCapability extends Capability {
  nodes: DrmNode[];
}

export interface P2pmemProvider {
  /** PCI address, `'0000:00:04.0'` */
  bdf: string;
  /** Bytes of p2pmem the device provides. */
  size: number;
  /** Bytes not yet allocated. */
  available: number;
  /** Whether the device publishes it for other drivers and userspace. */
  published: boolean;
  /** The file to mmap for an allocation (Linux 6.2+), if present. */
  allocate?: string;
}

export interface P2pmemCapability extends Capability {
  providers: P2pmemProvider[];
}

export interface RdmaDevice {
  /** `'rxe0'`, `'mlx5_0'` */
  name: string;
  /** `node_type`, e.g. `'1: CA'` */
  nodeType?: string;
  /** Port numbers. */
  ports: number[];
  /** The uverbs char device for this device, if any (`/dev/infiniband/uverbs0`). */
  uverbs?: string;
}

export interface RdmaCapability extends Capability {
  devices: RdmaDevice[];
}

export interface LibibverbsCapability extends Capability {
  /** Where the dynamic linker found it. */
  path?: string;
}

export interface Capabilities {
  /** `os.release()` */
  kernel: string;
  dmaHeaps: DmaHeapsCapability;
  udmabuf: UdmabufCapability;
  drm: DrmCapability;
  p2pmem: P2pmemCapability;
  rdma: RdmaCapability;
  libibverbs: LibibverbsCapability;
}

export interface CapabilitiesOptions {
  /** Where /dev is (tests point this at a fake tree). Default `'/dev'`. */
  devDir?: string;
  /** Where /sys is. Default `'/sys'`. */
  sysDir?: string;
  /** The library to probe. Default `'libibverbs.so.1'`. */
  libibverbs?: string;
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? String(e);
}

/** A directory's sorted entries, or none and the error code. */
export function list(dir: string): { names: string[]; error?: string } {
  try {
    return { names: fs.readdirSync(dir).sort() };
  } catch (e) {
    return { names: [], error: errCode(e) };
  }
}

function canAccess(p: string, mode: number): boolean {
  try {
    fs.accessSync(p, mode);
    return true;
  } catch {
    return false;
  }
}

/** A sysfs/procfs file's text, trimmed; undefined when it cannot be read. */
export function readText(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function absent<T extends Capability>(cap: T, reason: string): T {
  return { ...cap, available: false, reason };
}

function dmaHeaps(dev: string): DmaHeapsCapability {
  const dir = path.join(dev, 'dma_heap');
  const { names, error } = list(dir);
  const cap: DmaHeapsCapability = { available: false, heaps: names };
  if (error === 'ENOENT') return absent(cap, `${dir} does not exist (kernel without CONFIG_DMABUF_HEAPS?)`);
  if (error !== undefined) return absent(cap, `cannot list ${dir}: ${error}`);
  if (names.length === 0) return absent(cap, `${dir} has no heaps (kernel without CONFIG_DMABUF_HEAPS_SYSTEM?)`);
  if (!names.some((h) => canAccess(path.join(dir, h), fs.constants.R_OK))) {
    return absent(cap, `no permission to open any heap in ${dir} (EACCES)`);
  }
  return { available: true, heaps: names };
}

function udmabuf(dev: string): UdmabufCapability {
  const p = path.join(dev, 'udmabuf');
  const cap: UdmabufCapability = { available: false, path: p };
  if (!fs.existsSync(p)) return absent(cap, `${p} does not exist (kernel without CONFIG_UDMABUF?)`);
  if (!canAccess(p, fs.constants.R_OK | fs.constants.W_OK)) return absent(cap, `no permission to open ${p} read-write (EACCES)`);
  return { available: true, path: p };
}

function drm(dev: string, sys: string): DrmCapability {
  const dir = path.join(dev, 'dri');
  const { error } = list(dir);
  const nodes: DrmNode[] = [];
  if (error === undefined) {
    // DRM_IOCTL_VERSION first (each device's render node, opened read-only),
    // sysfs where a node cannot be opened: since 6.15 vgem and vkms are faux
    // devices whose sysfs `driver` is faux_driver (lib/dmabuf/drm-nodes.ts).
    for (const f of listDrmNodes({ devDir: dev, sysDir: sys })) {
      const node: DrmNode = { name: f.name, path: f.path, type: f.type, accessible: canAccess(f.path, fs.constants.R_OK | fs.constants.W_OK) };
      if (f.driver !== undefined) node.driver = f.driver;
      if (f.driverFrom !== undefined) node.driverFrom = f.driverFrom;
      if (f.bus !== undefined) node.bus = f.bus;
      nodes.push(node);
    }
  }
  const cap: DrmCapability = { available: false, nodes };
  if (error === 'ENOENT') return absent(cap, `${dir} does not exist (no DRM driver loaded; CONFIG_DRM_VGEM gives one without a GPU)`);
  if (error !== undefined) return absent(cap, `cannot list ${dir}: ${error}`);
  if (nodes.length === 0) return absent(cap, `${dir} has no card or render nodes`);
  if (!nodes.some((n) => n.accessible)) return absent(cap, `no permission to open any node in ${dir} (EACCES; join the 'render' group?)`);
  return { available: true, nodes };
}

function p2pmem(sys: string): P2pmemCapability {
  const dir = path.join(sys, 'bus', 'pci', 'devices');
  const { names, error } = list(dir);
  const providers: P2pmemProvider[] = [];
  for (const bdf of names) {
    const p = path.join(dir, bdf, 'p2pmem');
    if (!fs.existsSync(p)) continue;
    const provider: P2pmemProvider = {
      bdf,
      size: Number(readText(path.join(p, 'size')) ?? 0),
      available: Number(readText(path.join(p, 'available')) ?? 0),
      published: readText(path.join(p, 'published')) === '1',
    };
    const allocate = path.join(p, 'allocate');
    if (fs.existsSync(allocate)) provider.allocate = allocate;
    providers.push(provider);
  }
  const cap: P2pmemCapability = { available: false, providers };
  if (error !== undefined) return absent(cap, `cannot list ${dir}: ${error}`);
  if (providers.length === 0) {
    return absent(cap, `no PCI device has p2pmem (${dir}/*/p2pmem; needs CONFIG_PCI_P2PDMA and a provider such as an NVMe CMB)`);
  }
  if (!providers.some((p) => p.published)) return absent(cap, 'p2pmem exists but no provider publishes it');
  return { available: true, providers };
}

function rdma(sys: string, dev: string): RdmaCapability {
  const dir = path.join(sys, 'class', 'infiniband');
  const { names, error } = list(dir);
  const uverbsByDev = new Map<string, string>();
  for (const u of list(path.join(sys, 'class', 'infiniband_verbs')).names) {
    const ibdev = readText(path.join(sys, 'class', 'infiniband_verbs', u, 'ibdev'));
    if (ibdev !== undefined) uverbsByDev.set(ibdev, path.join(dev, 'infiniband', u));
  }
  const devices: RdmaDevice[] = names.map((name) => {
    const d: RdmaDevice = {
      name,
      ports: list(path.join(dir, name, 'ports')).names.map(Number).filter(Number.isInteger).sort((a, b) => a - b),
    };
    const nodeType = readText(path.join(dir, name, 'node_type'));
    if (nodeType !== undefined) d.nodeType = nodeType;
    const uverbs = uverbsByDev.get(name);
    if (uverbs !== undefined) d.uverbs = uverbs;
    return d;
  });
  const cap: RdmaCapability = { available: false, devices };
  if (error === 'ENOENT' || (error === undefined && names.length === 0)) {
    return absent(cap, `no RDMA devices in ${dir} (load a driver, e.g. 'rdma link add rxe0 type rxe netdev eth0')`);
  }
  if (error !== undefined) return absent(cap, `cannot list ${dir}: ${error}`);
  return { available: true, devices };
}

function libibverbs(soname: string): LibibverbsCapability {
  const r = native.dlprobe(soname);
  if (!r.ok) return { available: false, reason: `dlopen(${soname}) failed: ${r.error} (install libibverbs1 from rdma-core)` };
  return r.path !== undefined ? { available: true, path: r.path } : { available: true };
}

/** Probes what this kernel and machine offer. Never throws for a missing feature. */
export function capabilities(options: CapabilitiesOptions = {}): Capabilities {
  validateObject(options, 'options', capabilities);
  const { devDir: dev = '/dev', sysDir: sys = '/sys', libibverbs: soname = 'libibverbs.so.1' } = options;
  for (const [name, v] of [['devDir', dev], ['sysDir', sys], ['libibverbs', soname]] as const) {
    if (typeof v !== 'string') throw invalidArgType(`options.${name}`, 'of type string', v, capabilities);
    // A NUL would cut the name short in the C string dlopen() gets.
    if (v.includes('\0')) throw invalidArgValue(`options.${name}`, v, 'must not contain null bytes', capabilities);
  }
  return {
    kernel: os.release(),
    dmaHeaps: dmaHeaps(dev),
    udmabuf: udmabuf(dev),
    drm: drm(dev, sys),
    p2pmem: p2pmem(sys),
    rdma: rdma(sys, dev),
    libibverbs: libibverbs(soname),
  };
}
