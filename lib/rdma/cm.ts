/**
 * Connection setup through rdma_cm (librdmacm, loaded at run time):
 * `listen({ address, port })` and `connect({ address, port })`, the way
 * every RDMA application finds its peer (IP address and port, like TCP).
 *
 * Each listener or outgoing connection has its own event channel, whose fd
 * a `Poller` watches on the event loop. The QPs are ours (lib/rdma/, on
 * our own device context): the rdma_cm id only carries the connection, and
 * rdma_init_qp_attr gives our QP its INIT/RTR/RTS attributes.
 *
 * Without `pd`, a connection opens the device its address routes to and
 * makes a PD and a CQ for itself (`connection.pd`, `.cq`), closed with it.
 *
 * Errors: a failing event channel (an epoll error, or rdma_get_cm_event
 * failing) rejects every pending `connect()`, `accept()` and
 * `waitDisconnect()` on it with that error, and later `accept()`s at once.
 * When the peer disconnects (or the device goes away), the connection moves
 * its QP to the error state (our QP is not librdmacm's, so nothing else
 * would): its posted work requests complete as flushed
 * (IBV_WC_WR_FLUSH_ERR) instead of waiting for `close()`.
 *
 * Lifetimes: a Listener or Connection nobody references and nobody waits on
 * is garbage collected with a P2PDMA_GC_CLOSE warning, its rdma_cm id and
 * event channel closed by their finalizers; a Connection stays while its
 * `qp` is referenced.
 */
import * as net from 'node:net';

import { abortError, type CodedError, closedError, illegalConstructor, invalidArgType, invalidArgValue, outOfRange, sysError, type SystemError, validateObject } from '../core/errors';
import { native, type NativeCmChannel, type NativeCmEvent, type NativeCmId } from '../core/native';
import { Poller } from '../core/poll';
import type { CompletionQueue } from './cq';
import { Rdma, type RdmaContext } from './device';
import { rdmaError } from './errors';
import type { ProtectionDomain } from './pd';
import type { QueuePair, QueuePairOptions } from './qp';
import { toInt } from './validate';

const C = native.rdmaConstants;
const QP_ACCESS = C.IBV_ACCESS_LOCAL_WRITE | C.IBV_ACCESS_REMOTE_WRITE | C.IBV_ACCESS_REMOTE_READ | C.IBV_ACCESS_REMOTE_ATOMIC;
// RDMA READs and atomics in flight each way, by default: what rxe and most NICs take.
const RD_ATOMIC = 16;
const DEFAULT_TIMEOUT_MS = 5000;

export interface CmEndpoint {
  /** An IPv4 or IPv6 address (a literal; resolve names with dns.lookup first). */
  address: string;
  port: number;
}

export interface ConnectionOptions {
  /** A PD on the device the address routes to. Default: the connection opens that device and makes one. */
  pd?: ProtectionDomain;
  /** Default: a new CQ of `cqSize` entries on the PD's context, closed with the connection. */
  sendCq?: CompletionQueue;
  recvCq?: CompletionQueue;
  cqSize?: number;
  cap?: QueuePairOptions['cap'];
  /** Address and route resolution, each. Default 5000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Bytes for the peer, carried by the CM message that connects (at most
   * 56 for `connect()`, 196 for `accept()`: the IB CM REQ and REP limits).
   * The peer reads them as `connection.peerPrivateData`.
   */
  privateData?: ArrayBufferView;
  /**
   * Retries on a missing ACK (0-7, default 7), sent in the CM REQ: both
   * sides' QPs use the connecting side's value. connect() only.
   */
  retryCount?: number;
  /**
   * Retries on receiver-not-ready (0-7, 7 = forever; default 7): the peer's
   * QP retries this often when this side has no receive posted (IB CM
   * REQ/REP semantics: each side's value goes to the other's QP).
   */
  rnrRetryCount?: number;
  /**
   * RDMA READs and atomics this side serves for the peer at once (0-255,
   * default 16; 255: the device's maximum, `maxQpRdAtom`, as librdmacm's
   * RDMA_MAX_RESP_RES). The accepting side takes the smaller of its own and
   * the connecting side's `initiatorDepth`; `connection.responderResources`
   * is the value agreed.
   */
  responderResources?: number;
  /**
   * RDMA READs and atomics this side has outstanding to the peer at once
   * (0-255, default 16; 255: the device's `maxQpInitRdAtom`). The accepting
   * side takes the smaller of its own and the connecting side's
   * `responderResources`; `connection.initiatorDepth` is the value agreed.
   */
  initiatorDepth?: number;
}

/** The IB CM's private data limits: REQ (connect) and REP (accept). */
const PRIVATE_DATA_MAX = { connect: 56, accept: 196 } as const;

/** `options.privateData` as the bytes the native call copies, checked against the message's limit. */
function privateDataOf(o: ConnectionOptions, which: keyof typeof PRIVATE_DATA_MAX, caller: Function): Uint8Array | undefined {
  const d = o.privateData;
  if (d === undefined) return undefined;
  if (!ArrayBuffer.isView(d)) throw invalidArgType('options.privateData', 'a Buffer, TypedArray or DataView', d, caller);
  // A copy: the view could be detached or resized before the call.
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(d.byteLength);
    bytes.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  } catch {
    throw invalidArgValue('options.privateData', d, 'must not be detached or out of bounds', caller);
  }
  if (bytes.byteLength > PRIVATE_DATA_MAX[which]) {
    throw outOfRange('options.privateData', `at most ${PRIVATE_DATA_MAX[which]} bytes (the CM ${which === 'connect' ? 'REQ' : 'REP'} message's private data)`, bytes.byteLength, caller);
  }
  return bytes;
}

/** @internal ERR_P2PDMA_RDMA_CM: an rdma_cm event that ends the connection attempt. */
export function cmError(ev: NativeCmEvent, what: string): CodedError & { event: string; status: number } {
  const status = ev.status < 0 ? ` (${sysError(-ev.status, 'rdma_cm').code})` : ev.status > 0 ? ` (status ${ev.status})` : '';
  const e = new Error(`${what}: ${ev.name}${status}`) as CodedError & { event: string; status: number };
  e.code = 'ERR_P2PDMA_RDMA_CM';
  e.event = ev.name;
  e.status = ev.status;
  return e;
}

/** @internal */
export function check(r: number, call: string): void {
  if (r < 0) throw sysError(-r, call);
}

/** @internal */
export function toEndpoint(o: unknown, caller: Function): CmEndpoint {
  validateObject(o, 'options', caller);
  const { address, port } = o as CmEndpoint;
  if (typeof address !== 'string') throw invalidArgType('options.address', 'of type string', address, caller);
  if (net.isIP(address) === 0) throw invalidArgValue('options.address', address, 'must be an IPv4 or IPv6 address', caller);
  if (typeof port !== 'number') throw invalidArgType('options.port', 'of type number', port, caller);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw outOfRange('options.port', 'an integer >= 0 && <= 65535', port, caller);
  return { address, port };
}

/** An event for an id, or the error that ended its channel. */
type CmHandler = (ev: NativeCmEvent | Error) => void;

/** Channels someone waits on (connect, accept, waitDisconnect): kept reachable. */
const busyChannels = new Set<Channel>();
// A channel collected while open: its native finalizer destroys it; this
// stops the Poller watching it.
const channelPollers = new FinalizationRegistry<Poller>((p) => p.close());

/** @internal */
export const gcWarning = new FinalizationRegistry<string>((what) => {
  process.emitWarning(`Closing ${what} on garbage collection`, {
    type: 'Warning',
    code: 'P2PDMA_GC_CLOSE',
    detail: `Its handle was garbage collected while open. Call close() on it, or declare it with 'using'.`,
  });
});

/** @internal One event channel and the ids on it, with a handler per id. */
export class Channel {
  readonly n: NativeCmChannel;
  readonly handlers = new Map<NativeCmId, CmHandler>();
  #poller: Poller;
  #closed = false;
  /** Why the channel failed (a Poller error, rdma_get_cm_event failing): no event comes any more. */
  error: Error | undefined;

  constructor() {
    try {
      this.n = new native.CmChannel();
    } catch (e) {
      const err = rdmaError(e) as SystemError;
      // librdmacm opens /dev/infiniband/rdma_cm (the rdma_ucm module).
      if (err.code === 'ENOENT') err.message += ': /dev/infiniband/rdma_cm is missing: the kernel has no RDMA/CM for userspace (CONFIG_INFINIBAND_ADDR_TRANS, module rdma_ucm)';
      throw err;
    }
    // The callback reaches the channel weakly: the watcher holds itself
    // while active, and must not hold an idle channel (and its ids) with it.
    const self = new WeakRef(this);
    const poller: Poller = new Poller(
      this.n.fd,
      (err) => {
        const ch = self.deref();
        if (ch === undefined) poller.close();
        else ch.#onReadable(err);
      },
      { ref: false },
    );
    this.#poller = poller;
    channelPollers.register(this, poller, this);
  }

  /** An id on this channel: RDMA_PS_TCP (RC), or `portSpace` RDMA_PS_UDP (UD, multicast). */
  id(handler: CmHandler, portSpace: number = C.RDMA_PS_TCP): NativeCmId {
    const id = new native.CmId(this.n, portSpace);
    this.handlers.set(id, handler);
    return id;
  }

  #refs = 0;

  /** Keeps the event loop alive while someone waits on the channel (counted). */
  ref(on: boolean): void {
    this.#refs += on ? 1 : -1;
    if (this.#refs !== (on ? 1 : 0)) return;
    if (on) {
      busyChannels.add(this);
      this.#poller.ref();
    } else {
      busyChannels.delete(this);
      this.#poller.unref();
    }
  }

  drop(id: NativeCmId): void {
    this.handlers.delete(id);
    id.close();
  }

  /** `ids`: close the ids still on it too (else the channel goes when they do). */
  close(ids = true): void {
    if (this.#closed) return;
    this.#closed = true;
    if (ids) {
      for (const id of this.handlers.keys()) id.close();
      this.handlers.clear();
    }
    channelPollers.unregister(this);
    const poller = this.#poller;
    this.n.onclose = () => poller.close();
    if (this.n.close() !== 1) poller.close();
  }

  #onReadable(err: Error | null): void {
    if (err !== null) {
      this.fail(err);
      return;
    }
    for (;;) {
      let ev: NativeCmEvent | undefined;
      try {
        ev = this.n.getEvent();
      } catch (e) {
        this.fail(rdmaError(e) as Error);
        return;
      }
      if (ev === undefined) return;
      // A connect request's id is new: its listener's handler takes it.
      const target = ev.name === 'RDMA_CM_EVENT_CONNECT_REQUEST' ? ev.listenId : ev.id;
      const h = target === undefined ? undefined : this.handlers.get(target);
      if (h !== undefined) h(ev);
      else if (ev.name === 'RDMA_CM_EVENT_CONNECT_REQUEST') ev.id?.close();
    }
  }

  /**
   * @internal (tests) The channel can deliver no more events: every id's
   * handler gets `err` (pending connect/accept/waitDisconnect reject).
   */
  fail(err: Error): void {
    if (this.error !== undefined) return;
    this.error = err;
    // Level-triggered: a channel that stays readable would call back forever.
    this.#poller.stop();
    for (const h of [...this.handlers.values()]) h(err);
  }
}

/** The Connection of a QP: kept alive while its QP is referenced. */
const connectionOf = new WeakMap<QueuePair, Connection>();

/** A connected RC queue pair and the rdma_cm id that carries it. */
export class Connection implements Disposable, AsyncDisposable {
  readonly qp: QueuePair;
  readonly local: CmEndpoint;
  readonly remote: CmEndpoint;
  /**
   * What the peer sent with its connect (as seen by `accept()`) or accept (as
   * seen by `connect()`), if anything. The IB CM pads it with zeros to the
   * message's size (56 or 196 bytes), so it may be longer than what was sent.
   */
  readonly peerPrivateData: Buffer | undefined;
  /**
   * The RDMA READs and atomics in flight agreed for this connection (see
   * ConnectionOptions): this side serves `responderResources` of the peer's
   * at once and has `initiatorDepth` of its own outstanding; the peer's
   * connection has the two the other way round.
   */
  readonly responderResources: number;
  readonly initiatorDepth: number;
  #id: NativeCmId;
  #channel: Channel;
  #ownsChannel: boolean;
  #closed = false;
  #disconnected = false;
  #error: Error | undefined;
  #onDisconnect: ((err?: Error) => void)[] = [];

  /** @internal */
  constructor(qp: QueuePair, id: NativeCmId, channel: Channel, ownsChannel: boolean, peerPrivateData?: Buffer, depths?: { responderResources: number; initiatorDepth: number }) {
    if (!(id instanceof native.CmId) || !(channel instanceof Channel)) throw illegalConstructor(new.target);
    this.qp = qp;
    this.peerPrivateData = peerPrivateData;
    this.responderResources = depths?.responderResources ?? RD_ATOMIC;
    this.initiatorDepth = depths?.initiatorDepth ?? RD_ATOMIC;
    this.#id = id;
    this.#channel = channel;
    this.#ownsChannel = ownsChannel;
    const info = id.info();
    this.local = info.local ?? { address: '', port: 0 };
    this.remote = info.remote ?? { address: '', port: 0 };
    connectionOf.set(qp, this);
    gcWarning.register(this, 'Connection', this);
    channel.handlers.set(id, (ev) => {
      if (ev instanceof Error) {
        this.#error = ev;
        for (const f of this.#onDisconnect.splice(0)) f(ev);
        return;
      }
      if (ev.name === 'RDMA_CM_EVENT_DISCONNECTED' || ev.name === 'RDMA_CM_EVENT_DEVICE_REMOVAL') {
        this.#disconnected = true;
        this.#flush();
        for (const f of this.#onDisconnect.splice(0)) f();
      }
    });
  }

  /**
   * The peer is gone: move our QP to ERR so that the device completes its
   * posted work requests as flushed (librdmacm does this only for a QP it
   * made, id->qp, which ours is not).
   */
  #flush(): void {
    if (this.qp.closed) return;
    const r = this.qp.native.modify({ qpState: C.IBV_QPS_ERR });
    if (r === 0) this.qp.setState('ERR');
  }

  get pd(): ProtectionDomain {
    return this.qp.pd;
  }

  /** @internal (tests) fails its event channel as an epoll or rdma_get_cm_event error would. */
  failChannel(err: Error): void {
    this.#channel.fail(err);
  }

  get context(): RdmaContext {
    return this.qp.pd.context;
  }

  /** Whether the peer disconnected (or the device went away). */
  get disconnected(): boolean {
    return this.#disconnected;
  }

  /**
   * Resolves when the peer disconnects (or this connection is closed);
   * rejects with the error when the event channel fails.
   */
  waitDisconnect(): Promise<void> {
    if (this.#disconnected || this.#closed) return Promise.resolve();
    if (this.#error !== undefined) return Promise.reject(this.#error);
    this.#channel.ref(true);
    return new Promise((resolve, reject) =>
      this.#onDisconnect.push((err) => {
        this.#channel.ref(false);
        if (err !== undefined) reject(err);
        else resolve();
      }),
    );
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Disconnects (the peer gets DISCONNECTED), closes the QP (its work in
   * flight is rejected as flushed) and what the connection made for itself.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    gcWarning.unregister(this);
    if (!this.#disconnected) this.#id.disconnect();
    this.qp.close();
    this.#channel.drop(this.#id);
    if (this.#ownsChannel) this.#channel.close();
    for (const f of this.#onDisconnect.splice(0)) f();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Closes and resolves once the QP is destroyed (its flushed work settled);
   * rejects if that teardown fails, as RDMA objects' async dispose does.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.qp[Symbol.asyncDispose]();
  }
}

/** @internal Builds the QP for a connection on `id`: the user's PD, or its own on the id's device. */
export function makeQp(id: NativeCmId, o: ConnectionOptions, caller: Function, type: 'RC' | 'UD' = 'RC'): QueuePair {
  const device = id.info().device;
  if (device === undefined) throw sysError(19, 'rdma_cm', {}, caller);
  let pd = o.pd;
  const own: { close(): void }[] = [];
  try {
    if (pd === undefined) {
      const ctx = Rdma.open(device);
      own.push(ctx);
      pd = ctx.allocPd();
      own.unshift(pd);
    } else if (pd.context.name !== device) {
      throw invalidArgValue('options.pd', `a PD of ${pd.context.name}`, `must be on ${device}, the device the address routes to`, caller);
    }
    let sendCq = o.sendCq;
    if (sendCq === undefined) {
      sendCq = pd.context.createCq(o.cqSize ?? 256);
      own.unshift(sendCq);
    }
    const qp = pd.createQp({ type, sendCq, recvCq: o.recvCq ?? sendCq, cap: o.cap });
    qp.owned.push(...own);
    return qp;
  } catch (e) {
    for (const x of own) x.close();
    throw e;
  }
}

/** @internal */
export function toOptions(options: unknown, caller: Function): ConnectionOptions & { timeoutMs: number } {
  validateObject(options, 'options', caller);
  const o = options as ConnectionOptions;
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 0x7fffffff) {
    throw outOfRange('options.timeoutMs', 'an integer >= 1 && <= 2147483647', timeoutMs, caller);
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', o.signal, caller);
  if (o.retryCount !== undefined) toInt('options.retryCount', o.retryCount, 7, caller);
  if (o.rnrRetryCount !== undefined) toInt('options.rnrRetryCount', o.rnrRetryCount, 7, caller);
  if (o.responderResources !== undefined) toInt('options.responderResources', o.responderResources, 255, caller);
  if (o.initiatorDepth !== undefined) toInt('options.initiatorDepth', o.initiatorDepth, 255, caller);
  return { ...o, timeoutMs };
}

/** What an active rdma_cm operation's steps see (activeCmOperation). */
export interface CmOperation<T> {
  /** The QP the operation made, closed with the channel if it fails. */
  qp?: QueuePair;
  /** Settles the promise once: `err` null resolves with `value`. */
  finish(err: unknown, value?: T): void;
  /** Runs one step of the operation; a throw fails it. */
  step(f: () => void): void;
}

/**
 * The frame of the operations that drive their own rdma_cm id on their own
 * channel (connect, UD resolve, multicast join): the channel keeps the event
 * loop alive while they run, the promise settles once, `signal` aborts, and a
 * failure closes the QP they made and the channel. `start` creates the id
 * and takes the first step.
 */
export function activeCmOperation<T>(ch: Channel, signal: AbortSignal | undefined, start: (op: CmOperation<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const op: CmOperation<T> = {
      finish(err, value) {
        if (done) return;
        done = true;
        signal?.removeEventListener('abort', onAbort);
        ch.ref(false);
        if (err !== null) {
          op.qp?.close();
          ch.close();
          reject(rdmaError(err));
        } else resolve(value!);
      },
      step(f) {
        try {
          f();
        } catch (e) {
          op.finish(e);
        }
      },
    };
    const onAbort = () => op.finish(abortError(signal!.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    ch.ref(true);
    op.step(() => start(op));
  });
}

/**
 * Connects to `address:port` through rdma_cm: resolve address and route,
 * a QP (see ConnectionOptions), connect, RTR/RTS. Rejects with
 * ERR_P2PDMA_RDMA_CM (REJECTED, UNREACHABLE, ADDR_ERROR...), an AbortError
 * on `signal`, or a SystemError.
 */
export function connect(options: CmEndpoint & ConnectionOptions): Promise<Connection> {
  let ep: CmEndpoint;
  let o: ConnectionOptions & { timeoutMs: number };
  let ch: Channel;
  let privateData: Uint8Array | undefined;
  try {
    ep = toEndpoint(options, connect);
    o = toOptions(options, connect);
    privateData = privateDataOf(o, 'connect', connect);
    if (o.signal?.aborted) throw abortError(o.signal.reason, connect);
    ch = new Channel();
  } catch (e) {
    return Promise.reject(rdmaError(e, connect));
  }
  return activeCmOperation<Connection>(ch, o.signal, (op) => {
    const id = ch.id((ev) =>
      op.step(() => {
        if (ev instanceof Error) {
          op.finish(ev);
          return;
        }
        switch (ev.name) {
          case 'RDMA_CM_EVENT_ADDR_RESOLVED':
            check(id.resolveRoute(o.timeoutMs), 'rdma_resolve_route');
            return;
          case 'RDMA_CM_EVENT_ROUTE_RESOLVED':
            op.qp = makeQp(id, o, connect);
            check(id.initQp(op.qp.native, C.IBV_QPS_INIT, QP_ACCESS), 'ibv_modify_qp');
            op.qp.setState('INIT');
            check(id.connect(op.qp.qpNum, o.responderResources ?? RD_ATOMIC, o.initiatorDepth ?? RD_ATOMIC, privateData, o.retryCount ?? 7, o.rnrRetryCount ?? 7), 'rdma_connect');
            return;
          case 'RDMA_CM_EVENT_CONNECT_RESPONSE': {
            // Our QP is not librdmacm's: move it ourselves, then establish.
            const qp = op.qp!;
            check(id.initQp(qp.native, C.IBV_QPS_RTR), 'ibv_modify_qp');
            qp.setState('RTR');
            check(id.initQp(qp.native, C.IBV_QPS_RTS), 'ibv_modify_qp');
            qp.setState('RTS');
            check(id.establish(), 'rdma_establish');
            // The event's values are the REP's, already from this side's view (the CM swaps them).
            op.finish(null, new Connection(qp, id, ch, true, ev.privateData, { responderResources: ev.responderResources, initiatorDepth: ev.initiatorDepth }));
            return;
          }
          case 'RDMA_CM_EVENT_ESTABLISHED':
            return;
          default:
            op.finish(cmError(ev, `rdma_cm connect to ${ep.address}:${ep.port} failed`));
        }
      }),
    );
    check(id.resolveAddr(ep.address, ep.port, o.timeoutMs), 'rdma_resolve_addr');
  });
}

/** listen()'s key to the Listener constructor. */
const LISTEN = Symbol('listen');

/** A listening rdma_cm id. */
export class Listener implements Disposable {
  /** Where it listens (the port the kernel chose when 0 was asked). */
  readonly address: string;
  readonly port: number;
  #ch: Channel;
  #id: NativeCmId;
  #queue: NativeCmEvent[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;

  /** @internal use listen() */
  constructor(ep: CmEndpoint, backlog: number, token?: symbol) {
    if (token !== LISTEN) throw illegalConstructor(new.target);
    this.#ch = new Channel();
    try {
      this.#id = this.#ch.id((ev) => {
        // The channel failed: the waiting accept()s see ch.error.
        if (ev instanceof Error) {
          for (const w of this.#waiters.splice(0)) w();
          return;
        }
        if (ev.name !== 'RDMA_CM_EVENT_CONNECT_REQUEST' || ev.id === undefined) return;
        this.#queue.push(ev);
        this.#waiters.shift()?.();
      });
      check(this.#id.bind(ep.address, ep.port), 'rdma_bind_addr');
      check(this.#id.listen(backlog), 'rdma_listen');
    } catch (e) {
      this.#ch.close();
      throw e;
    }
    const local = this.#id.info().local;
    this.address = local?.address ?? ep.address;
    this.port = local?.port ?? ep.port;
    gcWarning.register(this, `Listener (${this.address} port ${this.port})`, this);
  }

  /** @internal (tests) fails its event channel as an epoll or rdma_get_cm_event error would. */
  failChannel(err: Error): void {
    this.#ch.fail(err);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Accepts the next connect request (waiting for one): a QP (see
   * ConnectionOptions), RTR/RTS, rdma_accept, then ESTABLISHED.
   */
  accept(options: ConnectionOptions = {}): Promise<Connection> {
    let o: ConnectionOptions & { timeoutMs: number };
    let privateData: Uint8Array | undefined;
    try {
      o = toOptions(options, this.accept);
      privateData = privateDataOf(o, 'accept', this.accept);
      if (o.retryCount !== undefined) throw invalidArgValue('options.retryCount', o.retryCount, "is the connecting side's (the CM REQ carries it): pass it to connect()", this.accept);
      if (o.signal?.aborted) throw abortError(o.signal.reason, this.accept);
      if (this.#closed) throw closedError('Listener', this.accept);
      if (this.#ch.error !== undefined) throw this.#ch.error;
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<Connection>((resolve, reject) => {
      let done = false;
      let id: NativeCmId | undefined;
      let qp: QueuePair | undefined;
      const finish = (err: unknown, conn?: Connection) => {
        if (done) return;
        done = true;
        o.signal?.removeEventListener('abort', onAbort);
        this.#ch.ref(false);
        if (err !== null) {
          qp?.close();
          if (id !== undefined) {
            id.reject();
            this.#ch.drop(id);
          }
          reject(rdmaError(err));
        } else resolve(conn!);
      };
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((w) => w !== take);
        finish(abortError(o.signal!.reason));
      };
      const take = () => {
        if (done) return;
        if (this.#closed) {
          finish(closedError('Listener'));
          return;
        }
        if (this.#ch.error !== undefined) {
          finish(this.#ch.error);
          return;
        }
        const ev = this.#queue.shift()!;
        id = ev.id!;
        const cid = id;
        // The REQ's values, from this side's view (the kernel's CM swaps
        // them: the event's responderResources is the peer's initiator
        // depth), capped by this side's own, as librdmacm's rdma_accept does.
        const depths = {
          responderResources: Math.min(o.responderResources ?? RD_ATOMIC, ev.responderResources),
          initiatorDepth: Math.min(o.initiatorDepth ?? RD_ATOMIC, ev.initiatorDepth),
        };
        try {
          this.#ch.handlers.set(cid, (e) => {
            if (e instanceof Error) finish(e);
            else if (e.name === 'RDMA_CM_EVENT_ESTABLISHED') finish(null, new Connection(qp!, cid, this.#ch, false, ev.privateData, depths));
            else finish(cmError(e, 'rdma_cm accept failed'));
          });
          qp = makeQp(cid, o, this.accept);
          check(cid.initQp(qp.native, C.IBV_QPS_INIT, QP_ACCESS), 'ibv_modify_qp');
          check(cid.initQp(qp.native, C.IBV_QPS_RTR, depths.responderResources), 'ibv_modify_qp');
          check(cid.initQp(qp.native, C.IBV_QPS_RTS, depths.initiatorDepth), 'ibv_modify_qp');
          qp.setState('RTS');
          check(cid.accept(qp.qpNum, depths.responderResources, depths.initiatorDepth, privateData, 7, o.rnrRetryCount ?? 7), 'rdma_accept');
        } catch (e) {
          finish(e);
        }
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      this.#ch.ref(true);
      if (this.#queue.length > 0) take();
      else this.#waiters.push(take);
    });
  }

  /**
   * The connections as they come, each accepted with `options` (as
   * accept()'s, without `signal`): `for await (const conn of listener)`.
   * Ends when the listener is closed; a failed accept ends it with that
   * error. Breaking out of the loop leaves the listener open.
   */
  async *connections(options: Omit<ConnectionOptions, 'signal'> = {}): AsyncGenerator<Connection, void, undefined> {
    validateObject(options, 'options', this.connections);
    if ((options as ConnectionOptions).signal !== undefined) throw invalidArgValue('options.signal', (options as ConnectionOptions).signal, 'must be left out (close the listener, or break out of the loop)', this.connections);
    for (;;) {
      if (this.#closed) return;
      try {
        yield await this.accept(options);
      } catch (e) {
        if (this.#closed && (e as CodedError).code === 'ERR_P2PDMA_CLOSED') return;
        throw e;
      }
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<Connection, void, undefined> {
    return this.connections();
  }

  /** Stops listening; pending accept()s reject with ERR_P2PDMA_CLOSED (a connections() loop ends). Accepted connections stay up. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    gcWarning.unregister(this);
    for (const ev of this.#queue.splice(0)) {
      ev.id?.reject();
      ev.id?.close();
    }
    this.#ch.drop(this.#id);
    for (const w of this.#waiters.splice(0)) w();
    // The channel stays while accepted connections use it; it is closed
    // (deferred natively) once their ids are gone.
    this.#ch.close(false);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Listens on `address:port` (port 0: any; see `listener.port`). */
/** One answer of `Rdma.getAddrInfo()`. */
export interface RdmaAddrInfo {
  /** 'IPv4' or 'IPv6' (or 'IB'). */
  family: string;
  /** The local address to bind (with `passive`, or a route's source). */
  src?: CmEndpoint;
  /** The address to connect to. */
  dst?: CmEndpoint;
}

const FAMILY: Record<number, string> = { 2: 'IPv4', 10: 'IPv6', 27: 'IB' };

/**
 * rdma_getaddrinfo (RDMA_PS_TCP): the RDMA addresses for `node` (a host
 * name or address) and `service` (a port), as librdmacm resolves them;
 * `passive` for a listener's (`src`). Fails as Node's dns.lookup does:
 * code 'ENOTFOUND' (or 'EAI_AGAIN'...) with `hostname`, syscall
 * 'rdma_getaddrinfo'. Synchronous, like the library call: name
 * resolution may block.
 */
export function getAddrInfo(options: { node?: string; service?: string | number; passive?: boolean }): RdmaAddrInfo[] {
  validateObject(options, 'options', getAddrInfo);
  const { node, service, passive } = options;
  if (node !== undefined && typeof node !== 'string') throw invalidArgType('options.node', 'of type string', node, getAddrInfo);
  if (service !== undefined && typeof service !== 'string') toInt('options.service', service, 65535, getAddrInfo);
  if (passive !== undefined && typeof passive !== 'boolean') throw invalidArgType('options.passive', 'of type boolean', passive, getAddrInfo);
  if (node === undefined && service === undefined) throw invalidArgValue('options', options, 'must have node or service', getAddrInfo);
  let r: ReturnType<typeof native.rdmaGetAddrInfo>;
  try {
    r = native.rdmaGetAddrInfo(node ?? null, service === undefined ? null : String(service), passive === true);
  } catch (e) {
    throw rdmaError(e, getAddrInfo);
  }
  if (!Array.isArray(r)) {
    // EAI_NONAME (-2) and EAI_NODATA (-5) read as Node's ENOTFOUND; EAI_SYSTEM (-11) as its errno.
    if (r.gai === -11 && r.errno !== 0) throw sysError(r.errno, 'rdma_getaddrinfo', {}, getAddrInfo);
    const code = r.gai === -2 || r.gai === -5 ? 'ENOTFOUND' : r.gai === -3 ? 'EAI_AGAIN' : `EAI_${-r.gai}`;
    const e = new Error(`rdma_getaddrinfo ${code} ${node ?? ''}${service !== undefined ? `:${service}` : ''} (${r.message})`) as CodedError & { errno: number; syscall: string; hostname?: string };
    e.code = code;
    e.errno = r.gai;
    e.syscall = 'rdma_getaddrinfo';
    if (node !== undefined) e.hostname = node;
    Error.captureStackTrace(e, getAddrInfo);
    throw e;
  }
  return r.map((a) => ({ family: FAMILY[a.family] ?? String(a.family), ...(a.src ? { src: a.src } : {}), ...(a.dst ? { dst: a.dst } : {}) }));
}

export function listen(options: CmEndpoint & { backlog?: number }): Listener {
  const ep = toEndpoint(options, listen);
  const backlog = options.backlog ?? 16;
  if (typeof backlog !== 'number' || !Number.isInteger(backlog) || backlog < 1 || backlog > 65535) throw outOfRange('options.backlog', 'an integer >= 1 && <= 65535', backlog, listen);
  try {
    return new Listener(ep, backlog, LISTEN);
  } catch (e) {
    const err = rdmaError(e, listen) as Error;
    Error.captureStackTrace(err, listen);
    throw err;
  }
}
