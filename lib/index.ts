/**
 * p2pdma: Linux peer-to-peer DMA and dma-buf from Node.js.
 *
 * Core: `ioctlSync`/`ioctl` (promise) with `ioc` encoders, `mmap` -> `Mapping`, the
 * `Fd` handle base, `pollOnce`/`Poller` readiness on the event loop,
 * Node-style system errors, and `capabilities()`.
 *
 * Values are re-exported as plain data properties (`export const`), not as
 * `export { x } from` re-exports: TypeScript compiles those to getters, and a
 * getter on every `p2pdma.ioctl(...)` call costs about 10 ns on the hot path.
 */
import * as caps from './capabilities';
import * as errors from './errors';
import * as eventfds from './eventfd';
import * as handle from './handle';
import * as ioctls from './ioctl';
import * as memfds from './memfd';
import * as mmaps from './mmap';
import { native } from './native';
import * as polls from './poll';
import * as rdmas from './rdma';
import * as rdmaCm from './rdma-cm';

export type {
  Capabilities,
  CapabilitiesOptions,
  Capability,
  DmaHeapsCapability,
  DrmCapability,
  DrmNode,
  LibibverbsCapability,
  P2pmemCapability,
  P2pmemProvider,
  RdmaCapability,
  RdmaDevice,
  UdmabufCapability,
} from './capabilities';
export type { CodedError, ErrorContext, SystemError } from './errors';
export type { FdLike } from './handle';
export type { IoctlArg, IoctlOptions, IoctlSyncOptions } from './ioctl';
export type { MemfdOptions } from './memfd';
export type { AbortOptions, MapFlag, MmapOptions, MsyncFlag, Prot } from './mmap';
export type { EventFdOptions, EventFdReadOptions } from './eventfd';
export type { PollEvent, PollerOptions, PollOnceOptions } from './poll';
export type {
  LocalBuffer,
  QueuePairInfo,
  QueuePairOptions,
  RdmaAccess,
  RdmaCompletion,
  RdmaCompletionError,
  RdmaDeviceAttributes,
  RdmaDeviceInfo,
  RdmaGid,
  RdmaOp,
  RdmaPort,
  RdmaPortAttributes,
  RdmaTarget,
  RegisterOptions,
  RemoteRegion,
  WorkRequest,
} from './rdma';
export type { CmEndpoint, ConnectionOptions } from './rdma-cm';

// ioctl
/** ioctlSync(fd, request, arg?, { name }?): the ioctl's result; throws a SystemError. See lib/ioctl.ts. */
export const ioctlSync = ioctls.ioctlSync;
/** ioctl(fd, request, arg?, { name, signal }?) on the thread pool: a Promise of the result. */
export const ioctl = ioctls.ioctl;
/** `_IO/_IOR/_IOW/_IOWR` encoders and decoders. */
export const ioc = ioctls.ioc;
/** Request numbers of the ioctls this package knows. */
export const requests = ioctls.requests;
export const registerRequests = ioctls.registerRequests;
export const requestName = ioctls.requestName;

// mmap
/** mmap(fd, length, { prot, flags, offset }) -> Mapping. */
export const mmap = mmaps.mmap;
export const Mapping = mmaps.Mapping;
export type Mapping = mmaps.Mapping;
/** The system page size in bytes. */
export const pageSize = mmaps.pageSize;
/** The largest `.buffer`/`window()` this Node can make (buffer.constants.MAX_LENGTH). */
export const maxViewLength = mmaps.maxViewLength;

// handles
/** An owned file descriptor: the base of every handle type. */
export const Fd = handle.Fd;
export type Fd = handle.Fd;
/** memfd_create(2) as an Fd. */
export const memfd = memfds.memfd;
/** eventfd(2) as an EventFd. */
export const eventfd = eventfds.eventfd;
export const EventFd = eventfds.EventFd;
export type EventFd = eventfds.EventFd;

// poll
/** Waits on the event loop (uv_poll, no pool thread) until an fd is ready. */
export const pollOnce = polls.pollOnce;
/** A callback per readiness event of an fd. */
export const Poller = polls.Poller;
export type Poller = polls.Poller;

// errors
export const errnoName = errors.errnoName;
export const errnoDescription = errors.errnoDescription;
export const errnoFromName = errors.errnoFromName;
export const sysError = errors.sysError;

// capabilities
/** What this kernel and machine offer, with reasons for what is absent. */
export const capabilities = caps.capabilities;

/** PROT_*, MAP_*, MS_* and MFD_* values of this platform. */
export const constants = Object.freeze({ ...native.mmapConstants, ...native.memfdConstants });

// RDMA
/**
 * RDMA verbs: devices(), open(), loopbackPair(), library(), and rdma_cm's
 * listen() / connect(). The classes are reached through it (types only here).
 */
export const Rdma = Object.freeze({ ...rdmas.Rdma, listen: rdmaCm.listen, connect: rdmaCm.connect });
export type RdmaContext = rdmas.RdmaContext;
export type ProtectionDomain = rdmas.ProtectionDomain;
export type MemoryRegion = rdmas.MemoryRegion;
export type CompletionQueue = rdmas.CompletionQueue;
export type QueuePair = rdmas.QueuePair;
export type RdmaConnection = rdmaCm.Connection;
export type RdmaListener = rdmaCm.Listener;
