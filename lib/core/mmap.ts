/**
 * mmap(2) as a `Mapping`: external ArrayBuffers over the mapped pages (no
 * copy) for mappings JS may read and write, copying `read()`/`write()` for
 * the others, `mprotect()`, and an explicit, idempotent `unmap()`. See
 * `Mapping` for what keeps JS from ever touching unmapped memory.
 */
import { constants as bufferConstants } from 'node:buffer';
import * as fs from 'node:fs';

import { deprecated } from './deprecate';
import { abortError, type CodedError, closedError, fromNative, illegalConstructor, invalidArgType, invalidArgValue, outOfRange, validateObject, wrap } from './errors';
import { Fd, type FdLike, toFd } from './handle';
import { native, type NativeMapping } from './native';
import { viewByteLength } from './views';

const C = native.mmapConstants;

/** Page protection: a string or PROT_* bits. */
export type Prot = 'read' | 'write' | 'rw' | 'none' | number;

/** One mapping flag; `flags` takes one or an array of them (ORed). */
export type MapFlag = 'shared' | 'private' | 'shared-validate' | 'populate' | 'locked' | 'noreserve' | 'sync' | number;

export interface MmapOptions {
  /** Default `'rw'`. */
  prot?: Prot;
  /** Must include exactly one of `'shared'`, `'private'`, `'shared-validate'`. Default `'shared'`. */
  flags?: MapFlag | readonly MapFlag[];
  /** Offset into the file; a multiple of the page size. Default 0. */
  offset?: number | bigint;
}

/** msync flags: `'sync'` (MS_SYNC, default), `'async'` (MS_ASYNC), `'invalidate'`, or MS_* bits. */
export type MsyncFlag = 'sync' | 'async' | 'invalidate' | number;

const PROT: Record<string, number> = {
  none: C.PROT_NONE,
  read: C.PROT_READ,
  write: C.PROT_WRITE,
  rw: C.PROT_READ | C.PROT_WRITE,
};

const FLAG: Record<string, number> = {
  shared: C.MAP_SHARED,
  private: C.MAP_PRIVATE,
  'shared-validate': C.MAP_SHARED_VALIDATE,
  populate: C.MAP_POPULATE,
  locked: C.MAP_LOCKED,
  noreserve: C.MAP_NORESERVE,
  sync: C.MAP_SYNC,
};

const MS: Record<string, number> = { sync: C.MS_SYNC, async: C.MS_ASYNC, invalidate: C.MS_INVALIDATE };

const MAP_TYPE = 0x03;
// We never pass an address and only map file descriptors.
const MAP_REJECTED = C.MAP_FIXED | C.MAP_FIXED_NOREPLACE | C.MAP_ANONYMOUS;
const OFF_MAX = 2n ** 63n - 1n;

/** The system page size in bytes. */
export const pageSize: number = native.pageSize();

/**
 * The largest ArrayBuffer this Node can make over external memory:
 * `buffer.constants.MAX_LENGTH`, 2^32 on Node 20, 2^53-1 on Node 22 and later.
 * `.buffer` and `window()` never exceed it.
 */
export const maxViewLength: number = bufferConstants.MAX_LENGTH;

const RW = C.PROT_READ | C.PROT_WRITE;

// What `.buffer` returns after unmap() when it was never taken before.
const DETACHED = new ArrayBuffer(0);
structuredClone(DETACHED, { transfer: [DETACHED] });

function toProt(prot: unknown, caller: Function): number {
  if (typeof prot === 'string') {
    const p = PROT[prot];
    if (p === undefined) throw invalidArgValue('prot', prot, "must be 'read', 'write', 'rw', 'none' or PROT_* bits", caller);
    return p;
  }
  if (typeof prot === 'number') {
    if (Number.isInteger(prot) && prot >= 0 && prot <= 0x7fffffff) return prot;
    throw outOfRange('prot', 'an integer >= 0 && <= 2147483647', prot, caller);
  }
  throw invalidArgType('prot', "of type number or one of 'read', 'write', 'rw', 'none'", prot, caller);
}

function toFlags(flags: unknown, caller: Function): number {
  const list = Array.isArray(flags) ? flags : [flags];
  let bits = 0;
  // The map types are values, not bits: 'shared' | 'private' is 3,
  // MAP_SHARED_VALIDATE, so two of them must be refused, not ORed.
  const types = new Set<number>();
  for (const f of list) {
    let b: number;
    if (typeof f === 'string') {
      const known = FLAG[f];
      if (known === undefined) throw invalidArgValue('flags', f, 'is not a known mapping flag', caller);
      b = known;
    } else if (typeof f === 'number') {
      if (!Number.isInteger(f) || f < 0 || f > 0x7fffffff) throw outOfRange('flags', 'an integer >= 0 && <= 2147483647', f, caller);
      b = f;
    } else {
      throw invalidArgType('flags', 'of type number, string or an array of them', f, caller);
    }
    if ((b & MAP_TYPE) !== 0) types.add(b & MAP_TYPE);
    bits |= b;
  }
  if (types.size > 1) {
    throw invalidArgValue('flags', flags, "must include only one of 'shared', 'private', 'shared-validate'", caller);
  }
  const type = bits & MAP_TYPE;
  if (type === 0) throw invalidArgValue('flags', flags, "must include one of 'shared', 'private', 'shared-validate'", caller);
  if ((bits & MAP_REJECTED) !== 0) throw invalidArgValue('flags', flags, 'must not include MAP_FIXED, MAP_FIXED_NOREPLACE or MAP_ANONYMOUS', caller);
  return bits;
}

function toLength(length: unknown, caller: Function): number {
  if (typeof length === 'bigint') {
    if (length > 0n && length <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(length);
    throw outOfRange('length', `> 0n && <= ${Number.MAX_SAFE_INTEGER}n`, length, caller);
  }
  if (typeof length !== 'number') throw invalidArgType('length', 'of type number or bigint', length, caller);
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw outOfRange('length', `an integer > 0 && <= ${Number.MAX_SAFE_INTEGER}`, length, caller);
  }
  return length;
}

function toOffset(offset: unknown, length: number, caller: Function): bigint {
  let off: bigint;
  if (typeof offset === 'bigint') off = offset;
  else if (typeof offset === 'number') {
    if (!Number.isSafeInteger(offset)) throw outOfRange('offset', `an integer >= 0 && <= ${Number.MAX_SAFE_INTEGER}`, offset, caller);
    off = BigInt(offset);
  } else throw invalidArgType('offset', 'of type number or bigint', offset, caller);
  if (off < 0n || off > OFF_MAX) throw outOfRange('offset', `>= 0 && <= ${OFF_MAX}`, offset, caller);
  if (off % BigInt(pageSize) !== 0n) throw outOfRange('offset', `a multiple of the page size (${pageSize})`, offset, caller);
  if (off + BigInt(length) > OFF_MAX) throw outOfRange('offset + length', `<= ${OFF_MAX}`, off + BigInt(length), caller);
  return off;
}

function toMsyncFlags(flags: unknown, caller: Function): number {
  const list = Array.isArray(flags) ? flags : [flags];
  let bits = 0;
  for (const f of list) {
    if (typeof f === 'string' && MS[f] !== undefined) bits |= MS[f];
    else if (typeof f === 'number' && Number.isInteger(f) && f >= 0 && f <= 0x7fffffff) bits |= f;
    else if (typeof f === 'string') throw invalidArgValue('flags', f, "must be 'sync', 'async', 'invalidate' or MS_* bits", caller);
    else throw invalidArgType('flags', 'of type number or string', f, caller);
  }
  return bits;
}


/** Options of the promise-returning calls. */
export interface AbortOptions {
  /** Checked before the call starts; a started msync(2) cannot be interrupted. */
  signal?: AbortSignal;
}

function toSignal(options: unknown, caller: Function): AbortSignal | undefined {
  validateObject(options, 'options', caller);
  const { signal } = options as AbortOptions;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, caller);
  }
  return signal;
}

function protName(prot: number): string {
  if (prot === C.PROT_NONE) return 'PROT_NONE';
  const names = (['PROT_READ', 'PROT_WRITE', 'PROT_EXEC'] as const).filter((n) => (prot & C[n]) !== 0);
  return names.join(' | ') || `0x${prot.toString(16)}`;
}

/**
 * Error with code ERR_P2PDMA_MAPPING_BUSY: mprotect() would take access from
 * `stuck` ArrayBuffers over the mapping that it cannot detach.
 */
function viewsError(prot: number, stuck: number, caller: Function): CodedError {
  const n = stuck === 1 ? '1 ArrayBuffer' : `${stuck} ArrayBuffers`;
  const e = new Error(
    `mprotect(${protName(prot)}) refused: ${n} over this mapping cannot be detached (moved by transfer(), or collected but not yet finalized) and would fault`,
  ) as CodedError;
  e.code = 'ERR_P2PDMA_MAPPING_BUSY';
  Error.captureStackTrace(e, caller);
  return e;
}

/** Error with code ERR_P2PDMA_BUSY: unmap() while a device may still reach the pages. */
function usersError(users: Map<string, number>, caller: Function): CodedError {
  const list = [...users].map(([what, n]) => `${n} ${what}${n === 1 ? '' : 's'}`).join(', ');
  const e = new Error(`unmap() refused: ${list} on this mapping may still be reached by a device; close that first`) as CodedError;
  e.code = 'ERR_P2PDMA_BUSY';
  Error.captureStackTrace(e, caller);
  return e;
}

/** Error with code ERR_P2PDMA_MAPPING_ACCESS: the mapping's protection forbids the access. */
function accessError(prot: number, needs: string, what: string, caller: Function): CodedError {
  const e = new Error(`${what} needs a mapping with ${needs}; this one is mapped ${protName(prot)}`) as CodedError;
  e.code = 'ERR_P2PDMA_MAPPING_ACCESS';
  Error.captureStackTrace(e, caller);
  return e;
}

function toIndex(name: string, value: unknown, max: number, caller: Function): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value, caller);
  if (!Number.isSafeInteger(value) || value < 0 || value > max) throw outOfRange(name, `an integer >= 0 && <= ${max}`, value, caller);
  return value;
}

// The ArrayBuffers a Mapping handed out (`.buffer`, `window()`): they are its
// pages, not memory V8 owns.
const windows = new WeakMap<ArrayBuffer, { mapping: Mapping; offset: number }>();

/**
 * @internal The Mapping whose pages `ab` is (one from `.buffer` or
 * `window()`), and the byte offset in the mapping where it starts;
 * undefined for any other ArrayBuffer.
 */
export function mappingOf(ab: ArrayBuffer): { mapping: Mapping; offset: number } | undefined {
  return windows.get(ab);
}

/**
 * A memory mapping. Create with `mmap()`.
 *
 * JS never touches unmapped memory through it:
 * - `.buffer` and `window()` (zero-copy ArrayBuffers) exist only for mappings
 *   with both PROT_READ and PROT_WRITE; other mappings throw
 *   ERR_P2PDMA_MAPPING_ACCESS there and offer the copying `read()` (needs
 *   PROT_READ) and `write()` (needs PROT_WRITE) instead.
 * - `unmap()` detaches every ArrayBuffer it made, and replaces the pages with
 *   private anonymous memory at the same address until the last one is
 *   garbage collected: a buffer it could not detach (moved by
 *   `ArrayBuffer.prototype.transfer()`) or an fs.read() still in flight then
 *   reads zeros and writes into nothing, never into the device or into a
 *   later mapping. The address range is munmap()ed once, after that GC.
 * - `mprotect()` to anything short of 'rw' detaches `.buffer` and every
 *   window, as unmap() does (`.buffer` is a new ArrayBuffer once the
 *   mapping is 'rw' again), and refuses with ERR_P2PDMA_MAPPING_BUSY,
 *   changing nothing, while an ArrayBuffer it cannot detach (moved by
 *   `transfer()`) may still reach the pages: unlike after unmap(), those
 *   stay the mapping's, so no zero pages can stand in for them.
 * - `mmap()` refuses a range past the last page of a regular file (memfds
 *   included), which would fault with SIGBUS on first touch.
 *
 * What this cannot prevent: pages that vanish under a live mapping. A file
 * or memfd truncated after mmap() makes access past its new end SIGBUS the
 * process; seal memfds you hand out (`F_SEAL_SHRINK`) or never shrink them
 * while mapped. A device may also take its memory back: p2pmem (NVMe CMB)
 * zaps `allocate` mappings when the provider goes away, and ivshmem_p2p
 * when the device is unbound; the next access raises SIGBUS.
 * (IVSHMEM_P2P_IOCTL_REVOKE alone is harmless to the CPU: the next access
 * maps the BAR again.) Unmap device mappings before unbinding or removing
 * the device; no library can turn such a fault into a JS exception. Nor
 * can it see native code still working on an ArrayBuffer of the mapping
 * from another thread (`crypto.randomFill()`, zlib, another addon) when
 * `mprotect()` takes access away: let that settle first. System calls in
 * flight on it (`fs.read()`, NVMe I/O) fail with EFAULT instead.
 */
export class Mapping implements Disposable {
  /** Length in bytes, as requested. */
  readonly length: number;
  /** Offset into the file. */
  readonly offset: bigint;
  /** Start address of the mapping in this process. */
  readonly address: bigint;
  /** The handle the mapping came from, kept alive as long as the mapping is. */
  readonly source: Fd | undefined;
  readonly #native: NativeMapping;
  #buffer: ArrayBuffer | undefined;
  #prot: number;
  #unmapped = false;
  /** What uses the pages outside JS (RDMA memory regions): unmap() waits for none. */
  readonly #users = new Map<string, number>();

  /** @internal use mmap(): anything else throws ERR_ILLEGAL_CONSTRUCTOR. */
  constructor(nativeMapping: NativeMapping, length: number, offset: bigint, prot: number, source: Fd | undefined) {
    if (!(nativeMapping instanceof native.Mapping)) throw illegalConstructor(new.target);
    this.#native = nativeMapping;
    this.length = length;
    this.offset = offset;
    this.#prot = prot;
    this.address = nativeMapping.address();
    this.source = source;
  }

  /** The PROT_* bits it is mapped with: mmap()'s, then the last mprotect()'s. */
  get prot(): number {
    return this.#prot;
  }

  /**
   * The whole mapping as one ArrayBuffer (no copy; the same one every time
   * until mprotect() detaches it). After unmap() it is detached: byteLength
   * 0, and views over it read as empty. Throws ERR_P2PDMA_MAPPING_ACCESS
   * unless mapped 'rw', and ERR_OUT_OF_RANGE when `length` exceeds
   * `maxViewLength` (a GPU BAR over 4 GiB on Node 20): use `window()` then.
   */
  get buffer(): ArrayBuffer {
    if (this.#buffer !== undefined) return this.#buffer;
    if (this.#unmapped) return DETACHED;
    this.#checkViews('.buffer', BUFFER_GETTER);
    if (this.length > maxViewLength) {
      throw outOfRange(
        'length',
        `<= buffer.constants.MAX_LENGTH (${maxViewLength}) for .buffer; use mapping.window(offset, length)`,
        this.length,
        BUFFER_GETTER,
      );
    }
    this.#buffer = this.#native.window(0, this.length);
    windows.set(this.#buffer, { mapping: this, offset: 0 });
    return this.#buffer;
  }

  /**
   * A new ArrayBuffer over `length` bytes at `offset` (no copy), at most
   * `maxViewLength` bytes. Detached by unmap() and mprotect() like `.buffer`.
   */
  window(offset: number, length?: number): ArrayBuffer {
    const off = toIndex('offset', offset, this.length, this.window);
    const len = toIndex('length', length === undefined ? this.length - off : length, this.length - off, this.window);
    if (len === 0 || len > maxViewLength) {
      throw outOfRange('length', `> 0 && <= buffer.constants.MAX_LENGTH (${maxViewLength})`, length, this.window);
    }
    if (this.#unmapped) throw closedError('Mapping', this.window);
    this.#checkViews('window()', this.window);
    const ab = this.#native.window(off, len);
    windows.set(ab, { mapping: this, offset: off });
    return ab;
  }

  /**
   * Copies bytes of the mapping, starting `offset` bytes into it, into
   * `target` (as many as `target` holds) and returns `target`; with no
   * target, the rest of the mapping from `offset` as a new Buffer. Needs
   * PROT_READ. The data first, then where, as in write(source, offset).
   */
  read(): Buffer;
  read<T extends ArrayBufferView>(target: T, offset?: number): T;
  /** @deprecated `read(offset, length)`: use `read(Buffer.alloc(length), offset)` (DeprecationWarning P2PDMA_DEP0001). */
  read(offset: number, length?: number): Buffer;
  read(target?: ArrayBufferView | number, offset?: number): ArrayBufferView {
    if (typeof target === 'number') {
      deprecated('P2PDMA_DEP0001', 'mapping.read(offset, length) is deprecated: use mapping.read(target, offset), which fills target.');
      const off = toIndex('offset', target, this.length, this.read);
      const len = toIndex('length', offset === undefined ? this.length - off : offset, this.length - off, this.read);
      return this.#copyOut(Buffer.allocUnsafe(len), off);
    }
    const off = toIndex('offset', offset ?? 0, this.length, this.read);
    if (target === undefined) return this.#copyOut(Buffer.allocUnsafe(this.length - off), off);
    if (!ArrayBuffer.isView(target)) throw invalidArgType('target', 'an instance of TypedArray or DataView', target, this.read);
    toIndex('target.byteLength', viewByteLength(target), this.length - off, this.read);
    return this.#copyOut(target, off);
  }

  #copyOut<T extends ArrayBufferView>(out: T, off: number): T {
    if (this.#unmapped) throw closedError('Mapping', this.read);
    if ((this.#prot & C.PROT_READ) === 0) throw accessError(this.#prot, 'PROT_READ', 'read()', this.read);
    this.#native.read(off, out);
    return out;
  }

  /**
   * Copies `source`'s bytes into the mapping, starting `offset` bytes into
   * it. Needs PROT_WRITE.
   */
  write(source: ArrayBufferView, offset = 0): void {
    if (!ArrayBuffer.isView(source)) throw invalidArgType('source', 'an instance of TypedArray or DataView', source, this.write);
    const off = toIndex('offset', offset, this.length, this.write);
    toIndex('source.byteLength', viewByteLength(source), this.length - off, this.write);
    if (this.#unmapped) throw closedError('Mapping', this.write);
    if ((this.#prot & C.PROT_WRITE) === 0) throw accessError(this.#prot, 'PROT_WRITE', 'write()', this.write);
    this.#native.write(off, source);
  }

  /** Whether close() (or unmap()) has run: the state every handle calls `closed`. */
  get closed(): boolean {
    return this.#unmapped;
  }

  /** @deprecated Use `closed` (the name every handle uses; DeprecationWarning P2PDMA_DEP0002). */
  get unmapped(): boolean {
    deprecated('P2PDMA_DEP0002', 'mapping.unmapped is deprecated: use mapping.closed.');
    return this.#unmapped;
  }

  /** Unmaps, as unmap() does: the name every handle has. Idempotent. */
  close(): void {
    this.unmap();
  }

  /**
   * Unmaps. Idempotent. Detaches `.buffer` and every window; if any of them
   * (or an msync()) may still reach the pages, the range stays reserved as
   * private zero pages and is munmap()ed once the last is collected.
   * Throws ERR_P2PDMA_BUSY, changing nothing, while a device may still
   * reach the pages through something that holds the mapping (an RDMA
   * memory region on it: close that first).
   */
  unmap(): void {
    if (this.#unmapped) return;
    if (this.#users.size > 0) throw usersError(this.#users, this.unmap);
    this.#unmapped = true;
    this.#native.unmap();
  }

  /**
   * msync(2) over the whole mapping on the thread pool. Default flags:
   * 'sync'. The mapping stays mapped until it settles.
   */
  msync(options?: AbortOptions): Promise<void>;
  msync(flags?: MsyncFlag | readonly MsyncFlag[], options?: AbortOptions): Promise<void>;
  msync(flags: MsyncFlag | readonly MsyncFlag[] | AbortOptions = 'sync', options: AbortOptions = {}): Promise<void> {
    try {
      if (typeof flags === 'object' && !Array.isArray(flags)) [flags, options] = ['sync', flags as AbortOptions];
      const bits = toMsyncFlags(flags, this.msync);
      const signal = toSignal(options, this.msync);
      if (signal?.aborted) throw abortError(signal.reason, this.msync);
      if (this.#unmapped) throw closedError('Mapping', this.msync);
      return wrap(this.#native.msyncAsync(bits));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** msync(2) over the whole mapping, blocking. Default flags: 'sync'. */
  msyncSync(flags: MsyncFlag | readonly MsyncFlag[] = 'sync'): void {
    const bits = toMsyncFlags(flags, this.msyncSync);
    if (this.#unmapped) throw closedError('Mapping', this.msyncSync);
    try {
      this.#native.msync(bits);
    } catch (e) {
      throw fromNative(e, {}, this.msyncSync);
    }
  }

  /**
   * mprotect(2) over the whole mapping (part of it would split the kernel's
   * VMA, and the pieces of a device mapping never merge again). `prot` as in
   * mmap(). Sync, like mmap() and unmap(): it changes page tables, no I/O.
   * When the protection changes, the kernel invalidates the range for mmu
   * notifiers (a driver's or an RDMA ODP MR's mirror of the pages).
   *
   * `prot`, read() and write() follow the new protection. Short of 'rw' it
   * detaches `.buffer` and every window, which then read as empty; once 'rw'
   * again, `.buffer` is a new ArrayBuffer over the same bytes. Throws
   * ERR_P2PDMA_MAPPING_BUSY while an ArrayBuffer it cannot detach may still
   * reach the pages (see `Mapping`), ERR_P2PDMA_CLOSED after unmap(), and
   * mprotect(2)'s errors as SystemErrors with `syscall: 'mprotect'` (EACCES:
   * write access to a shared mapping of a file opened read-only); it changes
   * nothing when it throws.
   */
  mprotect(prot: Prot): void {
    const bits = toProt(prot, this.mprotect);
    if (this.#unmapped) throw closedError('Mapping', this.mprotect);
    let stuck: number;
    try {
      stuck = this.#native.mprotect(bits);
    } catch (e) {
      throw fromNative(e, {}, this.mprotect);
    }
    if (stuck > 0) throw viewsError(bits, stuck, this.mprotect);
    this.#prot = bits;
    if ((bits & RW) !== RW) this.#buffer = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * @internal A device may reach the pages until the returned release runs
   * (an RDMA MR from registration to deregistration): unmap() refuses
   * meanwhile. `what` names the user in the error. Throws
   * ERR_P2PDMA_CLOSED after unmap().
   */
  hold(what: string, caller: Function): () => void {
    if (this.#unmapped) throw closedError('Mapping', caller);
    this.#users.set(what, (this.#users.get(what) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = this.#users.get(what)! - 1;
      if (n === 0) this.#users.delete(what);
      else this.#users.set(what, n);
    };
  }

  #checkViews(what: string, caller: Function): void {
    if ((this.#prot & RW) !== RW) throw accessError(this.#prot, 'PROT_READ | PROT_WRITE', what, caller);
  }
}

// Pseudo filesystems whose regular files' st_size is not what they can map:
// sysfs, where p2pmem's `allocate` (size 0) maps any length of device memory;
// proc, debugfs, tracefs, configfs, securityfs. mmap(2) itself decides there.
const SIZELESS_FS = new Set([0x62656572, 0x9fa0, 0x64626720, 0x74726163, 0x62656570, 0x73636673]);

function onSizelessFs(fd: number): boolean {
  try {
    // statfs(2) follows the /proc/self/fd link to the open file's filesystem.
    return SIZELESS_FS.has(fs.statfsSync(`/proc/self/fd/${fd}`).type);
  } catch {
    return false;
  }
}

// Errors from `.buffer` start their stack at the user's access.
const BUFFER_GETTER = Object.getOwnPropertyDescriptor(Mapping.prototype, 'buffer')!.get!;

/**
 * A regular file (memfds included) must cover the mapped range up to its
 * last page: touching a page wholly past the end raises SIGBUS. Other fds,
 * files on pseudo filesystems, and fds fstat() fails on (mmap(2) reports
 * those) are not checked.
 */
function checkFileSize(fd: number, offset: bigint, length: number, caller: Function): void {
  let st: fs.BigIntStats;
  try {
    st = fs.fstatSync(fd, { bigint: true });
  } catch {
    return;
  }
  if (!st.isFile()) return;
  const page = BigInt(pageSize);
  const mappable = ((st.size + page - 1n) / page) * page;
  const end = offset + BigInt(length);
  if (end > mappable && !onSizelessFs(fd)) {
    throw outOfRange(
      'offset + length',
      `<= ${mappable} (the file's size, ${st.size}, rounded up to the page size; pages past it fault with SIGBUS)`,
      end,
      caller,
    );
  }
}

/**
 * Maps `length` bytes of `fd` at `options.offset`. Arguments are validated
 * (types, length > 0 and <= 2^53-1, page-aligned offset, no off_t overflow,
 * one map type, a regular file large enough) before any mmap(2); a failing
 * mmap(2) throws a SystemError with `syscall: 'mmap'` and `fd`.
 */
export function mmap(fd: FdLike, length: number | bigint, options: MmapOptions = {}): Mapping {
  const n = toFd(fd, mmap);
  validateObject(options, 'options', mmap);
  const len = toLength(length, mmap);
  const prot = toProt(options.prot ?? 'rw', mmap);
  const flags = toFlags(options.flags ?? 'shared', mmap);
  const offset = toOffset(options.offset ?? 0, len, mmap);
  checkFileSize(n, offset, len, mmap);
  let m: NativeMapping;
  try {
    m = new native.Mapping(n, len, prot, flags, offset);
  } catch (e) {
    throw fromNative(e, {}, mmap);
  }
  return new Mapping(m, len, offset, prot, fd instanceof Fd ? fd : undefined);
}
