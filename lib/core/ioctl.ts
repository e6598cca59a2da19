/**
 * ioctl(2): the generic entry points (`ioctlSync`, the hot path, and
 * `ioctl`, its promise form on the thread pool), `ioc` request encoders
 * matching the kernel's `_IO/_IOR/_IOW/_IOWR` macros, and the table of
 * request names used in error messages.
 */
import { abortError, invalidArgType, outOfRange, sysError, validateObject, wrap } from './errors';
import { Fd, type FdLike, holdDuring, toFd } from './handle';
import { native } from './native';
import { viewByteLength } from './views';
import { uapi } from './uapi';
import { abortable } from './abort';

/**
 * An ioctl argument:
 * - a Buffer, TypedArray or DataView: a pointer to its bytes (at its
 *   byteOffset) is passed. `ioctlSync` lets the kernel read and write them
 *   in place; `ioctl` passes a copy (see there). The view must hold at
 *   least the argument size the request encodes (`ioc.size(request)`), or
 *   for old-style requests that encode none, the size this module knows
 *   (FIONREAD and a few tty requests; see `argSize`);
 * - a number (safe integer) or bigint (-2^63 .. 2^64-1): passed by value as
 *   an unsigned long (negative values as two's complement);
 * - undefined: 0 is passed.
 */
export type IoctlArg = ArrayBufferView | number | bigint | undefined;

// ---------------------------------------------------------------------------
// Request encoding

interface IocLayout {
  none: number;
  write: number;
  read: number;
  sizeBits: number;
  dirBits: number;
}

// include/uapi/asm-generic/ioctl.h, overridden by powerpc, mips and sparc.
const GENERIC: IocLayout = { none: 0, write: 1, read: 2, sizeBits: 14, dirBits: 2 };
const OLD_STYLE: IocLayout = { none: 1, write: 4, read: 2, sizeBits: 13, dirBits: 3 };
const LAYOUT: IocLayout = ['ppc', 'ppc64', 'mips', 'mipsel', 'mips64el'].includes(process.arch) ? OLD_STYLE : GENERIC;
const NR_SHIFT = 0;
const TYPE_SHIFT = 8;
const SIZE_SHIFT = 16;
const DIR_SHIFT = SIZE_SHIFT + LAYOUT.sizeBits;
const SIZE_MASK = 2 ** LAYOUT.sizeBits - 1;
const DIR_MASK = 2 ** LAYOUT.dirBits - 1;

const U32_MAX = 0xffffffff;

/** A request number: a u32 as a number or bigint. */
function toRequest(request: unknown, caller: Function): number {
  if (typeof request === 'number') {
    if (Number.isInteger(request) && request >= 0 && request <= U32_MAX) return request;
    throw outOfRange('request', `an integer >= 0 && <= ${U32_MAX}`, request, caller);
  }
  if (typeof request === 'bigint') {
    if (request >= 0n && request <= BigInt(U32_MAX)) return Number(request);
    throw outOfRange('request', `>= 0n && <= ${U32_MAX}n`, request, caller);
  }
  throw invalidArgType('request', 'of type number or bigint', request, caller);
}

function field(name: string, v: unknown, max: number): number {
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'bigint') n = v >= 0n && v <= BigInt(max) ? Number(v) : -1;
  else if (typeof v === 'string' && name === 'type' && v.length === 1) n = v.charCodeAt(0);
  else {
    const expected = name === 'type' ? 'of type number, bigint or a one-character string' : 'of type number or bigint';
    throw invalidArgType(name, expected, v, field);
  }
  if (!Number.isInteger(n) || n < 0 || n > max) throw outOfRange(name, `an integer >= 0 && <= ${max}`, v, field);
  return n;
}

/** Request encoders and decoders, as the kernel's `<asm/ioctl.h>` macros. */
export const ioc = {
  /** Direction bits of this architecture. */
  NONE: LAYOUT.none,
  WRITE: LAYOUT.write,
  READ: LAYOUT.read,
  /** Largest argument size a request can encode. */
  SIZE_MAX: 2 ** LAYOUT.sizeBits - 1,

  /** `_IOC(dir, type, nr, size)`: always a non-negative u32 number. */
  ioc(dir: number | bigint, type: number | bigint | string, nr: number | bigint, size: number | bigint): number {
    const d = field('dir', dir, 2 ** LAYOUT.dirBits - 1);
    const t = field('type', type, 0xff);
    const n = field('nr', nr, 0xff);
    const s = field('size', size, 2 ** LAYOUT.sizeBits - 1);
    return d * 2 ** DIR_SHIFT + s * 2 ** SIZE_SHIFT + t * 2 ** TYPE_SHIFT + n * 2 ** NR_SHIFT;
  },
  /** `_IO(type, nr)` */
  io(type: number | bigint | string, nr: number | bigint): number {
    return ioc.ioc(LAYOUT.none, type, nr, 0);
  },
  /** `_IOR(type, nr, size)`: the kernel writes `size` bytes to the argument. */
  ior(type: number | bigint | string, nr: number | bigint, size: number | bigint): number {
    return ioc.ioc(LAYOUT.read, type, nr, size);
  },
  /** `_IOW(type, nr, size)`: the kernel reads `size` bytes from the argument. */
  iow(type: number | bigint | string, nr: number | bigint, size: number | bigint): number {
    return ioc.ioc(LAYOUT.write, type, nr, size);
  },
  /** `_IOWR(type, nr, size)` */
  iowr(type: number | bigint | string, nr: number | bigint, size: number | bigint): number {
    return ioc.ioc(LAYOUT.read | LAYOUT.write, type, nr, size);
  },
  /** `_IOC_DIR(request)` */
  dir(request: number | bigint): number {
    return (toRequest(request, ioc.dir) >>> DIR_SHIFT) & DIR_MASK;
  },
  /** `_IOC_TYPE(request)` */
  type(request: number | bigint): number {
    return (toRequest(request, ioc.type) >>> TYPE_SHIFT) & 0xff;
  },
  /** `_IOC_NR(request)` */
  nr(request: number | bigint): number {
    return (toRequest(request, ioc.nr) >>> NR_SHIFT) & 0xff;
  },
  /** `_IOC_SIZE(request)` */
  size(request: number | bigint): number {
    return (toRequest(request, ioc.size) >>> SIZE_SHIFT) & SIZE_MASK;
  },
} as const;

// ---------------------------------------------------------------------------
// Known requests

const POINTER_SIZE = ['arm64', 'x64', 'ppc64', 'riscv64', 's390x', 'loong64', 'mips64el'].includes(process.arch) ? 8 : 4;

/** FIONREAD (`<asm/ioctls.h>`): bytes readable on a pipe, socket or tty. */
function fionread(): number {
  if (process.arch === 'ppc' || process.arch === 'ppc64') return ioc.ior('f', 127, 4);
  if (process.arch.startsWith('mips')) return 0x467f;
  return 0x541b;
}

/**
 * Request numbers of the ioctls this package uses (uapi `linux/dma-buf.h`,
 * `linux/dma-heap.h`, `linux/udmabuf.h`, `asm/ioctls.h`).
 */
export const requests = Object.freeze({
  /** `struct dma_buf_sync { __u64 flags; }` */
  DMA_BUF_IOCTL_SYNC: ioc.iow('b', 0, uapi.dma_buf_sync.size),
  /** argument: pointer to a NUL-terminated name (<= 32 bytes) */
  DMA_BUF_SET_NAME: ioc.iow('b', 1, POINTER_SIZE),
  /** `struct dma_buf_export_sync_file { __u32 flags; __s32 fd; }` */
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE: ioc.iowr('b', 2, uapi.dma_buf_export_sync_file.size),
  /** `struct dma_buf_import_sync_file { __u32 flags; __s32 fd; }` */
  DMA_BUF_IOCTL_IMPORT_SYNC_FILE: ioc.iow('b', 3, uapi.dma_buf_import_sync_file.size),
  /** `struct dma_heap_allocation_data { __u64 len; __u32 fd; __u32 fd_flags; __u64 heap_flags; }` */
  DMA_HEAP_IOCTL_ALLOC: ioc.iowr('H', 0, uapi.dma_heap_allocation_data.size),
  /** `struct udmabuf_create { __u32 memfd; __u32 flags; __u64 offset; __u64 size; }` */
  UDMABUF_CREATE: ioc.iow('u', 0x42, uapi.udmabuf_create.size),
  /** `struct udmabuf_create_list { __u32 flags; __u32 count; struct udmabuf_create_item list[]; }` */
  UDMABUF_CREATE_LIST: ioc.iow('u', 0x43, uapi.udmabuf_create_list.size),
  /** `int *` */
  FIONREAD: fionread(),
});

/**
 * Old-style requests (no direction or size encoded, e.g. FIONREAD 0x541b)
 * whose argument size is known: asm-generic/ioctls.h, on the architectures
 * that use it. Views passed with other old-style requests are not checked:
 * the caller must make them large enough.
 */
const LEGACY_SIZES = new Map<number, number>([[requests.FIONREAD, 4]]);
if (LAYOUT === GENERIC) {
  for (const [req, size] of [
    [0x5401, 36], // TCGETS: struct termios
    [0x5402, 36], // TCSETS
    [0x540f, 4], // TIOCGPGRP: pid_t
    [0x5410, 4], // TIOCSPGRP
    [0x5411, 4], // TIOCOUTQ: int
    [0x5413, 8], // TIOCGWINSZ: struct winsize
    [0x5414, 8], // TIOCSWINSZ
    [0x5421, 4], // FIONBIO: int
  ]) {
    LEGACY_SIZES.set(req, size);
  }
}

/**
 * The bytes a view must hold for `request`: `_IOC_SIZE` when the request
 * encodes a direction, else the known size of an old-style request, else 0.
 */
export function argSize(request: number): number {
  if (((request >>> DIR_SHIFT) & DIR_MASK) !== LAYOUT.none) return (request >>> SIZE_SHIFT) & SIZE_MASK;
  // The last old-style request's size: a loop of one request (FIONREAD)
  // skips the Map lookup, a builtin call the JIT does not inline.
  if (request === lastLegacy) return lastLegacySize;
  lastLegacySize = LEGACY_SIZES.get(request) ?? 0;
  lastLegacy = request;
  return lastLegacySize;
}
let lastLegacy = -1;
let lastLegacySize = 0;

const NAMES = new Map<number, string>();

/**
 * Adds request names used in error messages (`request: 'DRM_IOCTL_VERSION'`).
 * Modules with their own ioctls register them at load time.
 */
export function registerRequests(table: Readonly<Record<string, number>>): void {
  validateObject(table, 'table', registerRequests);
  const entries = Object.entries(table).map(([name, value]) => [name, toRequest(value, registerRequests)] as const);
  for (const [name, value] of entries) {
    if (!NAMES.has(value)) NAMES.set(value, name);
  }
}
registerRequests(requests);

/** The request's name if registered, else its hex value (`'0xc0184800'`). */
export function requestName(request: number | bigint): string {
  const req = toRequest(request, requestName);
  return NAMES.get(req) ?? `0x${req.toString(16).padStart(8, '0')}`;
}

// ---------------------------------------------------------------------------
// ioctl

const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;

function checkNumberArg(arg: number, caller: Function): void {
  if (!Number.isSafeInteger(arg)) {
    throw outOfRange('arg', `a safe integer (pass larger values as bigint)`, arg, caller);
  }
}

function toBigIntArg(arg: bigint, caller: Function): bigint {
  if (arg < I64_MIN || arg > U64_MAX) throw outOfRange('arg', `>= ${I64_MIN}n && <= ${U64_MAX}n`, arg, caller);
  return BigInt.asUintN(64, arg);
}

function badArg(arg: unknown, caller: Function): TypeError {
  return invalidArgType('arg', 'of type number, bigint, undefined or an instance of Buffer, TypedArray or DataView', arg, caller);
}

/** Options of `ioctlSync`. */
export interface IoctlSyncOptions {
  /**
   * The request's name in errors (`request` and the message), e.g.
   * `'DRM_IOCTL_VERSION'`. Driver-private ioctls of different drivers share
   * numbers, so a typed wrapper knows the name better than the table of
   * `registerRequests`, which is the fallback.
   */
  name?: string;
}

/** Options of `ioctl`. */
export interface IoctlOptions extends IoctlSyncOptions {
  /**
   * Checked before the call starts. An abort while the call is queued or
   * running rejects at once with an AbortError, even though the syscall
   * itself cannot be interrupted; the view is then left as it was.
   */
  signal?: AbortSignal;
}

function toOptions(options: unknown, caller: Function): IoctlOptions {
  if (options === undefined) return {};
  validateObject(options, 'options', caller);
  const { name, signal } = options as IoctlOptions;
  if (name !== undefined && typeof name !== 'string') throw invalidArgType('options.name', 'of type string', name, caller);
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, caller);
  }
  return { name, signal };
}

function viewTooSmall(bytes: number, need: number, name: string, caller: Function): RangeError {
  return outOfRange('arg.byteLength', `>= ${need} (the argument size of ${name})`, bytes, caller);
}

/**
 * ioctlSync(fd, request, arg?, options?): returns the ioctl's (non-negative)
 * result, or throws a SystemError (`syscall: 'ioctl'`, `request: <name>`).
 * Arguments are checked before the syscall: TypeError ERR_INVALID_ARG_TYPE /
 * RangeError ERR_OUT_OF_RANGE (also for a view smaller than the request's
 * argument size). The hot path: the kernel works on the view in place.
 */
export function ioctlSync(fd: FdLike, request: number | bigint, arg?: IoctlArg, options?: IoctlSyncOptions): number {
  // Fast path first: plain numbers need no allocation and no dispatch.
  const n = typeof fd === 'number' && (fd | 0) === fd && fd >= 0 ? fd : toFd(fd, ioctlSync);
  const req = typeof request === 'number' && request >>> 0 === request ? request : toRequest(request, ioctlSync);
  const name = options === undefined ? undefined : toOptions(options, ioctlSync).name;
  let r: number | undefined;
  if (typeof arg === 'object' && ArrayBuffer.isView(arg)) {
    const need = argSize(req);
    if (need > 0) {
      const bytes = viewByteLength(arg);
      if (bytes < need) throw viewTooSmall(bytes, need, name ?? requestName(req), ioctlSync);
    }
    r = native.ioctlView(n, req, arg);
  } else if (arg === undefined) {
    r = native.ioctl(n, req);
  } else if (typeof arg === 'number') {
    checkNumberArg(arg, ioctlSync);
    r = native.ioctl(n, req, arg);
  } else if (typeof arg === 'bigint') {
    r = native.ioctlBigInt(n, req, toBigIntArg(arg, ioctlSync));
  } else {
    throw badArg(arg, ioctlSync);
  }
  // The binding returns undefined for 0 (saves creating a number), else the
  // kernel's convention: -4095..-1 is -errno; nothing else is an error.
  if (r === undefined) return 0;
  if (r < 0 && r > -4096) throw sysError(-r, 'ioctl', { fd: n, request: name ?? requestName(req) }, ioctlSync);
  return r;
}

/** The largest view `ioctl` copies. */
export const IOCTL_MAX_COPY = 16384;

/**
 * ioctl(fd, request, arg?, options?): the promise form, run on the libuv
 * thread pool, for requests that block or take long (allocations, pinning,
 * waits). Resolves with the result; rejects with the same SystemError as
 * `ioctlSync`, or an AbortError (`options.signal`).
 *
 * A view's bytes (at most 16 KiB) are copied when the call starts, the
 * kernel works on the copy, and the result is copied back when the call
 * settles, only if the view is still attached with the same length and
 * the call was not aborted. So detaching, transferring or unmapping the
 * view's memory meanwhile is safe, and writes to the view while the call
 * runs are overwritten. For larger arguments use `ioctlSync`, or pass the
 * address of memory that stays mapped (`mapping.address`) as a bigint.
 *
 * The handle stays referenced until the syscall returns (even after an
 * abort), and closing it meanwhile defers the close(2) until then.
 */
export function ioctl(fd: FdLike, request: number | bigint, arg?: IoctlArg, options?: IoctlOptions): Promise<number> {
  let n: number;
  let req: number;
  let a: IoctlArg;
  let name: string | undefined;
  let signal: AbortSignal | undefined;
  try {
    n = toFd(fd, ioctl);
    req = toRequest(request, ioctl);
    ({ name, signal } = toOptions(options, ioctl));
    if (typeof arg === 'object' && ArrayBuffer.isView(arg)) {
      const need = argSize(req);
      const bytes = viewByteLength(arg);
      if (bytes < need) throw viewTooSmall(bytes, need, name ?? requestName(req), ioctl);
      if (bytes > IOCTL_MAX_COPY) {
        const hint = 'ioctl() copies the view; use ioctlSync() or pass the address of memory that stays mapped';
        throw outOfRange('arg.byteLength', `<= ${IOCTL_MAX_COPY} (${hint})`, bytes, ioctl);
      }
      a = arg;
    } else if (arg === undefined) a = arg;
    else if (typeof arg === 'number') {
      checkNumberArg(arg, ioctl);
      a = arg;
    } else if (typeof arg === 'bigint') a = toBigIntArg(arg, ioctl);
    else throw badArg(arg, ioctl);
    if (signal?.aborted) throw abortError(signal.reason, ioctl);
  } catch (e) {
    return Promise.reject(e);
  }
  const handle = fd instanceof Fd ? fd : undefined;
  const result = holdDuring(handle, () => wrap(native.ioctlAsync(n, req, a, handle, signal), { request: name ?? requestName(req) }));
  return abortable(result, signal);
}
