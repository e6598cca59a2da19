/**
 * dma-buf: a buffer shared between devices (and the CPU) through an fd.
 * `DmaBuf` is the handle: its size and fdinfo, a name, CPU-access brackets
 * (DMA_BUF_IOCTL_SYNC), a zero-copy mapping, and its implicit fences
 * (export/import as a sync_file, wait until idle on the event loop).
 *
 * Get one from a heap (`DmaHeap`), udmabuf (`Udmabuf`), a DRM device
 * (`DrmDevice.exportBuffer`), or an fd from elsewhere (`DmaBuf.from`).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { FileHandle } from 'node:fs/promises';

import { fromNative, invalidArgType, invalidArgValue, outOfRange, sysError, validateObject, type CodedError } from '../core/errors';
import { adoptFd, Fd, type FdLike, isFileHandle, toFd } from '../core/handle';
import { ioctlSync, requests } from '../core/ioctl';
import { mmap, type Mapping, type Prot, pageSize } from '../core/mmap';
import { native } from '../core/native';
import { pollOnce } from '../core/poll';
import { ioctlNewFd } from './dmabuf-ioctl';
import { type DmaBufInfo, parseDmaBufFdinfo } from './dmabuf-fdinfo';
import { pollBlocking, SyncFile, syncTimeout, type WaitOptions } from './sync-file';
import { uapi } from '../core/uapi';

/** Which direction of CPU access (or of fences) is meant. */
export type AccessMode = 'read' | 'write' | 'rw';

// uapi linux/dma-buf.h
const SYNC_READ = 1;
const SYNC_WRITE = 2;
const SYNC_END = 4;
const MODE_BITS: Readonly<Record<AccessMode, number>> = { read: SYNC_READ, write: SYNC_WRITE, rw: SYNC_READ | SYNC_WRITE };
/** DMA_BUF_NAME_LEN: the name and its NUL. */
export const DMA_BUF_NAME_LEN = 32;
/** statfs f_type of the dma-buf pseudo filesystem (DMA_BUF_MAGIC). */
const DMA_BUF_MAGIC = 0x444d4142;

const C = native.dmabufConstants;

function toMode(mode: unknown, caller: Function): number {
  if (mode === 'rw') return SYNC_READ | SYNC_WRITE;
  if (mode === 'read') return SYNC_READ;
  if (mode === 'write') return SYNC_WRITE;
  if (typeof mode !== 'string') throw invalidArgType('mode', "one of 'read', 'write', 'rw'", mode, caller);
  throw invalidArgValue('mode', mode, "must be 'read', 'write' or 'rw'", caller);
}

export { parseDmaBufFdinfo, type DmaBufInfo } from './dmabuf-fdinfo';

function linkOf(fd: number): string {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return '?';
  }
}

/** Whether `fd` is a dma-buf (its file is on the dma-buf pseudo filesystem). */
export function isDmaBuf(fd: FdLike): boolean {
  const n = toFd(fd, isDmaBuf);
  try {
    // statfs(2) follows the /proc magic link to the open file itself.
    return fs.statfsSync(`/proc/self/fd/${n}`).type === DMA_BUF_MAGIC;
  } catch {
    return linkOf(n).startsWith('/dmabuf:');
  }
}

function notDmaBuf(fd: number, caller: Function): CodedError {
  return invalidArgValue('fd', fd, `must be a dma-buf file descriptor; fd ${fd} is ${linkOf(fd)}`, caller);
}

export interface DmaBufFromOptions {
  /**
   * `true`: take ownership of the fd number or Fd handle itself (it is
   * closed with the DmaBuf). Default `false`: the DmaBuf owns a dup
   * (F_DUPFD_CLOEXEC) and the caller keeps theirs. A FileHandle always
   * keeps its own fd, so `own: true` is refused for one.
   */
  own?: boolean;
}

export interface DmaBufMapOptions {
  /** Default `'rw'` (zero-copy `.buffer` needs both). */
  prot?: Prot;
  /** Page-aligned offset into the buffer. Default 0. */
  offset?: number;
  /** Bytes to map. Default: the rest of the buffer from `offset`. */
  length?: number;
}

/**
 * An open CPU-access bracket (DMA_BUF_IOCTL_SYNC START); `end()` or
 * disposing it ends it (END, same mode). Idempotent; does nothing once the
 * DmaBuf is closed (the kernel keeps no per-fd state for the bracket).
 */
export class CpuAccess implements Disposable {
  readonly mode: AccessMode;
  readonly #buf: DmaBuf;
  #ended = false;

  /** @internal use DmaBuf.beginCpuAccess(). */
  constructor(buf: DmaBuf, mode: AccessMode) {
    this.#buf = buf;
    this.mode = mode;
  }

  get ended(): boolean {
    return this.#ended;
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (!this.#buf.closed) syncIoctl(this.#buf, SYNC_END | MODE_BITS[this.mode], this.end);
  }

  [Symbol.dispose](): void {
    this.end();
  }
}

function syncIoctl(buf: DmaBuf, flags: number, caller: Function): void {
  const fd = buf.fd;
  // A binding of its own (native/core/ioctl.cc): the struct lives on the
  // native stack, so the hot path of begin/end passes two numbers and
  // allocates nothing. undefined is success, else -errno.
  const r = native.dmabufSync(fd, flags);
  if (r !== undefined) throw sysError(-r, 'ioctl', { fd, request: 'DMA_BUF_IOCTL_SYNC' }, caller);
}

/** A dma-buf handle. Closing it drops this process's reference (mappings keep the buffer alive). */
export class DmaBuf extends Fd {
  #size: number | undefined;

  /**
   * A DmaBuf for an fd from elsewhere (another library, a child process, a
   * driver). Throws ERR_INVALID_ARG_VALUE, naming what the fd is, when it is
   * not a dma-buf; nothing is taken then.
   */
  static from(fd: FdLike | FileHandle, options: DmaBufFromOptions = {}): DmaBuf {
    validateObject(options, 'options', DmaBuf.from);
    const { own = false } = options;
    if (typeof own !== 'boolean') throw invalidArgType('options.own', 'of type boolean', own, DmaBuf.from);
    const n = toFd(fd, DmaBuf.from);
    if (own && isFileHandle(fd)) {
      throw invalidArgValue('options.own', own, 'cannot be true for a FileHandle, which closes its own fd (the default, false, takes a dup)', DmaBuf.from);
    }
    if (!isDmaBuf(n)) throw notDmaBuf(n, DmaBuf.from);
    if (own && typeof fd === 'number') return new this(fd);
    if (own && fd instanceof Fd) return new this(fd.release());
    try {
      return adoptFd(this, native.dupFd(n));
    } catch (e) {
      throw fromNative(e, {}, DmaBuf.from);
    }
  }

  /** The buffer's size in bytes (the dma-buf inode's size). */
  get size(): number {
    if (this.#size === undefined) this.#size = fs.fstatSync(this.fd).size;
    return this.#size;
  }

  /** Size, reference count, exporter, name and inode from /proc/self/fdinfo. */
  info(): DmaBufInfo {
    const fd = this.fd;
    const text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    const info = parseDmaBufFdinfo(text, Number(fs.fstatSync(fd, { bigint: true }).ino));
    if (info === undefined) throw notDmaBuf(fd, this.info);
    if (Number.isNaN(info.size)) info.size = this.size;
    return info;
  }

  /**
   * Names the buffer (DMA_BUF_SET_NAME), shown in fdinfo and by the
   * inspector: at most 31 UTF-8 bytes (32 with the NUL), no NUL inside.
   */
  setName(name: string): void {
    if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name, this.setName);
    const bytes = Buffer.from(name, 'utf8');
    if (bytes.includes(0)) throw invalidArgValue('name', name, 'must not contain NUL characters', this.setName);
    if (bytes.length + 1 > DMA_BUF_NAME_LEN) {
      throw outOfRange('name', `at most ${DMA_BUF_NAME_LEN - 1} UTF-8 bytes (${DMA_BUF_NAME_LEN} with the NUL)`, `${bytes.length} bytes`, this.setName);
    }
    // The request encodes a pointer; the view must be at least that big.
    const arg = Buffer.alloc(Math.max(bytes.length + 1, 8));
    bytes.copy(arg);
    try {
      ioctlSync(this.fd, requests.DMA_BUF_SET_NAME, arg);
    } catch (e) {
      Error.captureStackTrace(e as Error, this.setName);
      throw e;
    }
  }

  /**
   * Starts CPU access (DMA_BUF_IOCTL_SYNC START): caches are made coherent
   * for the CPU. End it with the returned scope (`using a =
   * buf.beginCpuAccess('rw')`, or `a.end()`).
   */
  beginCpuAccess(mode: AccessMode): CpuAccess {
    const bits = toMode(mode, this.beginCpuAccess);
    syncIoctl(this, bits, this.beginCpuAccess);
    return new CpuAccess(this, mode);
  }

  /**
   * Runs `fn` between START and END. END runs also when `fn` throws or
   * the promise it returns rejects; returns what `fn` returns.
   */
  withCpuAccess<R>(mode: AccessMode, fn: () => R): R {
    if (typeof fn !== 'function') throw invalidArgType('fn', 'of type function', fn, this.withCpuAccess);
    const access = this.beginCpuAccess(mode);
    let result: R;
    try {
      result = fn();
    } catch (e) {
      access.end();
      throw e;
    }
    if (result instanceof Promise) return result.finally(() => access.end()) as R;
    access.end();
    return result;
  }

  /**
   * Maps the buffer (zero copy). The Mapping keeps this handle alive; it
   * stays valid after close() (the mapping holds its own reference).
   */
  map(options: DmaBufMapOptions = {}): Mapping {
    validateObject(options, 'options', this.map);
    const size = this.size;
    const { offset = 0, prot = 'rw' } = options;
    if (typeof offset !== 'number') throw invalidArgType('options.offset', 'of type number', offset, this.map);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= size || offset % pageSize !== 0) {
      throw outOfRange('options.offset', `a multiple of ${pageSize} >= 0 && < ${size}`, offset, this.map);
    }
    const { length = size - offset } = options;
    if (typeof length !== 'number') throw invalidArgType('options.length', 'of type number', length, this.map);
    if (!Number.isSafeInteger(length) || length <= 0 || length > size - offset) {
      throw outOfRange('options.length', `an integer > 0 && <= ${size - offset}`, length, this.map);
    }
    try {
      return mmap(this, length, { prot, offset, flags: 'shared' });
    } catch (e) {
      Error.captureStackTrace(e as Error, this.map);
      throw e;
    }
  }

  /**
   * The buffer's current fences as a sync_file
   * (DMA_BUF_IOCTL_EXPORT_SYNC_FILE): 'read' gives the fences a reader must
   * wait for (writers), 'write'/'rw' every fence.
   */
  exportSyncFile(mode: AccessMode): SyncFile {
    const bits = toMode(mode, this.exportSyncFile);
    const L = uapi.dma_buf_export_sync_file;
    const arg = Buffer.alloc(L.size);
    arg.writeUInt32LE(bits, L.fields.flags);
    arg.writeInt32LE(-1, L.fields.fd);
    return ioctlNewFd(SyncFile, this.fd, requests.DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg, L.fields.fd, this.exportSyncFile);
  }

  /**
   * Adds a sync_file's fences to the buffer (DMA_BUF_IOCTL_IMPORT_SYNC_FILE):
   * 'read' as a reader's (later writers wait), 'write'/'rw' as a writer's
   * (everyone waits).
   */
  importSyncFile(syncFile: SyncFile | FdLike, mode: AccessMode): void {
    const sf = toFd(syncFile, this.importSyncFile);
    const bits = toMode(mode, this.importSyncFile);
    const L = uapi.dma_buf_import_sync_file;
    const arg = Buffer.alloc(L.size);
    arg.writeUInt32LE(bits, L.fields.flags);
    arg.writeInt32LE(sf, L.fields.fd);
    try {
      ioctlSync(this.fd, requests.DMA_BUF_IOCTL_IMPORT_SYNC_FILE, arg);
    } catch (e) {
      Error.captureStackTrace(e as Error, this.importSyncFile);
      throw e;
    }
  }

  /**
   * Resolves when the buffer's fences allow `mode` access: 'read' waits
   * for writers, 'write'/'rw' for every fence. Polls the dma-buf fd on the
   * event loop; `signal` aborts, `timeoutMs` rejects with ETIMEDOUT.
   */
  async waitIdle(mode: AccessMode, options: WaitOptions = {}): Promise<void> {
    const bits = toMode(mode, this.waitIdle);
    validateObject(options, 'options', this.waitIdle);
    await pollOnce(this, { events: bits === SYNC_READ ? 'read' : 'write', signal: options.signal, timeoutMs: options.timeoutMs });
  }

  /** The blocking form of waitIdle(): poll(2) on this thread. */
  waitIdleSync(mode: AccessMode, options: Omit<WaitOptions, 'signal'> = {}): void {
    const bits = toMode(mode, this.waitIdleSync);
    const t = syncTimeout(options, this.waitIdleSync);
    pollBlocking(this.fd, bits === SYNC_READ ? C.POLLIN : C.POLLOUT, t, this.waitIdleSync);
  }
}

