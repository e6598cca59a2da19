/** RC and UD queue pairs: connection, and work requests (WRITE, READ, SEND, RECV, atomics) as promises. */
import { abortable } from '../core/abort';
import { abortError, closedError, invalidArgType, invalidArgValue, outOfRange, sysError, validateObject } from '../core/errors';
import { native, type NativeRdmaMr, type NativeRdmaQp } from '../core/native';
import { AddressHandle } from './ah';
import { CompletionQueue, type Held, type Pending, type RdmaCompletion, releaseMrs } from './cq';
import type { RdmaContext } from './device';
import { call, completionError, rdmaError, WC_WR_FLUSH_ERR } from './errors';
import { gidBytes, gidString } from './gid';
import { MemoryRegion, type RemoteRegion } from './mr';
import { MemoryWindow } from './mw';
import type { ProtectionDomain } from './pd';
import { RdmaResource } from './resource';
import { SharedReceiveQueue } from './srq';
import type { RdmaAccess } from './target';
import { toInt } from './validate';
import { createPrepared, type PrepareOptions, type PreparedRequest, type SyncState } from './prepared';
import { takeWrId, takeWrIds, toLocal } from './wr';

const C = native.rdmaConstants;
const ENOMEM = 12;
const EOPNOTSUPP = 95;
/** Doubles per WR in a packed chain (native/rdma/rdma.cc postSendPacked). */
const PACK_STRIDE = 10;
/** Remote addresses below this go to the packed path as doubles. */
const ADDR_EXACT = 2n ** 53n;
const noop = (): void => {};
/** The Q_Key of UD QPs and sends unless one is given (any value both sides agree on; high bit clear: not privileged). */
export const DEFAULT_QKEY = 0x11111111;

/** One checked work request of a chain. */
interface Entry {
  wrId: number;
  send: boolean;
  signal: AbortSignal | undefined;
  opcode: number;
  flags: number;
  imm: number | null;
  parts: { mr: MemoryRegion; offset: number; length: number }[];
  /** local was a scatter/gather list. */
  list: boolean;
  length: number;
  /** A double when exact, else a bigint (then the chain takes the array form). */
  raddr: number | bigint | null;
  rkey: number;
  /** [compareAdd, swap] of an atomic. */
  atomic: [bigint, bigint] | null;
  /** false: { signaled: false }, settled by a later signaled request's completion. */
  signaled: boolean;
  /** UD send: the destination. */
  ah: AddressHandle | null;
  remoteQpn: number;
  remoteQkey: number;
  p: Pending;
}

/** The array form of an entry (native postSend/postRecv), for chains the packed form cannot carry. */
function legacyEntry(e: Entry): unknown[] {
  const mrArgs = e.parts.length === 0 ? [null, 0, 0] : e.list ? [e.parts.map((p) => [p.mr.native, p.offset, p.length]), 0, 0] : [e.parts[0].mr.native, e.parts[0].offset, e.length];
  if (!e.send) return [e.wrId, ...mrArgs];
  const raddr = e.raddr === null ? null : BigInt(e.raddr);
  if (e.atomic !== null) return [e.wrId, e.opcode, ...mrArgs, raddr, e.rkey, null, e.flags, e.atomic[0], e.atomic[1]];
  if (e.ah !== null) return [e.wrId, e.opcode, ...mrArgs, null, null, e.imm, e.flags, null, null, e.ah.native, e.remoteQpn, e.remoteQkey];
  return [e.wrId, e.opcode, ...mrArgs, raddr, raddr === null ? null : e.rkey, e.imm, e.flags];
}

/** The shared promise of a postAll(): settles once every request has left the queue. */
class Batch {
  readonly promise: Promise<RdmaCompletion[]>;
  #left: number;
  #done: RdmaCompletion[] = [];
  #error: Error | undefined;
  #settle!: (v: RdmaCompletion[] | Error) => void;
  readonly resolve = (c: RdmaCompletion): void => {
    this.#done.push(c);
    if (--this.#left === 0) this.#end();
  };
  readonly reject = (e: Error): void => {
    this.#error ??= e;
    if (--this.#left === 0) this.#end();
  };

  constructor(n: number) {
    this.#left = n;
    this.promise = new Promise((resolve, reject) => {
      this.#settle = (v) => (v instanceof Error ? reject(v) : resolve(v));
    });
  }

  #end(): void {
    if (this.#error !== undefined) return this.#settle(this.#error);
    // Sends and receives complete on their own queues: posting order is wrId order.
    this.#settle(this.#done.sort((a, b) => a.wrId - b.wrId));
  }
}

export type QueuePairType = 'RC' | 'UC' | 'UD';

export interface QueuePairOptions {
  /**
   * 'RC' (reliable connected, the default), 'UC' (unreliable connected:
   * `connect()`, then SEND and RDMA WRITE only, no acknowledgements, a lost
   * message is gone) or 'UD' (unreliable datagram: no connection,
   * `activate()` then SENDs to an AddressHandle, messages up to the path
   * MTU, each receive starting with a 40-byte GRH).
   */
  type?: QueuePairType;
  sendCq: CompletionQueue;
  /** Default: sendCq; with `srq`, the SRQ's CQ (and nothing else). */
  recvCq?: CompletionQueue;
  /**
   * Receives come from this shared receive queue (post them with
   * `srq.recv()`); `qp.recv()` is refused. `cap.maxRecvWr/maxRecvSge` do
   * not apply.
   */
  srq?: SharedReceiveQueue;
  cap?: {
    /** Default 128. */
    maxSendWr?: number;
    /** Default 128. */
    maxRecvWr?: number;
    /** Default 1 (this API posts one buffer per work request). */
    maxSendSge?: number;
    maxRecvSge?: number;
    /** Default 0. */
    maxInlineData?: number;
  };
}

/** What the peer needs to connect to a QP (exchange it out of band, or use rdma_cm). */
export interface QueuePairInfo {
  qpNum: number;
  /** Initial packet sequence number. */
  psn: number;
  portNum: number;
  lid: number;
  /** The GID used as source, 16 bytes as hex with colons. */
  gid: string;
  gidIndex: number;
  /** Active MTU in bytes. */
  mtu: number;
}

/** Options of one work request: `signal` follows index.ts's abort rule. */
export interface WorkRequestOptions {
  signal?: AbortSignal;
  /**
   * write and send: a 32-bit immediate value delivered with the data
   * (IBV_WR_RDMA_WRITE_WITH_IMM, IBV_WR_SEND_WITH_IMM). Either consumes one
   * of the peer's posted receives, whose completion carries it.
   */
  immediate?: number;
  /**
   * write and send: copy the data into the work request at post time
   * (IBV_SEND_INLINE), for small messages; at most the QP's
   * `cap.maxInlineData` bytes.
   */
  inline?: boolean;
  /**
   * Sends, writes, reads and atomics: false posts it unsignaled (no
   * IBV_SEND_SIGNALED: no completion of its own unless it fails). Its
   * promise resolves when a later signaled request on the same QP
   * completes: the send queue completes in order. Until one is posted the
   * promise stays pending (`qp.close()` rejects it as flushed); a post that
   * would leave the send queue full of unsignaled requests, with no room
   * for the signaled one that settles them, is refused with ENOMEM.
   * Default true.
   */
  signaled?: boolean;
  /** Sends, writes, reads and atomics: wait for this QP's earlier READs and atomics to finish first (IBV_SEND_FENCE). */
  fence?: boolean;
  /** send and write: ask the peer's CQ for a solicited event (IBV_SEND_SOLICITED). */
  solicited?: boolean;
  /** send on a UD QP: the destination (pd.createAh()). */
  ah?: AddressHandle;
  /** send on a UD QP: the destination QP number. */
  remoteQpn?: number;
  /** send on a UD QP: the destination's Q_Key. Default 0x11111111 (DEFAULT_QKEY, what UD QPs get unless created with another). */
  remoteQkey?: number;
  /**
   * send on an RC QP: invalidate this rkey at the peer as the SEND lands
   * (IBV_WR_SEND_WITH_INV), e.g. of a type 2 window the peer bound; the
   * peer's receive completion carries it as `invalidatedRkey`. Not with
   * `immediate` (the two share the request's field).
   */
  invalidate?: number;
}

/** The option names a request's options object may carry (WorkRequestOptions minus signal). */
const WR_OPTIONS = ['immediate', 'inline', 'signaled', 'fence', 'solicited', 'ah', 'remoteQpn', 'remoteQkey', 'invalidate'] as const;

/** One of { signaled, fence, solicited }, checked: a boolean, on a send-side request. */
function flagOf(name: string, v: unknown, op: string, caller: Function): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw invalidArgType(`wr.${name}`, 'of type boolean', v, caller);
  if (op === 'recv') throw invalidArgValue(`wr.${name}`, v, 'applies to send-side requests, not receives', caller);
  return v;
}

/**
 * IBV_SEND_* bits of { signaled, fence, solicited } (0 for a receive),
 * checked: solicited on send and write only. No allocation: the hot path.
 */
function flagsOf(o: WorkRequestOptions, op: string, caller: Function): number {
  const unsignaled = o.signaled !== undefined && !flagOf('signaled', o.signaled, op, caller);
  const fence = flagOf('fence', o.fence, op, caller);
  const solicited = flagOf('solicited', o.solicited, op, caller);
  if (o.solicited !== undefined && op !== 'send' && op !== 'write') throw invalidArgValue('wr.solicited', o.solicited, `applies to 'send' and 'write' only, not '${op}'`, caller);
  if (op === 'recv') return 0;
  return (unsignaled ? 0 : C.IBV_SEND_SIGNALED) | (fence ? C.IBV_SEND_FENCE : 0) | (solicited ? C.IBV_SEND_SOLICITED : 0);
}

/** What an RC request or a receive has of a UD send's destination. */
const NO_UD = Object.freeze({ ah: null, remoteQpn: 0, remoteQkey: 0 });

/** The send-side options of a request, checked: immediate (u32), inline, invalidate (u32, RC sends). */
function sendOptionsOf(o: WorkRequestOptions, op: string, length: number, maxInline: number, caller: Function, type: QueuePairType = 'RC'): { immediate: number | null; flags: number; invalidate: number | null } {
  const { immediate, inline, invalidate } = o;
  if (invalidate !== undefined) {
    if (op !== 'send' || type !== 'RC') throw invalidArgValue('wr.invalidate', invalidate, `applies to 'send' on an RC queue pair only, not '${op}' on ${type}`, caller);
    if (immediate !== undefined) throw invalidArgValue('wr.invalidate', invalidate, "cannot go with 'immediate' (IBV_WR_SEND_WITH_INV carries the rkey where the immediate would be)", caller);
    toInt('wr.invalidate', invalidate, 0xffffffff, caller);
  }
  if ((immediate !== undefined || inline !== undefined) && op !== 'write' && op !== 'send') {
    throw invalidArgValue(immediate !== undefined ? 'wr.immediate' : 'wr.inline', immediate ?? inline, `applies to 'write' and 'send' only, not '${op}'`, caller);
  }
  if (immediate !== undefined && !(Number.isInteger(immediate) && immediate >= 0 && immediate <= 0xffffffff)) {
    if (typeof immediate !== 'number') throw invalidArgType('wr.immediate', 'of type number', immediate, caller);
    throw outOfRange('wr.immediate', 'an integer >= 0 and <= 4294967295', immediate, caller);
  }
  if (inline !== undefined && typeof inline !== 'boolean') throw invalidArgType('wr.inline', 'of type boolean', inline, caller);
  if (inline && length > maxInline) {
    throw outOfRange('length', `<= ${maxInline} for an inline request (the queue pair's cap.maxInlineData)`, length, caller);
  }
  return { immediate: immediate ?? null, flags: inline ? C.IBV_SEND_INLINE : 0, invalidate: invalidate ?? null };
}

function signalOf(o: unknown, name: string, caller: Function): AbortSignal | undefined {
  validateObject(o, name, caller);
  const signal = (o as { signal?: unknown }).signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType(`${name}.signal`, 'an instance of AbortSignal', signal, caller);
  return signal as AbortSignal | undefined;
}

/** A buffer for one work request: an MR, or part of one. */
export type LocalBuffer = MemoryRegion | { mr: MemoryRegion; offset?: number; length?: number };

/**
 * The local side of a WRITE, READ, SEND or receive: one buffer, or a
 * scatter/gather list of up to the QP's `cap.maxSendSge` (`maxRecvSge` for a
 * receive) buffers, taken in order (then `length` is left out).
 */
export type LocalBuffers = LocalBuffer | readonly LocalBuffer[];

/** One work request of a batch (`qp.post`). */
export type WorkRequest = (
  | { op: 'write' | 'read'; local: LocalBuffers; remote: RemoteRegion | MemoryRegion; length?: number; remoteOffset?: number }
  | { op: 'send'; local: LocalBuffers | null; length?: number }
  | { op: 'recv'; local: LocalBuffers | null; length?: number }
  | { op: 'compare-swap'; local: LocalBuffer; remote: RemoteRegion | MemoryRegion; remoteOffset?: number; compare: bigint; swap: bigint }
  | { op: 'fetch-add'; local: LocalBuffer; remote: RemoteRegion | MemoryRegion; remoteOffset?: number; add: bigint }
  | { op: 'local-inv'; rkey: number }
) & WorkRequestOptions;

/** What `qp.prepare()` takes: a WRITE, READ or SEND with one local buffer (or none, a SEND), no `signal` or `signaled`. */
export type PreparableRequest = Extract<WorkRequest, { op: 'write' | 'read' | 'send' }>;

/** A u64 operand of an atomic request. */
function u64(name: string, v: unknown, caller: Function): bigint {
  if (typeof v !== 'bigint') throw invalidArgType(name, 'of type bigint', v, caller);
  if (v < 0n || v >= 2n ** 64n) throw outOfRange(name, '>= 0n and < 2n ** 64n', v, caller);
  return v;
}

const OPCODE = { write: C.IBV_WR_RDMA_WRITE, read: C.IBV_WR_RDMA_READ, send: C.IBV_WR_SEND } as const;
const OPCODE_WITH_IMM = { write: C.IBV_WR_RDMA_WRITE_WITH_IMM, send: C.IBV_WR_SEND_WITH_IMM } as const;
const OPCODE_ATOMIC = { 'compare-swap': C.IBV_WR_ATOMIC_CMP_AND_SWP, 'fetch-add': C.IBV_WR_ATOMIC_FETCH_AND_ADD } as const;
const STATE_NAMES = ['RESET', 'INIT', 'RTR', 'RTS', 'SQD', 'SQE', 'ERR'] as const;
const MTU_ENUM: Record<number, number> = { 256: 1, 512: 2, 1024: 3, 2048: 4, 4096: 5 };
const QP_ACCESS = C.IBV_ACCESS_LOCAL_WRITE | C.IBV_ACCESS_REMOTE_WRITE | C.IBV_ACCESS_REMOTE_READ | C.IBV_ACCESS_REMOTE_ATOMIC;

export function createQp(pd: ProtectionDomain, options: QueuePairOptions, caller: Function): QueuePair {
  validateObject(options, 'options', caller);
  const type = (options.type as string | undefined) ?? 'RC';
  if (type !== 'RC' && type !== 'UC' && type !== 'UD') {
    const e = invalidArgValue('options.type', options.type, "must be 'RC', 'UC' or 'UD'", caller);
    if (type === 'XRC') e.message += " (XRC is not offered: rxe, the guest's device, has no XRC; mlx5 has it)";
    throw e;
  }
  if (!(options.sendCq instanceof CompletionQueue)) throw invalidArgType('options.sendCq', 'an instance of CompletionQueue', options.sendCq, caller);
  const srq = options.srq;
  if (srq !== undefined && !(srq instanceof SharedReceiveQueue)) throw invalidArgType('options.srq', 'an instance of SharedReceiveQueue', srq, caller);
  const recvCq = options.recvCq ?? srq?.cq ?? options.sendCq;
  if (srq !== undefined && recvCq !== srq.cq) throw invalidArgValue('options.recvCq', 'CompletionQueue', "must be the shared receive queue's cq (its receives settle through that one CQ)", caller);
  if (!(recvCq instanceof CompletionQueue)) throw invalidArgType('options.recvCq', 'an instance of CompletionQueue', recvCq, caller);
  const cap = options.cap ?? {};
  validateObject(cap, 'options.cap', caller);
  const c = {
    maxSendWr: cap.maxSendWr === undefined ? 128 : toInt('options.cap.maxSendWr', cap.maxSendWr, 0x7fffffff, caller),
    maxRecvWr: cap.maxRecvWr === undefined ? 128 : toInt('options.cap.maxRecvWr', cap.maxRecvWr, 0x7fffffff, caller),
    maxSendSge: cap.maxSendSge === undefined ? 1 : toInt('options.cap.maxSendSge', cap.maxSendSge, 0x7fffffff, caller),
    maxRecvSge: cap.maxRecvSge === undefined ? 1 : toInt('options.cap.maxRecvSge', cap.maxRecvSge, 0x7fffffff, caller),
    maxInlineData: cap.maxInlineData === undefined ? 0 : toInt('options.cap.maxInlineData', cap.maxInlineData, 0x7fffffff, caller),
  };
  pd.check(caller);
  options.sendCq.check(caller);
  recvCq.check(caller);
  srq?.check(caller);
  if (options.sendCq.context !== pd.context || recvCq.context !== pd.context) {
    throw invalidArgValue('options.sendCq', options.sendCq.context.name, `must be a CQ of the PD's context (${pd.context.name})`, caller);
  }
  if (srq !== undefined && srq.pd !== pd) throw invalidArgValue('options.srq', 'SharedReceiveQueue', "must be created on the QP's protection domain", caller);
  const qpType = type === 'UD' ? C.IBV_QPT_UD : type === 'UC' ? C.IBV_QPT_UC : C.IBV_QPT_RC;
  const n = call(caller, () => new native.RdmaQp(pd.native, options.sendCq.native, recvCq.native, c, qpType, srq?.native ?? null));
  const qp = new QueuePair(pd, options.sendCq, recvCq, n, type, srq);
  pd.context.track(qp);
  return qp;
}

/** The GID a QP on `port` sends from: RoCE v2 IPv4-mapped first, then any RoCE v2, then index 0. */
/** @internal */
export function defaultGidIndex(context: RdmaContext, port: number): number {
  const gids = context.gids(port);
  if (gids.length === 0) return 0;
  const v2 = gids.filter((g) => g.type === 'RoCE v2');
  return (v2.find((g) => g.gid.startsWith('0000:0000:0000:0000:0000:ffff:')) ?? v2[0] ?? gids[0]).index;
}

/** What `qp.query()` reports (ibv_query_qp). */
export interface QueuePairAttributes {
  /** 'RESET', 'INIT', 'RTR', 'RTS', 'SQD', 'SQE' or 'ERR', as the device has it. */
  state: string;
  type: QueuePairType;
  /** Path MTU in bytes (0 before RTR). */
  pathMtu: number;
  /** The peer's QP number (RC). */
  destQpNum: number;
  /** The receive queue's PSN (the peer's send PSN at connect). */
  rqPsn: number;
  /** The send queue's PSN. */
  sqPsn: number;
  /** What peers may do through this QP. */
  access: RdmaAccess[];
  /** UD: the Q_Key senders must use. */
  qkey: number;
  portNum: number;
  pkeyIndex: number;
  /** Local ACK timeout: 4.096 us * 2^timeout (0: infinite). */
  timeout: number;
  /** Retries on a missing ACK (0-7). */
  retryCnt: number;
  /** Retries on receiver-not-ready (7: infinite). */
  rnrRetry: number;
  /** The RNR NAK timer this QP asks peers to wait (an IB encoding, 0-31). */
  minRnrTimer: number;
  /** RDMA READs and atomics this QP may have outstanding, and may serve. */
  maxRdAtomic: number;
  maxDestRdAtomic: number;
  maxInlineData: number;
  maxSendWr: number;
  maxRecvWr: number;
  /** Every request signaled (never here: each request says, `{ signaled }`). */
  sqSigAll: boolean;
  /** RC with a global route: the peer's GID, as info() writes GIDs. */
  destGid?: string;
  sgidIndex?: number;
  hopLimit?: number;
}

const ACCESS_NAMES: [number, RdmaAccess][] = [
  [C.IBV_ACCESS_LOCAL_WRITE, 'local-write'],
  [C.IBV_ACCESS_REMOTE_WRITE, 'remote-write'],
  [C.IBV_ACCESS_REMOTE_READ, 'remote-read'],
  [C.IBV_ACCESS_REMOTE_ATOMIC, 'remote-atomic'],
];
const MTU_BYTES = [0, 256, 512, 1024, 2048, 4096];
const MW_ACCESS: Record<string, number> = { 'remote-write': C.IBV_ACCESS_REMOTE_WRITE, 'remote-read': C.IBV_ACCESS_REMOTE_READ, 'remote-atomic': C.IBV_ACCESS_REMOTE_ATOMIC };

/** A queue pair (RC or UD). Work requests return promises settled by their completions. */
export class QueuePair extends RdmaResource {
  readonly pd: ProtectionDomain;
  readonly sendCq: CompletionQueue;
  readonly recvCq: CompletionQueue;
  readonly qpNum: number;
  readonly type: QueuePairType;
  /** The shared receive queue its receives come from, if any. */
  readonly srq: SharedReceiveQueue | undefined;
  /** UD: the Q_Key activate() gave it. */
  #qkey = DEFAULT_QKEY;
  /** wrIds of unsignaled sends not yet settled, in posting order. */
  #unsignaled: number[] = [];
  /** What the provider granted. */
  readonly cap: Readonly<Required<NonNullable<QueuePairOptions['cap']>>>;
  /** @internal */
  declare readonly native: NativeRdmaQp;
  #state: (typeof STATE_NAMES)[number] = 'RESET';
  #psn: number;
  #maxRdAtomic: number | undefined;
  #maxRdAtomicWhy = '';
  #sends = 0;
  #recvs = 0;
  /** @internal closed after the QP (loopbackPair's CQ, rdma_cm's own objects). */
  readonly owned: { close(): void }[] = [];

  /** @internal */
  constructor(pd: ProtectionDomain, sendCq: CompletionQueue, recvCq: CompletionQueue, n: NativeRdmaQp, type: QueuePairType = 'RC', srq?: SharedReceiveQueue) {
    super(n);
    this.pd = pd;
    this.sendCq = sendCq;
    this.recvCq = recvCq;
    this.type = type;
    this.srq = srq;
    this.qpNum = n.qpNum;
    this.cap = Object.freeze(n.cap);
    this.#psn = (Math.random() * 0xffffff) >>> 0;
  }

  /** UD: the Q_Key it receives with (activate()'s `qkey`). */
  get qkey(): number {
    return this.#qkey;
  }

  /** 'RESET', 'INIT', 'RTR', 'RTS' or 'ERR', as this object last moved it. */
  get state(): string {
    return this.#state;
  }

  /** Send and receive work requests outstanding. */
  get outstanding(): { send: number; recv: number } {
    return { send: this.#sends, recv: this.#recvs };
  }

  /**
   * RDMA READs this QP may have outstanding, as `connect()` set it (the
   * device's `maxQpInitRdAtom`, at most 16, or the `maxRdAtomic` asked for);
   * undefined when something else connected it.
   */
  get maxRdAtomic(): number | undefined {
    return this.#maxRdAtomic;
  }

  /** What a peer passes to its `connect()`. */
  info(options: { portNum?: number; gidIndex?: number } = {}): QueuePairInfo {
    validateObject(options, 'options', this.info);
    this.check(this.info);
    const portNum = options.portNum === undefined ? 1 : toInt('options.portNum', options.portNum, 255, this.info);
    const gidIndex = options.gidIndex ?? defaultGidIndex(this.pd.context, portNum);
    const port = this.pd.context.queryPort(portNum);
    const gid = this.pd.context.queryGid(portNum, gidIndex);
    return { qpNum: this.qpNum, psn: this.#psn, portNum, lid: port.lid, gid: gidString(gid), gidIndex, mtu: port.activeMtu };
  }

  /**
   * Connects to a peer QP without rdma_cm: RESET -> INIT -> RTR -> RTS, with
   * the peer's GID (RoCE) as the destination. The QP grants remote write,
   * read and atomic; each MR's access flags decide what peers may do.
   * `maxRdAtomic` caps the RDMA READs it may have outstanding (default 16,
   * never more than the device offers); with 0, `read()` is refused with
   * EOPNOTSUPP instead of waiting forever (QEMU's pvrdma offers 0).
   */
  connect(remote: QueuePairInfo, options: { portNum?: number; gidIndex?: number; maxRdAtomic?: number } = {}): void {
    validateObject(remote, 'remote', this.connect);
    if (this.type === 'UD') throw invalidArgValue('this', 'a UD QueuePair', 'has no connection: use activate(), then send to an AddressHandle', this.connect);
    validateObject(options, 'options', this.connect);
    const askedRd = options.maxRdAtomic === undefined ? 16 : toInt('options.maxRdAtomic', options.maxRdAtomic, 255, this.connect);
    const dgid = gidBytes(remote.gid, this.connect);
    toInt('remote.qpNum', remote.qpNum, 0xffffff, this.connect);
    toInt('remote.psn', remote.psn, 0xffffff, this.connect);
    const mine = this.info({ portNum: options.portNum, gidIndex: options.gidIndex });
    const mtu = MTU_ENUM[Math.min(mine.mtu, remote.mtu ?? mine.mtu)] ?? 3;
    if (this.type === 'UC') {
      // No READs, atomics, ACKs or retries: the kernel refuses those attributes on UC.
      const ah = { dlid: remote.lid ?? 0, sl: 0, portNum: mine.portNum, dgid, sgidIndex: mine.gidIndex, hopLimit: 64 };
      this.#modify({ qpState: C.IBV_QPS_INIT, pkeyIndex: 0, portNum: mine.portNum, qpAccessFlags: C.IBV_ACCESS_LOCAL_WRITE | C.IBV_ACCESS_REMOTE_WRITE }, 'INIT');
      this.#modify({ qpState: C.IBV_QPS_RTR, pathMtu: mtu, destQpNum: remote.qpNum, rqPsn: remote.psn, ah }, 'RTR');
      this.#modify({ qpState: C.IBV_QPS_RTS, sqPsn: this.#psn }, 'RTS');
      return;
    }
    const dev = call(this.connect, () => this.pd.context.query());
    const rdAtomic = Math.min(askedRd, dev.maxQpInitRdAtom);
    this.#modify({ qpState: C.IBV_QPS_INIT, pkeyIndex: 0, portNum: mine.portNum, qpAccessFlags: QP_ACCESS }, 'INIT');
    this.#modify(
      {
        qpState: C.IBV_QPS_RTR,
        pathMtu: mtu,
        destQpNum: remote.qpNum,
        rqPsn: remote.psn,
        maxDestRdAtomic: Math.min(16, dev.maxQpRdAtom),
        minRnrTimer: 12,
        ah: { dlid: remote.lid ?? 0, sl: 0, portNum: mine.portNum, dgid, sgidIndex: mine.gidIndex, hopLimit: 64 },
      },
      'RTR',
    );
    this.#modify(
      { qpState: C.IBV_QPS_RTS, timeout: 14, retryCnt: 7, rnrRetry: 7, sqPsn: this.#psn, maxRdAtomic: rdAtomic },
      'RTS',
    );
    this.#maxRdAtomic = rdAtomic;
    this.#maxRdAtomicWhy = askedRd === 0 ? 'connect() was asked for maxRdAtomic 0' : `${this.pd.context.name} offers maxQpInitRdAtom ${dev.maxQpInitRdAtom}`;
  }

  /**
   * UD: RESET -> INIT -> RTR -> RTS, ready to send to and receive from any
   * UD QP that uses `qkey` (default 0x11111111, DEFAULT_QKEY). Peers need
   * `info()`'s qpNum and gid.
   */
  activate(options: { portNum?: number; qkey?: number } = {}): void {
    validateObject(options, 'options', this.activate);
    if (this.type !== 'UD') throw invalidArgValue('this', `a ${this.type} QueuePair`, 'connects to its peer: use connect() (activate() is for UD)', this.activate);
    const portNum = options.portNum === undefined ? 1 : toInt('options.portNum', options.portNum, 255, this.activate);
    const qkey = options.qkey === undefined ? DEFAULT_QKEY : toInt('options.qkey', options.qkey, 0xffffffff, this.activate);
    this.#modify({ qpState: C.IBV_QPS_INIT, pkeyIndex: 0, portNum, qkey }, 'INIT', this.activate);
    this.#modify({ qpState: C.IBV_QPS_RTR }, 'RTR', this.activate);
    this.#modify({ qpState: C.IBV_QPS_RTS, sqPsn: this.#psn }, 'RTS', this.activate);
    this.#qkey = qkey;
  }

  /** @internal rdma_cm moved this UD QP to INIT (its Q_Key, port, P_Key): on to RTR and RTS. */
  readyUd(caller: Function): void {
    this.#state = 'INIT';
    this.#modify({ qpState: C.IBV_QPS_RTR }, 'RTR', caller);
    this.#modify({ qpState: C.IBV_QPS_RTS, sqPsn: this.#psn }, 'RTS', caller);
    this.#qkey = this.query().qkey;
  }

  /** ibv_query_qp: the QP as the device has it (state, MTU, PSNs, retry counts, access...). */
  query(): QueuePairAttributes {
    this.check(this.query);
    const q = call(this.query, () => this.native.query()) as Record<string, number | boolean | Buffer>;
    const n = (k: string) => q[k] as number;
    const flags = n('qpAccessFlags');
    const a: QueuePairAttributes = {
      state: STATE_NAMES[n('qpState')] ?? String(n('qpState')),
      type: n('qpType') === C.IBV_QPT_UD ? 'UD' : n('qpType') === C.IBV_QPT_UC ? 'UC' : 'RC',
      pathMtu: MTU_BYTES[n('pathMtu')] ?? 0,
      destQpNum: n('destQpNum'),
      rqPsn: n('rqPsn'),
      sqPsn: n('sqPsn'),
      access: ACCESS_NAMES.filter(([bit]) => (flags & bit) !== 0).map(([, name]) => name),
      qkey: n('qkey'),
      portNum: n('portNum'),
      pkeyIndex: n('pkeyIndex'),
      timeout: n('timeout'),
      retryCnt: n('retryCnt'),
      rnrRetry: n('rnrRetry'),
      minRnrTimer: n('minRnrTimer'),
      maxRdAtomic: n('maxRdAtomic'),
      maxDestRdAtomic: n('maxDestRdAtomic'),
      maxInlineData: n('maxInlineData'),
      maxSendWr: n('maxSendWr'),
      maxRecvWr: n('maxRecvWr'),
      sqSigAll: q.sqSigAll === true,
    };
    if (q.dgid !== undefined) {
      a.destGid = gidString(q.dgid as Buffer);
      a.sgidIndex = n('sgidIndex');
      a.hopLimit = n('hopLimit');
    }
    return a;
  }

  #modify(attrs: Record<string, unknown>, to: (typeof STATE_NAMES)[number], caller: Function = this.connect): void {
    this.check(caller);
    const r = this.native.modify(attrs);
    if (r < 0) {
      const e = sysError(-r, 'ibv_modify_qp', {}, caller);
      e.message += ` (${this.#state} -> ${to})`;
      throw e;
    }
    this.#state = to;
  }

  /** @internal state changes made by rdma_cm. */
  setState(s: (typeof STATE_NAMES)[number]): void {
    this.#state = s;
  }

  /**
   * RDMA WRITE of `local` into `remote`. Resolves when the peer's NIC has
   * acknowledged it. `options.signal`: see index.ts's abort rule.
   */
  write(local: LocalBuffers, remote: RemoteRegion | MemoryRegion, length?: number, options: WorkRequestOptions = {}): Promise<RdmaCompletion> {
    return this.#one({ op: 'write', local, remote, length }, options, this.write);
  }

  /** RDMA READ of `remote` into `local` (its MR needs 'local-write'). */
  read(local: LocalBuffers, remote: RemoteRegion | MemoryRegion, length?: number, options: WorkRequestOptions = {}): Promise<RdmaCompletion> {
    return this.#one({ op: 'read', local, remote, length }, options, this.read);
  }

  /** SEND of `local` into the peer's next posted receive. */
  send(local: LocalBuffers | null, length?: number, options: WorkRequestOptions = {}): Promise<RdmaCompletion> {
    return this.#one({ op: 'send', local, length }, options, this.send);
  }

  /**
   * Atomic compare-and-swap of the 8 bytes at `remote` (8-byte aligned; its
   * MR needs 'remote-atomic'): the peer's NIC swaps in `swap` if they equal
   * `compare`. The original value lands in the first 8 bytes of `local` (its
   * MR needs 'local-write'), in the byte order of the host.
   */
  compareAndSwap(local: LocalBuffer, remote: RemoteRegion | MemoryRegion, compare: bigint, swap: bigint, options: WorkRequestOptions = {}): Promise<RdmaCompletion> {
    return this.#one({ op: 'compare-swap', local, remote, compare, swap }, options, this.compareAndSwap);
  }

  /** Atomic fetch-and-add of `add` to the 8 bytes at `remote`; the original value lands in `local`, as compareAndSwap. */
  fetchAndAdd(local: LocalBuffer, remote: RemoteRegion | MemoryRegion, add: bigint, options: WorkRequestOptions = {}): Promise<RdmaCompletion> {
    return this.#one({ op: 'fetch-add', local, remote, add }, options, this.fetchAndAdd);
  }

  /**
   * Binds a memory window to `options.mr` (registered with 'mw-bind'),
   * `offset`/`length` of it (default: all), granting peers `access`
   * ('remote-write', 'remote-read', 'remote-atomic') through the window's
   * new rkey (`mw.rkey`, `mw.remote()`), posted as a work request on this RC
   * or UC QP: resolves when the bind has completed. Type 1: ibv_bind_mw.
   * Type 2: an IBV_WR_BIND_MW request through ibv_post_send; the window
   * then works through this QP only, and a bound one is refused until it
   * is invalidated (`localInvalidate()`).
   */
  bindMw(mw: MemoryWindow, options: { mr: MemoryRegion; offset?: number; length?: number; access?: RdmaAccess | readonly RdmaAccess[]; signal?: AbortSignal }): Promise<RdmaCompletion> {
    const caller = this.bindMw;
    try {
      const signal = signalOf(options, 'options', caller);
      if (signal?.aborted) throw abortError(signal.reason, caller);
      if (!(mw instanceof MemoryWindow)) throw invalidArgType('mw', 'an instance of MemoryWindow', mw, caller);
      if (mw.closed) throw closedError('MemoryWindow', caller);
      if (mw.pd !== this.pd) throw invalidArgValue('mw', 'MemoryWindow', "must be allocated on the QP's protection domain", caller);
      if (this.type === 'UD') throw invalidArgValue('this', 'a UD QueuePair', 'cannot bind memory windows (RC and UC can)', caller);
      if (mw.type === 2 && mw.bound !== undefined) {
        throw invalidArgValue('mw', `a type 2 MemoryWindow bound with rkey 0x${mw.rkey.toString(16)}`, 'must be invalidated before it is bound again (qp.localInvalidate(mw), or a peer SEND with { invalidate })', caller);
      }
      const local = toLocal({ mr: options.mr, offset: options.offset, length: options.length }, caller);
      if (!local.mr.access.includes('mw-bind')) {
        throw invalidArgValue('options.mr', `MemoryRegion (${local.mr.access.join(', ') || 'no access'})`, "must be registered with 'mw-bind' to take memory windows", caller);
      }
      if (local.mr.pd !== this.pd) throw invalidArgValue('options.mr', 'MemoryRegion', "must be registered on the QP's protection domain", caller);
      let bits = 0;
      const access = options.access === undefined ? [] : typeof options.access === 'string' ? [options.access] : options.access;
      if (!Array.isArray(access)) throw invalidArgType('options.access', "'remote-write', 'remote-read', 'remote-atomic' or an array of them", options.access, caller);
      for (const a of access) {
        const b = MW_ACCESS[a as string];
        if (b === undefined) throw invalidArgValue('options.access', a, "must be 'remote-write', 'remote-read' or 'remote-atomic' (what peers may do through the window)", caller);
        bits |= b;
      }
      this.check(caller);
      this.#checkRoom(1, 0, caller);
      const wrId = takeWrId();
      let p!: Pending;
      const promise = new Promise<RdmaCompletion>((resolve, reject) => {
        p = { qp: this, op: 'bind-mw', length: local.length, resolve, reject, mrs: [] };
      });
      this.sendCq.add(wrId, p);
      this.#sends++;
      let r: number;
      try {
        r = this.native.bindMw(mw.native, local.mr.native, wrId, local.offset, local.length, bits);
      } catch (x) {
        this.sendCq.remove(wrId);
        this.completed(p);
        throw this.#postError(x, 'ibv_bind_mw', caller);
      }
      if (r < 0) {
        this.sendCq.remove(wrId);
        this.completed(p);
        const e = sysError(-r, 'ibv_bind_mw', {}, caller);
        if (this.#state !== 'RTS') e.message += ` (the queue pair is in ${this.#state}; connect it first)`;
        throw e;
      }
      mw.setBound(r, local);
      return abortable(promise, signal, caller);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * IBV_WR_LOCAL_INV of a type 2 window's rkey (or an rkey): once it
   * completes the window is unbound (`mw.bound` undefined), peers using
   * the old rkey fail with a remote access error, and the window may be
   * bound again. The window must have been bound on this QP.
   */
  localInvalidate(target: MemoryWindow | number, options: WorkRequestOptions = {}): Promise<RdmaCompletion> {
    if (!(target instanceof MemoryWindow)) {
      if (typeof target !== 'number') return Promise.reject(invalidArgType('target', 'a MemoryWindow or an rkey (number)', target, this.localInvalidate));
      return this.#one({ op: 'local-inv', rkey: target }, options, this.localInvalidate);
    }
    if (target.closed) return Promise.reject(closedError('MemoryWindow', this.localInvalidate));
    if (target.type !== 2) return Promise.reject(invalidArgValue('target', 'a type 1 MemoryWindow', 'cannot be invalidated (type 1 windows move by binding again; allocMw({ type: 2 }))', this.localInvalidate));
    const rkey = target.rkey;
    // Not the hot path: one closure per invalidation.
    return this.#one({ op: 'local-inv', rkey }, options, this.localInvalidate).then((c) => {
      if (target.rkey === rkey) target.invalidated();
      return c;
    });
  }

  /** Posts a receive into `local` (its MR needs 'local-write'); resolves with the byte count received. */
  recv(local: LocalBuffers | null, length?: number, options: WorkRequestOptions = {}): Promise<RdmaCompletion> {
    return this.#one({ op: 'recv', local, length }, options, this.recv);
  }

  #one(wr: WorkRequest, options: WorkRequestOptions, caller: Function): Promise<RdmaCompletion> {
    try {
      const signal = signalOf(options, 'options', caller);
      wr.signal = signal;
      const w = wr as unknown as Record<string, unknown>;
      for (const k of WR_OPTIONS) if (options[k] !== undefined) w[k] = options[k];
      return this.#post([wr], caller, null)![0];
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Posts a batch as one chain (one ibv_post_send for the sends, one
   * ibv_post_recv for the receives): a promise per request, in order. The
   * whole batch is validated first; nothing is posted if any is invalid.
   */
  post(wrs: readonly WorkRequest[]): Promise<RdmaCompletion>[] {
    if (!Array.isArray(wrs)) throw invalidArgType('wrs', 'an array of work requests', wrs, this.post);
    return this.#post(wrs, this.post, null)!;
  }

  /**
   * Posts a batch as post() does, with one promise for all of it: it
   * resolves with the completions in posting order once every request has
   * completed, or rejects with the first failure once every request has
   * left the queue (so the batch's buffers are free when it settles). The
   * cheap form for many small requests: no promise per request. Requests
   * take no `signal` of their own; `options.signal` stops the wait.
   */
  postAll(wrs: readonly WorkRequest[], options: { signal?: AbortSignal } = {}): Promise<RdmaCompletion[]> {
    try {
      if (!Array.isArray(wrs)) throw invalidArgType('wrs', 'an array of work requests', wrs, this.postAll);
      const signal = signalOf(options, 'options', this.postAll);
      if (signal?.aborted) throw abortError(signal.reason, this.postAll);
      for (const wr of wrs) {
        if (typeof wr === 'object' && wr !== null && (wr as WorkRequest).signal !== undefined) {
          throw invalidArgValue('wr.signal', (wr as WorkRequest).signal, 'must be left out in postAll() (pass options.signal)', this.postAll);
        }
      }
      if (wrs.length === 0) return Promise.resolve([]);
      const batch = new Batch(wrs.length);
      this.#post(wrs, this.postAll, batch);
      return abortable(batch.promise, signal, this.postAll);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Checks a WRITE, READ or SEND once and keeps it natively, to post
   * again and again with nothing built per post: `post(count)` posts
   * `count` copies as one chain with one promise (bandwidth),
   * `postSync()` one copy with none (latency; reap with `cq.poll()`). It
   * takes one local buffer (a SEND may take none), `inline`, `immediate`,
   * `fence`, `solicited`; not `signal` or `signaled` (the posts decide).
   * RC and UC queue pairs. Close it (or the QP) to let go of its MR.
   */
  prepare(wr: PreparableRequest, options: PrepareOptions = {}): PreparedRequest {
    const caller = this.prepare;
    validateObject(wr, 'wr', caller);
    validateObject(options, 'options', caller);
    const op = wr.op;
    if (op !== 'write' && op !== 'read' && op !== 'send') throw invalidArgValue('wr.op', op, "must be 'write', 'read' or 'send' (what a prepared request can be)", caller);
    if (this.type === 'UD') throw invalidArgValue('this', 'a UD QueuePair', 'cannot prepare requests (a UD send names its destination per request: use send())', caller);
    for (const k of ['signal', 'signaled'] as const) {
      if (wr[k] !== undefined) throw invalidArgValue(`wr.${k}`, wr[k], "must be left out of a prepared request (post() and postSync() decide which are signaled; post() takes options.signal)", caller);
    }
    const max = this.cap.maxSendWr;
    let every = Math.max(1, max >> 1);
    if (options.signalEvery !== undefined) {
      every = toInt('options.signalEvery', options.signalEvery, max, caller);
      if (every < 1) throw outOfRange('options.signalEvery', `an integer >= 1 && <= ${max} (the queue pair's cap.maxSendWr)`, every, caller);
    }
    this.check(caller);
    const e = this.#entry(wr as WorkRequest, caller);
    if (e.list || e.parts.length > 1) throw invalidArgValue('wr.local', 'a list of buffers', 'must be one buffer in a prepared request', caller);
    if (typeof e.raddr === 'bigint') throw invalidArgValue('wr.remote', 'an address at or above 2^53', 'is not for a prepared request (post it with write()/read())', caller);
    const d = new Float64Array(PACK_STRIDE);
    d[1] = e.opcode;
    d[2] = e.flags & ~C.IBV_SEND_SIGNALED;
    d[3] = -1;
    if (e.parts.length === 1) {
      d[3] = 0;
      d[4] = e.parts[0].offset;
      d[5] = e.length;
    }
    d[6] = e.raddr === null ? 0 : e.raddr;
    d[7] = e.rkey;
    d[8] = e.imm ?? 0;
    let slot: number;
    try {
      slot = this.native.prepare(d, e.parts.length === 1 ? e.parts[0].mr.native : [], 1);
    } catch (x) {
      throw this.#postError(x, 'ibv_post_send', caller);
    }
    const prepared = createPrepared(this, slot, op, e.length, e.p.mrs, every);
    this.#prepared.add(prepared);
    return prepared;
  }

  readonly #prepared = new Set<PreparedRequest>();

  /** @internal a PreparedRequest closed. */
  unprepare(p: PreparedRequest, slot: number): void {
    if (this.#prepared.delete(p)) this.native.unprepare(slot);
  }

  /**
   * @internal `count` copies of a prepared WR as one chain, only the last
   * signaled, settling `p` (keyed by the last wr_id). Throws if none was
   * posted or the post failed part way (the posted ones, unsignaled, are
   * settled by the next send completion).
   */
  postPrepared(slot: number, count: number, p: Pending, caller: Function): void {
    this.check(caller);
    this.#checkRoom(count, 0, caller);
    const first = takeWrIds(count);
    p.first = first;
    p.count = count;
    for (let j = 0; j < p.mrs.length; j++) p.mrs[j].acquire();
    this.sendCq.add(first + count - 1, p);
    this.#sends += count;
    let r: number;
    try {
      r = this.native.postPrepared(slot, count, first, count);
    } catch (x) {
      this.#undoPrepared(first + count - 1, p);
      throw this.#postError(x, 'ibv_post_send', caller);
    }
    if (r >= 0) return;
    this.#undoPrepared(first + count - 1, p);
    const posted = Math.floor(-r / 4096);
    if (posted > 0) {
      this.#strand(first, posted, p);
      this.#sends += posted;
    }
    throw this.#preparedError(-r % 4096, caller);
  }

  #undoPrepared(key: number, p: Pending): void {
    this.sendCq.remove(key);
    this.completed(p);
    releaseMrs(p);
  }

  /**
   * A run of unsignaled WRs from `first` with no signaled one after it
   * yet: an entry keyed by the first, settled by the next send completion
   * on this QP (sendCompleted) or the QP's close. Not counted in #sends.
   */
  #strand(first: number, n: number, like: Pending): Pending {
    const t: Pending = { qp: this, op: like.op, length: like.length, resolve: noop, reject: noop, mrs: like.mrs, count: n, first };
    for (let j = 0; j < t.mrs.length; j++) t.mrs[j].acquire();
    this.sendCq.add(first, t);
    this.#unsignaled.push(first);
    return t;
  }

  #preparedError(errno: number, caller: Function): Error {
    const e = sysError(errno, 'ibv_post_send', {}, caller);
    if (this.#state !== 'RTS') e.message += ` (the queue pair is in ${this.#state}; connect it first)`;
    return e;
  }

  /** @internal one copy of a prepared WR now, no promise: PreparedRequest.postSync(). */
  postPreparedSync(s: SyncState, timeoutUs: number, caller: Function): void {
    this.check(caller);
    const cq = this.sendCq;
    if (this.#sends >= this.cap.maxSendWr || cq.outstanding >= cq.size) {
      // Full: reap what has completed, spinning up to the timeout for what frees a slot
      // (a completion of another QP on the CQ may come first).
      const end = performance.now() + timeoutUs / 1000;
      let left = timeoutUs;
      do {
        cq.reap(left, caller);
        left = Math.round((end - performance.now()) * 1000);
      } while ((this.#sends >= this.cap.maxSendWr || cq.outstanding >= cq.size) && left > 0);
      try {
        this.#checkRoom(1, 0, caller);
      } catch (e) {
        (e as Error).message += ` (no completion freed a slot within ${timeoutUs / 1000} ms)`;
        throw e;
      }
    }
    const id = takeWrId();
    const signaled = s.since + 1 >= s.every || this.#sends + 1 >= this.cap.maxSendWr;
    let p: Pending | undefined;
    let fresh = false;
    if (signaled) {
      p = { qp: this, op: s.op, length: s.length, resolve: noop, reject: s.fail, mrs: s.mrs };
      for (let j = 0; j < p.mrs.length; j++) p.mrs[j].acquire();
      cq.add(id, p);
    } else if (s.tail === undefined || cq.pending.get(s.tail.first!) !== s.tail) {
      // None yet, or another request's completion settled it: a new run.
      p = this.#strand(id, 1, { qp: this, op: s.op, length: s.length, resolve: noop, reject: noop, mrs: s.mrs });
      p.reject = s.fail;
      fresh = true;
    } else {
      s.tail.count = (s.tail.count ?? 1) + 1;
      cq.grow(1);
    }
    this.#sends++;
    const r = this.native.postPrepared(s.slot, 1, id, signaled ? 1 : 0);
    if (r >= 0) {
      if (signaled) {
        s.since = 0;
        s.tail = undefined;
      } else {
        s.since++;
        if (fresh) s.tail = p;
      }
      return;
    }
    this.#sends--;
    if (p !== undefined) {
      cq.remove(id);
      releaseMrs(p);
      if (fresh) this.#unsignaled.pop();
    } else {
      s.tail!.count!--;
      cq.grow(-1);
    }
    throw this.#preparedError(-r % 4096, caller);
  }

  /** The packed descriptors of a chain (native postSendPacked), grown to the largest and reused. */
  #desc = new Float64Array(PACK_STRIDE * 4);
  readonly #descMrs: NativeRdmaMr[] = [];

  #post(wrs: readonly WorkRequest[], caller: Function, batch: Batch | null): Promise<RdmaCompletion>[] | undefined {
    this.check(caller);
    const entries: Entry[] = [];
    let sends = 0;
    let packable = true;
    let last: Entry | undefined;
    for (const wr of wrs) {
      const e = this.#entry(wr, caller);
      if (e.send) {
        sends++;
        last = e;
      }
      if (e.list || e.atomic !== null || typeof e.raddr === 'bigint' || e.ah !== null) packable = false;
      entries.push(e);
    }
    const recvs = entries.length - sends;
    this.#checkRoom(sends, recvs, caller);
    // Unsignaled requests keep their slots until a signaled one completes
    // after them: one must always fit.
    if (last !== undefined && !last.signaled && this.#sends + sends >= this.cap.maxSendWr) {
      const e = sysError(ENOMEM, 'ibv_post_send', {}, caller);
      e.message += `: an unsignaled request would take the send queue's last slot (${this.cap.maxSendWr}); its promise settles only when a later signaled request completes, so end the batch with a signaled one`;
      throw e;
    }
    // Each MR in use stays registered until its request completes.
    const promises: Promise<RdmaCompletion>[] | undefined = batch === null ? [] : undefined;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      const cq = e.send ? this.sendCq : this.recvCq;
      for (let j = 0; j < e.p.mrs.length; j++) e.p.mrs[j].acquire();
      if (batch !== null) {
        e.p.resolve = batch.resolve;
        e.p.reject = batch.reject;
        cq.add(e.wrId, e.p);
      } else {
        promises!.push(
          new Promise<RdmaCompletion>((resolve, reject) => {
            e.p.resolve = resolve;
            e.p.reject = reject;
            cq.add(e.wrId, e.p);
          }),
        );
      }
      if (e.send) {
        this.#sends++;
        if (!e.signaled) this.#unsignaled.push(e.wrId);
      } else this.#recvs++;
    }
    if (packable) {
      if (sends > 0) this.#submitPacked(entries, true, sends, caller);
      if (recvs > 0) this.#submitPacked(entries, false, recvs, caller);
    } else {
      const s = entries.filter((e) => e.send);
      const r = entries.filter((e) => !e.send);
      this.#submit(s.map(legacyEntry), 'send', s, caller);
      this.#submit(r.map(legacyEntry), 'recv', r, caller);
    }
    if (promises === undefined) return undefined;
    // The request keeps its MR and queue slot until its completion, which an
    // abort only stops the caller from waiting for.
    for (let i = 0; i < promises.length; i++) if (entries[i].signal !== undefined) promises[i] = abortable(promises[i], entries[i].signal, caller);
    return promises;
  }

  /** One work request, checked, as an Entry (its Pending's resolve/reject set by #post). */
  #entry(wr: WorkRequest, caller: Function): Entry {
    validateObject(wr, 'wr', caller);
    const signal = signalOf(wr, 'wr', caller);
    // Aborted already: nothing of the batch is posted.
    if (signal?.aborted) throw abortError(signal.reason, caller);
    const op = wr.op;
    if (op !== 'write' && op !== 'read' && op !== 'send' && op !== 'recv' && op !== 'compare-swap' && op !== 'fetch-add' && op !== 'local-inv') {
      throw invalidArgValue('wr.op', op, "must be 'write', 'read', 'send', 'recv', 'compare-swap', 'fetch-add' or 'local-inv'", caller);
    }
    if (op === 'recv' && this.srq !== undefined) {
      throw invalidArgValue('wr.op', op, 'is not for a queue pair created with an srq: post receives with srq.recv()', caller);
    }
    if (this.type === 'UD' && op !== 'send' && op !== 'recv') throw invalidArgValue('wr.op', op, "must be 'send' or 'recv' on a UD queue pair (RDMA WRITE, READ and atomics need RC)", caller);
    if (this.type === 'UC' && op !== 'send' && op !== 'recv' && op !== 'write' && op !== 'local-inv') throw invalidArgValue('wr.op', op, "must be 'send', 'recv', 'write' or 'local-inv' on a UC queue pair (RDMA READ and atomics need RC)", caller);
    const fl = flagsOf(wr, op, caller);
    const ud = this.#udOf(wr, op, caller);
    if (op === 'compare-swap' || op === 'fetch-add') return this.#atomic(wr as Extract<WorkRequest, { op: 'compare-swap' | 'fetch-add' }>, signal, fl, caller);
    if (op === 'local-inv') return this.#localInv(wr as Extract<WorkRequest, { op: 'local-inv' }>, signal, fl, caller);
    if (op === 'read') this.#needRdAtomic('RDMA READ', caller);
    // A scatter/gather list: each part its own { mr, offset, length }.
    const list = Array.isArray(wr.local);
    const parts = wr.local === null && (op === 'send' || op === 'recv') ? [] : list ? (wr.local as LocalBuffer[]).map((l) => toLocal(l, caller)) : [toLocal(wr.local, caller)];
    if (list) {
      const maxSge = op === 'recv' ? this.cap.maxRecvSge : this.cap.maxSendSge;
      if (parts.length === 0 || parts.length > maxSge) {
        throw outOfRange('local', `a list of 1 to ${maxSge} buffers (the queue pair's cap.${op === 'recv' ? 'maxRecvSge' : 'maxSendSge'})`, parts.length, caller);
      }
      if (wr.length !== undefined) throw invalidArgValue('length', wr.length, 'must be left out with a list of buffers (each part has its own length)', caller);
    }
    let total = 0;
    for (let i = 0; i < parts.length; i++) total += parts[i].length;
    const want = wr.length === undefined ? total : toInt('length', wr.length, 0xffffffff, caller);
    if (parts.length > 0 && want > total) throw outOfRange('length', `<= ${total} (the local buffer's length)`, want, caller);
    const mrs: Held[] = [];
    for (let i = 0; i < parts.length; i++) {
      const local = parts[i];
      if ((op === 'read' || op === 'recv') && !local.mr.access.includes('local-write')) {
        throw invalidArgValue('local', `MemoryRegion (${local.mr.access.join(', ') || 'no access'})`, `must be registered with 'local-write' to be the target of ${op === 'read' ? 'an RDMA READ' : 'a receive'}`, caller);
      }
      if (local.mr.pd !== this.pd) throw invalidArgValue('local', 'MemoryRegion', "must be registered on the QP's protection domain", caller);
      mrs.push(local.mr);
    }
    let opcode = 0;
    let flags = 0;
    let imm: number | null = null;
    let raddr: number | bigint | null = null;
    let rkey = 0;
    if (op === 'write' || op === 'read') {
      const remote = toRemote((wr as { remote: unknown }).remote, caller);
      const ro = (wr as { remoteOffset?: number }).remoteOffset;
      const roff = ro === undefined ? 0 : toInt('remoteOffset', ro, Number.MAX_SAFE_INTEGER, caller);
      if (remote.length !== undefined && roff + want > remote.length) {
        throw outOfRange('length', `<= ${remote.length - Math.min(roff, remote.length)} (the remote region's length after remoteOffset)`, want, caller);
      }
      const so = sendOptionsOf(wr, op, want, this.cap.maxInlineData, caller);
      opcode = so.immediate !== null && op === 'write' ? OPCODE_WITH_IMM.write : OPCODE[op];
      flags = so.flags | fl;
      imm = so.immediate;
      // A double while exact (user-space addresses are): no BigInt per request.
      raddr = remote.addr < ADDR_EXACT ? Number(remote.addr) + roff : -1;
      if (raddr === -1 || raddr + want > Number.MAX_SAFE_INTEGER) raddr = remoteAddress(remote, roff, want, caller);
      rkey = remote.rkey;
    } else if (op === 'send') {
      const so = sendOptionsOf(wr, op, want, this.cap.maxInlineData, caller, this.type);
      opcode = so.immediate !== null ? OPCODE_WITH_IMM.send : so.invalidate !== null ? C.IBV_WR_SEND_WITH_INV : OPCODE.send;
      flags = so.flags | fl;
      // The native side sends the immediate's slot as the rkey to invalidate.
      imm = so.immediate ?? so.invalidate;
    } else {
      sendOptionsOf(wr, op, want, 0, caller);
    }
    if (ud.ah !== null) mrs.push(ud.ah);
    return {
      wrId: takeWrId(), send: op !== 'recv', signal, opcode, flags, imm, parts, list, length: want, raddr, rkey, atomic: null, signaled: op === 'recv' || (fl & C.IBV_SEND_SIGNALED) !== 0, ah: ud.ah, remoteQpn: ud.remoteQpn, remoteQkey: ud.remoteQkey,
      p: { qp: this, op, length: want, resolve: noop, reject: noop, mrs, detail: op === 'recv' && this.type === 'UD' },
    };
  }

  /** A UD send's destination, checked; refused on RC. */
  #udOf(wr: WorkRequestOptions, op: string, caller: Function): { readonly ah: AddressHandle | null; readonly remoteQpn: number; readonly remoteQkey: number } {
    const { ah, remoteQpn, remoteQkey } = wr;
    if (this.type !== 'UD' || op !== 'send') {
      const k = ah !== undefined ? 'ah' : remoteQpn !== undefined ? 'remoteQpn' : remoteQkey !== undefined ? 'remoteQkey' : undefined;
      if (k !== undefined) throw invalidArgValue(`wr.${k}`, wr[k], this.type === 'UD' ? 'applies to sends only' : 'applies to sends on a UD queue pair only', caller);
      return NO_UD;
    }
    if (!(ah instanceof AddressHandle)) throw invalidArgType('wr.ah', 'an instance of AddressHandle (a UD send needs a destination)', ah, caller);
    if (ah.closed) throw closedError('AddressHandle', caller);
    if (ah.pd !== this.pd) throw invalidArgValue('wr.ah', 'AddressHandle', "must be created on the QP's protection domain", caller);
    const qpn = toInt('wr.remoteQpn', remoteQpn, 0xffffff, caller);
    const qkey = remoteQkey === undefined ? DEFAULT_QKEY : toInt('wr.remoteQkey', remoteQkey, 0xffffffff, caller);
    return { ah, remoteQpn: qpn, remoteQkey: qkey };
  }

  /** @internal a send completed: the unsignaled ones posted before it completed too (the send queue is in order). */
  sendCompleted(wrId: number): void {
    const u = this.#unsignaled;
    if (u.length === 0 || u[0] > wrId) return;
    let i = 0;
    while (i < u.length && u[i] <= wrId) {
      const id = u[i++];
      if (id === wrId) continue; // this one failed: its own completion settles it
      const p = this.sendCq.remove(id);
      if (p === undefined) continue; // never posted, or already failed
      this.completed(p);
      releaseMrs(p);
      p.resolve({ wrId: id, op: p.op, byteLen: p.length });
    }
    u.splice(0, i);
  }

  /** Posts the send (or receive) entries through the packed native path. */
  #submitPacked(entries: Entry[], send: boolean, count: number, caller: Function): void {
    if (this.#desc.length < count * PACK_STRIDE) this.#desc = new Float64Array(count * PACK_STRIDE * 2);
    const d = this.#desc;
    const mrs = this.#descMrs;
    let k = 0;
    let one: NativeRdmaMr | undefined;
    let same = true;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (e.send !== send) continue;
      const o = k * PACK_STRIDE;
      d[o] = e.wrId;
      d[o + 1] = e.opcode;
      d[o + 2] = e.flags;
      if (e.parts.length === 0) d[o + 3] = -1;
      else {
        const n = e.parts[0].mr.native;
        if (one === undefined) one = n;
        else if (n !== one) same = false;
        mrs.push(n);
        d[o + 3] = mrs.length - 1;
        d[o + 4] = e.parts[0].offset;
        d[o + 5] = e.length;
      }
      d[o + 6] = e.raddr === null ? 0 : (e.raddr as number);
      d[o + 7] = e.rkey;
      d[o + 8] = e.imm ?? 0;
      k++;
    }
    // One MR for the whole chain (the usual case) goes as itself: no array lookups natively.
    const arg = same && one !== undefined ? one : mrs;
    const verb = send ? 'ibv_post_send' : 'ibv_post_recv';
    let posted = count;
    let e: Error | undefined;
    try {
      const r = send ? this.native.postSendPacked(d, arg, count) : this.native.postRecvPacked(d, arg, count);
      if (r < 0) {
        posted = Math.floor(-r / 4096);
        e = sysError(-r % 4096, verb, {}, caller);
        if (this.#state !== 'RTS' && send) e.message += ` (the queue pair is in ${this.#state}; connect it first)`;
      }
    } catch (x) {
      posted = 0;
      e = this.#postError(x, verb, caller);
    } finally {
      mrs.length = 0;
    }
    if (e !== undefined) this.#unpost(entries.filter((x) => x.send === send).slice(posted), send ? 'send' : 'recv', e);
  }
  /** The native entry of an atomic request, checked: 8 bytes each side, aligned remote, the access it needs. */
  #atomic(wr: Extract<WorkRequest, { op: 'compare-swap' | 'fetch-add' }>, signal: AbortSignal | undefined, fl: number, caller: Function): Entry {
    const op = wr.op;
    this.#needRdAtomic('atomic', caller);
    // Refuses immediate and inline: they apply to write and send only.
    sendOptionsOf(wr, op, 8, 0, caller);
    const local = toLocal(wr.local, caller);
    if (local.length < 8) throw outOfRange('local', '>= 8 bytes (an atomic returns the 64-bit original value)', local.length, caller);
    if (!local.mr.access.includes('local-write')) {
      throw invalidArgValue('local', `MemoryRegion (${local.mr.access.join(', ') || 'no access'})`, "must be registered with 'local-write' to receive the original value", caller);
    }
    if (local.mr.pd !== this.pd) throw invalidArgValue('local', 'MemoryRegion', "must be registered on the QP's protection domain", caller);
    const remote = toRemote(wr.remote, caller);
    const roff = wr.remoteOffset === undefined ? 0 : toInt('remoteOffset', wr.remoteOffset, Number.MAX_SAFE_INTEGER, caller);
    if (remote.length !== undefined && roff + 8 > remote.length) {
      throw outOfRange('remoteOffset', `<= ${remote.length - 8} (8 bytes must fit in the remote region)`, roff, caller);
    }
    const addr = remoteAddress(remote, roff, 8, caller);
    if (addr % 8n !== 0n) throw invalidArgValue('remote', `address 0x${addr.toString(16)}`, 'must be 8-byte aligned for an atomic', caller);
    const compareAdd = op === 'compare-swap' ? u64('compare', wr.compare, caller) : u64('add', wr.add, caller);
    const swap = op === 'compare-swap' ? u64('swap', wr.swap, caller) : 0n;
    return {
      wrId: takeWrId(), send: true, signal, opcode: OPCODE_ATOMIC[op], flags: fl, imm: null, parts: [local], list: false, length: 8, raddr: addr, rkey: remote.rkey,
      atomic: [compareAdd, swap], signaled: (fl & C.IBV_SEND_SIGNALED) !== 0, ah: null, remoteQpn: 0, remoteQkey: 0, p: { qp: this, op, length: 8, resolve: noop, reject: noop, mrs: [local.mr] },
    };
  }

  /** A LOCAL_INV of `rkey` (a type 2 window's, or a fast-registered MR's), checked. */
  #localInv(wr: Extract<WorkRequest, { op: 'local-inv' }>, signal: AbortSignal | undefined, fl: number, caller: Function): Entry {
    sendOptionsOf(wr, 'local-inv', 0, 0, caller);
    const rkey = toInt('wr.rkey', wr.rkey, 0xffffffff, caller);
    return {
      wrId: takeWrId(), send: true, signal, opcode: C.IBV_WR_LOCAL_INV, flags: fl, imm: rkey, parts: [], list: false, length: 0, raddr: null, rkey: 0,
      atomic: null, signaled: (fl & C.IBV_SEND_SIGNALED) !== 0, ah: null, remoteQpn: 0, remoteQkey: 0, p: { qp: this, op: 'local-inv', length: 0, resolve: noop, reject: noop, mrs: [] },
    };
  }

  /** READs and atomics need a responder resource: posted without one they would wait forever for a credit. */
  #needRdAtomic(what: string, caller: Function): void {
    if (this.#maxRdAtomic !== 0) return;
    const e = sysError(EOPNOTSUPP, 'ibv_post_send', {}, caller);
    e.message = `EOPNOTSUPP: this QP may have no ${what} outstanding (${this.#maxRdAtomicWhy}), ibv_post_send`;
    throw e;
  }

  #checkRoom(sends: number, recvs: number, caller: Function): void {
    const full = (what: string, have: number, max: number, adding: number) => {
      const e = sysError(ENOMEM, what === 'completion queue' ? 'ibv_post_send' : what === 'receive queue' ? 'ibv_post_recv' : 'ibv_post_send', {}, caller);
      e.message += `: the ${what} holds ${max} work requests, ${have} are outstanding and ${adding} more were posted; await some first or create it larger`;
      return e;
    };
    if (this.#sends + sends > this.cap.maxSendWr) throw full('send queue', this.#sends, this.cap.maxSendWr, sends);
    if (this.#recvs + recvs > this.cap.maxRecvWr) throw full('receive queue', this.#recvs, this.cap.maxRecvWr, recvs);
    const cqs = this.sendCq === this.recvCq ? [[this.sendCq, sends + recvs]] as const : [[this.sendCq, sends], [this.recvCq, recvs]] as const;
    for (const [cq, n] of cqs) if (cq.outstanding + n > cq.size) throw full('completion queue', cq.outstanding, cq.size, n);
  }

  #submit(list: unknown[][], kind: 'send' | 'recv', entries: Entry[], caller: Function): void {
    if (list.length === 0) return;
    const verb = kind === 'send' ? 'ibv_post_send' : 'ibv_post_recv';
    let posted: number;
    let e: Error;
    try {
      let err: number;
      [posted, err] = kind === 'send' ? this.native.postSend(list) : this.native.postRecv(list);
      if (err === 0) return;
      // Those after the failed one were never posted: no completion will come.
      e = sysError(-err, verb, {}, caller);
      if (this.#state !== 'RTS' && kind === 'send') e.message += ` (the queue pair is in ${this.#state}; connect it first)`;
    } catch (x) {
      posted = 0;
      e = this.#postError(x, verb, caller);
    }
    this.#unpost(entries.slice(posted), kind, e);
  }

  /**
   * A throw from the native post: nothing was posted. An argument the
   * native side refused (a bug here: the JS checks come first) reads as
   * EINVAL with its reason; anything else keeps its own error.
   */
  #postError(x: unknown, verb: string, caller: Function): Error {
    const code = (x as { code?: unknown })?.code;
    if (code === 'ERR_INVALID_ARG_TYPE' || code === 'ERR_OUT_OF_RANGE') {
      const e = sysError(22, verb, {}, caller);
      e.message += ` (${(x as Error).message})`;
      return e;
    }
    return rdmaError(x, caller) as Error;
  }

  /** Rejects the entries that were never posted: no completion will come for them. */
  #unpost(entries: Entry[], kind: 'send' | 'recv', e: Error): void {
    const cq = kind === 'send' ? this.sendCq : this.recvCq;
    for (const { wrId } of entries) {
      const p = cq.remove(wrId);
      if (p === undefined) continue;
      this.completed(p);
      releaseMrs(p);
      p.reject(e);
    }
  }

  /** @internal a request left the queue. */
  completed(p: Pending): void {
    if (p.op === 'recv') this.#recvs--;
    else this.#sends -= p.count ?? 1;
  }

  /** MR holds of the requests flushed by close(): released once the QP is destroyed. */
  #releaseAfterClose: Held[] = [];

  protected override willClose(): void {
    // The kernel flushes them when the QP is destroyed; no completion will
    // reach us, so they are rejected here, at once. The device may touch
    // their memory until destroy_qp returns: their MRs stay registered
    // until then (didClose).
    this.#unsignaled.length = 0;
    for (const p of [...this.#prepared]) p.close();
    for (const cq of new Set([this.sendCq, this.recvCq])) {
      for (const [wrId, p] of [...cq.pending]) {
        if (p.qp !== this) continue;
        cq.remove(wrId);
        this.completed(p);
        this.#releaseAfterClose.push(...p.mrs);
        p.reject(completionError(WC_WR_FLUSH_ERR, 0, wrId, p.op, 'work request flushed: the queue pair was closed'));
      }
    }
  }

  protected override didClose(): void {
    for (const mr of this.#releaseAfterClose.splice(0)) mr.unuse();
    for (const o of this.owned.splice(0)) o.close();
  }

  protected get teardownCall(): string {
    return 'ibv_destroy_qp';
  }

  override describe(): string {
    return `QueuePair (qp_num ${this.qpNum})`;
  }
}

/**
 * @internal exported for tests: `remote.addr + offset`, refused when that
 * range (`length` bytes from there) would run past 2^64 and wrap.
 */
export function remoteAddress(remote: RemoteRegion, offset: number, length: number, caller: Function): bigint {
  const addr = remote.addr + BigInt(offset);
  if (addr + BigInt(length) > 2n ** 64n) {
    throw outOfRange('remoteOffset', `<= ${2n ** 64n - BigInt(length) - remote.addr} (remote.addr ${remote.addr} + remoteOffset + length must not pass 2^64)`, offset, caller);
  }
  return addr;
}

function toRemote(v: unknown, caller: Function): RemoteRegion {
  if (v instanceof MemoryRegion) {
    if (v.closed) throw closedError('MemoryRegion (deregistered)', caller);
    return v.remote();
  }
  validateObject(v, 'remote', caller);
  const r = v as RemoteRegion;
  if (typeof r.addr !== 'bigint' || r.addr < 0n || r.addr >= 2n ** 64n) throw invalidArgType('remote.addr', 'a bigint in [0, 2^64)', r.addr, caller);
  toInt('remote.rkey', r.rkey, 0xffffffff, caller);
  if (r.length !== undefined) toInt('remote.length', r.length, Number.MAX_SAFE_INTEGER, caller);
  return r;
}
