/**
 * Loads the native addon with node-gyp-build: `prebuilds/<platform>-<arch>/`
 * (made by `prebuildify --napi --strip`) first, then `build/Release/`. When
 * neither loads, throws one error that says what to run.
 *
 * This file also declares the addon's exports. They are internal: the
 * public API wraps them (validation, errors, handles) in the other modules.
 */
import { packageRoot } from './package-root';

/** A native Mapping (native/core/mmap.cc). */
export interface NativeMapping {
  /** A new external ArrayBuffer over [offset, offset + length); detached by unmap(). */
  window(offset: number, length: number): ArrayBuffer;
  address(): bigint;
  /** Copies from the mapping at `offset` into `view`; returns the byte count. */
  read(offset: number, view: ArrayBufferView): number;
  /** Copies `view` into the mapping at `offset`; returns the byte count. */
  write(offset: number, view: ArrayBufferView): number;
  /** true if this call unmapped, false if it was already unmapped. */
  unmap(): boolean;
  msync(flags: number): void;
  msyncAsync(flags: number): Promise<void>;
  /**
   * mprotect(2) over the whole mapping; throws a native SysError. Short of
   * PROT_READ | PROT_WRITE it detaches every ArrayBuffer it made; returns 0,
   * or (changing nothing) how many of them it could not detach.
   */
  mprotect(prot: number): number;
}

/** What every native resource (native/core/resource.h) has. */
export interface NativeResource {
  /** 0 or -errno when the teardown ran now; 1 when it waits for operations in flight. */
  close(): number;
  /** Marks one operation in flight (keeps the object alive, defers its teardown). */
  hold(): void;
  unhold(): void;
  /** Operations in flight plus open children. */
  inFlight(): number;
  /** Called with the teardown's result (0 or -errno) when close() returned 1. */
  onclose?: (result: number) => void;
}

/** A native-owned file descriptor (native/core/handle.cc). */
export interface NativeFd extends NativeResource {
  readonly fd: number;
  /** Gives up ownership: the fd, or -EBUSY (operations in flight). */
  release(): number;
}

/** A uv_poll watcher on a dup of an fd (native/core/poll.cc). */
export interface NativeWatcher extends NativeResource {
  /** uv_poll_start with UV_* bits -> 0 or -errno. */
  start(events: number): number;
  stop(): void;
  setRef(ref: boolean): void;
  /** UV_* bits ready now (poll(2) with timeout 0), or -errno. */
  peek(events: number): number;
  /** status 0: `events` fired; < 0: -errno; 1: the watched Fd was closed. */
  onevent?: (status: number, events: number) => void;
}

/** An RDMA memory region, registered once by one of its register calls (native/rdma/rdma.cc). */
export interface NativeRdmaMr extends NativeResource {
  register(target: ArrayBuffer | SharedArrayBuffer | ArrayBufferView, offset: number, length: number, access: number): NativeRdmaMr;
  register(address: bigint, length: number, access: number): NativeRdmaMr;
  registerAsync(target: ArrayBuffer | SharedArrayBuffer | ArrayBufferView, offset: number, length: number, access: number): Promise<NativeRdmaMr>;
  registerAsync(address: bigint, length: number, access: number): Promise<NativeRdmaMr>;
  registerDmaBuf(fd: number, offset: number, length: number, iova: bigint, access: number): NativeRdmaMr;
  info(): { lkey: number; rkey: number; addr: bigint; length: number } | undefined;
  /** Spins until the byte at offset reads value -> 0, or -ETIMEDOUT / -EBADF / -EFAULT (no CPU address). */
  pollByte(offset: number, value: number, timeoutUs: number): number;
}

/** A CQ with its non-blocking completion channel. */
export interface NativeRdmaCq extends NativeResource {
  readonly fd: number;
  readonly cqe: number;
  /** The kernel's handle, which async events name. */
  readonly handle: number;
  /** Up to `max` completions, flat: [wrId, status, opcode, byteLen, vendorErr, qpNum]*. */
  drain(max: number): Float64Array;
  /** The same into `out` (10 doubles per completion: ..., srcQp, sl) -> count; spins up to spinUs on an empty CQ; rearm: consume channel events first. */
  drainInto(out: Float64Array, spinUs: number, rearm: boolean): number;
}

/** An RC QP. */
export interface NativeRdmaQp extends NativeResource {
  readonly qpNum: number;
  readonly cap: { maxSendWr: number; maxRecvWr: number; maxSendSge: number; maxRecvSge: number; maxInlineData: number };
  /** ibv_modify_qp with the fields present -> 0 or -errno. */
  modify(attrs: Record<string, unknown>): number;
  /** ibv_query_qp, raw. */
  query(): Record<string, number | boolean | Buffer>;
  /** ibv_attach_mcast / ibv_detach_mcast -> 0 or -errno. */
  attachMcast(gid: Buffer, lid: number): number;
  detachMcast(gid: Buffer, lid: number): number;
  /** ibv_bind_mw (type 1) or an IBV_WR_BIND_MW (type 2) -> the window's new rkey, or -errno. */
  bindMw(mw: NativeResource, mr: NativeRdmaMr, wrId: number, offset: number, length: number, access: number): number;
  /** -> [posted, 0 | -errno]. */
  postSend(wrs: unknown[][]): [number, number];
  postRecv(wrs: unknown[][]): [number, number];
  /** count posted, or -(errno + 4096 * posted); desc: 10 doubles per WR (native/rdma/rdma.cc). */
  postSendPacked(desc: Float64Array, mrs: NativeRdmaMr | NativeRdmaMr[], count: number): number;
  postRecvPacked(desc: Float64Array, mrs: NativeRdmaMr | NativeRdmaMr[], count: number): number;
  /** One packed send WR (count 1), checked and kept -> its slot for postPrepared. */
  prepare(desc: Float64Array, mr: NativeRdmaMr | NativeRdmaMr[], count: 1): number;
  unprepare(slot: number): void;
  /** count copies of a prepared WR, wr_ids from firstWrId, every signalEvery-th signaled -> count | -(errno + 4096 * posted). */
  postPrepared(slot: number, count: number, firstWrId: number, signalEvery: number): number;
}

/** A shared receive queue. */
export interface NativeRdmaSrq extends NativeResource {
  readonly attr: { maxWr: number; maxSge: number; handle: number };
  postRecv(wrs: unknown[][]): [number, number];
  postRecvPacked(desc: Float64Array, mrs: NativeRdmaMr | NativeRdmaMr[], count: number): number;
  /** ibv_modify_srq(IBV_SRQ_LIMIT) -> 0 or -errno. */
  setLimit(limit: number): number;
}

/** An rdma_cm event channel (native/rdma/rdma_cm.cc). */
export interface NativeCmChannel extends NativeResource {
  readonly fd: number;
  getEvent(): NativeCmEvent | undefined;
}

export interface NativeCmEvent {
  event: number;
  /** rdma_event_str(): 'RDMA_CM_EVENT_ESTABLISHED', ... */
  name: string;
  status: number;
  id?: NativeCmId;
  listenId?: NativeCmId;
  privateData?: Buffer;
  responderResources: number;
  initiatorDepth: number;
  /** RDMA_PS_UDP ids' ESTABLISHED and MULTICAST_JOIN: the peer or group (ah as RdmaAh takes it, with dgid). */
  ud?: { ah: { dlid: number; sl: number; portNum: number; dgid?: Buffer; sgidIndex?: number; hopLimit?: number }; qpNum: number; qkey: number };
}

export interface NativeCmId extends NativeResource {
  bind(address: string, port: number): number;
  listen(backlog: number): number;
  resolveAddr(address: string, port: number, timeoutMs: number): number;
  resolveRoute(timeoutMs: number): number;
  /** `arg`: INIT the access flags; RTR max_dest_rd_atomic; RTS max_rd_atomic (default: what rdma_init_qp_attr gives). */
  initQp(qp: NativeRdmaQp, state: number, arg?: number): number;
  connect(qpNum: number, responderResources: number, initiatorDepth: number, privateData?: Uint8Array, retryCount?: number, rnrRetryCount?: number): number;
  accept(qpNum: number, responderResources: number, initiatorDepth: number, privateData?: Uint8Array, retryCount?: number, rnrRetryCount?: number): number;
  reject(): number;
  establish(): number;
  disconnect(): number;
  /** rdma_join_multicast / rdma_leave_multicast of an IP literal -> 0 or -errno; MULTICAST_JOIN (or _ERROR) follows a join. */
  joinMulticast(address: string): number;
  leaveMulticast(address: string): number;
  info(): { device?: string; portNum?: number; local?: { address: string; port: number }; remote?: { address: string; port: number } };
}

type RdmaLibrary = { ok: true; dmabuf?: boolean } | { ok: false; library: string; symbol?: string; dlerror: string };

export interface Binding {
  /**
   * The C library's errno names (strerrorname_np; none without it) and
   * descriptions (strerrordesc_np or strerror), indexed by positive errno 0..4095.
   */
  errnoTable(): { names: (string | undefined)[]; descriptions: (string | undefined)[] };
  /** Takes ownership of fd. */
  Fd: new (fd: number) => NativeFd;
  /** Throws a native SysError (fcntl, or epoll_ctl: EPERM for regular files). */
  Watcher: new (target: NativeFd | number) => NativeWatcher;
  pollConstants: Record<'UV_READABLE' | 'UV_WRITABLE' | 'UV_DISCONNECT' | 'UV_PRIORITIZED', number>;
  /** eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK [| EFD_SEMAPHORE]); throws a native SysError. */
  eventfdCreate(initval: number, semaphore: boolean): NativeFd;
  /** ioctl with the argument passed by value -> result (undefined for 0) or -errno. */
  ioctl(fd: number, request: number, arg?: number): number | undefined;
  ioctlBigInt(fd: number, request: number, arg: bigint): number | undefined;
  /** ioctl with a pointer to the view's bytes -> result (undefined for 0) or -errno. */
  ioctlView(fd: number, request: number, arg: ArrayBufferView): number | undefined;
  /** DMA_BUF_IOCTL_SYNC with `flags` -> undefined | -errno. */
  dmabufSync(fd: number, flags: number): number | undefined;
  /**
   * ioctl on the thread pool; rejects with a native SysError. A view (<= 16 KiB,
   * at least the request's encoded size) is copied in, and copied back when
   * it settles if it still has the same memory and length and `signal` is
   * not aborted. `keepAlive` stays referenced until settled.
   */
  ioctlAsync(
    fd: number,
    request: number,
    arg: number | bigint | ArrayBufferView | undefined,
    keepAlive?: object,
    signal?: AbortSignal,
  ): Promise<number>;
  Mapping: new (fd: number, length: number, prot: number, flags: number, offset: number | bigint) => NativeMapping;
  pageSize(): number;
  /**
   * Successful mmap/munmap calls made by the addon in this process, and
   * `pinned`: unmapped ranges still reserved until their last ArrayBuffer is
   * collected (each will be munmap()ed once then).
   */
  counters(): { mmap: number; munmap: number; pinned: number };
  mmapConstants: Record<
    | 'PROT_NONE' | 'PROT_READ' | 'PROT_WRITE' | 'PROT_EXEC'
    | 'MAP_SHARED' | 'MAP_PRIVATE' | 'MAP_SHARED_VALIDATE' | 'MAP_ANONYMOUS' | 'MAP_FIXED'
    | 'MAP_FIXED_NOREPLACE' | 'MAP_POPULATE' | 'MAP_LOCKED' | 'MAP_NORESERVE' | 'MAP_SYNC'
    | 'MS_ASYNC' | 'MS_SYNC' | 'MS_INVALIDATE',
    number
  >;
  /** memfd_create(name, flags | MFD_CLOEXEC); throws a native SysError. */
  memfdCreate(name: string, flags: number): NativeFd;
  memfdConstants: Record<'MFD_CLOEXEC' | 'MFD_ALLOW_SEALING', number>;
  RdmaContext: new (name: string) => NativeResource & Record<string, Function>;
  RdmaPd: new (context: NativeResource) => NativeResource;
  RdmaMr: new (pd: NativeResource) => NativeRdmaMr;
  RdmaCq: new (context: NativeResource, cqe: number, solicitedOnly?: boolean) => NativeRdmaCq;
  RdmaQp: new (pd: NativeResource, sendCq: NativeRdmaCq, recvCq: NativeRdmaCq, cap: Record<string, number>, qpType?: number, srq?: NativeRdmaSrq | null) => NativeRdmaQp;
  RdmaSrq: new (pd: NativeResource, attr: { maxWr: number; maxSge: number }) => NativeRdmaSrq;
  RdmaAh: new (pd: NativeResource, attr: Record<string, unknown>) => NativeResource;
  RdmaMw: new (pd: NativeResource, type?: number) => NativeResource;
  rdmaDevices(): { name: string; guid: string; nodeType: number; transportType: number }[];
  rdmaLibrary(which: 'verbs' | 'rdmacm'): RdmaLibrary;
  rdmaWcStatusStr(status: number): string;
  rdmaConstants: Record<
    | 'IBV_ACCESS_LOCAL_WRITE' | 'IBV_ACCESS_REMOTE_WRITE' | 'IBV_ACCESS_REMOTE_READ' | 'IBV_ACCESS_REMOTE_ATOMIC'
    | 'IBV_WR_RDMA_WRITE' | 'IBV_WR_RDMA_READ' | 'IBV_WR_SEND' | 'IBV_WR_RDMA_WRITE_WITH_IMM' | 'IBV_WR_SEND_WITH_IMM'
    | 'IBV_SEND_INLINE' | 'IBV_SEND_SIGNALED' | 'IBV_SEND_FENCE' | 'IBV_SEND_SOLICITED' | 'IBV_QPT_RC' | 'IBV_QPT_UD' | 'IBV_QPT_UC' | 'IBV_WC_GRH' | 'IBV_ACCESS_ON_DEMAND' | 'IBV_ACCESS_MW_BIND' | 'IBV_WC_WITH_IMM' | 'IBV_WC_RECV_RDMA_WITH_IMM'
    | 'IBV_WR_ATOMIC_CMP_AND_SWP' | 'IBV_WR_ATOMIC_FETCH_AND_ADD'
    | 'IBV_WC_WITH_INV' | 'IBV_WC_IP_CSUM_OK' | 'IBV_WR_SEND_WITH_INV' | 'IBV_WR_LOCAL_INV' | 'RDMA_PS_TCP' | 'RDMA_PS_UDP'
    | 'IBV_QPS_RESET' | 'IBV_QPS_INIT' | 'IBV_QPS_RTR' | 'IBV_QPS_RTS' | 'IBV_QPS_ERR',
    number
  >;
  CmChannel: new () => NativeCmChannel;
  /** portSpace: RDMA_PS_TCP (the default) or RDMA_PS_UDP. */
  CmId: new (channel: NativeCmChannel, portSpace?: number) => NativeCmId;
  rdmaGetAddrInfo(node: string | null, service: string | null, passive: boolean): { family: number; qpType: number; portSpace: number; src?: { address: string; port: number }; dst?: { address: string; port: number } }[] | { gai: number; errno: number; message: string };
  /** dlopen(soname, RTLD_LAZY) then dlclose. */
  dlprobe(soname: string): { ok: true; path?: string } | { ok: false; error: string };
  /** pread/pwrite of the whole view at `position` (loops on short transfers) -> bytes; throws a native SysError. */
  nvmeIoSync(fd: number, write: boolean, view: ArrayBufferView, position: number | bigint): number;
  /** The same on the thread pool; `view` and `keepAlive` stay referenced until settled. */
  nvmeIo(fd: number, write: boolean, view: ArrayBufferView, position: number | bigint, keepAlive?: object, bounce?: number, signal?: AbortSignal): Promise<number>;
  /** NVME_IOCTL_ADMIN64_CMD (admin) or NVME_IOCTL_IO64_CMD with `cmd` (80 bytes) and `data` as its buffer. */
  nvmePassthruSync(fd: number, admin: boolean, cmd: Uint8Array, data: ArrayBufferView | undefined): { status: number; result: bigint };
  nvmePassthru(fd: number, admin: boolean, cmd: Uint8Array, data: ArrayBufferView | undefined, keepAlive?: object, bounce?: number, signal?: AbortSignal): Promise<{ status: number; result: bigint }>;
  /** This thread's io_uring (made on first call): errno 0 when it works; passthru: SQE128|CQE32 (NVMe commands) too. */
  nvmeUringProbe(): { errno: number; passthru: boolean };
  /** Ops waiting for the next flush, and in the kernel, on this thread's ring. */
  nvmeUringQueue(): { queued: number; inFlight: number };
  /** nvmeIo on the ring (IORING_OP_READ/WRITE): `fd` is held, `view`/`keepAlive` referenced until the CQE. */
  nvmeUringIo(fd: NativeFd, write: boolean, view: ArrayBufferView, position: number | bigint, keepAlive?: object, bounce?: number, signal?: AbortSignal): Promise<number>;
  nvmeUringCopy(
    src: NativeFd, dst: NativeFd, view: ArrayBufferView, from: bigint, to: bigint, length: number, chunk: number, depth: number,
    keepAlive: object, bounce: number, signal?: AbortSignal,
  ): Promise<number>;
  /** nvmePassthru as IORING_OP_URING_CMD (NVME_URING_CMD_ADMIN or _IO) on a generic char device or controller. */
  nvmeUringCmd(fd: NativeFd, admin: boolean, cmd: Uint8Array, data: ArrayBufferView | undefined, keepAlive?: object, bounce?: number, signal?: AbortSignal): Promise<{ status: number; result: bigint }>;
  /** IORING_REGISTER_BUFFERS of the view on a scratch ring (0 or errno), then READ_FIXED into it from `fd` (bytes or -errno). Sync; a diagnostic. */
  nvmeUringFixedProbe(view: ArrayBufferView, fd?: number, position?: number | bigint): { register: number; read: number | undefined };
  /** The address of the view's first byte. */
  viewAddress(view: ArrayBufferView): number;
  nvmeConstants: Record<'NVME_IOCTL_ID' | 'NVME_IOCTL_ADMIN64_CMD' | 'NVME_IOCTL_IO64_CMD', number>;
  /** ioctl whose result (fdOffset -1) or s32 at fdOffset in the view is a new fd, wrapped at once; throws a native SysError. */
  ioctlFd(fd: number, request: number, arg: ArrayBufferView, fdOffset: number): NativeFd;
  /** The promise form (view copied in and back, as ioctlAsync); `keepAlive` referenced until settled. */
  ioctlFdAsync(fd: number, request: number, arg: ArrayBufferView, fdOffset: number, keepAlive?: object): Promise<NativeFd>;
  /** fcntl(F_DUPFD_CLOEXEC); throws a native SysError. */
  dupFd(fd: number): NativeFd;
  /** poll(2) on one fd, blocking: revents, 0 on timeout, or -errno. */
  pollSync(fd: number, events: number, timeoutMs: number): number;
  dmabufConstants: Record<'POLLIN' | 'POLLOUT' | 'POLLERR' | 'POLLNVAL' | 'O_RDONLY' | 'O_RDWR' | 'O_CLOEXEC', number>;
  /** fcntl(F_ADD_SEALS) / fcntl(F_GET_SEALS); throw a native SysError. */
  addSeals(fd: number, seals: number): void;
  getSeals(fd: number): number;
  sealConstants: Record<'F_SEAL_SEAL' | 'F_SEAL_SHRINK' | 'F_SEAL_GROW' | 'F_SEAL_WRITE', number>;
  /** SYNC_IOC_FILE_INFO with its fence array; throws a native SysError. */
  syncFileInfo(fd: number): {
    name: string;
    status: number;
    flags: number;
    fences: { obj: string; driver: string; status: number; flags: number; timestampNs: bigint }[];
  };
  /** DRM_IOCTL_VERSION with its strings; throws a native SysError. */
  drmVersion(fd: number): { major: number; minor: number; patchlevel: number; name: string; date: string; desc: string };
  /**
   * DRM_IOCTL_SYNCOBJ_WAIT (points undefined) or _TIMELINE_WAIT, blocking
   * (timeoutMs -1: no limit, 0: only check); returns first_signaled. Throws a native SysError.
   */
  drmSyncobjWait(fd: number, handles: Uint32Array, points: BigUint64Array | undefined, timeoutMs: number, flags: number): number;
  /** DRM_IOCTL_SYNCOBJ_RESET / _SIGNAL on every handle; throw a native SysError. */
  drmSyncobjReset(fd: number, handles: Uint32Array): void;
  drmSyncobjSignal(fd: number, handles: Uint32Array): void;
  /** DRM_IOCTL_SYNCOBJ_QUERY: the kernel fills `points`. */
  drmSyncobjQuery(fd: number, handles: Uint32Array, points: BigUint64Array, flags: number): void;
  /** DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL: each handle's point. */
  drmSyncobjTimelineSignal(fd: number, handles: Uint32Array, points: BigUint64Array, flags: number): void;
}

function load(): Binding {
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(packageRoot) as Binding;
  } catch (cause) {
    const err = new Error(
      `p2pdma: could not load the native addon from ${packageRoot}.\n` +
        `Neither prebuilds/${process.platform}-${process.arch}/ nor build/Release/ has a loadable p2pdma.node ` +
        `for Node ${process.version} (${process.platform}-${process.arch}).\n` +
        `To compile it, run in ${packageRoot}: npm run build  (needs python3, make and a C++ compiler)\n` +
        `or, if install scripts were skipped: npm rebuild p2pdma\n` +
        `Cause: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
    (err as Error & { code: string }).code = 'ERR_P2PDMA_ADDON_LOAD';
    throw err;
  }
}

/**
 * The addon, loaded once on first import. A copy of its exports object: the
 * addon's own, with 50-odd properties set one by one, is a dictionary-mode
 * object, so every `native.x` load on a hot path (ioctlSync, dma-buf
 * begin/end, posting) went through V8's generic LoadIC with a hash lookup
 * (Builtins_LoadIC in a guest perf profile, docs/benchmarks/profiles.md); a
 * spread makes a fast-mode object whose loads the JIT inlines.
 */
export const native: Binding = fastCopy(load());

/** The binding and its tables of constants (rdmaConstants has 28: a dictionary too) as fast-mode objects. */
function fastCopy(binding: Binding): Binding {
  const o: Record<string, unknown> = { ...binding };
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype) o[k] = { ...v };
  }
  return o as unknown as Binding;
}
