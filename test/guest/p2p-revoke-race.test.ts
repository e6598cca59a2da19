// Kernel series v2: RDMA on an rxe MR over the ivshmem BAR while the MR
// keeps being invalidated: another thread loops the exporter's REVOKE (what a
// GPU moving its memory does) and clear_refs (which invalidates the whole
// address space), and this thread flips the mapping's protection (mprotect).
// Invalidation is re-mappable: rxe answers an RDMA WRITE to a revoked MR with
// an RNR NAK and maps the memory again, and READ responses wait for the new
// mapping, so every operation completes with the right data on the same MR
// and queue pair. Only memory that is gone (unmapped) ends the MR: operations
// on it then fail with a remote access error. On the DEBUG kernel the harness
// fails the run on any KASAN, lockdep or kmemleak report from these races.
// Series v3 (7.3) revokes from the exporter only: its case flips vfio-pci's
// memory decode under an MR on the BAR mapping (issue 26's v2 defects 1-2).
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ioctlSync, Rdma, type Mapping, type MemoryRegion, type ProtectionDomain } from '../../lib';
import { ivshmemBdf, ivshmemNode, openIvshmemVfio, v2Only, v3Only } from './helpers';
import { IVSHMEM_P2P_IOCTL_REVOKE, mapIvshmemP2p } from './ivshmem-p2p';
import { hostBuffer, hostPattern, rnrNaksSent, setup } from './rdma-helpers';

// ivshmem_p2p's REVOKE and v2's mm-event revocation; v3 revokes from the
// exporter only (vfio.test.ts, p2p-unplug.test.ts).
const onV2 = v2Only('revocation from the exporter, tested in vfio.test.ts and p2p-unplug.test.ts');
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
  // Loading the addon takes seconds under TCG: the traffic waits for this.
  parentPort.postMessage('ready');
  (function loop() {
    if (!stop) {
      try {
        // clear_refs 4 invalidates the whole address space (MMU_NOTIFY_SOFT_DIRTY).
        if ((revokes + clears) % 3 === 2) { fs.writeFileSync('/proc/self/clear_refs', '4'); clears++; }
        else { ioctlSync(fd, REVOKE); revokes++; }
      } catch (e) { error = e.message; stop = true; }
    }
    if (stop) { fd.close(); parentPort.postMessage({ revokes, clears, error }); parentPort.close(); return; }
    // Random gaps, so that invalidations land before, during and between operations.
    setTimeout(loop, 10 + Math.random() * 200);
  })();
`;

/**
 * The kernel's ioremap()s of [start, start + size) listed in /proc/vmallocinfo:
 * rxe's mappings of the BAR for an MR on it (v1 kept them after REVOKE until
 * deregistration, defect 5; v2 drops them in the invalidation).
 */
function barIoremaps(start: bigint, size: bigint): string[] {
  return fs.readFileSync('/proc/vmallocinfo', 'utf8').split('\n').filter((line) => {
    const phys = / phys=0x([0-9a-f]+) ioremap/.exec(line);
    return phys !== null && BigInt(`0x${phys[1]}`) >= start && BigInt(`0x${phys[1]}`) < start + size;
  });
}

/** Registers `map` as an MR, again while a REVOKE lands during registration (EAGAIN). */
async function registerBar(pd: ProtectionDomain, map: Mapping): Promise<MemoryRegion> {
  for (let tries = 1; ; tries++) {
    try {
      return await pd.registerMemory(map, { access: [...ACCESS] });
    } catch (e) {
      if ((e as { code?: string }).code !== 'EAGAIN' || tries === 20) throw e;
    }
  }
}

/**
 * rxe0's loopback pair (rdma-helpers' setup()), a shared mapping of the
 * ivshmem BAR and an MR on it, all closed when the test ends.
 */
async function barRig(t: Test) {
  const bdf = ivshmemBdf();
  const node = bdf && ivshmemNode(bdf);
  if (!t.ok(node, 'ivshmem_p2p bound')) return undefined;
  const rdma = setup(t, undefined, 'rxe0');
  const ivshmem = mapIvshmemP2p(t, node!, SIZE);
  const bar = await registerBar(rdma.pd, ivshmem.map);
  t.teardown(() => bar.close());
  return { ...rdma, ...ivshmem, node: node!, bar };
}

t.test('a WRITE and a READ on an MR the exporter just revoked complete, after an RNR NAK, with the data', onV2, async (t) => {
  const r = await barRig(t);
  if (!r) return;
  const { a, bar, map, fd, info } = r;
  const src = hostPattern(SIZE, 3);
  const srcMr = r.mr(src, 'local-write');
  const back = hostBuffer(SIZE);
  const backMr = r.mr(back, 'local-write');
  const { size, busAddr } = info();
  t.equal(info().activeMaps, 1, 'the MR holds one mapping of the BAR');
  t.ok(barIoremaps(busAddr, size).length > 0, 'rxe ioremap()ed the BAR for the MR');

  ioctlSync(fd, IVSHMEM_P2P_IOCTL_REVOKE);
  t.equal(info().activeMaps, 0, 'REVOKE released it');
  t.same(barIoremaps(busAddr, size), [], 'and rxe dropped its ioremap()s of the BAR in the invalidation');
  const naks = rnrNaksSent();
  await a.write(srcMr, bar);
  t.ok(map.read(Buffer.alloc(SIZE)).equals(src), 'the BAR holds what the WRITE sent');
  t.ok(rnrNaksSent() > naks, `rxe answered the first try with an RNR NAK (send_rnr_err ${naks} -> ${rnrNaksSent()})`);
  t.equal(info().activeMaps, 1, 'rxe mapped the BAR again');

  ioctlSync(fd, IVSHMEM_P2P_IOCTL_REVOKE);
  const readNaks = rnrNaksSent();
  await a.read(backMr, bar);
  t.ok(back.equals(src), 'a READ after another REVOKE reads the BAR');
  t.ok(rnrNaksSent() > readNaks, `rxe answered it with an RNR NAK too, before any response (send_rnr_err ${readNaks} -> ${rnrNaksSent()})`);
  t.equal(info().activeMaps, 1, 'mapped again for the READ');

  bar.close();
  t.equal(info().activeMaps, 0, 'deregistering released the mapping');
  t.same(barIoremaps(busAddr, size), [], 'and the ioremap()s');
});

t.test('WRITE/READ on one MR and QP pair while REVOKE, clear_refs and mprotect loop: all complete with the right data', onV2, async (t) => {
  const r = await barRig(t);
  if (!r) return;
  const { a, bar, map, info } = r;
  const revokesBefore = info().revokes;
  const back = hostBuffer(SIZE);
  const backMr = r.mr(back, 'local-write');

  const worker = new Worker(INVALIDATOR, {
    eval: true,
    workerData: { lib: path.join(__dirname, '..', '..', 'lib', 'index'), ivshmem: path.join(__dirname, 'ivshmem-p2p'), node: r.node },
  });
  // On a non-DEBUG kernel the 40 rounds took 3.4 s, over before the thread had loaded the addon.
  await new Promise((resolve) => worker.once('message', resolve));
  const counts = new Promise<{ revokes: number; clears: number; error?: string }>((resolve) => worker.once('message', resolve));
  // mprotect of the whole mapping, from read-only back to read-write: each
  // call invalidates, and a remap in between finds no write access (EPERM)
  // and is tried again on the next access.
  // Random 10-110 ms gaps. P2PDMA_RACE_FLIP_MS=N flips every N ms instead,
  // to stress by hand: every 15 ms, before rxe NAKed a READ that finds its
  // MR revoked, a READ response outwaited rxe's 100 ms bound in one DEBUG
  // run in three.
  const fixedGap = Number(process.env.P2PDMA_RACE_FLIP_MS) || 0;
  let protects = 0;
  let flipper: NodeJS.Timeout | undefined;
  (function flip() {
    map.mprotect('read');
    map.mprotect('rw');
    protects += 2;
    flipper = setTimeout(flip, fixedGap || 10 + Math.random() * 100);
  })();

  const naks = rnrNaksSent();
  const unexpected: string[] = [];
  // rxe gives a revoked MR a fixed 100 ms to be mapped again before it fails
  // a READ response with a remote access error (the v2 series documents the
  // bound; issue 26's v3 removes it). Under KASAN on a slow or loaded TCG
  // host a remap that the flips keep interrupting can take longer: that one
  // outcome depends on the machine's speed, so it is reported as a known
  // limitation (a TODO point), never as a pass or a failure. Any other error
  // fails the test.
  let remapBoundHit: string | undefined;
  let completed = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const src = hostPattern(SIZE, round);
      const srcMr = r.pd.registerMemorySync(src, { access: 'local-write' });
      try {
        await a.write(srcMr, bar);
        if (!map.read(Buffer.alloc(SIZE)).equals(src)) unexpected.push(`round ${round}: WRITE completed but the BAR does not hold its data`);
        back.fill(0);
        await a.read(backMr, bar);
        if (!back.equals(src)) unexpected.push(`round ${round}: READ completed with other data than the BAR's`);
        completed++;
      } catch (e) {
        const err = e as { op?: string; status?: string; message: string };
        if (err.op === 'read' && err.status === 'IBV_WC_REM_ACCESS_ERR') remapBoundHit = `round ${round}: ${err.message}`;
        else unexpected.push(`round ${round}: ${err.message}`);
        break; // the QP is in the error state
      } finally {
        srcMr.close();
      }
    }
  } finally {
    clearTimeout(flipper);
    worker.postMessage('stop');
  }
  const done = await counts;
  await new Promise((resolve) => worker.once('exit', resolve));

  t.comment(`${completed} rounds, invalidations ${JSON.stringify({ ...done, protects })}, RNR NAKs sent ${rnrNaksSent() - naks}`);
  t.same(unexpected, [], 'every WRITE and READ completed, with the right data');
  if (remapBoundHit === undefined) {
    t.equal(completed, ROUNDS, 'the same MR and QP pair served every round');
  } else {
    t.fail(`the same MR and QP pair served every round (${completed} of ${ROUNDS}; a READ outwaited rxe's 100 ms remap bound: ${remapBoundHit})`, {
      todo: "rxe's fixed remap wait for READ responses is machine-speed dependent in v2 (issue 26 removes the bound)",
    });
  }
  t.equal(done.error, undefined, 'the invalidating thread ran without error');
  // When the bound was hit early, the traffic stopped before every kind could run: that is the TODO above, not a second failure.
  t.ok(done.revokes > 0 && done.clears > 0 && protects > 0, 'all three kinds of invalidation ran during the traffic', {
    todo: remapBoundHit === undefined ? false : `the traffic stopped at ${remapBoundHit.split(':')[0]}`,
  });
  t.ok(info().revokes - revokesBefore >= done.revokes, 'the exporter counted every REVOKE');
  bar.close();
  t.equal(info().activeMaps, 0, 'deregistering released the mapping');
});

// The API no longer lets JS unmap memory an MR covers (issue 22: the MR
// would pin whatever is mapped there next), so a munmap() under the MR is
// the kernel series' kselftests' to check; here, the order the API keeps.
t.test('the BAR mapping under an MR cannot be unmapped (ERR_P2PDMA_BUSY) until the MR is closed', onV2, async (t) => {
  const r = await barRig(t);
  if (!r) return;
  const { a, bar, map, info } = r;
  const src = hostPattern(SIZE, 9);
  const srcMr = r.mr(src, 'local-write');

  await a.write(srcMr, bar);
  t.throws(() => map.unmap(), { code: 'ERR_P2PDMA_BUSY', message: /1 memory region/ }, 'unmap() refused while the MR covers the BAR');
  t.equal(info().activeMaps, 1, 'the MR still maps the BAR');
  bar.close();
  t.equal(info().activeMaps, 0, 'deregistering released the mapping');
  map.unmap();
  t.ok(map.closed, 'and unmap() works then');
});

/**
 * v3's storm: memory decode off and on through the VFIO device fd's config
 * space (the fd is the process's, so the thread shares it), at random short
 * gaps, until told to stop; it leaves the memory on.
 */
const FLIPPER = `
  const { parentPort, workerData } = require('node:worker_threads');
  const fs = require('node:fs');
  const { fd, command, ctl: shared } = workerData;
  const ctl = new Int32Array(shared);
  const b = Buffer.alloc(2);
  const MEMORY = 2; // PCI_COMMAND_MEMORY
  const set = (on) => {
    fs.readSync(fd, b, 0, 2, command);
    b.writeUInt16LE(on ? b.readUInt16LE(0) | MEMORY : b.readUInt16LE(0) & ~MEMORY, 0);
    fs.writeSync(fd, b, 0, 2, command);
  };
  let flips = 0, error;
  try {
    while (Atomics.load(ctl, 0) === 0) {
      // Off for 1-5 ms, on for 20-120: long enough on that some operations get through.
      set(false);
      Atomics.wait(ctl, 0, 0, 1 + Math.random() * 4);
      set(true);
      flips++;
      Atomics.wait(ctl, 0, 0, 20 + Math.random() * 100);
    }
  } catch (e) { error = e.message; }
  try { set(true); } catch (e) { error = error ?? e.message; }
  parentPort.postMessage({ flips, error });
`;

/** `op` settled within `ms`: its outcome, or 'timeout'. */
async function within(op: Promise<unknown>, ms: number): Promise<'ok' | string> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms); });
  try {
    return await Promise.race([op.then(() => 'ok', (e: { status?: string; message: string }) => e.status ?? e.message), late]);
  } finally {
    clearTimeout(timer);
  }
}

const onV3 = v3Only('revocation by the exporter under a BAR mapping MR (vfio-pci)');
const BAR = 2;
const CONFIG_REGION = 7; // VFIO_PCI_CONFIG_REGION_INDEX
const PCI_COMMAND = 4;
const OP_DEADLINE_MS = 10_000;

// v2's remap work could outlive its MR (defect 1) and retried until a fatal
// signal that a kworker never gets (defect 2); READs waited for it. v3 has
// no work item: an access on a revoked MR fails at once with a remote access
// error, a later one maps the buffer again, and an MR deregistered in the
// middle of the storm goes at once.
t.test('v3: WRITE/READ while the device memory flips off and on: each completes with the data or a remote access error, at once; an MR deregisters mid-storm', onV3, async (t) => {
  const bdf = ivshmemBdf();
  if (!t.ok(bdf, 'ivshmem-plain present')) return;
  const v = openIvshmemVfio(t, bdf!);
  const m = v.map(BAR);
  t.teardown(() => m.unmap());
  const rdma = setup(t, undefined, 'rxe0');
  const LEN = 16 << 10;
  const mr = await rdma.pd.registerMemory(m, { length: LEN, access: [...ACCESS] });
  t.teardown(() => mr.close());
  const doomed = await rdma.pd.registerMemory(m, { offset: LEN, length: LEN, access: [...ACCESS] });
  t.teardown(() => {
    if (!doomed.closed) doomed.close();
  });
  const back = hostBuffer(LEN);
  const backMr = rdma.mr(back, 'local-write');

  const ctl = new SharedArrayBuffer(4);
  const worker = new Worker(FLIPPER, { eval: true, workerData: { fd: v.fd, command: v.region(CONFIG_REGION).offset + PCI_COMMAND, ctl } });
  const counts = new Promise<{ flips: number; error?: string }>((resolve) => worker.once('message', resolve));
  const stop = async () => {
    Atomics.store(new Int32Array(ctl), 0, 1);
    Atomics.notify(new Int32Array(ctl), 0);
    return counts;
  };
  t.teardown(() => void stop());

  // Revocations land in the middle of 16-packet WRITEs and READs: v2 NAKed those packets RNR.
  const naks = rnrNaksSent();
  const outcomes = { ok: 0, refused: 0 };
  const unexpected: string[] = [];
  let slowest = 0;
  let deregMs = -1;
  // Until both outcomes were seen (the storm hit operations and missed some), at most 200 rounds.
  for (let round = 0; round < 200 && !(outcomes.ok > 2 && outcomes.refused > 2 && deregMs >= 0); round++) {
    // A failed operation leaves its pair in the error state: a fresh pair each round.
    const [a, b] = Rdma.loopbackPair(rdma.pd);
    try {
      const src = hostPattern(LEN, round);
      const srcMr = rdma.mr(src, 'local-write');
      const started = Date.now();
      let r = await within(a.write(srcMr, mr), OP_DEADLINE_MS);
      if (r === 'ok') {
        back.fill(0);
        r = await within(a.read(backMr, mr), OP_DEADLINE_MS);
        if (r === 'ok' && !back.equals(src)) unexpected.push(`round ${round}: READ completed with other data than the WRITE's`);
      }
      slowest = Math.max(slowest, Date.now() - started);
      if (r === 'ok') outcomes.ok++;
      else if (r === 'IBV_WC_REM_ACCESS_ERR') outcomes.refused++;
      else {
        unexpected.push(`round ${round}: ${r}`);
        break;
      }
      // v2's defect 1: deregistration while the MR is being revoked and mapped again.
      if (round === 10) {
        await within(a.write(srcMr, doomed), OP_DEADLINE_MS);
        const d0 = Date.now();
        doomed.close();
        deregMs = Date.now() - d0;
      }
    } finally {
      a.close();
      b.close();
    }
  }
  const done = await stop();

  t.comment(`${JSON.stringify(outcomes)}, flips ${done.flips}, slowest round ${slowest} ms, deregistration ${deregMs} ms`);
  t.same(unexpected, [], 'every WRITE and READ completed, with the right data, or failed with a remote access error');
  t.ok(outcomes.ok > 2 && outcomes.refused > 2, 'the flips failed some operations and missed others');
  t.equal(rnrNaksSent(), naks, 'rxe sent no RNR NAK (send_rnr_err unchanged)');
  t.ok(slowest < OP_DEADLINE_MS, `no operation waited for the memory (slowest round ${slowest} ms)`);
  t.ok(deregMs >= 0 && deregMs < OP_DEADLINE_MS, `an MR deregistered in the storm went at once (${deregMs} ms)`);
  t.equal(done.error, undefined, 'the flipping thread ran without error');
  t.ok(v.memoryEnabled, 'the memory is on again');
  // v2's MR died when its remap failed for good; v3's maps again on its next use.
  const [a, b] = Rdma.loopbackPair(rdma.pd);
  t.teardown(() => {
    a.close();
    b.close();
  });
  const last = hostPattern(LEN, 999);
  await a.write(rdma.mr(last, 'local-write'), mr);
  t.ok(m.read(Buffer.alloc(LEN)).equals(last), 'after the storm the same MR takes a WRITE into the BAR');
});
