/** Anonymous memory files (memfd_create(2)), e.g. as backing for udmabuf or mmap tests. */
import { invalidArgType, sysError } from './errors';
import { Fd } from './handle';
import { native } from './native';

export interface MemfdOptions {
  /** Close on exec (MFD_CLOEXEC). Default true. */
  cloexec?: boolean;
  /** Allow fcntl(F_ADD_SEALS), which udmabuf needs (MFD_ALLOW_SEALING). Default false. */
  allowSealing?: boolean;
}

/** Creates a memfd of size 0 (grow it with `fs.ftruncateSync(m.fd, size)`). */
export function memfd(name = 'p2pdma', options: MemfdOptions = {}): Fd {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name, memfd);
  const c = native.memfdConstants;
  let flags = 0;
  if (options.cloexec ?? true) flags |= c.MFD_CLOEXEC;
  if (options.allowSealing ?? false) flags |= c.MFD_ALLOW_SEALING;
  const fd = native.memfdCreate(name, flags);
  if (fd < 0) throw sysError(-fd, 'memfd_create', {}, memfd);
  return new Fd(fd);
}
