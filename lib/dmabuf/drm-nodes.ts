/**
 * Which DRM nodes there are (/dev/dri/card*, renderD*) and which driver
 * runs each. The kernel's own answer, DRM_IOCTL_VERSION, comes first: it
 * names the driver on every kernel. sysfs only adds information, and is the
 * fallback when a node cannot be opened. Its layout changed: up to 6.14
 * vgem (and vkms) were platform devices with no driver bound
 * (/sys/devices/platform/vgem, no `driver` link); since 6.15 they are faux
 * devices (/sys/devices/faux/vgem), bound to the faux bus' one driver, so
 * `driver` names `faux_driver`, not vgem. A PCI GPU's `driver` link names
 * its PCI driver, which need not be the DRM driver's name either.
 * Used by lib/dmabuf/drm.ts (Drm.devices) and lib/core/capabilities.ts. @internal
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { native } from '../core/native';

/** What this module finds out about one node. */
export interface DrmNodeFacts {
  /** `'card0'`, `'renderD128'` */
  name: string;
  /** `/dev/dri/card0` */
  path: string;
  /** 'primary' (card*, KMS and dumb buffers) or 'render' (renderD*, no modesetting). */
  type: 'primary' | 'render';
  /**
   * The kernel driver (`vgem`, `amdgpu`, `i915`...), when known: the name
   * DRM_IOCTL_VERSION reports, else (node not openable) what sysfs suggests.
   */
  driver?: string;
  /** Where `driver` came from. */
  driverFrom?: 'ioctl' | 'sysfs';
  /** The device's sysfs directory, symlinks resolved (`/sys/devices/faux/vgem`). */
  sysfsDevice?: string;
  /** The bus sysfs puts the device on: `'pci'`, `'platform'`, `'faux'`... */
  bus?: string;
  /** What sysfs says drives the device: its bound driver, or for a platform or faux device without a driver of its own, the device's name. */
  sysfsDriver?: string;
  /**
   * The bus as libdrm's drmGetDevices2 reports it: `'pci'` for a PCI GPU
   * (virtio-gpu-pci included, also where the DRM device sits on the
   * function's virtio device), `'platform'`, `'usb'`, `'host1x'`..., and `'virtual'` for a
   * device on no hardware bus (vgem, vkms: a platform device with no
   * firmware node up to 6.14, a faux device since 6.15).
   */
  busType?: string;
  /** The PCI function, for busType 'pci' (sysfs' config-space copies). */
  pci?: DrmPciInfo;
  /** Every node of the same device, as drmGetDevices2's `nodes`. */
  nodes?: { primary?: string; render?: string };
}

/** A DRM device's PCI function: drmPciBusInfo plus drmPciDeviceInfo. */
export interface DrmPciInfo {
  /** `'0000:00:05.0'` */
  address: string;
  domain: number;
  bus: number;
  dev: number;
  func: number;
  vendorId: number;
  deviceId: number;
  subvendorId: number;
  subdeviceId: number;
  revisionId: number;
}

/** Asks the node itself: DRM_IOCTL_VERSION's name, or undefined when it cannot be opened or asked. */
export type DrmVersionProbe = (nodePath: string) => string | undefined;

export interface DrmNodeListOptions {
  /** Default `/dev`. */
  devDir?: string;
  /** Default `/sys`. */
  sysDir?: string;
  /** Default: open the node read-only and ask DRM_IOCTL_VERSION (char devices only). */
  probe?: DrmVersionProbe;
}

/** The default probe: opens a character device read-only, DRM_IOCTL_VERSION, closes it. */
export function probeDrmVersion(nodePath: string): string | undefined {
  try {
    if (!fs.statSync(nodePath).isCharacterDevice()) return undefined;
  } catch {
    return undefined;
  }
  let fd: number;
  try {
    fd = fs.openSync(nodePath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | native.dmabufConstants.O_CLOEXEC);
  } catch {
    return undefined; // EACCES and the like: sysfs will have to do
  }
  try {
    const name = native.drmVersion(fd).name;
    return name === '' ? undefined : name;
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

const BDF = /^([0-9a-f]{4,}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/;

function readHex(dir: string, file: string): number | undefined {
  try {
    const n = parseInt(fs.readFileSync(path.join(dir, file), 'utf8').trim(), 16);
    return Number.isNaN(n) ? undefined : n;
  } catch {
    return undefined;
  }
}

/** The PCI function at sysfs directory `dir` (named by its address), or undefined. */
export function pciFacts(dir: string): DrmPciInfo | undefined {
  const address = path.basename(dir);
  const m = BDF.exec(address);
  if (m === null) return undefined;
  const vendorId = readHex(dir, 'vendor');
  const deviceId = readHex(dir, 'device');
  if (vendorId === undefined || deviceId === undefined) return undefined;
  return {
    address,
    domain: parseInt(m[1], 16),
    bus: parseInt(m[2], 16),
    dev: parseInt(m[3], 16),
    func: parseInt(m[4], 16),
    vendorId,
    deviceId,
    subvendorId: readHex(dir, 'subsystem_vendor') ?? 0,
    subdeviceId: readHex(dir, 'subsystem_device') ?? 0,
    revisionId: readHex(dir, 'revision') ?? 0,
  };
}

/** drmGetDevices2's bus type and PCI function for a device of bus `bus` at `real`. */
function busFacts(real: string, bus: string | undefined): Pick<DrmNodeFacts, 'busType' | 'pci'> {
  // A DRM device on a virtio device (libdrm's virtio case): the PCI
  // function above it is what libdrm reports. (virtio-gpu on PCI makes the
  // PCI function itself the DRM device's parent: 6.12 checked.)
  const dir = bus === 'virtio' ? path.dirname(real) : real;
  const parentBus = bus === 'virtio' ? linkBase(path.join(dir, 'subsystem')) : bus;
  if (parentBus === 'pci') {
    const pci = pciFacts(dir);
    return pci === undefined ? { busType: 'pci' } : { busType: 'pci', pci };
  }
  if (bus === 'faux') return { busType: 'virtual' };
  if (bus === 'platform') {
    // A platform device with a firmware (ACPI or device-tree) node is real hardware.
    const firmware = fs.existsSync(path.join(real, 'firmware_node')) || fs.existsSync(path.join(real, 'of_node'));
    return { busType: firmware ? 'platform' : 'virtual' };
  }
  return bus === undefined ? {} : { busType: parentBus ?? bus };
}

function linkBase(p: string): string | undefined {
  try {
    return path.basename(fs.readlinkSync(p));
  } catch {
    return undefined;
  }
}

/** sysfs' view of the device behind /sys/class/drm/<node>/device. */
export function sysfsFacts(sysDir: string, node: string): Pick<DrmNodeFacts, 'sysfsDevice' | 'bus' | 'sysfsDriver' | 'busType' | 'pci'> {
  const link = path.join(sysDir, 'class', 'drm', node, 'device');
  let real: string;
  try {
    real = fs.realpathSync(link);
  } catch {
    return {};
  }
  const out: Pick<DrmNodeFacts, 'sysfsDevice' | 'bus' | 'sysfsDriver' | 'busType' | 'pci'> = { sysfsDevice: real };
  const parent = path.basename(path.dirname(real));
  // `subsystem` names the bus; without it, the parent directory of a
  // root-level platform or faux device tells.
  const bus = linkBase(path.join(real, 'subsystem')) ?? (parent === 'platform' || parent === 'faux' ? parent : undefined);
  if (bus !== undefined) out.bus = bus;
  const bound = linkBase(path.join(real, 'driver'));
  if (bus === 'faux' || bound === 'faux_driver') {
    // Every faux device is bound to faux_driver; the device is named after its DRM driver.
    out.sysfsDriver = path.basename(real);
  } else if (bound !== undefined) {
    out.sysfsDriver = bound;
  } else if (bus === 'platform') {
    // vgem/vkms before 6.15: a platform device named after the driver, none bound.
    out.sysfsDriver = path.basename(real).replace(/\.\d+$/, '');
  }
  return { ...out, ...busFacts(real, bus) };
}

function nodeType(name: string): 'primary' | 'render' | undefined {
  if (/^renderD\d+$/.test(name)) return 'render';
  if (/^card\d+$/.test(name)) return 'primary';
  return undefined;
}

/**
 * The card and render nodes under `<devDir>/dri`, sorted by name, each with
 * its driver. Nodes of one device share one DRM_IOCTL_VERSION: the render
 * node is asked first (opening a card node can make this process DRM master
 * for a moment), the card node only when its device has no render node or
 * that one could not be asked. Throws what readdir throws, except ENOENT ([]).
 */
export function listDrmNodes(options: DrmNodeListOptions = {}): DrmNodeFacts[] {
  const { devDir = '/dev', sysDir = '/sys', probe = probeDrmVersion } = options;
  const dir = path.join(devDir, 'dri');
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const nodes: DrmNodeFacts[] = [];
  for (const name of names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))) {
    const type = nodeType(name);
    if (type === undefined) continue;
    nodes.push({ name, path: path.join(dir, name), type, ...sysfsFacts(sysDir, name) });
  }
  // One DRM_IOCTL_VERSION per device: its render node first, its card
  // node only if that gave no answer. Nodes without a sysfs device are
  // asked one by one.
  const byDevice = new Map<string, string>();
  const own = new Map<DrmNodeFacts, string>();
  for (const n of [...nodes.filter((x) => x.type === 'render'), ...nodes.filter((x) => x.type === 'primary')]) {
    if (n.sysfsDevice !== undefined && byDevice.has(n.sysfsDevice)) continue;
    const name = probe(n.path);
    if (name === undefined) continue;
    if (n.sysfsDevice !== undefined) byDevice.set(n.sysfsDevice, name);
    else own.set(n, name);
  }
  // Each device's nodes, as drmGetDevices2 groups them.
  const siblings = new Map<string, { primary?: string; render?: string }>();
  for (const n of nodes) {
    if (n.sysfsDevice === undefined) continue;
    const set = siblings.get(n.sysfsDevice) ?? {};
    set[n.type] ??= n.path;
    siblings.set(n.sysfsDevice, set);
  }
  for (const n of nodes) {
    n.nodes = { ...(n.sysfsDevice !== undefined ? siblings.get(n.sysfsDevice) : { [n.type]: n.path }) };
    const name = own.get(n) ?? (n.sysfsDevice !== undefined ? byDevice.get(n.sysfsDevice) : undefined);
    if (name !== undefined) {
      n.driver = name;
      n.driverFrom = 'ioctl';
    } else if (n.sysfsDriver !== undefined) {
      n.driver = n.sysfsDriver;
      n.driverFrom = 'sysfs';
    }
  }
  return nodes;
}
