/**
 * The one AbortSignal rule of every promise in this package.
 *
 * An abort before the operation reaches the kernel or the device cancels it:
 * nothing runs. An abort after that rejects the promise at once with an
 * AbortError; what is already in the kernel or the device (an ioctl on the
 * thread pool, an NVMe command, an RDMA registration or posted work
 * request) cannot be recalled and runs to its end in the background. Until
 * it ends, it keeps what it uses: the handle stays busy (close() defers its
 * teardown; `await using` waits), the memory stays held (a Mapping cannot
 * be unmapped under it), and in-place memory (a Mapping, a
 * SharedArrayBuffer) may still be written. When it ends, its outcome is
 * discarded: a created fd or object is closed, a staged copy is not copied
 * back into the caller's view, an error is dropped. Waits (poll, fences)
 * have nothing in flight: an abort just stops waiting.
 */
import { abortError } from './errors';

/**
 * `op` (already started) settled by `signal`'s rule above: rejects with an
 * AbortError as soon as `signal` aborts; `discard` then receives the result
 * if the operation still succeeds.
 */
export function abortable<T>(op: Promise<T>, signal: AbortSignal | undefined, caller?: Function, discard?: (value: T) => void): Promise<T> {
  if (signal === undefined) return op;
  return new Promise<T>((resolve, reject) => {
    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
      reject(abortError(signal.reason, caller));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    op.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        if (aborted) discard?.(v);
        else resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (!aborted) reject(e);
      },
    );
  });
}
