/**
 * RDMA verbs: devices, contexts, protection domains, memory regions (host
 * memory, mappings of device memory, dma-bufs), completion queues, RC and
 * UD queue pairs, shared receive queues, address handles, async events,
 * with work requests as promises. One module per verbs object,
 * as in rdma-core's pyverbs: device.ts (devices, ports, RdmaContext, the
 * Rdma entry points), pd.ts, mr.ts, cq.ts, qp.ts; cm.ts is rdma_cm. This
 * file says what they share, and exports what lib/index.ts uses.
 *
 * libibverbs is loaded at run time (never linked): everything else in this
 * package works without rdma-core, and the first RDMA call on such a
 * machine throws ERR_P2PDMA_RDMA_LIBRARY naming the library or symbol.
 *
 * Completions: each CompletionQueue has its own completion channel, whose
 * fd is watched on the event loop by a `Poller` (lib/core/poll.ts): no busy
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
 * Lifetimes (native/rdma/rdma.h): an MR keeps its PD and its memory alive, a PD
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
 * AbortSignal, the package's one rule (lib/core/abort.ts): an abort before
 * the call cancels it; after, the promise rejects at once with an
 * AbortError and what the device already has runs to its end: a
 * registration on the pool completes and its MR is then closed; a posted
 * work request stays in the queue (nothing recalls one) and keeps its MR
 * and queue slot until its completion arrives, which is then discarded.
 * `qp.close()` ends every posted request (IBV_WC_WR_FLUSH_ERR).
 *
 * Unsignaled requests (`{ signaled: false }`) have no completion of their
 * own: their promises resolve when a later signaled request on the same
 * QP completes (the send queue completes in order), and reject on their
 * own when they fail (errors always complete). A post that would fill the
 * send queue with unsignaled requests, leaving no room for the signaled
 * one that settles them, is refused with ENOMEM.
 */
export { AddressHandle } from './ah';
export { MemoryWindow } from './mw';
export { type SharedReceiveQueueOptions, SharedReceiveQueue } from './srq';
export { type RdmaAsyncEvent, type RdmaDeviceAttributes, type RdmaDeviceAttributesEx, type RdmaDeviceInfo, type RdmaGid, type RdmaPort, type RdmaPortAttributes, Rdma, RdmaContext, ports } from './device';
export { type RdmaCompletion, type RdmaOp, CompletionQueue } from './cq';
export { type RdmaCompletionError, rdmaError } from './errors';
export { MemoryRegion, type RemoteRegion } from './mr';
export { ProtectionDomain } from './pd';
export {
  type LocalBuffer,
  type LocalBuffers,
  type PreparableRequest,
  type QueuePairAttributes,
  type QueuePairInfo,
  type QueuePairOptions,
  type QueuePairType,
  type WorkRequest,
  type WorkRequestOptions,
  QueuePair,
  remoteAddress,
} from './qp';
export { type PrepareOptions, PreparedRequest } from './prepared';
export { RdmaResource } from './resource';
export { type AllocMemoryOptions, type RdmaAccess, type RdmaTarget, type RegisterDmaBufOptions, type RegisterOptions, resolveTarget } from './target';
