/**
 * sync_file: a file holding one or more dma-fences (from
 * `DmaBuf.exportSyncFile()`, a driver, or `merge()`). It polls readable
 * once every fence has signalled; `wait()` does that on the event loop
 * (lib/core/poll.ts: no pool thread is parked).
 */
import { invalidArgType, outOfRange, sysError, validateObject, fromNative } from '../core/errors';
import { adoptFd, Fd, type FdLike, toFd } from '../core/handle';
import { ioc, registerRequests } from '../core/ioctl';
import { native } from '../core/native';
import { pollOnce } from '../core/poll';
import { ioctlNewFd } from './dmabuf-ioctl';
import { uapi } from '../core/uapi';

/** uapi linux/sync_file.h */
export const syncFileRequests = Object.freeze({
  /** `struct sync_merge_data { char name[32]; __s32 fd2; __s32 fence; __u32 flags; __u32 pad; }` */
  SYNC_IOC_MERGE: ioc.iowr('>', 3, uapi.sync_merge_data.size),
  /** `struct sync_file_info { char name[32]; __s32 status; __u32 flags; __u32 num_fences; __u32 pad; __u64 sync_fence_info; }` */
  SYNC_IOC_FILE_INFO: ioc.iowr('>', 4, uapi.sync_file_info.size),
});
registerRequests(syncFileRequests);

// sync_merge_data.name is char[32], up to fd2.
const NAME_LEN = uapi.sync_merge_data.fields.fd2;
const TIMEOUT_MAX = 0x7fffffff;

/** A fence's state: signalled, still pending, or signalled with an error. */
export type FenceState = 'signaled' | 'active' | 'error';

export interface FenceInfo {
  /** The fence's timeline (`obj_name`), e.g. `'vgem'`'s timeline name. */
  timeline: string;
  /** The driver that created it, e.g. `'vgem'`. */
  driver: string;
  state: FenceState;
  /** The kernel's status: 1 signalled, 0 active, -errno on error. */
  status: number;
  /** When it signalled (CLOCK_MONOTONIC ns), 0n while active. */
  timestampNs: bigint;
}

export interface SyncFileInfo {
  name: string;
  state: FenceState;
  /** 1 when every fence signalled, 0 while any is active, -errno on error. */
  status: number;
  fences: FenceInfo[];
}

export interface WaitOptions {
  /** Aborting rejects with an AbortError. */
  signal?: AbortSignal;
  /** Rejects with ETIMEDOUT after this many ms (an integer 0..2^31-1). Default: no limit. */
  timeoutMs?: number;
}

function state(status: number): FenceState {
  return status > 0 ? 'signaled' : status === 0 ? 'active' : 'error';
}

/** Validates `{ timeoutMs }` for the blocking waits: -1 (no limit) when absent. @internal */
export function syncTimeout(options: unknown, caller: Function): number {
  validateObject(options, 'options', caller);
  const { timeoutMs } = options as WaitOptions;
  if (timeoutMs === undefined) return -1;
  if (typeof timeoutMs !== 'number') throw invalidArgType('options.timeoutMs', 'of type number', timeoutMs, caller);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > TIMEOUT_MAX) {
    throw outOfRange('options.timeoutMs', `an integer >= 0 && <= ${TIMEOUT_MAX}`, timeoutMs, caller);
  }
  return timeoutMs;
}

/** poll(2) on the calling thread until `events` or the timeout. @internal */
export function pollBlocking(fd: number, events: number, timeoutMs: number, caller: Function): void {
  const r = native.pollSync(fd, events, timeoutMs);
  if (r < 0) throw sysError(-r, 'poll', { fd }, caller);
  if (r === 0) {
    const e = sysError(110, 'poll', { fd }, caller);
    e.message = `ETIMEDOUT: no event within ${timeoutMs} ms, poll`;
    throw e;
  }
}

/** A sync_file. Get one from `DmaBuf.exportSyncFile()` or `SyncFile.from()`. */
export class SyncFile extends Fd {
  /** Takes a sync_file fd: `own: true` takes the number (or Fd) itself, else a dup. */
  static from(fd: FdLike, options: { own?: boolean } = {}): SyncFile {
    validateObject(options, 'options', SyncFile.from);
    const { own = false } = options;
    if (typeof own !== 'boolean') throw invalidArgType('options.own', 'of type boolean', own, SyncFile.from);
    const n = toFd(fd, SyncFile.from);
    // Check it is a sync_file before taking it.
    try {
      native.syncFileInfo(n);
    } catch (e) {
      throw fromNative(e, { request: 'SYNC_IOC_FILE_INFO' }, SyncFile.from);
    }
    if (own && typeof fd === 'number') return new SyncFile(fd);
    if (own && fd instanceof Fd) return new SyncFile(fd.release());
    try {
      return adoptFd(SyncFile, native.dupFd(n));
    } catch (e) {
      throw fromNative(e, {}, SyncFile.from);
    }
  }

  /** The fences and their states (SYNC_IOC_FILE_INFO). */
  info(): SyncFileInfo {
    let raw;
    try {
      raw = native.syncFileInfo(this.fd);
    } catch (e) {
      throw fromNative(e, { request: 'SYNC_IOC_FILE_INFO' }, this.info);
    }
    return {
      name: raw.name,
      status: raw.status,
      state: state(raw.status),
      fences: raw.fences.map((f) => ({ timeline: f.obj, driver: f.driver, status: f.status, state: state(f.status), timestampNs: f.timestampNs })),
    };
  }

  /** A new sync_file that signals when both this and `other` have (SYNC_IOC_MERGE). */
  merge(other: SyncFile | FdLike, name = 'p2pdma-merged'): SyncFile {
    const fd2 = toFd(other, this.merge);
    if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name, this.merge);
    const bytes = Buffer.from(name, 'utf8');
    if (bytes.length >= NAME_LEN || bytes.includes(0)) {
      throw outOfRange('name', `a string of at most ${NAME_LEN - 1} UTF-8 bytes with no NUL`, name, this.merge);
    }
    const L = uapi.sync_merge_data;
    const arg = Buffer.alloc(L.size);
    bytes.copy(arg, L.fields.name);
    arg.writeInt32LE(fd2, L.fields.fd2);
    return ioctlNewFd(SyncFile, this.fd, syncFileRequests.SYNC_IOC_MERGE, arg, L.fields.fence, this.merge);
  }

  /** Resolves once every fence has signalled; rejects with the fence's error if one failed. */
  async wait(options: WaitOptions = {}): Promise<void> {
    validateObject(options, 'options', this.wait);
    await pollOnce(this, { events: 'read', signal: options.signal, timeoutMs: options.timeoutMs });
    this.#checkError(this.wait);
  }

  /** Blocks the thread until every fence has signalled (or `timeoutMs`: ETIMEDOUT). */
  waitSync(options: Omit<WaitOptions, 'signal'> = {}): void {
    const t = syncTimeout(options, this.waitSync);
    pollBlocking(this.fd, native.dmabufConstants.POLLIN, t, this.waitSync);
    this.#checkError(this.waitSync);
  }

  #checkError(caller: Function): void {
    const { status } = this.info();
    if (status < 0) throw sysError(-status, 'sync_file', { fd: this.fd }, caller);
  }
}
