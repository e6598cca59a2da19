/**
 * VFIO: a PCI function handed to vfio-pci, whose BAR ranges are exported as
 * dma-bufs (VFIO_DEVICE_FEATURE_DMA_BUF, Linux 6.19+) that vfio-pci revokes
 * while the device's memory is off: reset, memory decode cleared in its
 * command register, close.
 *
 * `Vfio.open(bdf)` binds the function to vfio-pci (driver_override, then
 * bind; `close()` gives it back to its driver), opens its group with a
 * container (a vIOMMU's type1 backend, or no-IOMMU mode where the machine has
 * no IOMMU: that mode needs CAP_SYS_RAWIO and taints the kernel) and the
 * device. The structs below are VFIO's uapi (linux/vfio.h) on x86-64: the
 * host's headers predate the dma-buf export, so test/guest/vfio.test.ts
 * checks them against the kernel.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { type CodedError, closedError, illegalConstructor, invalidArgType, outOfRange, sysError, validateObject } from '../core/errors';
import { Fd } from '../core/handle';
import { ioc, ioctlSync, registerRequests, requestName } from '../core/ioctl';
import { type Mapping, mmap } from '../core/mmap';
import { native } from '../core/native';
import { DmaBuf } from '../dmabuf/dmabuf';
import { normalizeBdf } from './pci';

const VFIO_TYPE = ';';
const VFIO_BASE = 100;
/** The requests (all `_IO`: VFIO encodes no sizes). */
export const vfioRequests = Object.freeze({
  VFIO_GET_API_VERSION: ioc.io(VFIO_TYPE, VFIO_BASE + 0),
  VFIO_CHECK_EXTENSION: ioc.io(VFIO_TYPE, VFIO_BASE + 1),
  VFIO_SET_IOMMU: ioc.io(VFIO_TYPE, VFIO_BASE + 2),
  VFIO_GROUP_GET_STATUS: ioc.io(VFIO_TYPE, VFIO_BASE + 3),
  VFIO_GROUP_SET_CONTAINER: ioc.io(VFIO_TYPE, VFIO_BASE + 4),
  VFIO_GROUP_GET_DEVICE_FD: ioc.io(VFIO_TYPE, VFIO_BASE + 6),
  VFIO_DEVICE_GET_INFO: ioc.io(VFIO_TYPE, VFIO_BASE + 7),
  VFIO_DEVICE_GET_REGION_INFO: ioc.io(VFIO_TYPE, VFIO_BASE + 8),
  VFIO_DEVICE_RESET: ioc.io(VFIO_TYPE, VFIO_BASE + 11),
  VFIO_DEVICE_FEATURE: ioc.io(VFIO_TYPE, VFIO_BASE + 17),
});
registerRequests(vfioRequests);

const VFIO_TYPE1v2_IOMMU = 3;
const VFIO_NOIOMMU_IOMMU = 8;
const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
const VFIO_DEVICE_FEATURE_GET = 1 << 16;
const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
const VFIO_DEVICE_FEATURE_DMA_BUF = 11;
/** VFIO_PCI_CONFIG_REGION_INDEX; BARs are regions 0-5. */
const CONFIG_REGION = 7;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;

// struct vfio_group_status { u32 argsz, flags; }
const GROUP_STATUS_SIZE = 8;
// struct vfio_device_info { u32 argsz, flags, num_regions, num_irqs, cap_offset, pad; }
const DEVICE_INFO_SIZE = 24;
// struct vfio_region_info { u32 argsz, flags, index, cap_offset; u64 size, offset; }
const REGION_INFO_SIZE = 32;
// struct vfio_device_feature { u32 argsz, flags; } then
// struct vfio_device_feature_dma_buf { u32 region_index, open_flags, flags, nr_ranges; }
// and nr_ranges of struct vfio_region_dma_range { u64 offset, length; }
const FEATURE_SIZE = 8;
const DMA_BUF_SIZE = 16;
const DMA_RANGE_SIZE = 16;
const MAX_RANGES = 1024;

const SYSFS_PCI = '/sys/bus/pci';
const OPEN = Symbol('Vfio.open');
const VFIO_DRIVER = `${SYSFS_PCI}/drivers/vfio-pci`;
const NOIOMMU_PARAM = '/sys/module/vfio/parameters/enable_unsafe_noiommu_mode';
const CONTAINER = '/dev/vfio/vfio';

/** A region of the device (VFIO_DEVICE_GET_REGION_INFO). */
export interface VfioRegion {
  index: number;
  /** Bytes; 0 for a BAR the device does not implement. */
  size: number;
  /** Where the region starts in the device fd (pread/pwrite/mmap). */
  offset: number;
  read: boolean;
  write: boolean;
  mmap: boolean;
}

/** A range of a BAR, page-aligned. */
export interface VfioRange {
  offset: number;
  length: number;
}

export interface VfioExportOptions {
  /** The BAR's ranges the dma-buf covers, in order (default: the whole BAR). */
  ranges?: readonly VfioRange[];
}

function vfioError(code: string, message: string, caller: Function): CodedError {
  const err = new Error(message) as CodedError;
  err.code = code;
  Error.captureStackTrace(err, caller);
  return err;
}

/** Writes a sysfs attribute, the error naming the file (EBUSY, ENODEV...). */
function writeAttr(file: string, value: string, caller: Function): void {
  try {
    fs.writeFileSync(file, value);
  } catch (e) {
    Error.captureStackTrace(e as Error, caller);
    throw e;
  }
}

function driverOf(dev: string): string | undefined {
  try {
    return path.basename(fs.readlinkSync(path.join(dev, 'driver')));
  } catch {
    return undefined;
  }
}

const DMA_BUF_MAGIC = 0x444d4142;

/**
 * An ioctl whose result is a new close-on-exec fd of the kind `is` checks
 * (both requests here make one, or fail), owned at once by a `ctor`. The
 * addon's ioctlFd serves only dma-buf and sync_file requests.
 */
function ioctlNewFd<T extends Fd>(ctor: new (fd: number) => T, fd: number, request: number, view: ArrayBufferView, is: (fd: number) => boolean, caller: Function): T {
  const n = ioctlView(fd, request, view, caller);
  if (!Number.isInteger(n) || n < 0 || !is(n)) {
    throw vfioError('ERR_P2PDMA_VFIO_FD', `${requestName(request)} returned ${n}, not the fd it makes`, caller);
  }
  return new ctor(n);
}

function isDmaBufFd(fd: number): boolean {
  return fs.statfsSync(`/proc/self/fd/${fd}`).type === DMA_BUF_MAGIC;
}

function isVfioDeviceFd(fd: number): boolean {
  return fs.readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[vfio-device]';
}

/** ioctlSync with a pointer to `view`, the error's stack trimmed to `caller`. */
function ioctlView(fd: number, request: number, view: ArrayBufferView, caller?: Function): number {
  try {
    return ioctlSync(fd, request, view);
  } catch (e) {
    if (caller !== undefined) Error.captureStackTrace(e as Error, caller);
    throw e;
  }
}

/**
 * A PCI function bound to vfio-pci and opened. Its dma-bufs stay valid after
 * close() (each holds what it needs), revoked: the device is VFIO's no more.
 */
export class Vfio implements Disposable {
  readonly bdf: string;
  /** The IOMMU group's number (a no-IOMMU group's too). */
  readonly group: number;
  /** Opened in no-IOMMU mode (the machine has no IOMMU). */
  readonly noIommu: boolean;
  /** Whether VFIO_DEVICE_RESET works for this device (it has a reset method). */
  readonly resettable: boolean;
  /** Regions of the device (BARs 0-5, ROM, config, VGA...). */
  readonly numRegions: number;
  #container: Fd | undefined;
  #group: Fd | undefined;
  #device: Fd | undefined;
  #restore: () => void;

  /** @internal Vfio.open() makes them. */
  constructor(token: symbol, bdf: string, group: number, noIommu: boolean, container: Fd, groupFd: Fd, device: Fd, restore: () => void) {
    if (token !== OPEN) throw illegalConstructor(new.target);
    this.bdf = bdf;
    this.group = group;
    this.noIommu = noIommu;
    this.#container = container;
    this.#group = groupFd;
    this.#device = device;
    this.#restore = restore;
    const info = Buffer.alloc(DEVICE_INFO_SIZE);
    info.writeUInt32LE(DEVICE_INFO_SIZE, 0);
    ioctlView(device.fd, vfioRequests.VFIO_DEVICE_GET_INFO, info, Vfio.open);
    this.resettable = (info.readUInt32LE(4) & VFIO_DEVICE_FLAGS_RESET) !== 0;
    this.numRegions = info.readUInt32LE(8);
  }

  /**
   * Binds the function `bdf` to vfio-pci and opens it. ENOENT naming
   * CONFIG_VFIO_PCI on a kernel without vfio-pci; EBUSY if another process
   * has the group open.
   */
  static open(bdf: string): Vfio {
    const caller = Vfio.open;
    const name = normalizeBdf(bdf, caller);
    const dev = path.join(SYSFS_PCI, 'devices', name);
    if (!fs.existsSync(dev)) throw sysError(2, 'open', { path: dev }, caller);
    if (!fs.existsSync(VFIO_DRIVER)) {
      const err = sysError(2, 'open', { path: VFIO_DRIVER }, caller);
      err.message += ' (this kernel has no vfio-pci: CONFIG_VFIO_PCI)';
      throw err;
    }
    const restore = bind(name, dev, caller);
    const opened: Fd[] = [];
    try {
      const groupLink = path.join(dev, 'iommu_group');
      const group = Number(path.basename(fs.readlinkSync(groupLink)));
      const noIommu = fs.existsSync(`/dev/vfio/noiommu-${group}`);
      const container = Fd.open(CONTAINER, fs.constants.O_RDWR | native.dmabufConstants.O_CLOEXEC);
      opened.push(container);
      const groupFd = Fd.open(noIommu ? `/dev/vfio/noiommu-${group}` : `/dev/vfio/${group}`, fs.constants.O_RDWR | native.dmabufConstants.O_CLOEXEC);
      opened.push(groupFd);
      const status = Buffer.alloc(GROUP_STATUS_SIZE);
      status.writeUInt32LE(GROUP_STATUS_SIZE, 0);
      ioctlView(groupFd.fd, vfioRequests.VFIO_GROUP_GET_STATUS, status, caller);
      if ((status.readUInt32LE(4) & VFIO_GROUP_FLAGS_VIABLE) === 0) {
        throw vfioError('ERR_P2PDMA_VFIO_GROUP', `IOMMU group ${group} of ${name} is not viable: bind every device of the group to vfio-pci`, caller);
      }
      const containerArg = Buffer.alloc(4);
      containerArg.writeInt32LE(container.fd, 0);
      ioctlView(groupFd.fd, vfioRequests.VFIO_GROUP_SET_CONTAINER, containerArg, caller);
      ioctlSync(container, vfioRequests.VFIO_SET_IOMMU, noIommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU, { name: 'VFIO_SET_IOMMU' });
      const nameArg = Buffer.from(`${name}\0`);
      const device = ioctlNewFd(Fd, groupFd.fd, vfioRequests.VFIO_GROUP_GET_DEVICE_FD, nameArg, isVfioDeviceFd, caller);
      opened.push(device);
      return new Vfio(OPEN, name, group, noIommu, container, groupFd, device, restore);
    } catch (e) {
      for (const f of opened.reverse()) f.close();
      restore();
      if (e instanceof Error) Error.captureStackTrace(e, caller);
      throw e;
    }
  }

  /**
   * Lets vfio-pci create no-IOMMU groups (enable_unsafe_noiommu_mode) on a
   * machine without IOMMU, before open() binds a device; returns whether it
   * was off (pass that to a later `setNoIommuMode(false)` to restore it).
   * ENOENT naming CONFIG_VFIO_NOIOMMU where the kernel lacks the mode.
   */
  static setNoIommuMode(enabled: boolean): boolean {
    if (typeof enabled !== 'boolean') throw invalidArgType('enabled', 'of type boolean', enabled, Vfio.setNoIommuMode);
    let was: string;
    try {
      was = fs.readFileSync(NOIOMMU_PARAM, 'utf8').trim();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') err.message += ' (this kernel has no VFIO no-IOMMU mode: CONFIG_VFIO_NOIOMMU)';
      Error.captureStackTrace(err, Vfio.setNoIommuMode);
      throw err;
    }
    writeAttr(NOIOMMU_PARAM, enabled ? 'Y' : 'N', Vfio.setNoIommuMode);
    return was !== 'Y';
  }

  get closed(): boolean {
    return this.#device === undefined;
  }

  /**
   * The device fd (VFIO_GROUP_GET_DEVICE_FD), owned by this Vfio: for
   * another library or a child process (BAR n maps at `region(n).offset`).
   * Throws ERR_P2PDMA_CLOSED once closed.
   */
  get fd(): number {
    return this.#dev(Object.getOwnPropertyDescriptor(Vfio.prototype, 'fd')!.get).fd;
  }

  #dev(caller?: Function): Fd {
    if (this.#device === undefined) throw closedError('Vfio', caller);
    return this.#device;
  }

  /** VFIO_DEVICE_GET_REGION_INFO: region `index` (BAR n is region n). */
  region(index: number): VfioRegion {
    const caller = this.region;
    const dev = this.#dev(caller);
    if (!Number.isInteger(index) || index < 0 || index >= this.numRegions) {
      throw outOfRange('index', `an integer >= 0 && < ${this.numRegions}`, index, caller);
    }
    const info = Buffer.alloc(REGION_INFO_SIZE);
    info.writeUInt32LE(REGION_INFO_SIZE, 0);
    info.writeUInt32LE(index, 8);
    ioctlView(dev.fd, vfioRequests.VFIO_DEVICE_GET_REGION_INFO, info, caller);
    const flags = info.readUInt32LE(4);
    return {
      index,
      size: Number(info.readBigUInt64LE(16)),
      offset: Number(info.readBigUInt64LE(24)),
      read: (flags & 1) !== 0,
      write: (flags & 2) !== 0,
      mmap: (flags & 4) !== 0,
    };
  }

  /**
   * Maps BAR `bar` through the device fd (its region must allow mmap).
   * vfio-pci zaps the mapping while the device's memory is off, and a touch
   * then is a SIGBUS: leave it alone until the memory is back on.
   */
  map(bar: number): Mapping {
    const caller = this.map;
    const dev = this.#dev(caller);
    if (!Number.isInteger(bar) || bar < 0 || bar > 5) throw outOfRange('bar', 'an integer >= 0 && <= 5', bar, caller);
    const r = this.region(bar);
    if (!r.mmap || r.size === 0) throw vfioError('ERR_P2PDMA_VFIO_REGION', `BAR ${bar} of ${this.bdf} cannot be mapped (size ${r.size}, mmap ${r.mmap})`, caller);
    try {
      return mmap(dev, r.size, { offset: r.offset });
    } catch (e) {
      Error.captureStackTrace(e as Error, caller);
      throw e;
    }
  }

  /** Whether this kernel's vfio-pci exports dma-bufs (VFIO_DEVICE_FEATURE_PROBE; 6.19+ with CONFIG_VFIO_PCI_DMABUF). */
  get canExportDmaBuf(): boolean {
    const arg = Buffer.alloc(FEATURE_SIZE);
    arg.writeUInt32LE(FEATURE_SIZE, 0);
    arg.writeUInt32LE(VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, 4);
    try {
      ioctlView(this.#dev().fd, vfioRequests.VFIO_DEVICE_FEATURE, arg);
      return true;
    } catch (e) {
      if ((e as CodedError).code === 'ENOTTY' || (e as CodedError).code === 'EOPNOTSUPP') return false;
      throw e;
    }
  }

  /**
   * VFIO_DEVICE_FEATURE_DMA_BUF: a dma-buf over ranges of BAR `bar` (default
   * the whole BAR). Importers must take revocable attachments (vfio-pci
   * refuses others): the buffer is revoked while the device's memory is off.
   */
  exportDmaBuf(bar: number, options: VfioExportOptions = {}): DmaBuf {
    const caller = this.exportDmaBuf;
    const dev = this.#dev(caller);
    if (!Number.isInteger(bar) || bar < 0 || bar > 5) throw outOfRange('bar', 'an integer >= 0 && <= 5', bar, caller);
    validateObject(options, 'options', caller);
    let ranges = options.ranges;
    if (ranges === undefined) {
      ranges = [{ offset: 0, length: this.region(bar).size }];
    } else if (!Array.isArray(ranges)) {
      throw invalidArgType('options.ranges', 'an instance of Array', ranges, caller);
    } else if (ranges.length === 0 || ranges.length > MAX_RANGES) {
      throw outOfRange('options.ranges.length', `>= 1 && <= ${MAX_RANGES}`, ranges.length, caller);
    }
    const size = FEATURE_SIZE + DMA_BUF_SIZE + DMA_RANGE_SIZE * ranges.length;
    const arg = Buffer.alloc(size);
    arg.writeUInt32LE(size, 0);
    arg.writeUInt32LE(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, 4);
    arg.writeUInt32LE(bar, FEATURE_SIZE);
    arg.writeUInt32LE(fs.constants.O_RDWR | native.dmabufConstants.O_CLOEXEC, FEATURE_SIZE + 4);
    arg.writeUInt32LE(ranges.length, FEATURE_SIZE + 12);
    ranges.forEach((r: VfioRange, i) => {
      validateObject(r, `options.ranges[${i}]`, caller);
      for (const k of ['offset', 'length'] as const) {
        const v = r[k];
        if (!Number.isSafeInteger(v) || v < 0) throw outOfRange(`options.ranges[${i}].${k}`, 'a safe integer >= 0', v, caller);
      }
      const at = FEATURE_SIZE + DMA_BUF_SIZE + DMA_RANGE_SIZE * i;
      arg.writeBigUInt64LE(BigInt(r.offset), at);
      arg.writeBigUInt64LE(BigInt(r.length), at + 8);
    });
    try {
      return ioctlNewFd(DmaBuf, dev.fd, vfioRequests.VFIO_DEVICE_FEATURE, arg, isDmaBufFd, caller);
    } catch (e) {
      const err = e as CodedError;
      if (err.code === 'ENOTTY' || err.code === 'EOPNOTSUPP') err.message += ' (this kernel\'s vfio-pci exports no dma-bufs: Linux 6.19+ with CONFIG_VFIO_PCI_DMABUF)';
      else if (err.code === 'EINVAL') err.message += ` (ranges must be non-empty, page-aligned and inside BAR ${bar})`;
      else if (err.code === 'ENODEV') err.message += ` (BAR ${bar} of ${this.bdf} is not a memory BAR vfio-pci maps)`;
      throw err;
    }
  }

  /**
   * VFIO_DEVICE_RESET: revokes every dma-buf of the device, resets it, and
   * restores them if its memory is still on. EINVAL where the device has no
   * reset method (`resettable` false).
   */
  reset(): void {
    const caller = this.reset;
    const dev = this.#dev(caller);
    try {
      ioctlSync(dev, vfioRequests.VFIO_DEVICE_RESET, undefined, { name: 'VFIO_DEVICE_RESET' });
    } catch (e) {
      const err = e as CodedError;
      if (err.code === 'EINVAL' && !this.resettable) err.message += ` (${this.bdf} has no reset method: no FLR, PM reset or bus reset)`;
      Error.captureStackTrace(err, caller);
      throw err;
    }
  }

  /** The memory enable bit of the command register, through VFIO's config region. */
  get memoryEnabled(): boolean {
    return (this.#readCommand() & PCI_COMMAND_MEMORY) !== 0;
  }

  /**
   * Sets the memory enable bit of the command register: clearing it revokes
   * the device's dma-bufs (importers are told to unmap, mappings of the BAR
   * fault), setting it restores them.
   */
  setMemoryEnabled(enabled: boolean): void {
    const caller = this.setMemoryEnabled;
    if (typeof enabled !== 'boolean') throw invalidArgType('enabled', 'of type boolean', enabled, caller);
    const cmd = this.#readCommand(caller);
    const b = Buffer.alloc(2);
    b.writeUInt16LE(enabled ? cmd | PCI_COMMAND_MEMORY : cmd & ~PCI_COMMAND_MEMORY, 0);
    const dev = this.#dev(caller);
    try {
      fs.writeSync(dev.fd, b, 0, 2, this.region(CONFIG_REGION).offset + PCI_COMMAND);
    } catch (e) {
      Error.captureStackTrace(e as Error, caller);
      throw e;
    }
  }

  #readCommand(caller?: Function): number {
    const dev = this.#dev(caller);
    const b = Buffer.alloc(2);
    try {
      fs.readSync(dev.fd, b, 0, 2, this.region(CONFIG_REGION).offset + PCI_COMMAND);
    } catch (e) {
      if (caller !== undefined) Error.captureStackTrace(e as Error, caller);
      throw e;
    }
    return b.readUInt16LE(0);
  }

  /**
   * Closes the device, its group and container (vfio-pci revokes the
   * dma-bufs), then gives the function back to the driver it had.
   */
  close(): void {
    if (this.#device === undefined) return;
    const fds = [this.#device, this.#group, this.#container];
    this.#device = this.#group = this.#container = undefined;
    for (const f of fds) f?.close();
    this.#restore();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Binds `name` to vfio-pci (driver_override, unbind from its driver, bind);
 * returns what undoes it. Already on vfio-pci: nothing to undo.
 */
function bind(name: string, dev: string, caller: Function): () => void {
  const before = driverOf(dev);
  if (before === 'vfio-pci') return () => {};
  const override = path.join(dev, 'driver_override');
  writeAttr(override, 'vfio-pci', caller);
  const restore = () => {
    // Best effort: the device may have gone (hot unplug).
    try {
      if (driverOf(dev) === 'vfio-pci') fs.writeFileSync(`${VFIO_DRIVER}/unbind`, name);
      fs.writeFileSync(override, '\n');
      fs.writeFileSync(`${SYSFS_PCI}/drivers_probe`, name);
    } catch {
      /* gone */
    }
  };
  try {
    if (before !== undefined) writeAttr(`${SYSFS_PCI}/drivers/${before}/unbind`, name, caller);
    writeAttr(`${VFIO_DRIVER}/bind`, name, caller);
  } catch (e) {
    restore();
    const err = e as NodeJS.ErrnoException;
    // vfio-pci's probe refuses a device without IOMMU group unless no-IOMMU mode is on.
    if (err.code === 'EINVAL' && !fs.existsSync(path.join(dev, 'iommu_group'))) {
      err.message += ` (${name} has no IOMMU group: turn no-IOMMU mode on first, Vfio.setNoIommuMode(true))`;
    }
    throw err;
  }
  return restore;
}
