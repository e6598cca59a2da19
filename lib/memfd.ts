/** Anonymous memory files (memfd_create(2)), e.g. as backing for udmabuf or mmap tests. */
import { fromNative, invalidArgType, invalidArgValue } from './errors';
import { adoptFd, Fd } from './handle';
import { native } from './native';

export interface MemfdOptions {
  /**
   * Close on exec (MFD_CLOEXEC): always on, so the fd cannot leak into
   * child processes (pass it to a child through `spawn`'s `stdio` instead).
   * `false` is refused.
   */
  cloexec?: true;
  /** Allow fcntl(F_ADD_SEALS), which udmabuf needs (MFD_ALLOW_SEALING). Default false. */
  allowSealing?: boolean;
}

/** Creates a memfd of size 0 (grow it with `fs.ftruncateSync(m.fd, size)`). */
export function memfd(name = 'p2pdma', options: MemfdOptions = {}): Fd {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name, memfd);
  if ((options.cloexec as boolean | undefined) === false) {
    throw invalidArgValue('options.cloexec', false, 'must be true: memfds are always close-on-exec', memfd);
  }
  const c = native.memfdConstants;
  const flags = c.MFD_CLOEXEC | (options.allowSealing ?? false ? c.MFD_ALLOW_SEALING : 0);
  try {
    return adoptFd(Fd, native.memfdCreate(name, flags));
  } catch (e) {
    throw fromNative(e, {}, memfd);
  }
}
