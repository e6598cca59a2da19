// Prepared requests, cq.poll() and mr.pollByte() on the host, through RDMA
// objects whose native sides are stand-ins (no RDMA device here): the
// argument checks, which requests are signaled, how a chain settles and
// fails, and what closing lets go of. The verbs run in the guest
// (test/guest/rdma-verbs.test.ts, rxe0).
import t, { type Test } from 'tap';

import { CompletionQueue, MemoryRegion, PreparedRequest, ProtectionDomain, QueuePair } from '../../lib';
import { native } from '../../lib/core/native';

const WC_STRIDE = 10;

interface Fake {
  pd: ProtectionDomain;
  cq: CompletionQueue;
  qp: QueuePair;
  mr: MemoryRegion;
  /** postPrepared calls: [slot, count, firstWrId, signalEvery]. */
  posts: number[][];
  /** Completions the next drainInto returns: [wrId, status, vendorErr]. */
  wcs: number[][];
  /** drainInto calls: [spinUs, rearm]. */
  drains: [number, boolean][];
  holds: { n: number };
  unprepared: number[];
  /** What the next postPrepared returns (default: the count). */
  postResult?: number;
  pollByte?: number;
}

function fake(t: Test, cap: Partial<{ maxSendWr: number; maxInlineData: number }> = {}): Fake {
  const f = { posts: [], wcs: [], drains: [], holds: { n: 0 }, unprepared: [] } as unknown as Fake;
  const base = { close: () => 0, inFlight: () => 0, hold() {}, unhold() {} };
  const pdN = Object.setPrototypeOf({ ...base }, native.RdmaPd.prototype);
  const ctx = { name: 'fake0', invalidateBits: 0, track() {} };
  f.pd = new (ProtectionDomain as unknown as new (c: unknown, n: unknown) => ProtectionDomain)(ctx, pdN);
  const cqN = Object.setPrototypeOf({
    ...base,
    fd: -1,
    cqe: 64,
    drainInto(out: Float64Array, spinUs: number, rearm: boolean) {
      f.drains.push([spinUs, rearm]);
      const n = Math.min(f.wcs.length, out.length / WC_STRIDE);
      for (let i = 0; i < n; i++) {
        const [wrId, status, vendorErr] = f.wcs.shift()!;
        out.fill(0, i * WC_STRIDE, (i + 1) * WC_STRIDE);
        out[i * WC_STRIDE] = wrId;
        out[i * WC_STRIDE + 1] = status;
        out[i * WC_STRIDE + 4] = vendorErr ?? 0;
      }
      return n;
    },
  }, native.RdmaCq.prototype);
  // busyPoll: no Poller on a channel fd (there is none); drained by setImmediate turns.
  f.cq = new (CompletionQueue as unknown as new (c: unknown, n: unknown, b: boolean) => CompletionQueue)(ctx, cqN, true);
  const qpN = Object.setPrototypeOf({
    ...base,
    qpNum: 7,
    cap: { maxSendWr: cap.maxSendWr ?? 8, maxRecvWr: 1, maxSendSge: 1, maxRecvSge: 1, maxInlineData: cap.maxInlineData ?? 0 },
    prepare: () => 3,
    unprepare: (slot: number) => f.unprepared.push(slot),
    postPrepared(slot: number, count: number, first: number, every: number) {
      f.posts.push([slot, count, first, every]);
      const r = f.postResult ?? count;
      f.postResult = undefined;
      return r;
    },
  }, native.RdmaQp.prototype);
  f.qp = new (QueuePair as unknown as new (...a: unknown[]) => QueuePair)(f.pd, f.cq, f.cq, qpN, 'RC');
  const mrN = Object.setPrototypeOf({
    ...base,
    info: () => ({ lkey: 1, rkey: 2, addr: 0x10000n, length: 4096 }),
    hold: () => f.holds.n++,
    unhold: () => f.holds.n--,
    pollByte: () => f.pollByte ?? 0,
  }, native.RdmaMr.prototype);
  f.mr = new (MemoryRegion as unknown as new (...a: unknown[]) => MemoryRegion)(f.pd, mrN, undefined, ['local-write', 'remote-write'], 4096);
  t.teardown(() => {
    f.qp.close();
    f.mr.close();
    f.cq.close();
    f.pd.close();
  });
  return f;
}

const write = (f: Fake) => ({ op: 'write' as const, local: f.mr, remote: f.mr.remote() });

t.test('qp.prepare() refuses what it cannot prepare, before any native call', async (t) => {
  const f = fake(t, { maxSendWr: 8, maxInlineData: 64 });
  const bad: [unknown, unknown, RegExp | string][] = [
    [null, undefined, 'ERR_INVALID_ARG_TYPE'],
    [{ op: 'recv', local: f.mr }, undefined, /must be 'write', 'read' or 'send'/],
    [{ op: 'fetch-add', local: f.mr, remote: f.mr, add: 1n }, undefined, /must be 'write', 'read' or 'send'/],
    [{ ...write(f), signal: new AbortController().signal }, undefined, /wr\.signal.*must be left out of a prepared request/],
    [{ ...write(f), signaled: false }, undefined, /wr\.signaled.*must be left out/],
    [{ ...write(f), local: [f.mr, f.mr] }, undefined, 'ERR_OUT_OF_RANGE'],
    [{ ...write(f), inline: true }, undefined, /<= 64 for an inline request/],
    [write(f), { signalEvery: 0 }, /options\.signalEvery.*>= 1 && <= 8/],
    [write(f), { signalEvery: 9 }, 'ERR_OUT_OF_RANGE'],
    [write(f), { signalEvery: '2' }, 'ERR_INVALID_ARG_TYPE'],
    [write(f), 'x', 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [wr, options, want] of bad) {
    const m = typeof want === 'string' ? { code: want } : { message: want };
    t.throws(() => f.qp.prepare(wr as never, options as never), m, JSON.stringify(wr, (_k, v) => (typeof v === 'bigint' ? String(v) : v instanceof MemoryRegion ? 'mr' : v)));
  }
  t.throws(() => new (PreparedRequest as unknown as new () => unknown)(), { code: 'ERR_ILLEGAL_CONSTRUCTOR' });
  t.equal(f.holds.n, 0, 'no MR held by a refused prepare');
  const p = f.qp.prepare({ ...write(f), length: 64, inline: true });
  t.equal(p.length, 64);
  t.equal(p.op, 'write');
  t.equal(p.signalEvery, 4, 'default: half the send queue');
  t.equal(f.holds.n, 1, 'the prepared request holds its MR');
  f.qp.close();
  t.equal(p.closed, true, "the QP's close closes it");
  t.same(f.unprepared, [3]);
  t.equal(f.holds.n, 0, 'and lets go of the MR');
  t.throws(() => f.qp.prepare(write(f)), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('post(count): one chain, only the last signaled, one promise settled by its completion', async (t) => {
  const f = fake(t, { maxSendWr: 8 });
  const p = f.qp.prepare(write(f));
  for (const [count, code] of [[0, 'ERR_OUT_OF_RANGE'], [1.5, 'ERR_OUT_OF_RANGE'], [9, 'ERR_OUT_OF_RANGE'], ['2', 'ERR_INVALID_ARG_TYPE']] as const) {
    await t.rejects(p.post(count as never), { code }, `count ${count}`);
  }
  await t.rejects(p.post(1, { signal: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(p.post(1, { signal: ac.signal }), { code: 'ABORT_ERR' });
  t.same(f.posts, [], 'nothing posted by a refused post()');
  const done = p.post(8);
  t.equal(f.posts.length, 1, 'one native call');
  const [slot, count, first, every] = f.posts[0];
  t.same([slot, count, every], [3, 8, 8], 'slot 3, 8 copies, the 8th signaled');
  t.same(f.qp.outstanding, { send: 8, recv: 0 });
  t.equal(f.cq.outstanding, 8);
  await t.rejects(p.post(1), { code: 'ENOMEM', message: /send queue holds 8/ }, 'the queue is full');
  f.wcs.push([first + 7, 0]);
  t.equal(await done, 8);
  t.same(f.qp.outstanding, { send: 0, recv: 0 });
  t.equal(f.cq.outstanding, 0);
  p.close();
  t.throws(() => p.postSync(), { code: 'ERR_P2PDMA_CLOSED' });
  await t.rejects(p.post(1), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test("a chain rejects with the first failure (an unsignaled WR's), once its last request has left the queue", async (t) => {
  const f = fake(t, { maxSendWr: 8 });
  const p = f.qp.prepare(write(f));
  const done = p.post(4);
  const first = f.posts[0][2];
  let settled = false;
  done.then(() => (settled = true), () => (settled = true));
  f.wcs.push([first + 1, 10, 0x42]); // IBV_WC_REM_ACCESS_ERR on the second
  f.qp.sendCq.poll();
  await new Promise((r) => setImmediate(r));
  t.equal(settled, false, 'still pending: the rest are in the queue');
  f.wcs.push([first + 2, 5], [first + 3, 5]); // flushed
  await t.rejects(done, { code: 'ERR_P2PDMA_RDMA_COMPLETION', wrId: first + 1, status: 'IBV_WC_REM_ACCESS_ERR' });
  t.same(f.qp.outstanding, { send: 0, recv: 0 });
});

t.test('post(count) failing part way: the posted ones are settled by the next completion', async (t) => {
  const f = fake(t, { maxSendWr: 8 });
  const p = f.qp.prepare(write(f));
  f.postResult = -(12 + 4096 * 2); // ENOMEM after 2 of 4
  await t.rejects(p.post(4), { code: 'ENOMEM', syscall: 'ibv_post_send' });
  t.same(f.qp.outstanding, { send: 2, recv: 0 }, 'the 2 posted keep their slots');
  const next = p.post(1);
  f.wcs.push([f.posts[1][2], 0]);
  t.equal(await next, 1);
  t.same(f.qp.outstanding, { send: 0, recv: 0 }, 'freed by the next completion');
  t.equal(f.holds.n, 1, 'only the prepared request holds the MR');
});

t.test('postSync(): one call, one in signalEvery signaled, the last slot always; reaps when full', (t) => {
  const f = fake(t, { maxSendWr: 8 });
  const p = f.qp.prepare(write(f), { signalEvery: 3 });
  t.throws(() => p.postSync('x' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => p.postSync({ timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => p.postSync({ timeout: 60001 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => p.postSync({ timeout: '1' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.same(f.posts, []);
  for (let i = 0; i < 8; i++) p.postSync();
  t.same(f.posts.map((x) => x[3]), [0, 0, 1, 0, 0, 1, 0, 1], 'every 3rd signaled, and the one taking the last slot');
  t.same(f.posts.map((x) => x[1]), [1, 1, 1, 1, 1, 1, 1, 1], 'one copy each');
  t.same(f.qp.outstanding, { send: 8, recv: 0 });
  t.throws(() => p.postSync({ timeout: 0 }), { code: 'ENOMEM', message: /no completion freed a slot within 0 ms/ });
  t.same(f.drains.at(-1), [0, false], 'it polled the CQ first, without re-arming it');
  // The completion of the 3rd frees the first three.
  f.wcs.push([f.posts[2][2], 0]);
  p.postSync({ timeout: 5 });
  t.same(f.drains.at(-1), [5000, false], 'spinning up to the timeout');
  t.same(f.qp.outstanding, { send: 6, recv: 0 });
  t.end();
});

t.test("postSync(): a failed request is thrown by the next postSync, once; closing lets go of the MR after the queue's", async (t) => {
  const f = fake(t, { maxSendWr: 8 });
  const p = f.qp.prepare(write(f), { signalEvery: 2 });
  p.postSync();
  p.postSync();
  f.wcs.push([f.posts[0][2], 12, 0], [f.posts[1][2], 5, 0]);
  t.equal(f.cq.poll(), 2);
  t.throws(() => p.postSync(), { code: 'ERR_P2PDMA_RDMA_COMPLETION', wrId: f.posts[0][2] }, "the first failure, the unsignaled WR's");
  p.postSync();
  t.equal(f.holds.n, 1);
  p.close();
  p.close();
  t.equal(f.holds.n, 1, 'the unsignaled one in flight keeps the MR registered');
  f.qp.close();
  await new Promise((r) => setImmediate(r));
  t.equal(f.holds.n, 0, 'let go once the QP is gone');
});

t.test('cq.poll(): checked options, a count, a spin in microseconds', async (t) => {
  const f = fake(t);
  t.throws(() => f.cq.poll('x' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => f.cq.poll({ timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => f.cq.poll({ timeout: NaN }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => f.cq.poll({ timeout: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.equal(f.cq.poll({ timeout: 0.25 }), 0);
  t.same(f.drains.at(-1), [250, false]);
  f.cq.close();
  t.throws(() => f.cq.poll(), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('mr.pollByte(): checked arguments, ETIMEDOUT as Node would say it, closed refused', async (t) => {
  const f = fake(t);
  t.throws(() => f.mr.pollByte('0' as never, 1), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => f.mr.pollByte(4096, 1), { code: 'ERR_OUT_OF_RANGE', message: /< 4096/ });
  t.throws(() => f.mr.pollByte(-1, 1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => f.mr.pollByte(0, 256), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => f.mr.pollByte(0, 1, { timeout: 60001 }), { code: 'ERR_OUT_OF_RANGE' });
  t.doesNotThrow(() => f.mr.pollByte(4095, 255, { timeout: 1 }));
  f.pollByte = -110;
  t.throws(() => f.mr.pollByte(8, 1, { timeout: 2 }), { code: 'ETIMEDOUT', errno: -110, syscall: 'pollByte', message: /byte 8 did not read 1 within 2 ms/ });
  f.pollByte = -14;
  t.throws(() => f.mr.pollByte(8, 1), { code: 'ERR_INVALID_ARG_VALUE', message: /no CPU address.*dma-buf/ });
  f.mr.close();
  t.throws(() => f.mr.pollByte(0, 1), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('a prepared request whose MR was closed is refused; the MR is deregistered once the request lets go', async (t) => {
  const f = fake(t);
  let closes = 0;
  (f.mr.native as unknown as { close: () => number }).close = () => (closes++, f.holds.n > 0 ? 1 : 0);
  const p = f.qp.prepare(write(f));
  f.mr.close();
  t.equal(f.mr.closed, true);
  t.throws(() => p.postSync(), { code: 'ERR_P2PDMA_CLOSED', message: /MemoryRegion/ });
  await t.rejects(p.post(2), { code: 'ERR_P2PDMA_CLOSED' });
  t.same(f.posts, [], 'nothing posted');
  p.close();
  t.equal(f.holds.n, 0, 'the hold is gone: the deferred deregistration can run');
  t.equal(closes, 1);
});

t.test('postSync(): an unsignaled run settled by another request starts a new one (no slot leaks)', async (t) => {
  const f = fake(t, { maxSendWr: 8 });
  const p = f.qp.prepare(write(f), { signalEvery: 4 });
  p.postSync();
  p.postSync();
  const chain = p.post(1);
  f.wcs.push([f.posts[2][2], 0]);
  t.equal(await chain, 1);
  t.same(f.qp.outstanding, { send: 0, recv: 0 }, "the chain's completion settled the two before it");
  p.postSync();
  p.postSync();
  t.same(f.posts.slice(3).map((x) => x[3]), [0, 1], 'the run went on counting: the 4th unsignaled-or-not post is signaled');
  f.wcs.push([f.posts[4][2], 0]);
  f.cq.poll();
  t.same(f.qp.outstanding, { send: 0, recv: 0 }, 'nothing left behind');
  t.equal(f.cq.outstanding, 0);
});
