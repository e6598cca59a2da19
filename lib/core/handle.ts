/**
 * `Fd`: the base of every handle type (DmaBuf, DrmDevice, P2pmemAllocation,
 * RDMA objects...). The file descriptor is owned by native code
 * (native/core/resource.h), which closes it exactly once, whichever comes first:
 * - `close()`, `using` or `await using`;
 * - the end of the thread's environment (a worker that exits or is
 *   terminated, where FinalizationRegistry callbacks never run);
 * - garbage collection of a handle still open, with a `P2PDMA_GC_CLOSE`
 *   warning, like Node's FileHandle.
 *
 * Using a closed handle throws `ERR_P2PDMA_CLOSED`.
 *
 * `close()` while operations are in flight (an async ioctl, a poll, a
 * child resource) does not refuse: the handle reads as closed at once, polls
 * on it reject with ERR_P2PDMA_CLOSED, and close(2) runs when the last
 * operation has settled, so the fd number is never reused under a running
 * syscall or under epoll. This keeps `using` and `finally { h.close() }`
 * correct without the caller tracking its own operations. If that deferred
 * close(2) fails, the error goes to `await h[Symbol.asyncDispose]()` when
 * someone awaits it, else to a `P2PDMA_CLOSE_FAILED` process warning.
 */
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

import { busyError, closedError, invalidArgType, invalidArgValue, outOfRange, sysError, type CodedError, type SystemError } from './errors';
import { native, type NativeFd } from './native';

// Node 20.0-20.3 predate Symbol.dispose and Symbol.asyncDispose; later 20.x
// and 22+ have them. Node's own polyfill used these registered symbols.
(Symbol as { dispose?: symbol }).dispose ??= Symbol.for('nodejs.dispose');
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('nodejs.asyncDispose');

/** A file descriptor number, a handle that owns one, or an `fs.promises` FileHandle. */
export type FdLike = number | Fd | FileHandle;

/** native close(): the teardown waits for operations in flight. */
const DEFERRED = 1;
const EBUSY = 16;

interface Held {
  fd: number;
  kind: string;
}

// Only warns: the native finalizer of the same handle closes the fd.
const finalizer = new FinalizationRegistry<Held>((held) => {
  process.emitWarning(`Closing fd ${held.fd} on garbage collection`, {
    type: 'Warning',
    code: 'P2PDMA_GC_CLOSE',
    detail: `Its ${held.kind} handle was garbage collected while open. Call close() on it, or declare it with 'using'.`,
  });
});

/**
 * Marks the handle busy until the returned function is called (once; later
 * calls do nothing). Prefer `holdDuring`, which cannot leak the hold.
 * @internal
 */
export let hold: (h: Fd) => () => void;

/**
 * Holds `h` (when given) while the promise `start()` returns is pending;
 * releases it too when `start` throws synchronously. @internal
 */
export function holdDuring<T>(h: Fd | undefined, start: () => Promise<T>): Promise<T> {
  if (h === undefined) return start();
  const release = hold(h);
  let p: Promise<T>;
  try {
    p = start();
  } catch (e) {
    release();
    return Promise.reject(e);
  }
  return p.finally(release);
}

/** The native resource behind an open handle; throws ERR_P2PDMA_CLOSED. @internal */
export let nativeOf: (h: Fd, caller?: Function) => NativeFd;

/** Wraps an Fd a native call created (the constructor of `T` gets no fd). @internal */
export function adoptFd<T extends Fd>(ctor: new (fd: number) => T, nfd: NativeFd): T {
  adopting = nfd;
  try {
    return new ctor(-1);
  } catch (e) {
    nfd.close();
    throw e;
  } finally {
    adopting = undefined;
  }
}
let adopting: NativeFd | undefined;

/** An owned file descriptor. */
export class Fd implements Disposable, AsyncDisposable {
  readonly #native: NativeFd;
  readonly #fd: number;
  #closed = false;
  #closePending = false;
  #closeWaiters: { resolve(): void; reject(e: unknown): void }[] = [];

  /**
   * Takes ownership of `fd`: it will be closed by `close()`, by `using`, at
   * the end of this thread, or (with a warning) when this handle is garbage
   * collected.
   */
  constructor(fd: number) {
    const adopted = adopting;
    adopting = undefined;
    if (adopted !== undefined) {
      this.#native = adopted;
    } else {
      if (typeof fd !== 'number') throw invalidArgType('fd', 'of type number', fd, new.target);
      if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
        throw outOfRange('fd', 'an integer >= 0 && <= 2147483647', fd, new.target);
      }
      this.#native = new native.Fd(fd);
    }
    this.#fd = this.#native.fd;
    finalizer.register(this, { fd: this.#fd, kind: new.target.name }, this);
  }

  /** Opens `path` (flags and mode as in `fs.openSync`) and owns the fd. */
  static open<T extends Fd>(this: new (fd: number) => T, path: fs.PathLike, flags: fs.OpenMode = 'r', mode?: fs.Mode): T {
    // fs.openSync's own check reads properties of objects and throws
    // uncoded TypeErrors for some (a Proxy); refuse anything not a path first.
    if (typeof path !== 'string' && !Buffer.isBuffer(path) && !(path instanceof URL)) {
      throw invalidArgType('path', 'of type string or an instance of Buffer or URL', path, Fd.open);
    }
    // A Buffer over a detached ArrayBuffer makes fs.openSync throw an uncoded TypeError.
    if (Buffer.isBuffer(path) && path.byteLength === 0 && path.buffer.byteLength === 0) {
      throw invalidArgValue('path', '[detached Buffer]', 'must not be empty or detached', Fd.open);
    }
    if (typeof flags !== 'string' && typeof flags !== 'number') throw invalidArgType('flags', 'of type string or number', flags, Fd.open);
    // fs.openSync aborts the process (a failed C++ assertion) on a mode of
    // 2**31 or more (Node 20-26), and on a flags or mode of -0 (Node 20, 22).
    return new this(fs.openSync(path, flags === 0 ? 0 : flags, toMode(mode, Fd.open)));
  }

  /** The fd number. Throws ERR_P2PDMA_CLOSED once closed. */
  get fd(): number {
    if (this.#closed) throw closedError(this.#describe(), Object.getOwnPropertyDescriptor(Fd.prototype, 'fd')!.get);
    return this.#fd;
  }

  /** Whether close() (or release()) has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Closes the handle. Idempotent: later calls do nothing. With operations
   * in flight the handle is closed at once and close(2) runs when they have
   * settled (see the module doc). Throws a system error (syscall 'close') if
   * an immediate close(2) fails, e.g. EBADF when the fd was closed behind
   * this handle's back.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    finalizer.unregister(this);
    const n = this.#native;
    n.onclose = (r) => this.#settle(r);
    const r = n.close();
    if (r === DEFERRED) {
      this.#closePending = true;
      return;
    }
    n.onclose = undefined;
    if (r < 0) throw sysError(-r, 'close', { fd: this.#fd }, this.close);
  }

  /**
   * Gives up ownership without closing: returns the fd number, which the
   * caller must now close. The handle is closed afterwards. Throws
   * ERR_P2PDMA_BUSY while operations are in flight.
   */
  release(): number {
    const fd = this.fd;
    if (this.#native.release() === -EBUSY) throw busyError(this.#describe(), this.#native.inFlight(), this.release);
    this.#closed = true;
    finalizer.unregister(this);
    return fd;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Closes the handle and resolves once the fd is really closed, after the
   * operations in flight have settled; rejects with close(2)'s error.
   */
  [Symbol.asyncDispose](): Promise<void> {
    try {
      this.close();
    } catch (e) {
      return Promise.reject(e);
    }
    if (!this.#closePending) return Promise.resolve();
    return new Promise((resolve, reject) => this.#closeWaiters.push({ resolve, reject }));
  }

  #settle(r: number): void {
    this.#closePending = false;
    this.#native.onclose = undefined;
    const waiters = this.#closeWaiters;
    this.#closeWaiters = [];
    const err = r < 0 ? sysError(-r, 'close', { fd: this.#fd }) : undefined;
    if (err !== undefined && waiters.length === 0) warnCloseFailed(this.#describe(), err);
    for (const w of waiters) {
      if (err !== undefined) w.reject(err);
      else w.resolve();
    }
  }

  #describe(): string {
    return `${this.constructor.name} (fd ${this.#fd})`;
  }

  static {
    hold = (h: Fd) => {
      h.#native.hold();
      let held = true;
      return () => {
        if (!held) return;
        held = false;
        h.#native.unhold();
      };
    };
    nativeOf = (h: Fd, caller?: Function) => {
      if (h.#closed) throw closedError(h.#describe(), caller);
      return h.#native;
    };
  }
}

/** A file mode for open(2): 0..0o7777, as a number or an octal string. */
function toMode(mode: unknown, caller: Function): number | undefined {
  if (mode === undefined) return undefined;
  let m: number;
  if (typeof mode === 'number') m = mode;
  else if (typeof mode === 'string' && /^[0-7]+$/.test(mode)) m = parseInt(mode, 8);
  else if (typeof mode === 'string') throw invalidArgValue('mode', mode, 'must be an octal string', caller);
  else throw invalidArgType('mode', 'of type number or an octal string', mode, caller);
  if (!Number.isInteger(m) || m < 0 || m > 0o7777) throw outOfRange('mode', 'an integer >= 0 && <= 0o7777', mode, caller);
  return m === 0 ? 0 : m; // -0 -> 0
}

function warnCloseFailed(what: string, cause: SystemError): void {
  const w = new Error(`Deferred close of ${what} failed: ${cause.message}`, { cause }) as CodedError;
  w.name = 'Warning';
  w.code = 'P2PDMA_CLOSE_FAILED';
  process.emitWarning(w);
}

/** Whether `v` looks like an `fs.promises` FileHandle. */
export function isFileHandle(v: unknown): v is FileHandle {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as FileHandle).fd === 'number' &&
    typeof (v as FileHandle).close === 'function' &&
    typeof (v as FileHandle).readFile === 'function'
  );
}

/**
 * Validates an FdLike and returns the fd number. `caller` names the public
 * function in the stack of the thrown error. A closed Fd or FileHandle
 * throws ERR_P2PDMA_CLOSED.
 */
export function toFd(fd: unknown, caller?: Function): number {
  if (typeof fd === 'number') {
    if (Number.isInteger(fd) && fd >= 0 && fd <= 0x7fffffff) return fd;
    throw outOfRange('fd', 'an integer >= 0 && <= 2147483647', fd, caller);
  }
  if (fd instanceof Fd) return fd.fd;
  if (isFileHandle(fd)) {
    if (fd.fd < 0) throw closedError('FileHandle', caller);
    return fd.fd;
  }
  throw invalidArgType('fd', 'of type number or an instance of Fd or FileHandle', fd, caller);
}
