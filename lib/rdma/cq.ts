/** Completion queues: a channel watched on the event loop (or busy polling), drained until empty, settling work requests. */
import type { NativeRdmaCq } from '../core/native';
import { native } from '../core/native';
import { Poller } from '../core/poll';
import type { RdmaContext } from './device';
import { completionError, rdmaError } from './errors';
import { RdmaResource } from './resource';
import { spinTimeoutUs } from './validate';

const C = native.rdmaConstants;

/** The operation of a work request. */
export type RdmaOp = 'write' | 'read' | 'send' | 'recv' | 'compare-swap' | 'fetch-add' | 'bind-mw' | 'local-inv';

/** A successful work completion. */
export interface RdmaCompletion {
  wrId: number;
  op: RdmaOp;
  /** Bytes received (recv); the request's length otherwise. */
  byteLen: number;
  /**
   * recv only: the 32-bit immediate the peer sent with SEND or RDMA WRITE
   * (`{ immediate }`), when it sent one.
   */
  immediate?: number;
  /**
   * recv only: true when an RDMA WRITE with immediate consumed this receive
   * (IBV_WC_RECV_RDMA_WITH_IMM): the data went where the WRITE pointed, not
   * into the receive's buffer, and `byteLen` is the WRITE's length.
   */
  byWrite?: boolean;
  /**
   * recv from a shared receive queue or on a UD QP: the QP number that
   * received it (which of the SRQ's QPs).
   */
  qpNum?: number;
  /**
   * recv only: the rkey the peer's SEND invalidated (`{ invalidate }`,
   * IBV_WR_SEND_WITH_INV); a type 2 window of this PD with that rkey is
   * unbound by it (`mw.bound` undefined).
   */
  invalidatedRkey?: number;
  /** recv on a UD QP: the sender's QP number. */
  srcQp?: number;
  /** recv on a UD QP: a 40-byte GRH precedes the payload in the buffer (always on RoCE). */
  grh?: boolean;
}

/** What a request holds until it completes: its MRs, a UD send's address handle. */
export interface Held {
  acquire(): void;
  unuse(): void;
}

/** Where a request's queue slot returns: a QP, or the SRQ of a shared receive. */
export interface RequestOwner {
  completed(p: Pending): void;
  /** A send completion arrived: the unsignaled requests before it are done. */
  sendCompleted?(wrId: number): void;
  /** The PD whose type 2 windows a received invalidation may name. */
  readonly pd?: { windowInvalidated(rkey: number): void };
}

export interface Pending {
  qp: RequestOwner;
  op: RdmaOp;
  length: number;
  resolve(c: RdmaCompletion): void;
  reject(e: Error): void;
  /** What the request uses, each acquire()d once: released at its completion. */
  mrs: Held[];
  /** recv completions name their QP and sender (SRQ, UD). */
  detail?: boolean;
  /**
   * Send requests this entry stands for (default 1): a prepared request's
   * chain of unsignaled WRs ending in the signaled one it is keyed by, or a
   * run of unsignaled ones keyed by the first. wr_ids `first`.. are theirs.
   */
  count?: number;
  first?: number;
  /** The first failure among them (an unsignaled WR's error completion names its own wr_id). */
  error?: Error;
}

/** @internal lets go of a settled request's MRs. */
export function releaseMrs(p: Pending): void {
  for (let i = 0; i < p.mrs.length; i++) p.mrs[i].unuse();
}

/** Doubles per completion (native/rdma/rdma.cc kWcStride). */
const WC_STRIDE = 10;
/** Completions per native call, into the CQ's own buffer; a drain calls again while it comes back full. */
const DRAIN_BATCH = 64;
/** A busyPoll CQ spins in C this long on an empty CQ before the event loop gets a turn. */
const SPIN_US = 50;

/**
 * CQs with work outstanding: reachable (their promises must settle) however
 * the caller holds them. An idle CQ is not in it, and its Poller reaches it
 * only weakly, so an unreferenced idle CQ is collected (the GC backstop).
 */
const busyCqs = new Set<CompletionQueue>();
// A CQ collected while open: the native finalizer destroys it; this stops
// the Poller watching its channel.
const cqPollers = new FinalizationRegistry<Poller>((p) => p.close());

export class CompletionQueue extends RdmaResource {
  readonly context: RdmaContext;
  /** Entries the provider allocated (>= the size asked for). */
  readonly size: number;
  readonly busyPoll: boolean;
  /** The channel wakes only for solicited completions (and errors): see createCq(). */
  readonly solicitedOnly: boolean;
  /** @internal */
  declare readonly native: NativeRdmaCq;
  /** @internal */
  readonly pending = new Map<number, Pending>();
  #poller: Poller | undefined;
  /** wc_flags that mean a receive carries an invalidated rkey (the device's, RdmaContext.invalidateBits). */
  readonly #invalidateBits: number;
  #spinning = false;
  /** Completions land here (native drainInto): no allocation per drain. */
  readonly #wc = new Float64Array(DRAIN_BATCH * WC_STRIDE);
  /** Work requests outstanding: a Pending may stand for several (Pending.count). */
  #wrs = 0;
  /** Whether the Poller is ref'd; an idle CQ unrefs it a loop turn later (#idleCheck). */
  #refd = false;
  #idleCheck = false;

  /** @internal */
  constructor(context: RdmaContext, n: NativeRdmaCq, busyPoll: boolean, solicitedOnly = false) {
    super(n);
    this.context = context;
    this.size = n.cqe;
    this.busyPoll = busyPoll;
    this.solicitedOnly = solicitedOnly;
    this.#invalidateBits = context.invalidateBits;
    if (!busyPoll) {
      // Unref'd while idle: an idle CQ does not keep the process alive. The
      // callback reaches the CQ weakly: the watcher holds itself while
      // active, and must not hold an idle CQ with it.
      const self = new WeakRef(this);
      const poller: Poller = new Poller(
        n.fd,
        (err) => {
          const cq = self.deref();
          if (cq === undefined) poller.close();
          else if (err === null) cq.#drain();
          else cq.#fail(err);
        },
        { ref: false },
      );
      this.#poller = poller;
      cqPollers.register(this, poller, this);
    }
  }

  /** Work requests whose completion has not arrived. */
  get outstanding(): number {
    return this.#wrs;
  }

  /** @internal a run of unsignaled requests (Pending.count) grew or shrank by n. */
  grow(n: number): void {
    this.#wrs += n;
  }

  /** @internal */
  add(wrId: number, p: Pending): void {
    this.pending.set(wrId, p);
    this.#wrs += p.count ?? 1;
    if (this.pending.size !== 1) return;
    busyCqs.add(this);
    if (this.#poller === undefined) this.#spin();
    else if (!this.#refd) {
      this.#refd = true;
      this.#poller.ref();
    }
  }

  /** @internal */
  remove(wrId: number): Pending | undefined {
    const p = this.pending.get(wrId);
    if (p === undefined) return undefined;
    this.pending.delete(wrId);
    this.#wrs -= p.count ?? 1;
    if (this.pending.size === 0) {
      busyCqs.delete(this);
      // Request after request (a latency loop) would toggle the ref with
      // two native calls each: unref only once the CQ stayed idle a turn.
      if (this.#refd && !this.#idleCheck) {
        this.#idleCheck = true;
        setImmediate(() => {
          this.#idleCheck = false;
          if (this.pending.size === 0 && this.#refd) {
            this.#refd = false;
            this.#poller?.unref();
          }
        }).unref();
      }
    }
    return p;
  }

  #spin(): void {
    if (this.#spinning) return;
    this.#spinning = true;
    const loop = () => {
      if (this.closed && this.native.inFlight() === 0) {
        this.#spinning = false;
        return;
      }
      this.#drain();
      if (this.pending.size > 0) setImmediate(loop);
      else this.#spinning = false;
    };
    setImmediate(loop);
  }

  /**
   * Polls the CQ now, on this thread: settles every completion waiting (the
   * promises they settle run their callbacks after this returns) and
   * returns how many came. With `timeout` (ms, default 0) and none waiting
   * it spins in native code until one comes or the time is up (then 0):
   * the latency path of a loop that does not yield to the event loop, as a
   * C program polls its CQ. Works with either kind of CQ.
   */
  poll(options?: { timeout?: number }): number {
    const us = spinTimeoutUs(options, 0, this.poll);
    this.check(this.poll);
    return this.#drain(us, false, this.poll);
  }

  /** @internal poll() without the checks: settles what is waiting, spinning up to spinUs for one. */
  reap(spinUs: number, caller: Function): number {
    return this.#drain(spinUs, false, caller);
  }

  #drain(spinUs = this.busyPoll ? SPIN_US : 0, rearm = true, caller?: Function): number {
    const wc = this.#wc;
    let total = 0;
    // The first call consumes the channel's events and re-arms it (not
    // from poll(): the channel's event then reaches #drain as usual), then
    // polls; a full buffer means more may be waiting: poll again until the
    // CQ is empty (native/rdma/rdma.cc), since completions left in it would
    // wait for a channel event that may never come.
    for (let first = true; ; first = false) {
      let n: number;
      try {
        n = this.native.drainInto(wc, first ? spinUs : 0, first && rearm);
      } catch (e) {
        const err = rdmaError(e, caller) as Error;
        this.#fail(err);
        if (caller !== undefined) throw err;
        return total;
      }
      total += n;
      for (let i = 0; i < n * WC_STRIDE; i += WC_STRIDE) this.#complete(wc, i);
      if (n < DRAIN_BATCH) return total;
    }
  }

  #complete(wc: Float64Array, i: number): void {
    const wrId = wc[i];
    const p = this.remove(wrId);
    if (p === undefined) {
      // An unsignaled WR of a prepared chain failed: its chain's entry
      // rejects with this error when the chain's last completion comes.
      if (wc[i + 1] !== 0) this.#chainFailed(wrId, wc[i + 1], wc[i + 4]);
      return; // else its QP was closed: already rejected as flushed
    }
    // The send queue completes in order: unsignaled requests posted before this one are done.
    if (p.op !== 'recv') p.qp.sendCompleted?.(wrId);
    p.qp.completed(p);
    releaseMrs(p);
    const status = wc[i + 1];
    if (status !== 0) {
      p.reject(p.error ?? completionError(status, wc[i + 4], wrId, p.op));
      return;
    }
    const c: RdmaCompletion = { wrId, op: p.op, byteLen: p.op === 'recv' ? wc[i + 3] : p.length };
    if (p.op === 'recv') {
      const flags = wc[i + 6];
      if (flags & C.IBV_WC_WITH_IMM) c.immediate = wc[i + 7];
      else if (flags & this.#invalidateBits) {
        c.invalidatedRkey = wc[i + 7];
        p.qp.pd?.windowInvalidated(c.invalidatedRkey);
      }
      if (wc[i + 2] === C.IBV_WC_RECV_RDMA_WITH_IMM) c.byWrite = true;
      if (p.detail) {
        c.qpNum = wc[i + 5];
        c.srcQp = wc[i + 8];
        c.grh = (wc[i + 6] & C.IBV_WC_GRH) !== 0;
      }
    }
    p.resolve(c);
  }

  #chainFailed(wrId: number, status: number, vendorErr: number): void {
    for (const p of this.pending.values()) {
      if (p.first !== undefined && wrId >= p.first && wrId < p.first + (p.count ?? 1)) {
        p.error ??= completionError(status, vendorErr, wrId, p.op);
        return;
      }
    }
  }

  #fail(err: Error): void {
    for (const [wrId, p] of [...this.pending]) {
      this.remove(wrId);
      p.qp.completed(p);
      releaseMrs(p);
      p.reject(err);
    }
  }

  protected get teardownCall(): string {
    return 'ibv_destroy_cq';
  }

  // Keep delivering completions until the QPs on it are gone.
  protected override didClose(): void {
    cqPollers.unregister(this);
    this.#poller?.close();
  }
}
