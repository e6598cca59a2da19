/**
 * mmap(2) as a `Mapping`: an external ArrayBuffer over the mapped pages (no
 * copy), with an explicit, idempotent `unmap()` that detaches the buffer
 * before unmapping so JS can never touch unmapped memory. A Mapping that is
 * garbage collected un-unmapped is unmapped exactly once by its buffer's
 * finalizer (once no typed array over `.buffer` is left either).
 */
import { closedError, fromNative, invalidArgType, invalidArgValue, outOfRange, wrap } from './errors';
import { Fd, type FdLike, toFd } from './handle';
import { native, type NativeMapping } from './native';

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
  for (const f of list) {
    if (typeof f === 'string') {
      const b = FLAG[f];
      if (b === undefined) throw invalidArgValue('flags', f, 'is not a known mapping flag', caller);
      bits |= b;
    } else if (typeof f === 'number') {
      if (!Number.isInteger(f) || f < 0 || f > 0x7fffffff) throw outOfRange('flags', 'an integer >= 0 && <= 2147483647', f, caller);
      bits |= f;
    } else {
      throw invalidArgType('flags', 'of type number, string or an array of them', f, caller);
    }
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

/** A memory mapping. Create with `mmap()`. */
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
  readonly #buffer: ArrayBuffer;
  #unmapped = false;

  /** @internal use mmap() */
  constructor(nativeMapping: NativeMapping, length: number, offset: bigint, source: Fd | undefined) {
    this.#native = nativeMapping;
    this.#buffer = nativeMapping.buffer();
    this.length = length;
    this.offset = offset;
    this.address = nativeMapping.address();
    this.source = source;
  }

  /**
   * The mapped bytes as an ArrayBuffer (no copy). After unmap() it is
   * detached: byteLength 0, and views over it read as empty.
   */
  get buffer(): ArrayBuffer {
    return this.#buffer;
  }

  /** Whether unmap() has been called. */
  get unmapped(): boolean {
    return this.#unmapped;
  }

  /**
   * Detaches `.buffer`, then unmaps. Idempotent. If an msyncAsync() is still
   * running, the munmap itself happens when it settles.
   */
  unmap(): void {
    if (this.#unmapped) return;
    this.#unmapped = true;
    this.#native.unmap();
  }

  /** msync(2) over the whole mapping. Default flags: 'sync'. */
  msync(flags: MsyncFlag | readonly MsyncFlag[] = 'sync'): void {
    const bits = toMsyncFlags(flags, this.msync);
    if (this.#unmapped) throw closedError('Mapping', this.msync);
    try {
      this.#native.msync(bits);
    } catch (e) {
      throw fromNative(e, {}, this.msync);
    }
  }

  /** msync(2) on the thread pool; the mapping stays mapped until it settles. */
  msyncAsync(flags: MsyncFlag | readonly MsyncFlag[] = 'sync'): Promise<void> {
    try {
      const bits = toMsyncFlags(flags, this.msyncAsync);
      if (this.#unmapped) throw closedError('Mapping', this.msyncAsync);
      return wrap(this.#native.msyncAsync(bits));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  [Symbol.dispose](): void {
    this.unmap();
  }
}

/**
 * Maps `length` bytes of `fd` at `options.offset`. Arguments are validated
 * (types, length > 0 and <= 2^53-1, page-aligned offset, no off_t overflow)
 * before any syscall; a failing mmap(2) throws a SystemError with
 * `syscall: 'mmap'` and `fd`.
 */
export function mmap(fd: FdLike, length: number | bigint, options: MmapOptions = {}): Mapping {
  const n = toFd(fd, mmap);
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'of type object', options, mmap);
  const len = toLength(length, mmap);
  const prot = toProt(options.prot ?? 'rw', mmap);
  const flags = toFlags(options.flags ?? 'shared', mmap);
  const offset = toOffset(options.offset ?? 0, len, mmap);
  let m: NativeMapping;
  try {
    m = new native.Mapping(n, len, prot, flags, offset);
  } catch (e) {
    throw fromNative(e, {}, mmap);
  }
  return new Mapping(m, len, offset, fd instanceof Fd ? fd : undefined);
}
