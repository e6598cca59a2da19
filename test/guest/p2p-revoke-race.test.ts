// Kernel series v2: RDMA traffic on an rxe MR over the ivshmem BAR while
// another thread keeps invalidating it (the exporter's REVOKE, and
// clear_refs, which invalidates the whole address space). Invalidation is
// permanent in v2, so each round registers a fresh MR on a fresh QP pair and
// every step must end one of two ways: it works and the data is right, or it
// fails the documented way (registration EAGAIN when revoked meanwhile, a
// completion with a remote access error after). Anything else fails, and on
// the DEBUG kernel the harness fails the run on any KASAN, lockdep or
// kmemleak report from these races.
import t from 'tap';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Rdma, type MemoryRegion } from '../../lib/index';
import { ivshmemBdf, ivshmemNode, patchedOnly } from './helpers';
import { mapIvshmemP2p } from './ivshmem-p2p';
import { pattern } from './rdma-helpers';

const SIZE = 256 << 10;
const ROUNDS = 40;
const ACCESS = ['local-write', 'remote-write', 'remote-read'] as const;

/** The invalidating thread: REVOKE and clear_refs in turn until told to stop. */
const INVALIDATOR = `
  const { parentPort, workerData } = require('node:worker_threads');
  const fs = require('node:fs');
  const { Fd, ioctlSync } = require(workerData.lib);
  const { IVSHMEM_P2P_IOCTL_REVOKE: REVOKE } = require(workerData.ivshmem);
  const fd = Fd.open(workerData.node, 'r+');
  let stop = false, revokes = 0, clears = 0, error;
  parentPort.on('message', () => { stop = true; });
  (function loop() {
    if (!stop) {
      try {
        // clear_refs 4 invalidates the whole address space (MMU_NOTIFY_SOFT_DIRTY).
        if ((revokes + clears) % 3 === 2) { fs.writeFileSync('/proc/self/clear_refs', '4'); clears++; }
        else { ioctlSync(fd, REVOKE); revokes++; }
      } catch (e) { error = e.message; stop = true; }
    }
    if (stop) { fd.close(); parentPort.postMessage({ revokes, clears, error }); parentPort.close(); return; }
    // Random gaps, so that some rounds finish between two invalidations.
    setTimeout(loop, 20 + Math.random() * 400);
  })();
`;

function isRevokedCompletion(e: unknown): boolean {
  const err = e as { code?: string; status?: string };
  return err.code === 'ERR_P2PDMA_RDMA_COMPLETION' && (err.status === 'IBV_WC_REM_ACCESS_ERR' || err.status === 'IBV_WC_WR_FLUSH_ERR');
}

t.test('RDMA WRITE/READ on the ivshmem BAR while REVOKE and clear_refs loop: right data or a clean failure', patchedOnly, async (t) => {
  const bdf = ivshmemBdf();
  const node = bdf && ivshmemNode(bdf);
  if (!t.ok(node, 'ivshmem_p2p bound')) return;
  const { map, info } = mapIvshmemP2p(t, node!, SIZE);
  const revokesBefore = info().revokes;

  const ctx = Rdma.open('rxe0');
  t.teardown(() => ctx.close());
  const pd = ctx.allocPd();
  t.teardown(() => pd.close());
  const src = pattern(SIZE, 11);
  const srcMr = pd.registerMemorySync(src, 'local-write');
  t.teardown(() => srcMr.close());
  const back = Buffer.alloc(SIZE);
  const backMr = pd.registerMemorySync(back, 'local-write');
  t.teardown(() => backMr.close());

  const worker = new Worker(INVALIDATOR, {
    eval: true,
    workerData: { lib: path.join(__dirname, '..', '..', 'lib', 'index'), ivshmem: path.join(__dirname, 'ivshmem-p2p'), node },
  });
  const counts = new Promise<{ revokes: number; clears: number; error?: string }>((resolve) => worker.once('message', resolve));

  const outcome = { written: 0, readBack: 0, regRevoked: 0, revokedCompletions: 0 };
  const unexpected: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    map.write(Buffer.alloc(SIZE, round)); // refaults the BAR after a REVOKE
    let bar: MemoryRegion;
    try {
      bar = await pd.registerMemory(map, [...ACCESS]);
    } catch (e) {
      if ((e as { code?: string }).code === 'EAGAIN') outcome.regRevoked++;
      else unexpected.push(`round ${round}: registration: ${(e as Error).message}`);
      continue;
    }
    const [a, b] = Rdma.loopbackPair(pd);
    try {
      await a.write(srcMr, bar);
      outcome.written++;
      if (!map.read(0, SIZE).equals(src)) unexpected.push(`round ${round}: WRITE completed but the BAR does not hold its data`);
      back.fill(0);
      await a.read(backMr, bar);
      outcome.readBack++;
      if (!back.equals(src)) unexpected.push(`round ${round}: READ completed with other data than the BAR's`);
    } catch (e) {
      if (isRevokedCompletion(e)) outcome.revokedCompletions++;
      else unexpected.push(`round ${round}: ${(e as Error).message}`);
    } finally {
      a.close();
      b.close();
      bar.close();
    }
  }
  worker.postMessage('stop');
  const done = await counts;
  await new Promise((r) => worker.once('exit', r));

  t.comment(`outcomes ${JSON.stringify(outcome)}, invalidations ${JSON.stringify(done)}`);
  t.same(unexpected, [], 'every step either worked with the right data or failed the documented way');
  t.equal(done.error, undefined, 'the invalidating thread ran without error');
  t.ok(done.revokes > 0 && done.clears > 0, 'both kinds of invalidation ran during the traffic');
  t.ok(info().revokes - revokesBefore >= done.revokes, 'the exporter counted every REVOKE');
  t.ok(outcome.written + outcome.regRevoked + outcome.revokedCompletions > 0, 'traffic ran');
  t.equal(info().activeMaps, 0, 'every MR gone: no p2p mapping of the BAR is left');
});
