// Pci and P2pMem against the guest's real devices: the two CMBs as p2pmem
// providers, P2pBuffers that return their memory to the pool, and the
// topology estimate against what the harness builds and (on the patched
// kernel) against the kernel's own answer. Other files run beside this one
// and allocate a MiB or two of the same CMBs: allocations here leave room.
import t from 'tap';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

import { P2pBuffer, P2pMem, Pci, pageSize } from '../../lib';
import { native } from '../../lib/core/native';
import { EXPECTED_MAP_TYPE } from '../../harness/vm/qemu-args';
import { guest, ivshmemBdf, IVSHMEM_MAP_TYPE, kernelSeries, nvmeControllers, topology } from './helpers';

const MiB = 1 << 20;
const CMB = 64 * MiB;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

async function collect(until: () => boolean, rounds = 50): Promise<boolean> {
  for (let i = 0; i < rounds; i++) {
    gc();
    await new Promise<void>((r) => setImmediate(r));
    if (until()) return true;
  }
  return false;
}

t.test('Pci.devices() shows both NVMe controllers with their driver, class, CMB BAR and bridges', guest, async (t) => {
  const ctrls = nvmeControllers();
  t.equal(ctrls.length, 2);
  const all = Pci.devices();
  for (const c of ctrls) {
    const d = all.find((x) => x.bdf === c.bdf);
    t.ok(d, `${c.bdf} listed`);
    if (!d) continue;
    t.equal(d.driver, 'nvme');
    t.equal(d.classCode, 0x010802, 'mass storage, NVM Express');
    t.equal(d.vendorId, 0x1b36, 'QEMU (Red Hat) vendor id');
    t.ok(d.bars.some((b) => b.type === 'mem' && b.size === BigInt(CMB) && b.is64), 'a 64 MiB BAR holds the CMB');
    const bridges = d.upstream.map((b) => Pci.device(b));
    t.ok(bridges.every((b) => b.classCode >> 8 === 0x0604), 'every upstream device is a PCI bridge');
    t.equal(d.upstream.length, topology === 'switch' ? 3 : 0, 'downstream, upstream and root port behind the switch; none on the root complex');
    // p2pmem.available moves with the other files' allocations: compare the rest.
    const { p2pmem: _p, ...rest } = Pci.device(c.bdf);
    const { p2pmem: _q, ...expected } = d;
    t.same(rest, expected, 'device(bdf) reads the same');
  }
});

t.test('P2pMem.providers() lists both CMBs: 64 MiB, published, with allocate', guest, async (t) => {
  const providers = P2pMem.providers();
  for (const c of nvmeControllers()) {
    const p = providers.find((x) => x.bdf === c.bdf);
    t.ok(p, `${c.bdf} is a provider`);
    t.equal(p?.p2pmem.size, CMB, 'size');
    t.ok(p !== undefined && p.p2pmem.available <= CMB && p.p2pmem.available >= CMB - 8 * MiB, `available ${p?.p2pmem.available}`);
    t.equal(p?.p2pmem.published, true);
    t.equal(p?.p2pmem.allocate, `/sys/bus/pci/devices/${c.bdf}/p2pmem/allocate`);
  }
});

t.test('allocate() takes memory from the pool and close() gives it back', guest, async (t) => {
  const [, b] = nvmeControllers();
  const available = () => Pci.device(b.bdf).p2pmem!.available;
  const size = 16 * MiB;
  const before = available();
  const buf = P2pMem.allocate(b.bdf, size);
  t.ok(buf instanceof P2pBuffer);
  t.equal(buf.provider, b.bdf);
  t.equal(buf.length, size);
  const during = available();
  // The files running beside this one hold at most a few MiB of the same CMB
  // at a time, and may take or return it between two readings.
  const slack = 4 * MiB;
  t.ok(before - during >= size - slack, `available dropped by ${size} give or take the other files' ${slack} (${before} -> ${during})`);
  const bytes = new Uint8Array(buf.buffer);
  bytes.fill(0x5a);
  t.equal(bytes[size - 1], 0x5a, 'the device memory is read-write through the mapping');
  buf.close();
  t.equal(buf.closed, true);
  t.equal(bytes.length, 0, 'views are detached by close()');
  const after = available();
  t.ok(after - during >= size - slack, `available back up by ${size} give or take ${slack} (${during} -> ${after})`);
  buf.close();
  t.pass('close() is idempotent');
});

t.test('allocating more than is available fails and says how much there is', guest, async (t) => {
  const [, b] = nvmeControllers();
  t.throws(() => P2pMem.allocate(b.bdf, CMB + pageSize), { code: 'ERR_P2PDMA_P2PMEM_EXHAUSTED', message: /bytes of p2pmem available \(of 67108864\); 67112960 requested/ });
  using big = P2pMem.allocate(b.bdf, 48 * MiB);
  t.throws(() => P2pMem.allocate(b.bdf, 48 * MiB), { code: 'ERR_P2PDMA_P2PMEM_EXHAUSTED' }, 'a second 48 MiB does not fit beside the first');
  t.equal(big.length, 48 * MiB);
  t.throws(() => P2pMem.allocate(b.bdf, 4096 + 1), { code: 'ERR_OUT_OF_RANGE' }, 'not page aligned');
  const host = Pci.devices().find((d) => d.p2pmem === undefined)!;
  t.throws(() => P2pMem.allocate(host.bdf, 4096), { code: 'ERR_P2PDMA_NO_P2PMEM' });
});

t.test('a P2pBuffer survives GC of its views and is unmapped exactly once', guest, async (t) => {
  const [a] = nvmeControllers();
  // Mappings of the tests before this one, unmapped but still reachable then, go first.
  await collect(() => native.counters().pinned === 0);
  const before = native.counters();
  await (async () => {
    const buf = P2pMem.allocate(a.bdf, MiB);
    (function fill() {
      for (let i = 0; i < 8; i++) new Uint8Array(buf.window(i * 4096, 4096)).fill(i + 1);
    })();
    await collect(() => false, 3); // the windows are unreachable now
    const check = new Uint8Array(buf.buffer);
    t.same([check[0], check[4096 * 7]], [1, 8], 'still mapped, data intact after its views were collected');
    buf.close();
    buf.close();
  })();
  t.ok(await collect(() => native.counters().munmap > before.munmap && native.counters().pinned === 0), 'unmapped once nothing reaches it');
  const after = native.counters();
  t.equal(after.mmap - before.mmap, 1, 'one mmap');
  t.equal(after.munmap - before.munmap, 1, 'one munmap');
});

t.test(`topology(): the estimate is ${EXPECTED_MAP_TYPE[topology]} in the ${topology} topology, as the kernel says`, guest, async (t) => {
  const [a, b] = nvmeControllers();
  for (const [provider, client] of [[b, a], [a, b]]) {
    const topo = P2pMem.topology(provider.bdf, client.bdf);
    t.equal(topo.mapType, EXPECTED_MAP_TYPE[topology], `${client.bdf} -> ${provider.bdf}: ${topo.reason}`);
    t.equal(topo.distance, P2pMem.distance(provider.bdf, client.bdf));
    t.equal(topo.distance, topology === 'switch' ? 4 : topology === 'host-bridge' ? 2 : -1, 'distance as the kernel counts it');
    // The map-type query is kernel-patches/v2's (6.12); v3 has none.
    if (kernelSeries === 'v2') t.equal(topo.kernel, topo.mapType, "the patched kernel's pci_p2pdma_map_type_dev() agrees");
    else t.equal(topo.kernel, undefined, `the ${kernelSeries ?? 'baseline'} kernel offers no answer of its own`);
  }
  const self = P2pMem.topology(a.bdf, a.bdf);
  t.same([self.mapType, self.distance], ['BUS_ADDR', 0], 'a controller reaches its own CMB');
  const ivshmem = ivshmemBdf();
  t.ok(ivshmem, 'ivshmem present');
  if (ivshmem) {
    const topo = P2pMem.topology(ivshmem, a.bdf);
    t.equal(topo.mapType, IVSHMEM_MAP_TYPE, `ivshmem: ${topo.reason}`);
    if (kernelSeries === 'v2') t.equal(topo.kernel, topo.mapType, 'and the kernel agrees');
  }
});
