// Side by side with rdma-core's pyverbs (python3-pyverbs) on rxe0 in the
// same guest: test/guest/pyverbs/side_by_side.py does the atomics, the
// shared receive queue and the UD SEND that this file does with the addon;
// both must succeed with the same data.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rdma } from '../../lib';
import { packageRoot } from '../../lib/core/package-root';
import { defaultGidIndex } from '../../lib/rdma/qp';
import { guest } from './helpers';
import { DEV, hostBuffer, onPvrdma } from './rdma-helpers';

const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(packageRoot, 'test/guest/pyverbs/side_by_side.py');
const havePyverbs = fs.existsSync('/usr/lib/python3/dist-packages/pyverbs/__init__.py');
const opts = guest.skip
  ? guest
  : { skip: onPvrdma ? 'pvrdma lane: compared on rxe' : havePyverbs ? false : 'python3-pyverbs is not installed (scripts/setup.sh installs it)' };

/** The bytes both sides send: (i * 7 + 3) & 0xff, as side_by_side.py's data(). */
function data(n: number): Buffer {
  const b = hostBuffer(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 0xff;
  return b;
}

interface Results {
  atomics: string[] | { error: string };
  srq: { s1: number; s2: number } | { error: string };
  ud: { byteLen: number; srcIsSender: boolean; payload: string } | { error: string };
}

async function addon(): Promise<Results> {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const open: { close(): void }[] = [];
  const keep = <T extends { close(): void }>(o: T): T => (open.push(o), o);
  try {
    // Atomics on a loopback RC pair.
    const [a, b] = Rdma.loopbackPair(pd, { cqSize: 32 });
    keep(a);
    keep(b);
    const targetBuf = hostBuffer(8);
    targetBuf.writeBigUInt64LE(0x1122334455667788n);
    const target = keep(pd.registerMemorySync(targetBuf, { access: ['local-write', 'remote-write', 'remote-read', 'remote-atomic'] }));
    const localBuf = hostBuffer(8);
    const local = keep(pd.registerMemorySync(localBuf, { access: 'local-write' }));
    const atomics: string[] = [];
    await a.fetchAndAdd(local, target, 5n);
    atomics.push(`0x${localBuf.readBigUInt64LE().toString(16)}`);
    await a.compareAndSwap(local, target, 0x112233445566778dn, 0xdeadbeefn);
    atomics.push(`0x${localBuf.readBigUInt64LE().toString(16)}`);
    atomics.push(`0x${targetBuf.readBigUInt64LE().toString(16)}`);

    // Two RC QPs sharing an SRQ.
    const cq = keep(ctx.createCq(32));
    const srq = pd.createSrq({ cq, maxWr: 16 });
    const s1 = pd.createQp({ sendCq: cq, srq });
    const s2 = pd.createQp({ sendCq: cq, srq });
    const c1 = pd.createQp({ sendCq: cq });
    const c2 = pd.createQp({ sendCq: cq });
    open.unshift(c1, c2, s1, s2, srq);
    c1.connect(s1.info());
    s1.connect(c1.info());
    c2.connect(s2.info());
    s2.connect(c2.info());
    const dst = keep(pd.registerMemorySync(hostBuffer(2048), { access: 'local-write' }));
    const src = keep(pd.registerMemorySync(data(256), { access: 'local-write' }));
    const recvs = [srq.recv({ mr: dst, offset: 0, length: 1024 }), srq.recv({ mr: dst, offset: 1024, length: 1024 })];
    await Promise.all([c1.send(src, 100), c2.send(src, 200)]);
    const got = await Promise.all(recvs);
    const byQp = new Map(got.map((c) => [c.qpNum, c.byteLen]));

    // UD through an address handle.
    const ucq = keep(ctx.createCq(8));
    const u1 = pd.createQp({ type: 'UD', sendCq: ucq });
    const u2 = pd.createQp({ type: 'UD', sendCq: ucq });
    open.unshift(u1, u2);
    u1.activate();
    u2.activate();
    const ah = pd.createAh({ gid: u2.info().gid });
    open.unshift(ah);
    const usrc = keep(pd.registerMemorySync(data(64), { access: 'local-write' }));
    const udstBuf = hostBuffer(40 + 64);
    const udst = keep(pd.registerMemorySync(udstBuf, { access: 'local-write' }));
    const r = u2.recv(udst);
    await u1.send(usrc, 64, { ah, remoteQpn: u2.qpNum });
    const rc = await r;
    return {
      atomics,
      srq: { s1: byQp.get(s1.qpNum)!, s2: byQp.get(s2.qpNum)! },
      ud: { byteLen: rc.byteLen, srcIsSender: rc.srcQp === u1.qpNum, payload: udstBuf.subarray(40).toString('hex') },
    };
  } finally {
    for (const o of open) o.close();
    pd.close();
    ctx.close();
  }
}

t.test('pyverbs and the addon on rxe0: atomics, a shared receive queue, a UD SEND: both succeed with the same data', opts, async (t) => {
  const ctx = Rdma.open(DEV);
  const gidIndex = defaultGidIndex(ctx, 1);
  ctx.close();
  const py = JSON.parse(execFileSync(PYTHON, [SCRIPT, DEV, String(gidIndex)], { encoding: 'utf8', timeout: 120_000 })) as Results;
  const ours = await addon();
  t.same(ours.atomics, ['0x1122334455667788', '0x112233445566778d', '0xdeadbeef'], 'the addon: fetch-and-add, then compare-and-swap');
  t.same(py.atomics, ours.atomics, 'pyverbs: the same originals and final value');
  t.same(ours.srq, { s1: 100, s2: 200 }, "the addon: each SEND through its QP's share of the SRQ");
  t.same(py.srq, ours.srq, 'pyverbs: the same');
  t.same(ours.ud, { byteLen: 104, srcIsSender: true, payload: data(64).toString('hex') }, 'the addon: GRH + 64 bytes from the sender');
  t.same(py.ud, ours.ud, 'pyverbs: the same');
});
