/**
 * Ioctls that create an fd (dma-heap ALLOC, UDMABUF_CREATE,
 * PRIME_HANDLE_TO_FD, EXPORT_SYNC_FILE, SYNC_IOC_MERGE): the native side
 * wraps the new fd before JS sees it, and the promise form closes it when
 * the caller aborted, so no path leaks it. Internal to the dma-buf modules.
 */
import { abortError, fromNative } from '../core/errors';
import { adoptFd, type Fd, holdDuring } from '../core/handle';
import { requestName } from '../core/ioctl';
import { native } from '../core/native';
import { abortable } from '../core/abort';

/** The new fd is the ioctl's result rather than a field of the argument. */
export const FD_IS_RESULT = -1;

/** ioctlSync for an fd-creating request; `fdOffset`: where the s32 fd lands in `arg`. */
export function ioctlNewFd<T extends Fd>(ctor: new (fd: number) => T, fd: number, request: number, arg: ArrayBufferView, fdOffset: number, caller: Function): T {
  let nfd;
  try {
    nfd = native.ioctlFd(fd, request, arg, fdOffset);
  } catch (e) {
    throw fromNative(e, { request: requestName(request) }, caller);
  }
  return adoptFd(ctor, nfd);
}

/**
 * The promise form on the thread pool. `handle` (the fd's owner) is held
 * until the syscall returns. An abort rejects at once (with an AbortError);
 * the fd that the still-running call creates is closed when it arrives, and
 * then `afterAbort` runs: the place to release what the syscall was still
 * using (the memfds whose numbers are in a udmabuf list).
 */
export function ioctlNewFdAsync<T extends Fd>(
  ctor: new (fd: number) => T,
  handle: Fd,
  fd: number,
  request: number,
  arg: ArrayBufferView,
  fdOffset: number,
  signal: AbortSignal | undefined,
  afterAbort?: () => void,
): Promise<T> {
  if (signal?.aborted) {
    afterAbort?.();
    return Promise.reject(abortError(signal.reason));
  }
  const call = holdDuring(handle, () => native.ioctlFdAsync(fd, request, arg, fdOffset, handle)).then(
    (nfd) => adoptFd(ctor, nfd),
    (e: unknown) => {
      throw fromNative(e, { request: requestName(request) });
    },
  );
  if (signal === undefined) return call;
  // afterAbort runs once the syscall is over, whatever its outcome.
  if (afterAbort !== undefined) call.then(() => signal.aborted && afterAbort(), () => signal.aborted && afterAbort());
  return abortable(call, signal, undefined, (h) => h.close());
}
