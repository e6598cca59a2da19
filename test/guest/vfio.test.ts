// VFIO in the guest: QEMU's ivshmem-plain (a RAM-backed BAR2 without struct
// page) handed to vfio-pci in no-IOMMU mode, BAR2 exported as a dma-buf
// (VFIO_DEVICE_FEATURE_DMA_BUF, Linux 6.19+: the 7.3 lanes), revoked while
// the device's memory is off. On kernel-patches/v3 rxe imports it
// (registerDmaBuf), and a plain registration of the BAR's mapping goes the
// same way (vfio-pci's p2p_dma_buf callback names the dma-buf): RDMA WRITE
// lands in the BAR, revocation fails the MR cleanly (a remote access error,
// never an RNR NAK), and it maps again once the memory is back; mprotect()
// and splits of the mapping change nothing for the MR (issue 26's v2
// defects 2-5). 6.12 has no VFIO.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';

import { Rdma, Vfio } from '../../lib';
import { dmabufLeakGuard } from './dmabuf-leaks';
import { bindToVfio, guest, inGuest, ivshmemBdf, kernelSeries, linuxMajor, openIvshmemVfio, vfioKernel } from './helpers';
import { checkSplit } from './p2p-split';
import { onPvrdma, rnrNaksSent, setup } from './rdma-helpers';

const leaks = dmabufLeakGuard();

const PAGE = 4096;
const BAR = 2;
const BAR_SIZE = 16 << 20;
const bdf = inGuest ? ivshmemBdf() : undefined;
const vfioLane = vfioKernel;
const oldKernel = guest.skip ? guest : { skip: linuxMajor >= 7 ? 'Linux 7.x has vfio-pci' : false };
const rxeStock = vfioLane.skip ? vfioLane : { skip: onPvrdma ? 'pvrdma lane' : kernelSeries === 'v3' ? 'kernel-patches/v3: rxe imports dma-bufs' : false };
const rxeV3 = vfioLane.skip ? vfioLane : { skip: onPvrdma ? 'pvrdma lane' : kernelSeries === 'v3' ? false : 'rxe imports dma-bufs only with kernel-patches/v3 (P2PDMA_KERNEL=patched-7.3)' };
const vmaV3 = vfioLane.skip ? vfioLane : { skip: onPvrdma ? 'pvrdma lane' : kernelSeries === 'v3' ? false : 'a BAR mapping registers only with kernel-patches/v3 (p2p_dma_buf; P2PDMA_KERNEL=patched-7.3)' };
const vmaStock = vfioLane.skip ? vfioLane : { skip: onPvrdma ? 'pvrdma lane' : kernelSeries === 'v3' ? 'kernel-patches/v3: vfio-pci names the BAR mapping\'s dma-buf' : false };

function openIvshmem(t: Test): Vfio {
  return openIvshmemVfio(t, bdf!);
}

t.test('a kernel without vfio-pci: Vfio.open is ENOENT naming CONFIG_VFIO_PCI', oldKernel, async (t) => {
  t.ok(bdf, 'ivshmem-plain present');
  t.throws(() => Vfio.open(bdf!), { code: 'ENOENT', syscall: 'open', path: '/sys/bus/pci/drivers/vfio-pci', message: /CONFIG_VFIO_PCI/ });
  t.throws(() => Vfio.setNoIommuMode(true), { code: 'ENOENT', message: /CONFIG_VFIO_NOIOMMU/ });
});

t.test('Vfio.open binds ivshmem to vfio-pci in no-IOMMU mode; BAR2 region; close gives it back', vfioLane, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const driverLink = `/sys/bus/pci/devices/${bdf}/driver`;
  const before = fs.existsSync(driverLink) ? fs.readlinkSync(driverLink) : undefined;
  const wasOff = Vfio.setNoIommuMode(true);
  try {
    const v = Vfio.open(bdf!);
    t.equal(fs.readlinkSync(driverLink).split('/').pop(), 'vfio-pci', 'bound to vfio-pci');
    t.ok(v.noIommu, 'a no-IOMMU group');
    t.ok(fs.existsSync(`/dev/vfio/noiommu-${v.group}`), `/dev/vfio/noiommu-${v.group}`);
    const r = v.region(BAR);
    t.match(r, { index: BAR, size: BAR_SIZE, read: true, write: true, mmap: true }, 'BAR2: 16 MiB, mappable');
    t.ok(v.canExportDmaBuf, 'VFIO_DEVICE_FEATURE_DMA_BUF is there');
    t.equal(fs.readlinkSync(`/proc/self/fd/${v.fd}`), 'anon_inode:[vfio-device]', 'fd: the device fd');
    t.throws(() => v.region(v.numRegions), { code: 'ERR_OUT_OF_RANGE' });
    t.throws(() => Vfio.open(bdf!), { code: 'EBUSY' }, 'a second open of the group is EBUSY');
    v.close();
    t.ok(v.closed);
    v.close();
    t.throws(() => v.region(BAR), { code: 'ERR_P2PDMA_CLOSED' });
    t.throws(() => v.fd, { code: 'ERR_P2PDMA_CLOSED' });
    t.throws(() => v.exportDmaBuf(BAR), { code: 'ERR_P2PDMA_CLOSED' });
  } finally {
    if (wasOff) Vfio.setNoIommuMode(false);
  }
  const after = fs.existsSync(driverLink) ? fs.readlinkSync(driverLink) : undefined;
  t.equal(after, before, `given back to ${before ?? 'no driver'}`);
});

t.test('exportDmaBuf: BAR2 as a dma-buf of its size, from vfio-pci; bad ranges refused; no userspace mmap', vfioLane, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmem(t);
  {
    using buf = v.exportDmaBuf(BAR);
    t.equal(buf.size, BAR_SIZE);
    const info = buf.info();
    t.equal(info.size, BAR_SIZE, 'fdinfo size');
    t.match(info.exporter, /vfio/, `fdinfo exporter: ${info.exporter}`);
    // vfio-pci's dma-buf has no mmap op: the BAR maps through the device fd.
    t.throws(() => buf.map(), { code: 'EINVAL' }, 'the dma-buf itself cannot be mapped');
  }
  using part = v.exportDmaBuf(BAR, { ranges: [{ offset: PAGE, length: 2 * PAGE }, { offset: 8 * PAGE, length: PAGE }] });
  t.equal(part.size, 3 * PAGE, 'two ranges: the sum of their lengths');
  t.throws(() => v.exportDmaBuf(BAR, { ranges: [{ offset: 100, length: PAGE }] }), { code: 'EINVAL', message: /page-aligned/ }, 'unaligned');
  t.throws(() => v.exportDmaBuf(BAR, { ranges: [{ offset: BAR_SIZE - PAGE, length: 2 * PAGE }] }), { code: 'EINVAL' }, 'past the BAR');
  t.throws(() => v.exportDmaBuf(BAR, { ranges: [] }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => v.exportDmaBuf(6), { code: 'ERR_OUT_OF_RANGE' });
});

t.test('revocation: memory off and reset through VFIO; the BAR mapping sees the data again once the memory is back', vfioLane, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmem(t);
  using buf = v.exportDmaBuf(BAR, { ranges: [{ offset: 0, length: 16 * PAGE }] });
  using m = v.map(BAR);
  const bar = new Uint8Array(m.buffer);
  bar.fill(0xa5, 0, PAGE);
  t.ok(v.memoryEnabled, 'memory decode on');
  v.setMemoryEnabled(false);
  t.notOk(v.memoryEnabled, 'memory decode off: vfio-pci revoked the dma-buf and zapped the mapping');
  // A new export while revoked is allowed: it starts revoked.
  using revoked = v.exportDmaBuf(BAR, { ranges: [{ offset: 0, length: PAGE }] });
  t.equal(revoked.size, PAGE);
  v.setMemoryEnabled(true);
  t.ok(bar.subarray(0, PAGE).every((b) => b === 0xa5), 'the mapping faults back in with the BAR\'s content');
  if (v.resettable) {
    v.reset();
    t.pass('VFIO_DEVICE_RESET revoked and restored the dma-bufs');
  } else {
    t.throws(() => v.reset(), { code: 'EINVAL', message: /has no reset method/ }, 'ivshmem on the root bus has no reset method');
  }
  t.equal(buf.size, 16 * PAGE, 'the dma-buf outlives its revocations');
});

t.test('rxe on a VFIO dma-buf (v3): RDMA WRITE lands in the BAR; revoked, the MR fails cleanly; back, it works again', rxeV3, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmem(t);
  const LEN = 4 * PAGE;
  const buf = v.exportDmaBuf(BAR, { ranges: [{ offset: 16 * PAGE, length: LEN }] });
  t.teardown(() => buf.close());
  using m = v.map(BAR);
  const window = new Uint8Array(m.buffer, 16 * PAGE, LEN);
  window.fill(0);

  const s = setup(t);
  const mr = s.pd.registerDmaBufSync(buf, { length: LEN, access: ['local-write', 'remote-write', 'remote-read'] });
  t.teardown(() => mr.close());
  const src = s.pattern(LEN, 7);
  await s.a.write(s.mr(src, 'local-write'), mr.remote());
  t.ok(Buffer.from(window).equals(src), 'the WRITE landed in the BAR (read through the device fd\'s mapping)');
  const back = s.buffer(PAGE);
  await s.a.read(s.mr(back, 'local-write'), { ...mr.remote(), addr: mr.remote().addr + BigInt(PAGE), length: PAGE });
  t.ok(back.equals(src.subarray(PAGE, 2 * PAGE)), 'a READ of the BAR through the MR');

  v.setMemoryEnabled(false);
  await t.rejects(s.a.write(s.mr(s.buffer(PAGE), 'local-write'), mr.remote(), PAGE), { status: 'IBV_WC_REM_ACCESS_ERR', message: /remote access error/ }, 'revoked: a WRITE to the MR is a remote access error');
  t.throws(() => s.pd.registerDmaBufSync(buf, { length: PAGE, access: 'local-write' }), { code: 'ENODEV' }, 'revoked: a new registration is ENODEV');
  v.setMemoryEnabled(true);

  // The failed WRITE put that QP pair in the error state: a fresh pair on the MR's PD.
  const [a2, b2] = Rdma.loopbackPair(s.pd);
  t.teardown(() => {
    a2.close();
    b2.close();
  });
  const src2 = s.pattern(LEN, 11);
  await a2.write(s.mr(src2, 'local-write'), mr.remote());
  t.ok(Buffer.from(window).equals(src2), 'memory back: the same MR maps the BAR again on its next use');
});

t.test('the stock kernel\'s rxe cannot import a VFIO dma-buf: EOPNOTSUPP', rxeStock, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmem(t);
  using buf = v.exportDmaBuf(BAR, { ranges: [{ offset: 0, length: PAGE }] });
  using ctx = Rdma.open('rxe0');
  using pd = ctx.allocPd();
  t.throws(() => pd.registerDmaBufSync(buf, { length: PAGE, access: 'local-write' }), { code: 'EOPNOTSUPP', message: /does not support dma-buf memory regions/ });
});

const ACCESS = ['local-write', 'remote-write', 'remote-read'] as const;

t.test('ibv_reg_mr on the BAR mapping (v3, the p2p_dma_buf VMA path): WRITE and READ on rxe; revoked, it fails cleanly; back, it works', vmaV3, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmem(t);
  // Off a page boundary and over five pages: the callback's offset and rounding.
  const OFF = 32 * PAGE + 256;
  const LEN = 4 * PAGE;
  const m = v.map(BAR);
  t.teardown(() => m.unmap());
  const window = new Uint8Array(m.buffer, OFF, LEN);
  window.fill(0);

  const s = setup(t);
  // A plain registration (ibv_reg_mr) of the mapping: vfio-pci names the
  // range's dma-buf, and rxe registers the MR on it.
  const mr = await s.pd.registerMemory(m, { offset: OFF, length: LEN, access: [...ACCESS] });
  t.teardown(() => mr.close());
  t.equal(mr.length, LEN);
  const src = s.pattern(LEN, 13);
  await s.a.write(s.mr(src, 'local-write'), mr.remote());
  t.ok(Buffer.from(window).equals(src), 'the WRITE landed in the BAR at the registered offset');
  t.ok(new Uint8Array(m.buffer, OFF - 256, 256).every((b) => b === 0), 'and not before it');
  const back = s.buffer(PAGE);
  await s.a.read(s.mr(back, 'local-write'), { ...mr.remote(), addr: mr.remote().addr + BigInt(PAGE), length: PAGE });
  t.ok(back.equals(src.subarray(PAGE, 2 * PAGE)), 'a READ of the BAR through the MR');

  v.setMemoryEnabled(false);
  // Issue 26, v2 defects 2 and 5: v2's rxe answered a READ of a revoked MR,
  // and any WRITE packet, with an RNR NAK, which IBA allows only for a
  // request that consumes a receive WQE, and made READ responses wait up to
  // 100 ms for its remap work. v3's copy fails at once on the exporter's
  // refusal to vmap: a remote access error for the whole operation.
  const naks = rnrNaksSent();
  const started = Date.now();
  await t.rejects(s.a.write(s.mr(s.buffer(PAGE), 'local-write'), mr.remote(), PAGE), { status: 'IBV_WC_REM_ACCESS_ERR', message: /remote access error/ }, 'revoked: a WRITE to the MR (four packets) is a remote access error');
  // The failed WRITE put that QP pair in the error state: a fresh pair for the READ.
  const [ra, rb] = Rdma.loopbackPair(s.pd);
  t.teardown(() => {
    ra.close();
    rb.close();
  });
  await t.rejects(ra.read(s.mr(s.buffer(PAGE), 'local-write'), mr.remote(), PAGE), { status: 'IBV_WC_REM_ACCESS_ERR', message: /remote access error/ }, 'revoked: a READ of the MR is a remote access error');
  const took = Date.now() - started;
  t.equal(rnrNaksSent(), naks, 'neither was answered with an RNR NAK (send_rnr_err unchanged)');
  // Loopback pairs retry RNR NAKs for ever (rnr_retry 7): an answer at all is the point; the bound only keeps a hang short.
  t.ok(took < 10_000, `both failed without waiting for the memory (${took} ms)`);
  t.throws(() => s.pd.registerMemorySync(m, { offset: OFF, length: PAGE, access: 'local-write' }), { code: 'ENODEV', syscall: 'ibv_reg_mr' }, 'revoked: a new registration of the mapping is ENODEV');
  v.setMemoryEnabled(true);

  // The failed WRITE put that QP pair in the error state: a fresh pair on the MR's PD.
  const [a2, b2] = Rdma.loopbackPair(s.pd);
  t.teardown(() => {
    a2.close();
    b2.close();
  });
  const src2 = s.pattern(LEN, 17);
  await a2.write(s.mr(src2, 'local-write'), mr.remote());
  t.ok(Buffer.from(window).equals(src2), 'memory back: the same MR maps the BAR again on its next use');
  const again = s.pd.registerMemorySync(m, { offset: 0, length: PAGE, access: [...ACCESS] });
  t.equal(again.length, PAGE, 'and the mapping registers again');
  again.close();
});

// Issue 26, v2 defect 3: v2 revoked an MR on mprotect() through the mmu
// notifier, which 6.12 fires only where page table entries exist, so an
// exporter that had none (not faulted in yet) kept its MR. v3's MR follows
// the dma-buf, not the mapping: the access is checked once, at
// registration, and mprotect() changes nothing whatever the page tables
// hold, as for an MR on a dma-buf fd or on pinned pages.
t.test('ibv_reg_mr on the BAR mapping (v3): mprotect(PROT_READ) of the mapping, faulted in or not, leaves the MR writable', vmaV3, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmem(t);
  const s = setup(t);
  const LEN = 4 * PAGE;
  // Two mappings of the BAR: one never touched before the mprotect (no page
  // table entries), one written through first (faulted in).
  for (const [i, touched] of [[0, false], [1, true]] as const) {
    const m = v.map(BAR);
    t.teardown(() => m.unmap());
    const at = (64 + 16 * i) * PAGE;
    if (touched) m.write(Buffer.alloc(LEN), at);
    const mr = await s.pd.registerMemory(m, { offset: at, length: LEN, access: [...ACCESS] });
    t.teardown(() => mr.close());
    m.mprotect('read');
    const src = s.pattern(LEN, 23 + i);
    // A fresh pair each, so a failure of the first does not hide the second.
    const [a, b] = Rdma.loopbackPair(s.pd);
    t.teardown(() => {
      a.close();
      b.close();
    });
    await a.write(s.mr(src, 'local-write'), mr.remote());
    t.ok(m.read(Buffer.alloc(LEN), at).equals(src), `${touched ? 'faulted in' : 'never touched'}: a WRITE after mprotect(PROT_READ) lands in the BAR`);
  }
});

// Issue 26, v2 defect 4: a partial mprotect() or madvise() splits the VMA
// and the pieces of a VM_PFNMAP mapping never merge back; v2's MR, which
// mapped its range through one VMA again after each invalidation, was then
// dead for good. v3's MR does not look at the VMA after registration
// (test/guest/c/p2p_mr_split.c; the CMB's case is in rdma-p2p.test.ts).
t.test('ibv_reg_mr on the BAR mapping (v3): a partial mprotect and madvise split the mapping; the MR keeps working', vmaV3, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  // The program opens the VFIO group itself.
  bindToVfio(t, bdf!);
  checkSplit(t, `vfio:${bdf}`, 'BAR');
});

t.test('the stock kernel: ibv_reg_mr on the BAR mapping is EFAULT, naming kernel-patches/', vmaStock, async (t) => {
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmem(t);
  using m = v.map(BAR);
  using ctx = Rdma.open('rxe0');
  using pd = ctx.allocPd();
  t.throws(() => pd.registerMemorySync(m, { length: PAGE, access: [...ACCESS] }), {
    code: 'EFAULT',
    syscall: 'ibv_reg_mr',
    message: /cannot pin peer \(device\) memory for RDMA.*kernel-patches\/.*p2p_dma_buf/,
  });
});

// rxe on dma-heap, udmabuf and vgem buffers: rdma.test.ts (on any patched kernel).
if (inGuest) leaks.check();
else t.pass('guest-only file');
