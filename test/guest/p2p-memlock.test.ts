// Kernel series v2, defect 1: an unprivileged user registers an rxe MR on
// device memory (an NVMe CMB through p2pmem/allocate, the ivshmem BAR through
// ivshmem_p2p) under a small RLIMIT_MEMLOCK. Device memory reached through
// p2p_map is not pinned host memory: it is not charged to RLIMIT_MEMLOCK nor
// to VmPin (the exporter can revoke it, as with ODP). v1 refused it like
// pinned memory: ENOMEM under `ulimit -l 64`, EPERM under `ulimit -l 0`.
// The control, anonymous memory for the same user, must still be refused.
//
// Series v3 (7.3) registers the CMB on p2pdma's dma-buf of its pages
// (p2p_dma_buf), which pins nothing either; it has no ivshmem_p2p (its BAR
// case is vfio.test.ts's), so only the CMB is registered there.
//
// test/guest/c/p2p_mr_hold.c opens the target and rxe0 as root, then sets
// the limit and switches to uid 65534 before ibv_reg_mr().
import t from 'tap';
import * as fs from 'node:fs';
import { inGuest, ivshmemBdf, ivshmemNode, kernelSeries, nvmeControllers, patchedOnly } from './helpers';
import { holdProgram, registerOnce, type Reg } from './p2p-hold';

const NOBODY = '65534';
const SIZE = 16 << 20;
const bin = inGuest ? holdProgram() : undefined;

function register(target: string, memlock: number): Reg {
  return registerOnce(bin!, ['-u', NOBODY, '-l', String(memlock), target, String(SIZE)]);
}

t.test('p2p_mr_hold is built for the guest', patchedOnly, async (t) => {
  t.ok(bin, 'built from test/guest/c/p2p_mr_hold.c');
});

const allTargets: [string, () => string | undefined][] = [
  ['an NVMe CMB (p2pmem/allocate)', () => {
    const c = nvmeControllers()[0];
    return c && `${c.p2pmem}/allocate`;
  }],
  ['the ivshmem BAR (ivshmem_p2p)', () => {
    const bdf = ivshmemBdf();
    return bdf && ivshmemNode(bdf);
  }],
];
const targets = kernelSeries === 'v3' ? allTargets.slice(0, 1) : allTargets;

for (const memlock of [64 << 10, 0]) {
  t.test(`uid ${NOBODY} under RLIMIT_MEMLOCK ${memlock} bytes`, patchedOnly, async (t) => {
    if (!t.ok(bin, 'p2p_mr_hold built')) return;
    const anon = register('anon', memlock);
    t.equal(anon.uid, Number(NOBODY), 'ibv_reg_mr ran as nobody');
    t.equal(anon.reg_mr, memlock ? 'ENOMEM' : 'EPERM', `control: 16 MiB of anonymous memory is refused (${JSON.stringify(anon)})`);

    for (const [name, find] of targets) {
      const target = find();
      if (!t.ok(target && fs.existsSync(target), `${name} present`)) continue;
      const r = register(target!, memlock);
      t.equal(r.reg_mr, 'ok', `16 MiB of ${name} registers (${JSON.stringify(r)})`);
      t.equal(r.vmpin_after_kb, r.vmpin_before_kb, 'VmPin unchanged: nothing pinned or charged');
    }
  });
}
