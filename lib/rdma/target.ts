/** What a memory region may cover: access flags, the memory behind a target, allocMemory's memory, and why a registration failed. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { types } from 'node:util';

import { type CodedError, closedError, invalidArgType, invalidArgValue, outOfRange, type SystemError } from '../core/errors';
import { memfd } from '../core/memfd';
import { Mapping, mappingOf, mmap } from '../core/mmap';
import { native } from '../core/native';
import { rdmaError } from './errors';
import { toInt } from './validate';

const C = native.rdmaConstants;

/** MR access: what the local NIC and remote peers may do with the memory. */
/**
 * What an MR allows. 'on-demand': on-demand paging (IBV_ACCESS_ON_DEMAND),
 * pages faulted in as the NIC touches them instead of pinned at
 * registration; the driver must offer it (mlx5; rxe from Linux 6.14).
 * 'mw-bind': memory windows may be bound to it (qp.bindMw()).
 */
export type RdmaAccess = 'local-write' | 'remote-write' | 'remote-read' | 'remote-atomic' | 'on-demand' | 'mw-bind';

const ACCESS: Record<RdmaAccess, number> = {
  'local-write': C.IBV_ACCESS_LOCAL_WRITE,
  'remote-write': C.IBV_ACCESS_REMOTE_WRITE,
  'remote-read': C.IBV_ACCESS_REMOTE_READ,
  'remote-atomic': C.IBV_ACCESS_REMOTE_ATOMIC,
  'on-demand': C.IBV_ACCESS_ON_DEMAND,
  'mw-bind': C.IBV_ACCESS_MW_BIND,
};

export function toAccess(access: unknown, caller: Function, name = 'options.access'): { bits: number; names: RdmaAccess[] } {
  if (access === undefined) return { bits: 0, names: [] };
  const list = Array.isArray(access) ? access : [access];
  let bits = 0;
  const names: RdmaAccess[] = [];
  for (const a of list) {
    if (typeof a !== 'string') throw invalidArgType(name, "one of 'local-write', 'remote-write', 'remote-read', 'remote-atomic', 'on-demand', 'mw-bind' or an array of them", a, caller);
    const b = (ACCESS as Record<string, number>)[a];
    if (b === undefined) throw invalidArgValue(name, a, "must be 'local-write', 'remote-write', 'remote-read', 'remote-atomic', 'on-demand' or 'mw-bind'", caller);
    if ((bits & b) === 0) names.push(a as RdmaAccess);
    bits |= b;
  }
  // The verbs spec: a peer that may write needs the NIC to write locally.
  if ((bits & (C.IBV_ACCESS_REMOTE_WRITE | C.IBV_ACCESS_REMOTE_ATOMIC)) !== 0 && (bits & C.IBV_ACCESS_LOCAL_WRITE) === 0) {
    throw invalidArgValue(name, access, "must include 'local-write' with 'remote-write' or 'remote-atomic' (the verbs spec requires it)", caller);
  }
  return { bits, names };
}

/**
 * What `registerMemory` takes: memory JS cannot free under the device (see
 * index.ts): a Mapping (of a memfd, p2pmem, a dma-buf, a BAR), an
 * ArrayBuffer a Mapping made (`.buffer`, `window()`), a SharedArrayBuffer,
 * or a view of either. A non-shared ArrayBuffer and its views are refused.
 */
export type RdmaTarget = ArrayBuffer | SharedArrayBuffer | ArrayBufferView | Mapping;

export interface RegisterOptions {
  /** What the local NIC and the peer may do to the memory (ibv_access_flags). Default: none (local reads, RDMA WRITE/SEND from it). */
  access?: RdmaAccess | readonly RdmaAccess[];
  /** Part of the target to register: byte offset into it. Default 0. */
  offset?: number;
  /** Byte length. Default: the rest of the target. */
  length?: number;
  /**
   * For the promise form: checked before pinning starts. Once ibv_reg_mr
   * runs an abort does not recall it: the promise settles with its result.
   */
  signal?: AbortSignal;
}

/** Options of `pd.registerDmaBuf()` / `registerDmaBufSync()`. */
export interface RegisterDmaBufOptions {
  /** What the local NIC and the peer may do to the memory. Default: none. */
  access?: RdmaAccess | readonly RdmaAccess[];
  /** Byte offset into the dma-buf. Default 0. */
  offset?: number;
  /** Bytes to register. */
  length: number;
  /** The address the region has for work requests. Default: `offset`. */
  iova?: number | bigint;
  /** Promise form: checked before the registration starts. */
  signal?: AbortSignal;
}

/** Options of `pd.allocMemory()` / `allocMemorySync()`. */
export interface AllocMemoryOptions {
  /** What the local NIC and the peer may do to the memory. Default: none. */
  access?: RdmaAccess | readonly RdmaAccess[];
  /** Promise form: checked before pinning starts. */
  signal?: AbortSignal;
}

export interface Resolved {
  /** Arguments for native register(): a view of the shared memory, or a Mapping's address. */
  args: [Uint8Array, number, number] | [bigint, number];
  length: number;
  /** The Mapping whose pages these are (the target, or the one behind its ArrayBuffer). */
  mapping: Mapping | undefined;
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
  if (mapping?.closed) throw closedError('Mapping', caller);
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
export function sharedMemory(length: number, caller: Function): Mapping {
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
    // A device node, a sysfs resource, a dma-buf, or a VFIO device fd (an anonymous inode).
    return /^\/dev\/|^\/sys\/|dmabuf|^anon_inode:\[vfio-device\]/.test(m[3]);
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
export function explainRegister(e: unknown, target: Mapping | undefined, device: string, access: readonly RdmaAccess[] = []): unknown {
  const err = e as SystemError;
  if (access.includes('on-demand') && (err?.code === 'EOPNOTSUPP' || err?.code === 'EINVAL')) {
    err.message += `: ${device} has no on-demand paging (IBV_ACCESS_ON_DEMAND; the kernel offers it where the driver sets IBK_ON_DEMAND_PAGING: mlx5, and rxe from Linux 6.14)`;
    return err;
  }
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
      '(NVMe CMB, PCI BARs). The kernel-patches/ series adds the path that lets a memory region cover them ' +
      '(p2p_map on 6.12; p2p_dma_buf on 7.3, for vfio-pci BAR mappings: the MR goes on the BAR\'s dma-buf)' +
      (driver === '' || driver === 'rdma_rxe' ? '.' : `, in the RDMA drivers it converts (rxe), not in ${driver}.`);
  }
  return err;
}
