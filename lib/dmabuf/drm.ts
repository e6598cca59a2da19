/**
 * DRM devices (/dev/dri/card*, renderD*): the driver's version, buffer
 * objects (dumb buffers on any KMS/GEM driver; GEM_CREATE on amdgpu and
 * i915), PRIME export to and import from dma-bufs, and vgem's test fences.
 */
import * as fs from 'node:fs';
import { closedError, fromNative, invalidArgType, invalidArgValue, outOfRange, sysError, validateObject } from '../core/errors';
import { Fd, type FdLike, hold, toFd } from '../core/handle';
import { type DrmNodeFacts, listDrmNodes, type DrmVersionProbe } from './drm-nodes';
import { ioc, ioctlSync, registerRequests } from '../core/ioctl';
import { mmap, type Mapping, type Prot } from '../core/mmap';
import { native } from '../core/native';
import { DmaBuf } from './dmabuf';
import { uapi } from '../core/uapi';
import { ioctlNewFd } from './dmabuf-ioctl';
import { adoptSyncobj, createHandle, type DrmSyncobj, importHandle } from './drm-syncobj';

export const DRM_DIR = '/dev/dri';
const DRM_COMMAND_BASE = 0x40;

/** uapi drm/drm.h, drm/drm_mode.h, drm/vgem_drm.h, drm/amdgpu_drm.h, drm/i915_drm.h */
export const drmRequests = Object.freeze({
  DRM_IOCTL_GEM_CLOSE: ioc.iow('d', 0x09, 8),
  DRM_IOCTL_GET_CAP: ioc.iowr('d', 0x0c, 16),
  DRM_IOCTL_SET_CLIENT_CAP: ioc.iow('d', 0x0d, 16),
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
  DRM_IOCTL_GET_CAP: drmRequests.DRM_IOCTL_GET_CAP,
  DRM_IOCTL_SET_CLIENT_CAP: drmRequests.DRM_IOCTL_SET_CLIENT_CAP,
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
/** A DRM node as `Drm.devices()` lists it (the internal facts, less the bare name). */
export type DrmNodeInfo = Omit<DrmNodeFacts, 'name'>;

/** What DRM_IOCTL_VERSION reports. */
export interface DrmVersion {
  /** The driver's name: `'vgem'`, `'amdgpu'`, `'i915'`... */
  name: string;
  major: number;
  minor: number;
  patchlevel: number;
  /** The driver's date; deprecated in the kernel, which reports `'0'` for drivers without one (vgem since 6.14). */
  date: string;
  desc: string;
}

/** DRM_CAP_* (uapi drm/drm.h): what DRM_IOCTL_GET_CAP answers. */
export const DRM_CAPS = Object.freeze({
  DUMB_BUFFER: 0x1, VBLANK_HIGH_CRTC: 0x2, DUMB_PREFERRED_DEPTH: 0x3, DUMB_PREFER_SHADOW: 0x4, PRIME: 0x5,
  TIMESTAMP_MONOTONIC: 0x6, ASYNC_PAGE_FLIP: 0x7, CURSOR_WIDTH: 0x8, CURSOR_HEIGHT: 0x9, ADDFB2_MODIFIERS: 0x10,
  PAGE_FLIP_TARGET: 0x11, CRTC_IN_VBLANK_EVENT: 0x12, SYNCOBJ: 0x13, SYNCOBJ_TIMELINE: 0x14, ATOMIC_ASYNC_PAGE_FLIP: 0x15,
});
export type DrmCap = keyof typeof DRM_CAPS;
/** DRM_CLIENT_CAP_* (uapi drm/drm.h): what DRM_IOCTL_SET_CLIENT_CAP turns on. */
export const DRM_CLIENT_CAPS = Object.freeze({
  STEREO_3D: 1, UNIVERSAL_PLANES: 2, ATOMIC: 3, ASPECT_RATIO: 4, WRITEBACK_CONNECTORS: 5, CURSOR_PLANE_HOTSPOT: 6,
});
export type DrmClientCap = keyof typeof DRM_CLIENT_CAPS;

/** A capability by name (of `table`) or number (a u64 the uapi may add later). */
function capNumber(name: string, v: unknown, table: Readonly<Record<string, number>>, caller: Function): bigint {
  if (typeof v === 'string') {
    if (!Object.hasOwn(table, v)) throw invalidArgValue(name, v, `must be one of ${Object.keys(table).join(', ')} or a number`, caller);
    return BigInt(table[v]);
  }
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'number') throw outOfRange(name, 'a safe integer >= 0', v, caller);
  throw invalidArgType(name, 'a capability name or a number', v, caller);
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

function gemClose(fd: number, handle: number, caller: Function): void {
  const arg = Buffer.alloc(8);
  arg.writeUInt32LE(handle, 0);
  ioctlNamed(fd, drmRequests.DRM_IOCTL_GEM_CLOSE, arg, 'DRM_IOCTL_GEM_CLOSE', caller);
}

/**
 * One GEM handle of one DrmDevice, shared by every GemBuffer object that
 * names it. The kernel keeps one handle per buffer object per open file
 * (PRIME import of a buffer the file already has returns the same number)
 * and does not count references: a single GEM_CLOSE frees it and the number
 * is reused. So, as Mesa's and libdrm_amdgpu's handle tables do, the handle
 * is closed once, when its last GemBuffer closes.
 */
interface GemEntry {
  readonly handle: number;
  /** The device's fd, open for as long as this entry holds the device (refs > 0). */
  readonly fd: number;
  readonly size: number;
  readonly pitch: number | undefined;
  /** GemBuffer objects holding this entry. */
  refs: number;
  /** False once GEM_CLOSEd, or once found closed behind our back (the number came back for a new buffer). */
  live: boolean;
  /** Releases the hold on the device (its close(2) waits for it). */
  unhold: () => void;
  readonly table: Map<number, GemEntry>;
  readonly device: DrmDevice;
}

function describeGem(entry: GemEntry): string {
  return `GemBuffer (handle ${entry.handle})`;
}

/** Drops one reference; the last one GEM_CLOSEs (unless the device is closing anyway) and releases the device. */
function unref(entry: GemEntry, caller: Function): void {
  if (--entry.refs > 0) return;
  if (entry.table.get(entry.handle) === entry) entry.table.delete(entry.handle);
  const wasLive = entry.live;
  entry.live = false;
  try {
    // A device that is closing frees every handle with its close(2), which
    // waits for this hold: no GEM_CLOSE needed.
    if (wasLive && !entry.device.closed) gemClose(entry.fd, entry.handle, caller);
  } finally {
    entry.unhold();
  }
}

// The GC backstop: a GemBuffer collected while open drops its reference,
// with a warning, like an Fd closed on garbage collection. The last one
// GEM_CLOSEs. (At the end of a worker or the process, no JS runs: the
// device's fd is closed natively, which frees all its handles.)
const gemFinalizer = new FinalizationRegistry<GemEntry>(function gcClose(entry) {
  const last = entry.refs === 1;
  process.emitWarning(
    last ? `Closing GEM handle ${entry.handle} on garbage collection` : `Dropping a reference to GEM handle ${entry.handle} on garbage collection`,
    {
      type: 'Warning',
      code: 'P2PDMA_GC_CLOSE',
      detail: "Its GemBuffer was garbage collected while open. Call close() on it, or declare it with 'using'.",
    },
  );
  try {
    unref(entry, gcClose);
  } catch (e) {
    const w = new Error(`GEM_CLOSE of ${describeGem(entry)} on garbage collection failed: ${(e as Error).message}`, { cause: e }) as Error & { code: string };
    w.name = 'Warning';
    w.code = 'P2PDMA_CLOSE_FAILED';
    process.emitWarning(w);
  }
});

/** Set by DrmDevice around `new GemBuffer()` for a handle the kernel just created. */
let creating = false;
/** The device's handle table and a hold on it (module-private accessors, set in DrmDevice's static block). */
let tableOf: (device: DrmDevice) => Map<number, GemEntry>;

/**
 * A GEM buffer object handle on one DrmDevice (a u32, not an fd). Every
 * GemBuffer naming one handle of one device shares it: importing a dma-buf
 * the device already has (its own export, or a second import) gives a new
 * GemBuffer for the same handle, and the handle is GEM_CLOSEd when the last
 * of them is closed. close() is idempotent per object.
 *
 * A GemBuffer is a child of its device (the handle model of lib/core/handle.ts):
 * closing the device while buffers are open makes the device read as closed
 * at once, but its fd (and so every handle on it) stays until the last
 * buffer is closed; the buffers keep working meanwhile. A GemBuffer
 * collected while open is closed with a `P2PDMA_GC_CLOSE` warning.
 */
export class GemBuffer implements Disposable {
  readonly device: DrmDevice;
  readonly handle: number;
  /** Bytes. */
  readonly size: number;
  /** Bytes per row, for dumb buffers. */
  readonly pitch: number | undefined;
  readonly #entry: GemEntry;
  #closed = false;

  /**
   * Takes a reference to GEM handle `handle` of `device` (which then owns
   * it: the last reference GEM_CLOSEs it). When the device already has a
   * GemBuffer for it, the new object shares that handle and its size and
   * pitch. Normally made by DrmDevice (createDumb, importBuffer...).
   */
  constructor(device: DrmDevice, handle: number, size: number, pitch?: number) {
    const fresh = creating;
    creating = false;
    if (!(device instanceof DrmDevice)) throw invalidArgType('device', 'an instance of DrmDevice', device, new.target);
    u32('handle', handle, 1, new.target);
    if (typeof size !== 'number') throw invalidArgType('size', 'of type number', size, new.target);
    if (!Number.isSafeInteger(size) || size < 0) throw outOfRange('size', `an integer >= 0 && <= ${Number.MAX_SAFE_INTEGER}`, size, new.target);
    if (pitch !== undefined) u32('pitch', pitch, 0, new.target);
    const fd = device.fd; // throws ERR_P2PDMA_CLOSED
    const table = tableOf(device);
    let entry = table.get(handle);
    if (entry !== undefined && fresh) {
      // The kernel handed out a number we still track: it was closed behind
      // our back. The old objects must never GEM_CLOSE the new buffer.
      entry.live = false;
      table.delete(handle);
      entry = undefined;
    }
    if (entry === undefined) {
      entry = { handle, fd, size, pitch, refs: 0, live: true, unhold: hold(device), table, device };
      table.set(handle, entry);
    }
    entry.refs++;
    this.#entry = entry;
    this.device = device;
    this.handle = handle;
    this.size = entry.size;
    this.pitch = entry.pitch;
    gemFinalizer.register(this, entry, this);
  }

  /** Whether this object was closed (or its handle was lost: see the class doc). */
  get closed(): boolean {
    return this.#closed || !this.#entry.live;
  }

  /** The device fd, for as long as this buffer holds it. */
  #fdFor(caller: Function): number {
    if (this.closed) throw closedError(describeGem(this.#entry), caller);
    return this.#entry.fd;
  }

  /**
   * Maps the buffer through the device (MODE_MAP_DUMB, then mmap of the
   * device fd): works for dumb buffers on card nodes. Zero copy.
   */
  map(options: { prot?: Prot } = {}): Mapping {
    validateObject(options, 'options', this.map);
    const fd = this.#fdFor(this.map);
    const arg = Buffer.alloc(16);
    arg.writeUInt32LE(this.handle, 0);
    ioctlNamed(fd, drmRequests.DRM_IOCTL_MODE_MAP_DUMB, arg, 'DRM_IOCTL_MODE_MAP_DUMB', this.map);
    const offset = arg.readBigUInt64LE(8);
    return mmap(fd, this.size, { prot: options.prot ?? 'rw', offset, flags: 'shared' });
  }

  /** Exports the buffer as a dma-buf (PRIME); see DrmDevice.exportBuffer. */
  export(options: { rw?: boolean } = {}): DmaBuf {
    const fd = this.#fdFor(this.export);
    return exportHandle(fd, this.handle, options, this.export);
  }

  /**
   * Drops this object's reference; GEM_CLOSE when it was the last one.
   * Idempotent. Throws GEM_CLOSE's error (the object is closed anyway).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    gemFinalizer.unregister(this);
    unref(this.#entry, this.close);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** PRIME_HANDLE_TO_FD on `fd`. */
function exportHandle(fd: number, handle: number, options: unknown, caller: Function): DmaBuf {
  validateObject(options, 'options', caller);
  const { rw = true } = options as { rw?: unknown };
  if (typeof rw !== 'boolean') throw invalidArgType('options.rw', 'of type boolean', rw, caller);
  // struct drm_prime_handle { __u32 handle; __u32 flags; __s32 fd; }
  const arg = Buffer.alloc(12);
  arg.writeUInt32LE(handle, 0);
  arg.writeUInt32LE((C.O_CLOEXEC | (rw ? C.O_RDWR : 0)) >>> 0, 4);
  arg.writeInt32LE(-1, 8);
  return ioctlNewFd(DmaBuf, fd, drmRequests.DRM_IOCTL_PRIME_HANDLE_TO_FD, arg, 8, caller);
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
  /** GEM handle -> its entry, for every handle a GemBuffer of this device holds. */
  readonly #gem = new Map<number, GemEntry>();

  static {
    tableOf = (device: DrmDevice) => device.#gem;
  }

  /** DRM_IOCTL_VERSION (cached). */
  version(): DrmVersion {
    const fd = this.#fdFor(this.version);
    if (this.#version !== undefined) return this.#version;
    try {
      this.#version = Object.freeze(native.drmVersion(fd));
    } catch (e) {
      throw fromNative(e, { request: 'DRM_IOCTL_VERSION' }, this.version);
    }
    return this.#version;
  }

  /**
   * DRM_IOCTL_GET_CAP: a device capability (`'PRIME'` gives the
   * DRM_PRIME_CAP_IMPORT/EXPORT bits, `'SYNCOBJ'` whether the driver has sync
   * objects). Drivers without modesetting (vgem, render-only GPUs) answer
   * only TIMESTAMP_MONOTONIC, PRIME, SYNCOBJ and SYNCOBJ_TIMELINE and fail
   * the rest with EOPNOTSUPP; an unknown cap is EINVAL.
   */
  getCap(cap: DrmCap | number): bigint {
    const n = capNumber('cap', cap, DRM_CAPS, this.getCap);
    const L = uapi.drm_get_cap;
    const arg = new BigUint64Array(L.size / 8);
    arg[L.fields.capability / 8] = n;
    ioctlNamed(this.#fdFor(this.getCap), drmRequests.DRM_IOCTL_GET_CAP, arg, 'DRM_IOCTL_GET_CAP', this.getCap);
    return arg[L.fields.value / 8];
  }

  /**
   * DRM_IOCTL_SET_CLIENT_CAP: opts this open file into a client capability
   * (`'ATOMIC'`, `'UNIVERSAL_PLANES'`...). Drivers without modesetting
   * (vgem, render-only GPUs) refuse every one with EOPNOTSUPP.
   */
  setClientCap(cap: DrmClientCap | number, value: bigint | number = 1n): void {
    const n = capNumber('cap', cap, DRM_CLIENT_CAPS, this.setClientCap);
    let v: bigint;
    if (typeof value === 'bigint' && value >= 0n && value < 2n ** 64n) v = value;
    else if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) v = BigInt(value);
    else if (typeof value === 'number' || typeof value === 'bigint') throw outOfRange('value', 'an integer >= 0 and < 2^64', value, this.setClientCap);
    else throw invalidArgType('value', 'of type bigint or number', value, this.setClientCap);
    const L = uapi.drm_set_client_cap;
    const arg = new BigUint64Array(L.size / 8);
    arg[L.fields.capability / 8] = n;
    arg[L.fields.value / 8] = v;
    ioctlNamed(this.#fdFor(this.setClientCap), drmRequests.DRM_IOCTL_SET_CLIENT_CAP, arg, 'DRM_IOCTL_SET_CLIENT_CAP', this.setClientCap);
  }

  /** this.fd, with `caller` in the stack of ERR_P2PDMA_CLOSED. */
  #fdFor(caller: Function): number {
    if (this.closed) throw closedError(`${this.constructor.name}`, caller);
    return this.fd;
  }

  /** A GemBuffer for a handle the kernel just created; GEM_CLOSE if that fails. */
  #adopt(handle: number, size: number, pitch: number | undefined, caller: Function): GemBuffer {
    creating = true;
    try {
      return new GemBuffer(this, handle, size, pitch);
    } catch (e) {
      creating = false;
      try {
        gemClose(this.fd, handle, caller);
      } catch {
        // the constructor's error is the one to report
      }
      Error.captureStackTrace(e as Error, caller);
      throw e;
    }
  }

  /** A dumb buffer (MODE_CREATE_DUMB): needs a card (primary) node. */
  createDumb(options: CreateDumbOptions): GemBuffer {
    validateObject(options, 'options', this.createDumb);
    const width = u32('options.width', options.width, 1, this.createDumb);
    const height = u32('options.height', options.height, 1, this.createDumb);
    const bpp = u32('options.bpp', options.bpp ?? 32, 1, this.createDumb);
    const fd = this.#fdFor(this.createDumb);
    // struct drm_mode_create_dumb { __u32 height, width, bpp, flags; __u32 handle, pitch; __u64 size; }
    const arg = Buffer.alloc(32);
    arg.writeUInt32LE(height, 0);
    arg.writeUInt32LE(width, 4);
    arg.writeUInt32LE(bpp, 8);
    ioctlNamed(fd, drmRequests.DRM_IOCTL_MODE_CREATE_DUMB, arg, 'DRM_IOCTL_MODE_CREATE_DUMB', this.createDumb);
    return this.#adopt(arg.readUInt32LE(16), Number(arg.readBigUInt64LE(24)), arg.readUInt32LE(20), this.createDumb);
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
    const d = typeof domain === 'string' && Object.hasOwn(AMDGPU_GEM_DOMAIN, domain) ? AMDGPU_GEM_DOMAIN[domain] : undefined;
    if (d === undefined) throw invalidArgValue('options.domain', domain, "must be 'vram' or 'gtt'", this.createBuffer);
    const fd = this.#fdFor(this.createBuffer);
    const driver = this.version().name;
    if (driver === 'amdgpu') {
      // union drm_amdgpu_gem_create { in: { __u64 bo_size, alignment, domains, domain_flags; } out: { __u32 handle; } }
      const arg = Buffer.alloc(32);
      arg.writeBigUInt64LE(BigInt(size), 0);
      arg.writeBigUInt64LE(4096n, 8);
      arg.writeBigUInt64LE(d, 16);
      ioctlNamed(fd, drmRequests.DRM_IOCTL_AMDGPU_GEM_CREATE, arg, 'DRM_IOCTL_AMDGPU_GEM_CREATE', this.createBuffer);
      return this.#adopt(arg.readUInt32LE(0), size, undefined, this.createBuffer);
    }
    if (driver === 'i915') {
      // struct drm_i915_gem_create { __u64 size; __u32 handle; __u32 pad; }
      const arg = Buffer.alloc(16);
      arg.writeBigUInt64LE(BigInt(size), 0);
      ioctlNamed(fd, drmRequests.DRM_IOCTL_I915_GEM_CREATE, arg, 'DRM_IOCTL_I915_GEM_CREATE', this.createBuffer);
      return this.#adopt(arg.readUInt32LE(8), Number(arg.readBigUInt64LE(0)), undefined, this.createBuffer);
    }
    const e = sysError(EOPNOTSUPP, 'ioctl', { fd, request: 'GEM_CREATE' }, this.createBuffer);
    e.message = `EOPNOTSUPP: createBuffer() supports amdgpu and i915, not the '${driver}' driver (use createDumb() for a dumb buffer), ioctl GEM_CREATE`;
    throw e;
  }

  /** PRIME_HANDLE_TO_FD: the buffer as a dma-buf (read-write unless `rw: false`). */
  exportBuffer(buffer: GemBuffer | number, options: { rw?: boolean } = {}): DmaBuf {
    const handle = this.#handleOf(buffer, this.exportBuffer);
    return exportHandle(this.#fdFor(this.exportBuffer), handle, options, this.exportBuffer);
  }

  /**
   * PRIME_FD_TO_HANDLE: a dma-buf as a buffer object of this device. A
   * dma-buf this device already has (its own export, or one imported
   * before) comes back as the same handle, which the kernel does not count:
   * the new GemBuffer shares it with the others, and GEM_CLOSE runs when the
   * last of them is closed. Close each one.
   */
  importBuffer(dmabuf: DmaBuf | FdLike): GemBuffer {
    const n = toFd(dmabuf, this.importBuffer);
    const fd = this.#fdFor(this.importBuffer);
    // struct drm_prime_handle { __u32 handle; __u32 flags; __s32 fd; }
    const arg = Buffer.alloc(12);
    arg.writeInt32LE(n, 8);
    ioctlNamed(fd, drmRequests.DRM_IOCTL_PRIME_FD_TO_HANDLE, arg, 'DRM_IOCTL_PRIME_FD_TO_HANDLE', this.importBuffer);
    const handle = arg.readUInt32LE(0);
    const known = this.#gem.get(handle);
    if (known !== undefined && known.live) return new GemBuffer(this, handle, known.size, known.pitch);
    let size: number;
    try {
      size = dmabuf instanceof DmaBuf ? dmabuf.size : fs.fstatSync(n).size;
    } catch (e) {
      try {
        gemClose(fd, handle, this.importBuffer);
      } catch {
        // report the first error
      }
      Error.captureStackTrace(e as Error, this.importBuffer);
      throw e;
    }
    return this.#adopt(handle, size, undefined, this.importBuffer);
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
    ioctlNamed(this.#fdFor(this.vgemFenceAttach), drmRequests.DRM_IOCTL_VGEM_FENCE_ATTACH, arg, 'DRM_IOCTL_VGEM_FENCE_ATTACH', this.vgemFenceAttach);
    return arg.readUInt32LE(8);
  }

  /** vgem only: signals a fence from vgemFenceAttach() (VGEM_FENCE_SIGNAL). */
  vgemFenceSignal(fence: number): void {
    const id = u32('fence', fence, 0, this.vgemFenceSignal);
    this.#requireDriver('vgem', 'vgemFenceSignal()', this.vgemFenceSignal);
    // struct drm_vgem_fence_signal { __u32 fence; __u32 flags; }
    const arg = Buffer.alloc(8);
    arg.writeUInt32LE(id, 0);
    ioctlNamed(this.#fdFor(this.vgemFenceSignal), drmRequests.DRM_IOCTL_VGEM_FENCE_SIGNAL, arg, 'DRM_IOCTL_VGEM_FENCE_SIGNAL', this.vgemFenceSignal);
  }

  /**
   * A new DRM sync object (SYNCOBJ_CREATE), unsignalled unless `signaled`.
   * Drivers without DRIVER_SYNCOBJ (vgem) throw EOPNOTSUPP naming the driver.
   */
  createSyncobj(options: { signaled?: boolean } = {}): DrmSyncobj {
    validateObject(options, 'options', this.createSyncobj);
    const { signaled = false } = options;
    if (typeof signaled !== 'boolean') throw invalidArgType('options.signaled', 'of type boolean', signaled, this.createSyncobj);
    const handle = createHandle(this, this.#fdFor(this.createSyncobj), signaled, this.createSyncobj);
    return adoptSyncobj(this, handle, this.createSyncobj);
  }

  /**
   * A sync object from a syncobj fd (`DrmSyncobj.export()`, here or in
   * another process): SYNCOBJ_FD_TO_HANDLE. The fd stays the caller's.
   */
  importSyncobj(fd: FdLike): DrmSyncobj {
    const n = toFd(fd, this.importSyncobj);
    const handle = importHandle(this, this.#fdFor(this.importSyncobj), n, this.importSyncobj);
    return adoptSyncobj(this, handle, this.importSyncobj);
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

/** Options for listing DRM nodes (tests point them at a fake tree). */
export interface DrmDevicesOptions {
  /** Where /dev is. Default `'/dev'`. */
  devDir?: string;
  /** Where /sys is. Default `'/sys'`. */
  sysDir?: string;
}

function toNodeListOptions(options: unknown, caller: Function): { devDir: string; sysDir: string } {
  validateObject(options, 'options', caller);
  const { devDir = '/dev', sysDir = '/sys' } = options as DrmDevicesOptions;
  for (const [name, v] of [['devDir', devDir], ['sysDir', sysDir]] as const) {
    if (typeof v !== 'string') throw invalidArgType(`options.${name}`, 'of type string', v, caller);
    if (v.includes('\0')) throw invalidArgValue(`options.${name}`, v, 'must not contain null bytes', caller);
  }
  return { devDir, sysDir };
}

/** Drm.devices() with an injectable DRM_IOCTL_VERSION probe (host tests). @internal */
export function drmDevices(options: DrmDevicesOptions = {}, probe?: DrmVersionProbe): DrmNodeInfo[] {
  const o = toNodeListOptions(options, Drm.devices);
  return listDrmNodes({ ...o, probe }).map(({ name: _name, ...info }) => info);
}

/** DRM devices: listing and opening. */
export const Drm = Object.freeze({
  /**
   * The card and render nodes under /dev/dri, with their drivers. [] without
   * DRM. The driver is what DRM_IOCTL_VERSION says (each device's render
   * node, else its card node, is opened read-only and asked); sysfs adds
   * the device's place and bus, and names the driver when the node cannot be
   * opened (`driverFrom: 'sysfs'`).
   */
  devices(options: DrmDevicesOptions = {}): DrmNodeInfo[] {
    return drmDevices(options);
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
