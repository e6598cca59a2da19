// NVMe over Fabrics in one guest, which is both the nvmet target and the
// host: NvmeOf.createTarget() exports the second NVMe's namespace, over the
// loop transport and over RDMA on rxe0 (10.0.2.15 to itself);
// NvmeOf.connect() makes the remote namespace, which Nvme.open() uses like a
// local one, and the bytes land on the backing drive. The namespace's p2pmem
// points at a CMB: on rxe and loop nvmet stages nothing there, and says
// nothing (docs/nvmeof.md); what would make it do so is in the same doc.
// Refusals leave no configfs state behind. Two nodes: test/guest/nodes/nvmeof.test.ts.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Nvme, NvmeOf, type NvmeOfTarget, type NvmeOfTargetOptions } from '../../lib';
import { alignedBuffer, guest, nvmeControllers } from './helpers';
import { kmsgMark, kmsgSince } from './kmsg';

const MiB = 1 << 20;
const SIZE = MiB;
// On the second drive, clear of what the other files write (topology's
// first MiB, rdma-p2p's 8 MiB, the sweep's and nvme's ranges on the first drive).
const POSITION = 240 * MiB;
const ADDR = '10.0.2.15';
const NVMET = '/sys/kernel/config/nvmet';
const nqn = (what: string) => `nqn.2026-12.io.p2pdma:guest-${what}`;

function pattern(seed: number): Buffer {
  const b = alignedBuffer(SIZE);
  for (let i = 0; i < SIZE; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return b;
}

/** What nvmet has in configfs: subsystems and ports, to show nothing is left. */
function nvmetState(): { subsystems: string[]; ports: string[] } {
  const ls = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).sort() : []);
  return { subsystems: ls(path.join(NVMET, 'subsystems')), ports: ls(path.join(NVMET, 'ports')) };
}

function target(t: Test, options: Omit<NvmeOfTargetOptions, 'device'>): NvmeOfTarget {
  const b = nvmeControllers()[1];
  const tgt = NvmeOf.createTarget({ device: b.namespace, ...options });
  t.teardown(() => tgt.close());
  return tgt;
}

/** Writes through the fabric, reads back through it, and reads the backing drive directly. */
async function roundTrip(t: Test, tgt: NvmeOfTarget, seed: number): Promise<void> {
  const mark = kmsgMark();
  using conn = await NvmeOf.connect({ nqn: tgt.nqn, transport: tgt.transport, address: tgt.address, port: tgt.port });
  t.equal(conn.state, 'live');
  t.match(conn.namespaces, [new RegExp(`^/dev/${conn.controller}n1$`)], 'one namespace, its block device made');
  const ns = conn.open();
  t.equal(ns.controller, conn.controller);
  t.equal(ns.pci, undefined, 'a fabrics controller has no PCI function');
  using local = Nvme.open(tgt.device, { readOnly: true });
  t.equal(ns.size, local.size, 'the size of the backing drive');
  t.equal(ns.identifySync().controller.model, 'Linux', "nvmet's model number");
  const src = pattern(seed);
  t.equal(await ns.write(src, POSITION), SIZE);
  const back = alignedBuffer(SIZE);
  t.equal(await ns.read(back, POSITION), SIZE);
  t.ok(back.equals(src), 'read back through the fabric');
  const direct = alignedBuffer(SIZE);
  local.readSync(direct, POSITION);
  t.ok(direct.equals(src), `the bytes are on ${tgt.device}`);
  const use = tgt.p2pmemFor();
  const log = kmsgSince(mark);
  t.ok(log.some((l) => l.includes(`for subsystem ${tgt.nqn} for NQN`)), 'the kernel log covers the connect: nvmet made the controller');
  t.notOk(log.some((l) => /nvmet: using p2pmem on/.test(l)), `nvmet gave the controller no p2pmem: ${use.reason}`);
  t.equal(use.used, false);
  conn.close();
  t.equal(ns.closed, true, 'close() closed the namespace it opened');
  t.notOk(fs.existsSync(`/sys/class/nvme/${conn.controller}`), `${conn.controller} is gone`);
}

t.test('loop: a namespace exported and connected in one guest is the backing drive, read and written with Nvme', guest, async (t) => {
  const before = nvmetState();
  const b = nvmeControllers()[1];
  const tgt = target(t, { nqn: nqn('loop'), transport: 'loop', p2pmem: b.bdf });
  t.equal(tgt.p2pmem, b.bdf, "the namespace's p2pmem attribute names the CMB");
  t.match(tgt.p2pmemFor(), { requested: b.bdf, used: false, reason: /loop transport hands the host's own pages/ });
  t.ok(nvmetState().subsystems.includes(tgt.nqn) && nvmetState().ports.includes(String(tgt.portId)));
  await roundTrip(t, tgt, 1);
  tgt.close();
  tgt.close();
  t.same(nvmetState(), before, 'close() removed the port and the subsystem');
  t.throws(() => tgt.p2pmemFor(), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('rdma on rxe0: the same through nvmet-rdma; p2pmem on the CMB is accepted and silently unused (rxe is virtual DMA)', guest, async (t) => {
  const before = nvmetState();
  const b = nvmeControllers()[1];
  const tgt = target(t, { nqn: nqn('rdma'), transport: 'rdma', address: ADDR, p2pmem: b.bdf });
  t.match(tgt.p2pmemFor(), { used: false, reason: /rxe0 is a software RDMA device .*ib_dma_pci_p2p_dma_supported\(\) is false/ });
  const pool = () => Number(fs.readFileSync(`/sys/bus/pci/devices/${b.bdf}/p2pmem/size`, 'utf8'));
  t.ok(pool() > 0, `${b.bdf} has a p2pmem pool`);
  await roundTrip(t, tgt, 2);
  tgt.close();
  t.same(nvmetState(), before);
});

t.test('refusals name the cause and leave no configfs state behind', guest, async (t) => {
  const before = nvmetState();
  // Not on this machine: rdma_bind_addr() refuses it when the port is enabled (the last step).
  t.throws(() => target(t, { nqn: nqn('bad-addr'), transport: 'rdma', address: '10.0.2.99' }), {
    code: 'EADDRNOTAVAIL',
    syscall: 'symlink',
    message: /cannot listen on 10\.0\.2\.99:4420 \(is the address on an RDMA device/,
  });
  t.same(nvmetState(), before, 'the port, namespace and subsystem made before it were removed');
  t.throws(() => target(t, { nqn: nqn('bad-p2p'), transport: 'loop', p2pmem: '0000:00:00.0' }), { code: 'ENODEV', message: /0000:00:00\.0 is no PCI device with p2pmem/ });
  t.throws(() => NvmeOf.createTarget({ nqn: nqn('no-dev'), transport: 'loop', device: '/dev/nvme-none' }), { code: 'ENOENT', message: /nvmet cannot open \/dev\/nvme-none/ });
  t.same(nvmetState(), before);
  using first = target(t, { nqn: nqn('twice'), transport: 'loop' });
  t.throws(() => target(t, { nqn: nqn('twice'), transport: 'loop' }), { code: 'EEXIST', message: /exists already; it is not this target's to change/ });
  t.equal(first.p2pmem, false);
  const controllers = fs.readdirSync('/sys/class/nvme').sort();
  // nvmet fails the Connect command (no such subsystem), nvme-fabrics turns its status into EIO.
  await t.rejects(NvmeOf.connect({ nqn: nqn('nobody'), transport: 'loop', timeoutMs: 5000 }), {
    code: 'EIO',
    errno: -5,
    syscall: 'write',
    path: '/dev/nvme-fabrics',
    message: /^EIO: i\/o error, write '\/dev\/nvme-fabrics' \(connecting 'transport=loop,nqn=nqn\.2026-12\.io\.p2pdma:guest-nobody' failed; the kernel log says why\)$/,
  });
  t.same(fs.readdirSync('/sys/class/nvme').sort(), controllers, 'no controller left behind');
});
