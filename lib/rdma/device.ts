/** RDMA devices: the list and their ports (sysfs), an open device (RdmaContext), and the Rdma entry points. */
import * as fs from 'node:fs';

import { illegalConstructor, invalidArgType, outOfRange, type SystemError, validateObject } from '../core/errors';
import { native, type NativeResource } from '../core/native';
import { CompletionQueue } from './cq';
import { call, libraryError, rdmaError } from './errors';
import { gidString } from './gid';
import { ProtectionDomain } from './pd';
import { createQp, type QueuePair, type QueuePairOptions } from './qp';
import { RdmaResource } from './resource';
import { toInt } from './validate';

/** A port of an RDMA device, from sysfs. */
export interface RdmaPort {
  port: number;
  /** 'ACTIVE', 'DOWN', ... (the kernel's words). */
  state: string;
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
      // "4: ACTIVE"
      const state = readOr(`${p}/state`)?.replace(/^\d+:\s*/, '') ?? 'UNKNOWN';
      return { port, state, linkLayer: readOr(`${p}/link_layer`) ?? 'unknown', gids };
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

const PORT_STATE = ['NOP', 'DOWN', 'INIT', 'ARMED', 'ACTIVE', 'ACTIVE_DEFER'];
const MTU_BYTES = [0, 256, 512, 1024, 2048, 4096];
const LINK_LAYER = ['unspecified', 'InfiniBand', 'Ethernet'] as const;

/** An open RDMA device (ibv_context). */
export class RdmaContext extends RdmaResource {
  readonly name: string;
  /** @internal */
  declare readonly native: NativeResource & {
    query(): Omit<RdmaDeviceAttributes, 'name' | 'ports'> & { physPortCnt: number };
    queryPort(port: number): { state: number; activeMtu: number; maxMtu: number; gidTblLen: number; lid: number; linkLayer: number };
    queryGid(port: number, index: number): Buffer;
    queryGidTable(maxEntries: number): { index: number; port: number; gid: Buffer; type: number }[] | null;
  };

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
   */
  createCq(size: number, options: { busyPoll?: boolean } = {}): CompletionQueue {
    toInt('size', size, 0x7fffffff, this.createCq);
    if (size === 0) throw outOfRange('size', '>= 1', size, this.createCq);
    validateObject(options, 'options', this.createCq);
    if (options.busyPoll !== undefined && typeof options.busyPoll !== 'boolean') throw invalidArgType('options.busyPoll', 'of type boolean', options.busyPoll, this.createCq);
    this.check(this.createCq);
    return new CompletionQueue(this, call(this.createCq, () => new native.RdmaCq(this.native, size)), options.busyPoll === true);
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
