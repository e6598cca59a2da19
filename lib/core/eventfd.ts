/**
 * eventfd(2): a 64-bit counter behind an fd that is readable while non-zero.
 * For tests of the poll machinery and as the wake-up primitive of later
 * completion channels. Always EFD_CLOEXEC | EFD_NONBLOCK.
 */
import * as fs from 'node:fs';

import { fromNative, invalidArgType, outOfRange, validateObject } from './errors';
import { adoptFd, Fd } from './handle';
import { native } from './native';
import { pollOnce } from './poll';

const U64_MAX = 2n ** 64n - 2n; // the kernel refuses 0xffffffffffffffff

export interface EventFdOptions {
  /** EFD_SEMAPHORE: each read takes 1 instead of the whole count. Default false. */
  semaphore?: boolean;
}

export interface EventFdReadOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** An eventfd. Create with `eventfd()`. */
export class EventFd extends Fd {
  /** Adds `value` (default 1) to the counter. Never blocks: EAGAIN if it would overflow. */
  write(value: number | bigint = 1n): void {
    let v: bigint;
    if (typeof value === 'bigint') v = value;
    else if (typeof value === 'number' && Number.isSafeInteger(value)) v = BigInt(value);
    else if (typeof value === 'number') throw outOfRange('value', 'a safe integer', value, this.write);
    else throw invalidArgType('value', 'of type number or bigint', value, this.write);
    if (v < 1n || v > U64_MAX) throw outOfRange('value', `>= 1 && <= ${U64_MAX}`, value, this.write);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    fs.writeSync(this.fd, b);
  }

  /** Takes the count (or 1 in semaphore mode). Throws EAGAIN when it is 0. */
  readSync(): bigint {
    const b = Buffer.alloc(8);
    fs.readSync(this.fd, b);
    return b.readBigUInt64LE();
  }

  /** Waits (on the event loop, see pollOnce) until the count is non-zero, then takes it. */
  async read(options: EventFdReadOptions = {}): Promise<bigint> {
    validateObject(options, 'options', this.read);
    for (;;) {
      await pollOnce(this, { events: 'read', signal: options.signal, timeoutMs: options.timeoutMs });
      try {
        return this.readSync();
      } catch (e) {
        // Another reader took it first.
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      }
    }
  }
}

/** Creates an eventfd with the counter at `initval` (0..2^32-1). */
export function eventfd(initval = 0, options: EventFdOptions = {}): EventFd {
  if (typeof initval !== 'number') throw invalidArgType('initval', 'of type number', initval, eventfd);
  if (!Number.isInteger(initval) || initval < 0 || initval > 0xffffffff) {
    throw outOfRange('initval', 'an integer >= 0 && <= 4294967295', initval, eventfd);
  }
  validateObject(options, 'options', eventfd);
  const { semaphore = false } = options;
  if (typeof semaphore !== 'boolean') throw invalidArgType('options.semaphore', 'of type boolean', semaphore, eventfd);
  try {
    return adoptFd(EventFd, native.eventfdCreate(initval, semaphore));
  } catch (e) {
    throw fromNative(e, {}, eventfd);
  }
}
