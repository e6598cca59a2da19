/**
 * NVMe from Node: a namespace (`/dev/nvme0n1`) or controller (`/dev/nvme0`)
 * handle with `identify()`, O_DIRECT `read()`/`write()` and passthrough
 * commands (`passthru()`, NVME_IOCTL_IO64_CMD / ADMIN64_CMD).
 *
 * Buffers are used in place: any TypedArray, DataView, (Shared)ArrayBuffer,
 * `Mapping` or `P2pBuffer`. With a P2pBuffer (another device's p2pmem, e.g.
 * an NVMe CMB) the controller DMAs peer to peer; when the kernel refuses
 * (the two devices cannot reach each other: EREMOTEIO on 6.12, EINVAL on
 * 7.x), the error says why (`P2pMem.topology()`).
 *
 * O_DIRECT rules are checked before any syscall, with errors that name the
 * rule: device position and length multiples of the logical block size
 * (`queue/logical_block_size`), buffer address a multiple of the DMA
 * alignment (`queue/dma_alignment` + 1), the range inside the namespace.
 *
 * Two engines run the promise forms (`Nvme.engine`, `Nvme.engineInfo`):
 *
 * io_uring (the default where the kernel allows it): one ring per JS
 * thread (native/pci/uring.h). I/O is IORING_OP_READ/WRITE on the O_DIRECT
 * block device; I/O passthrough commands are IORING_OP_URING_CMD
 * (NVME_URING_CMD_IO) on the namespace's generic char device `/dev/ngXnY`,
 * admin commands of a controller handle NVME_URING_CMD_ADMIN on its own fd.
 * What is queued during a loop turn is submitted with one io_uring_enter
 * just before the loop waits; completions arrive through an eventfd the
 * loop polls and are settled in one callback per wake-up. No pool thread,
 * no in-flight cap (ops beyond the ring's size wait natively). Still on the
 * pool: admin commands of a namespace handle (the generic device refuses
 * them), I/O commands of a controller handle, and passthrough of a
 * namespace whose generic device is missing (`engines` says which, per
 * handle). Abort: an I/O not yet handed to the kernel (queued until the
 * turn's flush) is cancelled; a submitted one runs to its end and its
 * outcome is discarded (lib/abort.ts), no IORING_OP_ASYNC_CANCEL.
 * Registered (fixed) buffers are not used: on 6.12, IORING_REGISTER_BUFFERS
 * pins with FOLL_LONGTERM, never with FOLL_PCI_P2PDMA, so it refuses p2pmem
 * (a P2pBuffer) with EFAULT (README, test/guest/nvme-uring.test.ts).
 *
 * threadpool (the fallback): where io_uring_setup fails (ENOSYS, or EPERM
 * from /proc/sys/kernel/io_uring_disabled or its group), or when
 * `P2PDMA_NVME_ENGINE=threadpool` or `Nvme.engine = 'threadpool'` asks for it.
 * Each promise-returning I/O or command occupies one libuv
 * pool thread while the device works, and that pool (4 threads unless
 * UV_THREADPOOL_SIZE says otherwise) also serves fs, dns.lookup, crypto and
 * zlib. So at most `Nvme.maxInFlight` of them (default: half the pool,
 * at least 1) are handed to the pool at a time, across all handles of this
 * thread; the rest wait in a FIFO queue in JS, where they cost no thread
 * and can still be aborted. Raise `maxInFlight` (and UV_THREADPOOL_SIZE
 * with it) for deep queues, as bench/nvme-p2p-copy.js does. The xSync forms
 * block the calling thread instead and are not counted.
 *
 * Memory in flight (the rule of every promise form in this package, either
 * engine): the
 * device works on memory JS cannot free under it. A Mapping's or P2pBuffer's
 * pages (the Mapping itself, or an ArrayBuffer from its `.buffer` or
 * `window()`) and a SharedArrayBuffer are used in place, zero-copy: the
 * pages stay reserved until the I/O settles (unmap() meanwhile leaves it
 * writing into private zero pages), and a SharedArrayBuffer can be neither
 * detached nor shrunk. Any other ArrayBuffer (a Buffer, a resizable
 * ArrayBuffer, views of them) can be transferred, detached or shrunk while
 * the pool thread or the ring works, which would free memory the device still writes:
 * the promise forms stage its bytes in a page-aligned copy, and a read's data
 * lands in the view when the promise settles, only if the view still spans
 * the same bytes (a detached or resized view gets nothing; the promise
 * still resolves with the byte count). The xSync forms run while no JS can
 * and always work in place. For zero-copy I/O into host memory, use a
 * SharedArrayBuffer or a Mapping of a memfd.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { abortError, closedError, type CodedError, illegalConstructor, fromNative, invalidArgType, invalidArgValue, outOfRange, sysError, type SystemError, validateObject, wrap } from '../core/errors';
import { Fd, hold, nativeOf } from '../core/handle';
import { ioctlSync } from '../core/ioctl';
import { Mapping, mappingOf, maxViewLength } from '../core/mmap';
import { native } from '../core/native';
import { P2pBuffer, P2pMem, type P2pTopology } from './p2pmem';
import { viewByteLength } from '../core/views';
import { uapi } from '../core/uapi';
import { abortable } from '../core/abort';

const K = native.nvmeConstants;

/** What `read`/`write`/`passthru` accept as memory. */
export type NvmeBuffer = ArrayBufferView | ArrayBuffer | SharedArrayBuffer | Mapping;

export interface NvmeOpenOptions {
  /** Open read-only (writes and write commands then fail with EBADF). Default false. */
  readOnly?: boolean;
  /** The sysfs mount, for the block queue limits. Default `/sys`. */
  sysfs?: string;
}

export interface NvmeIoOptions {
  /** Checked before the I/O starts and while it waits for a pool slot; a started I/O cannot be cancelled. */
  signal?: AbortSignal;
}

export interface NvmeRwOptions extends NvmeIoOptions {
  /** Where in `buf` the transfer starts, in bytes. Default 0. */
  bufferOffset?: number;
}

export interface NvmeCopyOptions extends NvmeIoOptions {
  /** Byte position in the source namespace (a multiple of its logical block size). */
  from: number | bigint;
  /** Byte position in the destination namespace (a multiple of its logical block size). */
  to: number | bigint;
  /** Bytes to copy: a multiple of both namespaces' logical block sizes. */
  length: number;
  /**
   * Where each chunk lies between its read and its write, `depth` slots of
   * `chunk` bytes from its start: a P2pBuffer (e.g. the destination's CMB:
   * both controllers DMA peer to peer, the CPU never touches the data) or
   * host memory (a bounce). Aligned for both devices, as read() asks.
   */
  via: NvmeBuffer;
  /** Bytes per read and write: a multiple of both logical block sizes, at most 1 GiB. Default 64 KiB (or `length` if less). */
  chunk?: number;
  /** Chunks in flight, 1 to 64. Default 4. */
  depth?: number;
}

/** CMBSZ and CMBLOC decoded (NVMe base spec 3.1.3.12-13), from the driver's sysfs attributes. */
export interface NvmeCmb {
  /** Bytes (SZ x SZU). */
  size: number;
  /** BAR that holds it (CMBLOC.BIR). */
  bar: number;
  /** Offset in that BAR, bytes (CMBLOC.OFST x SZU). */
  offset: number;
  /** What the controller supports in it: submission/completion queues, PRP/SGL lists, read and write data. */
  flags: { sqs: boolean; cqs: boolean; lists: boolean; rds: boolean; wds: boolean };
  cmbsz: number;
  cmbloc: number;
}

export interface NvmeControllerInfo {
  /** PCI vendor id (VID) and subsystem vendor id (SSVID). */
  vendorId: number;
  subsystemVendorId: number;
  serial: string;
  model: string;
  firmware: string;
  controllerId: number;
  /** NVMe version, e.g. '1.4.0'. */
  version: string;
  /** Number of namespaces (NN). */
  namespaces: number;
  /** Largest transfer in bytes (MDTS, assuming a 4 KiB minimum page), 0 = no limit. */
  maxTransfer: number;
  /** The controller memory buffer, when the controller has one. */
  cmb: NvmeCmb | undefined;
}

export interface NvmeNamespaceInfo {
  nsid: number;
  /** NSZE, NCAP, NUSE in logical blocks. */
  blocks: bigint;
  capacity: bigint;
  utilization: bigint;
  /** Bytes per logical block of the formatted LBA format. */
  lbaSize: number;
  /** Metadata bytes per block. */
  metadataSize: number;
  /** blocks x lbaSize. */
  bytes: bigint;
}

export interface NvmeIdentify {
  controller: NvmeControllerInfo;
  /** For a namespace handle. */
  namespace: NvmeNamespaceInfo | undefined;
}

/** A passthrough command: the submission queue entry's fields and its data buffer. */
export interface NvmePassthruCommand {
  opcode: number;
  /** Default: this handle's namespace (0 for a controller handle). */
  nsid?: number;
  /** Admin command (NVME_IOCTL_ADMIN64_CMD). Default false (I/O command). */
  admin?: boolean;
  flags?: number;
  cdw2?: number;
  cdw3?: number;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  cdw14?: number;
  cdw15?: number;
  /** The data buffer, used in place (a P2pBuffer makes the command peer to peer). */
  data?: NvmeBuffer;
  /** Bytes of `data` to transfer. Default: all of it. */
  dataLength?: number;
  /**
   * Which way the data goes. The kernel infers it from the opcode (bit 0: to
   * the controller, bit 1: from it); a direction that disagrees is refused.
   * Default: the opcode's.
   */
  direction?: 'none' | 'read' | 'write';
  /** Command timeout in ms; 0 (default) is the driver's. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface NvmePassthruResult {
  /** Completion queue entry DW0 (and DW1). */
  result: bigint;
}

/** An NVMe completion with a non-zero status, thrown by passthru() and identify(). */
export interface NvmeStatusError extends CodedError {
  code: 'ERR_P2PDMA_NVME_STATUS';
  /** The 15-bit status field: SC, SCT, CRD, More, DNR. */
  status: number;
  statusCodeType: number;
  statusCode: number;
  /** e.g. 'INVALID_OPCODE'. */
  statusName: string;
  /** Do Not Retry. */
  dnr: boolean;
  opcode: number;
}

// Status names, from the NVMe base spec (generic, command specific, media,
// path) as the kernel's include/linux/nvme.h names them.
const STATUS: Record<number, Record<number, [string, string]>> = {
  0: {
    0x00: ['SUCCESS', 'Successful Completion'],
    0x01: ['INVALID_OPCODE', 'Invalid Command Opcode'],
    0x02: ['INVALID_FIELD', 'Invalid Field in Command'],
    0x03: ['CMDID_CONFLICT', 'Command ID Conflict'],
    0x04: ['DATA_XFER_ERROR', 'Data Transfer Error'],
    0x05: ['POWER_LOSS', 'Commands Aborted due to Power Loss Notification'],
    0x06: ['INTERNAL', 'Internal Error'],
    0x07: ['ABORT_REQ', 'Command Abort Requested'],
    0x08: ['ABORT_QUEUE', 'Command Aborted due to SQ Deletion'],
    0x09: ['FUSED_FAIL', 'Command Aborted due to Failed Fused Command'],
    0x0a: ['FUSED_MISSING', 'Command Aborted due to Missing Fused Command'],
    0x0b: ['INVALID_NS', 'Invalid Namespace or Format'],
    0x0c: ['CMD_SEQ_ERROR', 'Command Sequence Error'],
    0x0d: ['SGL_INVALID_LAST', 'Invalid SGL Segment Descriptor'],
    0x0e: ['SGL_INVALID_COUNT', 'Invalid Number of SGL Descriptors'],
    0x0f: ['SGL_INVALID_DATA', 'Data SGL Length Invalid'],
    0x10: ['SGL_INVALID_METADATA', 'Metadata SGL Length Invalid'],
    0x11: ['SGL_INVALID_TYPE', 'SGL Descriptor Type Invalid'],
    0x12: ['CMB_INVALID_USE', 'Invalid Use of Controller Memory Buffer'],
    0x13: ['PRP_INVALID_OFFSET', 'PRP Offset Invalid'],
    0x15: ['OPERATION_DENIED', 'Operation Denied'],
    0x16: ['SGL_INVALID_OFFSET', 'SGL Offset Invalid'],
    0x18: ['HOST_ID_INCONSIST', 'Host Identifier Inconsistent Format'],
    0x19: ['KA_TIMEOUT_EXPIRED', 'Keep Alive Timer Expired'],
    0x1a: ['KA_TIMEOUT_INVALID', 'Keep Alive Timeout Invalid'],
    0x1b: ['ABORTED_PREEMPT_ABORT', 'Command Aborted due to Preempt and Abort'],
    0x1c: ['SANITIZE_FAILED', 'Sanitize Failed'],
    0x1d: ['SANITIZE_IN_PROGRESS', 'Sanitize In Progress'],
    0x1e: ['SGL_INVALID_GRANULARITY', 'SGL Data Block Granularity Invalid'],
    0x1f: ['CMD_NOT_SUP_CMB_QUEUE', 'Command Not Supported for Queue in CMB'],
    0x20: ['NS_WRITE_PROTECTED', 'Namespace is Write Protected'],
    0x21: ['CMD_INTERRUPTED', 'Command Interrupted'],
    0x22: ['TRANSIENT_TR_ERR', 'Transient Transport Error'],
    0x80: ['LBA_RANGE', 'LBA Out of Range'],
    0x81: ['CAP_EXCEEDED', 'Capacity Exceeded'],
    0x82: ['NS_NOT_READY', 'Namespace Not Ready'],
    0x83: ['RESERVATION_CONFLICT', 'Reservation Conflict'],
    0x84: ['FORMAT_IN_PROGRESS', 'Format In Progress'],
  },
  1: {
    0x00: ['CQ_INVALID', 'Completion Queue Invalid'],
    0x01: ['QID_INVALID', 'Invalid Queue Identifier'],
    0x02: ['QUEUE_SIZE', 'Invalid Queue Size'],
    0x03: ['ABORT_LIMIT', 'Abort Command Limit Exceeded'],
    0x05: ['ASYNC_LIMIT', 'Asynchronous Event Request Limit Exceeded'],
    0x06: ['FIRMWARE_SLOT', 'Invalid Firmware Slot'],
    0x07: ['FIRMWARE_IMAGE', 'Invalid Firmware Image'],
    0x08: ['INVALID_VECTOR', 'Invalid Interrupt Vector'],
    0x09: ['INVALID_LOG_PAGE', 'Invalid Log Page'],
    0x0a: ['INVALID_FORMAT', 'Invalid Format'],
    0x0c: ['INVALID_QUEUE', 'Invalid Queue Deletion'],
    0x0d: ['FEATURE_NOT_SAVEABLE', 'Feature Identifier Not Saveable'],
    0x0e: ['FEATURE_NOT_CHANGEABLE', 'Feature Not Changeable'],
    0x0f: ['FEATURE_NOT_PER_NS', 'Feature Not Namespace Specific'],
    0x15: ['NS_INSUFFICIENT_CAP', 'Namespace Insufficient Capacity'],
    0x16: ['NS_ID_UNAVAILABLE', 'Namespace Identifier Unavailable'],
    0x18: ['NS_ALREADY_ATTACHED', 'Namespace Already Attached'],
    0x19: ['NS_IS_PRIVATE', 'Namespace Is Private'],
    0x1a: ['NS_NOT_ATTACHED', 'Namespace Not Attached'],
    0x1c: ['CTRL_LIST_INVALID', 'Controller List Invalid'],
    0x80: ['BAD_ATTRIBUTES', 'Conflicting Attributes'],
    0x81: ['INVALID_PI', 'Invalid Protection Information'],
    0x82: ['READ_ONLY', 'Attempted Write to Read Only Range'],
    0x83: ['CMD_SIZE_LIM_EXCEEDED', 'Command Size Limit Exceeded'],
    0xb8: ['ZONE_BOUNDARY_ERROR', 'Zone Boundary Error'],
  },
  2: {
    0x80: ['WRITE_FAULT', 'Write Fault'],
    0x81: ['READ_ERROR', 'Unrecovered Read Error'],
    0x82: ['GUARD_CHECK', 'End-to-end Guard Check Error'],
    0x83: ['APPTAG_CHECK', 'End-to-end Application Tag Check Error'],
    0x84: ['REFTAG_CHECK', 'End-to-end Reference Tag Check Error'],
    0x85: ['COMPARE_FAILED', 'Compare Failure'],
    0x86: ['ACCESS_DENIED', 'Access Denied'],
    0x87: ['UNWRITTEN_BLOCK', 'Deallocated or Unwritten Logical Block'],
  },
  3: {
    0x00: ['INTERNAL_PATH_ERROR', 'Internal Path Error'],
    0x01: ['ANA_PERSISTENT_LOSS', 'Asymmetric Access Persistent Loss'],
    0x02: ['ANA_INACCESSIBLE', 'Asymmetric Access Inaccessible'],
    0x03: ['ANA_TRANSITION', 'Asymmetric Access Transition'],
    0x60: ['CTRL_PATH_ERROR', 'Controller Pathing Error'],
    0x70: ['HOST_PATH_ERROR', 'Host Pathing Error'],
    0x71: ['HOST_ABORTED_CMD', 'Command Aborted By Host'],
  },
};
const SCT_NAMES = ['generic', 'command specific', 'media and data integrity', 'path related', '', '', '', 'vendor specific'];

/** Decodes an NVMe status field (as the passthrough ioctls return it). */
export function nvmeStatus(status: number): { statusCodeType: number; statusCode: number; name: string; description: string; dnr: boolean; more: boolean } {
  if (typeof status !== 'number') throw invalidArgType('status', 'of type number', status, nvmeStatus);
  if (!Number.isInteger(status) || status < 0 || status > 0xffff) {
    throw outOfRange('status', 'an integer >= 0 && <= 65535', status, nvmeStatus);
  }
  const sct = (status >> 8) & 0x7;
  const sc = status & 0xff;
  const known = STATUS[sct]?.[sc];
  const name = known?.[0] ?? `SCT${sct}_SC0x${sc.toString(16).padStart(2, '0')}`;
  const description = known?.[1] ?? `unknown ${SCT_NAMES[sct] || 'reserved'} status 0x${sc.toString(16).padStart(2, '0')}`;
  return { statusCodeType: sct, statusCode: sc, name, description, dnr: (status & 0x4000) !== 0, more: (status & 0x2000) !== 0 };
}

function statusError(status: number, opcode: number, admin: boolean, where: string, caller?: Function): NvmeStatusError {
  const d = nvmeStatus(status);
  const hex = (n: number, w = 2) => `0x${n.toString(16).padStart(w, '0')}`;
  const e = new Error(
    `NVMe ${admin ? 'admin' : 'I/O'} command ${hex(opcode)} failed on ${where}: ${d.description} (${d.name}, ` +
      `status ${hex(status, 4)}: SCT ${d.statusCodeType}, SC ${hex(d.statusCode)}${d.dnr ? ', do not retry' : ''})`,
  ) as NvmeStatusError;
  e.code = 'ERR_P2PDMA_NVME_STATUS';
  e.status = status;
  e.statusCodeType = d.statusCodeType;
  e.statusCode = d.statusCode;
  e.statusName = d.name;
  e.dnr = d.dnr;
  e.opcode = opcode;
  if (caller !== undefined) Error.captureStackTrace(e, caller);
  return e;
}

function nvmeError(code: string, message: string, caller: Function): CodedError {
  const e = new Error(message) as CodedError;
  e.code = code;
  Error.captureStackTrace(e, caller);
  return e;
}

// ---------------------------------------------------------------------------
// The engine (see the module doc), chosen on first use, per thread

/** What runs the promise forms. */
export type NvmeEngine = 'io_uring' | 'threadpool';

let engine: NvmeEngine | undefined;
let engineReason = '';
let ringPassthru = false;

function currentEngine(): NvmeEngine {
  if (engine !== undefined) return engine;
  if (process.env.P2PDMA_NVME_ENGINE === 'threadpool') {
    engineReason = 'P2PDMA_NVME_ENGINE=threadpool';
    return (engine = 'threadpool');
  }
  const r = native.nvmeUringProbe();
  if (r.errno === 0) {
    ringPassthru = r.passthru;
    engineReason = r.passthru ? 'io_uring_setup works' : 'io_uring_setup works, without SQE128/CQE32: passthrough on the thread pool';
    return (engine = 'io_uring');
  }
  const e = sysError(r.errno, 'io_uring_setup');
  const sysctl = readSysfs('/proc/sys/kernel/io_uring_disabled');
  engineReason = `${e.code} from io_uring_setup${sysctl !== undefined && sysctl !== '0' ? ` (kernel.io_uring_disabled = ${sysctl})` : ''}`;
  return (engine = 'threadpool');
}

// ---------------------------------------------------------------------------
// The in-flight cap of the thread pool (see the module doc)

function defaultMaxInFlight(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE);
  const size = Number.isInteger(pool) && pool > 0 ? Math.min(pool, 1024) : 4;
  return Math.max(1, Math.floor(size / 2));
}

let maxInFlight = defaultMaxInFlight();
let inFlight = 0;
const waiting: { start(): void; abort(e: unknown): void }[] = [];

function pump(): void {
  while (inFlight < maxInFlight && waiting.length > 0) {
    inFlight++;
    waiting.shift()!.start();
  }
}

function slotDone(): void {
  inFlight--;
  pump();
}

/** Starts `start` in a slot taken by the caller; the slot is freed when its promise settles. */
function inSlot<T>(start: () => Promise<T>): Promise<T> {
  let p: Promise<T>;
  try {
    p = start();
  } catch (e) {
    slotDone();
    return Promise.reject(e);
  }
  // One reaction, not finally() + then(): each promise hop is costly under emulation.
  return p.then(
    (v) => {
      slotDone();
      return v;
    },
    (e: unknown) => {
      slotDone();
      throw e;
    },
  );
}

/** Runs `start` once a pool slot is free; the slot is released when its promise settles. */
function throttled<T>(signal: AbortSignal | undefined, caller: Function, start: () => Promise<T>): Promise<T> {
  if (signal?.aborted) return Promise.reject(abortError(signal.reason, caller));
  // Fast path: a free slot and nobody queued ahead.
  if (inFlight < maxInFlight && waiting.length === 0) {
    inFlight++;
    return inSlot(start);
  }
  return new Promise<T>((resolve, reject) => {
    const entry = {
      start() {
        signal?.removeEventListener('abort', onAbort);
        inSlot(start).then(resolve, reject);
      },
      abort(e: unknown) {
        reject(e);
      },
    };
    const onAbort = () => {
      const i = waiting.indexOf(entry);
      if (i >= 0) {
        waiting.splice(i, 1);
        entry.abort(abortError(signal!.reason, caller));
      }
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    waiting.push(entry);
    pump();
  });
}

// ---------------------------------------------------------------------------
// Buffers

interface Target {
  /** Exactly the bytes to transfer. */
  view: Uint8Array;
  /** The P2pBuffer (or Mapping) the bytes live in. */
  mapping: Mapping | undefined;
}

function toTarget(buf: unknown, name: string, caller: Function): Target {
  if (buf instanceof Mapping) {
    if (buf.closed) throw closedError(buf instanceof P2pBuffer ? 'P2pBuffer' : 'Mapping', caller);
    const ab = buf.length <= maxViewLength ? buf.buffer : buf.window(0, maxViewLength);
    return { view: new Uint8Array(ab), mapping: buf };
  }
  if (ArrayBuffer.isView(buf)) {
    const bytes = viewByteLength(buf);
    let view: Uint8Array;
    try {
      view = new Uint8Array(buf.buffer, buf.byteOffset, bytes);
    } catch {
      throw invalidArgValue(name, '[detached]', 'must not be detached', caller);
    }
    return { view, mapping: undefined };
  }
  if (buf instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && buf instanceof SharedArrayBuffer)) {
    try {
      return { view: new Uint8Array(buf), mapping: undefined };
    } catch {
      throw invalidArgValue(name, '[detached]', 'must not be detached', caller);
    }
  }
  throw invalidArgType(name, 'an instance of TypedArray, DataView, ArrayBuffer, SharedArrayBuffer, Mapping or P2pBuffer', buf, caller);
}

// native/pci/nvme.cc's staging flags for the promise forms.
const BOUNCE_IN = 1;
const BOUNCE_OUT = 2;

/** Whether JS could free the target's memory while a pool thread uses it (see the module doc). */
function detachable(target: Target): boolean {
  if (target.mapping !== undefined) return false;
  const ab = target.view.buffer;
  if (typeof SharedArrayBuffer !== 'undefined' && ab instanceof SharedArrayBuffer) return false;
  return mappingOf(ab as ArrayBuffer) === undefined;
}

function toU32(name: string, v: unknown, caller: Function, dflt = 0): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v, caller);
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw outOfRange(name, 'an integer >= 0 && <= 4294967295', v, caller);
  return v;
}

function toPosition(v: unknown, caller: Function): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > 2n ** 63n - 1n) throw outOfRange('position', `>= 0n && <= ${2n ** 63n - 1n}n`, v, caller);
    return v;
  }
  if (typeof v !== 'number') throw invalidArgType('position', 'of type number or bigint', v, caller);
  if (!Number.isSafeInteger(v) || v < 0) throw outOfRange('position', `an integer >= 0 && <= ${Number.MAX_SAFE_INTEGER}`, v, caller);
  return BigInt(v);
}

function signalOf(options: unknown, caller: Function): AbortSignal | undefined {
  validateObject(options, 'options', caller);
  const { signal } = options as NvmeIoOptions;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, caller);
  return signal;
}

function readSysfs(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

const cstr = (b: Buffer, start: number, end: number) => b.toString('latin1', start, end).replace(/\0+$/, '').trim();

/** CMBSZ/CMBLOC as the nvme driver shows them (decimal; absent without a CMB). */
function readCmb(ctrlDir: string): NvmeCmb | undefined {
  const sz = readSysfs(path.join(ctrlDir, 'cmbsz'));
  const loc = readSysfs(path.join(ctrlDir, 'cmbloc'));
  if (sz === undefined || loc === undefined) return undefined;
  const cmbsz = Number(sz);
  const cmbloc = Number(loc);
  if (!Number.isInteger(cmbsz) || cmbsz === 0) return undefined;
  const unit = 4096 * 16 ** ((cmbsz >>> 8) & 0xf);
  return {
    size: (cmbsz >>> 12) * unit,
    bar: cmbloc & 0x7,
    offset: (cmbloc >>> 12) * unit,
    flags: { sqs: (cmbsz & 1) !== 0, cqs: (cmbsz & 2) !== 0, lists: (cmbsz & 4) !== 0, rds: (cmbsz & 8) !== 0, wds: (cmbsz & 16) !== 0 },
    cmbsz,
    cmbloc,
  };
}

function parseController(b: Buffer, cmb: NvmeCmb | undefined): NvmeControllerInfo {
  const ver = b.readUInt32LE(80);
  const mdts = b[77];
  return {
    vendorId: b.readUInt16LE(0),
    subsystemVendorId: b.readUInt16LE(2),
    serial: cstr(b, 4, 24),
    model: cstr(b, 24, 64),
    firmware: cstr(b, 64, 72),
    controllerId: b.readUInt16LE(78),
    version: `${ver >>> 16}.${(ver >>> 8) & 0xff}.${ver & 0xff}`,
    namespaces: b.readUInt32LE(516),
    maxTransfer: mdts === 0 ? 0 : 4096 * 2 ** mdts,
    cmb,
  };
}

function parseNamespace(b: Buffer, nsid: number): NvmeNamespaceInfo {
  const flbas = b[26] & 0xf;
  const lbaf = b.readUInt32LE(128 + 4 * flbas);
  const lbaSize = 2 ** ((lbaf >>> 16) & 0xff);
  const blocks = b.readBigUInt64LE(0);
  return {
    nsid,
    blocks,
    capacity: b.readBigUInt64LE(8),
    utilization: b.readBigUInt64LE(16),
    lbaSize,
    metadataSize: lbaf & 0xffff,
    bytes: blocks * BigInt(lbaSize),
  };
}

const OPC_IDENTIFY = 0x06;

/** An open NVMe namespace or controller. */
export class Nvme implements Disposable, AsyncDisposable {
  /** The device node it was opened from. */
  readonly path: string;
  /** A namespace block device (I/O and commands) or a controller character device (commands). */
  readonly kind: 'namespace' | 'controller';
  /** The controller's name, e.g. 'nvme0'. */
  readonly controller: string;
  /** The controller's PCI address, when it is a PCI device. */
  readonly pci: string | undefined;
  /** The namespace id (NVME_IOCTL_ID); undefined for a controller. */
  readonly nsid: number | undefined;
  /** Bytes per logical block (namespace: queue/logical_block_size); 0 for a controller. */
  readonly logicalBlockSize: number;
  /** Buffers must start at a multiple of this (queue/dma_alignment + 1). */
  readonly dmaAlignment: number;
  /** The namespace's size in bytes; 0n for a controller. */
  readonly size: bigint;
  /** The most one passthrough command may transfer (queue/max_hw_sectors_kb); 0 when unknown (a controller). */
  readonly maxTransfer: number;
  /** The namespace's generic char device (/dev/ngXnY) for passthrough on io_uring; undefined when there is none. */
  readonly generic: string | undefined;
  readonly #fd: Fd;
  readonly #sysfs: string;
  readonly #readOnly: boolean;
  /** The generic device, opened on first use; null when it cannot be. */
  #ng: Fd | null | undefined;

  private constructor(p: string, fd: Fd, sysfs: string, readOnly: boolean) {
    // Exported for instanceof; handles come from Nvme.open().
    if (typeof p !== 'string' || !(fd instanceof Fd) || typeof sysfs !== 'string') throw illegalConstructor(new.target);
    this.path = p;
    this.#fd = fd;
    this.#sysfs = sysfs;
    this.#readOnly = readOnly;
    let generic: string | undefined;
    const st = fs.fstatSync(fd.fd);
    const name = path.basename(fs.realpathSync(p));
    if (st.isBlockDevice()) {
      const m = /^(nvme\d+)(?:c\d+)?n\d+$/.exec(name);
      if (m === null) throw nvmeError('ERR_P2PDMA_NOT_NVME', `${p} (${name}) is not an NVMe namespace`, Nvme.open);
      this.kind = 'namespace';
      this.controller = m[1];
      const q = path.join(sysfs, 'class', 'block', name);
      this.logicalBlockSize = Number(readSysfs(path.join(q, 'queue', 'logical_block_size')) ?? 512);
      this.dmaAlignment = Number(readSysfs(path.join(q, 'queue', 'dma_alignment')) ?? 511) + 1;
      this.size = BigInt(readSysfs(path.join(q, 'size')) ?? 0) * 512n;
      this.maxTransfer = Number(readSysfs(path.join(q, 'queue', 'max_hw_sectors_kb')) ?? 0) * 1024;
      this.nsid = ioctlSync(fd, K.NVME_IOCTL_ID, undefined, { name: 'NVME_IOCTL_ID' });
      // nvme0n1 (or the path nvme0c0n1) -> ng0n1, where the kernel has it (5.13+).
      const g = /^nvme(\d+)(?:c\d+)?n(\d+)$/.exec(name);
      if (g !== null && fs.existsSync(path.join(sysfs, 'class', 'nvme-generic', `ng${g[1]}n${g[2]}`))) generic = `/dev/ng${g[1]}n${g[2]}`;
    } else if (st.isCharacterDevice() && /^nvme\d+$/.test(name)) {
      this.kind = 'controller';
      this.controller = name;
      this.logicalBlockSize = 0;
      this.dmaAlignment = 4;
      this.size = 0n;
      this.maxTransfer = 0;
      this.nsid = undefined;
    } else {
      throw nvmeError('ERR_P2PDMA_NOT_NVME', `${p} is not an NVMe namespace or controller device`, Nvme.open);
    }
    let pci: string | undefined;
    try {
      const dev = fs.realpathSync(path.join(sysfs, 'class', 'nvme', this.controller, 'device'));
      if (/^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(path.basename(dev))) pci = path.basename(dev);
    } catch {
      pci = undefined;
    }
    this.pci = pci;
    this.generic = generic;
  }

  /**
   * Opens a namespace (`/dev/nvme0n1`, O_DIRECT) or a controller
   * (`/dev/nvme0`). Read-write unless `readOnly`.
   */
  static open(devicePath: string, options: NvmeOpenOptions = {}): Nvme {
    if (typeof devicePath !== 'string') throw invalidArgType('path', 'of type string', devicePath, Nvme.open);
    validateObject(options, 'options', Nvme.open);
    const { readOnly = false, sysfs = '/sys' } = options;
    if (typeof readOnly !== 'boolean') throw invalidArgType('options.readOnly', 'of type boolean', readOnly, Nvme.open);
    if (typeof sysfs !== 'string') throw invalidArgType('options.sysfs', 'of type string', sysfs, Nvme.open);
    const C = fs.constants;
    let fd: Fd;
    try {
      const st = fs.statSync(devicePath);
      const direct = st.isBlockDevice() ? C.O_DIRECT : 0;
      fd = Fd.open(devicePath, (readOnly ? C.O_RDONLY : C.O_RDWR) | direct); // libuv adds O_CLOEXEC
    } catch (e) {
      if (e instanceof Error) Error.captureStackTrace(e, Nvme.open);
      throw e;
    }
    try {
      return new Nvme(devicePath, fd, sysfs, readOnly);
    } catch (e) {
      fd.close();
      throw e;
    }
  }

  /**
   * The engine of this thread's promise forms (see the module doc): chosen
   * on first use, from `P2PDMA_NVME_ENGINE=threadpool` or whether
   * io_uring_setup works. Setting 'io_uring' throws the setup's error where
   * it fails; the change applies to operations started afterwards.
   */
  static get engine(): NvmeEngine {
    return currentEngine();
  }
  static set engine(e: NvmeEngine) {
    if (e !== 'io_uring' && e !== 'threadpool') throw invalidArgValue('engine', e, "must be 'io_uring' or 'threadpool'");
    if (e === 'io_uring') {
      const r = native.nvmeUringProbe();
      if (r.errno !== 0) throw sysError(r.errno, 'io_uring_setup');
      ringPassthru = r.passthru;
    }
    engine = e;
    engineReason = 'set by Nvme.engine';
  }
  /** The engine and why it was chosen. */
  static get engineInfo(): { engine: NvmeEngine; reason: string } {
    return { engine: currentEngine(), reason: engineReason };
  }

  /** Which engine runs this handle's read/write (undefined: a controller), I/O commands and admin commands now. */
  get engines(): { io: NvmeEngine | undefined; passthru: NvmeEngine; admin: NvmeEngine } {
    const ring = currentEngine() === 'io_uring' && ringPassthru;
    return {
      io: this.kind === 'namespace' ? currentEngine() : undefined,
      passthru: ring && this.kind === 'namespace' && this.generic !== undefined && this.#ng !== null ? 'io_uring' : 'threadpool',
      admin: ring && this.kind === 'controller' ? 'io_uring' : 'threadpool',
    };
  }

  /** I/Os and commands handed to the thread pool at once, per thread (see the module doc). */
  static get maxInFlight(): number {
    return maxInFlight;
  }
  static set maxInFlight(n: number) {
    if (typeof n !== 'number') throw invalidArgType('maxInFlight', 'of type number', n);
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw outOfRange('maxInFlight', 'an integer >= 1 && <= 1024', n);
    maxInFlight = n;
    pump();
  }
  /** Operations handed to the pool or the ring now, and waiting for a pool slot or the ring's next flush. */
  static get queue(): { inFlight: number; waiting: number } {
    if (engine !== 'io_uring') return { inFlight, waiting: waiting.length };
    const r = native.nvmeUringQueue();
    return { inFlight: inFlight + r.inFlight, waiting: waiting.length + r.queued };
  }

  /** The fd; throws ERR_P2PDMA_CLOSED once closed. */
  get fd(): number {
    return this.#fd.fd;
  }

  get closed(): boolean {
    return this.#fd.closed;
  }

  /** Closes the device; with I/O in flight, close(2) waits for it (see Fd). */
  close(): void {
    this.#ng?.close();
    this.#fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#ng?.[Symbol.asyncDispose]();
    return this.#fd[Symbol.asyncDispose]();
  }

  // -------------------------------------------------------------------------
  // identify

  /** Identify Controller (and Identify Namespace for a namespace handle), plus the CMB registers. */
  identify(options: NvmeIoOptions = {}): Promise<NvmeIdentify> {
    try {
      const signal = signalOf(options, this.identify);
      const ctrl = Buffer.alloc(4096);
      const ns = this.nsid === undefined ? undefined : Buffer.alloc(4096);
      const run = async () => {
        await this.passthru({ admin: true, opcode: OPC_IDENTIFY, nsid: 0, cdw10: 1, data: ctrl, signal });
        if (ns !== undefined) await this.passthru({ admin: true, opcode: OPC_IDENTIFY, nsid: this.nsid, cdw10: 0, data: ns, signal });
        return this.#identified(ctrl, ns);
      };
      return run();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  identifySync(): NvmeIdentify {
    const ctrl = Buffer.alloc(4096);
    this.passthruSync({ admin: true, opcode: OPC_IDENTIFY, nsid: 0, cdw10: 1, data: ctrl });
    let ns: Buffer | undefined;
    if (this.nsid !== undefined) {
      ns = Buffer.alloc(4096);
      this.passthruSync({ admin: true, opcode: OPC_IDENTIFY, nsid: this.nsid, cdw10: 0, data: ns });
    }
    return this.#identified(ctrl, ns);
  }

  #identified(ctrl: Buffer, ns: Buffer | undefined): NvmeIdentify {
    const cmb = readCmb(path.join(this.#sysfs, 'class', 'nvme', this.controller));
    return { controller: parseController(ctrl, cmb), namespace: ns === undefined ? undefined : parseNamespace(ns, this.nsid!) };
  }

  // -------------------------------------------------------------------------
  // read / write

  /**
   * Reads `length` bytes (default: the whole buffer past
   * `options.bufferOffset`) at byte `position` of the namespace into `buf`,
   * O_DIRECT, on this thread's engine. Resolves with the bytes read.
   * `position` and `length` are multiples of the logical block size; `buf`
   * starts at a multiple of `dmaAlignment`.
   */
  read(buf: NvmeBuffer, position: number | bigint, length?: number, options: NvmeRwOptions = {}): Promise<number> {
    return this.#io(false, buf, position, length, options, this.read);
  }

  /** Writes `length` bytes (default: the whole buffer past `options.bufferOffset`) of `buf` at byte `position` of the namespace, O_DIRECT, on this thread's engine. */
  write(buf: NvmeBuffer, position: number | bigint, length?: number, options: NvmeRwOptions = {}): Promise<number> {
    return this.#io(true, buf, position, length, options, this.write);
  }

  /**
   * Copies `options.length` bytes from this namespace (at `options.from`) to
   * `dst` (at `options.to`): each chunk is read into its slot of
   * `options.via` and written from there, `depth` chunks in flight. On
   * io_uring the whole copy runs natively with one promise (no call into JS
   * per chunk: native/pci/nvme-copy.cc); on the thread pool as read() and
   * write() per chunk. Resolves with the bytes copied; rejects with the
   * first error (a failed read names this namespace, a failed write `dst`)
   * once the chunks in flight have ended. The ranges may overlap only if
   * the caller wants what that gives.
   */
  copyTo(dst: Nvme, options: NvmeCopyOptions): Promise<number> {
    const caller = this.copyTo;
    try {
      const signal = signalOf(options, caller);
      if (!(dst instanceof Nvme)) throw invalidArgType('dst', 'an instance of Nvme', dst, caller);
      const { from, to, length, via, depth = 4 } = options;
      if (typeof length !== 'number') throw invalidArgType('options.length', 'of type number', length, caller);
      if (!Number.isSafeInteger(length) || length <= 0) throw outOfRange('options.length', 'an integer > 0', length, caller);
      const chunk = options.chunk ?? Math.min(65536, length);
      if (typeof chunk !== 'number') throw invalidArgType('options.chunk', 'of type number', chunk, caller);
      if (!Number.isSafeInteger(chunk) || chunk <= 0 || chunk > 2 ** 30) throw outOfRange('options.chunk', 'an integer > 0 && <= 1073741824', chunk, caller);
      if (typeof depth !== 'number') throw invalidArgType('options.depth', 'of type number', depth, caller);
      if (!Number.isInteger(depth) || depth < 1 || depth > 64) throw outOfRange('options.depth', 'an integer >= 1 && <= 64', depth, caller);
      for (const ns of [this, dst]) {
        const lbs = ns.logicalBlockSize;
        if (length % lbs !== 0) throw outOfRange('options.length', `a multiple of the logical block size of ${ns.path} (${lbs})`, length, caller);
        if (chunk % lbs !== 0) throw outOfRange('options.chunk', `a multiple of the logical block size of ${ns.path} (${lbs})`, chunk, caller);
      }
      // The slots in use: read()'s rules for them on this side, write()'s on dst.
      const slots = chunk * Math.min(depth, Math.ceil(length / chunk));
      const { target, pos: src } = this.#checkIo(via, from, slots, {}, caller);
      const { pos: dstPos } = dst.#checkIo(via, to, slots, {}, caller);
      if (src + BigInt(length) > this.size) throw outOfRange('options.from + options.length', `<= ${this.size} (the end of namespace ${this.path})`, src + BigInt(length), caller);
      if (dstPos + BigInt(length) > dst.size) throw outOfRange('options.to + options.length', `<= ${dst.size} (the end of namespace ${dst.path})`, dstPos + BigInt(length), caller);
      if (currentEngine() !== 'io_uring') return this.#copyByChunks(dst, via, src, dstPos, length, chunk, depth, signal);
      if (signal?.aborted) return Promise.reject(abortError(signal.reason, caller));
      const bounce = detachable(target) ? BOUNCE_IN : 0;
      // The op holds both fds natively; this keeps both handles and the memory's owner alive.
      const keep = [target.mapping, this, dst];
      const p = native.nvmeUringCopy(nativeOf(this.#fd, caller), nativeOf(dst.#fd, caller), target.view, src, dstPos, length, chunk, depth, keep, bounce, signal);
      return abortable(
        p.then(undefined, (e: unknown) => {
          // A failed write names the destination, a failed read this namespace.
          throw (e as SystemError)?.syscall === 'write' ? dst.#ioError(e, target, true) : this.#ioError(e, target, false);
        }),
        signal,
        caller,
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** copyTo() on the thread pool: read() and write() per chunk, `depth` lanes. */
  async #copyByChunks(dst: Nvme, via: NvmeBuffer, from: bigint, to: bigint, length: number, chunk: number, depth: number, signal?: AbortSignal): Promise<number> {
    let copied = 0;
    let failed = false;
    const lanes = Math.min(depth, Math.ceil(length / chunk));
    // allSettled: the first error is reported once every lane has stopped.
    const results = await Promise.allSettled(
      Array.from({ length: lanes }, async (_, lane) => {
        for (let at = lane * chunk; at < length && !failed; at += lanes * chunk) {
          const n = Math.min(chunk, length - at);
          try {
            await this.read(via, from + BigInt(at), n, { bufferOffset: lane * chunk, signal });
            await dst.write(via, to + BigInt(at), n, { bufferOffset: lane * chunk, signal });
          } catch (e) {
            failed = true;
            throw e;
          }
          copied += n;
        }
      }),
    );
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (rejected) throw rejected.reason;
    return copied;
  }

  /** read(), blocking the JS thread. */
  readSync(buf: NvmeBuffer, position: number | bigint, length?: number, options: Omit<NvmeRwOptions, 'signal'> = {}): number {
    return this.#ioSync(false, buf, position, length, options, this.readSync);
  }

  /** write(), blocking the JS thread. */
  writeSync(buf: NvmeBuffer, position: number | bigint, length?: number, options: Omit<NvmeRwOptions, 'signal'> = {}): number {
    return this.#ioSync(true, buf, position, length, options, this.writeSync);
  }

  #io(write: boolean, buf: unknown, position: unknown, length: unknown, options: unknown, caller: Function): Promise<number> {
    try {
      const signal = signalOf(options, caller);
      const { target, pos } = this.#checkIo(buf, position, length, options as object, caller);
      const bounce = detachable(target) ? (write ? BOUNCE_IN : BOUNCE_OUT) : 0;
      if (currentEngine() === 'io_uring') {
        if (signal?.aborted) return Promise.reject(abortError(signal.reason, caller));
        // One reaction (errors only): the op holds the fd and the memory natively.
        const p = native.nvmeUringIo(nativeOf(this.#fd, caller), write, target.view, pos, target.mapping ?? this, bounce, signal);
        return abortable(
          p.then(undefined, (e: unknown) => {
            throw this.#ioError(e, target, write);
          }),
          signal,
          caller,
        );
      }
      return throttled(signal, caller, () =>
        abortable(
          this.#held(
            caller,
            (fd) => native.nvmeIo(fd, write, target.view, pos, target.mapping ?? this, bounce, signal),
            (e) => this.#ioError(e, target, write),
          ),
          signal,
          caller,
        ),
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #ioSync(write: boolean, buf: unknown, position: unknown, length: unknown, options: unknown, caller: Function): number {
    validateObject(options, 'options', caller);
    const { target, pos } = this.#checkIo(buf, position, length, options, caller);
    try {
      return native.nvmeIoSync(this.#fd.fd, write, target.view, pos);
    } catch (e) {
      const err = this.#ioError(e, target, write);
      if (err instanceof Error) Error.captureStackTrace(err, caller);
      throw err;
    }
  }

  /** The O_DIRECT rules, before any syscall. */
  #checkIo(buf: unknown, position: unknown, length: unknown, options: object, caller: Function): { target: Target; pos: bigint } {
    if (this.#fd.closed) throw closedError(`Nvme '${this.path}'`, caller);
    if (this.kind !== 'namespace') {
      throw nvmeError('ERR_P2PDMA_NVME_NOT_NAMESPACE', `${this.path} is a controller: read and write need a namespace (e.g. /dev/${this.controller}n1); use passthru() for commands`, caller);
    }
    const whole = toTarget(buf, 'buf', caller);
    const { bufferOffset = 0 } = options as NvmeRwOptions;
    if (typeof bufferOffset !== 'number') throw invalidArgType('options.bufferOffset', 'of type number', bufferOffset, caller);
    if (!Number.isSafeInteger(bufferOffset) || bufferOffset < 0 || bufferOffset > whole.view.byteLength) {
      throw outOfRange('options.bufferOffset', `an integer >= 0 && <= ${whole.view.byteLength} (the buffer's size)`, bufferOffset, caller);
    }
    const target = { view: whole.view.subarray(bufferOffset), mapping: whole.mapping };
    const pos = toPosition(position, caller);
    const avail = target.view.byteLength;
    let len = avail;
    if (length !== undefined) {
      if (typeof length !== 'number') throw invalidArgType('length', 'of type number', length, caller);
      if (!Number.isSafeInteger(length) || length <= 0 || length > avail) throw outOfRange('length', `an integer > 0 && <= ${avail} (the buffer's size past bufferOffset)`, length, caller);
      len = length;
    }
    if (len === 0) throw invalidArgValue('buf', '[empty]', 'must not be empty or detached', caller);
    const lbs = this.logicalBlockSize;
    if (pos % BigInt(lbs) !== 0n) throw outOfRange('position', `a multiple of the logical block size (${lbs}) for O_DIRECT`, position, caller);
    if (len % lbs !== 0) throw outOfRange('length', `a multiple of the logical block size (${lbs}) for O_DIRECT`, len, caller);
    if (pos + BigInt(len) > this.size) {
      throw outOfRange('position + length', `<= ${this.size} (the end of namespace ${this.path})`, pos + BigInt(len), caller);
    }
    const addr = native.viewAddress(target.view);
    if (addr % this.dmaAlignment !== 0) {
      throw invalidArgValue('buf', `[address 0x${addr.toString(16)}]`, `must start at a multiple of ${this.dmaAlignment} bytes (the device's DMA alignment, queue/dma_alignment + 1) for O_DIRECT`, caller);
    }
    return { target: { view: target.view.subarray(0, len), mapping: target.mapping }, pos };
  }

  /** Holds the fd while the started operation runs; a handle closed while queued rejects. */
  #held<T>(caller: Function, start: (fd: number) => Promise<T>, onError: (e: unknown) => unknown): Promise<T> {
    if (this.#fd.closed) return Promise.reject(closedError(`Nvme '${this.path}'`, caller));
    const release = hold(this.#fd);
    let p: Promise<T>;
    try {
      p = start(this.#fd.fd);
    } catch (e) {
      release();
      return Promise.reject(onError(e));
    }
    return p.then(
      (v) => {
        release();
        return v;
      },
      (e: unknown) => {
        release();
        throw onError(e);
      },
    );
  }

  /**
   * A SystemError with the path; a refused peer-to-peer mapping into or from
   * p2pmem says why the devices cannot reach each other. Linux 6.12 refuses
   * it with EREMOTEIO; 7.x's block DMA mapping with EINVAL, which has other
   * causes too, so EINVAL is explained only when the topology says so.
   */
  #ioError(e: unknown, target: Target, write: boolean, request?: string): unknown {
    const err = fromNative(e, { path: this.path, request }) as SystemError;
    const refused = err?.code === 'EREMOTEIO' || err?.code === 'EINVAL';
    if (!refused || !(target.mapping instanceof P2pBuffer) || this.pci === undefined) return err;
    let topo: P2pTopology | undefined;
    try {
      topo = P2pMem.topology(target.mapping.provider, this.pci, { sysfs: this.#sysfs });
    } catch {
      topo = undefined;
    }
    if (err.code === 'EINVAL' && topo?.mapType !== 'NOT_SUPPORTED') return err;
    const why = topo === undefined ? 'the kernel refused the peer-to-peer mapping' : `${topo.kernel ?? topo.mapType}: ${topo.reason.replace(/^\S+ -> \S+: /, '')}`;
    err.message +=
      `: ${this.controller} (${this.pci}) and the p2pmem provider ${target.mapping.provider} cannot reach each other ` +
      `peer to peer (${write ? 'write from' : 'read into'} a P2pBuffer); ${why}`;
    (err as SystemError & { topology?: P2pTopology }).topology = topo;
    return err;
  }

  // -------------------------------------------------------------------------
  // passthrough

  /**
   * An NVMe command through NVME_IOCTL_IO64_CMD (or ADMIN64_CMD with
   * `admin: true`), on the thread pool. Resolves with the completion's
   * result; a non-zero NVMe status rejects with ERR_P2PDMA_NVME_STATUS, the
   * status decoded and named; an errno from the kernel with a SystemError.
   */
  passthru(command: NvmePassthruCommand): Promise<NvmePassthruResult> {
    try {
      const c = this.#command(command, this.passthru);
      const bounce = c.target !== undefined && detachable(c.target) ? BOUNCE_IN | ((c.opcode & 2) !== 0 ? BOUNCE_OUT : 0) : 0;
      const run = (fd: number): Promise<NvmePassthruResult> =>
        native.nvmePassthru(fd, c.admin, c.cmd, c.target?.view, c.target?.mapping ?? this, bounce, c.signal).then(
          ({ status, result }) => {
            if (status !== 0) throw statusError(status, c.opcode, c.admin, this.path);
            return { result };
          },
          (e: unknown) => {
            throw c.target === undefined ? fromNative(e, { path: this.path, request: c.request }) : this.#ioError(e, c.target, (c.opcode & 1) === 1, c.request);
          },
        );
      const ring = this.#ringFor(c.admin);
      if (ring !== undefined) {
        if (c.signal?.aborted) return Promise.reject(abortError(c.signal.reason, this.passthru));
        const request = c.admin ? 'NVME_URING_CMD_ADMIN' : 'NVME_URING_CMD_IO';
        const p = native.nvmeUringCmd(nativeOf(ring, this.passthru), c.admin, c.cmd, c.target?.view, c.target?.mapping ?? this, bounce, c.signal).then(
          ({ status, result }) => {
            if (status !== 0) throw statusError(status, c.opcode, c.admin, this.path);
            return { result };
          },
          (e: unknown) => {
            throw c.target === undefined ? fromNative(e, { path: this.path, request }) : this.#ioError(e, c.target, (c.opcode & 1) === 1, request);
          },
        );
        return abortable(p, c.signal, this.passthru);
      }
      return throttled(c.signal, this.passthru, () => abortable(this.#held(this.passthru, run, (e) => e), c.signal, this.passthru));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The fd a command goes to on the ring, or undefined: the thread pool (see `engines`). */
  #ringFor(admin: boolean): Fd | undefined {
    if (currentEngine() !== 'io_uring' || !ringPassthru) return undefined;
    if (this.kind === 'controller') return admin ? this.#fd : undefined;
    if (admin || this.generic === undefined || this.#ng === null) return undefined;
    if (this.#ng === undefined) {
      try {
        this.#ng = Fd.open(this.generic, this.#readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR);
      } catch {
        // No permission on it, or it went away: the ioctl path still works.
        this.#ng = null;
        return undefined;
      }
    }
    return this.#ng;
  }

  passthruSync(command: Omit<NvmePassthruCommand, 'signal'>): NvmePassthruResult {
    const c = this.#command(command, this.passthruSync);
    let r: { status: number; result: bigint };
    try {
      r = native.nvmePassthruSync(this.#fd.fd, c.admin, c.cmd, c.target?.view);
    } catch (e) {
      const err = c.target === undefined ? fromNative(e, { path: this.path, request: c.request }) : this.#ioError(e, c.target, (c.opcode & 1) === 1, c.request);
      if (err instanceof Error) Error.captureStackTrace(err, this.passthruSync);
      throw err;
    }
    if (r.status !== 0) throw statusError(r.status, c.opcode, c.admin, this.path, this.passthruSync);
    return { result: r.result };
  }

  #command(command: unknown, caller: Function) {
    validateObject(command, 'command', caller);
    if (this.#fd.closed) throw closedError(`Nvme '${this.path}'`, caller);
    const c = command as NvmePassthruCommand;
    const opcode = c.opcode;
    if (typeof opcode !== 'number') throw invalidArgType('command.opcode', 'of type number', opcode, caller);
    if (!Number.isInteger(opcode) || opcode < 0 || opcode > 0xff) throw outOfRange('command.opcode', 'an integer >= 0 && <= 255', opcode, caller);
    const admin = c.admin ?? false;
    if (typeof admin !== 'boolean') throw invalidArgType('command.admin', 'of type boolean', admin, caller);
    const nsid = toU32('command.nsid', c.nsid, caller, admin ? 0 : this.nsid ?? 0);
    // The driver refuses (EINVAL, with only a dmesg line) an I/O command whose
    // nsid is not the namespace the fd was opened on.
    if (!admin && this.nsid !== undefined && nsid !== this.nsid) {
      throw invalidArgValue('command.nsid', nsid, `must be this namespace's id (${this.nsid}, ${this.path}): the driver refuses I/O commands for another namespace through it; open that namespace or its controller`, caller);
    }
    const signal = signalOf({ signal: c.signal }, caller);
    const opDir = opcode & 3;
    const direction = c.direction ?? (opDir === 1 ? 'write' : opDir === 2 ? 'read' : 'none');
    if (direction !== 'none' && direction !== 'read' && direction !== 'write') {
      throw invalidArgValue('command.direction', direction, "must be 'none', 'read' or 'write'", caller);
    }
    const implied = opDir === 1 ? 'write' : opDir === 2 ? 'read' : opDir === 3 ? 'bidirectional' : 'none';
    if (c.data !== undefined && direction !== implied) {
      throw invalidArgValue('command.direction', direction, `must agree with the opcode 0x${opcode.toString(16)}, whose low bits make the transfer '${implied}' (the kernel goes by the opcode)`, caller);
    }
    if (c.data === undefined && direction !== 'none') throw invalidArgValue('command.data', undefined, `is required for a '${direction}' command`, caller);
    let target: Target | undefined;
    if (c.data !== undefined) {
      target = toTarget(c.data, 'command.data', caller);
      const len = c.dataLength ?? target.view.byteLength;
      if (typeof len !== 'number') throw invalidArgType('command.dataLength', 'of type number', len, caller);
      if (!Number.isSafeInteger(len) || len < 0 || len > target.view.byteLength || len > 0xffffffff) {
        throw outOfRange('command.dataLength', `an integer >= 0 && <= ${Math.min(target.view.byteLength, 0xffffffff)}`, len, caller);
      }
      // The driver maps the buffer as one request: past the queue's limit
      // (the controller's MDTS) it fails with a bare EINVAL.
      if (this.maxTransfer > 0 && len > this.maxTransfer) {
        throw outOfRange('command.dataLength', `<= ${this.maxTransfer} (the controller's maximum transfer, queue/max_hw_sectors_kb of ${this.path}); split the command`, len, caller);
      }
      target = { view: target.view.subarray(0, len), mapping: target.mapping };
    }
    const L = uapi.nvme_passthru_cmd64;
    const F = L.fields;
    const cmd = new Uint8Array(L.size);
    const dv = new DataView(cmd.buffer);
    dv.setUint8(F.opcode, opcode);
    dv.setUint8(F.flags, toU32('command.flags', c.flags, caller) & 0xff);
    dv.setUint32(F.nsid, nsid, true);
    dv.setUint32(F.cdw2, toU32('command.cdw2', c.cdw2, caller), true);
    dv.setUint32(F.cdw3, toU32('command.cdw3', c.cdw3, caller), true);
    const cdws = [
      [F.cdw10, c.cdw10], [F.cdw11, c.cdw11], [F.cdw12, c.cdw12], [F.cdw13, c.cdw13], [F.cdw14, c.cdw14], [F.cdw15, c.cdw15],
    ] as const;
    cdws.forEach(([at, v], i) => dv.setUint32(at, toU32(`command.cdw${10 + i}`, v, caller), true));
    dv.setUint32(F.timeout_ms, toU32('command.timeoutMs', c.timeoutMs, caller), true);
    const request = admin ? 'NVME_IOCTL_ADMIN64_CMD' : 'NVME_IOCTL_IO64_CMD';
    return { cmd, admin, opcode, signal, target, request };
  }
}

/** NVMe I/O opcodes and helpers for passthru() users. */
export const nvmeOpcodes = Object.freeze({ FLUSH: 0x00, WRITE: 0x01, READ: 0x02, WRITE_ZEROES: 0x08, IDENTIFY: OPC_IDENTIFY });
