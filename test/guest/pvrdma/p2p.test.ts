// Device memory as a pvrdma MR (issue: does QEMU's pvrdma reach an NVMe CMB
// or the ivshmem BAR?). The answer on this stack is decided in the second
// level's kernel, before QEMU sees a request: vmw_pvrdma registers user
// memory with ib_umem_get(), which pins pages, and pinning refuses both a
// p2pmem CMB mapping and a BAR mapped VM_PFNMAP. kernel-patches/ gives
// drivers ib_umem_get_p2p() and converts rxe only, so the answer is the same
// on both kernels (docs/harness.md, "The pvrdma lane").
import t from 'tap';
import * as fs from 'node:fs';
import { Fd, mmap } from '../../../lib';
import { ivshmemBdf, ivshmemNode, kernel, nvmeControllers } from '../helpers';
import { mapIvshmemP2p } from '../ivshmem-p2p';
import { pvrdmaLane as lane, setup } from '../rdma-helpers';

const SIZE = 1 << 20;
const ACCESS = ['local-write', 'remote-write', 'remote-read'] as const;
const REFUSED = {
  code: 'EFAULT',
  syscall: 'ibv_reg_mr',
  message: /cannot pin peer \(device\) memory.*in the RDMA drivers it converts \(rxe\), not in vmw_pvrdma\./,
};

t.test(`${kernel}: an MR on an NVMe CMB (p2pmem) is refused by vmw_pvrdma's pinning`, lane, async (t) => {
  const c = nvmeControllers()[0];
  if (!t.ok(c && fs.existsSync(`${c.p2pmem}/allocate`), 'an NVMe controller with a p2pmem CMB')) return;
  const s = setup(t);
  using fd = Fd.open(`${c.p2pmem}/allocate`, 'r+');
  using map = mmap(fd, SIZE, { prot: 'rw', flags: 'shared' });
  await t.rejects(s.pd.registerMemory(map, { access: [...ACCESS] }), REFUSED);
});

t.test(`${kernel}: an MR on the ivshmem BAR is refused by vmw_pvrdma's pinning`, lane, async (t) => {
  const bdf = ivshmemBdf();
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const s = setup(t);
  if (kernel === 'baseline') {
    // No ivshmem_p2p: map the BAR through sysfs, VM_IO | VM_PFNMAP as well.
    using fd = Fd.open(`/sys/bus/pci/devices/${bdf}/resource2`, 'r+');
    using map = mmap(fd, SIZE, { prot: 'rw', flags: 'shared' });
    t.throws(() => s.pd.registerMemorySync(map, { access: [...ACCESS] }), REFUSED);
    return;
  }
  const node = ivshmemNode(bdf!);
  if (!t.ok(node, `ivshmem_p2p char device for ${bdf} (CONFIG_IVSHMEM_P2P)`)) return;
  const { map, info } = mapIvshmemP2p(t, node!, SIZE);
  t.throws(() => s.pd.registerMemorySync(map, { access: [...ACCESS] }), REFUSED);
  t.equal(info().activeMaps, 0, 'the exporter was never asked for a mapping');
});
