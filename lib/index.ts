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
import * as nvmeofs from './pci/nvmeof';
import * as rdmas from './rdma';
import * as rdmaCm from './rdma/cm';
import * as rdmaCmUd from './rdma/cm-ud';

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
  PreparableRequest,
  PrepareOptions,
  QueuePairAttributes,
  QueuePairInfo,
  QueuePairOptions,
  QueuePairType,
  RdmaAccess,
  RdmaAsyncEvent,
  SharedReceiveQueueOptions,
  RdmaCompletion,
  RdmaCompletionError,
  RdmaDeviceAttributes,
  RdmaDeviceAttributesEx,
  RdmaDeviceInfo,
  RdmaGid,
  RdmaOp,
  RdmaPort,
  RdmaPortAttributes,
  RdmaTarget,
  RegisterOptions,
  RegisterDmaBufOptions,
  AllocMemoryOptions,
  RemoteRegion,
  WorkRequest,
  WorkRequestOptions,
} from './rdma';
export type { CmEndpoint, ConnectionOptions, RdmaAddrInfo } from './rdma/cm';
export type { UdDestination, UdOptions } from './rdma/cm-ud';

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
export { Mapping } from './core/mmap';
/** The system page size in bytes. */
export const pageSize = mmaps.pageSize;
/** The largest `.buffer`/`window()` this Node can make (buffer.constants.MAX_LENGTH). */
export const maxViewLength = mmaps.maxViewLength;

// handles
/** An owned file descriptor: the base of every handle type. */
export { Fd } from './core/handle';
/** memfd_create(2) as an Fd. */
export const memfd = memfds.memfd;
/** eventfd(2) as an EventFd. */
export const eventfd = eventfds.eventfd;
export { EventFd } from './core/eventfd';

// poll
/** Waits on the event loop (uv_poll, no pool thread) until an fd is ready. */
export const pollOnce = polls.pollOnce;
/** A callback per readiness event of an fd. */
export { Poller } from './core/poll';

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
export type { MachineInfo, MachineInfoOptions, P2pClientKind, P2pMatrixEntry, RdmaDeviceState, RdmaPortState, SeriesInfo, IoUringInfo, IommuInfo } from './core/info';

/** PROT_*, MAP_*, MS_* and MFD_* values of this platform. */
export const constants = Object.freeze({ ...native.mmapConstants, ...native.memfdConstants });

// PCI, p2pmem and NVMe (lib/pci/pci.ts, lib/pci/p2pmem.ts, lib/pci/nvme.ts)
export type { PciBar, PciDevice, PciOptions, P2pmemInfo } from './pci/pci';
export type { MapType, P2pMemOptions, P2pTopology, P2pmemProvider as P2pMemProvider } from './pci/p2pmem';
/** PCI devices from sysfs: ids, driver, BARs, upstream bridges, p2pmem. */
export const Pci = pci.Pci;
/** p2pmem providers, allocation (P2pBuffer) and P2P reachability between PCI devices. */
export const P2pMem = p2pmems.P2pMem;
export { P2pBuffer } from './pci/p2pmem';
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
  NvmeCopyOptions,
  NvmeStatusError,
} from './pci/nvme';
/**
 * NVMe: `Nvme.open()` gives a namespace or controller handle (identify(),
 * O_DIRECT read/write, peer to peer into a P2pBuffer, passthru());
 * `Nvme.engine` says (or sets) what runs the promise forms, io_uring or the
 * thread pool; `maxInFlight` and `queue` are the thread-pool guard.
 */
export { Nvme } from './pci/nvme';
/**
 * VFIO (lib/pci/vfio.ts): a PCI function bound to vfio-pci, its BAR ranges
 * exported as dma-bufs that reset or memory-disable revokes.
 */
export { Vfio, vfioRequests } from './pci/vfio';
export type { VfioExportOptions, VfioRange, VfioRegion } from './pci/vfio';
/** Decodes an NVMe status field: SCT, SC, name, DNR. */
export const nvmeStatus = nvmes.nvmeStatus;
export const nvmeOpcodes = nvmes.nvmeOpcodes;
export type { NvmeOfConnectOptions, NvmeOfP2pmemUse, NvmeOfTargetOptions, NvmeOfTransport } from './pci/nvmeof';
/**
 * NVMe over Fabrics: `NvmeOf.createTarget()` exports a block device through
 * nvmet (configfs: subsystem, namespace with its `p2pmem`, an rdma/tcp/loop
 * port), `NvmeOf.connect()` connects a host to one (/dev/nvme-fabrics); its
 * namespaces open with `Nvme.open()`.
 */
export const NvmeOf = nvmeofs.NvmeOf;
export { NvmeOfConnection, NvmeOfTarget } from './pci/nvmeof';
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
export type { CreateBufferOptions, CreateDumbOptions, DrmDevicesOptions, DrmNodeInfo, DrmVersion } from './dmabuf/drm';
/** A dma-buf handle: size, fdinfo, name, CPU-access brackets, map, fences. */
export { DmaBuf } from './dmabuf/dmabuf';
export { CpuAccess } from './dmabuf/dmabuf';
export const isDmaBuf = dmabufMod.isDmaBuf;
/** dma-buf heaps: DmaHeap.list(), DmaHeap.open(name), heap.alloc(size). */
export { DmaHeap } from './dmabuf/dma-heap';
/** udmabuf: dma-bufs over memfd pages. */
export { Udmabuf } from './dmabuf/udmabuf';
/** sync_file: fences as an fd. */
export { SyncFile } from './dmabuf/sync-file';
/** DRM devices: Drm.devices(), Drm.open(); PRIME export/import, dumb buffers, vgem fences. */
export const Drm = drms.Drm;
export { DrmDevice } from './dmabuf/drm';
export { GemBuffer } from './dmabuf/drm';
export { DRM_CAPS, DRM_CLIENT_CAPS } from './dmabuf/drm';
export type { DrmCap, DrmClientCap } from './dmabuf/drm';
export type { DrmNodeFacts, DrmPciInfo } from './dmabuf/drm-nodes';
export { DrmSyncobj } from './dmabuf/drm-syncobj';
export type { SyncobjPoint, SyncobjPointOptions, SyncobjWaitOptions } from './dmabuf/drm-syncobj';
import * as cudas from './dmabuf/cuda';
/** NVIDIA GPU memory as a dma-buf (libcuda through the optional koffi, loaded on first use). */
export const Cuda = cudas.Cuda;
// RDMA
/**
 * RDMA verbs: devices(), open(), loopbackPair(), library(), and rdma_cm's
 * listen() / connect() (RC), listenUd() / connectUd() (UD) and
 * joinMulticast(). The classes are exported for `instanceof` and their
 * types; they are made through Rdma and their parents (`ctx.allocPd()`...),
 * never constructed directly.
 */
export const Rdma = Object.freeze({
  ...rdmas.Rdma,
  listen: rdmaCm.listen,
  connect: rdmaCm.connect,
  getAddrInfo: rdmaCm.getAddrInfo,
  listenUd: rdmaCmUd.listenUd,
  connectUd: rdmaCmUd.connectUd,
  joinMulticast: rdmaCmUd.joinMulticast,
});
export { RdmaContext } from './rdma';
export { ProtectionDomain } from './rdma';
export { MemoryRegion } from './rdma';
export { CompletionQueue } from './rdma';
export { QueuePair } from './rdma';
export { PreparedRequest } from './rdma';
export { SharedReceiveQueue } from './rdma';
export { AddressHandle } from './rdma';
export { MemoryWindow } from './rdma';
export { Connection as RdmaConnection } from './rdma/cm';
export { Listener as RdmaListener } from './rdma/cm';
export { UdEndpoint as RdmaUdEndpoint, UdListener as RdmaUdListener, MulticastGroup as RdmaMulticastGroup } from './rdma/cm-ud';
import * as inspect from './dmabuf/dmabuf-inspect';
export type { DmaBufReport, DmaBufSharer, DmaBufsOptions, ExporterTotal, InspectedDmaBuf } from './dmabuf/dmabuf-inspect';
/** Every dma-buf held by every process (or one), from /proc: `p2pdma dmabuf ls`. */
export const dmabufs = inspect.dmabufs;
