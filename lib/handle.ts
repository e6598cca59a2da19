/**
 * `Fd`: the base of every handle type (DmaBuf, DrmDevice, P2pmemAllocation,
 * RDMA objects...). It owns one file descriptor:
 * - `close()` is explicit and idempotent; `using fd = ...` closes it too.
 * - Using a closed handle throws `ERR_P2PDMA_CLOSED`.
 * - A handle that is garbage collected while still open closes its fd
 *   (exactly once) and emits a warning, like Node's FileHandle.
 * - `close()` while async work is still using the fd closes it, from JS's
 *   point of view, at once; the fd itself is closed when that work settles,
 *   so the number cannot be reused under a running syscall.
 */
import * as fs from 'node:fs';

import { closedError, invalidArgType, outOfRange, sysError } from './errors';
import { native } from './native';

// Node 20.0-20.3 predate Symbol.dispose; later 20.x and 22+ have it. Node's
// own polyfill used this registered symbol, so `using` works either way.
(Symbol as { dispose?: symbol }).dispose ??= Symbol.for('nodejs.dispose');

/** A file descriptor number or a handle that owns one. */
export type FdLike = number | Fd;

interface Held {
  fd: number;
  kind: string;
}

const finalizer = new FinalizationRegistry<Held>((held) => {
  process.emitWarning(`Closing fd ${held.fd} on garbage collection`, {
    type: 'Warning',
    code: 'P2PDMA_GC_CLOSE',
    detail: `Its ${held.kind} handle was garbage collected while open. Call close() on it, or declare it with 'using'.`,
  });
  native.close(held.fd);
});

/** Marks the handle busy until the returned function is called. @internal */
export let hold: (h: Fd) => () => void;

/** An owned file descriptor. */
export class Fd implements Disposable {
  #fd: number;
  #closed = false;
  #pending = 0;
  #closeDeferred = false;

  /**
   * Takes ownership of `fd`: it will be closed by `close()`, by `using`, or
   * (with a warning) when this handle is garbage collected.
   */
  constructor(fd: number) {
    if (typeof fd !== 'number') throw invalidArgType('fd', 'of type number', fd, new.target);
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw outOfRange('fd', 'an integer >= 0 && <= 2147483647', fd, new.target);
    }
    this.#fd = fd;
    finalizer.register(this, { fd, kind: new.target.name }, this);
  }

  /** Opens `path` (flags and mode as in `fs.openSync`) and owns the fd. */
  static open<T extends Fd>(this: new (fd: number) => T, path: fs.PathLike, flags: fs.OpenMode = 'r', mode?: fs.Mode): T {
    return new this(fs.openSync(path, flags, mode));
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
   * Closes the fd. Idempotent: later calls do nothing. Throws a system error
   * (syscall 'close') if close(2) itself fails, e.g. EBADF when the fd was
   * closed behind this handle's back.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    finalizer.unregister(this);
    if (this.#pending > 0) {
      this.#closeDeferred = true;
      return;
    }
    const r = native.close(this.#fd);
    if (r < 0) throw sysError(-r, 'close', { fd: this.#fd }, this.close);
  }

  /**
   * Gives up ownership without closing: returns the fd number, which the
   * caller must now close. The handle is closed afterwards.
   */
  release(): number {
    const fd = this.fd;
    if (this.#pending > 0) throw closedError(`${this.#describe()} has pending operations and`, this.release);
    this.#closed = true;
    finalizer.unregister(this);
    return fd;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #describe(): string {
    return `${this.constructor.name} (fd ${this.#fd})`;
  }

  static {
    hold = (h: Fd) => {
      h.#pending++;
      return () => {
        if (--h.#pending === 0 && h.#closeDeferred) {
          h.#closeDeferred = false;
          native.close(h.#fd);
        }
      };
    };
  }
}

/**
 * Validates an FdLike and returns the fd number. `caller` names the public
 * function in the stack of the thrown error.
 */
export function toFd(fd: unknown, caller?: Function): number {
  if (typeof fd === 'number') {
    if (Number.isInteger(fd) && fd >= 0 && fd <= 0x7fffffff) return fd;
    throw outOfRange('fd', 'an integer >= 0 && <= 2147483647', fd, caller);
  }
  if (fd instanceof Fd) return fd.fd;
  throw invalidArgType('fd', 'of type number or an instance of Fd', fd, caller);
}
