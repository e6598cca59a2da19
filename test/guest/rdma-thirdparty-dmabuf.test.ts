// A third-party tool on rxe's dma-buf MRs (kernel-patches/v3 0003, issue
// 26): pyverbs' DmaBufMR (ibv_reg_dmabuf_mr()) with rdma-core built with
// userspace-patches/rdma-core, whose rxe provider sends the command
// (scripts/rdma-core/build.sh; LD_LIBRARY_PATH picks it), on the guest's
// dma-buf exporters of host memory: a dma-heap (system) buffer, a udmabuf
// and a vgem buffer, which the addon allocates and hands over as fd 3
// (test/guest/pyverbs/dmabuf_mr.py). On v3 (and v2, whose rxe has dma-buf
// MRs too) each registers and takes an RDMA WRITE and READ, checked through
// the buffer's own mmap, as root and as uid 65534 under RLIMIT_MEMLOCK 0
// with nothing pinned; a stock kernel's uverbs refuses the command
// (EOPNOTSUPP: its rxe has no reg_user_mr_dmabuf). The system's rdma-core
// refuses it in libibverbs on every kernel (rdma-thirdparty.test.ts keeps
// that check, with the vfio-pci BAR's dma-buf). p2pmem has no fd to hand
// over (v3 exports its dma-buf only behind a mapping).
import t, { type Test } from 'tap';
import * as path from 'node:path';
import { DmaBuf, DmaHeap, Drm, Rdma, Udmabuf } from '../../lib';
import { defaultGidIndex } from '../../lib/rdma/qp';
import { guest, inGuest, kernel } from './helpers';
import { NOBODY, noPyverbs, patchedRdmaCoreLib, python, readableScripts } from './pyverbs-helpers';
import { DEV, onPvrdma } from './rdma-helpers';

const scripts = inGuest ? readableScripts(['dmabuf_mr.py', 'rc.py', 'mr_io.py']) : '';
const opts = guest.skip ? guest : { skip: (onPvrdma && 'pvrdma lane: the patch is rxe\'s provider') || noPyverbs };
const LEN = 64 << 10;

/** The guest's exporters of host memory, each giving a LEN-byte buffer closed when the test ends (as rdma.test.ts has them). */
const sources: [string, (t: Test) => DmaBuf][] = [
  ['a dma-heap (system) buffer', (t) => {
    using heap = DmaHeap.open('system');
    const buf = heap.allocSync(LEN);
    t.teardown(() => buf.close());
    return buf;
  }],
  ['a udmabuf', (t) => {
    const u = Udmabuf.createSync({ size: LEN });
    t.teardown(() => u.close());
    return u;
  }],
  ['a vgem buffer', (t) => {
    using d = Drm.open({ driver: 'vgem' });
    using bo = d.createDumb({ width: 1024, height: LEN / 4096, bpp: 32 });
    const buf = bo.export({ rw: true });
    t.teardown(() => buf.close());
    return buf;
  }],
];

for (const [what, make] of sources) {
  t.test(`pyverbs DmaBufMR on ${what} with userspace-patches/rdma-core, as root and as uid 65534 under RLIMIT_MEMLOCK 0`, opts, async (t) => {
    const lib = patchedRdmaCoreLib(t);
    if (!lib) return;
    let gidIndex: number;
    {
      using ctx = Rdma.open(DEV);
      gidIndex = defaultGidIndex(ctx, 1);
    }
    const users = [0, NOBODY];
    const bufs = users.map(() => make(t));
    const results = await Promise.all(users.map((uid, i) =>
      python(scripts, 'dmabuf_mr.py', [DEV, gidIndex, LEN], [bufs[i].fd], { uid: uid || undefined, env: { LD_LIBRARY_PATH: lib } })));
    for (const [i, uid] of users.entries()) {
      const r = results[i];
      const who = uid ? `uid ${uid} under RLIMIT_MEMLOCK 0` : 'root';
      t.same([r.uid, r.memlock], [uid, uid ? 0 : undefined], `ran as ${who}`);
      const libs = r.libs as Record<string, string>;
      t.same([path.dirname(libs.libibverbs), path.dirname(libs.rxe)], [lib, lib], `${who}: libibverbs and rxe's provider are the patched build's`);
      if (kernel === 'patched') {
        t.same(r.dmabuf, { reg_mr: 'ok', vmpin_kb: 0, write: true, read: true }, `${who}: registered, nothing pinned; WRITE landed in the buffer, READ brought back what the CPU wrote`);
      } else {
        t.same(r.dmabuf, { reg_mr: 'Operation not supported', errno: 95 }, `${who}: the patched provider sends the command (v3 takes it) and the stock kernel's uverbs refuses it with EOPNOTSUPP, before looking at the fd: its rxe has no reg_user_mr_dmabuf`);
      }
    }
  });
}
