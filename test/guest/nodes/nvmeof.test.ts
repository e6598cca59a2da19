// NVMe over Fabrics between two guests (vm run --nodes 2): node B exports
// its second NVMe namespace through nvmet-rdma on rxe0 (10.0.3.2:4420), the
// namespace's p2pmem pointing at B's CMB; node A connects with nvme-rdma
// and writes through Nvme.open() on the remote namespace; B finds the bytes
// on its drive. The CMB stays unused (rxe is virtual DMA: docs/nvmeof.md),
// which B's kernel log and NvmeOfTarget.p2pmemFor() both show.
import t from 'tap';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { Nvme, NvmeOf } from '../../../lib';
import { alignedBuffer, inGuest, nvmeControllers } from '../helpers';
import { kmsgMark, kmsgSince } from '../kmsg';
import { Control, NODE_ADDR, PEER_ADDR, role, twoNodes } from './peer';

/** This file's control port (each two-node file has its own). */
const CONTROL_PORT = 7302;
const MiB = 1 << 20;
const SIZE = MiB;
const POSITION = 240 * MiB;
const NQN = 'nqn.2026-12.io.p2pdma:nodes-b';

let ctl: Control;
t.before(async () => {
  if (!twoNodes.skip) ctl = await Control.open(CONTROL_PORT);
});
t.teardown(() => ctl?.close());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test("A writes through nvme-rdma into B's nvmet namespace; the bytes land on B's drive; B's CMB is not used", twoNodes, async (t) => {
  if (role === 'b') {
    const b = inGuest ? nvmeControllers()[1] : undefined;
    if (!t.ok(b, 'a second NVMe controller with a CMB')) return;
    const mark = kmsgMark();
    using tgt = NvmeOf.createTarget({ nqn: NQN, device: b!.namespace, transport: 'rdma', address: NODE_ADDR, p2pmem: b!.bdf });
    t.equal(tgt.p2pmem, b!.bdf);
    ctl.send({ type: 'target', nqn: tgt.nqn, port: tgt.port });
    const { digest, controller } = await ctl.expect('written');
    using local = Nvme.open(b!.namespace, { readOnly: true });
    const direct = alignedBuffer(SIZE);
    local.readSync(direct, POSITION);
    t.equal(sha(direct), digest, `A's write is on ${b!.namespace}, byte for byte`);
    const log = kmsgSince(mark);
    t.ok(log.some((l) => l.includes(`for subsystem ${NQN} for NQN`)), `nvmet made a controller for A (${String(controller)})`);
    const use = tgt.p2pmemFor();
    t.notOk(log.some((l) => /nvmet: using p2pmem on/.test(l)), `no p2pmem for A's controller: ${use.reason}`);
    t.match(use, { used: false, reason: /rxe0 is a software RDMA device/ });
    ctl.send({ type: 'checked' });
    await ctl.expect('disconnected');
    tgt.close();
    t.notOk(fs.existsSync(`/sys/kernel/config/nvmet/subsystems/${NQN}`), 'the subsystem is gone');
  } else {
    const { nqn, port } = await ctl.expect('target');
    using conn = await NvmeOf.connect({ nqn: nqn as string, transport: 'rdma', address: PEER_ADDR, port: port as number });
    t.equal(conn.state, 'live');
    const ns = conn.open();
    t.equal(ns.identifySync().controller.model, 'Linux', "B's nvmet answers identify");
    const src = alignedBuffer(SIZE);
    for (let i = 0; i < SIZE; i += 4) src.writeUInt32LE((i * 2654435761 + 7) >>> 0, i);
    t.equal(await ns.write(src, POSITION), SIZE);
    const back = alignedBuffer(SIZE);
    await ns.read(back, POSITION);
    t.ok(back.equals(src), 'read back across the wire');
    ctl.send({ type: 'written', digest: sha(src), controller: conn.controller });
    await ctl.expect('checked');
    conn.close();
    t.notOk(fs.existsSync(`/sys/class/nvme/${conn.controller}`), `${conn.controller} deleted`);
    ctl.send({ type: 'disconnected' });
  }
  await ctl.sync('nvmeof done');
});
