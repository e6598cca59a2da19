/** RDMA devices: the list and their ports (sysfs), an open device (RdmaContext), and the Rdma entry points. */
import * as fs from 'node:fs';

import { abortError, closedError, illegalConstructor, invalidArgType, invalidArgValue, outOfRange, type SystemError, validateObject } from '../core/errors';
import { Poller } from '../core/poll';
import { native, type NativeResource } from '../core/native';
import { CompletionQueue } from './cq';
import { call, libraryError, rdmaError } from './errors';
import { gidString } from './gid';
import { ProtectionDomain } from './pd';
import { createQp, QueuePair, type QueuePairOptions } from './qp';
import type { SharedReceiveQueue } from './srq';
import { RdmaResource } from './resource';
import { toInt } from './validate';

/** A port of an RDMA device, from sysfs. */
export interface RdmaPort {
  port: number;
  /** 'ACTIVE', 'DOWN', ... (the kernel's words). */
  state: string;
  /** sysfs' own text ('4: ACTIVE'), as `rdma link` and ibv_devinfo print it; undefined when unreadable. */
  stateText?: string;
  /** 'InfiniBand' or 'Ethernet' (RoCE). */
  linkLayer: string;
  /** Non-zero GID table entries. */
  gids: RdmaGid[];
}

export interface RdmaGid {
  index: number;
  /** `fe80:0000:...` as the kernel prints it. */
  gid: string;
  /** 'RoCE v2', 'IB/RoCE v1' or undefined when the kernel does not say. */
  type?: string;
  /** The net device it belongs to (RoCE). */
  netdev?: string;
}

export interface RdmaDeviceInfo {
  name: string;
  /** Node GUID as `xxxx:xxxx:xxxx:xxxx`. */
  guid: string;
  /** 'CA', 'RNIC', ... */
  nodeType: string;
  ports: RdmaPort[];
}

const NODE_TYPE: Record<number, string> = { 1: 'CA', 2: 'SWITCH', 3: 'ROUTER', 4: 'RNIC', 5: 'USNIC', 6: 'USNIC_UDP', 7: 'UNSPECIFIED' };
const ZERO_GID = /^[0:]+$/;
// enum ibv_gid_type, named as sysfs' gid_attrs/types names them.
const GID_TYPE: Record<number, string> = { 0: 'IB/RoCE v1', 1: 'IB/RoCE v1', 2: 'RoCE v2' };

function readOr(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Unset GID entries in a row after which the rest of a port's table is taken
 * as unset: the kernel's GID cache fills the table from index 0 and reuses
 * the lowest free slot. rxe's table has 1024 entries, and reading them all
 * cost 10 s in the DEBUG guest.
 */
const GID_SCAN_GAP = 16;

/** Each port of RDMA device `name` from sysfs: state, link layer and the set GID entries. */
export function ports(name: string, sysDir: string): RdmaPort[] {
  const dir = `${sysDir}/class/infiniband/${name}/ports`;
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return entries
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0)
    .sort((a, b) => a - b)
    .map((port) => {
      const p = `${dir}/${port}`;
      const gids: RdmaGid[] = [];
      let names: string[] = [];
      try {
        names = fs.readdirSync(`${p}/gids`);
      } catch {
        // no GID table
      }
      let unset = 0;
      for (const i of names.map(Number).filter(Number.isInteger).sort((a, b) => a - b)) {
        const gid = readOr(`${p}/gids/${i}`);
        if (gid === undefined || ZERO_GID.test(gid)) {
          if (++unset === GID_SCAN_GAP) break;
          continue;
        }
        unset = 0;
        const type = readOr(`${p}/gid_attrs/types/${i}`);
        const netdev = readOr(`${p}/gid_attrs/ndevs/${i}`);
        gids.push({ index: i, gid, ...(type ? { type } : {}), ...(netdev ? { netdev } : {}) });
      }
      // "4: ACTIVE": kept as read for machineInfo(), stripped for state.
      const stateText = readOr(`${p}/state`);
      const state = stateText?.replace(/^\d+:\s*/, '') ?? 'UNKNOWN';
      return { port, state, ...(stateText !== undefined ? { stateText } : {}), linkLayer: readOr(`${p}/link_layer`) ?? 'unknown', gids };
    });
}

export interface RdmaPortAttributes {
  port: number;
  /** 'ACTIVE', 'DOWN', ... */
  state: string;
  /** Active MTU in bytes. */
  activeMtu: number;
  maxMtu: number;
  gidTblLen: number;
  lid: number;
  linkLayer: 'InfiniBand' | 'Ethernet' | 'unspecified';
}

export interface RdmaDeviceAttributes {
  name: string;
  fwVer: string;
  nodeGuid: bigint;
  maxMrSize: bigint;
  maxQp: number;
  maxQpWr: number;
  maxSge: number;
  maxCq: number;
  maxCqe: number;
  maxMr: number;
  maxPd: number;
  maxQpRdAtom: number;
  maxQpInitRdAtom: number;
  vendorId: number;
  vendorPartId: number;
  ports: RdmaPortAttributes[];
}

/**
 * What ibv_query_device_ex adds to `query()` (`ctx.queryEx()`). Masks are
 * the C enums' bits, as pyverbs' `query_device_ex()` gives them: e.g.
 * `odpCaps.generalCaps` IBV_ODP_SUPPORT (1n), `odpCaps.rcCaps`
 * IBV_ODP_SUPPORT_SEND (1) | _RECV | _WRITE | _READ | _ATOMIC | _SRQ_RECV,
 * `rawPacketCaps` IBV_RAW_PACKET_CAP_*, `deviceCapFlagsEx` IBV_DEVICE_*
 * (the 64-bit ones); 64-bit fields are bigints.
 */
export interface RdmaDeviceAttributesEx {
  compMask: number;
  /** On-demand paging: general and per transport (RC, UC, UD, XRC). All zero: no ODP. */
  odpCaps: { generalCaps: bigint; rcCaps: number; ucCaps: number; udCaps: number; xrcCaps: number };
  /** The bits of a completion's timestamp; 0: the device gives none. */
  completionTimestampMask: bigint;
  /** The clock of those timestamps, in kHz; 0: none. */
  hcaCoreClock: bigint;
  deviceCapFlagsEx: bigint;
  tsoCaps: { maxTso: number; supportedQpts: number };
  rssCaps: { supportedQpts: number; maxRwqIndirectionTables: number; maxRwqIndirectionTableSize: number; rxHashFieldsMask: bigint; rxHashFunction: number };
  maxWqTypeRq: number;
  packetPacingCaps: { qpRateLimitMin: number; qpRateLimitMax: number; supportedQpts: number };
  rawPacketCaps: number;
  tmCaps: { maxRndvHdrSize: number; maxNumTags: number; flags: number; maxOps: number; maxSge: number };
  cqModCaps: { maxCqCount: number; maxCqPeriod: number };
  /** Device memory (ibv_alloc_dm) the device has, in bytes; 0n: none. */
  maxDmSize: bigint;
  pciAtomicCaps: { fetchAdd: number; swap: number; compareSwap: number };
  physPortCntEx: number;
}

/**
 * An asynchronous event of a device (ibv_get_async_event), already acked:
 * a port going down or up, a QP or CQ in error, an SRQ below its limit.
 */
export interface RdmaAsyncEvent {
  /** 'IBV_EVENT_PORT_ACTIVE', 'IBV_EVENT_SRQ_LIMIT_REACHED', ... */
  type: string;
  /** ibv_event_type_str(): 'port active', ... */
  description: string;
  /** Port events. */
  portNum?: number;
  /** QP events: its number, and the QueuePair while this process holds it. */
  qpNum?: number;
  qp?: QueuePair;
  /** SRQ events. */
  srq?: SharedReceiveQueue;
  /** CQ events. */
  cq?: CompletionQueue;
}

// enum ibv_event_type, in order.
const EVENT_TYPE = [
  'IBV_EVENT_CQ_ERR', 'IBV_EVENT_QP_FATAL', 'IBV_EVENT_QP_REQ_ERR', 'IBV_EVENT_QP_ACCESS_ERR', 'IBV_EVENT_COMM_EST',
  'IBV_EVENT_SQ_DRAINED', 'IBV_EVENT_PATH_MIG', 'IBV_EVENT_PATH_MIG_ERR', 'IBV_EVENT_DEVICE_FATAL', 'IBV_EVENT_PORT_ACTIVE',
  'IBV_EVENT_PORT_ERR', 'IBV_EVENT_LID_CHANGE', 'IBV_EVENT_PKEY_CHANGE', 'IBV_EVENT_SM_CHANGE', 'IBV_EVENT_SRQ_ERR',
  'IBV_EVENT_SRQ_LIMIT_REACHED', 'IBV_EVENT_QP_LAST_WQE_REACHED', 'IBV_EVENT_CLIENT_REREGISTER', 'IBV_EVENT_GID_CHANGE', 'IBV_EVENT_WQ_FATAL',
] as const;
/** Events kept for a later events() reader; older ones are dropped past this. */
const EVENT_BACKLOG = 256;
// A context collected while open: the native finalizer closes it; this
// stops the Poller watching its async fd (as lib/rdma/cq.ts does).
const eventPollers = new FinalizationRegistry<Poller>((p) => p.close());

const PORT_STATE = ['NOP', 'DOWN', 'INIT', 'ARMED', 'ACTIVE', 'ACTIVE_DEFER'];
const C = native.rdmaConstants;
const MTU_BYTES = [0, 256, 512, 1024, 2048, 4096];
const LINK_LAYER = ['unspecified', 'InfiniBand', 'Ethernet'] as const;

/** An open RDMA device (ibv_context). */
export class RdmaContext extends RdmaResource {
  readonly name: string;
  /** @internal */
  declare readonly native: NativeResource & {
    query(): Omit<RdmaDeviceAttributes, 'name' | 'ports'> & { physPortCnt: number };
    queryEx(): RdmaDeviceAttributesEx;
    queryPort(port: number): { state: number; activeMtu: number; maxMtu: number; gidTblLen: number; lid: number; linkLayer: number };
    queryGid(port: number, index: number): Buffer;
    queryGidTable(maxEntries: number): { index: number; port: number; gid: Buffer; type: number }[] | null;
    readonly asyncFd: number;
    getAsyncEvent(): { type: number; name: string; portNum?: number; qpNum?: number; cqHandle?: number; srqHandle?: number } | undefined;
  };
  #invalidateBits: number | undefined;

  /**
   * @internal the wc_flags bits that say a receive completion carries an
   * invalidated rkey: IBV_WC_WITH_INV, and on rxe also bit 2. rxe (6.12)
   * writes the kernel's IB_WC_WITH_INVALIDATE (1 << 2) into the user CQ,
   * which libibverbs names IBV_WC_IP_CSUM_OK; rxe sets no checksum bit
   * for userspace otherwise. rxe's vendor id is 0xffffff (RXE_VENDOR_ID).
   */
  get invalidateBits(): number {
    if (this.#invalidateBits === undefined) {
      let rxe = false;
      try {
        rxe = this.native.query().vendorId === 0xffffff;
      } catch {
        // closed: the plain bit
      }
      this.#invalidateBits = C.IBV_WC_WITH_INV | (rxe ? C.IBV_WC_IP_CSUM_OK : 0);
    }
    return this.#invalidateBits;
  }

  /** What async events name, by QP number and kernel handle; weakly. */
  readonly #qps = new Map<number, WeakRef<QueuePair>>();
  readonly #srqs = new Map<number, WeakRef<SharedReceiveQueue>>();
  readonly #cqs = new Map<number, WeakRef<CompletionQueue>>();
  #eventPoller: Poller | undefined;
  readonly #backlog: RdmaAsyncEvent[] = [];
  readonly #waiters: { resolve(e: RdmaAsyncEvent | null): void }[] = [];

  /** @internal use Rdma.open() */
  constructor(name: string) {
    if (typeof name !== 'string') throw illegalConstructor(new.target);
    super(call(Rdma.open, () => new native.RdmaContext(name)));
    this.name = name;
  }

  /** ibv_query_device and ibv_query_port of every port. */
  query(): RdmaDeviceAttributes {
    this.check(this.query);
    const d = call(this.query, () => this.native.query());
    const { physPortCnt, ...attrs } = d;
    const ports: RdmaPortAttributes[] = [];
    for (let port = 1; port <= physPortCnt; port++) ports.push(this.queryPort(port));
    return { name: this.name, ...attrs, ports };
  }

  /**
   * ibv_query_device_ex: what it adds to `query()` (on-demand paging,
   * completion timestamps, TSO, RSS, device memory...). EOPNOTSUPP
   * (syscall 'ibv_query_device_ex') where the provider has no extended query.
   */
  queryEx(): RdmaDeviceAttributesEx {
    this.check(this.queryEx);
    return call(this.queryEx, () => this.native.queryEx());
  }

  /** ibv_query_port. */
  queryPort(port = 1): RdmaPortAttributes {
    toInt('port', port, 255, this.queryPort);
    this.check(this.queryPort);
    const p = call(this.queryPort, () => this.native.queryPort(port));
    return {
      port,
      state: PORT_STATE[p.state] ?? String(p.state),
      activeMtu: MTU_BYTES[p.activeMtu] ?? 0,
      maxMtu: MTU_BYTES[p.maxMtu] ?? 0,
      gidTblLen: p.gidTblLen,
      lid: p.lid,
      linkLayer: LINK_LAYER[p.linkLayer] ?? 'unspecified',
    };
  }

  /** A GID table entry (16 bytes). */
  queryGid(port: number, index: number): Buffer {
    toInt('port', port, 255, this.queryGid);
    toInt('index', index, 0x7fffffff, this.queryGid);
    this.check(this.queryGid);
    return call(this.queryGid, () => this.native.queryGid(port, index));
  }

  /**
   * The port's valid GID table entries: one ibv_query_gid_table() call, or
   * sysfs where libibverbs predates it (rdma-core < 31). Without `netdev`
   * names, which sysfs has (Rdma.devices()).
   */
  gids(port = 1): RdmaGid[] {
    toInt('port', port, 255, this.gids);
    this.check(this.gids);
    const max = this.queryPort(port).gidTblLen;
    const table = max === 0 ? [] : call(this.gids, () => this.native.queryGidTable(max));
    if (table === null) return ports(this.name, '/sys').find((p) => p.port === port)?.gids ?? [];
    return table
      .filter((e) => e.port === port)
      .map((e) => ({ index: e.index, gid: gidString(e.gid), ...(GID_TYPE[e.type] ? { type: GID_TYPE[e.type] } : {}) }))
      .sort((a, b) => a.index - b.index);
  }

  /** ibv_alloc_pd. */
  allocPd(): ProtectionDomain {
    this.check(this.allocPd);
    return new ProtectionDomain(this, call(this.allocPd, () => new native.RdmaPd(this.native)));
  }

  /**
   * A completion queue of at least `size` entries with its own completion
   * channel. `{ busyPoll: true }` polls it from the event loop instead of
   * waiting for the channel: lower latency, one core burnt while work is
   * outstanding (benchmarks, and devices that never signal the channel:
   * QEMU's pvrdma raises no completion interrupt).
   * `{ solicitedOnly: true }` arms the channel for solicited completions
   * only (ibv_req_notify_cq solicited_only; a peer's `{ solicited: true }`
   * SEND or WRITE with immediate, and errors): the event loop wakes once
   * per solicited message and then settles everything the CQ holds, so a
   * receive of an unsolicited message waits for the next solicited one.
   */
  createCq(size: number, options: { busyPoll?: boolean; solicitedOnly?: boolean } = {}): CompletionQueue {
    toInt('size', size, 0x7fffffff, this.createCq);
    if (size === 0) throw outOfRange('size', '>= 1', size, this.createCq);
    validateObject(options, 'options', this.createCq);
    if (options.busyPoll !== undefined && typeof options.busyPoll !== 'boolean') throw invalidArgType('options.busyPoll', 'of type boolean', options.busyPoll, this.createCq);
    const solicited = options.solicitedOnly;
    if (solicited !== undefined && typeof solicited !== 'boolean') throw invalidArgType('options.solicitedOnly', 'of type boolean', solicited, this.createCq);
    if (solicited && options.busyPoll) throw invalidArgValue('options.solicitedOnly', solicited, 'needs the completion channel: not with busyPoll', this.createCq);
    this.check(this.createCq);
    const cq = new CompletionQueue(this, call(this.createCq, () => new native.RdmaCq(this.native, size, solicited === true)), options.busyPoll === true, solicited === true);
    this.track(cq);
    return cq;
  }

  /** @internal makes an object nameable by async events. */
  track(o: QueuePair | SharedReceiveQueue | CompletionQueue): void {
    // Numbers are reused after close: drop the collected now and then.
    for (const m of [this.#qps, this.#srqs, this.#cqs] as Map<number, WeakRef<object>>[]) {
      if (m.size < 1024) continue;
      for (const [k, r] of m) if (r.deref() === undefined) m.delete(k);
    }
    if (o instanceof QueuePair) this.#qps.set(o.qpNum, new WeakRef(o));
    else if (o instanceof CompletionQueue) this.#cqs.set(o.native.handle, new WeakRef(o));
    else this.#srqs.set(o.handle, new WeakRef(o));
  }

  /**
   * The device's asynchronous events (ibv_get_async_event, each acked at
   * once), as an async iterator that ends when the context closes. Read on
   * the event loop through the context's async fd (no thread). Events from
   * the first call on are kept (the last 256) until read; the kernel keeps
   * those before. `signal` ends the iteration with an AbortError.
   */
  async *events(options: { signal?: AbortSignal } = {}): AsyncGenerator<RdmaAsyncEvent, void, undefined> {
    validateObject(options, 'options', this.events);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, this.events);
    for (;;) {
      const e = await this.#next(signal, this.events);
      if (e === null) return;
      yield e;
    }
  }

  /** The next asynchronous event (see events()); rejects with ERR_P2PDMA_CLOSED when the context closes first. */
  nextEvent(options: { signal?: AbortSignal } = {}): Promise<RdmaAsyncEvent> {
    try {
      validateObject(options, 'options', this.nextEvent);
      const signal = options.signal;
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, this.nextEvent);
      return this.#next(signal, this.nextEvent).then((e) => {
        if (e === null) throw closedError(this.describe(), this.nextEvent);
        return e;
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #next(signal: AbortSignal | undefined, caller: Function): Promise<RdmaAsyncEvent | null> {
    if (signal?.aborted) return Promise.reject(abortError(signal.reason, caller));
    if (this.closed) return Promise.resolve(null);
    this.#watch();
    this.#readEvents();
    if (this.#backlog.length > 0) return Promise.resolve(this.#backlog.shift()!);
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (e: RdmaAsyncEvent | null) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(e);
        },
      };
      // An aborted wait takes no event: the next one stays for the next reader.
      const onAbort = () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
        if (this.#waiters.length === 0) this.#eventPoller?.unref();
        reject(abortError(signal!.reason, caller));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(w);
      this.#eventPoller!.ref();
    });
  }

  #watch(): void {
    if (this.#eventPoller !== undefined) return;
    // Ref'd only while someone waits: an idle context does not keep the process alive.
    const self = new WeakRef(this);
    const poller: Poller = new Poller(this.native.asyncFd, () => {
      const ctx = self.deref();
      if (ctx === undefined) poller.close();
      else ctx.#readEvents();
    }, { ref: false });
    this.#eventPoller = poller;
    eventPollers.register(this, poller, this);
  }

  #readEvents(): void {
    for (;;) {
      let raw: ReturnType<RdmaContext['native']['getAsyncEvent']>;
      try {
        raw = this.native.getAsyncEvent();
      } catch {
        return;
      }
      if (raw === undefined) return;
      const e: RdmaAsyncEvent = { type: EVENT_TYPE[raw.type] ?? `IBV_EVENT_${raw.type}`, description: raw.name };
      if (raw.portNum !== undefined) e.portNum = raw.portNum;
      if (raw.qpNum !== undefined) {
        e.qpNum = raw.qpNum;
        const qp = this.#qps.get(raw.qpNum)?.deref();
        if (qp !== undefined) e.qp = qp;
      }
      if (raw.srqHandle !== undefined) {
        const srq = this.#srqs.get(raw.srqHandle)?.deref();
        if (srq !== undefined) e.srq = srq;
      }
      if (raw.cqHandle !== undefined) {
        const cq = this.#cqs.get(raw.cqHandle)?.deref();
        if (cq !== undefined) e.cq = cq;
      }
      const w = this.#waiters.shift();
      if (w !== undefined) {
        if (this.#waiters.length === 0) this.#eventPoller?.unref();
        w.resolve(e);
      } else {
        this.#backlog.push(e);
        if (this.#backlog.length > EVENT_BACKLOG) this.#backlog.shift();
      }
    }
  }

  protected override willClose(): void {
    eventPollers.unregister(this);
    this.#eventPoller?.close();
    for (const w of this.#waiters.splice(0)) w.resolve(null);
  }

  protected get teardownCall(): string {
    return 'ibv_close_device';
  }

  override describe(): string {
    return `RdmaContext (${this.name})`;
  }
}

/** The RDMA entry points. rdma_cm's `listen` and `connect` are in lib/rdma/cm.ts. */
export const Rdma = {
  /**
   * RDMA devices libibverbs can open, with their ports' state and GIDs
   * (from sysfs). [] when the kernel has no RDMA support or no device;
   * throws ERR_P2PDMA_RDMA_LIBRARY without libibverbs.
   */
  devices(): RdmaDeviceInfo[] {
    let list: ReturnType<typeof native.rdmaDevices>;
    try {
      list = native.rdmaDevices();
    } catch (e) {
      const err = rdmaError(e, Rdma.devices) as SystemError;
      if (err.code === 'ENOSYS') return []; // no /sys/class/infiniband
      throw err;
    }
    return list.map((d) => ({ name: d.name, guid: d.guid, nodeType: NODE_TYPE[d.nodeType] ?? String(d.nodeType), ports: ports(d.name, '/sys') }));
  },

  /** Opens the device called `name` (ibv_open_device). ENODEV when there is none. */
  open(name: string): RdmaContext {
    if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name, Rdma.open);
    try {
      return new RdmaContext(name);
    } catch (e) {
      const err = e as SystemError;
      if (err.code === 'ENOSYS') {
        err.message += ` '${name}' (this kernel has no RDMA devices: /sys/class/infiniband is missing)`;
      } else if (err.code === 'ENODEV') {
        const names = Rdma.devices().map((d) => d.name);
        err.message += ` '${name}' (devices: ${names.join(', ') || 'none; e.g. rdma link add rxe0 type rxe netdev eth0'})`;
      }
      Error.captureStackTrace(err, Rdma.open);
      throw err;
    }
  },

  /**
   * Two RC QPs on `pd`, connected to each other through the device (the
   * loopback every RDMA test starts with), sharing a new CQ that closes
   * with the last of them (`busyPoll` as in `createCq()`).
   */
  loopbackPair(pd: ProtectionDomain, options: { cqSize?: number; cap?: QueuePairOptions['cap']; busyPoll?: boolean } = {}): [QueuePair, QueuePair] {
    if (!(pd instanceof ProtectionDomain)) throw invalidArgType('pd', 'an instance of ProtectionDomain', pd, Rdma.loopbackPair);
    validateObject(options, 'options', Rdma.loopbackPair);
    const cq = pd.context.createCq(options.cqSize ?? 512, { busyPoll: options.busyPoll });
    const qps: QueuePair[] = [];
    try {
      qps.push(createQp(pd, { sendCq: cq, cap: options.cap }, Rdma.loopbackPair));
      qps.push(createQp(pd, { sendCq: cq, cap: options.cap }, Rdma.loopbackPair));
      const [a, b] = qps;
      const ai = a.info();
      const bi = b.info();
      a.connect(bi);
      b.connect(ai);
    } catch (e) {
      for (const q of qps) q.close();
      cq.close();
      throw e;
    }
    let users = 2;
    const shared = { close: () => --users === 0 && cq.close() };
    for (const q of qps) q.owned.push(shared);
    return qps as [QueuePair, QueuePair];
  },

  /** Whether libibverbs and librdmacm load, and whether dma-buf MRs exist in this libibverbs. */
  library(): { verbs: boolean; rdmacm: boolean; dmabuf: boolean; reason?: string } {
    const v = native.rdmaLibrary('verbs');
    const c = native.rdmaLibrary('rdmacm');
    const bad = !v.ok ? v : !c.ok ? c : undefined;
    return {
      verbs: v.ok,
      rdmacm: c.ok,
      dmabuf: v.ok && v.dmabuf === true,
      ...(bad && !bad.ok ? { reason: libraryError(bad).message } : {}),
    };
  },
};
