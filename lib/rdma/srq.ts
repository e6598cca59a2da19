/** Shared receive queues: one pool of receives that many QPs consume (ibv_create_srq). */
import { abortable } from '../core/abort';
import { abortError, invalidArgType, invalidArgValue, outOfRange, sysError, validateObject } from '../core/errors';
import type { NativeRdmaMr, NativeRdmaSrq } from '../core/native';
import { CompletionQueue, type Held, type Pending, type RdmaCompletion, releaseMrs } from './cq';
import { completionError, rdmaError, WC_WR_FLUSH_ERR } from './errors';
import type { MemoryRegion } from './mr';
import type { ProtectionDomain } from './pd';
import type { LocalBuffer, LocalBuffers } from './qp';
import { RdmaResource } from './resource';
import { toInt } from './validate';
import { takeWrId, toLocal } from './wr';

const ENOMEM = 12;
/** native postRecvPacked's stride (native/rdma/rdma.cc kPackStride). */
const PACK_STRIDE = 10;

export interface SharedReceiveQueueOptions {
  /**
   * The CQ its receives complete on: every QP created with this SRQ takes
   * it as its `recvCq` (so each receive's promise settles through one CQ,
   * whichever QP consumed it).
   */
  cq: CompletionQueue;
  /** Receives it holds. Default 128. */
  maxWr?: number;
  /** Buffers per receive. Default 1. */
  maxSge?: number;
}

/**
 * A shared receive queue: QPs created with `{ srq }` take their receives
 * from it, in posting order, whichever QP a message arrives on. Each
 * `recv()` resolves with the completion, whose `qpNum` says which QP
 * consumed it.
 */
export class SharedReceiveQueue extends RdmaResource {
  readonly pd: ProtectionDomain;
  readonly cq: CompletionQueue;
  /** What the provider granted. */
  readonly maxWr: number;
  readonly maxSge: number;
  /** @internal the kernel's handle, which async events name. */
  readonly handle: number;
  /** @internal */
  declare readonly native: NativeRdmaSrq;
  #recvs = 0;
  /** One packed receive (native postRecvPacked), reused. */
  readonly #desc = new Float64Array(PACK_STRIDE);
  #releaseAfterClose: Held[] = [];

  /** @internal */
  constructor(pd: ProtectionDomain, cq: CompletionQueue, n: NativeRdmaSrq) {
    super(n);
    this.pd = pd;
    this.cq = cq;
    const a = n.attr;
    this.maxWr = a.maxWr;
    this.maxSge = a.maxSge;
    this.handle = a.handle;
  }

  /** Receives posted and not yet consumed. */
  get outstanding(): number {
    return this.#recvs;
  }

  /**
   * Posts a receive into `local` (its MR needs 'local-write'), as
   * `qp.recv()`; the first message to any of the SRQ's QPs consumes it.
   * `options.signal` follows the abort rule of lib/rdma/index.ts.
   */
  recv(local: LocalBuffers | null, length?: number, options: { signal?: AbortSignal } = {}): Promise<RdmaCompletion> {
    try {
      validateObject(options, 'options', this.recv);
      const signal = options.signal;
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, this.recv);
      if (signal?.aborted) throw abortError(signal.reason, this.recv);
      this.check(this.recv);
      const list = Array.isArray(local);
      const parts = local === null ? [] : list ? (local as LocalBuffer[]).map((l) => toLocal(l, this.recv)) : [toLocal(local, this.recv)];
      if (list) {
        if (parts.length === 0 || parts.length > this.maxSge) throw outOfRange('local', `a list of 1 to ${this.maxSge} buffers (the SRQ's maxSge)`, parts.length, this.recv);
        if (length !== undefined) throw invalidArgValue('length', length, 'must be left out with a list of buffers (each part has its own length)', this.recv);
      }
      let total = 0;
      for (const p of parts) total += p.length;
      const want = length === undefined ? total : toInt('length', length, 0xffffffff, this.recv);
      if (parts.length > 0 && want > total) throw outOfRange('length', `<= ${total} (the local buffer's length)`, want, this.recv);
      const mrs: MemoryRegion[] = [];
      for (const p of parts) {
        if (!p.mr.access.includes('local-write')) {
          throw invalidArgValue('local', `MemoryRegion (${p.mr.access.join(', ') || 'no access'})`, "must be registered with 'local-write' to be the target of a receive", this.recv);
        }
        if (p.mr.pd !== this.pd) throw invalidArgValue('local', 'MemoryRegion', "must be registered on the SRQ's protection domain", this.recv);
        mrs.push(p.mr);
      }
      if (this.#recvs >= this.maxWr || this.cq.outstanding >= this.cq.size) {
        const what = this.#recvs >= this.maxWr ? ['shared receive queue', this.#recvs, this.maxWr] : ['completion queue', this.cq.outstanding, this.cq.size];
        const e = sysError(ENOMEM, 'ibv_post_srq_recv', {}, this.recv);
        e.message += `: the ${what[0]} holds ${what[2]} work requests and ${what[1]} are outstanding; await some first or create it larger`;
        throw e;
      }
      const wrId = takeWrId();
      let p!: Pending;
      const promise = new Promise<RdmaCompletion>((resolve, reject) => {
        p = { qp: this, op: 'recv', length: want, resolve, reject, mrs, detail: true };
      });
      for (const m of mrs) m.acquire();
      this.cq.add(wrId, p);
      this.#recvs++;
      this.#submit(wrId, parts, want);
      return abortable(promise, signal, this.recv);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #submit(wrId: number, parts: { mr: MemoryRegion; offset: number; length: number }[], want: number): void {
    let err = 0;
    let x: unknown;
    try {
      if (parts.length <= 1) {
        const d = this.#desc;
        d[0] = wrId;
        d[3] = parts.length === 0 ? -1 : 0;
        d[4] = parts.length === 0 ? 0 : parts[0].offset;
        d[5] = want;
        const mr: NativeRdmaMr | NativeRdmaMr[] = parts.length === 0 ? [] : parts[0].mr.native;
        const r = this.native.postRecvPacked(d, mr, 1);
        if (r < 0) err = -r % 4096;
      } else {
        const [, e] = this.native.postRecv([[wrId, parts.map((q) => [q.mr.native, q.offset, q.length]), 0, 0]]);
        err = -e;
      }
    } catch (e) {
      x = e;
    }
    if (err === 0 && x === undefined) return;
    // Not posted: no completion will come.
    const p = this.cq.remove(wrId)!;
    this.completed(p);
    releaseMrs(p);
    p.reject(x !== undefined ? (rdmaError(x, this.recv) as Error) : sysError(err, 'ibv_post_srq_recv', {}, this.recv));
  }

  /**
   * Arms the SRQ limit event: when fewer than `limit` receives are left,
   * the context's `events()` yields IBV_EVENT_SRQ_LIMIT_REACHED with this
   * SRQ, once (arm it again to hear it again). 0 disarms.
   */
  setLimit(limit: number): void {
    toInt('limit', limit, 0xffffffff, this.setLimit);
    this.check(this.setLimit);
    const r = this.native.setLimit(limit);
    if (r < 0) throw sysError(-r, 'ibv_modify_srq', {}, this.setLimit);
  }

  /** @internal a receive was consumed. */
  completed(_p: Pending): void {
    this.#recvs--;
  }

  protected override willClose(): void {
    // Its receives go with it (no completion comes for them): rejected as
    // flushed now; their MRs stay registered until ibv_destroy_srq, which
    // waits for the QPs using it.
    for (const [wrId, p] of [...this.cq.pending]) {
      if (p.qp !== this) continue;
      this.cq.remove(wrId);
      this.completed(p);
      this.#releaseAfterClose.push(...p.mrs);
      p.reject(completionError(WC_WR_FLUSH_ERR, 0, wrId, 'recv', 'work request flushed: the shared receive queue was closed'));
    }
  }

  protected override didClose(): void {
    for (const m of this.#releaseAfterClose.splice(0)) m.unuse();
  }

  protected get teardownCall(): string {
    return 'ibv_destroy_srq';
  }

  override describe(): string {
    return 'SharedReceiveQueue';
  }
}

/** @internal pd.createSrq(). */
export function srqOptions(options: SharedReceiveQueueOptions, caller: Function): { maxWr: number; maxSge: number } {
  validateObject(options, 'options', caller);
  if (!(options.cq instanceof CompletionQueue)) throw invalidArgType('options.cq', 'an instance of CompletionQueue', options.cq, caller);
  const maxWr = options.maxWr === undefined ? 128 : toInt('options.maxWr', options.maxWr, 0x7fffffff, caller);
  const maxSge = options.maxSge === undefined ? 1 : toInt('options.maxSge', options.maxSge, 0x7fffffff, caller);
  if (maxWr === 0) throw outOfRange('options.maxWr', '>= 1', maxWr, caller);
  if (maxSge === 0) throw outOfRange('options.maxSge', '>= 1', maxSge, caller);
  return { maxWr, maxSge };
}
