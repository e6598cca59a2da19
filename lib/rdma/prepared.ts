/** Prepared work requests: checked and built once, posted again and again with no JS object per request. */
import { abortable } from '../core/abort';
import { abortError, closedError, illegalConstructor, invalidArgType, outOfRange, validateObject } from '../core/errors';
import type { Held } from './cq';
import type { QueuePair } from './qp';
import { spinTimeoutUs } from './validate';

const token = Symbol('PreparedRequest');

/** @internal what QueuePair.postPreparedSync keeps between calls. */
export interface SyncState {
  slot: number;
  op: 'write' | 'read' | 'send';
  length: number;
  mrs: Held[];
  every: number;
  /** Unsignaled posts since the last signaled one. */
  since: number;
  /** The entry of the unsignaled run since then (QueuePair's). */
  tail: { count?: number; first?: number } | undefined;
  fail: (e: Error) => void;
}

/** Options of `qp.prepare()`. */
export interface PrepareOptions {
  /**
   * postSync() signals one request in this many (the others post
   * unsignaled, as perftest's `--cq-mod`): one completion to reap per this
   * many posts. Default half the QP's send queue (`cap.maxSendWr / 2`), at
   * least 1; at most `cap.maxSendWr`. A post that takes the send queue's
   * last slot is always signaled.
   */
  signalEvery?: number;
}

/**
 * A WRITE, READ or SEND checked once and kept natively (`qp.prepare()`),
 * posted as often as wanted with no request built per post:
 * `post(count)` posts `count` copies as one chain, only the last signaled,
 * with one promise; `postSync()` posts one copy now with no promise (the
 * latency path). It keeps its memory region registered until `close()`
 * (or its QP's close).
 */
export class PreparedRequest implements Disposable {
  readonly qp: QueuePair;
  readonly op: 'write' | 'read' | 'send';
  /** Bytes each copy moves. */
  readonly length: number;
  /** postSync() signals one post in this many. */
  readonly signalEvery: number;
  #closed = false;
  #failure: Error | undefined;
  readonly #sync: SyncState;

  /** @internal */
  constructor(key: symbol, qp: QueuePair, slot: number, op: 'write' | 'read' | 'send', length: number, mrs: Held[], every: number) {
    if (key !== token) throw illegalConstructor(new.target);
    this.qp = qp;
    this.op = op;
    this.length = length;
    this.signalEvery = every;
    for (let i = 0; i < mrs.length; i++) mrs[i].acquire();
    this.#sync = { slot, op, length, mrs, every, since: 0, tail: undefined, fail: (e) => (this.#failure ??= e) };
  }

  get closed(): boolean {
    return this.#closed;
  }

  #check(caller: Function): void {
    if (this.#closed) throw closedError('PreparedRequest', caller);
    this.qp.check(caller);
    // Its MR stays registered while held, but a closed one is not to be used.
    const mrs = this.#sync.mrs;
    for (let i = 0; i < mrs.length; i++) if ((mrs[i] as { closed?: boolean }).closed === true) throw closedError('MemoryRegion (deregistered)', caller);
  }

  /**
   * Posts `count` copies (default 1, at most the QP's `cap.maxSendWr`) as
   * one chain, one ibv_post_send; only the last is signaled, so one
   * completion settles them all (the send queue completes in order).
   * Resolves with `count` once all have completed; rejects with the first
   * failure once the last has left the queue. `options.signal` stops the
   * wait (index.ts's abort rule), not the requests.
   */
  post(count = 1, options: { signal?: AbortSignal } = {}): Promise<number> {
    const caller = this.post;
    try {
      const n = count === 1 ? 1 : toCount(count, this.qp.cap.maxSendWr, caller);
      let signal: AbortSignal | undefined;
      if (options !== undefined) {
        validateObject(options, 'options', caller);
        signal = options.signal;
        if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, caller);
        if (signal?.aborted) throw abortError(signal.reason, caller);
      }
      this.#check(caller);
      let resolve!: (n: number) => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<number>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      const s = this.#sync;
      this.qp.postPrepared(s.slot, n, { qp: this.qp, op: s.op, length: s.length, resolve: () => resolve(n), reject, mrs: s.mrs }, caller);
      return abortable(promise, signal, caller);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Posts one copy now and returns: no promise, no allocation (the latency
   * path: one call into the addon). One post in `signalEvery` is signaled;
   * its completion, reaped on the event loop or by `cq.poll()`, frees the
   * send queue slots of those before it. With the send queue (or its CQ)
   * full, it first polls the send CQ, spinning up to `options.timeout` ms
   * (default 1000) for a completion: ENOMEM if none frees a slot. A failed
   * request is thrown by the next postSync(), once.
   */
  postSync(options?: { timeout?: number }): void {
    const caller = this.postSync;
    const us = spinTimeoutUs(options, 1000, caller);
    this.#check(caller);
    const f = this.#failure;
    if (f !== undefined) {
      this.#failure = undefined;
      throw f;
    }
    this.qp.postPreparedSync(this.#sync, us, caller);
  }

  /**
   * Forgets the request and lets go of its memory region. Idempotent;
   * requests in flight keep the region until they complete.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.qp.unprepare(this, this.#sync.slot);
    const mrs = this.#sync.mrs;
    for (let i = 0; i < mrs.length; i++) mrs[i].unuse();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function toCount(v: unknown, max: number, caller: Function): number {
  if (typeof v !== 'number') throw invalidArgType('count', 'of type number', v, caller);
  if (!Number.isSafeInteger(v) || v < 1 || v > max) throw outOfRange('count', `an integer >= 1 && <= ${max} (the queue pair's cap.maxSendWr)`, v, caller);
  return v;
}

/** @internal */
export function createPrepared(qp: QueuePair, slot: number, op: 'write' | 'read' | 'send', length: number, mrs: Held[], every: number): PreparedRequest {
  return new PreparedRequest(token, qp, slot, op, length, mrs, every);
}
