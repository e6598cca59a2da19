/**
 * NVIDIA GPU memory as a dma-buf: `Cuda.exportDmaBuf(ptr, size)` calls the
 * driver API's cuMemGetHandleForAddressRange (CUDA 11.7+, an open kernel
 * module) so an RDMA NIC or another device can import GPU memory (the
 * supported path since nvidia-peermem's deprecation).
 *
 * libcuda is loaded at run time with koffi (an optional dependency), on
 * first use only: this module costs nothing without a GPU, and its errors
 * say what is missing (koffi, libcuda, or what CUDA answered).
 */
import { type CodedError, invalidArgType, outOfRange } from '../core/errors';
import { DmaBuf } from './dmabuf';

/** The library loaded: `P2PDMA_LIBCUDA` (a path) overrides it. */
export const LIBCUDA = 'libcuda.so.1';
// cuda.h: CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD
const CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD = 1;
const U64_MAX = 2n ** 64n - 1n;

interface Driver {
  cuMemGetHandleForAddressRange(handle: number[], ptr: bigint, size: bigint, type: number, flags: bigint): number;
  cuGetErrorName(code: number, out: (string | null)[]): number;
}

let driver: Driver | undefined;

function coded(message: string, code: string, caller: Function, cause?: unknown): CodedError {
  const e = new Error(message, cause === undefined ? undefined : { cause }) as CodedError;
  e.code = code;
  Error.captureStackTrace(e, caller);
  return e;
}

interface Koffi {
  load(path: string): { func(definition: string): (...args: unknown[]) => unknown };
  out(t: unknown): unknown;
  pointer(t: string): unknown;
}

function load(caller: Function): Driver {
  if (driver !== undefined) return driver;
  let koffi: Koffi;
  try {
    koffi = require('koffi') as Koffi;
  } catch (cause) {
    throw coded(`Cuda needs the optional dependency koffi to load ${LIBCUDA}; install it with: npm install koffi`, 'ERR_P2PDMA_NO_KOFFI', caller, cause);
  }
  const lib = process.env.P2PDMA_LIBCUDA || LIBCUDA;
  let h;
  try {
    h = koffi.load(lib);
  } catch (cause) {
    throw coded(
      `Cannot load ${lib} (the NVIDIA driver's CUDA library): ${(cause as Error).message}. ` +
        'Install the NVIDIA driver (with its open kernel module for dma-buf export), or set P2PDMA_LIBCUDA to the library\'s path',
      'ERR_P2PDMA_NO_LIBCUDA',
      caller,
      cause,
    );
  }
  const cuInit = h.func('int cuInit(unsigned int flags)');
  const d: Driver = {
    cuMemGetHandleForAddressRange: h.func(
      'int cuMemGetHandleForAddressRange(_Out_ int *handle, uint64_t dptr, size_t size, int handleType, unsigned long long flags)',
    ) as Driver['cuMemGetHandleForAddressRange'],
    cuGetErrorName: h.func('int cuGetErrorName(int error, _Out_ const char **pStr)') as Driver['cuGetErrorName'],
  };
  const r = cuInit(0) as number;
  if (r !== 0) throw cudaError(d, r, 'cuInit', caller);
  driver = d;
  return d;
}

function cudaError(d: Driver, r: number, fn: string, caller: Function): CodedError {
  const name: (string | null)[] = [null];
  const known = d.cuGetErrorName(r, name) === 0 && name[0] ? name[0] : `CUresult ${r}`;
  const e = coded(`${fn} failed: ${known}`, 'ERR_P2PDMA_CUDA', caller) as CodedError & { cuResult: number; cuName: string };
  e.cuResult = r;
  e.cuName = known;
  return e;
}

function toU64(name: string, v: unknown, caller: Function): bigint {
  if (typeof v === 'bigint') {
    if (v >= 0n && v <= U64_MAX) return v;
    throw outOfRange(name, `>= 0n && <= ${U64_MAX}n`, v, caller);
  }
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v >= 0) return BigInt(v);
    throw outOfRange(name, `an integer >= 0 && <= ${Number.MAX_SAFE_INTEGER}`, v, caller);
  }
  throw invalidArgType(name, 'of type bigint or number', v, caller);
}

export const Cuda = Object.freeze({
  /**
   * Exports `size` bytes of device memory at `ptr` (a CUdeviceptr from
   * cuMemAlloc; both page-aligned, as CUDA requires) as a DmaBuf.
   * Throws ERR_P2PDMA_NO_KOFFI / ERR_P2PDMA_NO_LIBCUDA when those are
   * missing, ERR_P2PDMA_CUDA (with `cuName`, e.g. CUDA_ERROR_NOT_SUPPORTED)
   * when CUDA refuses.
   */
  exportDmaBuf(ptr: bigint | number, size: bigint | number): DmaBuf {
    const p = toU64('ptr', ptr, Cuda.exportDmaBuf);
    const s = toU64('size', size, Cuda.exportDmaBuf);
    if (s === 0n) throw outOfRange('size', '> 0', size, Cuda.exportDmaBuf);
    const d = load(Cuda.exportDmaBuf);
    const fd = [-1];
    const r = d.cuMemGetHandleForAddressRange(fd, p, s, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0n);
    if (r !== 0) throw cudaError(d, r, 'cuMemGetHandleForAddressRange', Cuda.exportDmaBuf);
    return new DmaBuf(fd[0]);
  },

  /** Whether libcuda loads and initialises here (false, never throws, without koffi or a GPU). */
  available(): boolean {
    try {
      load(Cuda.available);
      return true;
    } catch {
      return false;
    }
  },
});
