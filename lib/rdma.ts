/**
 * RDMA verbs: devices, contexts, protection domains, memory regions (host
 * memory, mappings of device memory, dma-bufs), completion queues and RC
 * queue pairs, with work requests as promises.
 *
 * libibverbs is loaded at run time (never linked): everything else in this
 * package works without rdma-core, and the first RDMA call on such a
 * machine throws ERR_P2PDMA_RDMA_LIBRARY naming the library or symbol.
 *
 * Completions: each CompletionQueue has its own completion channel, whose
 * fd is watched on the event loop by a `Poller` (lib/poll.ts): no busy
 * loop, no thread-pool thread parked. A readiness event drains the CQ and
 * settles each work request's promise by its wr_id. `{ busyPoll: true }`
 * polls the CQ from the event loop instead (setImmediate), for latency
 * benchmarks: it burns a core while work is outstanding.
 *
 * A drain polls until the CQ is empty, however many completions wait:
 * the channel signals only completions that arrive after it is re-armed.
 *
 * Memory under an MR: the NIC, and any peer granted remote access, reads
 * and writes the registered pages until the MR is deregistered, whatever JS
 * does meanwhile. So an MR takes only memory that JS cannot free under it:
 * - `pd.allocMemory(length)` (pyverbs' `MR(pd, length, access)`): a
 *   page-aligned shared memfd mapping (sealed against shrinking) that the
 *   MR owns, exposes as `mr.mapping`, and unmaps when its deregistration
 *   has completed;
 * - a `Mapping` (a memfd, p2pmem, a `P2pBuffer`, a BAR), or an ArrayBuffer
 *   the Mapping made (`map.buffer`, `map.window()`) and views of it: the MR
 *   holds the Mapping from the call on, so `unmap()` throws ERR_P2PDMA_BUSY
 *   until the MR is closed and its deregistration has completed;
 * - a `SharedArrayBuffer` or a view of one (`Buffer.from(new
 *   SharedArrayBuffer(n))`): it cannot be detached or shrunk, and the MR
 *   keeps it referenced.
 * A non-shared ArrayBuffer, or a view of one (Buffer, Uint8Array, DataView,
 * resizable ArrayBuffers), is refused with ERR_INVALID_ARG_VALUE before any
 * syscall: `transfer()` or a `postMessage` transfer frees its memory while
 * the NIC or a peer may still write into it. dma-bufs go through
 * `registerDmaBuf()`, which holds the dma-buf open.
 *
 * Lifetimes (native/rdma.h): an MR keeps its PD and its memory alive, a PD
 * its context, a QP its PD and CQs; closing a parent first defers its
 * teardown until the children are closed. Closing a QP with work in flight
 * rejects those promises with IBV_WC_WR_FLUSH_ERR at once; the MRs they
 * used stay registered until the QP is destroyed. A CQ that is garbage
 * collected while open and idle (no work outstanding) is closed with a
 * P2PDMA_GC_CLOSE warning, like every handle here; one with work
 * outstanding stays reachable until that work completes. A deferred
 * teardown that fails rejects `await obj[Symbol.asyncDispose]()`, or, when
 * nobody awaits it, emits a P2PDMA_CLOSE_FAILED warning (as `Fd` does).
 *
 * AbortSignal, the package's one rule (lib/abort.ts): an abort before
 * the call cancels it; after, the promise rejects at once with an
 * AbortError and what the device already has runs to its end: a
 * registration on the pool completes and its MR is then closed; a posted
 * work request stays in the queue (nothing recalls one) and keeps its MR
 * and queue slot until its completion arrives, which is then discarded.
 * `qp.close()` ends every posted request (IBV_WC_WR_FLUSH_ERR).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { types } from 'node:util';

import { abortable } from './abort';
import { abortError, type CodedError, closedError, fromNative, invalidArgType, invalidArgValue, outOfRange, sysError, type SystemError, validateObject } from './errors';
import { Fd, type FdLike, toFd } from './handle';
import { memfd } from './memfd';
import { Mapping, mappingOf, mmap } from './mmap';
import { native, type NativeRdmaCq, type NativeRdmaMr, type NativeRdmaQp, type NativeResource } from './native';
import { Poller } from './poll';

const C = native.rdmaConstants;
const DEFERRED = 1;
const ENOMEM = 12;
const EOPNOTSUPP = 95;

// ---------------------------------------------------------------------------
// Errors

/** A failed work completion: the verbs status, as libibverbs names it. */
export interface RdmaCompletionError extends CodedError {
  code: 'ERR_P2PDMA_RDMA_COMPLETION';
  /** `'IBV_WC_REM_ACCESS_ERR'`, `'IBV_WC_WR_FLUSH_ERR'`, ... */
  status: string;
  /** The provider's vendor error (0 when it has none). */
  vendorErr: number;
  /** The work request's id. */
  wrId: number;
  /** 'write' | 'read' | 'send' | 'recv'. */
  op: RdmaOp;
}

// enum ibv_wc_status, in order.
const WC_STATUS = [
  'IBV_WC_SUCCESS', 'IBV_WC_LOC_LEN_ERR', 'IBV_WC_LOC_QP_OP_ERR', 'IBV_WC_LOC_EEC_OP_ERR', 'IBV_WC_LOC_PROT_ERR',
  'IBV_WC_WR_FLUSH_ERR', 'IBV_WC_MW_BIND_ERR', 'IBV_WC_BAD_RESP_ERR', 'IBV_WC_LOC_ACCESS_ERR', 'IBV_WC_REM_INV_REQ_ERR',
  'IBV_WC_REM_ACCESS_ERR', 'IBV_WC_REM_OP_ERR', 'IBV_WC_RETRY_EXC_ERR', 'IBV_WC_RNR_RETRY_EXC_ERR', 'IBV_WC_LOC_RDD_VIOL_ERR',
  'IBV_WC_REM_INV_RD_REQ_ERR', 'IBV_WC_REM_ABORT_ERR', 'IBV_WC_INV_EECN_ERR', 'IBV_WC_INV_EEC_STATE_ERR', 'IBV_WC_FATAL_ERR',
  'IBV_WC_RESP_TIMEOUT_ERR', 'IBV_WC_GENERAL_ERR', 'IBV_WC_TM_ERR', 'IBV_WC_TM_RNDV_INCOMPLETE',
] as const;
const WC_WR_FLUSH_ERR = 5;

function completionError(status: number, vendorErr: number, wrId: number, op: RdmaOp, detail?: string): RdmaCompletionError {
  const name = WC_STATUS[status] ?? `IBV_WC_${status}`;
  const text = detail ?? native.rdmaWcStatusStr(status);
  const e = new Error(`RDMA ${op.toUpperCase()} failed: ${text} (${name}, vendor_err ${vendorErr}, wr_id ${wrId})`) as RdmaCompletionError;
  e.code = 'ERR_P2PDMA_RDMA_COMPLETION';
  e.status = name;
  e.vendorErr = vendorErr;
  e.wrId = wrId;
  e.op = op;
  return e;
}

interface NativeLibraryError {
  library: string;
  symbol?: string;
  dlerror: string;
}

function isLibraryError(e: unknown): e is NativeLibraryError {
  return typeof e === 'object' && e !== null && typeof (e as NativeLibraryError).library === 'string' && typeof (e as NativeLibraryError).dlerror === 'string';
}

/** ERR_P2PDMA_RDMA_LIBRARY: rdma-core's library (or one of its symbols) is missing. */
function libraryError(e: NativeLibraryError, caller?: Function): CodedError {
  const pkg = e.library.startsWith('librdmacm') ? 'librdmacm1' : 'libibverbs1 and ibverbs-providers';
  const what = e.symbol ? `${e.library} has no ${e.symbol}` : `${e.library} could not be loaded`;
  const err = new Error(`${what}: ${e.dlerror} (install ${pkg} from rdma-core)`) as CodedError & Partial<NativeLibraryError>;
  err.code = 'ERR_P2PDMA_RDMA_LIBRARY';
  err.library = e.library;
  if (e.symbol) err.symbol = e.symbol;
  if (caller) Error.captureStackTrace(err, caller);
  return err;
}

/** Converts native errors (SysError, missing library) for the public API. @internal */
export function rdmaError(e: unknown, caller?: Function): unknown {
  if (isLibraryError(e)) return libraryError(e, caller);
  return fromNative(e, {}, caller);
}

function call<T>(caller: Function, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw rdmaError(e, caller);
  }
}

// ---------------------------------------------------------------------------
// Handles

const gcWarning = new FinalizationRegistry<string>((what) => {
  process.emitWarning(`Closing ${what} on garbage collection`, {
    type: 'Warning',
    code: 'P2PDMA_GC_CLOSE',
    detail: `Its handle was garbage collected while open. Call close() on it, or declare it with 'using'.`,
  });
});

/** As lib/handle.ts warns for an Fd: a deferred teardown failed and nobody awaited it. */
function warnCloseFailed(what: string, cause: Error): void {
  const w = new Error(`Deferred close of ${what} failed: ${cause.message}`, { cause }) as CodedError;
  w.name = 'Warning';
  w.code = 'P2PDMA_CLOSE_FAILED';
  process.emitWarning(w);
}

/**
 * What every RDMA object has: close() (idempotent; with children or work
 * in flight the teardown waits for them), `using` / `await using`, and a
 * `P2PDMA_GC_CLOSE` warning when the GC has to close it.
 */
export abstract class RdmaResource implements Disposable, AsyncDisposable {
  /** @internal */
  readonly native: NativeResource;
  #closed = false;
  #pending: Promise<void> | undefined;
  #awaited = false;

  /** @internal */
  constructor(n: NativeResource) {
    this.native = n;
    gcWarning.register(this, this.constructor.name, this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Closes. Idempotent. With open children (an MR on this PD...) or work in
   * flight the object reads as closed at once and its kernel object goes
   * when they are gone. Throws a SystemError if an immediate teardown fails.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    gcWarning.unregister(this);
    this.willClose();
    let settle!: (r: number) => void;
    this.#pending = new Promise<void>((resolve, reject) => {
      settle = (r) => (r < 0 ? reject(sysError(-r, this.teardownCall)) : resolve());
    });
    this.#pending.catch(() => undefined);
    this.native.onclose = (r) => {
      this.native.onclose = undefined;
      // Nobody awaits it: say so rather than lose the error.
      if (r < 0 && !this.#awaited) warnCloseFailed(this.describe(), sysError(-r, this.teardownCall));
      settle(r);
      this.didClose();
    };
    const r = this.native.close();
    if (r === DEFERRED) return;
    this.native.onclose = undefined;
    settle(r);
    this.didClose();
    if (r < 0) throw sysError(-r, this.teardownCall, {}, this.close);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Closes and resolves once the kernel object is gone (after its children and work in flight). */
  [Symbol.asyncDispose](): Promise<void> {
    try {
      this.close();
    } catch (e) {
      return Promise.reject(e);
    }
    this.#awaited = true;
    return this.#pending!;
  }

  /** @internal Throws ERR_P2PDMA_CLOSED once closed. */
  check(caller: Function): void {
    if (this.#closed) throw closedError(this.describe(), caller);
  }

  /** @internal */
  describe(): string {
    return this.constructor.name;
  }

  /** @internal The verb that releases the object, for close errors. */
  protected abstract get teardownCall(): string;
  /** @internal Runs when close() starts. */
  protected willClose(): void {}
  /** @internal Runs when the kernel object is gone. */
  protected didClose(): void {}
}

// ---------------------------------------------------------------------------
// Devices

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

// ---------------------------------------------------------------------------
// Access flags and targets

/** MR access: what the local NIC and remote peers may do with the memory. */
export type RdmaAccess = 'local-write' | 'remote-write' | 'remote-read' | 'remote-atomic';

const ACCESS: Record<RdmaAccess, number> = {
  'local-write': C.IBV_ACCESS_LOCAL_WRITE,
  'remote-write': C.IBV_ACCESS_REMOTE_WRITE,
  'remote-read': C.IBV_ACCESS_REMOTE_READ,
  'remote-atomic': C.IBV_ACCESS_REMOTE_ATOMIC,
};

function toAccess(access: unknown, caller: Function): { bits: number; names: RdmaAccess[] } {
  if (access === undefined) return { bits: 0, names: [] };
  const list = Array.isArray(access) ? access : [access];
  let bits = 0;
  const names: RdmaAccess[] = [];
  for (const a of list) {
    if (typeof a !== 'string') throw invalidArgType('access', "one of 'local-write', 'remote-write', 'remote-read', 'remote-atomic' or an array of them", a, caller);
    const b = (ACCESS as Record<string, number>)[a];
    if (b === undefined) throw invalidArgValue('access', a, "must be 'local-write', 'remote-write', 'remote-read' or 'remote-atomic'", caller);
    if ((bits & b) === 0) names.push(a as RdmaAccess);
    bits |= b;
  }
  // The verbs spec: a peer that may write needs the NIC to write locally.
  if ((bits & (C.IBV_ACCESS_REMOTE_WRITE | C.IBV_ACCESS_REMOTE_ATOMIC)) !== 0 && (bits & C.IBV_ACCESS_LOCAL_WRITE) === 0) {
    throw invalidArgValue('access', access, "must include 'local-write' with 'remote-write' or 'remote-atomic' (the verbs spec requires it)", caller);
  }
  return { bits, names };
}

/**
 * What `registerMemory` takes: memory JS cannot free under the device (see
 * the module doc): a Mapping (of a memfd, p2pmem, a dma-buf, a BAR), an
 * ArrayBuffer a Mapping made (`.buffer`, `window()`), a SharedArrayBuffer,
 * or a view of either. A non-shared ArrayBuffer and its views are refused.
 */
export type RdmaTarget = ArrayBuffer | SharedArrayBuffer | ArrayBufferView | Mapping;

export interface RegisterOptions {
  /** Part of the target to register: byte offset. Default 0. */
  offset?: number;
  /** Byte length. Default: the rest of the target. */
  length?: number;
  /**
   * For the promise form: checked before pinning starts. Once ibv_reg_mr
   * runs an abort does not recall it: the promise settles with its result.
   */
  signal?: AbortSignal;
}

interface Resolved {
  /** Arguments for native register(): a view of the shared memory, or a Mapping's address. */
  args: [Uint8Array, number, number] | [bigint, number];
  length: number;
  /** The Mapping whose pages these are (the target, or the one behind its ArrayBuffer). */
  mapping: Mapping | undefined;
}

function toInt(name: string, v: unknown, max: number, caller: Function): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v, caller);
  if (!Number.isSafeInteger(v) || v < 0 || v > max) throw outOfRange(name, `an integer >= 0 && <= ${max}`, v, caller);
  return v;
}

/** What to register instead of detachable memory. */
const MEMORY_ADVICE = 'use pd.allocMemory(length), a SharedArrayBuffer (e.g. Buffer.from(new SharedArrayBuffer(n))) or a Mapping';

/** ERR_INVALID_ARG_VALUE for memory backed by a non-shared ArrayBuffer. */
function detachableError(target: object, bytes: number, caller: Function): CodedError {
  const kind = Buffer.isBuffer(target) ? 'Buffer' : (target.constructor?.name ?? 'ArrayBuffer view');
  const resizable = (types.isArrayBuffer(target) ? target : (target as ArrayBufferView).buffer) as ArrayBuffer & { resizable?: boolean };
  return invalidArgValue(
    'target',
    `${kind} of ${bytes} bytes`,
    `must be memory that JS cannot free under the device: a non-shared${resizable.resizable === true ? ', resizable' : ''} ArrayBuffer ` +
      "(or a view of one) can be detached by transfer() or postMessage() and its memory freed while the NIC or a remote peer still writes into it; " +
      MEMORY_ADVICE,
    caller,
  );
}

/** @internal exported for tests: the memory behind `target`, refused unless JS cannot free it. */
export function resolveTarget(target: unknown, o: RegisterOptions, caller: Function): Resolved {
  let size: number;
  let mapping: Mapping | undefined;
  // Where the target starts in the mapping, or the shared bytes.
  let base = 0;
  let shared: Uint8Array | undefined;
  if (target instanceof Mapping) {
    mapping = target;
    size = target.length;
  } else {
    let ab: ArrayBufferLike;
    let viewOffset = 0;
    if (types.isAnyArrayBuffer(target)) {
      ab = target;
      size = target.byteLength;
    } else if (ArrayBuffer.isView(target)) {
      ab = target.buffer;
      viewOffset = target.byteOffset;
      size = target.byteLength;
    } else {
      throw invalidArgType('target', 'an instance of Mapping, SharedArrayBuffer, ArrayBuffer, TypedArray or DataView', target, caller);
    }
    if (types.isSharedArrayBuffer(ab)) {
      shared = new Uint8Array(ab, viewOffset, size);
    } else {
      const m = mappingOf(ab as ArrayBuffer);
      if (m === undefined) throw detachableError(target as object, size, caller);
      mapping = m.mapping;
      base = m.offset + viewOffset;
    }
  }
  if (mapping?.unmapped) throw closedError('Mapping', caller);
  const offset = o.offset === undefined ? 0 : toInt('options.offset', o.offset, size, caller);
  const length = o.length === undefined ? size - offset : toInt('options.length', o.length, size - offset, caller);
  if (length === 0) {
    // A detached buffer reads as empty: say so rather than "0".
    throw outOfRange('options.length', `> 0 (the target has ${size - offset} bytes${size === 0 ? '; a detached ArrayBuffer has none' : ''})`, length, caller);
  }
  if (mapping !== undefined) return { args: [mapping.address + BigInt(base + offset), length], length, mapping };
  return { args: [shared!, offset, length], length, mapping: undefined };
}

/**
 * A shared memfd of `length` bytes, sealed against shrinking, mapped 'rw'
 * (page-aligned): memory for `allocMemory`. The fd is closed; the mapping
 * keeps the file.
 */
function sharedMemory(length: number, caller: Function): Mapping {
  const fd = memfd('p2pdma-rdma-mr', { allowSealing: true });
  try {
    fs.ftruncateSync(fd.fd, length);
    native.addSeals(fd.fd, native.sealConstants.F_SEAL_SHRINK);
    return mmap(fd.fd, length);
  } catch (e) {
    throw rdmaError(e, caller);
  } finally {
    fd.close();
  }
}

/** Whether `map` maps device memory (a device node, a sysfs resource, a dma-buf), from /proc/self/maps. */
function isDeviceMapping(map: Mapping): boolean {
  let maps: string;
  try {
    maps = fs.readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return true;
  }
  for (const line of maps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m === null || map.address < BigInt(`0x${m[1]}`) || map.address >= BigInt(`0x${m[2]}`)) continue;
    return /^\/dev\/|^\/sys\/|dmabuf/.test(m[3]);
  }
  return true;
}

/** The kernel driver behind an RDMA device, from sysfs ('' when unknown). */
function rdmaDriver(device: string): string {
  try {
    return path.basename(fs.readlinkSync(`/sys/class/infiniband/${device}/device/driver`));
  } catch {
    return '';
  }
}

/**
 * EFAULT on a mapping of device memory: the kernel cannot pin it. EFAULT on
 * host memory from QEMU's pvrdma: its device refuses what most buffers are.
 */
function explainRegister(e: unknown, target: Mapping | undefined, device: string): unknown {
  const err = e as SystemError;
  if (err?.code !== 'EFAULT') return err;
  const driver = rdmaDriver(device);
  // A Mapping of host memory (a memfd: allocMemory's, or behind a Buffer's
  // ArrayBuffer) is not device memory.
  const mapping = target !== undefined && isDeviceMapping(target) ? target : undefined;
  if (mapping === undefined && driver === 'vmw_pvrdma') {
    err.message +=
      `: ${device} is a pvrdma device; QEMU's (up to 9.0, which removed it) refuses memory that does not start on a page boundary ` +
      'when it spans more pages than its length rounded up to pages (a Buffer of 4096 bytes usually does): register page-aligned memory, such as a Mapping';
  }
  if (mapping !== undefined) {
    err.message +=
      ': this kernel cannot pin peer (device) memory for RDMA: get_user_pages() refuses p2pmem and VM_PFNMAP/VM_IO mappings ' +
      '(NVMe CMB, PCI BARs). The kernel-patches/ series adds the p2p_map path that lets a memory region cover them' +
      (driver === '' || driver === 'rdma_rxe' ? '.' : `, in the RDMA drivers it converts (rxe), not in ${driver}.`);
  }
  return err;
}

// ---------------------------------------------------------------------------
// Context

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

// ---------------------------------------------------------------------------
// PD and MR

/** Where the remote side's memory is: what a peer sends to let you WRITE/READ it. */
export interface RemoteRegion {
  addr: bigint;
  rkey: number;
  /** When known, lengths beyond it are refused before posting. */
  length?: number;
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
   * the module doc): a Mapping (held from this call until the MR's
   * deregistration has completed: its `unmap()` throws ERR_P2PDMA_BUSY
   * meanwhile), an ArrayBuffer a Mapping made, or a SharedArrayBuffer or a
   * view of one (kept referenced). A non-shared ArrayBuffer or a view of
   * one (a Buffer...) is refused with ERR_INVALID_ARG_VALUE before any
   * syscall. On a mapping of device memory (p2pmem, a PCI BAR) a kernel
   * without kernel-patches/ rejects with EFAULT, saying so.
   */
  registerMemory(target: RdmaTarget, access?: RdmaAccess | readonly RdmaAccess[], options: RegisterOptions = {}): Promise<MemoryRegion> {
    return this.#register(target, access, options, false, this.registerMemory);
  }

  /** registerMemory, blocking. */
  registerMemorySync(target: RdmaTarget, access?: RdmaAccess | readonly RdmaAccess[], options: Omit<RegisterOptions, 'signal'> = {}): MemoryRegion {
    return this.#registerSync(target, access, options, false, this.registerMemorySync);
  }

  /**
   * Allocates `length` bytes of memory for RDMA and registers them, as
   * pyverbs' `MR(pd, length, access)` does: a page-aligned shared memfd
   * mapping, zeroed and sealed against shrinking, that the MR owns. Read and
   * write it through `mr.mapping` (`.buffer`, `read()`, `write()`); it is
   * unmapped when the MR's deregistration has completed. `signal` is checked
   * before pinning starts.
   */
  allocMemory(length: number, access?: RdmaAccess | readonly RdmaAccess[], options: { signal?: AbortSignal } = {}): Promise<MemoryRegion> {
    let map: Mapping;
    try {
      map = this.#alloc(length, access, options, this.allocMemory);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#register(map, access, options, true, this.allocMemory);
  }

  /** allocMemory, blocking. */
  allocMemorySync(length: number, access?: RdmaAccess | readonly RdmaAccess[]): MemoryRegion {
    const map = this.#alloc(length, access, {}, this.allocMemorySync);
    return this.#registerSync(map, access, {}, true, this.allocMemorySync);
  }

  #alloc(length: number, access: unknown, options: { signal?: AbortSignal }, caller: Function): Mapping {
    toInt('length', length, Number.MAX_SAFE_INTEGER, caller);
    if (length === 0) throw outOfRange('length', '>= 1', length, caller);
    validateObject(options, 'options', caller);
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', options.signal, caller);
    toAccess(access, caller);
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
  #prepare(target: RdmaTarget, access: unknown, options: RegisterOptions, owned: boolean, withSignal: boolean, caller: Function): Prepared {
    let release: (() => void) | undefined;
    try {
      validateObject(options, 'options', caller);
      if (withSignal && options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', options.signal, caller);
      const a = toAccess(access, caller);
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

  #register(target: RdmaTarget, access: unknown, options: RegisterOptions, owned: boolean, caller: Function): Promise<MemoryRegion> {
    let prep: Prepared;
    try {
      prep = this.#prepare(target, access, options, owned, true, caller);
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
      throw explainRegister(rdmaError(e), r.mapping, this.context.name);
    });
    // Aborted while pinning: the MR nobody will get is closed when it exists.
    return abortable(registered, options.signal, caller, (unwanted) => unwanted.close());
  }

  #registerSync(target: RdmaTarget, access: unknown, options: RegisterOptions, owned: boolean, caller: Function): MemoryRegion {
    const { r, a, mr, undo, region } = this.#prepare(target, access, options, owned, false, caller);
    try {
      mr.register(...(r.args as [bigint, number]), a.bits);
    } catch (e) {
      undo();
      const err = explainRegister(rdmaError(e), r.mapping, this.context.name) as Error;
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
   * the dma-buf handle open (an Fd) until closed.
   */
  registerDmaBuf(dmabuf: FdLike, options: { offset?: number; length: number; iova?: number | bigint; access?: RdmaAccess | readonly RdmaAccess[] }): MemoryRegion {
    const fd = toFd(dmabuf, this.registerDmaBuf);
    validateObject(options, 'options', this.registerDmaBuf);
    const offset = options.offset === undefined ? 0 : toInt('options.offset', options.offset, Number.MAX_SAFE_INTEGER, this.registerDmaBuf);
    const length = toInt('options.length', options.length, Number.MAX_SAFE_INTEGER, this.registerDmaBuf);
    if (length === 0) throw outOfRange('options.length', '> 0', length, this.registerDmaBuf);
    let iova: bigint;
    if (options.iova === undefined) iova = BigInt(offset);
    else if (typeof options.iova === 'bigint' && options.iova >= 0n && options.iova < 2n ** 64n) iova = options.iova;
    else if (typeof options.iova === 'number') iova = BigInt(toInt('options.iova', options.iova, Number.MAX_SAFE_INTEGER, this.registerDmaBuf));
    else throw invalidArgType('options.iova', 'a number or bigint in [0, 2^64)', options.iova, this.registerDmaBuf);
    const a = toAccess(options.access, this.registerDmaBuf);
    this.check(this.registerDmaBuf);
    const mr = call(this.registerDmaBuf, () => new native.RdmaMr(this.native));
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
      Error.captureStackTrace(err, this.registerDmaBuf);
      throw err;
    }
    return new MemoryRegion(this, mr, dmabuf instanceof Fd ? dmabuf : undefined, a.names, length);
  }

  /** An RC queue pair on this PD (see QueuePairOptions). */
  createQp(options: QueuePairOptions): QueuePair {
    return createQp(this, options, this.createQp);
  }

  protected get teardownCall(): string {
    return 'ibv_dealloc_pd';
  }
}

/** The memory under an MR, let go once its deregistration has completed (or by the GC backstop). */
interface MrMemory {
  mapping: Mapping | undefined;
  /** Releases the Mapping's hold (unmap() works again). */
  release: (() => void) | undefined;
  /** allocMemory's own mapping: unmapped then. */
  owned: boolean;
}

function freeMemory(m: MrMemory): void {
  m.release?.();
  if (m.owned) m.mapping?.unmap();
}

// An MR collected while open: the native finalizer deregisters it; this lets
// go of the Mapping it held.
const mrMemory = new FinalizationRegistry<MrMemory>(freeMemory);

/**
 * A registered memory region. It keeps its memory referenced, and the NIC
 * has the pages pinned until close() (and, with work requests in flight,
 * until they complete). A Mapping under it (`mapping`) cannot be unmapped
 * (ERR_P2PDMA_BUSY) until the deregistration has completed; allocMemory's
 * own mapping is unmapped then. See the module doc for what memory an MR
 * takes.
 */
export class MemoryRegion extends RdmaResource implements RemoteRegion {
  readonly pd: ProtectionDomain;
  readonly lkey: number;
  readonly rkey: number;
  /** The MR's start address (the iova peers use with rkey). */
  readonly addr: bigint;
  readonly length: number;
  readonly access: readonly RdmaAccess[];
  /** What was registered (kept alive by the MR); undefined for allocMemory's. */
  readonly target: RdmaTarget | Fd | undefined;
  /**
   * The Mapping whose pages the MR covers: allocMemory's (owned by the MR),
   * the Mapping registered, or the one behind a registered `map.buffer` or
   * `map.window()`. Undefined for shared memory and dma-bufs.
   */
  readonly mapping: Mapping | undefined;
  /** @internal */
  declare readonly native: NativeRdmaMr;
  readonly #memory: MrMemory;

  /** @internal */
  constructor(
    pd: ProtectionDomain,
    n: NativeRdmaMr,
    target: RdmaTarget | Fd | undefined,
    access: RdmaAccess[],
    length: number,
    memory: MrMemory = { mapping: undefined, release: undefined, owned: false },
  ) {
    super(n);
    const i = n.info()!;
    this.pd = pd;
    this.lkey = i.lkey;
    this.rkey = i.rkey;
    this.addr = i.addr;
    this.length = length;
    this.access = Object.freeze(access);
    this.target = target;
    this.mapping = memory.mapping;
    this.#memory = memory;
    if (memory.mapping !== undefined) mrMemory.register(this, memory, this);
  }

  protected override didClose(): void {
    mrMemory.unregister(this);
    freeMemory(this.#memory);
  }

  #uses = 0;

  /**
   * @internal One more work request uses the MR: it stays registered until
   * the returned release runs (one native hold for all of them).
   */
  use(): () => void {
    if (this.#uses++ === 0) this.native.hold();
    return () => {
      if (--this.#uses === 0) this.native.unhold();
    };
  }

  /** What a peer needs to WRITE or READ this region: { addr, rkey, length }. */
  remote(): RemoteRegion {
    return { addr: this.addr, rkey: this.rkey, length: this.length };
  }

  /** Closing while work requests use it defers the deregistration until they complete. */
  protected get teardownCall(): string {
    return 'ibv_dereg_mr';
  }
}

// ---------------------------------------------------------------------------
// CQ

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

interface Pending {
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
let nextWrId = 1;

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
      // Polls until the CQ is empty (native/rdma.cc): completions left in
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

// ---------------------------------------------------------------------------
// QP

export interface QueuePairOptions {
  /** Only 'RC' (reliable connected). Default 'RC'. */
  type?: 'RC';
  sendCq: CompletionQueue;
  /** Default: sendCq. */
  recvCq?: CompletionQueue;
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

/** Options of one work request: `signal` follows the module doc's abort rule. */
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
}

/** The send-side options of a request, checked: immediate (u32) and inline. */
function sendOptionsOf(o: WorkRequestOptions, op: string, length: number, maxInline: number, caller: Function): { immediate: number | null; flags: number } {
  const { immediate, inline } = o;
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
  return { immediate: immediate ?? null, flags: inline ? C.IBV_SEND_INLINE : 0 };
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
) & WorkRequestOptions;

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

function createQp(pd: ProtectionDomain, options: QueuePairOptions, caller: Function): QueuePair {
  validateObject(options, 'options', caller);
  if (options.type !== undefined && options.type !== 'RC') throw invalidArgValue('options.type', options.type, "must be 'RC'", caller);
  if (!(options.sendCq instanceof CompletionQueue)) throw invalidArgType('options.sendCq', 'an instance of CompletionQueue', options.sendCq, caller);
  const recvCq = options.recvCq ?? options.sendCq;
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
  if (options.sendCq.context !== pd.context || recvCq.context !== pd.context) {
    throw invalidArgValue('options.sendCq', options.sendCq.context.name, `must be a CQ of the PD's context (${pd.context.name})`, caller);
  }
  const n = call(caller, () => new native.RdmaQp(pd.native, options.sendCq.native, recvCq.native, c));
  return new QueuePair(pd, options.sendCq, recvCq, n);
}

/** The GID a QP on `port` sends from: RoCE v2 IPv4-mapped first, then any RoCE v2, then index 0. */
function defaultGidIndex(context: RdmaContext, port: number): number {
  const gids = context.gids(port);
  if (gids.length === 0) return 0;
  const v2 = gids.filter((g) => g.type === 'RoCE v2');
  return (v2.find((g) => g.gid.startsWith('0000:0000:0000:0000:0000:ffff:')) ?? v2[0] ?? gids[0]).index;
}

function gidString(b: Buffer): string {
  return b.toString('hex').replace(/(.{4})(?!$)/g, '$1:');
}

function gidBytes(s: unknown, caller: Function): Buffer {
  if (typeof s !== 'string' || !/^([0-9a-fA-F]{4}:){7}[0-9a-fA-F]{4}$/.test(s)) throw invalidArgValue('remote.gid', s, "must be a GID like 'fe80:0000:0000:0000:5054:00ff:fe12:3456'", caller);
  return Buffer.from(s.replace(/:/g, ''), 'hex');
}

/** An RC queue pair. Work requests return promises settled by their completions. */
export class QueuePair extends RdmaResource {
  readonly pd: ProtectionDomain;
  readonly sendCq: CompletionQueue;
  readonly recvCq: CompletionQueue;
  readonly qpNum: number;
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
  constructor(pd: ProtectionDomain, sendCq: CompletionQueue, recvCq: CompletionQueue, n: NativeRdmaQp) {
    super(n);
    this.pd = pd;
    this.sendCq = sendCq;
    this.recvCq = recvCq;
    this.qpNum = n.qpNum;
    this.cap = Object.freeze(n.cap);
    this.#psn = (Math.random() * 0xffffff) >>> 0;
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
    validateObject(options, 'options', this.connect);
    const askedRd = options.maxRdAtomic === undefined ? 16 : toInt('options.maxRdAtomic', options.maxRdAtomic, 255, this.connect);
    const dgid = gidBytes(remote.gid, this.connect);
    toInt('remote.qpNum', remote.qpNum, 0xffffff, this.connect);
    toInt('remote.psn', remote.psn, 0xffffff, this.connect);
    const mine = this.info({ portNum: options.portNum, gidIndex: options.gidIndex });
    const mtu = MTU_ENUM[Math.min(mine.mtu, remote.mtu ?? mine.mtu)] ?? 3;
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

  #modify(attrs: Record<string, unknown>, to: (typeof STATE_NAMES)[number]): void {
    this.check(this.connect);
    const r = this.native.modify(attrs);
    if (r < 0) {
      const e = sysError(-r, 'ibv_modify_qp', {}, this.connect);
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
   * acknowledged it. `options.signal`: see the module doc's abort rule.
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

  /** Posts a receive into `local` (its MR needs 'local-write'); resolves with the byte count received. */
  recv(local: LocalBuffers | null, length?: number, options: WorkRequestOptions = {}): Promise<RdmaCompletion> {
    return this.#one({ op: 'recv', local, length }, options, this.recv);
  }

  #one(wr: WorkRequest, options: WorkRequestOptions, caller: Function): Promise<RdmaCompletion> {
    try {
      const signal = signalOf(options, 'options', caller);
      return this.#post([{ ...wr, signal, immediate: options.immediate, inline: options.inline }], caller)[0];
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
    return this.#post(wrs, this.post);
  }

  #post(wrs: readonly WorkRequest[], caller: Function): Promise<RdmaCompletion>[] {
    this.check(caller);
    const sends: unknown[][] = [];
    const recvs: unknown[][] = [];
    const entries: { list: 'send' | 'recv'; pending: Omit<Pending, 'resolve' | 'reject'>; wrId: number; mrs: MemoryRegion[]; signal?: AbortSignal }[] = [];
    for (const wr of wrs) {
      validateObject(wr, 'wr', caller);
      const signal = signalOf(wr, 'wr', caller);
      // Aborted already: nothing of the batch is posted.
      if (signal?.aborted) throw abortError(signal.reason, caller);
      const op = wr.op;
      if (op !== 'write' && op !== 'read' && op !== 'send' && op !== 'recv' && op !== 'compare-swap' && op !== 'fetch-add') {
        throw invalidArgValue('wr.op', op, "must be 'write', 'read', 'send', 'recv', 'compare-swap' or 'fetch-add'", caller);
      }
      if (op === 'compare-swap' || op === 'fetch-add') {
        const { wrId, entry, mr } = this.#atomic(wr as Extract<WorkRequest, { op: 'compare-swap' | 'fetch-add' }>, caller);
        sends.push(entry);
        entries.push({ list: 'send', wrId, mrs: [mr], signal, pending: { qp: this, op, length: 8, release: [] } });
        continue;
      }
      if (op === 'read') this.#needRdAtomic('RDMA READ', caller);
      // A scatter/gather list: each part its own { mr, offset, length }.
      const parts = wr.local === null && (op === 'send' || op === 'recv') ? [] : Array.isArray(wr.local) ? wr.local.map((l) => toLocal(l, caller)) : [toLocal(wr.local, caller)];
      if (Array.isArray(wr.local)) {
        const maxSge = op === 'recv' ? this.cap.maxRecvSge : this.cap.maxSendSge;
        if (parts.length === 0 || parts.length > maxSge) {
          throw outOfRange('local', `a list of 1 to ${maxSge} buffers (the queue pair's cap.${op === 'recv' ? 'maxRecvSge' : 'maxSendSge'})`, parts.length, caller);
        }
        if (wr.length !== undefined) throw invalidArgValue('length', wr.length, 'must be left out with a list of buffers (each part has its own length)', caller);
      }
      const total = parts.reduce((n, p) => n + p.length, 0);
      const want = wr.length === undefined ? total : toInt('length', wr.length, 0xffffffff, caller);
      if (parts.length > 0 && want > total) throw outOfRange('length', `<= ${total} (the local buffer's length)`, want, caller);
      for (const local of parts) {
        if ((op === 'read' || op === 'recv') && !local.mr.access.includes('local-write')) {
          throw invalidArgValue('local', `MemoryRegion (${local.mr.access.join(', ') || 'no access'})`, `must be registered with 'local-write' to be the target of ${op === 'read' ? 'an RDMA READ' : 'a receive'}`, caller);
        }
        if (local.mr.pd !== this.pd) throw invalidArgValue('local', 'MemoryRegion', "must be registered on the QP's protection domain", caller);
      }
      const wrId = nextWrId++;
      const mrArgs = parts.length === 0 ? [null, 0, 0]
        : Array.isArray(wr.local) ? [parts.map((p) => [p.mr.native, p.offset, p.length]), 0, 0]
          : [parts[0].mr.native, parts[0].offset, want];
      if (op === 'write' || op === 'read') {
        const remote = toRemote((wr as { remote: unknown }).remote, caller);
        const roff = (wr as { remoteOffset?: number }).remoteOffset === undefined ? 0 : toInt('remoteOffset', (wr as { remoteOffset?: number }).remoteOffset, Number.MAX_SAFE_INTEGER, caller);
        if (remote.length !== undefined && roff + want > remote.length) {
          throw outOfRange('length', `<= ${remote.length - Math.min(roff, remote.length)} (the remote region's length after remoteOffset)`, want, caller);
        }
        const so = sendOptionsOf(wr, op, want, this.cap.maxInlineData, caller);
        const opcode = so.immediate !== null && op === 'write' ? OPCODE_WITH_IMM.write : OPCODE[op];
        sends.push([wrId, opcode, ...mrArgs, remoteAddress(remote, roff, want, caller), remote.rkey, so.immediate, so.flags]);
      } else if (op === 'send') {
        const so = sendOptionsOf(wr, op, want, this.cap.maxInlineData, caller);
        sends.push([wrId, so.immediate !== null ? OPCODE_WITH_IMM.send : OPCODE.send, ...mrArgs, null, null, so.immediate, so.flags]);
      } else {
        sendOptionsOf(wr, op, want, 0, caller);
        recvs.push([wrId, ...mrArgs]);
      }
      entries.push({ list: op === 'recv' ? 'recv' : 'send', wrId, mrs: parts.map((p) => p.mr), signal, pending: { qp: this, op, length: want, release: [] } });
    }
    this.#checkRoom(sends.length, recvs.length, caller);
    // Each MR in use stays registered until its request completes.
    const promises: Promise<RdmaCompletion>[] = [];
    for (const e of entries) {
      const cq = e.list === 'send' ? this.sendCq : this.recvCq;
      promises.push(
        new Promise<RdmaCompletion>((resolve, reject) => {
          for (const mr of e.mrs) e.pending.release.push(mr.use());
          cq.add(e.wrId, { ...e.pending, resolve, reject });
          if (e.list === 'send') this.#sends++;
          else this.#recvs++;
        }),
      );
    }
    this.#submit(sends, 'send', entries.filter((e) => e.list === 'send'), caller);
    this.#submit(recvs, 'recv', entries.filter((e) => e.list === 'recv'), caller);
    // The request keeps its MR and queue slot until its completion, which an
    // abort only stops the caller from waiting for.
    return promises.map((p, i) => abortable(p, entries[i].signal, caller));
  }

  /** The native entry of an atomic request, checked: 8 bytes each side, aligned remote, the access it needs. */
  #atomic(wr: Extract<WorkRequest, { op: 'compare-swap' | 'fetch-add' }>, caller: Function): { wrId: number; entry: unknown[]; mr: MemoryRegion } {
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
    const wrId = nextWrId++;
    return { wrId, entry: [wrId, OPCODE_ATOMIC[op], local.mr.native, local.offset, 8, addr, remote.rkey, null, 0, compareAdd, swap], mr: local.mr };
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

  #submit(list: unknown[][], kind: 'send' | 'recv', entries: { wrId: number }[], caller: Function): void {
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
      // Nothing was posted. An argument the native side refused (a bug
      // here: the JS checks come first) reads as EINVAL with its reason;
      // anything else keeps its own error.
      posted = 0;
      const code = (x as { code?: unknown })?.code;
      if (code === 'ERR_INVALID_ARG_TYPE' || code === 'ERR_OUT_OF_RANGE') {
        e = sysError(22, verb, {}, caller);
        e.message += ` (${(x as Error).message})`;
      } else {
        e = rdmaError(x, caller) as Error;
      }
    }
    const cq = kind === 'send' ? this.sendCq : this.recvCq;
    for (const { wrId } of entries.slice(posted)) {
      const p = cq.remove(wrId);
      if (p === undefined) continue;
      this.completed(p);
      for (const r of p.release) r();
      p.reject(e);
    }
  }

  /** @internal a request left the queue. */
  completed(p: Pending): void {
    if (p.op === 'recv') this.#recvs--;
    else this.#sends--;
  }

  /** MR holds of the requests flushed by close(): released once the QP is destroyed. */
  #releaseAfterClose: (() => void)[] = [];

  protected override willClose(): void {
    // The kernel flushes them when the QP is destroyed; no completion will
    // reach us, so they are rejected here, at once. The device may touch
    // their memory until destroy_qp returns: their MRs stay registered
    // until then (didClose).
    for (const cq of new Set([this.sendCq, this.recvCq])) {
      for (const [wrId, p] of [...cq.pending]) {
        if (p.qp !== this) continue;
        cq.remove(wrId);
        this.completed(p);
        this.#releaseAfterClose.push(...p.release);
        p.reject(completionError(WC_WR_FLUSH_ERR, 0, wrId, p.op, 'work request flushed: the queue pair was closed'));
      }
    }
  }

  protected override didClose(): void {
    for (const r of this.#releaseAfterClose.splice(0)) r();
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

function toLocal(v: unknown, caller: Function): { mr: MemoryRegion; offset: number; length: number } {
  let mr: unknown;
  let offset = 0;
  let length: number | undefined;
  if (v instanceof MemoryRegion) mr = v;
  else if (typeof v === 'object' && v !== null) {
    const o = v as { mr?: unknown; offset?: number; length?: number };
    mr = o.mr;
    if (o.offset !== undefined) offset = toInt('local.offset', o.offset, Number.MAX_SAFE_INTEGER, caller);
    if (o.length !== undefined) length = toInt('local.length', o.length, Number.MAX_SAFE_INTEGER, caller);
  }
  if (!(mr instanceof MemoryRegion)) throw invalidArgType('local', 'a MemoryRegion or { mr, offset?, length? }', v, caller);
  if (mr.closed) throw closedError('MemoryRegion (deregistered)', caller);
  if (offset > mr.length) throw outOfRange('local.offset', `<= ${mr.length} (the memory region's length)`, offset, caller);
  if (length === undefined) length = mr.length - offset;
  if (offset + length > mr.length) throw outOfRange('local.length', `<= ${mr.length - offset} (the memory region's length after offset)`, length, caller);
  return { mr, offset, length };
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

// ---------------------------------------------------------------------------
// Entry points

/** The RDMA entry points. rdma_cm's `listen` and `connect` are in lib/rdma-cm.ts. */
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
