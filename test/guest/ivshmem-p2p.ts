/**
 * The series' ivshmem_p2p exporter from a guest test: its uapi requests
 * (include/uapi/misc/ivshmem_p2p.h) and a shared mapping of its BAR, closed
 * when the test ends.
 */
import type { Test } from 'tap';
import { Fd, ioc, ioctlSync, mmap, type Mapping } from '../../lib';

// struct ivshmem_p2p_info { u64 size, bus_addr; u32 active_maps, revokes; }
export const IVSHMEM_P2P_IOCTL_INFO = ioc.ior(0xb9, 0, 24);
export const IVSHMEM_P2P_IOCTL_REVOKE = ioc.io(0xb9, 1);

export interface IvshmemP2pMapping {
  fd: Fd;
  map: Mapping;
  /** The BAR, attachments not yet released, and REVOKEs so far (IVSHMEM_P2P_IOCTL_INFO). */
  info(): { size: bigint; busAddr: bigint; activeMaps: number; revokes: number };
}

/** Opens `node` (/dev/ivshmem_p2pN) and maps `size` bytes of its BAR, shared and writable. */
export function mapIvshmemP2p(t: Test, node: string, size: number): IvshmemP2pMapping {
  const fd = Fd.open(node, 'r+');
  t.teardown(() => fd.close());
  const map = mmap(fd, size, { prot: 'rw', flags: 'shared' });
  t.teardown(() => map.unmap());
  return {
    fd,
    map,
    info() {
      const b = Buffer.alloc(24);
      ioctlSync(fd, IVSHMEM_P2P_IOCTL_INFO, b);
      return { size: b.readBigUInt64LE(0), busAddr: b.readBigUInt64LE(8), activeMaps: b.readUInt32LE(16), revokes: b.readUInt32LE(20) };
    },
  };
}
