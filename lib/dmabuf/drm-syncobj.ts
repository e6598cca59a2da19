/**
 * DRM sync objects (uapi drm/drm.h, DRM_IOCTL_SYNCOBJ_*): a container for a
 * dma-fence, or with timeline points a sequence of them, named by a u32
 * handle on one open DRM file. Today's explicit-sync currency between Mesa,
 * compositors and the kernel. Drivers opt in (DRIVER_SYNCOBJ, and
 * DRIVER_SYNCOBJ_TIMELINE for points): virtio-gpu and the GPU drivers have
 * them; vgem has not, and every call there is EOPNOTSUPP.
 *
 * Waiting: `wait()` registers an eventfd with DRM_IOCTL_SYNCOBJ_EVENTFD
 * (Linux 6.6) and polls it on the event loop (lib/core/poll.ts), so no
 * thread-pool thread is parked, an abort or close() stops the wait at once
 * (the kernel drops its entry when the fence signals or the object goes),
 * and a thousand waits cost a thousand eventfds, not threads. A wait on the
 * thread pool (SYNCOBJ_WAIT with a timeout) could not be interrupted: an
 * abort would still hold a pool thread until the timeout. `waitSync()` is
 * the kernel's blocking SYNCOBJ_WAIT / TIMELINE_WAIT.
 */
import { abortError, closedError, fromNative, illegalConstructor, invalidArgType, invalidArgValue, outOfRange, type SystemError, validateObject } from '../core/errors';
import { Fd, type FdLike, hold, toFd } from '../core/handle';
import { eventfd, type EventFd } from '../core/eventfd';
import { ioc, ioctlSync, registerRequests } from '../core/ioctl';
import { native } from '../core/native';
import { pollOnce } from '../core/poll';
import { uapi } from '../core/uapi';
import { type AccessMode, DmaBuf } from './dmabuf';
import { ioctlNewFd } from './dmabuf-ioctl';
import { SyncFile } from './sync-file';
import type { DrmDevice } from './drm';

/** `struct drm_syncobj_eventfd { __u32 handle, flags; __u64 point; __s32 fd; __u32 pad; }` (6.6; not in Debian 12's libdrm-dev, so not in lib/core/uapi.ts) */
const EVENTFD_LAYOUT = { size: 24, fields: { handle: 0, flags: 4, point: 8, fd: 16 } };

/** uapi drm/drm.h */
export const syncobjRequests = Object.freeze({
  DRM_IOCTL_SYNCOBJ_CREATE: ioc.iowr('d', 0xbf, uapi.drm_syncobj_create.size),
  DRM_IOCTL_SYNCOBJ_DESTROY: ioc.iowr('d', 0xc0, uapi.drm_syncobj_destroy.size),
  DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD: ioc.iowr('d', 0xc1, uapi.drm_syncobj_handle.size),
  DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE: ioc.iowr('d', 0xc2, uapi.drm_syncobj_handle.size),
  DRM_IOCTL_SYNCOBJ_WAIT: ioc.iowr('d', 0xc3, 40),
  DRM_IOCTL_SYNCOBJ_RESET: ioc.iowr('d', 0xc4, 16),
  DRM_IOCTL_SYNCOBJ_SIGNAL: ioc.iowr('d', 0xc5, 16),
  DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT: ioc.iowr('d', 0xca, 48),
  DRM_IOCTL_SYNCOBJ_QUERY: ioc.iowr('d', 0xcb, 24),
  DRM_IOCTL_SYNCOBJ_TRANSFER: ioc.iowr('d', 0xcc, uapi.drm_syncobj_transfer.size),
  DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL: ioc.iowr('d', 0xcd, 24),
  DRM_IOCTL_SYNCOBJ_EVENTFD: ioc.iowr('d', 0xcf, EVENTFD_LAYOUT.size),
});
registerRequests(syncobjRequests);

const CREATE_SIGNALED = 1;
const IMPORT_SYNC_FILE = 1;
const EXPORT_SYNC_FILE = 1;
const WAIT_FOR_SUBMIT = 1 << 1;
const WAIT_AVAILABLE = 1 << 2;
const QUERY_LAST_SUBMITTED = 1;
const EOPNOTSUPP = 95;
const ETIMEDOUT = 110;
const U64_MAX = 2n ** 64n - 1n;
const TIMEOUT_MAX = 0x7fffffff;

/** The device side a DrmSyncobj needs (DrmDevice; a type here, so no import cycle). @internal */
export interface SyncobjOwner extends Fd {
  version(): { name: string };
}

/** A timeline point: a u64 as bigint, or a safe integer. 0 is the binary fence. */
export type SyncobjPoint = bigint | number;

export interface SyncobjWaitOptions {
  /** The timeline point to wait for. Default 0n: the object's (binary) fence. */
  point?: SyncobjPoint;
  /**
   * Wait only until a fence exists for the point (submitted), not until it
   * signals (DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE). Default false.
   */
  available?: boolean;
  /** Rejects (throws) with ETIME, as the kernel's SYNCOBJ_WAIT does, after this many ms (0..2^31-1). Default: no limit. */
  timeoutMs?: number;
  /** Aborting rejects with an AbortError and ends the wait. */
  signal?: AbortSignal;
}

/** A sync file or dma-buf operation on one point. */
export interface SyncobjPointOptions {
  /** Default 0n: the object's (binary) fence. */
  point?: SyncobjPoint;
}

/** A DrmSyncobj for a handle the kernel just created on `device`; destroys the handle if that fails. @internal */
export function adoptSyncobj(device: SyncobjOwner, handle: number, caller: Function): DrmSyncobj {
  try {
    return new DrmSyncobj(MAKE, device, handle);
  } catch (e) {
    try {
      destroyHandle(device, device.fd, handle, caller);
    } catch {
      // report the first error
    }
    throw e;
  }
}

/** What makes `new DrmSyncobj()` legal: module-private. */
const MAKE = Symbol('DrmSyncobj');

interface Held {
  handle: number;
  fd: number;
  device: SyncobjOwner;
  release: () => void;
}

// The GC backstop, as GemBuffer's: destroys the handle with a warning (a
// closing device's close(2) frees it instead), then releases the device.
const finalizer = new FinalizationRegistry<Held>(function gcClose(held) {
  process.emitWarning(`Destroying DRM sync object ${held.handle} on garbage collection`, {
    type: 'Warning',
    code: 'P2PDMA_GC_CLOSE',
    detail: "Its DrmSyncobj was garbage collected while open. Call close() on it, or declare it with 'using'.",
  });
  try {
    if (!held.device.closed) destroyHandle(held.device, held.fd, held.handle, gcClose);
  } catch (e) {
    const w = new Error(`SYNCOBJ_DESTROY of DRM sync object ${held.handle} on garbage collection failed: ${(e as Error).message}`, { cause: e }) as Error & { code: string };
    w.name = 'Warning';
    w.code = 'P2PDMA_CLOSE_FAILED';
    process.emitWarning(w);
  } finally {
    held.release();
  }
});

function toPoint(name: string, v: unknown, caller: Function): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) throw outOfRange(name, `>= 0n && <= ${U64_MAX}n`, v, caller);
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw outOfRange(name, 'a safe integer >= 0 (larger points as bigint)', v, caller);
    return BigInt(v);
  }
  throw invalidArgType(name, 'of type bigint or number', v, caller);
}

function optPoint(options: unknown, caller: Function): bigint {
  validateObject(options, 'options', caller);
  const { point } = options as SyncobjPointOptions;
  return point === undefined ? 0n : toPoint('options.point', point, caller);
}

function optBool(options: object, name: string, caller: Function): boolean {
  const v = (options as Record<string, unknown>)[name];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw invalidArgType(`options.${name}`, 'of type boolean', v, caller);
  return v;
}

function toMode(mode: unknown, caller: Function): void {
  if (mode !== 'read' && mode !== 'write' && mode !== 'rw') throw invalidArgValue('mode', mode, "must be 'read', 'write' or 'rw'", caller);
}

function toTimeout(v: unknown, caller: Function): number {
  if (v === undefined) return -1;
  if (typeof v !== 'number') throw invalidArgType('options.timeoutMs', 'of type number', v, caller);
  if (!Number.isInteger(v) || v < 0 || v > TIMEOUT_MAX) throw outOfRange('options.timeoutMs', `an integer >= 0 && <= ${TIMEOUT_MAX}`, v, caller);
  return v;
}

/** Rewords a driver's EOPNOTSUPP: which driver lacks sync objects, and which have them. */
function noSyncobj(e: unknown, owner: SyncobjOwner, what: string): unknown {
  const err = e as SystemError;
  if (err?.errno !== -EOPNOTSUPP) return e;
  let driver = '?';
  try {
    driver = owner.version().name;
  } catch {
    // keep '?'
  }
  err.message =
    `EOPNOTSUPP: the '${driver}' driver has no DRM ${what} (DRIVER_SYNCOBJ${what === 'sync objects' ? '' : '_TIMELINE'}); ` +
    `virtio-gpu and GPU drivers (amdgpu, i915, xe, nouveau, msm...) have them, ioctl ${err.request ?? ''}`.trimEnd();
  return err;
}

function call(owner: SyncobjOwner, fd: number, request: number, arg: ArrayBufferView, name: string, caller: Function): void {
  try {
    ioctlSync(fd, request, arg, { name });
  } catch (e) {
    Error.captureStackTrace(e as Error, caller);
    throw noSyncobj(e, owner, name.includes('TIMELINE') || name.includes('EVENTFD') || name.includes('QUERY') ? 'timeline sync objects' : 'sync objects');
  }
}

function callNative(owner: SyncobjOwner, request: string, caller: Function, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    const err = fromNative(e, { request }, caller);
    throw noSyncobj(err, owner, request.includes('TIMELINE') || request.includes('QUERY') ? 'timeline sync objects' : 'sync objects');
  }
}

/** SYNCOBJ_CREATE on `owner`: the new handle. @internal */
export function createHandle(owner: SyncobjOwner, fd: number, signaled: boolean, caller: Function): number {
  const L = uapi.drm_syncobj_create;
  const arg = Buffer.alloc(L.size);
  arg.writeUInt32LE(signaled ? CREATE_SIGNALED : 0, L.fields.flags);
  call(owner, fd, syncobjRequests.DRM_IOCTL_SYNCOBJ_CREATE, arg, 'DRM_IOCTL_SYNCOBJ_CREATE', caller);
  return arg.readUInt32LE(L.fields.handle);
}

function destroyHandle(owner: SyncobjOwner, fd: number, handle: number, caller: Function): void {
  const L = uapi.drm_syncobj_destroy;
  const arg = Buffer.alloc(L.size);
  arg.writeUInt32LE(handle, L.fields.handle);
  call(owner, fd, syncobjRequests.DRM_IOCTL_SYNCOBJ_DESTROY, arg, 'DRM_IOCTL_SYNCOBJ_DESTROY', caller);
}

/** A struct drm_syncobj_handle for HANDLE_TO_FD / FD_TO_HANDLE (fd -1: none yet). */
function handleArg(handle: number, flags: number, fd: number): Buffer {
  const L = uapi.drm_syncobj_handle;
  const arg = Buffer.alloc(L.size);
  arg.writeUInt32LE(handle, L.fields.handle);
  arg.writeUInt32LE(flags, L.fields.flags);
  arg.writeInt32LE(fd, L.fields.fd);
  return arg;
}

/** SYNCOBJ_FD_TO_HANDLE of a syncobj fd (another file's export): the new handle. @internal */
export function importHandle(owner: SyncobjOwner, fd: number, source: number, caller: Function): number {
  const arg = handleArg(0, 0, source);
  call(owner, fd, syncobjRequests.DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, arg, 'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE', caller);
  return arg.readUInt32LE(uapi.drm_syncobj_handle.fields.handle);
}

/**
 * A DRM sync object of one DrmDevice (`device.createSyncobj()`,
 * `device.importSyncobj()`). A child of its device, as a GemBuffer is:
 * closing the device first makes the device read as closed at once, but
 * its fd stays, and this object keeps working, until the object is closed
 * too. close() destroys the
 * handle (SYNCOBJ_DESTROY) and ends pending waits with ERR_P2PDMA_CLOSED.
 * One collected while open releases the device with a `P2PDMA_GC_CLOSE`
 * warning (the handle goes with the device's fd).
 */
export class DrmSyncobj implements Disposable {
  /** The device whose open file holds the handle. */
  readonly device: DrmDevice;
  /** The u32 handle on the device's open file. */
  readonly handle: number;
  #closed = false;
  readonly #fd: number;
  readonly #release: () => void;
  /** The eventfds of pending wait()s: close() closes them, which ends the waits. */
  readonly #waits = new Set<EventFd>();

  /** @internal Made by DrmDevice: throws ERR_ILLEGAL_CONSTRUCTOR otherwise. */
  constructor(token: symbol, device: SyncobjOwner, handle: number) {
    if (token !== MAKE) throw illegalConstructor(new.target);
    this.device = device as DrmDevice; // only DrmDevice makes one
    this.handle = handle;
    this.#fd = device.fd;
    this.#release = hold(device);
    finalizer.register(this, { handle, fd: this.#fd, device, release: this.#release }, this);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #fdFor(caller: Function): number {
    if (this.closed) throw closedError(`DrmSyncobj (handle ${this.handle})`, caller);
    return this.#fd;
  }

  /**
   * Resolves when the fence at `options.point` has signalled (or with
   * `available`, once one exists). A point with no fence yet is waited for
   * until one is submitted. Rejects with ETIME (the kernel's SYNCOBJ_WAIT
   * answer, asked once more when the time is up) after `timeoutMs`, an
   * AbortError on `signal`, ERR_P2PDMA_CLOSED when this object is closed
   * meanwhile. Needs DRIVER_SYNCOBJ_TIMELINE and Linux 6.6
   * (DRM_IOCTL_SYNCOBJ_EVENTFD).
   */
  async wait(options: SyncobjWaitOptions = {}): Promise<void> {
    const point = optPoint(options, this.wait);
    const available = optBool(options, 'available', this.wait);
    const timeoutMs = toTimeout(options.timeoutMs, this.wait);
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, this.wait);
    if (signal?.aborted) throw abortError(signal.reason, this.wait);
    const fd = this.#fdFor(this.wait);
    using ev = eventfd();
    const arg = Buffer.alloc(EVENTFD_LAYOUT.size);
    arg.writeUInt32LE(this.handle, EVENTFD_LAYOUT.fields.handle);
    arg.writeUInt32LE(available ? WAIT_AVAILABLE : 0, EVENTFD_LAYOUT.fields.flags);
    arg.writeBigUInt64LE(point, EVENTFD_LAYOUT.fields.point);
    arg.writeInt32LE(ev.fd, EVENTFD_LAYOUT.fields.fd);
    call(this.device, fd, syncobjRequests.DRM_IOCTL_SYNCOBJ_EVENTFD, arg, 'DRM_IOCTL_SYNCOBJ_EVENTFD', this.wait);
    this.#waits.add(ev);
    try {
      await pollOnce(ev, { events: 'read', signal, timeoutMs: timeoutMs < 0 ? undefined : timeoutMs });
    } catch (e) {
      // close() closed the eventfd: name this object, not the eventfd.
      if (this.#closed) throw closedError(`DrmSyncobj (handle ${this.handle})`, this.wait);
      if ((e as SystemError).errno !== -ETIMEDOUT) throw e;
      // Time is up: the kernel's own non-blocking check decides (ETIME, or
      // done if the fence signalled in between).
      this.#waitNow(point, available, 0, this.wait);
    } finally {
      this.#waits.delete(ev);
    }
  }

  /**
   * The blocking form of wait(): SYNCOBJ_WAIT (point 0) or TIMELINE_WAIT on
   * this thread, waiting for submission too. Throws ETIME after `timeoutMs`.
   */
  waitSync(options: Omit<SyncobjWaitOptions, 'signal'> = {}): void {
    const point = optPoint(options, this.waitSync);
    const available = optBool(options, 'available', this.waitSync);
    const timeoutMs = toTimeout(options.timeoutMs, this.waitSync);
    this.#waitNow(point, available, timeoutMs, this.waitSync);
  }

  #waitNow(point: bigint, available: boolean, timeoutMs: number, caller: Function): void {
    const fd = this.#fdFor(caller);
    const handles = Uint32Array.of(this.handle);
    const flags = WAIT_FOR_SUBMIT | (available ? WAIT_AVAILABLE : 0);
    const timeline = point !== 0n || available;
    const request = timeline ? 'DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT' : 'DRM_IOCTL_SYNCOBJ_WAIT';
    callNative(this.device, request, caller, () => native.drmSyncobjWait(fd, handles, timeline ? BigUint64Array.of(point) : undefined, timeoutMs, flags));
  }

  /**
   * Signals: with no point, replaces the fence with a signalled one
   * (SYNCOBJ_SIGNAL); with a point, adds that signalled point to the
   * timeline (TIMELINE_SIGNAL; a point at or below the last one is allowed
   * by the kernel but breaks the timeline's order).
   */
  signal(options: SyncobjPointOptions = {}): void {
    const point = optPoint(options, this.signal);
    const fd = this.#fdFor(this.signal);
    const handles = Uint32Array.of(this.handle);
    if (point === 0n) {
      callNative(this.device, 'DRM_IOCTL_SYNCOBJ_SIGNAL', this.signal, () => native.drmSyncobjSignal(fd, handles));
    } else {
      callNative(this.device, 'DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL', this.signal, () => native.drmSyncobjTimelineSignal(fd, handles, BigUint64Array.of(point), 0));
    }
  }

  /** Drops the fence (SYNCOBJ_RESET): unsignalled, waits wait for a new submission. */
  reset(): void {
    const fd = this.#fdFor(this.reset);
    callNative(this.device, 'DRM_IOCTL_SYNCOBJ_RESET', this.reset, () => native.drmSyncobjReset(fd, Uint32Array.of(this.handle)));
  }

  /**
   * The timeline's last signalled point (SYNCOBJ_QUERY), or with
   * `lastSubmitted` the last point that has a fence.
   */
  query(options: { lastSubmitted?: boolean } = {}): bigint {
    validateObject(options, 'options', this.query);
    const last = optBool(options, 'lastSubmitted', this.query);
    const fd = this.#fdFor(this.query);
    const points = new BigUint64Array(1);
    callNative(this.device, 'DRM_IOCTL_SYNCOBJ_QUERY', this.query, () =>
      native.drmSyncobjQuery(fd, Uint32Array.of(this.handle), points, last ? QUERY_LAST_SUBMITTED : 0),
    );
    return points[0];
  }

  /**
   * Copies the fence of `source` at `options.sourcePoint` (default 0n, its
   * binary fence) into this object at `options.point` (default 0n: replaces
   * the binary fence; else adds the point to the timeline). SYNCOBJ_TRANSFER;
   * both objects must be of one device. The source needs a fence there (EINVAL).
   */
  transfer(source: DrmSyncobj, options: { point?: SyncobjPoint; sourcePoint?: SyncobjPoint } = {}): void {
    if (!(source instanceof DrmSyncobj)) throw invalidArgType('source', 'an instance of DrmSyncobj', source, this.transfer);
    const point = optPoint(options, this.transfer);
    const { sourcePoint } = options;
    const from = sourcePoint === undefined ? 0n : toPoint('options.sourcePoint', sourcePoint, this.transfer);
    if (source.device !== this.device) throw invalidArgValue('source', `DrmSyncobj (handle ${source.handle})`, 'belongs to another DrmDevice', this.transfer);
    if (source.closed) throw closedError(`DrmSyncobj (handle ${source.handle})`, this.transfer);
    this.#transfer(source.handle, from, this.handle, point, this.transfer);
  }

  #transfer(src: number, srcPoint: bigint, dst: number, dstPoint: bigint, caller: Function): void {
    const L = uapi.drm_syncobj_transfer;
    const arg = Buffer.alloc(L.size);
    arg.writeUInt32LE(src, L.fields.src_handle);
    arg.writeUInt32LE(dst, L.fields.dst_handle);
    arg.writeBigUInt64LE(srcPoint, L.fields.src_point);
    arg.writeBigUInt64LE(dstPoint, L.fields.dst_point);
    call(this.device, this.#fdFor(caller), syncobjRequests.DRM_IOCTL_SYNCOBJ_TRANSFER, arg, 'DRM_IOCTL_SYNCOBJ_TRANSFER', caller);
  }

  /** A temporary binary syncobj on the device, for a point's sync_file (6.12 has no TIMELINE flag on HANDLE_TO_FD). */
  #withTemp<T>(caller: Function, body: (tmp: number) => T): T {
    const fd = this.#fdFor(caller);
    const tmp = createHandle(this.device, fd, false, caller);
    try {
      return body(tmp);
    } finally {
      destroyHandle(this.device, fd, tmp, caller);
    }
  }

  /**
   * The fence at `options.point` as a sync_file (HANDLE_TO_FD with
   * EXPORT_SYNC_FILE; a point goes through a temporary object and
   * SYNCOBJ_TRANSFER). EINVAL when there is no fence there yet.
   */
  exportSyncFile(options: SyncobjPointOptions = {}): SyncFile {
    const point = optPoint(options, this.exportSyncFile);
    const exportOf = (handle: number): SyncFile => {
      const arg = handleArg(handle, EXPORT_SYNC_FILE, -1);
      try {
        return ioctlNewFd(SyncFile, this.#fdFor(this.exportSyncFile), syncobjRequests.DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, arg, uapi.drm_syncobj_handle.fields.fd, this.exportSyncFile);
      } catch (e) {
        throw noSyncobj(e, this.device, 'sync objects');
      }
    };
    if (point === 0n) return exportOf(this.handle);
    return this.#withTemp(this.exportSyncFile, (tmp) => {
      this.#transfer(this.handle, point, tmp, 0n, this.exportSyncFile);
      return exportOf(tmp);
    });
  }

  /**
   * Puts a sync_file's fence into this object at `options.point` (default:
   * replaces the binary fence). FD_TO_HANDLE with IMPORT_SYNC_FILE; a point
   * goes through a temporary object and SYNCOBJ_TRANSFER.
   */
  importSyncFile(syncFile: SyncFile | FdLike, options: SyncobjPointOptions = {}): void {
    const sf = toFd(syncFile, this.importSyncFile);
    const point = optPoint(options, this.importSyncFile);
    const importInto = (handle: number): void => {
      call(this.device, this.#fdFor(this.importSyncFile), syncobjRequests.DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, handleArg(handle, IMPORT_SYNC_FILE, sf), 'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE', this.importSyncFile);
    };
    if (point === 0n) return importInto(this.handle);
    this.#withTemp(this.importSyncFile, (tmp) => {
      importInto(tmp);
      this.#transfer(tmp, 0n, this.handle, point, this.importSyncFile);
    });
  }

  /**
   * Takes a dma-buf's implicit fences into this object at `options.point`:
   * 'read' the fences a reader waits for (writers), 'write'/'rw' all of them
   * (DMA_BUF_IOCTL_EXPORT_SYNC_FILE, then importSyncFile()).
   */
  importDmaBufFences(dmabuf: DmaBuf, mode: AccessMode, options: SyncobjPointOptions = {}): void {
    const buf = this.#dmabuf(dmabuf, this.importDmaBufFences);
    toMode(mode, this.importDmaBufFences);
    optPoint(options, this.importDmaBufFences);
    this.#fdFor(this.importDmaBufFences);
    using sf = buf.exportSyncFile(mode);
    this.importSyncFile(sf, options);
  }

  /**
   * Adds the fence at `options.point` to a dma-buf's implicit fences, as a
   * reader's ('read': later writers wait) or a writer's ('write'/'rw':
   * everyone waits): exportSyncFile(), then DMA_BUF_IOCTL_IMPORT_SYNC_FILE.
   */
  exportToDmaBuf(dmabuf: DmaBuf, mode: AccessMode, options: SyncobjPointOptions = {}): void {
    const buf = this.#dmabuf(dmabuf, this.exportToDmaBuf);
    toMode(mode, this.exportToDmaBuf);
    using sf = this.exportSyncFile(options);
    buf.importSyncFile(sf, mode);
  }

  #dmabuf(v: unknown, caller: Function): DmaBuf {
    if (!(v instanceof DmaBuf)) throw invalidArgType('dmabuf', 'an instance of DmaBuf', v, caller);
    if (v.closed) throw closedError(v.constructor.name, caller);
    return v;
  }

  /**
   * The object as a syncobj fd (HANDLE_TO_FD) for another process or DRM
   * file: `device.importSyncobj(fd)` there gives the same kernel object.
   */
  export(): Fd {
    const arg = handleArg(this.handle, 0, -1);
    try {
      return ioctlNewFd(Fd, this.#fdFor(this.export), syncobjRequests.DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, arg, uapi.drm_syncobj_handle.fields.fd, this.export);
    } catch (e) {
      throw noSyncobj(e, this.device, 'sync objects');
    }
  }

  /**
   * Destroys the handle (SYNCOBJ_DESTROY; skipped when the device is
   * closing, whose close(2) frees it) and ends pending waits with
   * ERR_P2PDMA_CLOSED. Idempotent. Throws DESTROY's error (closed anyway).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    finalizer.unregister(this);
    for (const ev of this.#waits) ev.close();
    this.#waits.clear();
    try {
      if (!this.device.closed) destroyHandle(this.device, this.#fd, this.handle, this.close);
    } finally {
      this.#release();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
