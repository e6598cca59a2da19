// machineInfo() and `p2pdma info`: on this host (truthful about what it
// lacks) and on fake /sys and /proc trees; the real devices in the guest
// (test/guest/info.test.ts). Also --help on every command.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { formatMachineInfo, machineInfo, SERIES_SYMBOLS, V3_SERIES_SYMBOLS, type MachineInfo } from '../../lib/core/info';
import { ports } from '../../lib/rdma/device';
import { AMD_ZEN, fakeSysfs, SWITCH } from '../fake-sysfs';
import { expectCode, repoRoot, runTs, TEST_PREFIX } from '../helpers';

const cli = path.join(repoRoot, 'lib', 'cli.ts');

/** A /proc with the files machineInfo() reads. */
function fakeProc(o: { kallsyms?: string; ioUringDisabled?: string; cpuinfo?: string }): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `${TEST_PREFIX}-proc-`));
  if (o.kallsyms !== undefined) fs.writeFileSync(path.join(root, 'kallsyms'), o.kallsyms);
  if (o.ioUringDisabled !== undefined) {
    fs.mkdirSync(path.join(root, 'sys', 'kernel'), { recursive: true });
    fs.writeFileSync(path.join(root, 'sys', 'kernel', 'io_uring_disabled'), `${o.ioUringDisabled}\n`);
  }
  fs.writeFileSync(path.join(root, 'cpuinfo'), o.cpuinfo ?? 'vendor_id\t: GenuineIntel\ncpu family\t: 6\n');
  return root;
}

const kallsyms = (names: string[]) => names.map((n) => `0000000000000000 T ${n}`).join('\n') + '\n';

t.test('on this host: every item reported, what it lacks with a reason', async (t) => {
  const info = machineInfo();
  t.equal(info.kernel, os.release());
  t.type(info.series.reason, 'string');
  // The host kernel is not ours: the series' symbols are not in it.
  if (info.series.present !== undefined) t.equal(info.series.present, false, info.series.reason);
  if (!info.p2pmem.available) t.same(info.p2pMatrix, [], 'no provider, no matrix');
  const disabled = Number(fs.readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8'));
  t.equal(info.ioUring.disabled, disabled);
  t.equal(info.ioUring.available, disabled === 0);
  t.same(info.iommu.units, fs.existsSync('/sys/class/iommu') ? fs.readdirSync('/sys/class/iommu').sort() : []);
  t.match(formatMachineInfo(info), /^kernel +\S+; p2p_map series: (absent|unknown)/);
});

t.test('a fake switch machine with the series: matrix, series, io_uring off', async (t) => {
  const sys = fakeSysfs(SWITCH, AMD_ZEN);
  const proc = fakeProc({ kallsyms: kallsyms(['do_mmap', ...SERIES_SYMBOLS]), ioUringDisabled: '2', cpuinfo: AMD_ZEN });
  const info: MachineInfo = machineInfo({ sysDir: sys, devDir: path.join(sys, 'dev'), procDir: proc, vmaP2p: null });
  t.same(info.series, { present: true, symbols: [...SERIES_SYMBOLS], reason: `${SERIES_SYMBOLS.join(', ')} in ${proc}/kallsyms` });
  t.same(info.p2pMatrix.map((e) => `${e.provider}<-${e.client} ${e.clientKind} ${e.mapType}`), [
    '0000:03:00.0<-0000:04:00.0 p2pmem BUS_ADDR',
    '0000:04:00.0<-0000:03:00.0 p2pmem BUS_ADDR',
  ], 'the two CMBs reach each other below the switch; ivshmem (class 0x05) is no client');
  t.equal(info.p2pMatrix[0].kernel, undefined, 'no /dev/vma_p2p asked');
  t.match(info.p2pMatrix[0].reason, /switch|bridge|ACS/);
  t.equal(info.ioUring.available, false);
  t.match(info.ioUring.reason, /disabled for everyone/);
  t.same(info.iommu, { units: [], devices: [{ bdf: '0000:03:00.0', group: undefined, type: undefined }, { bdf: '0000:04:00.0', group: undefined, type: undefined }] });
  const text = formatMachineInfo(info);
  t.match(text, /p2p_map series: present/);
  t.match(text, /0000:03:00\.0 <- 0000:04:00\.0 p2pmem: BUS_ADDR/);
});

t.test('the v3 series (kernel-patches/v3 on 7.3) is told by its own symbol', async (t) => {
  const sys = fakeSysfs([]);
  const proc = fakeProc({ kallsyms: kallsyms(['do_mmap', ...V3_SERIES_SYMBOLS]) });
  const info = machineInfo({ sysDir: sys, devDir: path.join(sys, 'dev'), procDir: proc });
  t.same(info.series, { present: true, symbols: [...V3_SERIES_SYMBOLS], reason: `vma_p2p_dma_buf in ${proc}/kallsyms (kernel-patches/v3)` });
  t.match(formatMachineInfo(info), /p2p_map series: present \(vma_p2p_dma_buf in .* \(kernel-patches\/v3\)\)/);
});

t.test('without the series, without kallsyms, without io_uring: each says why', async (t) => {
  const sys = fakeSysfs([]);
  const absent = machineInfo({ sysDir: sys, devDir: path.join(sys, 'dev'), procDir: fakeProc({ kallsyms: kallsyms(['do_mmap']), ioUringDisabled: '0' }), librdmacm: 'libp2pdma-test-missing.so.1' });
  t.equal(absent.series.present, false);
  t.match(absent.series.reason, /p2pdma kernel build patched/);
  t.equal(absent.ioUring.available, true);
  t.equal(absent.librdmacm.available, false);
  t.match(absent.librdmacm.reason, /librdmacm1/);
  const unknown = machineInfo({ sysDir: sys, devDir: path.join(sys, 'dev'), procDir: fakeProc({}) });
  t.equal(unknown.series.present, undefined, 'no kallsyms: cannot tell');
  t.match(unknown.series.reason, /cannot read .*kallsyms: ENOENT/);
  t.equal(unknown.ioUring.available, false);
  t.match(unknown.ioUring.reason, /before 6\.6 or without CONFIG_IO_URING/);
  const empty = machineInfo({ sysDir: sys, devDir: path.join(sys, 'dev'), procDir: fakeProc({ kallsyms: '' }) });
  t.match(empty.series.reason, /CONFIG_KALLSYMS/);
});

t.test('RDMA ports: state, link layer and the GID types of the set entries', async (t) => {
  const sys = fakeSysfs([]);
  const port = path.join(sys, 'class', 'infiniband', 'rxe0', 'ports', '1');
  for (const d of ['gids', 'gid_attrs/types']) fs.mkdirSync(path.join(port, d), { recursive: true });
  fs.writeFileSync(path.join(sys, 'class', 'infiniband', 'rxe0', 'parent'), 'eth0\n');
  fs.writeFileSync(path.join(port, 'state'), '4: ACTIVE\n');
  fs.writeFileSync(path.join(port, 'link_layer'), 'Ethernet\n');
  const set = (i: number, type: string) => {
    fs.writeFileSync(path.join(port, 'gids', String(i)), `fe80:0000:0000:0000:5054:00ff:fe12:34${String(i).padStart(2, '0')}\n`);
    fs.writeFileSync(path.join(port, 'gid_attrs', 'types', String(i)), `${type}\n`);
  };
  // A table of 64 like rxe's 1024: unset entries read as zeros.
  for (let i = 0; i < 64; i++) fs.writeFileSync(path.join(port, 'gids', String(i)), '0000:0000:0000:0000:0000:0000:0000:0000\n');
  set(0, 'IB/RoCE v1');
  set(1, 'RoCE v2');
  set(3, 'RoCE v2');
  set(40, 'made up: past the scan');
  const [rxe] = machineInfo({ sysDir: sys, devDir: path.join(sys, 'dev'), procDir: fakeProc({}) }).rdmaDevices;
  t.same(rxe, {
    name: 'rxe0', pci: undefined, netdev: 'eth0',
    ports: [{ port: 1, state: '4: ACTIVE', linkLayer: 'Ethernet', gidTypes: ['IB/RoCE v1', 'RoCE v2'] }],
  }, 'a hole of one is read past; a run of 16 unset entries ends the scan');
  // machineInfo() takes the state text ports() read: one read of the file, both forms kept.
  const [p] = ports('rxe0', sys);
  t.equal(p.state, 'ACTIVE');
  t.equal(p.stateText, '4: ACTIVE');
  fs.rmSync(path.join(port, 'state'));
  t.equal(ports('rxe0', sys)[0].state, 'UNKNOWN');
  t.equal(ports('rxe0', sys)[0].stateText, undefined, 'no text when the file cannot be read');
});

t.test('machineInfo() refuses options of the wrong type', async (t) => {
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  t.throws(() => machineInfo(null as never), type);
  t.throws(() => machineInfo({ procDir: 1 as never }), type);
  t.throws(() => machineInfo({ vmaP2p: 0 as never }), type);
  t.throws(() => machineInfo({ sysDir: {} as never }), type);
});

t.test('p2pdma info prints the report, --json the same as machineInfo()', async (t) => {
  const text = runTs(cli, [], {}, ['info']);
  t.equal(text.status, 0, text.stderr);
  t.match(text.stdout, /^kernel /);
  t.match(text.stdout, /P2P matrix/);
  const json = runTs(cli, [], {}, ['info', '--json']);
  t.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as MachineInfo;
  t.equal(parsed.kernel, os.release());
  t.same(Object.keys(parsed).sort(), Object.keys(machineInfo()).sort());
  const extra = runTs(cli, [], {}, ['info', 'extra']);
  t.equal(extra.status, 2);
  t.match(extra.stderr, /p2pdma info \[--json\]/);
});

t.test('--help on every command prints its usage and exits 0', async (t) => {
  for (const [args, want] of [
    [['--help'], /p2pdma vm run[\s\S]*p2pdma info/],
    [['help'], /p2pdma vm run/],
    [['vm', 'run', '--help'], /p2pdma vm run[\s\S]*--topology/],
    [['vm', 'shell', '-h'], /p2pdma vm shell[\s\S]*--kernel/],
    [['kernel', 'build', '--help'], /p2pdma kernel build/],
    [['dmabuf', 'ls', '--help'], /p2pdma dmabuf ls/],
    [['info', '--help'], /p2pdma info \[--json\]/],
  ] as const) {
    const r = runTs(cli, [], {}, [...args]);
    t.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    t.match(r.stdout, want, args.join(' '));
    t.equal(r.stderr, '', `${args.join(' ')}: nothing on stderr`);
  }
  const kernelOnly = runTs(cli, [], {}, ['kernel', '--help']);
  t.notMatch(kernelOnly.stdout, /vm options/, 'kernel --help shows the kernel command, not the vm options');
});
