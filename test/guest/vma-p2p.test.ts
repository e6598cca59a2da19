// The kernel series' own kselftests (tools/testing/selftests/mm/vma_p2p*),
// built with the patched kernel by scripts/kernel/build.sh, run in the guest:
// each kselftest case becomes one tap test. The provider is NVMe controller
// 0's CMB and the importer controller 1, so the map type the exporter reports
// must be the one the topology implies. On the baseline kernel the test
// module does not exist, which is checked as such.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXPECTED_MAP_TYPE, Topology } from '../../lib/vm/qemu-args';
import { guest, inGuest, kernel, nvmeControllers, topology } from './helpers';

const selftestDir = path.join(process.env.P2PDMA_KERNEL_DIR ?? '', 'selftests');
// KSFT_PASS 0, KSFT_FAIL 1, KSFT_SKIP 4
const KSFT_SKIP = 4;

if (kernel !== 'patched') {
  t.test('the baseline kernel has no vma_p2p test module', guest, async (t) => {
    t.notOk(fs.existsSync('/dev/vma_p2p'), '/dev/vma_p2p absent');
  });
} else if (inGuest) {
  const binaries = fs.existsSync(selftestDir) ? fs.readdirSync(selftestDir).sort() : [];
  t.ok(binaries.includes('vma_p2p-tests'), `vma_p2p-tests built in ${selftestDir}`);
  const [provider, importer] = nvmeControllers();
  const env = {
    ...process.env,
    VMA_P2P_PROVIDER: provider?.bdf ?? '',
    VMA_P2P_IMPORTER: importer?.bdf ?? '',
    VMA_P2P_EXPECT: EXPECTED_MAP_TYPE[topology as Topology].toLowerCase(),
  };
  for (const bin of binaries) {
    const r = spawnSync(path.join(selftestDir, bin), [], { env, encoding: 'utf8', timeout: 240_000 });
    const output = `${r.stdout}${r.stderr}`;
    const cases = [...output.matchAll(/^(not ok|ok) \d+ (\S+)(?: # (SKIP|XFAIL)\s*(.*))?$/gm)];
    t.test(`${bin} exits cleanly`, async (t) => {
      t.ok(r.status === 0 || r.status === KSFT_SKIP, `exit status ${r.status}`) || t.comment(output);
      t.ok(cases.length > 0, 'reported its cases') || t.comment(output);
    });
    for (const [, result, name, directive, reason] of cases) {
      if (directive === 'SKIP') t.test(`${bin}: ${name}`, { skip: reason || 'skipped by kselftest' }, async () => {});
      else {
        t.test(`${bin}: ${name}`, async (t) => {
          t.equal(result, 'ok', name) || t.comment(output);
        });
      }
    }
  }
} else {
  t.test('vma_p2p kselftests', guest, async () => {});
}
