/**
 * Readiness of pollable fds (sync_file and dma-buf fences, RDMA completion
 * channels, DRM events, eventfds, pipes) from the event loop's own epoll,
 * through uv_poll: waiting never parks a libuv thread-pool thread, so a
 * thousand pending fences cost no threads and do not starve `fs` or
 * `crypto`.
 *
 * - `pollOnce(fd, { events, signal, timeoutMs })`: a promise of the events
 *   that fired.
 * - `new Poller(fd, callback, { events })`: the callback runs on every
 *   readiness event until `stop()` or `close()`. uv_poll is level-triggered:
 *   a readable fd that is not read fires again on the next loop iteration.
 *
 * The poll watches its own close-on-exec dup of the fd, so several polls on
 * one fd are fine and closing a FileHandle or fd number under a poll cannot
 * confuse epoll. Closing a watched `Fd` handle ends its polls (pollOnce
 * rejects with ERR_P2PDMA_CLOSED, a Poller's callback gets that error), and
 * the fd itself is closed once the event loop has let go of the poll.
 *
 * Like every uv_poll user, polling sets O_NONBLOCK on the open file (shared
 * with every dup of it). Files that epoll cannot watch (regular files,
 * directories) fail with EPERM, syscall 'epoll_ctl'.
 */
import { abortError, closedError, fromNative, invalidArgType, invalidArgValue, outOfRange, sysError, validateObject } from './errors';
import { Fd, type FdLike, nativeOf, toFd } from './handle';
import { native, type NativeWatcher } from './native';

const C = native.pollConstants;

/** A readiness event: readable, writable, urgent data (POLLPRI), or peer hang-up (POLLRDHUP). */
export type PollEvent = 'read' | 'write' | 'priority' | 'disconnect';

const EVENT_BITS: Readonly<Record<PollEvent, number>> = {
  read: C.UV_READABLE,
  write: C.UV_WRITABLE,
  priority: C.UV_PRIORITIZED,
  disconnect: C.UV_DISCONNECT,
};
const EVENT_NAMES = Object.keys(EVENT_BITS) as PollEvent[];

/** Node's setTimeout limit (2^31 - 1 ms, about 24.8 days). */
const TIMEOUT_MAX = 0x7fffffff;
// onevent status: the watched Fd was closed.
const CLOSED_BY_PARENT = 1;
const ETIMEDOUT = 110;

export interface PollOnceOptions {
  /** What to wait for: one event or several (any of them settles). Default `'read'`. */
  events?: PollEvent | readonly PollEvent[];
  /** Aborting rejects with an AbortError (`code: 'ABORT_ERR'`, `cause: signal.reason`). */
  signal?: AbortSignal;
  /**
   * Rejects with ETIMEDOUT when nothing fired within this many ms: an
   * integer 0..2147483647. 0 only checks what is ready now. Default: no limit.
   */
  timeoutMs?: number;
}

export interface PollerOptions {
  /** Default `'read'`. */
  events?: PollEvent | readonly PollEvent[];
  /** Whether an active Poller keeps the event loop alive. Default true. */
  ref?: boolean;
}

function toEvents(events: unknown, caller: Function): number {
  const list = Array.isArray(events) ? events : [events];
  if (list.length === 0) throw invalidArgValue('events', '[]', 'must name at least one event', caller);
  let bits = 0;
  for (const e of list) {
    if (typeof e !== 'string') throw invalidArgType('events', "one of 'read', 'write', 'priority', 'disconnect' or an array of them", e, caller);
    const b = (EVENT_BITS as Record<string, number>)[e];
    if (b === undefined) throw invalidArgValue('events', e, "must be 'read', 'write', 'priority' or 'disconnect'", caller);
    bits |= b;
  }
  return bits;
}

function eventNames(bits: number): PollEvent[] {
  return EVENT_NAMES.filter((n) => (bits & EVENT_BITS[n]) !== 0);
}

function toTimeout(ms: unknown, caller: Function): number | undefined {
  if (ms === undefined) return undefined;
  if (typeof ms !== 'number') throw invalidArgType('timeoutMs', 'of type number', ms, caller);
  if (!Number.isInteger(ms) || ms < 0 || ms > TIMEOUT_MAX) throw outOfRange('timeoutMs', `an integer >= 0 && <= ${TIMEOUT_MAX}`, ms, caller);
  return ms;
}

function toSignal(signal: unknown, caller: Function): AbortSignal | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return signal;
  throw invalidArgType('signal', 'an instance of AbortSignal', signal, caller);
}

function toOptions<T extends object>(options: unknown, caller: Function): T {
  validateObject(options, 'options', caller);
  return options as T;
}

interface Watch {
  w: NativeWatcher;
  fd: number;
  /** For ERR_P2PDMA_CLOSED: `Fd (fd 5)`. */
  what: string;
}

function watch(fd: unknown, caller: Function): Watch {
  const n = toFd(fd, caller);
  const what = fd instanceof Fd ? `${fd.constructor.name} (fd ${n})` : `fd ${n}`;
  try {
    return { w: new native.Watcher(fd instanceof Fd ? nativeOf(fd, caller) : n), fd: n, what };
  } catch (e) {
    throw fromNative(e, {}, caller);
  }
}

function statusError(status: number, x: Watch): Error {
  if (status === CLOSED_BY_PARENT) return closedError(x.what);
  return sysError(-status, 'epoll_wait', { fd: x.fd });
}

function timeoutError(ms: number, fd: number): Error {
  const e = sysError(ETIMEDOUT, 'poll', { fd });
  e.message = `ETIMEDOUT: no event within ${ms} ms, poll`;
  return e;
}

/**
 * Waits until `fd` is ready for one of `options.events` and resolves with
 * the events that fired (e.g. `['read']`). Rejects with an AbortError on
 * `signal`, ETIMEDOUT after `timeoutMs`, ERR_P2PDMA_CLOSED when the Fd
 * handle is closed meanwhile, or a SystemError (EPERM for fds epoll cannot
 * watch). Argument errors reject too.
 */
export function pollOnce(fd: FdLike, options: PollOnceOptions = {}): Promise<PollEvent[]> {
  let bits: number;
  let signal: AbortSignal | undefined;
  let timeoutMs: number | undefined;
  let x: Watch;
  try {
    const o = toOptions<PollOnceOptions>(options, pollOnce);
    bits = toEvents(o.events ?? 'read', pollOnce);
    signal = toSignal(o.signal, pollOnce);
    timeoutMs = toTimeout(o.timeoutMs, pollOnce);
    toFd(fd, pollOnce);
    if (signal?.aborted) throw abortError(signal.reason, pollOnce);
    x = watch(fd, pollOnce);
  } catch (e) {
    return Promise.reject(e);
  }
  const w = x.w;
  return new Promise<PollEvent[]>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const onAbort = () => done(abortError(signal!.reason));
    const done = (err: Error | null, events?: PollEvent[]) => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      w.onevent = undefined;
      w.close();
      if (err !== null) reject(err);
      else resolve(events!);
    };
    // Already ready (a signalled fence): no epoll round trip.
    const now = w.peek(bits);
    if (now !== 0) {
      done(now < 0 ? sysError(-now, 'poll', { fd: x.fd }) : null, eventNames(now));
      return;
    }
    if (timeoutMs === 0) {
      done(timeoutError(0, x.fd));
      return;
    }
    w.onevent = (status, events) => done(status === 0 ? null : statusError(status, x), eventNames(events));
    const r = w.start(bits);
    if (r < 0) {
      done(sysError(-r, 'epoll_ctl', { fd: x.fd }));
      return;
    }
    if (timeoutMs !== undefined) timer = setTimeout(() => done(timeoutError(timeoutMs!, x.fd)), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Calls `callback(null, events)` on every readiness event of `fd`, from the
 * event loop, until stopped or closed. Errors come to the callback too:
 * ERR_P2PDMA_CLOSED when the watched Fd is closed (the Poller is closed
 * then), a SystemError when epoll reports an error (the Poller is stopped;
 * `start()` resumes). Starts at once.
 */
export class Poller implements Disposable {
  readonly #x: Watch;
  readonly #callback: (err: Error | null, events: PollEvent[]) => void;
  #bits: number;
  #active = false;
  #closed = false;

  constructor(fd: FdLike, callback: (err: Error | null, events: PollEvent[]) => void, options: PollerOptions = {}) {
    if (typeof callback !== 'function') throw invalidArgType('callback', 'of type function', callback, new.target);
    const o = toOptions<PollerOptions>(options, new.target);
    this.#bits = toEvents(o.events ?? 'read', new.target);
    this.#callback = callback;
    this.#x = watch(fd, new.target);
    // A closure over this Poller only: the native watcher holds itself
    // while active, never the callback through a persistent reference.
    this.#x.w.onevent = (status, events) => this.#onEvent(status, events);
    if (o.ref === false) this.#x.w.setRef(false);
    this.start();
  }

  /** Whether events are being delivered. */
  get active(): boolean {
    return this.#active;
  }

  /** Whether close() was called or the watched Fd was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** (Re)starts watching, optionally for other events. Throws ERR_P2PDMA_CLOSED once closed. */
  start(events?: PollEvent | readonly PollEvent[]): void {
    const bits = events === undefined ? this.#bits : toEvents(events, this.start);
    if (this.#closed) throw closedError('Poller', this.start);
    const r = this.#x.w.start(bits);
    if (r < 0) throw sysError(-r, 'epoll_ctl', { fd: this.#x.fd }, this.start);
    this.#bits = bits;
    this.#active = true;
  }

  /** Stops delivering events until start(). */
  stop(): void {
    if (this.#closed) return;
    this.#x.w.stop();
    this.#active = false;
  }

  /** Stops for good and lets go of the fd. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#active = false;
    this.#x.w.onevent = undefined;
    this.#x.w.close();
  }

  /** Keep the event loop alive while active (the default). */
  ref(): this {
    if (!this.#closed) this.#x.w.setRef(true);
    return this;
  }

  /** Let the process exit even while active. */
  unref(): this {
    if (!this.#closed) this.#x.w.setRef(false);
    return this;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #onEvent(status: number, events: number): void {
    if (status === 0) {
      this.#callback(null, eventNames(events));
      return;
    }
    this.#active = false;
    if (status === CLOSED_BY_PARENT) this.#closed = true;
    this.#callback(statusError(status, this.#x), []);
  }
}
