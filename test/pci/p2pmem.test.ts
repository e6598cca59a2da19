// P2pMem on a fake sysfs: providers, the errors allocate() gives before
// any mmap, and the topology estimate on the guest's three topologies. The
// guest suite checks real allocations and the kernel's own answer.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Mapping, P2pBuffer, P2pMem } from '../../lib';
import { AMD_K8, AMD_ZEN, fakeSysfs, ROOT, SWITCH } from '../fake-sysfs';
import { native } from '../../lib/core/native';
import { expectCode, leakGuard } from '../helpers';

const leaks = leakGuard();

const roots: string[] = [];
function tree(...args: Parameters<typeof fakeSysfs>): { sysfs: string; cpuinfo: string; vmaP2p: null } {
  const sysfs = fakeSysfs(...args);
  roots.push(sysfs);
  return { sysfs, cpuinfo: path.join(sysfs, 'cpuinfo'), vmaP2p: null };
}
t.teardown(() => roots.forEach((r) => fs.rmSync(r, { recursive: true, force: true })));

t.test('providers() lists the devices with p2pmem', async (t) => {
  const o = tree(SWITCH);
  t.same(P2pMem.providers(o).map((p) => [p.bdf, p.p2pmem.size, p.p2pmem.available, p.p2pmem.published]), [
    ['0000:03:00.0', 67108864, 67108864, true],
    ['0000:04:00.0', 67108864, 65011712, true],
  ]);
});

t.test('allocate() says what is wrong before mapping anything', async (t) => {
  const o = tree(ROOT);
  t.throws(() => P2pMem.allocate('0000:00:00.0', 4096, o), { code: 'ERR_P2PDMA_NO_P2PMEM', message: /0000:00:00\.0 has no p2pmem/ });
  t.throws(() => P2pMem.allocate('0000:00:04.0', 4096, o), { code: 'ERR_P2PDMA_P2PMEM_UNPUBLISHED', message: /does not publish/ });
  t.throws(() => P2pMem.allocate('0000:00:03.0', 1 << 30, o), { code: 'ERR_P2PDMA_P2PMEM_EXHAUSTED', message: /67108864 bytes of p2pmem available .* 1073741824 requested/ });
  t.throws(() => P2pMem.allocate('0000:00:03.0', 100, o), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => P2pMem.allocate('0000:00:03.0', 0, o), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => P2pMem.allocate('0000:00:03.0', '4096' as never, o), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => P2pMem.allocate(42 as never, 4096, o), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => P2pMem.allocate('0000:07:00.0', 4096, o), { code: 'ERR_P2PDMA_NO_PCI_DEVICE' });
  const old = tree([{ at: 'pci0000:00/0000:00:03.0', p2pmem: { size: 65536, available: 65536, published: true, allocate: false } }]);
  t.throws(() => P2pMem.allocate('0000:00:03.0', 4096, old), { code: 'ERR_P2PDMA_P2PMEM_NO_ALLOCATE', message: /Linux 6\.2/ });
});

t.test('switch: the two NVMe share the switch upstream port (BUS_ADDR, distance 4)', async (t) => {
  const o = tree(SWITCH, AMD_K8);
  const topo = P2pMem.topology('0000:04:00.0', '0000:03:00.0', o);
  t.equal(topo.mapType, 'BUS_ADDR');
  t.equal(topo.distance, 4, 'as the kernel counts: up two, down two');
  t.equal(topo.commonBridge, '0000:01:00.0');
  t.equal(topo.kernel, undefined, 'no kernel answer asked for');
  t.match(topo.reason, /under 0000:01:00\.0 with no ACS redirect/);
  t.equal(P2pMem.distance('0000:04:00.0', '0000:03:00.0', o), 4);
  t.equal(P2pMem.topology('0000:03:00.0', '0000:03:00.0', o).distance, 0, 'a device and itself');
});

t.test('switch: ivshmem on the root bus only meets the NVMe at the host bridge', async (t) => {
  t.equal(P2pMem.topology('0000:00:05.0', '0000:03:00.0', tree(SWITCH, AMD_K8)).mapType, 'NOT_SUPPORTED');
  t.equal(P2pMem.topology('0000:00:05.0', '0000:03:00.0', tree(SWITCH, AMD_ZEN)).mapType, 'THRU_HOST_BRIDGE');
});

t.test('ACS redirect on a switch port sends the traffic to the host bridge', async (t) => {
  const devs = SWITCH.map((d) => (d.at.endsWith('0000:02:01.0') ? { ...d, acsCtrl: 0x1d } : d));
  const k8 = P2pMem.topology('0000:04:00.0', '0000:03:00.0', tree(devs, AMD_K8));
  t.equal(k8.mapType, 'NOT_SUPPORTED');
  t.same(k8.acsRedirect, ['0000:02:01.0']);
  t.match(k8.reason, /ACS redirect is set on 0000:02:01\.0/);
  t.equal(P2pMem.topology('0000:04:00.0', '0000:03:00.0', tree(devs, AMD_ZEN)).mapType, 'THRU_HOST_BRIDGE');
  const noRedirect = SWITCH.map((d) => (d.at.endsWith('0000:02:01.0') ? { ...d, acsCtrl: 0x03 } : d));
  t.equal(P2pMem.topology('0000:04:00.0', '0000:03:00.0', tree(noRedirect, AMD_K8)).mapType, 'BUS_ADDR', 'SV and TB alone do not redirect');
});

t.test('host-bridge: both on the root complex, an AMD Zen CPU (THRU_HOST_BRIDGE)', async (t) => {
  const topo = P2pMem.topology('0000:00:04.0', '0000:00:03.0', tree(ROOT, AMD_ZEN));
  t.equal(topo.mapType, 'THRU_HOST_BRIDGE');
  t.equal(topo.commonBridge, undefined);
  t.equal(topo.cpuAllowsP2p, true);
  t.match(topo.reason, /AMD family 0x17/);
});

t.test('none: the root complex of a family 15 CPU refuses, and says why', async (t) => {
  const topo = P2pMem.topology('0000:00:04.0', '0000:00:03.0', tree(ROOT, AMD_K8));
  t.equal(topo.mapType, 'NOT_SUPPORTED');
  t.equal(topo.distance, -1);
  t.same(topo.hostBridge, { bdf: '0000:00:00.0', vendorId: 0x8086, deviceId: 0x29c0, whitelisted: false });
  t.match(topo.reason, /no common upstream bridge .* host bridge 8086:29c0 \(0000:00:00\.0\) is not in the kernel's P2PDMA whitelist and the CPU \(AuthenticAMD family 15\)/);
});

t.test('a whitelisted host bridge allows THRU_HOST_BRIDGE on any CPU', async (t) => {
  const devs = ROOT.map((d) => (d.at.endsWith('00:00.0') ? { ...d, device: 0x2030 } : d));
  const topo = P2pMem.topology('0000:00:04.0', '0000:00:03.0', tree(devs, AMD_K8));
  t.equal(topo.mapType, 'THRU_HOST_BRIDGE');
  t.match(topo.reason, /8086:2030 is in the kernel's P2PDMA whitelist/);
});

t.test('the whitelist follows the kernel: bridges added after 6.12 (7.3\'s list) count only on newer kernels (issue 29)', async (t) => {
  for (const [vendor, device, name] of [[0x8086, 0x0b25, 'Intel DSA (SPR)'], [0x1ae0, 0x1234, 'any Google device'], [0x10de, 0x2f95, 'NVIDIA CPU']] as const) {
    const devs = ROOT.map((d) => (d.at.endsWith('00:00.0') ? { ...d, vendor, device } : d));
    const o = tree(devs, AMD_K8);
    t.equal(P2pMem.topology('0000:00:04.0', '0000:00:03.0', { ...o, kernelRelease: '6.12.48+deb13-amd64' }).mapType, 'NOT_SUPPORTED', `${name}: not on 6.12`);
    t.equal(P2pMem.topology('0000:00:04.0', '0000:00:03.0', { ...o, kernelRelease: '7.3.4+bpo-amd64' }).mapType, 'THRU_HOST_BRIDGE', `${name}: on 7.3`);
  }
  const o = tree(ROOT.map((d) => (d.at.endsWith('00:00.0') ? { ...d, device: 0x2030 } : d)), AMD_K8);
  t.equal(P2pMem.topology('0000:00:04.0', '0000:00:03.0', { ...o, kernelRelease: '6.12.0' }).mapType, 'THRU_HOST_BRIDGE', 'the 6.12 entries on both');
  t.throws(() => P2pMem.topology('0000:00:04.0', '0000:00:03.0', { ...o, kernelRelease: 7 as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('topology() refuses bad arguments', async (t) => {
  const o = tree(SWITCH);
  t.throws(() => P2pMem.topology({} as never, '0000:03:00.0', o), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => P2pMem.topology('x', '0000:03:00.0', o), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.throws(() => P2pMem.topology('0000:03:00.0', '0000:03:00.0', null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('a P2pBuffer is a shared Mapping that owns its allocate file and closes once', async (t) => {
  // A regular file stands in for p2pmem/allocate: the same mmap, no device.
  const o = tree(ROOT);
  const allocate = P2pMem.providers(o)[0].p2pmem.allocate!;
  fs.truncateSync(allocate, 65536);
  const before = native.counters();
  const buf = P2pMem.allocate('0000:00:03.0', 8192, o);
  t.ok(buf instanceof P2pBuffer && buf instanceof Mapping);
  t.same([buf.provider, buf.length, buf.offset, buf.closed], ['0000:00:03.0', 8192, 0n, false]);
  const bytes = new Uint8Array(buf.buffer);
  bytes.fill(0xa5, 0, 16);
  t.same([...fs.readFileSync(allocate).subarray(0, 17)], [...Array(16).fill(0xa5), 0], 'MAP_SHARED: writes reach the file');
  const fd = buf.source!.fd;
  t.ok(fs.fstatSync(fd).isFile(), 'the buffer holds the allocate file open');
  buf.close();
  t.same([buf.closed, buf.unmapped, buf.source!.closed, bytes.length], [true, true, true, 0], 'closed, unmapped, file closed, views detached');
  buf.close();
  buf.unmap();
  t.equal(native.counters().mmap - before.mmap, 1);
  t.throws(() => buf.window(0, 4096), { code: 'ERR_P2PDMA_CLOSED' });
  {
    using scoped = P2pMem.allocate('0000:00:03.0', 4096, o);
    t.equal(scoped.closed, false);
  }
  t.equal(native.counters().mmap - before.mmap, 2, 'using closes it too');
});

t.test('no fd or mapping leaked', async (t) => leaks.check(t));
