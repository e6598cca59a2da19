/**
 * The error model: Node-style system errors and argument errors.
 *
 * System errors look like the ones `fs` throws: a plain `Error` whose own
 * properties are `errno` (negative), `code`, `syscall`, plus `fd`, `request`
 * (ioctls) or `path` when known, and whose message is
 * `${code}: ${description}, ${syscall}[ ${request}][ '${path}']`.
 *
 * Errno names and descriptions come from the C library (glibc's
 * strerrorname_np/strerrordesc_np, read once through the addon), not from
 * `util.getSystemErrorMap()`: libuv names 95 ENOTSUP (the kernel and glibc
 * say EOPNOTSUPP) and has no entry for ETIME, EBADFD and many more. Where
 * Node knows the same name, its (lower-case) description is used, so our
 * messages read like fs's. Only the kernel-internal codes that drivers leak
 * (ENOTSUPP 524, EPROBE_DEFER 517, ...), which no C library names, are kept
 * here by hand.
 */

import * as os from 'node:os';
import * as util from 'node:util';

import { native } from './native';

/** A system call failure, shaped like Node's own fs errors. */
export interface SystemError extends Error {
  /** Negative errno, as in Node (`-25` for ENOTTY). */
  errno: number;
  /** Errno name, e.g. `'ENOTTY'`. */
  code: string;
  /** The failing call: `'ioctl'`, `'mmap'`, `'msync'`, `'close'`, ... */
  syscall: string;
  /** The file descriptor involved, when there is one. */
  fd?: number;
  /** For ioctls: the request's name (`'DMA_BUF_IOCTL_SYNC'`) or its hex value. */
  request?: string;
  /** The path involved, when there is one. */
  path?: string;
}

/** Extra context attached to a system error. */
export interface ErrorContext {
  fd?: number;
  request?: string;
  path?: string;
}

// include/linux/errno.h: kernel-internal codes (the same on every
// architecture) that should never reach userspace but sometimes do.
// ENOTSUPP in particular is what some RDMA and DRM paths return instead of
// EOPNOTSUPP. No C library names them.
const KERNEL_INTERNAL: ReadonlyArray<readonly [number, string, string]> = [
  [512, 'ERESTARTSYS', 'restart system call (kernel internal)'],
  [513, 'ERESTARTNOINTR', 'restart system call without interrupt (kernel internal)'],
  [514, 'ERESTARTNOHAND', 'restart if no signal handler (kernel internal)'],
  [515, 'ENOIOCTLCMD', 'no ioctl command (kernel internal)'],
  [516, 'ERESTART_RESTARTBLOCK', 'restart by calling sys_restart_syscall (kernel internal)'],
  [517, 'EPROBE_DEFER', 'driver requests probe retry (kernel internal)'],
  [518, 'EOPENSTALE', 'open found a stale dentry (kernel internal)'],
  [519, 'ENOPARAM', 'parameter not supported (kernel internal)'],
  [521, 'EBADHANDLE', 'illegal NFS file handle (kernel internal)'],
  [522, 'ENOTSYNC', 'update synchronization mismatch (kernel internal)'],
  [523, 'EBADCOOKIE', 'cookie is stale (kernel internal)'],
  [524, 'ENOTSUPP', 'operation is not supported (kernel internal ENOTSUPP)'],
  [525, 'ETOOSMALL', 'buffer or request is too small (kernel internal)'],
  [526, 'ESERVERFAULT', 'an untranslatable error occurred (kernel internal)'],
  [527, 'EBADTYPE', 'type not supported by server (kernel internal)'],
  [528, 'EJUKEBOX', 'request initiated, but will not complete before timeout (kernel internal)'],
  [529, 'EIOCBQUEUED', 'iocb queued, will get completion event (kernel internal)'],
  [530, 'ERECALLCONFLICT', 'conflict with recalled state (kernel internal)'],
  [531, 'ENOGRACE', 'NFS file lock reclaim refused (kernel internal)'],
];

// Second names the C library gives an errno (strerrorname_np returns the first).
const ALIASES = ['EWOULDBLOCK', 'EDEADLOCK', 'ENOTSUP'] as const;

/** "Inappropriate ioctl for device" -> "inappropriate ioctl for device"; "RFS specific error" stays. */
function lowerFirst(desc: string): string {
  return /^[A-Z][a-z]/.test(desc) ? desc[0].toLowerCase() + desc.slice(1) : desc;
}

interface ErrnoTables {
  byNumber: Map<number, readonly [string, string]>;
  byName: Map<string, number>;
}

let tables: ErrnoTables | undefined;

// Built on first use: no error, no cost at load.
function errnoTables(): ErrnoTables {
  if (tables !== undefined) return tables;
  const libc = native.errnoTable();
  const nodeMap = util.getSystemErrorMap();
  // Without strerrorname_np (musl, glibc < 2.32) names come from Node's
  // errno.h constants, which cover the common codes.
  const nodeNames = new Map<number, string>();
  for (const [name, n] of Object.entries(os.constants.errno)) {
    if (!nodeNames.has(n) && !(ALIASES as readonly string[]).includes(name)) nodeNames.set(n, name);
  }
  const byNumber = new Map<number, readonly [string, string]>();
  const byName = new Map<string, number>();
  for (let n = 1; n <= 4095; n++) {
    const name = libc.names[n] ?? nodeNames.get(n);
    const libcDesc = libc.descriptions[n];
    if (name === undefined && libcDesc === undefined) continue;
    const [nodeName, nodeDesc] = nodeMap.get(-n) ?? [];
    const desc = name !== undefined && nodeName === name ? nodeDesc! : lowerFirst(libcDesc ?? `unknown error ${n}`);
    byNumber.set(n, [name ?? `E${n}`, desc]);
    if (name !== undefined) byName.set(name, n);
  }
  for (const [n, name, desc] of KERNEL_INTERNAL) {
    if (byName.has(name)) continue;
    byNumber.set(n, [name, desc]);
    byName.set(name, n);
  }
  const errnoConstants: Record<string, number | undefined> = os.constants.errno;
  for (const alias of ALIASES) {
    const n = errnoConstants[alias];
    if (n !== undefined && !byName.has(alias)) byName.set(alias, n);
  }
  // Node's constants lack EDEADLOCK; it is EDEADLK except on powerpc and sparc.
  if (!byName.has('EDEADLOCK') && !['ppc', 'ppc64'].includes(process.arch)) byName.set('EDEADLOCK', byName.get('EDEADLK')!);
  tables = { byNumber, byName };
  return tables;
}

/** A safe integer errno of either sign, as its absolute value. */
function toErrno(errno: unknown, caller: Function): number {
  if (typeof errno !== 'number') throw invalidArgType('errno', 'of type number', errno, caller);
  if (!Number.isSafeInteger(errno)) throw outOfRange('errno', 'a safe integer', errno, caller);
  return Math.abs(errno);
}

/** The errno's name (`errnoName(25) === 'ENOTTY'`); accepts negative errnos. `'E<n>'` when unknown. */
export function errnoName(errno: number): string {
  const n = toErrno(errno, errnoName);
  return errnoTables().byNumber.get(n)?.[0] ?? `E${n}`;
}

/**
 * The errno's lower-case description: Node's wording where Node knows the
 * same name, else the C library's (strerror) with its first letter lowered.
 */
export function errnoDescription(errno: number): string {
  const n = toErrno(errno, errnoDescription);
  return errnoTables().byNumber.get(n)?.[1] ?? `unknown error ${n}`;
}

/** The positive errno for a name (`errnoFromName('ENOTTY') === 25`), or undefined. */
export function errnoFromName(name: string): number | undefined {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name, errnoFromName);
  return errnoTables().byName.get(name);
}

/**
 * Builds a system error from a positive errno. `caller` trims the stack so it
 * starts at the public API function the user called.
 */
export function sysError(
  errno: number,
  syscall: string,
  ctx: ErrorContext = {},
  caller?: Function,
): SystemError {
  const n = toErrno(errno, sysError);
  if (typeof syscall !== 'string') throw invalidArgType('syscall', 'of type string', syscall, sysError);
  validateObject(ctx, 'ctx', sysError);
  const { fd, request, path } = ctx;
  if (fd !== undefined && typeof fd !== 'number') throw invalidArgType('ctx.fd', 'of type number', fd, sysError);
  if (request !== undefined && typeof request !== 'string') throw invalidArgType('ctx.request', 'of type string', request, sysError);
  if (path !== undefined && typeof path !== 'string') throw invalidArgType('ctx.path', 'of type string', path, sysError);
  if (caller !== undefined && typeof caller !== 'function') throw invalidArgType('caller', 'of type function', caller, sysError);
  const code = errnoName(n);
  let message = `${code}: ${errnoDescription(n)}, ${syscall}`;
  if (request !== undefined) message += ` ${request}`;
  if (path !== undefined) message += ` '${path}'`;
  const err = new Error(message) as SystemError;
  err.errno = -n;
  err.code = code;
  err.syscall = syscall;
  if (fd !== undefined) err.fd = fd;
  if (request !== undefined) err.request = request;
  if (path !== undefined) err.path = path;
  if (caller !== undefined) Error.captureStackTrace(err, caller);
  return err;
}

/** The tiny error native code throws or rejects with (native/core/errors.cc). */
interface NativeSysError {
  sysErrno: number;
  syscall: string;
  fd?: number;
}

function isNativeSysError(e: unknown): e is NativeSysError {
  return typeof e === 'object' && e !== null && typeof (e as NativeSysError).sysErrno === 'number';
}

/**
 * Converts a native error into a SystemError (adding `ctx`); anything else is
 * returned unchanged.
 */
export function fromNative(e: unknown, ctx: ErrorContext = {}, caller?: Function): unknown {
  if (!isNativeSysError(e)) return e;
  return sysError(e.sysErrno, e.syscall, { fd: e.fd, ...ctx }, caller);
}

/** Awaits a native promise, converting its rejection with `fromNative`. */
export function wrap<T>(p: Promise<T>, ctx: ErrorContext = {}): Promise<T> {
  return p.then(undefined, (e: unknown) => {
    throw fromNative(e, ctx);
  });
}

/** An error with a Node-style `code` property. */
export interface CodedError extends Error {
  code: string;
}

function coded<E extends Error>(err: E, code: string, caller?: Function): E & CodedError {
  const e = err as E & CodedError;
  e.code = code;
  if (caller !== undefined) Error.captureStackTrace(e, caller);
  return e;
}

/** A function's or constructor's name; '' when reading it throws or gives no string (Proxies, getters). */
function nameOf(get: () => unknown): string {
  try {
    const name = get();
    return typeof name === 'string' ? name : '';
  } catch {
    return '';
  }
}

/** Node's wording for what was received (`type string ('x')`, `an instance of Foo`). Never throws. */
export function describeReceived(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  switch (typeof value) {
    case 'function':
      return `function ${nameOf(() => (value as Function).name) || '<anonymous>'}`;
    case 'object': {
      const name = nameOf(() => (value as object).constructor?.name);
      return name ? `an instance of ${name}` : 'an object';
    }
    case 'bigint':
      return `type bigint (${value}n)`;
    case 'string': {
      const s = value.length > 28 ? `${value.slice(0, 25)}...` : value;
      return `type string ('${s}')`;
    }
    default:
      return `type ${typeof value} (${String(value)})`;
  }
}

/** TypeError with code ERR_INVALID_ARG_TYPE, worded like Node's. */
export function invalidArgType(name: string, expected: string, value: unknown, caller?: Function): CodedError {
  return coded(
    new TypeError(`The "${name}" argument must be ${expected}. Received ${describeReceived(value)}`),
    'ERR_INVALID_ARG_TYPE',
    caller,
  );
}

/** Throws ERR_INVALID_ARG_TYPE unless `value` is a non-null object (options, tables). */
export function validateObject(value: unknown, name: string, caller?: Function): asserts value is object {
  if (typeof value !== 'object' || value === null) throw invalidArgType(name, 'of type object', value, caller);
}

/** TypeError with code ERR_INVALID_ARG_VALUE, worded like Node's. */
export function invalidArgValue(name: string, value: unknown, reason: string, caller?: Function): CodedError {
  const shown = typeof value === 'string' ? `'${value}'` : typeof value === 'bigint' ? `${value}n` : String(value);
  return coded(
    new TypeError(`The argument '${name}' ${reason}. Received ${shown}`),
    'ERR_INVALID_ARG_VALUE',
    caller,
  );
}

/** RangeError with code ERR_OUT_OF_RANGE, worded like Node's. */
export function outOfRange(name: string, range: string, value: unknown, caller?: Function): CodedError {
  // Never throws: String() of a Symbol, a Proxy or an object whose
  // toString throws would replace the RangeError with another error.
  let shown: string;
  if (typeof value === 'bigint') shown = `${value}n`;
  else if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') shown = String(value);
  else shown = describeReceived(value);
  return coded(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${shown}`),
    'ERR_OUT_OF_RANGE',
    caller,
  );
}

/**
 * The AbortError Node's own APIs reject with when their `signal` aborts:
 * name 'AbortError', code 'ABORT_ERR', the signal's reason as `cause`.
 */
export function abortError(reason: unknown, caller?: Function): CodedError {
  const e = coded(new Error('The operation was aborted', { cause: reason }), 'ABORT_ERR', caller);
  e.name = 'AbortError';
  return e;
}

/** TypeError with code ERR_ILLEGAL_CONSTRUCTOR, as Node's for classes users may not construct. */
export function illegalConstructor(caller?: Function): CodedError {
  return coded(new TypeError('Illegal constructor'), 'ERR_ILLEGAL_CONSTRUCTOR', caller);
}

/** Error with code ERR_P2PDMA_BUSY: a handle has `inFlight` operations in flight. */
export function busyError(what: string, inFlight: number, caller?: Function): CodedError {
  return coded(new Error(`${what} is busy: ${inFlight} operation${inFlight === 1 ? '' : 's'} in flight`), 'ERR_P2PDMA_BUSY', caller);
}

/** Error with code ERR_P2PDMA_CLOSED: a handle or mapping was used after close()/unmap(). */
export function closedError(what: string, caller?: Function): CodedError {
  return coded(new Error(`${what} is closed`), 'ERR_P2PDMA_CLOSED', caller);
}
