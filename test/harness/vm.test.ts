// The harness's pure parts: the QEMU command line per topology and kernel
// splat detection (the TAP counting is test/harness/tap-summary.test.ts).
import t from 'tap';
import { qemuArgs, ACS_PORT, VIRTIO_GPU_SLOT, EXPECTED_MAP_TYPE, TOPOLOGIES, nvmeDeviceProps, pairSerials, parseTopologies } from '../../harness/vm/qemu-args';
import { findSplats, unknownSplats } from '../../harness/vm/splats';
import { hostTscKhz } from '../../harness/vm/tsc';
import { DEFAULT_BASELINE, DEFAULT_PATCHED, isKernelName, kernelBuildArgs, kernelLabel } from '../../harness/vm/kernel-names';
import { baseQemuOptions, valueOf } from './qemu-args-fixture';

const base = baseQemuOptions;

t.test('switch topology puts both NVMe controllers behind one PCIe switch', async (t) => {
  const args = qemuArgs(base);
  const devices = valueOf(args, '-device');
  t.ok(devices.includes('x3130-upstream,id=up0,bus=rp0'));
  t.equal(devices.filter((d) => d.startsWith('xio3130-downstream')).length, 2);
  t.ok(devices.includes('nvme,id=nvme0,serial=p2pdma0,drive=nvm0,cmb_size_mb=64,bus=dn0'));
  t.ok(devices.includes('nvme,id=nvme1,serial=p2pdma1,drive=nvm1,cmb_size_mb=64,bus=dn1'));
  t.same(valueOf(args, '-cpu'), ['qemu64']);
});

t.test('host-bridge topology uses an AMD family 23 CPU and the root complex', async (t) => {
  const args = qemuArgs({ ...base, topology: 'host-bridge' });
  t.same(valueOf(args, '-cpu'), ['qemu64,family=23']);
  t.notOk(args.some((a) => a.includes('x3130')), 'no switch');
  t.ok(valueOf(args, '-device').includes('nvme,id=nvme0,serial=p2pdma0,drive=nvm0,cmb_size_mb=64'));
});

t.test('none topology uses the default CPU on the root complex', async (t) => {
  const args = qemuArgs({ ...base, topology: 'none' });
  t.same(valueOf(args, '-cpu'), ['qemu64']);
  t.notOk(args.some((a) => a.includes('x3130')));
});

t.test('several topologies in one guest: a pair each, the switch pair first', async (t) => {
  const args = qemuArgs({ ...base, topology: ['none', 'switch'], nvmeImages: ['/r/0', '/r/1', '/r/2', '/r/3'] });
  const devices = valueOf(args, '-device');
  t.ok(devices.includes('nvme,id=nvme0,serial=p2pdma0,drive=nvm0,cmb_size_mb=64,bus=dn0'), 'switch pair: 0 and 1 behind the switch');
  t.ok(devices.includes('nvme,id=nvme1,serial=p2pdma1,drive=nvm1,cmb_size_mb=64,bus=dn1'));
  t.ok(devices.includes('nvme,id=nvme2,serial=p2pdma2,drive=nvm2,cmb_size_mb=64'), 'none pair: 2 and 3 on the root complex');
  t.ok(devices.includes('nvme,id=nvme3,serial=p2pdma3,drive=nvm3,cmb_size_mb=64'));
  t.same(valueOf(args, '-cpu'), ['qemu64'], 'default CPU: the root-complex pair is NOT_SUPPORTED');
  const hb = qemuArgs({ ...base, topology: ['host-bridge', 'switch'], nvmeImages: ['/r/0', '/r/1', '/r/2', '/r/3'] });
  t.same(valueOf(hb, '-cpu'), ['qemu64,family=23']);
  t.throws(() => qemuArgs({ ...base, topology: ['switch', 'none'] }), RangeError, 'two images for two pairs');
});

t.test('parseTopologies() orders, dedupes and refuses what one guest cannot hold', async (t) => {
  t.same(parseTopologies('none,switch'), ['switch', 'none']);
  t.same(parseTopologies(['switch', 'switch']), ['switch']);
  t.throws(() => parseTopologies('host-bridge,none'), /different CPUs/);
  t.throws(() => parseTopologies('switch,bus'), /unknown topology 'bus'/);
  t.same(pairSerials(['switch', 'none'], 'none'), ['p2pdma2', 'p2pdma3']);
  t.same(pairSerials(['host-bridge'], 'host-bridge'), ['p2pdma0', 'p2pdma1']);
  t.equal(pairSerials(['switch'], 'none'), undefined, 'a topology the guest lacks has no pair');
});

t.test('every topology names its expected map type', async (t) => {
  t.same(TOPOLOGIES.map((x) => EXPECTED_MAP_TYPE[x]), ['BUS_ADDR', 'THRU_HOST_BRIDGE', 'NOT_SUPPORTED']);
});

t.test('kernel command line keeps the CMB for p2pmem and boots our init over 9p', async (t) => {
  const [append] = valueOf(qemuArgs(base), '-append');
  for (const word of ['nvme.use_cmb_sqes=0', 'root=hostroot', 'rootfstype=9p', 'init=/repo/scripts/vm/init', 'hugepages=16', 'panic=-1']) {
    t.ok(append.split(' ').includes(word), word);
  }
});

t.test('shares: host root and project read-only, results and rwdirs writable', async (t) => {
  const fsdevs = valueOf(qemuArgs({ ...base, rwDirs: ['/out'] }), '-fsdev');
  t.match(fsdevs[0], /path=\/,.*readonly=on/);
  t.match(fsdevs[1], /path=\/repo,.*readonly=on/);
  t.notMatch(fsdevs[2], /readonly/);
  t.match(fsdevs[3], /id=fs_rw0,path=\/out,/);
  t.notMatch(fsdevs[3], /readonly/);
});

t.test('guest NIC is restricted and ivshmem has a 16 MiB RAM BAR', async (t) => {
  const args = qemuArgs(base);
  t.ok(valueOf(args, '-netdev').includes('user,id=n0,restrict=on'));
  t.ok(valueOf(args, '-object').includes('memory-backend-ram,id=ivshmem,size=16M'));
  t.ok(valueOf(args, '-device').includes('ivshmem-plain,memdev=ivshmem'));
});

t.test('NVMe backends are -blockdev nodes, which outlive a device_del', async (t) => {
  const args = qemuArgs(base);
  t.same(valueOf(args, '-blockdev'), [
    'driver=raw,node-name=nvm0,file.driver=file,file.filename=/r/nvme0.img',
    'driver=raw,node-name=nvm1,file.driver=file,file.filename=/r/nvme1.img',
  ]);
  t.same(valueOf(args, '-drive'), []);
  t.same(nvmeDeviceProps(1, 64, 'switch'), { driver: 'nvme', id: 'nvme1', serial: 'p2pdma1', drive: 'nvm1', cmb_size_mb: 64, bus: 'dn1' });
});

t.test('--iommu adds an Intel vIOMMU before every other device and turns it on', async (t) => {
  const off = qemuArgs(base);
  t.notOk(off.some((a) => a.startsWith('intel-iommu')));
  t.notOk(valueOf(off, '-append')[0].includes('intel_iommu'));
  const on = qemuArgs({ ...base, iommu: true });
  t.equal(valueOf(on, '-device')[0], 'intel-iommu,intremap=off');
  t.ok(valueOf(on, '-append')[0].split(' ').includes('intel_iommu=on'));
});

t.test('--acs-pair puts ivshmem and a pci-testdev behind one root port, which must come first', async (t) => {
  const off = valueOf(qemuArgs(base), '-device');
  t.ok(off.includes('ivshmem-plain,memdev=ivshmem'), 'ivshmem on the root complex by default');
  t.notOk(off.some((d) => d.startsWith('pci-testdev')));
  const on = valueOf(qemuArgs({ ...base, acsPair: true }), '-device');
  const port = on.indexOf(`pcie-root-port,id=${ACS_PORT},chassis=4,slot=4`);
  const ivshmem = on.indexOf(`ivshmem-plain,memdev=ivshmem,bus=${ACS_PORT},addr=0.0,multifunction=on`);
  const testdev = on.indexOf(`pci-testdev,bus=${ACS_PORT},addr=0.1`);
  t.ok(port >= 0 && ivshmem > port && testdev > port, `port ${port}, ivshmem ${ivshmem}, pci-testdev ${testdev}`);
  t.equal(on.filter((d) => d.startsWith('ivshmem-plain')).length, 1, 'one ivshmem');
});

t.test('a headless virtio-gpu-pci in every topology, at a fixed slot after every other PCI device; --no-virtio-gpu leaves it out', async (t) => {
  for (const topology of [...TOPOLOGIES.map((x) => [x]), ['switch', 'none']] as const) {
    const images = topology.flatMap((_, i) => [`/r/${2 * i}`, `/r/${2 * i + 1}`]);
    for (const extra of [{}, { acsPair: true }, { iommu: true }]) {
      const args = qemuArgs({ ...base, topology, nvmeImages: images, ...extra });
      const devices = valueOf(args, '-device');
      const gpu = devices.filter((d) => d.startsWith('virtio-gpu-pci'));
      t.same(gpu, ['virtio-gpu-pci,addr=1e.0,max_outputs=1,edid=off'], `${topology} ${JSON.stringify(extra)}`);
      t.equal(devices.at(-1), gpu[0], 'the last device: the ones before it keep their order and slots');
      const without = valueOf(qemuArgs({ ...base, topology, nvmeImages: images, ...extra, virtioGpu: false }), '-device');
      t.same(without, devices.slice(0, -1), 'otherwise the same command line');
    }
  }
  t.equal(VIRTIO_GPU_SLOT, 0x1e);
  t.same(valueOf(qemuArgs(base), '-display'), ['none'], 'no display');
});

t.test('QMP and the guest control port live in the results directory', async (t) => {
  const args = qemuArgs(base);
  t.same(valueOf(args, '-qmp'), ['unix:/r/qmp.sock,server=on,wait=off']);
  t.ok(valueOf(args, '-chardev').includes('socket,id=hostctl,path=/r/hostctl.sock,server=on,wait=off'));
  t.ok(valueOf(args, '-device').includes('virtserialport,chardev=hostctl,name=org.p2pdma.host'));
});

t.test('kernel names: 7.3 with v3 is the default, 6.12 with v2 stays buildable, anything else is a path', async (t) => {
  t.same([DEFAULT_PATCHED, DEFAULT_BASELINE], ['patched-7.3', 'baseline-7.3']);
  t.same(kernelBuildArgs('patched-7.3', true), ['--debug', '--source', '7.3', 'patched']);
  t.same(kernelBuildArgs('baseline-7.3', false), ['--source', '7.3', 'baseline']);
  t.same(kernelBuildArgs('patched', true), ['--debug', 'patched']);
  t.same(kernelBuildArgs('baseline', false), ['baseline']);
  t.notOk(isKernelName('patched-6.12'));
  t.equal(kernelLabel('/boot/vmlinuz'), 'custom');
  t.equal(kernelLabel('baseline-7.3'), 'baseline-7.3');
});

t.test('CMB size must be a power of two of at least 2 MiB', async (t) => {
  t.throws(() => qemuArgs({ ...base, cmbMiB: 3 }), RangeError);
  t.throws(() => qemuArgs({ ...base, cmbMiB: 1 }), RangeError);
  t.doesNotThrow(() => qemuArgs({ ...base, cmbMiB: 2 }));
});

t.test('splats: KASAN, lockdep, WARN, BUG, panic and kmemleak are found', async (t) => {
  const log = [
    '[    1.0] nvme nvme0: pci function 0000:02:00.0',
    '[    2.0] BUG: KASAN: slab-use-after-free in vma_p2p_release+0x1/0x2',
    '[    3.0] WARNING: possible circular locking dependency detected',
    '[    4.0] WARNING: CPU: 0 PID: 1 at mm/vma_p2p.c:10 foo+0x1/0x2',
    '[    5.0] kernel BUG at mm/gup.c:100!',
    '[    6.0] Kernel panic - not syncing: Attempted to kill init!',
    'unreferenced object 0xffff888000000000 (size 64):',
  ].join('\n');
  t.same(findSplats(log).map((s) => s.line), [2, 3, 4, 5, 6, 7]);
});

// The head of a lockdep circular-dependency report, as findSplats() reads it.
const lockdepReport = (task: string, acquiring: string, holding: string) => [
  '[  522.425220] ======================================================',
  '[  522.425919] WARNING: possible circular locking dependency detected',
  '[  522.426734] 6.12.118+ #2 Not tainted',
  '[  522.427088] ------------------------------------------------------',
  `[  522.427549] ${task} is trying to acquire lock:`,
  `[  522.428070] ffff8880075cf300 ${acquiring}`,
  '[  522.430572] ',
  '               but task is already holding lock:',
  `[  522.431017] ffffffff8262f4c8 ${holding}`,
];
// 6.12's own pciehp report on every device_del (console.log of a DEBUG run).
const pciehpReport = (acquiring: string, holding: string) => lockdepReport('irq/26-pciehp/47',
  `${acquiring}{.+.+}-{3:3}, at: pciehp_unconfigure_device+0x127/0x1b0`,
  `${holding}{+.+.}-{3:3}, at: pciehp_unconfigure_device+0x93/0x1b0`);

t.test('splats: 6.12 pciehp reset_lock vs pci_rescan_remove_lock is listed as known, not failed', async (t) => {
  const log = ['[  516.3] pcieport 0000:02:01.0: pciehp: Slot(1-1): Button press', ...pciehpReport('(&ctrl->reset_lock/1)', '(pci_rescan_remove_lock)')].join('\n');
  const found = findSplats(log);
  t.equal(found.length, 1);
  t.match(found[0], { line: 3, known: /pciehp/ });
  t.same(unknownSplats(found), []);
});

t.test('splats: 7.3\'s boot-time rootfs kmemleak report is known; another leak beside it fails', async (t) => {
  const leak = (fn: string) => [
    'unreferenced object 0xffff88800546e580 (size 8):',
    '  comm "swapper/0", pid 0, jiffies 4294892356',
    '  hex dump (first 8 bytes):',
    '    ed 01 00 00 00 00 00 00                          ........',
    '  backtrace (crc bea23b04):',
    '    __kmalloc_cache_noprof+0x30f/0x540',
    `    ${fn}+0x3d/0x100`,
    '    alloc_fs_context+0x3c2/0x570',
    '    vfs_kern_mount.part.0+0x13/0xa0',
    '    mnt_init+0x21c/0xd50',
  ];
  const found = findSplats(leak('ramfs_init_fs_context').join('\n'));
  t.match(found, [{ line: 1, known: /ramfs_init_fs_context/ }]);
  t.same(unknownSplats(found), []);
  t.equal(unknownSplats(findSplats(leak('rxe_mr_dmabuf_init_user').join('\n'))).length, 1, 'a leak elsewhere still fails');
});

t.test("splats: 7.3's nvmet-rdma port-removal lockdep report is known; the same locks elsewhere fail", async (t) => {
  const report = (holding: string) => lockdepReport('node/92',
    '(&id_priv->handler_mutex){+.+.}-{4:4}, at: rdma_destroy_id+0x12/0x20',
    `(nvmet_config_sem){++++}-{4:4}, at: ${holding}+0x4b/0x270`).join('\n');
  const found = findSplats(report('nvmet_port_subsys_drop_link'));
  t.match(found, [{ line: 2, known: /nvmet-rdma/ }]);
  t.same(unknownSplats(found), []);
  t.equal(unknownSplats(findSplats(report('nvmet_rdma_p2p_whatever'))).length, 1, 'held elsewhere: not the known one');
});

t.test('splats: a lockdep report that only looks like the known one still fails', async (t) => {
  const other = findSplats(pciehpReport('(&vma_p2p->lock)', '(pci_rescan_remove_lock)').join('\n'));
  t.equal(unknownSplats(other).length, 1, 'another lock in the same function');
  const cut = findSplats(pciehpReport('(&ctrl->reset_lock/1)', '(pci_rescan_remove_lock)').slice(0, 6).join('\n'));
  t.equal(unknownSplats(cut).length, 1, 'a report without its held lock is not recognised');
  const afterKasan = findSplats(['[1.0] BUG: KASAN: use-after-free in rxe_mr_copy+0x1/0x2', ...pciehpReport('(&ctrl->reset_lock/1)', '(pci_rescan_remove_lock)')].join('\n'));
  t.same(unknownSplats(afterKasan).map((s) => s.line), [1], 'a KASAN report beside it still fails');
});

t.test('splats: a clean boot log has none', async (t) => {
  const log = [
    '[0.0] Linux version 6.12.117',
    '[0.1] Speculative Return Stack Overflow: WARNING: See https://kernel.org/doc/html/latest/admin-guide/hw-vuln/srso.html for mitigation options.',
    '[1.0] rxe0: added eth0',
    '[2.0] Run /init as init process',
  ].join('\n');
  t.same(findSplats(log), []);
});

t.test("a TCG guest is told the host's TSC frequency instead of calibrating it under load", async (t) => {
  const cpuinfo = (flags: string, mhz = '2596.146') => `processor\t: 0\ncpu MHz\t\t: ${mhz}\nflags\t\t: fpu ${flags} pni\n\nprocessor\t: 1\ncpu MHz\t\t: 1.0\n`;
  t.equal(hostTscKhz(cpuinfo('constant_tsc nonstop_tsc')), 2596146, 'cpu MHz of the first CPU, in kHz');
  t.equal(hostTscKhz(cpuinfo('constant_tsc')), undefined, 'a TSC that stops in idle states: no frequency');
  t.equal(hostTscKhz(cpuinfo('nonstop_tsc')), undefined, 'a TSC whose rate changes: no frequency');
  t.equal(hostTscKhz(cpuinfo('constant_tsc nonstop_tsc', 'x')), undefined, 'no number: no frequency');
  t.equal(hostTscKhz(''), undefined, 'no /proc/cpuinfo');
  const [tcg] = valueOf(qemuArgs({ ...base, tscKhz: 2596146 }), '-append');
  t.match(tcg, / tsc_early_khz=2596146( |$)/);
  t.match(tcg, / tsc=reliable( |$)/, 'and no clocksource watchdog to swap it for the HPET under load');
  const [kvm] = valueOf(qemuArgs({ ...base, accel: 'kvm', tscKhz: 2596146 }), '-append');
  t.notMatch(kvm, /tsc_early_khz|tsc=reliable/, 'KVM guests have kvm-clock');
  const [none] = valueOf(qemuArgs(base), '-append');
  t.notMatch(none, /tsc_early_khz|tsc=reliable/);
});
