/** Completion queues: a channel watched on the event loop (or busy polling), drained until empty, settling work requests. */
import type { NativeRdmaCq } from '../core/native';
import { native } from '../core/native';
import { Poller } from '../core/poll';
import type { RdmaContext } from './device';
import { completionError, rdmaError } from './errors';
import type { QueuePair } from './qp';
import { RdmaResource } from './resource';

const C = native.rdmaConstants;

/** The operation of a work request. */
export type RdmaOp = 'write' | 'read' | 'send' | 'recv' | 'compare-swap' | 'fetch-add';

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
}

export interface Pending {
  qp: QueuePair;
  op: RdmaOp;
  length: number;
  resolve(c: RdmaCompletion): void;
  reject(e: Error): void;
  release: (() => void)[];
}

const WC_STRIDE = 8;
/** Completions per ibv_poll_cq call; a drain polls until the CQ is empty. */
const DRAIN_BATCH = 256;

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
  /** @internal */
  declare readonly native: NativeRdmaCq;
  /** @internal */
  readonly pending = new Map<number, Pending>();
  #poller: Poller | undefined;
  #spinning = false;

  /** @internal */
  constructor(context: RdmaContext, n: NativeRdmaCq, busyPoll: boolean) {
    super(n);
    this.context = context;
    this.size = n.cqe;
    this.busyPoll = busyPoll;
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
    return this.pending.size;
  }

  /** @internal */
  add(wrId: number, p: Pending): void {
    this.pending.set(wrId, p);
    if (this.pending.size !== 1) return;
    busyCqs.add(this);
    if (this.#poller !== undefined) this.#poller.ref();
    else this.#spin();
  }

  /** @internal */
  remove(wrId: number): Pending | undefined {
    const p = this.pending.get(wrId);
    if (p === undefined) return undefined;
    this.pending.delete(wrId);
    if (this.pending.size === 0) {
      busyCqs.delete(this);
      this.#poller?.unref();
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

  #drain(): void {
    let wc: Float64Array;
    try {
      // Polls until the CQ is empty (native/rdma/rdma.cc): completions left in
      // it would wait for a channel event that may never come.
      wc = this.native.drain(DRAIN_BATCH);
    } catch (e) {
      this.#fail(rdmaError(e) as Error);
      return;
    }
    for (let i = 0; i < wc.length; i += WC_STRIDE) {
      const wrId = wc[i];
      const p = this.remove(wrId);
      if (p === undefined) continue; // its QP was closed: already rejected as flushed
      p.qp.completed(p);
      for (const r of p.release) r();
      const status = wc[i + 1];
      if (status !== 0) {
        p.reject(completionError(status, wc[i + 4], wrId, p.op));
        continue;
      }
      const c: RdmaCompletion = { wrId, op: p.op, byteLen: p.op === 'recv' ? wc[i + 3] : p.length };
      if (p.op === 'recv') {
        if (wc[i + 6] & C.IBV_WC_WITH_IMM) c.immediate = wc[i + 7];
        if (wc[i + 2] === C.IBV_WC_RECV_RDMA_WITH_IMM) c.byWrite = true;
      }
      p.resolve(c);
    }
  }

  #fail(err: Error): void {
    for (const [wrId, p] of [...this.pending]) {
      this.remove(wrId);
      p.qp.completed(p);
      for (const r of p.release) r();
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
