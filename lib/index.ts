/**
 * p2pdma: Linux peer-to-peer DMA and dma-buf from Node.js.
 *
 * Core: `ioctl`/`ioctlAsync` with `ioc` encoders, `mmap` -> `Mapping`, the
 * `Fd` handle base, Node-style system errors, and `capabilities()`.
 */
import { native } from './native';

export { capabilities } from './capabilities';
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
export { errnoDescription, errnoFromName, errnoName, sysError } from './errors';
export type { CodedError, ErrorContext, SystemError } from './errors';
export { Fd } from './handle';
export type { FdLike } from './handle';
export { ioc, ioctl, ioctlAsync, registerRequests, requestName, requests } from './ioctl';
export type { IoctlArg } from './ioctl';
export { memfd } from './memfd';
export type { MemfdOptions } from './memfd';
export { Mapping, mmap, pageSize } from './mmap';
export type { MapFlag, MmapOptions, MsyncFlag, Prot } from './mmap';

/** PROT_*, MAP_*, MS_* and MFD_* values of this platform. */
export const constants = Object.freeze({ ...native.mmapConstants, ...native.memfdConstants });
