// machineInfo() / `p2pdma info` against what the guest really has: the
// series on the patched kernel only, every CMB, the P2P map type of this
// topology's pair (as the kernel itself answers on the patched kernel),
// rxe0 on eth0, librdmacm, io_uring, and the vIOMMU where the run has one.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { formatMachineInfo, machineInfo, type MachineInfo, SERIES_SYMBOLS, V3_SERIES_SYMBOLS } from '../../lib/core/info';
import { EXPECTED_MAP_TYPE } from '../../harness/vm/qemu-args';
import { guest, guestTopologies, kernel, kernelSeries, nvmeControllers, topology } from './helpers';

const iommu = process.env.P2PDMA_IOMMU === '1';
// The first test's report, formatted by the second for a second topology.
let report: MachineInfo | undefined;

t.test('machineInfo() matches the guest', guest, async (t) => {
  const info = machineInfo();
  report = info;
  if (kernel === 'patched') t.same(info.series.symbols, [...(kernelSeries === 'v3' ? V3_SERIES_SYMBOLS : SERIES_SYMBOLS)], `the ${kernelSeries} series: ${info.series.reason}`);
  else t.equal(info.series.present, false, `no series on the baseline kernel: ${info.series.reason}`);

  t.equal(info.p2pmem.providers.length, 2 * guestTopologies.length, 'every CMB');
  const [a, b] = nvmeControllers();
  const entry = info.p2pMatrix.find((e) => e.provider === b.bdf && e.client === a.bdf);
  t.ok(entry, `${b.bdf} <- ${a.bdf} in the matrix`);
  t.equal(entry?.mapType, EXPECTED_MAP_TYPE[topology], `${topology}: ${entry?.reason}`);
  if (kernel === 'patched' && fs.existsSync('/dev/vma_p2p')) t.equal(entry?.kernel, EXPECTED_MAP_TYPE[topology], 'the kernel agrees');

  const rxe = info.rdmaDevices.find((d) => d.name === 'rxe0');
  t.ok(rxe, 'rxe0');
  t.equal(rxe?.pci, undefined, 'software device: no PCI function');
  t.equal(rxe?.netdev, 'eth0');
  t.equal(rxe?.ports[0]?.state, '4: ACTIVE');
  t.equal(rxe?.ports[0]?.linkLayer, 'Ethernet');
  t.ok(rxe?.ports[0]?.gidTypes.includes('RoCE v2'), `GID types ${rxe?.ports[0]?.gidTypes.join(', ')}`);
  t.equal(info.librdmacm.available, true, info.librdmacm.reason ?? 'librdmacm');

  const disabled = fs.readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim();
  t.equal(info.ioUring.available, disabled === '0', `io_uring_disabled ${disabled}`);

  t.equal(info.iommu.units.length > 0, iommu, iommu ? 'the vIOMMU' : 'no IOMMU');
  const types = info.iommu.devices.filter((d) => d.bdf === a.bdf || d.bdf === b.bdf).map((d) => d.type);
  t.equal(types.length, 2, 'both of the pair are in the matrix');
  if (iommu) t.ok(types.every((x) => /^DMA(-FQ)?$/.test(x ?? '')), `the pair is translated: ${types.join(', ')}`);
  else t.same(types, [undefined, undefined], 'the pair has no IOMMU group');
});

t.test('p2pdma info runs in the guest', guest, async (t) => {
  // The command runs once per boot, on the guest's first topology (about
  // 9 s on the DEBUG kernel); for a second topology in the same guest the
  // report it would print, formatted here, is checked: nothing the command
  // adds to machineInfo() depends on the pair.
  let out: string;
  if (topology === guestTopologies[0]) {
    // dist/cli.js, from dist/guest-tests/test/guest/.
    const cli = path.resolve(__dirname, '..', '..', '..', 'cli.js');
    const r = spawnSync(process.execPath, [cli, 'info'], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    out = r.stdout;
  } else {
    out = formatMachineInfo(report ?? machineInfo());
  }
  t.match(out, kernel === 'patched' ? /p2p_map series: present/ : /p2p_map series: absent/);
  t.match(out, /rxe0 \(software, on eth0\) port 1 4: ACTIVE Ethernet/);
});
