/** Anonymous memory files (memfd_create(2)), e.g. as backing for udmabuf or mmap tests. */
import { fromNative, invalidArgType, invalidArgValue, validateObject } from './errors';
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
  validateObject(options, 'options', memfd);
  const { cloexec = true, allowSealing = false } = options;
  if (cloexec !== true) throw invalidArgValue('options.cloexec', cloexec, 'must be true: memfds are always close-on-exec', memfd);
  if (typeof allowSealing !== 'boolean') throw invalidArgType('options.allowSealing', 'of type boolean', allowSealing, memfd);
  const c = native.memfdConstants;
  const flags = c.MFD_CLOEXEC | (allowSealing ? c.MFD_ALLOW_SEALING : 0);
  try {
    return adoptFd(Fd, native.memfdCreate(name, flags));
  } catch (e) {
    throw fromNative(e, {}, memfd);
  }
}
