// Side by side with rdma-core's pyverbs (python3-pyverbs) on rxe0 in the
// same guest: test/guest/pyverbs/side_by_side.py does the atomics, the
// shared receive queue and the UD SEND that this file does with the addon;
// both must succeed with the same data. test/guest/pyverbs/p2pmem_mr.py
// registers an NVMe CMB's mapping (p2pmem/allocate) with pyverbs, as root
// and as uid 65534 under RLIMIT_MEMLOCK 0: refused by a stock kernel
// (EFAULT: the pages cannot be pinned; EPERM under the limit), registered without pinning by the series (v2's p2p_map, v3's
// p2p_dma_buf), with RDMA WRITE and READ through it (as root).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rdma } from '../../lib';
import { packageRoot } from '../../lib/core/package-root';
import { defaultGidIndex } from '../../lib/rdma/qp';
import { guest, inGuest, kernel, kernelSeries, nvmeControllers } from './helpers';
import { DEV, hostBuffer, onPvrdma } from './rdma-helpers';

const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(packageRoot, 'test/guest/pyverbs/side_by_side.py');
const P2PMEM_SCRIPT = path.join(packageRoot, 'test/guest/pyverbs/p2pmem_mr.py');
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

// rxe copies into the CMB with the CPU: an MMIO access per word under TCG.
const CMB_BYTES = 64 << 10;

t.test('pyverbs: ibv_reg_mr on an NVMe CMB mapping, as root and as uid 65534 under RLIMIT_MEMLOCK 0', opts, async (t) => {
  const c = inGuest ? nvmeControllers()[0] : undefined;
  if (!t.ok(c && fs.existsSync(`${c.p2pmem}/allocate`), 'an NVMe controller with a p2pmem CMB')) return;
  const ctx = Rdma.open(DEV);
  const gidIndex = defaultGidIndex(ctx, 1);
  ctx.close();
  for (const uid of [undefined, 65534]) {
    const args = [P2PMEM_SCRIPT, `${c!.p2pmem}/allocate`, String(CMB_BYTES), DEV, String(gidIndex), ...(uid === undefined ? [] : [String(uid)])];
    const r = JSON.parse(execFileSync(PYTHON, args, { encoding: 'utf8', timeout: 120_000 })) as Record<string, unknown>;
    const who = `uid ${r.uid}`;
    t.equal(r.uid, uid ?? 0, `ran as ${uid ?? 'root'}`);
    if (kernel === 'baseline') {
      // As 65534 under RLIMIT_MEMLOCK 0 the pinning path refuses first (EPERM, can_do_mlock()).
      const [msg, errno] = uid === undefined ? ['Bad address', 14] : ['Operation not permitted', 1];
      t.same([r.reg_mr, r.errno], [msg, errno], `${who}: the stock kernel takes the pinning path and refuses: ${msg} (${JSON.stringify(r)})`);
    } else {
      // As 65534 only the registration: uverbs refuses rxe's post_send
      // (a write()) once the process has changed credentials.
      const rdma = uid === undefined ? { write: true, read: true } : {};
      t.same(r, { uid: uid ?? 0, reg_mr: 'ok', vmpin_kb: 0, ...rdma }, `${who}: registered (${kernelSeries}) without pinning${uid === undefined ? '; WRITE landed in the CMB, READ came back' : ''}`);
    }
  }
});
