/**
 * udmabuf (/dev/udmabuf): a dma-buf over the pages of a memfd, so ordinary
 * memory can be handed to devices. The memfd must be sealed against
 * shrinking (F_SEAL_SHRINK), or the pages could vanish under a device.
 */
import * as fs from 'node:fs';

import { abortError, fromNative, invalidArgType, invalidArgValue, outOfRange, validateObject } from '../core/errors';
import { Fd, type FdLike, toFd } from '../core/handle';
import { requests } from '../core/ioctl';
import { memfd as makeMemfd } from '../core/memfd';
import { pageSize } from '../core/mmap';
import { native } from '../core/native';
import { DmaBuf } from './dmabuf';
import { FD_IS_RESULT, ioctlNewFd, ioctlNewFdAsync } from './dmabuf-ioctl';
import { uapi } from '../core/uapi';

export const UDMABUF_PATH = '/dev/udmabuf';
const UDMABUF_FLAGS_CLOEXEC = 0x01;
const S = native.sealConstants;
/** The kernel's default list_limit module parameter. */
const LIST_MAX = 1024;

/** One range of a memfd: the memfd, a page-aligned offset and size. Without `memfd` one is made. */
export interface UdmabufItem {
  /** A memfd sealed with F_SEAL_SHRINK and without F_SEAL_WRITE. Default: a new one of `size` bytes, sealed. */
  memfd?: FdLike;
  /** Page-aligned offset into the memfd. Default 0. */
  offset?: number;
  /** Page-aligned size in bytes. */
  size: number;
}

export interface UdmabufOptions {
  /** The promise form only: aborting rejects at once; the buffer, once made, is closed. */
  signal?: AbortSignal;
}

interface Prepared {
  arg: Buffer;
  request: number;
  /** Memfds made here: closed with the Udmabuf (or now, if creation fails). */
  made: Fd[];
  memfds: FdLike[];
}

function toAligned(name: string, v: unknown, min: number, caller: Function): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v, caller);
  if (!Number.isSafeInteger(v) || v < min || v % pageSize !== 0) {
    throw outOfRange(name, `a multiple of the page size (${pageSize}) >= ${min}`, v, caller);
  }
  return v;
}

function sealedMemfd(size: number): Fd {
  const m = makeMemfd('p2pdma-udmabuf', { allowSealing: true });
  try {
    fs.ftruncateSync(m.fd, size);
    native.addSeals(m.fd, S.F_SEAL_SHRINK);
  } catch (e) {
    m.close();
    throw fromNative(e);
  }
  return m;
}

/** Checks what the kernel would refuse with a bare EINVAL, to say why. */
function checkMemfd(n: number, name: string, end: number, caller: Function): void {
  let seals: number;
  try {
    seals = native.getSeals(n);
  } catch {
    throw invalidArgValue(name, n, 'must be a memfd made with allowSealing (fcntl F_GET_SEALS failed)', caller);
  }
  if ((seals & S.F_SEAL_SHRINK) === 0) throw invalidArgValue(name, n, 'must be sealed with F_SEAL_SHRINK (udmabuf refuses memfds that can shrink)', caller);
  if ((seals & S.F_SEAL_WRITE) !== 0) throw invalidArgValue(name, n, 'must not be sealed with F_SEAL_WRITE', caller);
  const size = fs.fstatSync(n).size;
  if (end > size) throw outOfRange(`${name.replace(/memfd$/, '')}offset + size`, `<= the memfd's size (${size})`, end, caller);
}

function prepare(items: readonly unknown[], list: boolean, caller: Function): Prepared {
  const made: Fd[] = [];
  const memfds: FdLike[] = [];
  try {
    const slots: { fd: number; offset: number; size: number }[] = [];
    items.forEach((item, i) => {
      const at = list ? `items[${i}].` : 'options.';
      validateObject(item, list ? `items[${i}]` : 'options', caller);
      const { memfd, offset = 0, size } = item as UdmabufItem;
      const sz = toAligned(`${at}size`, size, pageSize, caller);
      const off = toAligned(`${at}offset`, offset, 0, caller);
      let n: number;
      if (memfd === undefined) {
        if (off !== 0) throw invalidArgValue(`${at}offset`, off, 'must be 0 without a memfd', caller);
        const m = sealedMemfd(sz);
        made.push(m);
        memfds.push(m);
        n = m.fd;
      } else {
        n = toFd(memfd, caller);
        checkMemfd(n, `${at}memfd`, off + sz, caller);
        memfds.push(memfd);
      }
      slots.push({ fd: n, offset: off, size: sz });
    });
    let arg: Buffer;
    if (!list) {
      const C1 = uapi.udmabuf_create;
      arg = Buffer.alloc(C1.size);
      arg.writeUInt32LE(slots[0].fd, C1.fields.memfd);
      arg.writeUInt32LE(UDMABUF_FLAGS_CLOEXEC, C1.fields.flags);
      arg.writeBigUInt64LE(BigInt(slots[0].offset), C1.fields.offset);
      arg.writeBigUInt64LE(BigInt(slots[0].size), C1.fields.size);
    } else {
      const L = uapi.udmabuf_create_list;
      const I = uapi.udmabuf_create_item;
      arg = Buffer.alloc(L.size + I.size * slots.length);
      arg.writeUInt32LE(UDMABUF_FLAGS_CLOEXEC, L.fields.flags);
      arg.writeUInt32LE(slots.length, L.fields.count);
      slots.forEach((s, i) => {
        const at = L.fields.list + I.size * i;
        arg.writeUInt32LE(s.fd, at + I.fields.memfd);
        arg.writeBigUInt64LE(BigInt(s.offset), at + I.fields.offset);
        arg.writeBigUInt64LE(BigInt(s.size), at + I.fields.size);
      });
    }
    return { arg, request: list ? requests.UDMABUF_CREATE_LIST : requests.UDMABUF_CREATE, made, memfds };
  } catch (e) {
    for (const m of made) m.close();
    throw e;
  }
}

function openDevice(caller: Function): Fd {
  try {
    return new Fd(fs.openSync(UDMABUF_PATH, fs.constants.O_RDWR | native.dmabufConstants.O_CLOEXEC));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') err.message += ' (this kernel has no udmabuf: CONFIG_UDMABUF)';
    Error.captureStackTrace(err, caller);
    throw err;
  }
}

function toItems(items: unknown, caller: Function): readonly unknown[] {
  if (!Array.isArray(items)) throw invalidArgType('items', 'an instance of Array', items, caller);
  if (items.length === 0 || items.length > LIST_MAX) throw outOfRange('items.length', `>= 1 && <= ${LIST_MAX}`, items.length, caller);
  return items;
}

function toSignal(options: unknown, caller: Function): AbortSignal | undefined {
  validateObject(options, 'options', caller);
  const { signal } = options as UdmabufOptions;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, caller);
  return signal;
}

/**
 * A dma-buf over memfd pages. `memfds` are the memfds behind it, kept open
 * (write through them, or map them); the ones it made itself are closed
 * with it, the caller's are only kept reachable.
 */
export class Udmabuf extends DmaBuf {
  #made: Fd[] = [];
  #memfds: readonly FdLike[] = [];

  /** The memfd of a single-range udmabuf (the first one of a list). */
  get memfd(): FdLike {
    return this.#memfds[0];
  }

  /** Every memfd behind the buffer, in order. */
  get memfds(): readonly FdLike[] {
    return this.#memfds;
  }

  /** Creates a udmabuf over `{ memfd, offset, size }`, or over a new sealed memfd of `{ size }`. */
  static createSync(options: UdmabufItem): Udmabuf {
    const p = prepare([options], false, Udmabuf.createSync);
    return Udmabuf.#finish(p, () => {
      using dev = openDevice(Udmabuf.createSync);
      return ioctlNewFd(Udmabuf, dev.fd, p.request, p.arg, FD_IS_RESULT, Udmabuf.createSync);
    });
  }

  /** The promise form of createSync() (the kernel pins every page: large buffers take a while). */
  static create(options: UdmabufItem & UdmabufOptions): Promise<Udmabuf> {
    return Udmabuf.#createAsync([options], false, options, Udmabuf.create);
  }

  /** One udmabuf over several memfd ranges, in order (UDMABUF_CREATE_LIST). */
  static createListSync(items: readonly UdmabufItem[]): Udmabuf {
    const p = prepare(toItems(items, Udmabuf.createListSync), true, Udmabuf.createListSync);
    return Udmabuf.#finish(p, () => {
      using dev = openDevice(Udmabuf.createListSync);
      return ioctlNewFd(Udmabuf, dev.fd, p.request, p.arg, FD_IS_RESULT, Udmabuf.createListSync);
    });
  }

  /** The promise form of createListSync(). */
  static createList(items: readonly UdmabufItem[], options: UdmabufOptions = {}): Promise<Udmabuf> {
    try {
      return Udmabuf.#createAsync(toItems(items, Udmabuf.createList), true, options, Udmabuf.createList);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  static #createAsync(items: readonly unknown[], list: boolean, options: unknown, caller: Function): Promise<Udmabuf> {
    let p: Prepared;
    let dev: Fd;
    let signal: AbortSignal | undefined;
    try {
      signal = toSignal(options, caller);
      if (signal?.aborted) throw abortError(signal.reason, caller);
      p = prepare(items, list, caller);
      try {
        dev = openDevice(caller);
      } catch (e) {
        for (const m of p.made) m.close();
        throw e;
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const closeMemfds = (): void => {
      for (const m of p.made) m.close();
    };
    // On abort the memfds stay open until the syscall that names them has
    // returned (afterAbort): their numbers must not be reused under it.
    return ioctlNewFdAsync(Udmabuf, dev, dev.fd, p.request, p.arg, FD_IS_RESULT, signal, closeMemfds).then(
      (u) => {
        dev.close();
        return Udmabuf.#finish(p, () => u);
      },
      (e: unknown) => {
        dev.close();
        if ((e as { code?: unknown }).code !== 'ABORT_ERR') closeMemfds();
        throw e;
      },
    );
  }

  static #finish(p: Prepared, create: () => Udmabuf): Udmabuf {
    let u: Udmabuf;
    try {
      u = create();
    } catch (e) {
      for (const m of p.made) m.close();
      throw e;
    }
    u.#made = p.made;
    u.#memfds = Object.freeze(p.memfds);
    return u;
  }

  /** Closes the udmabuf and the memfds it made. */
  override close(): void {
    try {
      super.close();
    } finally {
      for (const m of this.#made) m.close();
    }
  }
}
