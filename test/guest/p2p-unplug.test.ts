// Kernel series v2: device memory unplugged while an rxe MR on it is live.
// Each removal zaps the mapping, which invalidates the MR and releases the
// exporter's attachment (page references, DMA mappings) from the blockable
// invalidation; the removal must then finish (p2pmem's pagemap teardown
// waits for every page reference), ibv_dereg_mr() must still succeed, and
// the kernel must not complain (on the DEBUG kernel: KASAN, lockdep,
// kmemleak). Three ways: sysfs remove of the CMB's NVMe function, unbinding
// ivshmem_p2p, and QEMU's device_del of the NVMe behind a switch downstream
// port (through the harness's QMP relay). Each device comes back afterwards.
// Series v3 (7.3): the MR is on p2pdma's dma-buf of the CMB pages, which
// unbinding nvme revokes: the MR fails cleanly and the unbind finishes.
// scripts/guest-suite.sh runs this file alone: it takes devices away.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { hostQmp } from '../../harness/vm/guest-control';
import { nvmeDeviceProps } from '../../harness/vm/qemu-args';
import { findSplats, unknownSplats } from '../../harness/vm/splats';
import { Fd, mmap } from '../../lib';
import { inGuest, ivshmemBdf, ivshmemNode, kernelSeries, nvmeControllers, nvmeController, patchedOnly, readSysfs, topology, v2Only, v3Only, waitFor } from './helpers';
import { HeldMr, holdProgram } from './p2p-hold';
import { setup } from './rdma-helpers';

const bin = inGuest ? holdProgram() : undefined;
const MR_BYTES = 1 << 20;
const KMEMLEAK = /kmemleak: \d+ new suspected/;



/** Write to a sysfs file in a child with a deadline: a removal that hangs fails the test instead of the run. */
function sysfsWrite(file: string, value: string, timeoutS = 120): { ok: boolean; detail: string } {
  const r = spawnSync('timeout', [String(timeoutS), 'sh', '-c', `echo ${value} > ${file}`], { encoding: 'utf8' });
  return { ok: r.status === 0, detail: `exit ${r.status}${r.status === 124 ? ' (timed out: the removal hangs)' : ''} ${r.stderr}` };
}

/** Kernel log lines since the test started. */
function dmesgSince(mark: number): string[] {
  const r = spawnSync('dmesg', ['--notime'], { encoding: 'utf8' });
  return r.stdout.split('\n').slice(mark);
}

function dmesgMark(): number {
  return spawnSync('dmesg', ['--notime'], { encoding: 'utf8' }).stdout.split('\n').length - 1;
}

/** Scan for leaks now, so kmemleak reports land in this test's window. */
function kmemleakScan(): void {
  if (fs.existsSync('/sys/kernel/debug/kmemleak')) spawnSync('sh', ['-c', 'echo scan > /sys/kernel/debug/kmemleak']);
}

/**
 * No kernel report (warning, KASAN, lockdep, kmemleak) since `mark`. A
 * kmemleak line is judged by the objects it reports: 7.3.4 leaks one at boot
 * (splats.ts knows it), which the first scan of a boot reports, whichever
 * test runs it.
 */
function noKernelReport(t: Test, mark: number): void {
  kmemleakScan();
  const log = dmesgSince(mark);
  const found = findSplats(log.join('\n'));
  if (log.some((l) => KMEMLEAK.test(l))) found.push(...findSplats(fs.readFileSync('/sys/kernel/debug/kmemleak', 'utf8')));
  for (const k of found.filter((s) => s.known)) t.comment(`known report, not ours: ${k.text} (${k.known})`);
  t.same(unknownSplats(found).map((s) => s.text), [], 'no kernel warning, KASAN, lockdep or kmemleak report');
}

async function holdAcross(t: Test, target: string, unplug: () => Promise<void>): Promise<void> {
  const mark = dmesgMark();
  const mr = new HeldMr(bin!, target, MR_BYTES);
  const reg = await mr.reg;
  t.equal(reg.reg_mr, 'ok', `ibv_reg_mr on ${target} (${JSON.stringify(reg)})`);
  await unplug();
  const done = await mr.release();
  t.equal(done.dereg_mr, 'ok', 'ibv_dereg_mr after the unplug succeeds');
  t.equal(done.status, 0, 'p2p_mr_hold exits 0');
  noKernelReport(t, mark);
}

const needsBin = patchedOnly.skip ? patchedOnly : { skip: false as const };

t.test('p2p_mr_hold is built for the guest', needsBin, async (t) => {
  t.ok(bin, 'built from test/guest/c/p2p_mr_hold.c');
});

t.test('sysfs remove of the NVMe function whose CMB an MR maps', needsBin, async (t) => {
  if (!t.ok(bin, 'p2p_mr_hold built')) return;
  const c = nvmeControllers()[0];
  if (!t.ok(c, 'an NVMe controller')) return;
  await holdAcross(t, `${c.p2pmem}/allocate`, async () => {
    const r = sysfsWrite(`/sys/bus/pci/devices/${c.bdf}/remove`, '1');
    t.ok(r.ok, `remove returns (${r.detail})`);
    t.notOk(fs.existsSync(`/sys/bus/pci/devices/${c.bdf}`), `${c.bdf} removed`);
  });
  t.ok(sysfsWrite('/sys/bus/pci/rescan', '1').ok, 'rescan');
  const back = await waitFor(`controller ${c.serial} back`, () => nvmeController(c.serial));
  await waitFor('its CMB published', () =>
    fs.existsSync(`${back.p2pmem}/published`) && readSysfs(`${back.p2pmem}/published`) === '1' ? true : undefined);
});

const onV2 = v2Only('the BAR through vfio-pci instead of ivshmem_p2p');
const onV3 = v3Only('p2pmem dma-bufs');

t.test('v3: unbinding nvme revokes the dma-buf under an MR on its CMB mapping: remote access error, ENODEV, dereg works, rebinds', onV3, async (t) => {
  const c = nvmeControllers()[0];
  if (!t.ok(c && fs.existsSync(`${c.p2pmem}/allocate`), 'an NVMe controller with a p2pmem CMB')) return;
  const s = setup(t, undefined, 'rxe0');
  const fd = Fd.open(`${c.p2pmem}/allocate`, 'r+');
  const map = mmap(fd, MR_BYTES, { prot: 'rw', flags: 'shared' });
  const mr = await s.pd.registerMemory(map, { access: ['local-write', 'remote-write', 'remote-read'] });
  t.teardown(() => {
    if (!mr.closed) mr.close();
    if (!map.closed) map.unmap();
    fd.close();
    // A failure half way must not leave the controller without its driver.
    if (!fs.existsSync(`/sys/bus/pci/devices/${c.bdf}/driver`)) sysfsWrite('/sys/bus/pci/drivers/nvme/bind', c.bdf);
  });
  const src = s.pattern(MR_BYTES, 21);
  await s.a.write(s.mr(src, 'local-write'), mr.remote());
  t.ok(map.read(Buffer.alloc(MR_BYTES)).equals(src), 'the WRITE landed in the CMB');

  const mark = dmesgMark();
  const r = sysfsWrite('/sys/bus/pci/drivers/nvme/unbind', c.bdf);
  t.ok(r.ok, `unbind returns (${r.detail})`);
  t.notOk(fs.existsSync(`${c.p2pmem}/allocate`), 'p2pmem/allocate is gone with the driver');
  await t.rejects(s.a.write(s.mr(s.buffer(4096), 'local-write'), mr.remote(), 4096), { status: 'IBV_WC_REM_ACCESS_ERR', message: /remote access error/ }, 'revoked: a WRITE to the MR is a remote access error');
  t.throws(() => s.pd.registerMemorySync(map, { length: 4096, access: 'local-write' }), { code: 'ENODEV', syscall: 'ibv_reg_mr' }, 'a new registration of the (zapped) mapping is ENODEV');
  mr.close();
  t.ok(mr.closed, 'ibv_dereg_mr of the revoked MR succeeds');
  map.unmap();
  noKernelReport(t, mark);

  t.ok(sysfsWrite('/sys/bus/pci/drivers/nvme/bind', c.bdf).ok, 'bind again');
  const back = await waitFor(`controller ${c.serial} back`, () => nvmeController(c.serial));
  await waitFor('its CMB published', () =>
    fs.existsSync(`${back.p2pmem}/published`) && readSysfs(`${back.p2pmem}/published`) === '1' ? true : undefined);
  t.pass('the CMB is a p2pmem provider again');
});

t.test('unbinding ivshmem_p2p while an MR maps its BAR', onV2, async (t) => {
  if (!t.ok(bin, 'p2p_mr_hold built')) return;
  const bdf = ivshmemBdf();
  const node = bdf && ivshmemNode(bdf);
  if (!t.ok(node, 'ivshmem_p2p bound')) return;
  await holdAcross(t, node!, async () => {
    const r = sysfsWrite('/sys/bus/pci/drivers/ivshmem_p2p/unbind', bdf!);
    t.ok(r.ok, `unbind returns (${r.detail})`);
    t.notOk(ivshmemNode(bdf!), 'no ivshmem_p2p node any more');
  });
  t.ok(sysfsWrite('/sys/bus/pci/drivers/ivshmem_p2p/bind', bdf!).ok, 'bind again');
  t.ok(await waitFor('the ivshmem_p2p node', () => ivshmemNode(bdf!)), 'ivshmem_p2p node back');
});

const switchOnly = needsBin.skip ? needsBin
  : { skip: topology === 'switch' ? false : `the ${topology} topology has no hot-plug slot (NVMe on the root complex)` };

t.test('QEMU device_del of the NVMe behind a switch downstream port while an MR maps its CMB', switchOnly, async (t) => {
  if (!t.ok(bin, 'p2p_mr_hold built')) return;
  const c = nvmeController('p2pdma1');
  if (!t.ok(c, 'controller p2pdma1')) return;
  const cmbBytes = Number(readSysfs(`${c!.p2pmem}/size`));
  await holdAcross(t, `${c!.p2pmem}/allocate`, async () => {
    await hostQmp('device_del', { id: 'nvme1' });
    await waitFor(`${c!.bdf} gone`, () => (fs.existsSync(`/sys/bus/pci/devices/${c!.bdf}`) ? undefined : true));
    t.pass(`${c!.bdf} removed by pciehp`);
  });
  await hostQmp('device_add', nvmeDeviceProps(1, cmbBytes >> 20, 'switch'));
  const back = await waitFor('the replugged controller', () => nvmeController('p2pdma1'));
  await waitFor('its CMB published', () =>
    fs.existsSync(`${back.p2pmem}/published`) && readSysfs(`${back.p2pmem}/published`) === '1' ? true : undefined);
});
