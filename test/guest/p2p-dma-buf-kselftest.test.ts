// v3's own kselftest (kernel-patches/v3 0009,
// tools/testing/selftests/rdma/p2p_dma_buf_mr.c), built with the patched
// 7.3 kernel by scripts/kernel/build.sh, run in the guest: each kselftest
// case becomes one tap test, as vma-p2p.test.ts does for v2's. The bar_mr
// cases register rxe0 MRs on the ivshmem BAR mapped through vfio-pci (no-IOMMU
// mode), the p2pmem_mr cases on NVMe controller 0's CMB (p2pmem/allocate).
// The patched guest has all of it, so a kselftest SKIP is a failure.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bindToVfio, inGuest, ivshmemBdf, nvmeControllers, v3Only } from './helpers';

const selftest = path.join(process.env.P2PDMA_KERNEL_DIR ?? '', 'selftests', 'p2p_dma_buf_mr');
const onV3 = v3Only("v3's kselftest (tools/testing/selftests/rdma/p2p_dma_buf_mr.c)");
const iommu = process.env.P2PDMA_IOMMU === '1';

if (!inGuest || onV3.skip || iommu) {
  t.test('p2p_dma_buf_mr kselftest', iommu && !onV3.skip ? { skip: 'no-IOMMU VFIO: not behind the vIOMMU' } : onV3, async () => {});
} else {
  t.test('p2p_dma_buf_mr kselftest: every case passes, none skipped', async (t) => {
    if (!fs.existsSync(selftest)) {
      t.fail(`${selftest} missing: scripts/kernel/build.sh builds it with the v3 kernel (a kernel cached before it did lacks it: remove that kernel's cache directory)`);
      return;
    }
    const bdf = ivshmemBdf();
    const [cmb] = nvmeControllers();
    if (!t.ok(bdf, 'ivshmem-plain present') || !t.ok(cmb, 'an NVMe controller')) return;
    bindToVfio(t, bdf!);
    const env = { ...process.env, P2P_DMA_BUF_BDF: bdf!, P2P_DMA_BUF_P2PMEM: `${cmb!.p2pmem}/allocate` };
    const r = spawnSync(selftest, [], { env, encoding: 'utf8', timeout: 240_000 });
    const output = `${r.stdout}${r.stderr}`;
    const cases = [...output.matchAll(/^(not ok|ok) \d+ (\S+)(?: # (SKIP|XFAIL)\s*(.*))?$/gm)];
    t.equal(r.status, 0, `exit status ${r.status} signal ${r.signal}`) || t.comment(output);
    // bar_mr: 4 cases, p2pmem_mr: 3 (0009).
    t.equal(cases.length, 7, 'reported its 7 cases') || t.comment(output);
    for (const [, result, name, directive, reason] of cases) {
      if (directive === 'SKIP') t.fail(`${name} skipped on the patched kernel: ${reason || 'no reason given'}`);
      else t.equal(result, 'ok', name) || t.comment(output);
    }
  });
}
