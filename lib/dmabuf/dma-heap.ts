/**
 * dma-buf heaps (/dev/dma_heap/<name>): allocate dma-bufs from a named
 * heap ('system'; the default CMA area, 'reserved' up to 6.12 and
 * 'default_cma_region' on 7.3; 'system_cc_shared' on 7.3...) with
 * DMA_HEAP_IOCTL_ALLOC.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { invalidArgType, invalidArgValue, outOfRange, validateObject } from '../core/errors';
import { Fd } from '../core/handle';
import { requests } from '../core/ioctl';
import { native } from '../core/native';
import { DmaBuf } from './dmabuf';
import { ioctlNewFd, ioctlNewFdAsync } from './dmabuf-ioctl';
import { uapi } from '../core/uapi';

/** Where heaps appear. */
export const DMA_HEAP_DIR = '/dev/dma_heap';

const C = native.dmabufConstants;
const FD_OFFSET = 8;
const U32_MAX = 0xffffffff;
const U64_MAX = 2n ** 64n - 1n;

export interface DmaHeapAllocOptions {
  /**
   * Open flags of the new dma-buf fd (the kernel accepts O_RDWR, O_RDONLY,
   * O_WRONLY and O_CLOEXEC only). Default O_RDWR. O_CLOEXEC is always added.
   */
  fdFlags?: number;
  /** Heap-specific flags; no upstream heap defines any, so anything but 0 is EINVAL. Default 0. */
  heapFlags?: number | bigint;
  /** The promise form only: aborting rejects at once; the buffer, once made, is closed. */
  signal?: AbortSignal;
}

function toSize(size: unknown, caller: Function): bigint {
  if (typeof size === 'number') {
    if (Number.isSafeInteger(size) && size > 0) return BigInt(size);
    throw outOfRange('size', `an integer > 0 && <= ${Number.MAX_SAFE_INTEGER}`, size, caller);
  }
  if (typeof size === 'bigint') {
    if (size > 0n && size <= BigInt(Number.MAX_SAFE_INTEGER)) return size;
    throw outOfRange('size', `> 0n && <= ${Number.MAX_SAFE_INTEGER}n`, size, caller);
  }
  throw invalidArgType('size', 'of type number or bigint', size, caller);
}

function allocArg(size: unknown, options: unknown, caller: Function): Buffer {
  const len = toSize(size, caller);
  validateObject(options, 'options', caller);
  const { fdFlags = C.O_RDWR, heapFlags = 0 } = options as DmaHeapAllocOptions;
  if (typeof fdFlags !== 'number') throw invalidArgType('options.fdFlags', 'of type number', fdFlags, caller);
  if (!Number.isInteger(fdFlags) || fdFlags < 0 || fdFlags > U32_MAX) throw outOfRange('options.fdFlags', `an integer >= 0 && <= ${U32_MAX}`, fdFlags, caller);
  let hf: bigint;
  if (typeof heapFlags === 'number' && Number.isSafeInteger(heapFlags) && heapFlags >= 0) hf = BigInt(heapFlags);
  else if (typeof heapFlags === 'bigint' && heapFlags >= 0n && heapFlags <= U64_MAX) hf = heapFlags;
  else if (typeof heapFlags === 'number' || typeof heapFlags === 'bigint') throw outOfRange('options.heapFlags', `>= 0 && <= ${U64_MAX}`, heapFlags, caller);
  else throw invalidArgType('options.heapFlags', 'of type number or bigint', heapFlags, caller);
  const L = uapi.dma_heap_allocation_data;
  const arg = Buffer.alloc(L.size);
  arg.writeBigUInt64LE(len, L.fields.len);
  arg.writeUInt32LE(((fdFlags | C.O_CLOEXEC) >>> 0), L.fields.fd_flags);
  arg.writeBigUInt64LE(hf, L.fields.heap_flags);
  return arg;
}

/** An open dma-buf heap. */
// DmaHeap.open(name) takes a heap name, not Fd.open's (path, flags, mode).
// @ts-expect-error TS2417: the static side differs from Fd's on purpose.
export class DmaHeap extends Fd {
  /** This heap's name, e.g. `'system'`. */
  name = '';

  /** The heaps this kernel offers (names under /dev/dma_heap); [] without heap support. */
  static list(): string[] {
    try {
      return fs.readdirSync(DMA_HEAP_DIR).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  /**
   * Opens /dev/dma_heap/<name>. A missing heap throws ENOENT with the path
   * and, in the message, the heaps there are.
   */
  static override open(name: string = 'system'): DmaHeap {
    if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name, DmaHeap.open);
    if (name === '' || name.includes('/') || name === '.' || name === '..') {
      throw invalidArgValue('name', name, 'must be a heap name (see DmaHeap.list())', DmaHeap.open);
    }
    const p = path.join(DMA_HEAP_DIR, name);
    let heap: DmaHeap;
    try {
      heap = new DmaHeap(fs.openSync(p, fs.constants.O_RDONLY | native.dmabufConstants.O_CLOEXEC));
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') {
        const heaps = DmaHeap.list();
        err.message += heaps.length > 0 ? ` (heaps here: ${heaps.join(', ')})` : ' (this kernel has no dma-buf heaps: CONFIG_DMABUF_HEAPS)';
      }
      Error.captureStackTrace(err, DmaHeap.open);
      throw err;
    }
    heap.name = name;
    return heap;
  }

  /** Allocates `size` bytes (rounded up to pages by the heap) on the thread pool. */
  alloc(size: number | bigint, options: DmaHeapAllocOptions = {}): Promise<DmaBuf> {
    let arg: Buffer;
    let fd: number;
    try {
      arg = allocArg(size, options, this.alloc);
      const { signal } = options;
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, this.alloc);
      fd = this.fd;
    } catch (e) {
      return Promise.reject(e);
    }
    return ioctlNewFdAsync(DmaBuf, this, fd, requests.DMA_HEAP_IOCTL_ALLOC, arg, FD_OFFSET, options.signal);
  }

  /** Allocates `size` bytes, blocking the thread while the heap gathers pages. */
  allocSync(size: number | bigint, options: Omit<DmaHeapAllocOptions, 'signal'> = {}): DmaBuf {
    const arg = allocArg(size, options, this.allocSync);
    return ioctlNewFd(DmaBuf, this.fd, requests.DMA_HEAP_IOCTL_ALLOC, arg, FD_OFFSET, this.allocSync);
  }
}
