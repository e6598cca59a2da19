/**
 * The kernel series' test importer, /dev/vma_p2p (lib/test_vma_p2p.c,
 * lib/test_vma_p2p_uapi.h), from a guest test: choose a PCI importer, import
 * a range of this process, give it back. These requests exist in v1 and v2
 * of the series alike.
 */
import * as fs from 'node:fs';
import type { Test } from 'tap';
import { Fd, ioc, ioctlSync, memfd, mmap, type Mapping } from '../../lib/index';

// struct vma_p2p_dev { u32 flags, domain, bus, devfn, map_type, reserved; }
const VMA_P2P_SET_IMPORTER = ioc.iow('P', 0xa0, 24);
const VMA_P2P_MAP_TYPE = ioc.iowr('P', 0xa1, 24);
// struct vma_p2p_cmd { u64 addr, npages, ptr; u32 flags, reserved; u64 cpages; }
const VMA_P2P_MAP = ioc.iowr('P', 0xa2, 40);
const VMA_P2P_UNMAP = ioc.io('P', 0xa3);
const VMA_P2P_READ = ioc.iowr('P', 0xa4, 40);

const MAP_TYPES: Record<number, string> = { 1: 'NOT_SUPPORTED', 2: 'BUS_ADDR', 3: 'THRU_HOST_BRIDGE', 4: 'CPU' };

function devWords(bdf: string): [number, number, number] {
  const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/.exec(bdf);
  if (!m) throw new Error(`not a PCI address: ${bdf}`);
  return [parseInt(m[1], 16), parseInt(m[2], 16), (parseInt(m[3], 16) << 3) | parseInt(m[4], 16)];
}

const PAGE = 4096;

function command(addr: bigint, pages: number, ptr: bigint): Buffer {
  const cmd = Buffer.alloc(40);
  cmd.writeBigUInt64LE(addr, 0);
  cmd.writeBigUInt64LE(BigInt(pages), 8);
  cmd.writeBigUInt64LE(ptr, 16);
  return cmd;
}

/**
 * The test module reads and writes through user pointers: memory whose
 * address JS knows, a mapping of a memfd, unmapped when `use` returns.
 */
function withUserMemory<T>(bytes: number, use: (m: Mapping) => T): T {
  using fd = memfd('vma-p2p-user');
  fs.ftruncateSync(fd.fd, bytes);
  const m = mmap(fd, bytes);
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
    this.fd = Fd.open('/dev/vma_p2p', 'r+');
    t.teardown(() => this.fd.close());
    ioctlSync(this.fd, VMA_P2P_SET_IMPORTER, new Uint32Array([0, ...devWords(importer), 0, 0]), { name: 'VMA_P2P_SET_IMPORTER' });
  }

  /** pci_p2pdma_map_type_dev(provider, importer), as the kernel answers now. */
  mapType(provider: string): string {
    const q = new Uint32Array([0, ...devWords(provider), 0, 0]);
    ioctlSync(this.fd, VMA_P2P_MAP_TYPE, q, { name: 'VMA_P2P_MAP_TYPE' });
    return MAP_TYPES[q[4]] ?? `unknown (${q[4]})`;
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
