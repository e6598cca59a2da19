// RDMA memory regions on device memory, through the addon (kernel patches
// "RDMA/umem: map device memory through p2p_map" and "RDMA/rxe: register
// memory regions on peer-to-peer device memory", with the p2pmem and
// ivshmem_p2p exporters).
//
// The baseline kernel refuses an MR on an NVMe CMB (p2pmem/allocate) or a
// BAR mapping with EFAULT, and the API says why; the patched kernel takes
// them: an RDMA WRITE lands in the CMB (seen through the mapping, and on
// the namespace after an O_DIRECT write from the CMB); after munmap the
// next RDMA on the MR fails with a remote access error, while after ivshmem's
// REVOKE rxe maps the BAR again and the next RDMA works (series v2).
// Series v3 (7.3) registers the CMB mapping on a dma-buf of its pages that
// p2pdma exports through the p2p_dma_buf callback: the CMB cases run on
// both series, the ivshmem_p2p ones on v2 (v3's BAR case is vfio.test.ts's).
// A split of the mapping under the MR (issue 26, v2 defect 4): v3's MR
// works on, v2's is dead.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import { Fd, ioctlSync, mmap, type Mapping, type MemoryRegion, type ProtectionDomain, type QueuePair } from '../../lib';
import { alignedBuffer, guest, inGuest, ivshmemBdf, ivshmemNode, kernel, kernelSeries, nvmeControllers, patchedOnly, v2Only, v3Only } from './helpers';
import { IVSHMEM_P2P_IOCTL_REVOKE, mapIvshmemP2p } from './ivshmem-p2p';
import { checkSplit } from './p2p-split';
import { hostPattern, pattern, setup } from './rdma-helpers';

const SIZE = 1 << 20;
// Clear of topology.test.ts's first MiB of each namespace.
const NVME_OFFSET = 8 << 20;


interface Rig {
  pd: ProtectionDomain;
  a: QueuePair;
  /** A host MR of SIZE bytes holding pattern(seed). */
  host(seed: number): { buf: Buffer; mr: MemoryRegion };
}

// Peer-to-peer MRs are rxe's (the series converts no other driver).
function rig(t: Test): Rig {
  const s = setup(t, undefined, 'rxe0');
  return {
    pd: s.pd,
    a: s.a,
    host(seed) {
      const buf = hostPattern(SIZE, seed);
      return { buf, mr: s.mr(buf, 'local-write') };
    },
  };
}

function mapFile(t: Test, file: string): Mapping {
  const fd = Fd.open(file, 'r+');
  const map = mmap(fd, SIZE, { prot: 'rw', flags: 'shared' });
  t.teardown(() => {
    map.unmap();
    fd.close();
  });
  return map;
}

const ACCESS = ['local-write', 'remote-write', 'remote-read'] as const;
const ctrls = inGuest ? nvmeControllers() : [];
const ivBdf = inGuest ? ivshmemBdf() : undefined;
const onV2 = v2Only('the BAR through vfio-pci (vfio.test.ts) instead of ivshmem_p2p');
const onV3 = v3Only('p2pmem dma-bufs');
const PAGE = 4096;

/** The p2pdma dma-bufs in debugfs's bufinfo: size and attached devices each; undefined where it cannot be read. */
function p2pmemDmaBufs(): { size: number; devices: string[] }[] | undefined {
  let info: string;
  try {
    info = fs.readFileSync('/sys/kernel/debug/dma_buf/bufinfo', 'utf8');
  } catch {
    return undefined;
  }
  const lines = info.split('\n');
  const out: { size: number; devices: string[] }[] = [];
  lines.forEach((l, at) => {
    const f = l.split('\t');
    if (!/^\d+$/.test(f[0]) || f[4] !== 'p2pdma') return;
    const devices: string[] = [];
    let i = lines.indexOf('\tAttached Devices:', at);
    for (i++; i > 0 && i < lines.length && lines[i].startsWith('\t'); i++) devices.push(lines[i].trim());
    out.push({ size: Number(f[0]), devices });
  });
  return out;
}

t.test('baseline: an MR on an NVMe CMB fails with EFAULT naming kernel-patches/', { skip: guest.skip || (kernel !== 'baseline' && 'the patched kernel accepts it (next test)') }, async (t) => {
  const c = ctrls[0];
  if (!t.ok(c && fs.existsSync(`${c.p2pmem}/allocate`), 'an NVMe controller with a p2pmem CMB')) return;
  const r = rig(t);
  const map = mapFile(t, `${c.p2pmem}/allocate`);
  await t.rejects(r.pd.registerMemory(map, { access: [...ACCESS] }), {
    code: 'EFAULT',
    syscall: 'ibv_reg_mr',
    message: /^EFAULT: bad address[^,]*, ibv_reg_mr: this kernel cannot pin peer \(device\) memory for RDMA.*kernel-patches\//,
  });
  t.throws(() => r.pd.registerMemorySync(map, { access: [...ACCESS] }), { code: 'EFAULT', message: /p2p_map/ });
});

t.test('patched: RDMA WRITE lands in the NVMe CMB, READ comes back, NVMe round trip, unmap waits for the MR', patchedOnly, async (t) => {
  const c = ctrls[0];
  if (!t.ok(c && fs.existsSync(`${c.p2pmem}/allocate`), 'an NVMe controller with a p2pmem CMB')) return;
  const r = rig(t);
  const fd = Fd.open(`${c.p2pmem}/allocate`, 'r+');
  t.teardown(() => fd.close());
  const map = mmap(fd, SIZE, { prot: 'rw', flags: 'shared' });
  map.write(Buffer.alloc(SIZE, 0x5a));
  const cmb = await r.pd.registerMemory(map, { access: [...ACCESS] });
  t.teardown(() => cmb.close());

  // WRITE host -> CMB, checked through the mapping.
  const src = r.host(1);
  await r.a.write(src.mr, cmb);
  t.ok(map.read(Buffer.alloc(SIZE)).equals(src.buf), 'RDMA WRITE landed in the CMB');

  // READ CMB -> host of what the CPU put there.
  const cpu = pattern(SIZE, 2);
  map.write(cpu);
  const dst = r.host(0);
  dst.buf.fill(0);
  await r.a.read(dst.mr, cmb);
  t.ok(dst.buf.equals(cpu), 'RDMA READ from the CMB matches');

  // WRITE into the CMB, CMB -> namespace by O_DIRECT (P2P), namespace -> RAM.
  const src3 = r.host(3);
  await r.a.write(src3.mr, cmb);
  const ns = fs.openSync(c.namespace, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  try {
    t.equal(fs.writeSync(ns, new Uint8Array(map.buffer), 0, SIZE, NVME_OFFSET), SIZE);
    const back = alignedBuffer(SIZE);
    t.equal(fs.readSync(ns, back, 0, SIZE, NVME_OFFSET), SIZE);
    t.ok(back.equals(src3.buf), 'CMB -> namespace -> host memory matches the RDMA data');
  } finally {
    fs.closeSync(ns);
  }

  // The API refuses to unmap memory an MR covers (issue 22): the MR would
  // pin whatever is mapped there next. (That a munmap() under a p2p MR
  // revokes it in the kernel is the series' kselftests' to check.)
  t.throws(() => map.unmap(), { code: 'ERR_P2PDMA_BUSY', message: /1 memory region/ }, 'unmap() refused while the MR covers the CMB');
  await cmb[Symbol.asyncDispose]();
  map.unmap();
  t.ok(map.closed, 'unmapped once the MR is deregistered');
});

t.test('v3: ibv_reg_mr on the CMB mapping goes on a p2pdma dma-buf of its pages: offset off a page, WRITE and READ, gone at deregistration', onV3, async (t) => {
  const c = ctrls[0];
  if (!t.ok(c && fs.existsSync(`${c.p2pmem}/allocate`), 'an NVMe controller with a p2pmem CMB')) return;
  const s = setup(t, undefined, 'rxe0');
  const map = mapFile(t, `${c.p2pmem}/allocate`);
  map.write(Buffer.alloc(SIZE, 0));
  // Off a page boundary over five pages: the callback's offset and rounding.
  const OFF = 3 * PAGE + 256;
  const LEN = 4 * PAGE;
  const ours = (bufs: { size: number }[] | undefined) => bufs?.filter((b) => b.size === 5 * PAGE).length;
  const before = ours(p2pmemDmaBufs());
  const mr = await s.pd.registerMemory(map, { offset: OFF, length: LEN, access: [...ACCESS] });
  t.equal(mr.length, LEN);
  const during = p2pmemDmaBufs();
  if (during) {
    t.equal(ours(during), before! + 1, 'a p2pdma dma-buf of the five pages backs the MR (bufinfo)');
    t.ok(during.some((b) => b.size === 5 * PAGE && b.devices.includes('rxe0')), 'attached to rxe0');
  } else {
    t.comment('no debugfs bufinfo: the dma-buf is not checked');
  }
  const src = s.pattern(LEN, 9);
  await s.a.write(s.mr(src, 'local-write'), mr.remote());
  const cmb = map.read(Buffer.alloc(SIZE));
  t.ok(cmb.subarray(OFF, OFF + LEN).equals(src), 'the WRITE landed in the CMB at the registered offset');
  t.ok(cmb.subarray(0, OFF).every((x) => x === 0) && cmb.subarray(OFF + LEN).every((x) => x === 0), 'and nowhere else');
  const cpu = pattern(LEN, 10);
  map.write(cpu, OFF);
  const back = s.buffer(LEN);
  await s.a.read(s.mr(back, 'local-write'), mr.remote());
  t.ok(back.equals(cpu), 'a READ of the CMB through the MR');
  await mr[Symbol.asyncDispose]();
  const after = p2pmemDmaBufs();
  if (after) t.equal(ours(after), before, 'deregistration released the dma-buf');
});

// Issue 26, v2 defect 4: a partial mprotect() or madvise() splits the VMA,
// and the pieces of a VM_SPECIAL mapping (the CMB's is VM_MIXEDMAP,
// ivshmem_p2p's VM_PFNMAP) never merge back; v2's MR, which maps its range
// through one VMA again after each invalidation, is then dead for good. v3's
// MR holds the dma-buf of the pages and does not look at the VMA after
// registration (p2p-split.ts; v3's BAR case is vfio.test.ts's).
t.test('patched: a partial mprotect and madvise split the CMB mapping under an MR; on v3 the MR keeps working (v2: dead)', patchedOnly, async (t) => {
  const c = ctrls[0];
  if (!t.ok(c && fs.existsSync(`${c.p2pmem}/allocate`), 'an NVMe controller with a p2pmem CMB')) return;
  checkSplit(t, `${c.p2pmem}/allocate`, 'CMB');
});

t.test('patched: a partial mprotect and madvise split the ivshmem_p2p BAR mapping under an MR: dead (v2 defect 4)', onV2, async (t) => {
  if (!t.ok(ivBdf, 'ivshmem-plain present')) return;
  const node = ivshmemNode(ivBdf!);
  if (!t.ok(node, `ivshmem_p2p char device for ${ivBdf} (CONFIG_IVSHMEM_P2P)`)) return;
  checkSplit(t, node!, 'BAR');
});

t.test('patched: an MR on the ivshmem BAR; after REVOKE the next RDMA maps it again', onV2, async (t) => {
  if (!t.ok(ivBdf, 'ivshmem-plain present')) return;
  const node = ivshmemNode(ivBdf!);
  if (!t.ok(node, `ivshmem_p2p char device for ${ivBdf} (CONFIG_IVSHMEM_P2P)`)) return;
  const r = rig(t);
  const { fd, map, info } = mapIvshmemP2p(t, node!, SIZE);
  map.write(Buffer.alloc(SIZE, 0x5a));
  const bar = r.pd.registerMemorySync(map, { access: [...ACCESS] });
  t.equal(info().activeMaps, 1, 'the MR holds one p2p mapping of the BAR');
  const src = r.host(5);
  await r.a.write(src.mr, bar);
  t.ok(map.read(Buffer.alloc(SIZE)).equals(src.buf), 'RDMA WRITE landed in the BAR');
  const cpu = pattern(SIZE, 6);
  map.write(cpu);
  const dst = r.host(0);
  await r.a.read(dst.mr, bar);
  t.ok(dst.buf.equals(cpu), 'RDMA READ from the BAR matches');

  ioctlSync(fd, IVSHMEM_P2P_IOCTL_REVOKE);
  t.equal(info().activeMaps, 0, 'REVOKE invalidated the MR and released its mapping');
  const again = r.host(7);
  await r.a.write(again.mr, bar);
  t.equal(info().activeMaps, 1, 'the WRITE made rxe map the BAR again');
  t.ok(map.read(Buffer.alloc(SIZE)).equals(again.buf), 'and landed in the BAR');
  bar.close();
  t.equal(info().activeMaps, 0, 'nothing mapped after deregistration');
});

// v1 required VM_SHARED, which a shared mapping of a file opened read-only
// does not have (defect 7); a reading importer needs none.
t.test('patched: a read-only shared mapping of the BAR registers for remote reads, not for writes', onV2, async (t) => {
  if (!t.ok(ivBdf, 'ivshmem-plain present')) return;
  const node = ivshmemNode(ivBdf!);
  if (!t.ok(node, `ivshmem_p2p char device for ${ivBdf} (CONFIG_IVSHMEM_P2P)`)) return;
  const r = rig(t);
  const cpu = pattern(SIZE, 8);
  mapIvshmemP2p(t, node!, SIZE).map.write(cpu);
  const fd = Fd.open(node!, 'r');
  t.teardown(() => fd.close());
  const ro = mmap(fd, SIZE, { prot: 'read', flags: 'shared' });
  t.teardown(() => ro.unmap());
  const mr = await r.pd.registerMemory(ro, { access: ['remote-read'] });
  t.teardown(() => mr.close());
  const dst = r.host(0);
  dst.buf.fill(0);
  await r.a.read(dst.mr, mr);
  t.ok(dst.buf.equals(cpu), 'RDMA READ through the read-only mapping');
  await t.rejects(r.pd.registerMemory(ro, { access: ['local-write', 'remote-write'] }), { code: 'EPERM' }, 'registering it for writes is refused');
});

/** Why the BAR cannot be mapped through sysfs, or false if it can (or there is no BAR: the test fails). */
function resourceMmapSkip(bdf: string | undefined): string | false {
  if (!bdf) return false;
  const file = `/sys/bus/pci/devices/${bdf}/resource2`;
  try {
    using fd = Fd.open(file, 'r+');
    mmap(fd, 4096, { prot: 'rw', flags: 'shared' }).unmap();
    return false;
  } catch (e) {
    // With IO_STRICT_DEVMEM sysfs refuses to map a BAR a driver owns, as
    // ivshmem_p2p does on the patched kernel.
    return `${file} cannot be mapped: ${(e as NodeJS.ErrnoException).code ?? e}`;
  }
}

t.test('an MR on a BAR mapped without an exporter (sysfs resource2) fails with EFAULT', { skip: guest.skip || (inGuest && resourceMmapSkip(ivBdf)) }, async (t) => {
  if (!t.ok(ivBdf, 'ivshmem-plain present')) return;
  const r = rig(t);
  // VM_IO | VM_PFNMAP and no p2p_map: no fallback, on either kernel.
  const map = mapFile(t, `/sys/bus/pci/devices/${ivBdf}/resource2`);
  t.throws(() => r.pd.registerMemorySync(map, { access: [...ACCESS] }), { code: 'EFAULT', message: /kernel-patches\// });
});

if (!inGuest) t.pass('guest-only file');
