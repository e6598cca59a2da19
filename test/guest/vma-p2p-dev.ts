/**
 * The kernel series' test importer, /dev/vma_p2p (lib/test_vma_p2p.c,
 * lib/test_vma_p2p_uapi.h), from a guest test: choose a PCI importer, import
 * a range of this process, give it back. These requests exist in v1 and v2
 * of the series alike. (The map type query is lib/pci/p2pmem.ts's
 * `P2pMem.topology().kernel`.)
 */
import type { Test } from 'tap';
import { Fd, ioc, ioctlSync, Pci, type Mapping } from '../../lib';
import { memfdMapping } from './helpers';

// struct vma_p2p_dev { u32 flags, domain, bus, devfn, map_type, reserved; }
const VMA_P2P_SET_IMPORTER = ioc.iow('P', 0xa0, 24);
// struct vma_p2p_cmd { u64 addr, npages, ptr; u32 flags, reserved; u64 cpages; }
const VMA_P2P_MAP = ioc.iowr('P', 0xa2, 40);
const VMA_P2P_UNMAP = ioc.io('P', 0xa3);
const VMA_P2P_READ = ioc.iowr('P', 0xa4, 40);

const PAGE = 4096;

function command(addr: bigint, pages: number, ptr: bigint): Buffer {
  const cmd = Buffer.alloc(40);
  cmd.writeBigUInt64LE(addr, 0);
  cmd.writeBigUInt64LE(BigInt(pages), 8);
  cmd.writeBigUInt64LE(ptr, 16);
  return cmd;
}

/** The test module writes its answers through a user pointer: memory whose address JS knows. */
function withUserMemory<T>(bytes: number, use: (m: Mapping) => T): T {
  const m = memfdMapping(bytes);
  try {
    return use(m);
  } finally {
    m.unmap();
  }
}

export class VmaP2pImporter {
  private readonly fd: Fd;

  /** Opens /dev/vma_p2p (closed when the test ends) for the PCI device `importer`. */
  constructor(t: Test, importer: string) {
    const d = Pci.device(importer);
    this.fd = Fd.open('/dev/vma_p2p', 'r+');
    t.teardown(() => this.fd.close());
    ioctlSync(this.fd, VMA_P2P_SET_IMPORTER, new Uint32Array([0, d.domain, d.bus, (d.slot << 3) | d.function, 0, 0]), { name: 'VMA_P2P_SET_IMPORTER' });
  }

  /** vma_p2p_map() of the first `pages` pages of `mapping`, read-only: the address of each page. */
  map(mapping: Mapping, pages: number): bigint[] {
    return withUserMemory(pages * 8, (out) => {
      ioctlSync(this.fd, VMA_P2P_MAP, command(mapping.address, pages, out.address), { name: 'VMA_P2P_MAP' });
      return [...new BigUint64Array(out.buffer, 0, pages)];
    });
  }

  /** The test module's emulated DMA read of the first `pages` pages of the mapped range. */
  read(mapping: Mapping, pages: number): Buffer {
    return withUserMemory(pages * PAGE, (out) => {
      ioctlSync(this.fd, VMA_P2P_READ, command(mapping.address, pages, out.address), { name: 'VMA_P2P_READ' });
      return Buffer.from(out.buffer.slice(0));
    });
  }

  /** vma_p2p_unmap(). */
  unmap(): void {
    ioctlSync(this.fd, VMA_P2P_UNMAP, 0, { name: 'VMA_P2P_UNMAP' });
  }
}
