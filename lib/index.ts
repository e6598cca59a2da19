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
import * as caps from './core/capabilities';
import * as info from './core/info';
import * as errors from './core/errors';
import * as eventfds from './core/eventfd';
import * as handle from './core/handle';
import * as ioctls from './core/ioctl';
import * as memfds from './core/memfd';
import * as mmaps from './core/mmap';
import { native } from './core/native';
import * as polls from './core/poll';
import * as p2pmems from './pci/p2pmem';
import * as pci from './pci/pci';
import * as nvmes from './pci/nvme';
import * as rdmas from './rdma';
import * as rdmaCm from './rdma/cm';

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
} from './core/capabilities';
export type { CodedError, ErrorContext, SystemError } from './core/errors';
export type { FdLike } from './core/handle';
export type { IoctlArg, IoctlOptions, IoctlSyncOptions } from './core/ioctl';
export type { MemfdOptions } from './core/memfd';
export type { AbortOptions, MapFlag, MmapOptions, MsyncFlag, Prot } from './core/mmap';
export type { EventFdOptions, EventFdReadOptions } from './core/eventfd';
export type { PollEvent, PollerOptions, PollOnceOptions } from './core/poll';
export type {
  LocalBuffer,
  LocalBuffers,
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
  WorkRequestOptions,
} from './rdma';
export type { CmEndpoint, ConnectionOptions } from './rdma/cm';

// ioctl
/** ioctlSync(fd, request, arg?, { name }?): the ioctl's result; throws a SystemError. See lib/core/ioctl.ts. */
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
/** capabilities() and more, what `p2pdma info` prints: the series, the P2P matrix, RDMA ports, io_uring, the IOMMU. */
export const machineInfo = info.machineInfo;
export type { MachineInfo, MachineInfoOptions, P2pMatrixEntry, RdmaDeviceState, RdmaPortState, SeriesInfo, IoUringInfo, IommuInfo } from './core/info';

/** PROT_*, MAP_*, MS_* and MFD_* values of this platform. */
export const constants = Object.freeze({ ...native.mmapConstants, ...native.memfdConstants });

// PCI, p2pmem and NVMe (lib/pci/pci.ts, lib/pci/p2pmem.ts, lib/pci/nvme.ts)
export type { PciBar, PciDevice, PciOptions, P2pmemInfo } from './pci/pci';
export type { MapType, P2pMemOptions, P2pTopology, P2pmemProvider as P2pMemProvider } from './pci/p2pmem';
/** PCI devices from sysfs: ids, driver, BARs, upstream bridges, p2pmem. */
export const Pci = pci.Pci;
/** p2pmem providers, allocation (P2pBuffer) and P2P reachability between PCI devices. */
export const P2pMem = p2pmems.P2pMem;
export const P2pBuffer = p2pmems.P2pBuffer;
export type P2pBuffer = p2pmems.P2pBuffer;
export type {
  NvmeBuffer,
  NvmeCmb,
  NvmeControllerInfo,
  NvmeEngine,
  NvmeIdentify,
  NvmeIoOptions,
  NvmeNamespaceInfo,
  NvmeOpenOptions,
  NvmePassthruCommand,
  NvmePassthruResult,
  NvmeRwOptions,
  NvmeStatusError,
} from './pci/nvme';
/**
 * NVMe: `open()` gives a namespace or controller handle (identify(), O_DIRECT
 * read/write, peer to peer into a P2pBuffer, passthru()); `engine` says (or
 * sets) what runs the promise forms, io_uring or the thread pool;
 * `maxInFlight` and `queue` are the thread-pool guard. The class is reached through open()
 * (a type only here), as the RDMA classes are through Rdma.
 */
export const Nvme: {
  open(devicePath: string, options?: nvmes.NvmeOpenOptions): nvmes.Nvme;
  maxInFlight: number;
  readonly queue: { inFlight: number; waiting: number };
  engine: nvmes.NvmeEngine;
  readonly engineInfo: { engine: nvmes.NvmeEngine; reason: string };
} = Object.freeze({
  open: (devicePath: string, options?: nvmes.NvmeOpenOptions): nvmes.Nvme => nvmes.Nvme.open(devicePath, options),
  get maxInFlight(): number {
    return nvmes.Nvme.maxInFlight;
  },
  set maxInFlight(n: number) {
    nvmes.Nvme.maxInFlight = n;
  },
  get queue(): { inFlight: number; waiting: number } {
    return nvmes.Nvme.queue;
  },
  get engine(): nvmes.NvmeEngine {
    return nvmes.Nvme.engine;
  },
  set engine(e: nvmes.NvmeEngine) {
    nvmes.Nvme.engine = e;
  },
  get engineInfo(): { engine: nvmes.NvmeEngine; reason: string } {
    return nvmes.Nvme.engineInfo;
  },
});
export type Nvme = nvmes.Nvme;
/** Decodes an NVMe status field: SCT, SC, name, DNR. */
export const nvmeStatus = nvmes.nvmeStatus;
export const nvmeOpcodes = nvmes.nvmeOpcodes;
// dma-buf
import * as dmabufMod from './dmabuf/dmabuf';
import * as dmaHeaps from './dmabuf/dma-heap';
import * as udmabufs from './dmabuf/udmabuf';
import * as syncFiles from './dmabuf/sync-file';
import * as drms from './dmabuf/drm';
export type { AccessMode, DmaBufFromOptions, DmaBufInfo, DmaBufMapOptions } from './dmabuf/dmabuf';
export type { DmaHeapAllocOptions } from './dmabuf/dma-heap';
export type { UdmabufItem, UdmabufOptions } from './dmabuf/udmabuf';
export type { FenceInfo, FenceState, SyncFileInfo, WaitOptions } from './dmabuf/sync-file';
export type { CreateBufferOptions, CreateDumbOptions, DrmNodeInfo, DrmVersion } from './dmabuf/drm';
/** A dma-buf handle: size, fdinfo, name, CPU-access brackets, map, fences. */
export const DmaBuf = dmabufMod.DmaBuf;
export type DmaBuf = dmabufMod.DmaBuf;
export const CpuAccess = dmabufMod.CpuAccess;
export type CpuAccess = dmabufMod.CpuAccess;
export const isDmaBuf = dmabufMod.isDmaBuf;
/** dma-buf heaps: DmaHeap.list(), DmaHeap.open(name), heap.alloc(size). */
export const DmaHeap = dmaHeaps.DmaHeap;
export type DmaHeap = dmaHeaps.DmaHeap;
/** udmabuf: dma-bufs over memfd pages. */
export const Udmabuf = udmabufs.Udmabuf;
export type Udmabuf = udmabufs.Udmabuf;
/** sync_file: fences as an fd. */
export const SyncFile = syncFiles.SyncFile;
export type SyncFile = syncFiles.SyncFile;
/** DRM devices: Drm.devices(), Drm.open(); PRIME export/import, dumb buffers, vgem fences. */
export const Drm = drms.Drm;
export const DrmDevice = drms.DrmDevice;
export type DrmDevice = drms.DrmDevice;
export const GemBuffer = drms.GemBuffer;
export type GemBuffer = drms.GemBuffer;
export const DRM_CAPS = drms.DRM_CAPS;
export const DRM_CLIENT_CAPS = drms.DRM_CLIENT_CAPS;
export type DrmCap = drms.DrmCap;
export type DrmClientCap = drms.DrmClientCap;
import * as cudas from './dmabuf/cuda';
/** NVIDIA GPU memory as a dma-buf (libcuda through the optional koffi, loaded on first use). */
export const Cuda = cudas.Cuda;
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
import * as inspect from './dmabuf/dmabuf-inspect';
export type { DmaBufReport, DmaBufSharer, DmaBufsOptions, ExporterTotal, InspectedDmaBuf } from './dmabuf/dmabuf-inspect';
/** Every dma-buf held by every process (or one), from /proc: `p2pdma dmabuf ls`. */
export const dmabufs = inspect.dmabufs;
