/**
 * rdma_cm for UD (RDMA_PS_UDP): `connectUd()` resolves a listener's UD QP
 * (address, route, then SIDR: its QP number and Q_Key come back with the
 * route as an address handle), `listenUd()` answers those requests, and
 * `joinMulticast()` joins an IP multicast group and attaches a UD QP to it.
 *
 * As for RC (cm.ts), the QPs are ours, on our own device context: rdma_cm
 * gives them their INIT attributes (P_Key, port, Q_Key) through
 * rdma_init_qp_attr, and a multicast QP is attached here
 * (ibv_attach_mcast), since librdmacm attaches only a QP it made.
 */
import { abortError, closedError, illegalConstructor, invalidArgType, invalidArgValue, outOfRange, validateObject } from '../core/errors';
import { native, type NativeCmEvent, type NativeCmId } from '../core/native';
import { AddressHandle } from './ah';
import { activeCmOperation, Channel, check, type CmEndpoint, cmError, type ConnectionOptions, gcWarning, makeQp, toEndpoint, toOptions } from './cm';
import { rdmaError } from './errors';
import { gidString } from './gid';
import type { ProtectionDomain } from './pd';
import type { QueuePair } from './qp';

const C = native.rdmaConstants;
/** The QP number a multicast send goes to (IB_MULTICAST_QPN). */
const MULTICAST_QPN = 0xffffff;

/** Where UD sends go: spread it into a send's options, `qp.send(mr, n, { ...dest })`, or pass the fields. */
export interface UdDestination {
  readonly ah: AddressHandle;
  readonly remoteQpn: number;
  readonly remoteQkey: number;
}

/** Options of connectUd(), accept() and joinMulticast(): as RC's, less what UD has not. */
export type UdOptions = Pick<ConnectionOptions, 'pd' | 'sendCq' | 'recvCq' | 'cqSize' | 'cap' | 'timeoutMs' | 'signal'>;

const UD_KEYS = new Set(['pd', 'sendCq', 'recvCq', 'cqSize', 'cap', 'timeoutMs', 'signal', 'address', 'port', 'localAddress', 'backlog']);

function udOptions(options: unknown, caller: Function): UdOptions & { timeoutMs: number } {
  const o = toOptions(options, caller);
  const r = o as unknown as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (!UD_KEYS.has(k) && r[k] !== undefined) throw invalidArgValue(`options.${k}`, r[k], 'does not apply to UD (no connection: no private data, retries, RNR or READ/atomic depths)', caller);
  }
  return o;
}

/** The address handle of a UD event's peer or group, owned by the QP (closed after it). */
function ahOf(qp: QueuePair, ev: NativeCmEvent): UdDestination {
  const ud = ev.ud!;
  const pd = qp.pd;
  const ah = new AddressHandle(pd, new native.RdmaAh(pd.native, ud.ah), ud.ah.dgid === undefined ? '' : gidString(ud.ah.dgid));
  qp.owned.unshift(ah);
  return Object.freeze({ ah, remoteQpn: ud.qpNum, remoteQkey: ud.qkey });
}

/** A UD QP that rdma_cm set up: an endpoint of connectUd() or listenUd(). */
export class UdEndpoint implements Disposable, AsyncDisposable {
  /** UD, ready to send and receive (its Q_Key rdma_cm's). */
  readonly qp: QueuePair;
  readonly local: CmEndpoint;
  readonly remote: CmEndpoint;
  /**
   * connectUd(): the listener's QP, where this endpoint's sends go. A
   * listener's endpoint has none: it answers a message's sender through
   * `pd.createAhFromCompletion()` and the completion's `srcQp`.
   */
  readonly peer: UdDestination | undefined;
  #id: NativeCmId;
  #channel: Channel;
  #ownsChannel: boolean;
  #closed = false;

  /** @internal */
  constructor(qp: QueuePair, id: NativeCmId, channel: Channel, ownsChannel: boolean, peer: UdDestination | undefined) {
    if (!(id instanceof native.CmId) || !(channel instanceof Channel)) throw illegalConstructor(new.target);
    this.qp = qp;
    this.peer = peer;
    this.#id = id;
    this.#channel = channel;
    this.#ownsChannel = ownsChannel;
    const info = id.info();
    this.local = info.local ?? { address: '', port: 0 };
    this.remote = info.remote ?? { address: '', port: 0 };
    // No events matter once set up.
    channel.handlers.set(id, () => {});
    gcWarning.register(this, 'UdEndpoint', this);
  }

  get pd(): ProtectionDomain {
    return this.qp.pd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the QP (work in flight rejected as flushed), its address handle, the rdma_cm id and what the endpoint made. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    gcWarning.unregister(this);
    this.qp.close();
    this.#channel.drop(this.#id);
    if (this.#ownsChannel) this.#channel.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.qp[Symbol.asyncDispose]();
  }
}

/**
 * Resolves `address:port`'s UD listener through rdma_cm (address, route,
 * then a SIDR request): a UD QP of this side, ready, and `peer`, the
 * listener's QP (address handle, QP number, Q_Key). Rejects with
 * ERR_P2PDMA_RDMA_CM (UNREACHABLE when nobody listens), an AbortError on
 * `signal`, or a SystemError.
 */
export function connectUd(options: CmEndpoint & UdOptions): Promise<UdEndpoint> {
  let ep: CmEndpoint;
  let o: UdOptions & { timeoutMs: number };
  let ch: Channel;
  try {
    ep = toEndpoint(options, connectUd);
    o = udOptions(options, connectUd);
    if (o.signal?.aborted) throw abortError(o.signal.reason, connectUd);
    ch = new Channel();
  } catch (e) {
    return Promise.reject(rdmaError(e, connectUd));
  }
  return activeCmOperation<UdEndpoint>(ch, o.signal, (op) => {
    const id = ch.id((ev) =>
      op.step(() => {
        if (ev instanceof Error) return op.finish(ev);
        switch (ev.name) {
          case 'RDMA_CM_EVENT_ADDR_RESOLVED':
            check(id.resolveRoute(o.timeoutMs), 'rdma_resolve_route');
            return;
          case 'RDMA_CM_EVENT_ROUTE_RESOLVED':
            op.qp = makeQp(id, o, connectUd, 'UD');
            check(id.initQp(op.qp.native, C.IBV_QPS_INIT), 'ibv_modify_qp');
            op.qp.readyUd(connectUd);
            check(id.connect(op.qp.qpNum, 0, 0), 'rdma_connect');
            return;
          case 'RDMA_CM_EVENT_ESTABLISHED':
            if (ev.ud === undefined) throw cmError(ev, `rdma_cm UD resolve of ${ep.address}:${ep.port}: no UD parameters`);
            op.finish(null, new UdEndpoint(op.qp!, id, ch, true, ahOf(op.qp!, ev)));
            return;
          default:
            op.finish(cmError(ev, `rdma_cm UD resolve of ${ep.address}:${ep.port} failed`));
        }
      }),
      C.RDMA_PS_UDP,
    );
    check(id.resolveAddr(ep.address, ep.port, o.timeoutMs), 'rdma_resolve_addr');
  });
}

const LISTEN = Symbol('listenUd');

/** A listening RDMA_PS_UDP id: each SIDR request gets a UD QP of its own. */
export class UdListener implements Disposable {
  readonly address: string;
  readonly port: number;
  #ch: Channel;
  #id: NativeCmId;
  #queue: NativeCmEvent[] = [];
  #waiters: (() => void)[] = [];
  #closed = false;

  /** @internal use listenUd() */
  constructor(ep: CmEndpoint, backlog: number, token?: symbol) {
    if (token !== LISTEN) throw illegalConstructor(new.target);
    this.#ch = new Channel();
    try {
      this.#id = this.#ch.id((ev) => {
        if (ev instanceof Error) {
          for (const w of this.#waiters.splice(0)) w();
          return;
        }
        if (ev.name !== 'RDMA_CM_EVENT_CONNECT_REQUEST' || ev.id === undefined) return;
        this.#queue.push(ev);
        this.#waiters.shift()?.();
      }, C.RDMA_PS_UDP);
      check(this.#id.bind(ep.address, ep.port), 'rdma_bind_addr');
      check(this.#id.listen(backlog), 'rdma_listen');
    } catch (e) {
      this.#ch.close();
      throw e;
    }
    const local = this.#id.info().local;
    this.address = local?.address ?? ep.address;
    this.port = local?.port ?? ep.port;
    gcWarning.register(this, `UdListener (${this.address} port ${this.port})`, this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Answers the next SIDR request (waiting for one) with a new UD QP (see UdOptions). */
  accept(options: UdOptions = {}): Promise<UdEndpoint> {
    let o: UdOptions & { timeoutMs: number };
    try {
      o = udOptions(options, this.accept);
      if (o.signal?.aborted) throw abortError(o.signal.reason, this.accept);
      if (this.#closed) throw closedError('UdListener', this.accept);
      if (this.#ch.error !== undefined) throw this.#ch.error;
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<UdEndpoint>((resolve, reject) => {
      let done = false;
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((w) => w !== take);
        if (done) return;
        done = true;
        this.#ch.ref(false);
        reject(abortError(o.signal!.reason));
      };
      const take = () => {
        if (done) return;
        done = true;
        o.signal?.removeEventListener('abort', onAbort);
        this.#ch.ref(false);
        if (this.#closed) return reject(closedError('UdListener'));
        if (this.#ch.error !== undefined) return reject(this.#ch.error);
        const ev = this.#queue.shift()!;
        const id = ev.id!;
        let qp: QueuePair | undefined;
        try {
          this.#ch.handlers.set(id, () => {});
          qp = makeQp(id, o, this.accept, 'UD');
          check(id.initQp(qp.native, C.IBV_QPS_INIT), 'ibv_modify_qp');
          qp.readyUd(this.accept);
          // The SIDR reply carries our QP number and Q_Key; no ESTABLISHED follows here.
          check(id.accept(qp.qpNum, 0, 0), 'rdma_accept');
          resolve(new UdEndpoint(qp, id, this.#ch, false, undefined));
        } catch (e) {
          qp?.close();
          id.reject();
          this.#ch.drop(id);
          reject(rdmaError(e));
        }
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      this.#ch.ref(true);
      if (this.#queue.length > 0) take();
      else this.#waiters.push(take);
    });
  }

  /** The endpoints as requests come (options as accept()'s, without signal); ends when the listener closes. */
  async *endpoints(options: Omit<UdOptions, 'signal'> = {}): AsyncGenerator<UdEndpoint, void, undefined> {
    for (;;) {
      if (this.#closed) return;
      try {
        yield await this.accept(options);
      } catch (e) {
        if (this.#closed && (e as { code?: string }).code === 'ERR_P2PDMA_CLOSED') return;
        throw e;
      }
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<UdEndpoint, void, undefined> {
    return this.endpoints();
  }

  /** Stops listening; pending accept()s reject with ERR_P2PDMA_CLOSED. Endpoints stay up. */
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
    this.#ch.close(false);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Listens for UD resolves (connectUd()) on `address:port` (port 0: any; see `listener.port`). */
export function listenUd(options: CmEndpoint & { backlog?: number }): UdListener {
  const ep = toEndpoint(options, listenUd);
  const backlog = options.backlog ?? 16;
  if (typeof backlog !== 'number' || !Number.isInteger(backlog) || backlog < 1 || backlog > 65535) throw outOfRange('options.backlog', 'an integer >= 1 && <= 65535', backlog, listenUd);
  try {
    return new UdListener(ep, backlog, LISTEN);
  } catch (e) {
    const err = rdmaError(e, listenUd) as Error;
    Error.captureStackTrace(err, listenUd);
    throw err;
  }
}

/** A joined multicast group: a UD QP attached to it, and where sends to the group go. */
export class MulticastGroup implements Disposable {
  /** The group's IP address. */
  readonly address: string;
  /** UD, ready, attached: its receives take the group's messages (its Q_Key the group's). */
  readonly qp: QueuePair;
  /** Sends to the group (any UD QP of this PD): QP number 0xffffff, the group's Q_Key. */
  readonly dest: UdDestination;
  /** The group's GID (its IP address as RoCE maps it). */
  readonly gid: string;
  #mgid: Buffer;
  #mlid: number;
  #id: NativeCmId;
  #channel: Channel;
  #left = false;

  /** @internal */
  constructor(address: string, qp: QueuePair, id: NativeCmId, channel: Channel, ev: NativeCmEvent) {
    if (!(id instanceof native.CmId) || !(channel instanceof Channel)) throw illegalConstructor(new.target);
    this.address = address;
    this.qp = qp;
    this.#id = id;
    this.#channel = channel;
    this.#mgid = ev.ud!.ah.dgid!;
    this.#mlid = ev.ud!.ah.dlid;
    this.gid = gidString(this.#mgid);
    this.dest = ahOf(qp, ev);
    gcWarning.register(this, `MulticastGroup (${address})`, this);
  }

  get pd(): ProtectionDomain {
    return this.qp.pd;
  }

  /** Whether leave() (or close()) ran. */
  get left(): boolean {
    return this.#left;
  }

  /**
   * Detaches the QP and leaves the group (rdma_leave_multicast); the QP
   * stays open (its receives wait for unicast UD messages) until close().
   */
  leave(): void {
    if (this.#left) return;
    this.#left = true;
    gcWarning.unregister(this);
    if (!this.qp.closed) this.qp.native.detachMcast(this.#mgid, this.#mlid);
    this.#id.leaveMulticast(this.address);
    this.#channel.close();
  }

  /** Leaves, and closes the QP and what the join made for it. */
  close(): void {
    this.leave();
    this.qp.close();
  }

  /** Whether close() ran (leave() alone leaves the QP open). */
  get closed(): boolean {
    return this.#left && this.qp.closed;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.qp[Symbol.asyncDispose]();
  }
}

/**
 * Joins the IP multicast group `address` on the RDMA device that
 * `localAddress` is on (rdma_bind_addr, rdma_join_multicast), and attaches
 * a new UD QP to it with the group's Q_Key. Rejects with
 * ERR_P2PDMA_RDMA_CM (MULTICAST_ERROR), an AbortError, or a SystemError.
 */
export function joinMulticast(options: { address: string; localAddress: string } & UdOptions): Promise<MulticastGroup> {
  let group: CmEndpoint;
  let o: UdOptions & { timeoutMs: number };
  let ch: Channel;
  try {
    validateObject(options, 'options', joinMulticast);
    group = toEndpoint({ address: options.address, port: 0 }, joinMulticast);
    if (typeof options.localAddress !== 'string') throw invalidArgType('options.localAddress', 'of type string', options.localAddress, joinMulticast);
    toEndpoint({ address: options.localAddress, port: 0 }, joinMulticast);
    if (!isMulticast(group.address)) throw invalidArgValue('options.address', group.address, 'must be a multicast address (224.0.0.0/4 or ff00::/8)', joinMulticast);
    o = udOptions(options, joinMulticast);
    if (o.signal?.aborted) throw abortError(o.signal.reason, joinMulticast);
    ch = new Channel();
  } catch (e) {
    return Promise.reject(rdmaError(e, joinMulticast));
  }
  return activeCmOperation<MulticastGroup>(ch, o.signal, (op) => {
    const id = ch.id((ev) =>
      op.step(() => {
        if (ev instanceof Error) return op.finish(ev);
        if (ev.name !== 'RDMA_CM_EVENT_MULTICAST_JOIN' || ev.ud === undefined) return op.finish(cmError(ev, `rdma_cm join of ${group.address} failed`));
        op.qp!.activate({ portNum: ev.ud.ah.portNum || 1, qkey: ev.ud.qkey });
        check(op.qp!.native.attachMcast(ev.ud.ah.dgid!, ev.ud.ah.dlid), 'ibv_attach_mcast');
        op.finish(null, new MulticastGroup(group.address, op.qp!, id, ch, ev));
      }),
      C.RDMA_PS_UDP,
    );
    check(id.bind(options.localAddress, 0), 'rdma_bind_addr');
    op.qp = makeQp(id, o, joinMulticast, 'UD');
    check(id.joinMulticast(group.address), 'rdma_join_multicast');
  });
}

function isMulticast(a: string): boolean {
  if (a.includes(':')) return /^ff/i.test(a);
  const first = Number(a.split('.')[0]);
  return first >= 224 && first <= 239;
}
