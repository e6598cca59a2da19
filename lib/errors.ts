/**
 * The error model: Node-style system errors and argument errors.
 *
 * System errors look like the ones `fs` throws: a plain `Error` whose own
 * properties are `errno` (negative), `code`, `syscall`, plus `fd`, `request`
 * (ioctls) or `path` when known, and whose message is
 * `${code}: ${description}, ${syscall}[ ${request}][ '${path}']`.
 *
 * We keep our own errno table instead of `util.getSystemErrorMap()`: libuv
 * names 95 ENOTSUP (the kernel and glibc say EOPNOTSUPP) and has no entry
 * for ETIME, EBADFD or the kernel-internal ENOTSUPP (524) that drivers leak.
 */

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

// [errno, name, description]: glibc's names (strerrorname_np), Node/libuv's
// descriptions where libuv knows the same name, glibc's strerror lower-cased
// otherwise. Linux asm-generic numbering (x86, arm, riscv, s390, loongarch).
const TABLE: ReadonlyArray<readonly [number, string, string]> = [
  [1, "EPERM", "operation not permitted"],
  [2, "ENOENT", "no such file or directory"],
  [3, "ESRCH", "no such process"],
  [4, "EINTR", "interrupted system call"],
  [5, "EIO", "i/o error"],
  [6, "ENXIO", "no such device or address"],
  [7, "E2BIG", "argument list too long"],
  [8, "ENOEXEC", "exec format error"],
  [9, "EBADF", "bad file descriptor"],
  [10, "ECHILD", "no child processes"],
  [11, "EAGAIN", "resource temporarily unavailable"],
  [12, "ENOMEM", "not enough memory"],
  [13, "EACCES", "permission denied"],
  [14, "EFAULT", "bad address in system call argument"],
  [15, "ENOTBLK", "block device required"],
  [16, "EBUSY", "resource busy or locked"],
  [17, "EEXIST", "file already exists"],
  [18, "EXDEV", "cross-device link not permitted"],
  [19, "ENODEV", "no such device"],
  [20, "ENOTDIR", "not a directory"],
  [21, "EISDIR", "illegal operation on a directory"],
  [22, "EINVAL", "invalid argument"],
  [23, "ENFILE", "file table overflow"],
  [24, "EMFILE", "too many open files"],
  [25, "ENOTTY", "inappropriate ioctl for device"],
  [26, "ETXTBSY", "text file is busy"],
  [27, "EFBIG", "file too large"],
  [28, "ENOSPC", "no space left on device"],
  [29, "ESPIPE", "invalid seek"],
  [30, "EROFS", "read-only file system"],
  [31, "EMLINK", "too many links"],
  [32, "EPIPE", "broken pipe"],
  [33, "EDOM", "numerical argument out of domain"],
  [34, "ERANGE", "result too large"],
  [35, "EDEADLK", "resource deadlock avoided"],
  [36, "ENAMETOOLONG", "name too long"],
  [37, "ENOLCK", "no locks available"],
  [38, "ENOSYS", "function not implemented"],
  [39, "ENOTEMPTY", "directory not empty"],
  [40, "ELOOP", "too many symbolic links encountered"],
  [42, "ENOMSG", "no message of desired type"],
  [43, "EIDRM", "identifier removed"],
  [44, "ECHRNG", "channel number out of range"],
  [45, "EL2NSYNC", "level 2 not synchronized"],
  [46, "EL3HLT", "level 3 halted"],
  [47, "EL3RST", "level 3 reset"],
  [48, "ELNRNG", "link number out of range"],
  [49, "EUNATCH", "protocol driver not attached"],
  [50, "ENOCSI", "no CSI structure available"],
  [51, "EL2HLT", "level 2 halted"],
  [52, "EBADE", "invalid exchange"],
  [53, "EBADR", "invalid request descriptor"],
  [54, "EXFULL", "exchange full"],
  [55, "ENOANO", "no anode"],
  [56, "EBADRQC", "invalid request code"],
  [57, "EBADSLT", "invalid slot"],
  [59, "EBFONT", "bad font file format"],
  [60, "ENOSTR", "device not a stream"],
  [61, "ENODATA", "no data available"],
  [62, "ETIME", "timer expired"],
  [63, "ENOSR", "out of streams resources"],
  [64, "ENONET", "machine is not on the network"],
  [65, "ENOPKG", "package not installed"],
  [66, "EREMOTE", "object is remote"],
  [67, "ENOLINK", "link has been severed"],
  [68, "EADV", "advertise error"],
  [69, "ESRMNT", "srmount error"],
  [70, "ECOMM", "communication error on send"],
  [71, "EPROTO", "protocol error"],
  [72, "EMULTIHOP", "multihop attempted"],
  [73, "EDOTDOT", "RFS specific error"],
  [74, "EBADMSG", "bad message"],
  [75, "EOVERFLOW", "value too large for defined data type"],
  [76, "ENOTUNIQ", "name not unique on network"],
  [77, "EBADFD", "file descriptor in bad state"],
  [78, "EREMCHG", "remote address changed"],
  [79, "ELIBACC", "can not access a needed shared library"],
  [80, "ELIBBAD", "accessing a corrupted shared library"],
  [81, "ELIBSCN", ".lib section in a.out corrupted"],
  [82, "ELIBMAX", "attempting to link in too many shared libraries"],
  [83, "ELIBEXEC", "cannot exec a shared library directly"],
  [84, "EILSEQ", "illegal byte sequence"],
  [85, "ERESTART", "interrupted system call should be restarted"],
  [86, "ESTRPIPE", "streams pipe error"],
  [87, "EUSERS", "too many users"],
  [88, "ENOTSOCK", "socket operation on non-socket"],
  [89, "EDESTADDRREQ", "destination address required"],
  [90, "EMSGSIZE", "message too long"],
  [91, "EPROTOTYPE", "protocol wrong type for socket"],
  [92, "ENOPROTOOPT", "protocol not available"],
  [93, "EPROTONOSUPPORT", "protocol not supported"],
  [94, "ESOCKTNOSUPPORT", "socket type not supported"],
  [95, "EOPNOTSUPP", "operation not supported"],
  [96, "EPFNOSUPPORT", "protocol family not supported"],
  [97, "EAFNOSUPPORT", "address family not supported"],
  [98, "EADDRINUSE", "address already in use"],
  [99, "EADDRNOTAVAIL", "address not available"],
  [100, "ENETDOWN", "network is down"],
  [101, "ENETUNREACH", "network is unreachable"],
  [102, "ENETRESET", "network dropped connection on reset"],
  [103, "ECONNABORTED", "software caused connection abort"],
  [104, "ECONNRESET", "connection reset by peer"],
  [105, "ENOBUFS", "no buffer space available"],
  [106, "EISCONN", "socket is already connected"],
  [107, "ENOTCONN", "socket is not connected"],
  [108, "ESHUTDOWN", "cannot send after transport endpoint shutdown"],
  [109, "ETOOMANYREFS", "too many references: cannot splice"],
  [110, "ETIMEDOUT", "connection timed out"],
  [111, "ECONNREFUSED", "connection refused"],
  [112, "EHOSTDOWN", "host is down"],
  [113, "EHOSTUNREACH", "host is unreachable"],
  [114, "EALREADY", "connection already in progress"],
  [115, "EINPROGRESS", "operation now in progress"],
  [116, "ESTALE", "stale file handle"],
  [117, "EUCLEAN", "structure needs cleaning"],
  [118, "ENOTNAM", "not a XENIX named type file"],
  [119, "ENAVAIL", "no XENIX semaphores available"],
  [120, "EISNAM", "is a named type file"],
  [121, "EREMOTEIO", "remote I/O error"],
  [122, "EDQUOT", "disk quota exceeded"],
  [123, "ENOMEDIUM", "no medium found"],
  [124, "EMEDIUMTYPE", "wrong medium type"],
  [125, "ECANCELED", "operation canceled"],
  [126, "ENOKEY", "required key not available"],
  [127, "EKEYEXPIRED", "key has expired"],
  [128, "EKEYREVOKED", "key has been revoked"],
  [129, "EKEYREJECTED", "key was rejected by service"],
  [130, "EOWNERDEAD", "owner died"],
  [131, "ENOTRECOVERABLE", "state not recoverable"],
  [132, "ERFKILL", "operation not possible due to RF-kill"],
  [133, "EHWPOISON", "memory page has hardware error"],
  // Kernel-internal codes (include/linux/errno.h) that drivers sometimes
  // leak to userspace. ENOTSUPP in particular is what some RDMA and DRM
  // paths return instead of EOPNOTSUPP.
  [512, "ERESTARTSYS", "restart system call (kernel internal)"],
  [513, "ERESTARTNOINTR", "restart system call without interrupt (kernel internal)"],
  [514, "ERESTARTNOHAND", "restart if no signal handler (kernel internal)"],
  [515, "ENOIOCTLCMD", "no ioctl command (kernel internal)"],
  [516, "ERESTART_RESTARTBLOCK", "restart by calling sys_restart_syscall (kernel internal)"],
  [517, "EPROBE_DEFER", "driver requests probe retry (kernel internal)"],
  [518, "EOPENSTALE", "open found a stale dentry (kernel internal)"],
  [519, "ENOPARAM", "parameter not supported (kernel internal)"],
  [521, "EBADHANDLE", "illegal NFS file handle (kernel internal)"],
  [522, "ENOTSYNC", "update synchronization mismatch (kernel internal)"],
  [523, "EBADCOOKIE", "cookie is stale (kernel internal)"],
  [524, "ENOTSUPP", "operation is not supported (kernel internal ENOTSUPP)"],
  [525, "ETOOSMALL", "buffer or request is too small (kernel internal)"],
  [526, "ESERVERFAULT", "an untranslatable error occurred (kernel internal)"],
  [527, "EBADTYPE", "type not supported by server (kernel internal)"],
  [528, "EJUKEBOX", "request initiated, but will not complete before timeout (kernel internal)"],
  [529, "EIOCBQUEUED", "iocb queued, will get completion event (kernel internal)"],
  [530, "ERECALLCONFLICT", "conflict with recalled state (kernel internal)"],
  [531, "ENOGRACE", "NFS file lock reclaim refused (kernel internal)"],
];

const BY_NUMBER = new Map<number, readonly [string, string]>();
const BY_NAME = new Map<string, number>();
for (const [n, name, desc] of TABLE) {
  BY_NUMBER.set(n, [name, desc]);
  BY_NAME.set(name, n);
}
// Aliases glibc defines with the same number.
BY_NAME.set('EWOULDBLOCK', 11);
BY_NAME.set('EDEADLOCK', 35);
BY_NAME.set('ENOTSUP', 95);

/** The errno's name (`errnoName(25) === 'ENOTTY'`); accepts negative errnos. `'E<n>'` when unknown. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return BY_NUMBER.get(n)?.[0] ?? `E${n}`;
}

/** The errno's lower-case description, as Node words it where Node knows it. */
export function errnoDescription(errno: number): string {
  const n = Math.abs(errno);
  return BY_NUMBER.get(n)?.[1] ?? `unknown error ${n}`;
}

/** The positive errno for a name (`errnoFromName('ENOTTY') === 25`), or undefined. */
export function errnoFromName(name: string): number | undefined {
  return BY_NAME.get(name);
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
  const code = errnoName(errno);
  let message = `${code}: ${errnoDescription(errno)}, ${syscall}`;
  if (ctx.request !== undefined) message += ` ${ctx.request}`;
  if (ctx.path !== undefined) message += ` '${ctx.path}'`;
  const err = new Error(message) as SystemError;
  err.errno = -Math.abs(errno);
  err.code = code;
  err.syscall = syscall;
  if (ctx.fd !== undefined) err.fd = ctx.fd;
  if (ctx.request !== undefined) err.request = ctx.request;
  if (ctx.path !== undefined) err.path = ctx.path;
  if (caller !== undefined) Error.captureStackTrace(err, caller);
  return err;
}

/** The tiny error native code throws or rejects with (native/errors.cc). */
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

/** Node's wording for what was received (`type string ('x')`, `an instance of Foo`). */
export function describeReceived(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  switch (typeof value) {
    case 'function':
      return `function ${(value as Function).name || '<anonymous>'}`;
    case 'object': {
      const name = (value as object).constructor?.name;
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
  const shown = typeof value === 'bigint' ? `${value}n` : String(value);
  return coded(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${shown}`),
    'ERR_OUT_OF_RANGE',
    caller,
  );
}

/** Error with code ERR_P2PDMA_CLOSED: a handle or mapping was used after close()/unmap(). */
export function closedError(what: string, caller?: Function): CodedError {
  return coded(new Error(`${what} is closed`), 'ERR_P2PDMA_CLOSED', caller);
}
