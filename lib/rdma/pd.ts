/** Protection domains: memory registration (host memory, mappings, dma-bufs) and QP creation. */
import { abortable } from '../core/abort';
import { abortError, invalidArgType, invalidArgValue, outOfRange, type SystemError, validateObject } from '../core/errors';
import { Fd, type FdLike, toFd } from '../core/handle';
import type { Mapping } from '../core/mmap';
import { native, type NativeRdmaMr, type NativeResource } from '../core/native';
import type { RdmaContext } from './device';
import { call, rdmaError } from './errors';
import { MemoryRegion } from './mr';
import { AddressHandle } from './ah';
import type { RdmaCompletion } from './cq';
import { MemoryWindow } from './mw';
import { gidBytes, gidString } from './gid';
import { createQp, defaultGidIndex, type QueuePair, type QueuePairOptions } from './qp';
import { SharedReceiveQueue, type SharedReceiveQueueOptions, srqOptions } from './srq';
import { RdmaResource } from './resource';
import { type AllocMemoryOptions, explainRegister, type RdmaAccess, type RdmaTarget, type RegisterDmaBufOptions, type RegisterOptions, type Resolved, resolveTarget, sharedMemory, toAccess } from './target';
import { toInt } from './validate';
import { deprecated } from '../core/deprecate';

const C = native.rdmaConstants;

/**
 * The options of a registration call, taking the old positional `access`
 * (`(target, access, options)`) for one release with a DeprecationWarning.
 */
function optionsOf<T extends { access?: RdmaAccess | readonly RdmaAccess[] }>(rest: unknown[], use: string, caller: Function): T {
  const [first, second] = rest;
  if (rest.length >= 2 || typeof first === 'string' || Array.isArray(first)) {
    deprecated('P2PDMA_DEP0003', `access as a positional argument is deprecated: use ${use}.`);
    const options = (second ?? {}) as T;
    validateObject(options, 'options', caller);
    return first === undefined ? options : { ...options, access: first as RdmaAccess };
  }
  const options = (first ?? {}) as T;
  validateObject(options, 'options', caller);
  return options;
}

/** A registration made ready by ProtectionDomain#prepare. */
interface Prepared {
  r: Resolved;
  a: { bits: number; names: RdmaAccess[] };
  mr: NativeRdmaMr;
  /** Closes the native MR, releases the hold, unmaps owned memory. */
  undo(): void;
  /** The MemoryRegion once registered. */
  region(): MemoryRegion;
}

export class ProtectionDomain extends RdmaResource {
  readonly context: RdmaContext;

  /** @internal */
  constructor(context: RdmaContext, n: NativeResource) {
    super(n);
    this.context = context;
  }

  /**
   * Registers memory (ibv_reg_mr) on the thread pool: pinning a large
   * region takes a while. Only memory JS cannot free under the device (see
   * index.ts): a Mapping (held from this call until the MR's
   * deregistration has completed: its `unmap()` throws ERR_P2PDMA_BUSY
   * meanwhile), an ArrayBuffer a Mapping made, or a SharedArrayBuffer or a
   * view of one (kept referenced). A non-shared ArrayBuffer or a view of
   * one (a Buffer...) is refused with ERR_INVALID_ARG_VALUE before any
   * syscall. On a mapping of device memory (p2pmem, a PCI BAR) a kernel
   * without kernel-patches/ rejects with EFAULT, saying so.
   */
  registerMemory(target: RdmaTarget, options?: RegisterOptions): Promise<MemoryRegion>;
  /** @deprecated positional `access`: use `registerMemory(target, { access })` (DeprecationWarning P2PDMA_DEP0003). */
  registerMemory(target: RdmaTarget, access: RdmaAccess | readonly RdmaAccess[] | undefined, options?: RegisterOptions): Promise<MemoryRegion>;
  registerMemory(target: RdmaTarget, ...rest: unknown[]): Promise<MemoryRegion> {
    let options: RegisterOptions;
    try {
      options = optionsOf(rest, 'registerMemory(target, { access })', this.registerMemory);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#register(target, options, false, this.registerMemory);
  }

  /** registerMemory(), blocking the JS thread while the pages are pinned. */
  registerMemorySync(target: RdmaTarget, options?: Omit<RegisterOptions, 'signal'>): MemoryRegion;
  /** @deprecated positional `access`: use `registerMemorySync(target, { access })` (DeprecationWarning P2PDMA_DEP0003). */
  registerMemorySync(target: RdmaTarget, access: RdmaAccess | readonly RdmaAccess[] | undefined, options?: Omit<RegisterOptions, 'signal'>): MemoryRegion;
  registerMemorySync(target: RdmaTarget, ...rest: unknown[]): MemoryRegion {
    const options = optionsOf(rest, 'registerMemorySync(target, { access })', this.registerMemorySync);
    return this.#registerSync(target, options, false, this.registerMemorySync);
  }

  /**
   * Allocates `length` bytes of memory for RDMA and registers them, as
   * pyverbs' `MR(pd, length, access)` does: a page-aligned shared memfd
   * mapping, zeroed and sealed against shrinking, that the MR owns. Read and
   * write it through `mr.mapping` (`.buffer`, `read()`, `write()`); it is
   * unmapped when the MR's deregistration has completed. `signal` is checked
   * before pinning starts.
   */
  allocMemory(length: number, options?: AllocMemoryOptions): Promise<MemoryRegion>;
  /** @deprecated positional `access`: use `allocMemory(length, { access })` (DeprecationWarning P2PDMA_DEP0003). */
  allocMemory(length: number, access: RdmaAccess | readonly RdmaAccess[] | undefined, options?: { signal?: AbortSignal }): Promise<MemoryRegion>;
  allocMemory(length: number, ...rest: unknown[]): Promise<MemoryRegion> {
    let map: Mapping;
    let options: AllocMemoryOptions;
    try {
      options = optionsOf(rest, 'allocMemory(length, { access })', this.allocMemory);
      map = this.#alloc(length, options, this.allocMemory);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#register(map, { access: options.access, signal: options.signal }, true, this.allocMemory);
  }

  /** allocMemory(), blocking. */
  allocMemorySync(length: number, options?: Omit<AllocMemoryOptions, 'signal'>): MemoryRegion;
  /** @deprecated positional `access`: use `allocMemorySync(length, { access })` (DeprecationWarning P2PDMA_DEP0003). */
  allocMemorySync(length: number, access: RdmaAccess | readonly RdmaAccess[] | undefined): MemoryRegion;
  allocMemorySync(length: number, ...rest: unknown[]): MemoryRegion {
    const options = optionsOf(rest, 'allocMemorySync(length, { access })', this.allocMemorySync);
    const map = this.#alloc(length, options, this.allocMemorySync);
    return this.#registerSync(map, { access: options.access }, true, this.allocMemorySync);
  }

  #alloc(length: number, options: AllocMemoryOptions, caller: Function): Mapping {
    toInt('length', length, Number.MAX_SAFE_INTEGER, caller);
    if (length === 0) throw outOfRange('length', '>= 1', length, caller);
    validateObject(options, 'options', caller);
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', options.signal, caller);
    toAccess(options.access, caller);
    if (options.signal?.aborted) throw abortError(options.signal.reason, caller);
    this.check(caller);
    return sharedMemory(length, caller);
  }

  /**
   * What both register forms do before ibv_reg_mr: validate, resolve the
   * target, hold a Mapping (before the pool thread pins: an unmap() now
   * would let the MR pin whatever is mapped at that address next) and make
   * the native MR. `undo()` takes it all back. Throws after undoing;
   * memory the MR was to own is unmapped either way.
   */
  #prepare(target: RdmaTarget, options: RegisterOptions, owned: boolean, withSignal: boolean, caller: Function): Prepared {
    let release: (() => void) | undefined;
    try {
      validateObject(options, 'options', caller);
      if (withSignal && options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', options.signal, caller);
      const a = toAccess(options.access, caller);
      const r = resolveTarget(target, options, caller);
      if (withSignal && options.signal?.aborted) throw abortError(options.signal.reason, caller);
      this.check(caller);
      release = r.mapping?.hold('memory region', caller);
      const mr = call(caller, () => new native.RdmaMr(this.native));
      const undo = () => {
        mr.close();
        release?.();
        if (owned) (target as Mapping).unmap();
      };
      const region = () => new MemoryRegion(this, mr, owned ? undefined : target, a.names, r.length, { mapping: r.mapping, release, owned });
      return { r, a, mr, undo, region };
    } catch (e) {
      release?.();
      if (owned) (target as Mapping).unmap();
      throw e;
    }
  }

  #register(target: RdmaTarget, options: RegisterOptions, owned: boolean, caller: Function): Promise<MemoryRegion> {
    let prep: Prepared;
    try {
      prep = this.#prepare(target, options, owned, true, caller);
    } catch (e) {
      return Promise.reject(e);
    }
    const { r, a, mr, undo, region } = prep;
    let p: Promise<NativeRdmaMr>;
    try {
      p = mr.registerAsync(...(r.args as [bigint, number]), a.bits);
    } catch (e) {
      undo();
      return Promise.reject(rdmaError(e, caller));
    }
    const registered = p.then(() => region(), (e: unknown) => {
      undo();
      throw explainRegister(rdmaError(e), r.mapping, this.context.name, a.names);
    });
    // Aborted while pinning: the MR nobody will get is closed when it exists.
    return abortable(registered, options.signal, caller, (unwanted) => unwanted.close());
  }

  #registerSync(target: RdmaTarget, options: RegisterOptions, owned: boolean, caller: Function): MemoryRegion {
    const { r, a, mr, undo, region } = this.#prepare(target, options, owned, false, caller);
    try {
      mr.register(...(r.args as [bigint, number]), a.bits);
    } catch (e) {
      undo();
      const err = explainRegister(rdmaError(e), r.mapping, this.context.name, a.names) as Error;
      Error.captureStackTrace(err, caller);
      throw err;
    }
    return region();
  }

  /**
   * Registers a dma-buf (ibv_reg_dmabuf_mr): the NIC maps it through the
   * dma-buf importer API. EOPNOTSUPP when the RDMA driver has no dma-buf MRs
   * (siw, and rxe on a stock kernel; the p2pdma series gives rxe them), ENOSYS
   * when libibverbs predates them. The MR holds
   * the dma-buf handle open (an Fd) until closed. The promise form of
   * registerDmaBufSync(), for one API with registerMemory(): the
   * registration itself runs on the JS thread (the exporter maps the buffer
   * when the NIC first uses it, not here); `signal` is checked before it.
   */
  registerDmaBuf(dmabuf: FdLike, options: RegisterDmaBufOptions): Promise<MemoryRegion> {
    try {
      validateObject(options, 'options', this.registerDmaBuf);
      const { signal } = options;
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, this.registerDmaBuf);
      if (signal?.aborted) throw abortError(signal.reason, this.registerDmaBuf);
      return Promise.resolve(this.#registerDmaBuf(dmabuf, options, this.registerDmaBuf));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** registerDmaBuf(), blocking. */
  registerDmaBufSync(dmabuf: FdLike, options: Omit<RegisterDmaBufOptions, 'signal'>): MemoryRegion {
    return this.#registerDmaBuf(dmabuf, options, this.registerDmaBufSync);
  }

  #registerDmaBuf(dmabuf: FdLike, options: RegisterDmaBufOptions, caller: Function): MemoryRegion {
    const fd = toFd(dmabuf, caller);
    validateObject(options, 'options', caller);
    const offset = options.offset === undefined ? 0 : toInt('options.offset', options.offset, Number.MAX_SAFE_INTEGER, caller);
    const length = toInt('options.length', options.length, Number.MAX_SAFE_INTEGER, caller);
    if (length === 0) throw outOfRange('options.length', '> 0', length, caller);
    let iova: bigint;
    if (options.iova === undefined) iova = BigInt(offset);
    else if (typeof options.iova === 'bigint' && options.iova >= 0n && options.iova < 2n ** 64n) iova = options.iova;
    else if (typeof options.iova === 'number') iova = BigInt(toInt('options.iova', options.iova, Number.MAX_SAFE_INTEGER, caller));
    else throw invalidArgType('options.iova', 'a number or bigint in [0, 2^64)', options.iova, caller);
    const a = toAccess(options.access, caller);
    this.check(caller);
    const mr = call(caller, () => new native.RdmaMr(this.native));
    try {
      mr.registerDmaBuf(fd, offset, length, iova, a.bits);
    } catch (e) {
      mr.close();
      const err = rdmaError(e) as SystemError;
      if (err.code === 'EOPNOTSUPP' || err.code === 'ENOTSUPP') {
        err.message += `: the RDMA driver of ${this.context.name} does not support dma-buf memory regions (siw has none, nor rxe on a stock kernel; mlx5, efa, irdma do, and rxe with the p2pdma kernel series)`;
      } else if (err.code === 'ENOSYS') {
        err.message += ': this libibverbs has no ibv_reg_dmabuf_mr (IBVERBS_1.12, rdma-core 34 or later)';
      }
      Error.captureStackTrace(err, caller);
      throw err;
    }
    return new MemoryRegion(this, mr, dmabuf instanceof Fd ? dmabuf : undefined, a.names, length);
  }

  /** A queue pair on this PD, RC or UD (see QueuePairOptions). */
  createQp(options: QueuePairOptions): QueuePair {
    return createQp(this, options, this.createQp);
  }

  /**
   * A shared receive queue (ibv_create_srq) whose receives complete on
   * `options.cq`: QPs created with `{ srq }` take their receives from it.
   */
  createSrq(options: SharedReceiveQueueOptions): SharedReceiveQueue {
    const attr = srqOptions(options, this.createSrq);
    this.check(this.createSrq);
    options.cq.check(this.createSrq);
    if (options.cq.context !== this.context) throw invalidArgValue('options.cq', options.cq.context.name, `must be a CQ of the PD's context (${this.context.name})`, this.createSrq);
    const srq = new SharedReceiveQueue(this, options.cq, call(this.createSrq, () => new native.RdmaSrq(this.native, attr)));
    this.context.track(srq);
    return srq;
  }

  /**
   * A memory window (ibv_alloc_mw): bind it to part of an MR with
   * `qp.bindMw()`. Type 1 (the default) is bound by ibv_bind_mw and moved
   * by binding again; type 2 (`{ type: 2 }`) is bound by an IBV_WR_BIND_MW
   * work request to one QP, through which alone peers use it, and must be
   * invalidated (`qp.localInvalidate()`, or a peer's `send(..., {
   * invalidate })`) before it is bound again. EOPNOTSUPP where the
   * provider has none.
   */
  allocMw(options: { type?: 1 | 2 } = {}): MemoryWindow {
    validateObject(options, 'options', this.allocMw);
    const type = options.type ?? 1;
    if (type !== 1 && type !== 2) throw invalidArgValue('options.type', type, 'must be 1 or 2', this.allocMw);
    this.check(this.allocMw);
    const mw = new MemoryWindow(this, call(this.allocMw, () => new native.RdmaMw(this.native, type)), type);
    if (type === 2) this.#windows.add(mw);
    return mw;
  }

  /** Type 2 windows, to find the one a peer's SEND_WITH_INV invalidated. */
  readonly #windows = new Set<MemoryWindow>();

  /** @internal a receive completed with an invalidation: the type 2 window with that rkey is unbound. */
  windowInvalidated(rkey: number): void {
    for (const mw of this.#windows) if (mw.rkey === rkey) mw.invalidated();
  }

  /** @internal a type 2 window was closed. */
  forgetWindow(mw: MemoryWindow): void {
    this.#windows.delete(mw);
  }

  /**
   * An address handle (ibv_create_ah): the destination of UD sends, by
   * the peer's GID (a QP's `info().gid`). `portNum` and `gidIndex` are
   * this side's (default port 1 and its RoCE v2 GID, as `info()` picks).
   */
  createAh(options: { gid: string; portNum?: number; gidIndex?: number; hopLimit?: number; sl?: number }): AddressHandle {
    validateObject(options, 'options', this.createAh);
    const dgid = gidBytes(options.gid, this.createAh, 'options.gid');
    const portNum = options.portNum === undefined ? 1 : toInt('options.portNum', options.portNum, 255, this.createAh);
    const hopLimit = options.hopLimit === undefined ? 64 : toInt('options.hopLimit', options.hopLimit, 255, this.createAh);
    const sl = options.sl === undefined ? 0 : toInt('options.sl', options.sl, 15, this.createAh);
    if (options.gidIndex !== undefined) toInt('options.gidIndex', options.gidIndex, 0xffff, this.createAh);
    this.check(this.createAh);
    const sgidIndex = options.gidIndex ?? defaultGidIndex(this.context, portNum);
    const n = call(this.createAh, () => new native.RdmaAh(this.native, { dlid: 0, sl, portNum, dgid, sgidIndex, hopLimit }));
    return new AddressHandle(this, n, gidString(dgid));
  }

  /**
   * The way back to the sender of a UD receive (ibv_create_ah_from_wc):
   * `completion` is the receive's, `grh` the 40 bytes that preceded its
   * payload in the receive buffer. Reply with `{ ah, remoteQpn:
   * completion.srcQp }`.
   */
  createAhFromCompletion(completion: RdmaCompletion, grh: ArrayBufferView, options: { portNum?: number } = {}): AddressHandle {
    const caller = this.createAhFromCompletion;
    validateObject(completion, 'completion', caller);
    validateObject(options, 'options', caller);
    if (completion.op !== 'recv' || completion.srcQp === undefined) throw invalidArgValue('completion', completion.op, 'must be the completion of a receive on a UD queue pair', caller);
    if (!ArrayBuffer.isView(grh)) throw invalidArgType('grh', 'a Buffer, TypedArray or DataView', grh, caller);
    if (grh.byteLength < 40) throw outOfRange('grh', '>= 40 bytes (the GRH that precedes a UD payload)', grh.byteLength, caller);
    const portNum = options.portNum === undefined ? 1 : toInt('options.portNum', options.portNum, 255, caller);
    this.check(caller);
    const bytes = Buffer.from(grh.buffer, grh.byteOffset, 40);
    const n = call(caller, () => new native.RdmaAh(this.native, { grh: bytes, portNum, flags: completion.grh ? C.IBV_WC_GRH : 0, sl: 0 }));
    // RoCE v2 over IPv4: the GRH area holds the IPv4 header in its last 20 bytes; the source is at its byte 12.
    const ipv4 = (bytes[20] & 0xf0) === 0x40;
    const gid = ipv4 ? `0000:0000:0000:0000:0000:ffff:${bytes.subarray(32, 34).toString('hex')}:${bytes.subarray(34, 36).toString('hex')}` : gidString(bytes.subarray(8, 24));
    return new AddressHandle(this, n, gid);
  }

  protected get teardownCall(): string {
    return 'ibv_dealloc_pd';
  }
}
