/** RDMA errors: failed work completions, a missing rdma-core library, native errors for the public API. */
import { type CodedError, fromNative } from '../core/errors';
import { native } from '../core/native';
import type { RdmaOp } from './cq';

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
export const WC_WR_FLUSH_ERR = 5;

export function completionError(status: number, vendorErr: number, wrId: number, op: RdmaOp, detail?: string): RdmaCompletionError {
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
export function libraryError(e: NativeLibraryError, caller?: Function): CodedError {
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

/** Runs `f`, converting what it throws as rdmaError() does. @internal */
export function call<T>(caller: Function, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw rdmaError(e, caller);
  }
}
