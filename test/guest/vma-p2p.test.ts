// The kernel series' own kselftests (tools/testing/selftests/mm/vma_p2p*),
// built with the patched kernel by scripts/kernel/build.sh, run in the guest:
// each kselftest case becomes one tap test. The importer is NVMe controller
// 1; the providers are controller 0's CMB (vma_p2p-tests) and the ivshmem BAR
// (vma_p2p_ivshmem-tests), and the map type each reports must be the one the
// topology implies. The patched guest has everything the kselftests need
// (/dev/vma_p2p, ivshmem_p2p, two CMBs), so a kselftest SKIP is a failure.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXPECTED_MAP_TYPE } from '../../harness/vm/qemu-args';
import {
  inGuest, ivshmemBdf, ivshmemNode, IVSHMEM_MAP_TYPE, nvmeControllers, topology, v2Only,
} from './helpers';

const selftestDir = path.join(process.env.P2PDMA_KERNEL_DIR ?? '', 'selftests');
const iommu = process.env.P2PDMA_IOMMU === '1';

/** Each kselftest and the map type it must print for the importer. */
const KSELFTESTS: Record<string, string> = {
  'vma_p2p-tests': EXPECTED_MAP_TYPE[topology],
  'vma_p2p_ivshmem-tests': IVSHMEM_MAP_TYPE,
};

const onV2 = v2Only("its own kselftest, tools/testing/selftests/rdma/p2p_dma_buf_mr.c (p2p-dma-buf-kselftest.test.ts)");
if (!inGuest || onV2.skip) {
  t.test('vma_p2p kselftests', onV2, async () => {});
} else {
  t.test('/dev/vma_p2p exists (CONFIG_TEST_VMA_P2P)', async (t) => {
    t.ok(fs.statSync('/dev/vma_p2p', { throwIfNoEntry: false })?.isCharacterDevice(), '/dev/vma_p2p');
  });

  t.test('ivshmem_p2p is bound to the ivshmem BAR (CONFIG_IVSHMEM_P2P)', async (t) => {
    const bdf = ivshmemBdf();
    t.ok(bdf, 'ivshmem-plain present');
    if (bdf) t.ok(ivshmemNode(bdf), `ivshmem_p2p char device for ${bdf}`);
  });

  const [provider, importer] = nvmeControllers();
  const env = {
    ...process.env,
    VMA_P2P_PROVIDER: provider?.bdf ?? '',
    VMA_P2P_IMPORTER: importer?.bdf ?? '',
    VMA_P2P_EXPECT: KSELFTESTS['vma_p2p-tests'].toLowerCase(),
    IVSHMEM_P2P_IMPORTER: importer?.bdf ?? '',
    IVSHMEM_P2P_EXPECT: KSELFTESTS['vma_p2p_ivshmem-tests'].toLowerCase(),
  };

  for (const [bin, mapType] of Object.entries(KSELFTESTS)) {
    const file = path.join(selftestDir, bin);
    if (!fs.existsSync(file)) {
      t.test(`${bin} is built`, async (t) => t.fail(`${file} missing`));
      continue;
    }
    const r = spawnSync(file, [], { env, encoding: 'utf8', timeout: 240_000 });
    const output = `${r.stdout}${r.stderr}`;
    const cases = [...output.matchAll(/^(not ok|ok) \d+ (\S+)(?: # (SKIP|XFAIL)\s*(.*))?$/gm)];

    t.test(`${bin} exits 0 and reports its cases`, async (t) => {
      t.equal(r.status, 0, `exit status ${r.status} signal ${r.signal}`) || t.comment(output);
      t.ok(cases.length > 0, 'reported its cases') || t.comment(output);
    });

    // The kselftest checks the type itself through *_EXPECT; this also
    // catches a kselftest that never got to print it.
    t.test(`${bin}: map type ${mapType} on the ${topology} topology`, async (t) => {
      const printed = /^# provider (\S+) importer (\S+) map_type (\S+)$/m.exec(output);
      t.ok(printed, 'the kselftest printed the map type') || t.comment(output);
      if (printed) t.equal(printed[3], mapType.toLowerCase(), `provider ${printed[1]} importer ${printed[2]}`);
    });

    for (const [, result, name, directive, reason] of cases) {
      // Behind the vIOMMU a PCI importer's addresses are IOVAs: the test
      // module refuses to emulate its DMA with the CPU (series v2), and the
      // kselftest skips the data check with that reason. Any other skip fails.
      const iommuSkip = directive === 'SKIP' && iommu && /behind an IOMMU/.test(reason ?? '');
      t.test(`${bin}: ${name}`, iommuSkip ? { skip: reason } : {}, async (t) => {
        if (directive === 'SKIP') t.fail(`skipped on the patched kernel: ${reason || 'no reason given'}`);
        else t.equal(result, 'ok', name) || t.comment(output);
      });
    }
  }
}
