/**
 * DRM devices (/dev/dri/card*, renderD*): the driver's version, buffer
 * objects (dumb buffers on any KMS/GEM driver; GEM_CREATE on amdgpu and
 * i915), PRIME export to and import from dma-bufs, and vgem's test fences.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { closedError, fromNative, invalidArgType, invalidArgValue, outOfRange, sysError, validateObject } from './errors';
import { Fd, type FdLike, toFd } from './handle';
import { ioc, ioctlSync, registerRequests } from './ioctl';
import { mmap, type Mapping, type Prot } from './mmap';
import { native } from './native';
import { DmaBuf } from './dmabuf';
import { ioctlNewFd } from './dmabuf-ioctl';

export const DRM_DIR = '/dev/dri';
const DRM_COMMAND_BASE = 0x40;

/** uapi drm/drm.h, drm/drm_mode.h, drm/vgem_drm.h, drm/amdgpu_drm.h, drm/i915_drm.h */
export const drmRequests = Object.freeze({
  DRM_IOCTL_GEM_CLOSE: ioc.iow('d', 0x09, 8),
  DRM_IOCTL_PRIME_HANDLE_TO_FD: ioc.iowr('d', 0x2d, 12),
  DRM_IOCTL_PRIME_FD_TO_HANDLE: ioc.iowr('d', 0x2e, 12),
  DRM_IOCTL_MODE_CREATE_DUMB: ioc.iowr('d', 0xb2, 32),
  DRM_IOCTL_MODE_MAP_DUMB: ioc.iowr('d', 0xb3, 16),
  DRM_IOCTL_VGEM_FENCE_ATTACH: ioc.iowr('d', DRM_COMMAND_BASE + 0x01, 16),
  DRM_IOCTL_VGEM_FENCE_SIGNAL: ioc.iow('d', DRM_COMMAND_BASE + 0x02, 8),
  DRM_IOCTL_AMDGPU_GEM_CREATE: ioc.iowr('d', DRM_COMMAND_BASE + 0x00, 32),
  DRM_IOCTL_I915_GEM_CREATE: ioc.iowr('d', DRM_COMMAND_BASE + 0x1b, 16),
});
// Driver-private numbers overlap between drivers: name them in errors
// explicitly (ioctlSync's `name`), register only the core ones.
registerRequests({
  DRM_IOCTL_GEM_CLOSE: drmRequests.DRM_IOCTL_GEM_CLOSE,
  DRM_IOCTL_PRIME_HANDLE_TO_FD: drmRequests.DRM_IOCTL_PRIME_HANDLE_TO_FD,
  DRM_IOCTL_PRIME_FD_TO_HANDLE: drmRequests.DRM_IOCTL_PRIME_FD_TO_HANDLE,
  DRM_IOCTL_MODE_CREATE_DUMB: drmRequests.DRM_IOCTL_MODE_CREATE_DUMB,
  DRM_IOCTL_MODE_MAP_DUMB: drmRequests.DRM_IOCTL_MODE_MAP_DUMB,
});

const C = native.dmabufConstants;
const U32_MAX = 0xffffffff;
const VGEM_FENCE_WRITE = 0x1;
const AMDGPU_GEM_DOMAIN: Readonly<Record<string, bigint>> = { gtt: 0x2n, vram: 0x4n };
const EOPNOTSUPP = 95;

/** A DRM device node. */
export interface DrmNodeInfo {
  /** `/dev/dri/card0` */
  path: string;
  /** 'primary' (card*, KMS and dumb buffers) or 'render' (renderD*, no modesetting). */
  type: 'primary' | 'render';
  /** The kernel driver, from sysfs (`vgem`, `amdgpu`, `i915`...), when known. */
  driver?: string;
}

/** What DRM_IOCTL_VERSION reports. */
export interface DrmVersion {
  /** The driver's name: `'vgem'`, `'amdgpu'`, `'i915'`... */
  name: string;
  major: number;
  minor: number;
  patchlevel: number;
  date: string;
  desc: string;
}

function driverOf(node: string): string | undefined {
  const device = path.join('/sys/class/drm', node, 'device');
  try {
    return path.basename(fs.readlinkSync(path.join(device, 'driver')));
  } catch {
    // vgem is a bare platform device named after the driver.
    try {
      return path.basename(fs.realpathSync(device)).replace(/\.\d+$/, '');
    } catch {
      return undefined;
    }
  }
}

function u32(name: string, v: unknown, min: number, caller: Function): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v, caller);
  if (!Number.isInteger(v) || v < min || v > U32_MAX) throw outOfRange(name, `an integer >= ${min} && <= ${U32_MAX}`, v, caller);
  return v;
}

function ioctlNamed(fd: number, request: number, arg: ArrayBufferView, name: string, caller: Function): void {
  try {
    ioctlSync(fd, request, arg, { name });
  } catch (e) {
    Error.captureStackTrace(e as Error, caller);
    throw e;
  }
}

/**
 * A GEM buffer object handle on one DrmDevice (a u32, not an fd). Close it
 * (GEM_CLOSE) when done; closing the device frees all of them.
 */
export class GemBuffer implements Disposable {
  readonly device: DrmDevice;
  readonly handle: number;
  /** Bytes. */
  readonly size: number;
  /** Bytes per row, for dumb buffers. */
  readonly pitch: number | undefined;
  #closed = false;

  /** @internal made by DrmDevice */
  constructor(device: DrmDevice, handle: number, size: number, pitch?: number) {
    this.device = device;
    this.handle = handle;
    this.size = size;
    this.pitch = pitch;
  }

  get closed(): boolean {
    return this.#closed || this.device.closed;
  }

  /**
   * Maps the buffer through the device (MODE_MAP_DUMB, then mmap of the
   * device fd): works for dumb buffers on card nodes. Zero copy.
   */
  map(options: { prot?: Prot } = {}): Mapping {
    validateObject(options, 'options', this.map);
    if (this.closed) throw closedError(`GemBuffer (handle ${this.handle})`, this.map);
    const arg = Buffer.alloc(16);
    arg.writeUInt32LE(this.handle, 0);
    ioctlNamed(this.device.fd, drmRequests.DRM_IOCTL_MODE_MAP_DUMB, arg, 'DRM_IOCTL_MODE_MAP_DUMB', this.map);
    const offset = arg.readBigUInt64LE(8);
    return mmap(this.device, this.size, { prot: options.prot ?? 'rw', offset, flags: 'shared' });
  }

  /** Exports the buffer as a dma-buf (PRIME); see DrmDevice.exportBuffer. */
  export(options: { rw?: boolean } = {}): DmaBuf {
    return this.device.exportBuffer(this, options);
  }

  /** GEM_CLOSE. Idempotent; does nothing once the device is closed. */
  close(): void {
    if (this.closed) {
      this.#closed = true;
      return;
    }
    this.#closed = true;
    const arg = Buffer.alloc(8);
    arg.writeUInt32LE(this.handle, 0);
    ioctlNamed(this.device.fd, drmRequests.DRM_IOCTL_GEM_CLOSE, arg, 'DRM_IOCTL_GEM_CLOSE', this.close);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export interface CreateDumbOptions {
  width: number;
  height: number;
  /** Bits per pixel. Default 32. */
  bpp?: number;
}

export interface CreateBufferOptions {
  /** amdgpu: where the buffer lives. Default 'gtt' (system memory the GPU reaches). */
  domain?: 'vram' | 'gtt';
}

/** An open DRM device. Open with `Drm.open()`. */
export class DrmDevice extends Fd {
  #version: DrmVersion | undefined;

  /** DRM_IOCTL_VERSION (cached). */
  version(): DrmVersion {
    if (this.#version !== undefined) return this.#version;
    try {
      this.#version = Object.freeze(native.drmVersion(this.fd));
    } catch (e) {
      throw fromNative(e, { request: 'DRM_IOCTL_VERSION' }, this.version);
    }
    return this.#version;
  }

  /** A dumb buffer (MODE_CREATE_DUMB): needs a card (primary) node. */
  createDumb(options: CreateDumbOptions): GemBuffer {
    validateObject(options, 'options', this.createDumb);
    const width = u32('options.width', options.width, 1, this.createDumb);
    const height = u32('options.height', options.height, 1, this.createDumb);
    const bpp = u32('options.bpp', options.bpp ?? 32, 1, this.createDumb);
    // struct drm_mode_create_dumb { __u32 height, width, bpp, flags; __u32 handle, pitch; __u64 size; }
    const arg = Buffer.alloc(32);
    arg.writeUInt32LE(height, 0);
    arg.writeUInt32LE(width, 4);
    arg.writeUInt32LE(bpp, 8);
    ioctlNamed(this.fd, drmRequests.DRM_IOCTL_MODE_CREATE_DUMB, arg, 'DRM_IOCTL_MODE_CREATE_DUMB', this.createDumb);
    return new GemBuffer(this, arg.readUInt32LE(16), Number(arg.readBigUInt64LE(24)), arg.readUInt32LE(20));
  }

  /**
   * A driver buffer object of `size` bytes: GEM_CREATE on amdgpu (in VRAM
   * or GTT) and i915. Other drivers throw EOPNOTSUPP naming the driver
   * (use createDumb() there).
   */
  createBuffer(size: number, options: CreateBufferOptions = {}): GemBuffer {
    if (typeof size !== 'number') throw invalidArgType('size', 'of type number', size, this.createBuffer);
    if (!Number.isSafeInteger(size) || size <= 0) throw outOfRange('size', `an integer > 0 && <= ${Number.MAX_SAFE_INTEGER}`, size, this.createBuffer);
    validateObject(options, 'options', this.createBuffer);
    const { domain = 'gtt' } = options;
    const driver = this.version().name;
    if (driver === 'amdgpu') {
      const d = AMDGPU_GEM_DOMAIN[domain as string];
      if (d === undefined) throw invalidArgValue('options.domain', domain, "must be 'vram' or 'gtt'", this.createBuffer);
      // union drm_amdgpu_gem_create { in: { __u64 bo_size, alignment, domains, domain_flags; } out: { __u32 handle; } }
      const arg = Buffer.alloc(32);
      arg.writeBigUInt64LE(BigInt(size), 0);
      arg.writeBigUInt64LE(4096n, 8);
      arg.writeBigUInt64LE(d, 16);
      ioctlNamed(this.fd, drmRequests.DRM_IOCTL_AMDGPU_GEM_CREATE, arg, 'DRM_IOCTL_AMDGPU_GEM_CREATE', this.createBuffer);
      return new GemBuffer(this, arg.readUInt32LE(0), size);
    }
    if (driver === 'i915') {
      // struct drm_i915_gem_create { __u64 size; __u32 handle; __u32 pad; }
      const arg = Buffer.alloc(16);
      arg.writeBigUInt64LE(BigInt(size), 0);
      ioctlNamed(this.fd, drmRequests.DRM_IOCTL_I915_GEM_CREATE, arg, 'DRM_IOCTL_I915_GEM_CREATE', this.createBuffer);
      return new GemBuffer(this, arg.readUInt32LE(8), Number(arg.readBigUInt64LE(0)));
    }
    const e = sysError(EOPNOTSUPP, 'ioctl', { fd: this.fd, request: 'GEM_CREATE' }, this.createBuffer);
    e.message = `EOPNOTSUPP: createBuffer() supports amdgpu and i915, not the '${driver}' driver (use createDumb() for a dumb buffer), ioctl GEM_CREATE`;
    throw e;
  }

  /** PRIME_HANDLE_TO_FD: the buffer as a dma-buf (read-write unless `rw: false`). */
  exportBuffer(buffer: GemBuffer | number, options: { rw?: boolean } = {}): DmaBuf {
    const handle = this.#handleOf(buffer, this.exportBuffer);
    validateObject(options, 'options', this.exportBuffer);
    const { rw = true } = options;
    if (typeof rw !== 'boolean') throw invalidArgType('options.rw', 'of type boolean', rw, this.exportBuffer);
    // struct drm_prime_handle { __u32 handle; __u32 flags; __s32 fd; }
    const arg = Buffer.alloc(12);
    arg.writeUInt32LE(handle, 0);
    arg.writeUInt32LE((C.O_CLOEXEC | (rw ? C.O_RDWR : 0)) >>> 0, 4);
    arg.writeInt32LE(-1, 8);
    return ioctlNewFd(DmaBuf, this.fd, drmRequests.DRM_IOCTL_PRIME_HANDLE_TO_FD, arg, 8, this.exportBuffer);
  }

  /**
   * PRIME_FD_TO_HANDLE: a dma-buf as a buffer object of this device. A
   * buffer this device exported comes back as its original handle (the
   * kernel dedups), so close only one of the two.
   */
  importBuffer(dmabuf: DmaBuf | FdLike): GemBuffer {
    const n = toFd(dmabuf, this.importBuffer);
    const arg = Buffer.alloc(12);
    arg.writeInt32LE(n, 8);
    ioctlNamed(this.fd, drmRequests.DRM_IOCTL_PRIME_FD_TO_HANDLE, arg, 'DRM_IOCTL_PRIME_FD_TO_HANDLE', this.importBuffer);
    const size = dmabuf instanceof DmaBuf ? dmabuf.size : fs.fstatSync(n).size;
    return new GemBuffer(this, arg.readUInt32LE(0), size);
  }

  /**
   * vgem only: attaches a new fence to the buffer (VGEM_FENCE_ATTACH) as a
   * writer (`write: true`) or reader; returns its id for vgemFenceSignal().
   * vgem signals it by itself after 10 s.
   */
  vgemFenceAttach(buffer: GemBuffer | number, options: { write?: boolean } = {}): number {
    const handle = this.#handleOf(buffer, this.vgemFenceAttach);
    validateObject(options, 'options', this.vgemFenceAttach);
    const { write = false } = options;
    if (typeof write !== 'boolean') throw invalidArgType('options.write', 'of type boolean', write, this.vgemFenceAttach);
    this.#requireDriver('vgem', 'vgemFenceAttach()', this.vgemFenceAttach);
    // struct drm_vgem_fence_attach { __u32 handle; __u32 flags; __u32 out_fence; __u32 pad; }
    const arg = Buffer.alloc(16);
    arg.writeUInt32LE(handle, 0);
    arg.writeUInt32LE(write ? VGEM_FENCE_WRITE : 0, 4);
    ioctlNamed(this.fd, drmRequests.DRM_IOCTL_VGEM_FENCE_ATTACH, arg, 'DRM_IOCTL_VGEM_FENCE_ATTACH', this.vgemFenceAttach);
    return arg.readUInt32LE(8);
  }

  /** vgem only: signals a fence from vgemFenceAttach() (VGEM_FENCE_SIGNAL). */
  vgemFenceSignal(fence: number): void {
    const id = u32('fence', fence, 0, this.vgemFenceSignal);
    this.#requireDriver('vgem', 'vgemFenceSignal()', this.vgemFenceSignal);
    // struct drm_vgem_fence_signal { __u32 fence; __u32 flags; }
    const arg = Buffer.alloc(8);
    arg.writeUInt32LE(id, 0);
    ioctlNamed(this.fd, drmRequests.DRM_IOCTL_VGEM_FENCE_SIGNAL, arg, 'DRM_IOCTL_VGEM_FENCE_SIGNAL', this.vgemFenceSignal);
  }

  #handleOf(buffer: unknown, caller: Function): number {
    if (buffer instanceof GemBuffer) {
      if (buffer.device !== this) throw invalidArgValue('buffer', `GemBuffer (handle ${buffer.handle})`, 'belongs to another DrmDevice', caller);
      if (buffer.closed) throw closedError(`GemBuffer (handle ${buffer.handle})`, caller);
      return buffer.handle;
    }
    if (typeof buffer === 'number') return u32('buffer', buffer, 0, caller);
    throw invalidArgType('buffer', 'an instance of GemBuffer or a handle number', buffer, caller);
  }

  #requireDriver(driver: string, what: string, caller: Function): void {
    const name = this.version().name;
    if (name === driver) return;
    const e = sysError(EOPNOTSUPP, 'ioctl', { fd: this.fd }, caller);
    e.message = `EOPNOTSUPP: ${what} needs the ${driver} driver, this device is '${name}', ioctl`;
    throw e;
  }
}

/** DRM devices: listing and opening. */
export const Drm = Object.freeze({
  /** The card and render nodes under /dev/dri, with their drivers. [] without DRM. */
  devices(): DrmNodeInfo[] {
    let names: string[];
    try {
      names = fs.readdirSync(DRM_DIR);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const nodes: DrmNodeInfo[] = [];
    for (const name of names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))) {
      const type = name.startsWith('renderD') ? 'render' : /^card\d+$/.test(name) ? 'primary' : undefined;
      if (type === undefined) continue;
      const node: DrmNodeInfo = { path: path.join(DRM_DIR, name), type };
      const driver = driverOf(name);
      if (driver !== undefined) node.driver = driver;
      nodes.push(node);
    }
    return nodes;
  },

  /**
   * Opens a DRM node read-write: `path`, or the first node of `driver`
   * (`{ driver: 'vgem' }`), or the first primary (card) node. Card nodes
   * can do everything here (dumb buffers need one); render nodes only
   * PRIME, fences and GEM_CREATE.
   */
  open(target?: string | { driver?: string; type?: 'primary' | 'render' }): DrmDevice {
    let p: string;
    if (typeof target === 'string') p = target;
    else {
      if (target !== undefined) validateObject(target, 'target', Drm.open);
      const { driver, type = 'primary' } = target ?? {};
      if (driver !== undefined && typeof driver !== 'string') throw invalidArgType('target.driver', 'of type string', driver, Drm.open);
      if (type !== 'primary' && type !== 'render') throw invalidArgValue('target.type', type, "must be 'primary' or 'render'", Drm.open);
      const nodes = Drm.devices();
      const node = nodes.find((n) => n.type === type && (driver === undefined || n.driver === driver));
      if (node === undefined) {
        const have = nodes.map((n) => `${n.path} (${n.driver ?? '?'})`).join(', ') || 'none';
        const e = sysError(2, 'open', { path: DRM_DIR }, Drm.open);
        e.message = `ENOENT: no ${type} DRM node${driver ? ` of driver '${driver}'` : ''} (have: ${have}), open '${DRM_DIR}'`;
        throw e;
      }
      p = node.path;
    }
    const dev = DrmDevice.open(p, fs.constants.O_RDWR | native.dmabufConstants.O_CLOEXEC) as DrmDevice;
    return dev;
  },
});
