// RDMA through the addon on rxe0: failed completions, bad input, flushes,
// lifetimes under close, detached buffers and worker teardown.
import t from 'tap';
import * as fs from 'node:fs';
import { Rdma } from '../../lib';
import { guest, inGuest, memfdMapping } from './helpers';
import { ADDR, DEV, pattern, setup } from './rdma-helpers';

t.test('a bad rkey fails the WRITE with a remote access error', guest, async (t) => {
  const s = setup(t);
  const srcMr = s.mr(s.buffer(4096, 1), 'local-write');
  const dstMr = s.mr(s.buffer(4096));
  await t.rejects(s.a.write(srcMr, { addr: dstMr.addr, rkey: (dstMr.rkey ^ 0xff00) >>> 0 }), {
    code: 'ERR_P2PDMA_RDMA_COMPLETION',
    status: 'IBV_WC_REM_ACCESS_ERR',
    op: 'write',
    message: /remote access error/,
  });
});

t.test('missing access flags: the peer refuses, the API refuses what it can see', guest, async (t) => {
  const s = setup(t);
  const srcMr = s.mr(s.buffer(4096, 1), 'local-write');
  const readOnly = s.mr(s.buffer(4096), ['local-write', 'remote-read']);
  const e = await s.a.write(srcMr, readOnly).then(() => undefined, (x: unknown) => x as { status: string; vendorErr: number; wrId: number });
  t.equal(e?.status, 'IBV_WC_REM_ACCESS_ERR', 'WRITE into an MR without remote-write');
  t.equal(typeof e?.vendorErr, 'number');
  t.ok(Number.isInteger(e?.wrId));
  // A fresh pair: the failed one went to the error state.
  const s2 = setup(t);
  const noLocal = s2.mr(s2.buffer(4096), 'remote-read');
  const remote = s2.mr(s2.buffer(4096));
  await t.rejects(s2.a.read(noLocal, remote), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ });
  t.throws(() => s2.pd.registerMemorySync(s2.buffer(4096), { access: 'remote-write' }), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ });
  t.throws(() => s2.pd.registerMemorySync(s2.buffer(4096), { access: 'remote-everything' as never }), { code: 'ERR_INVALID_ARG_VALUE' });
});

t.test('bad input: deregistered MR, closed QP, lengths beyond the MR, a full queue', guest, async (t) => {
  const s = setup(t, { maxSendWr: 4 });
  const src = s.mr(s.buffer(8192), 'local-write');
  const dst = s.mr(s.buffer(4096));
  await t.rejects(s.a.write(src, dst), { code: 'ERR_OUT_OF_RANGE', message: /remote region/ });
  await t.rejects(s.a.write({ mr: src, offset: 4096, length: 8192 }, dst), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(s.a.write(src, dst, 1 << 20), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.pd.registerMemorySync(new SharedArrayBuffer(0)), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.pd.registerMemorySync(s.buffer(16), { offset: 8, length: 16 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.pd.registerMemorySync('nope' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => Rdma.loopbackPair(s.pd, { busyPoll: 'yes' as never }), { code: 'ERR_INVALID_ARG_TYPE', message: /busyPoll/ });
  // One more write than the send queue holds (the provider rounds the 4
  // asked for up): refused before posting anything.
  const cap = s.a.cap.maxSendWr;
  t.ok(cap >= 4, `send queue of ${cap}`);
  const wrs = Array.from({ length: cap + 1 }, () => ({ op: 'write' as const, local: { mr: src, length: 16 }, remote: dst, length: 16 }));
  t.throws(() => s.a.post(wrs), { code: 'ENOMEM', syscall: 'ibv_post_send', message: new RegExp(`send queue holds ${cap} work requests, 0 are outstanding`) });
  t.same(s.a.outstanding, { send: 0, recv: 0 }, 'nothing posted');
  await Promise.all(s.a.post(wrs.slice(0, cap)));
  const gone = s.mr(s.buffer(4096), 'local-write');
  gone.close();
  await t.rejects(s.a.write(gone, dst), { code: 'ERR_P2PDMA_CLOSED', message: /deregistered/ });
  s.a.close();
  await t.rejects(s.a.write(src, dst, 16), { code: 'ERR_P2PDMA_CLOSED' });
  // Detachable memory, even once detached, is refused before any verb.
  const ab = new ArrayBuffer(4096);
  structuredClone(ab, { transfer: [ab] });
  t.throws(() => s.pd.registerMemorySync(ab), { code: 'ERR_INVALID_ARG_VALUE', message: /non-shared ArrayBuffer/ });
});

t.test('a QP connected with maxRdAtomic 0 refuses READ up front and still WRITEs', guest, async (t) => {
  const s = setup(t);
  const cq = s.ctx.createCq(16);
  const a = s.pd.createQp({ sendCq: cq });
  const b = s.pd.createQp({ sendCq: cq });
  t.teardown(() => {
    a.close();
    b.close();
    cq.close();
  });
  t.equal(a.maxRdAtomic, undefined, 'unknown before connect()');
  t.throws(() => a.connect(b.info(), { maxRdAtomic: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.equal(a.state, 'RESET', 'a refused option changes nothing');
  a.connect(b.info(), { maxRdAtomic: 0 });
  b.connect(a.info());
  t.equal(a.maxRdAtomic, 0);
  t.ok(b.maxRdAtomic! > 0, `the peer keeps rxe's ${b.maxRdAtomic}`);
  const src = s.mr(s.pattern(4096, 5), 'local-write');
  const dstBuf = s.buffer(4096);
  const dst = s.mr(dstBuf);
  await t.rejects(a.read(src, dst), { code: 'EOPNOTSUPP', errno: -95, syscall: 'ibv_post_send', message: /asked for maxRdAtomic 0/ });
  t.same(a.outstanding, { send: 0, recv: 0 });
  await a.write(src, dst);
  t.ok(dstBuf.equals(pattern(4096, 5)), 'WRITE on the same QP');
});

t.test('closing a QP with work in flight rejects it as flushed; its MRs are deregistered after destroy_qp', guest, async (t) => {
  const s = setup(t);
  const inbox = s.mr(s.buffer(4096), 'local-write');
  const recvs = [s.b.recv(inbox), s.b.recv(inbox)];
  t.same(s.b.outstanding, { send: 0, recv: 2 });
  // The MR stays registered while they are in flight: close defers.
  inbox.close();
  t.equal(inbox.native.inFlight(), 1, 'held by the receives');
  // Order of the teardowns: the device may write into the receive buffers
  // until the QP is destroyed, so the MR must go after it.
  const order: string[] = [];
  const mrDone = inbox.native.onclose!;
  inbox.native.onclose = (r: number) => {
    order.push('ibv_dereg_mr');
    mrDone(r);
  };
  const qpNative = s.b.native as unknown as { close(): number };
  const qpClose = qpNative.close.bind(qpNative);
  // (The prototype's method is read-only: shadow it on the instance.)
  Object.defineProperty(qpNative, 'close', {
    value: () => {
      const r = qpClose();
      order.push('ibv_destroy_qp');
      return r;
    },
  });
  s.b.close();
  t.same(order, ['ibv_destroy_qp', 'ibv_dereg_mr'], 'QP destroyed first, then the MR its requests used');
  for (const p of recvs) await t.rejects(p, { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: 'IBV_WC_WR_FLUSH_ERR', op: 'recv' });
});

t.test('an MR closed while a WRITE uses it is deregistered after the completion', guest, async (t) => {
  const s = setup(t);
  const src = s.mr(s.pattern(1 << 20, 5), 'local-write');
  const dstBuf = s.buffer(1 << 20);
  const dst = s.mr(dstBuf);
  const p = s.a.write(src, dst);
  src.close();
  t.ok(src.closed);
  await p;
  t.ok(dstBuf.equals(src.target as Buffer));
});

t.test('an ArrayBuffer that transfer() could free under the NIC is refused; its own Mapping and shared memory are not', guest, async (t) => {
  const s = setup(t);
  const ab = new ArrayBuffer(8192);
  for (const target of [ab, Buffer.alloc(8192), new Uint8Array(ab), new DataView(ab)]) {
    t.throws(() => s.pd.registerMemorySync(target, { access: ['local-write', 'remote-write'] }), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: /transfer\(\) or postMessage\(\).*pd\.allocMemory\(length\), a SharedArrayBuffer/,
    });
    await t.rejects(s.pd.registerMemory(target, { access: 'local-write' }), { code: 'ERR_INVALID_ARG_VALUE' });
  }
  // A Mapping's own ArrayBuffer is its pages: registered as the Mapping.
  const mem = s.mr(s.buffer(8192), 'local-write');
  const map = memfdMapping(8192);
  const viaBuffer = s.mr(new Uint8Array(map.buffer, 4096), ['local-write', 'remote-write']);
  t.equal(viaBuffer.mapping, map);
  t.equal(viaBuffer.length, 4096);
  t.throws(() => map.unmap(), { code: 'ERR_P2PDMA_BUSY' }, 'held through its buffer');
  (mem.target as Buffer).fill(0x77);
  await s.a.write(mem, viaBuffer, 4096);
  t.ok(map.read(Buffer.alloc(4096), 4096).equals(Buffer.alloc(4096, 0x77)), 'the WRITE landed in the mapping');
  viaBuffer.close();
  map.unmap();
});

t.test('a registered Mapping cannot be unmapped until its MR is closed (ERR_P2PDMA_BUSY), then can', guest, async (t) => {
  const s = setup(t);
  const map = memfdMapping(65536);
  // The hold is taken by the call itself, before the pool thread pins.
  const pending = s.pd.registerMemory(map, { access: ['local-write', 'remote-write'] });
  t.throws(() => map.unmap(), { code: 'ERR_P2PDMA_BUSY', message: /1 memory region/ }, 'refused while registering');
  const mr = await pending;
  t.equal(mr.mapping, map);
  t.throws(() => map.unmap(), { code: 'ERR_P2PDMA_BUSY' }, 'refused while registered');
  t.equal(map.closed, false);
  // With a WRITE from it in flight, close() defers the deregistration: still held.
  const dst = s.mr(s.buffer(65536));
  const w = s.a.write(mr, dst);
  mr.close();
  t.throws(() => map.unmap(), { code: 'ERR_P2PDMA_BUSY' }, 'refused until the deregistration completes');
  await w;
  await mr[Symbol.asyncDispose]();
  map.unmap();
  t.equal(map.closed, true, 'unmapped once the MR is gone');
  // A failed registration lets go at once.
  const map2 = memfdMapping(4096);
  const ctx2 = Rdma.open(DEV);
  const pd2 = ctx2.allocPd();
  pd2.close();
  t.throws(() => pd2.registerMemorySync(map2, { access: 'local-write' }), { code: 'ERR_P2PDMA_CLOSED' });
  map2.unmap();
  ctx2.close();
});

t.test('allocMemory: memory the MR owns, unmapped with it; RDMA WRITE and READ round trip', guest, async (t) => {
  const s = setup(t);
  const a = await s.pd.allocMemory(65536, { access: ['local-write', 'remote-write', 'remote-read'] });
  const b = s.pd.allocMemorySync(65536, { access: ['local-write', 'remote-write', 'remote-read'] });
  t.equal(a.length, 65536);
  t.equal(a.target, undefined);
  const am = a.mapping!;
  const bm = b.mapping!;
  t.equal(am.address % 4096n, 0n, 'page-aligned');
  t.equal(a.addr, am.address);
  t.ok(Buffer.from(am.buffer).equals(Buffer.alloc(65536)), 'zeroed');
  t.throws(() => am.unmap(), { code: 'ERR_P2PDMA_BUSY' }, 'the MR holds its memory');
  const data = pattern(65536, 21);
  am.write(data);
  await s.a.write(a, b);
  t.ok(bm.read().equals(data), 'WRITE landed in the other MR');
  bm.write(pattern(4096, 22), 8192);
  await s.a.post([{ op: 'read', local: { mr: a, offset: 4096, length: 4096 }, remote: b, remoteOffset: 8192 }])[0];
  t.ok(am.read(Buffer.alloc(4096), 4096).equals(pattern(4096, 22)), 'READ brought it back');
  a.close();
  await b[Symbol.asyncDispose]();
  t.equal(am.closed, true, 'unmapped when its MR closed');
  t.equal(bm.closed, true);
});

t.test('a worker that exits with open RDMA objects and work in flight tears them down', guest, async (t) => {
  const { Worker } = await import('node:worker_threads');
  const path = await import('node:path');
  const lib = path.join(__dirname, '..', '..', 'lib', 'index');
  const code = `
    const { Rdma } = require(${JSON.stringify(lib)});
    const { parentPort } = require('node:worker_threads');
    const ctx = Rdma.open('rxe0');
    const pd = ctx.allocPd();
    const [a, b] = Rdma.loopbackPair(pd);
    const mr = pd.allocMemorySync(1 << 16, ['local-write', 'remote-write']);
    for (let i = 0; i < 8; i++) b.recv(mr).catch(() => {});
    a.write(mr, mr).catch(() => {});
    parentPort.postMessage('ready');
    // The pending receives keep the worker alive: end it as told.
    if (require('node:worker_threads').workerData === 'exit') setTimeout(() => process.exit(3), 50);
  `;
  // (Both ways of ending cost ~15 s each under TCG: terminate, the harsher, only.)
  for (const end of ['terminate'] as const) {
    const w = new Worker(code, { eval: true, workerData: end });
    const exited = new Promise<number>((r) => w.once('exit', r));
    await new Promise((r) => w.once('message', r));
    if (end === 'terminate') void w.terminate();
    const exit = await exited;
    t.equal(exit, 1, `worker ${end}: exit ${exit}, no crash`);
  }
  // The device still works for this thread.
  const s = setup(t);
  const src = s.mr(s.buffer(64, 7), 'local-write');
  const dst = s.mr(s.buffer(64));
  await s.a.write(src, dst);
  t.ok(Buffer.from(dst.target as Buffer).equals(Buffer.alloc(64, 7)));
});

if (!inGuest) t.pass('guest-only file');
// lib/core/abort.ts's rule for posted work requests: the promise rejects at once,
// the request stays posted and keeps its MR until its completion, which is
// discarded; an already aborted signal posts nothing.
t.test('abort: an already aborted signal posts nothing; a later one rejects at once and the completion is discarded', guest, async (t) => {
  const s = setup(t);
  const src = s.mr(s.buffer(4096, 3), 'local-write');
  const dst = s.mr(s.buffer(4096));
  const dead = new AbortController();
  dead.abort(new Error('before'));
  await t.rejects(s.a.write(src, dst, 4096, { signal: dead.signal }), { name: 'AbortError', code: 'ABORT_ERR' });
  t.same(s.a.outstanding, { send: 0, recv: 0 }, 'nothing was posted');
  await t.rejects(s.a.write(src, dst, 4096, { signal: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.signal/ });

  // A receive nobody sends to stays posted: aborting it rejects at once.
  const inbox = s.mr(s.buffer(4096));
  const ac = new AbortController();
  const r = s.b.recv(inbox, 4096, { signal: ac.signal });
  t.same(s.b.outstanding, { send: 0, recv: 1 });
  ac.abort();
  await t.rejects(r, { name: 'AbortError' });
  t.same(s.b.outstanding, { send: 0, recv: 1 }, 'the receive is still posted: nothing recalls it');
  // Its completion still arrives and is discarded; the next one is served.
  const next = s.b.recv(inbox, 4096);
  await s.a.send({ mr: src, length: 64 });
  await s.a.send({ mr: src, length: 32 });
  const got = await next;
  t.equal(got.byteLen, 32, 'the second SEND landed in the second receive: the aborted one took the first');
  t.same(s.b.outstanding, { send: 0, recv: 0 });

  // Aborting a registration on the pool: the promise rejects, the MR made meanwhile is closed.
  const map = memfdMapping(4096);
  const reg = new AbortController();
  const p = s.pd.registerMemory(map, { access: ['local-write'], signal: reg.signal });
  reg.abort();
  await t.rejects(p, { name: 'AbortError' });
  // The hold goes with the discarded MR's deregistration.
  for (let i = 0; i < 50; i++) {
    try {
      map.unmap();
      break;
    } catch (e) {
      t.equal((e as { code?: string }).code, 'ERR_P2PDMA_BUSY');
      await new Promise((res) => setTimeout(res, 20));
    }
  }
  t.ok(map.closed, 'the mapping is free once the discarded MR is gone');
});

// The guest sweep saw /dev/infiniband/uverbs0 and its async-event fd stay
// open after a failed connect(): librdmacm opens each RDMA device once per
// process and keeps it (rdma-core's cma.c device cache), so the first
// rdma_cm call may add them; any later call must add nothing.
t.test('failed connects and closed listeners leave no fd beyond librdmacm\'s per-device cache', guest, async (t) => {
  const fds = () => fs.readdirSync('/proc/self/fd').map((fd) => { try { return `${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`; } catch { return ''; } }).filter((l) => /infiniband|rdma_cm|uverbs/.test(l)).sort();
  // A closed rdma_cm channel's fd goes with its watcher's uv_close, a loop
  // turn or two later: wait until no channel is left.
  const settled = async () => {
    for (let i = 0; i < 100 && fds().some((l) => l.endsWith('/dev/infiniband/rdma_cm')); i++) await new Promise((r) => setTimeout(r, 20));
    return fds();
  };
  const attempt = () => Rdma.connect({ address: '127.0.0.1', port: 18515, timeoutMs: 1 }).then(() => 'connected', (e: { code?: string }) => e.code ?? 'uncoded');
  t.not(await attempt(), 'uncoded', 'the first failed connect rejects with a coded error');
  Rdma.listen({ address: ADDR, port: 0 }).close();
  const warm = await settled();
  t.notOk(warm.some((l) => l.endsWith('/dev/infiniband/rdma_cm')), 'no rdma_cm channel is left open');
  for (let i = 0; i < 3; i++) {
    t.not(await attempt(), 'uncoded');
    Rdma.listen({ address: ADDR, port: 0 }).close();
  }
  t.same(await settled(), warm, 'three more failed connects and listeners added no fd (what stays is the device librdmacm keeps open)');
});

// qp.postAll(): one promise for a chain. Everything is checked before
// anything is posted; once posted, it settles only when every request has
// left the queue, with the completions in order or the first failure.
t.test('postAll: bad entries and a full queue post nothing; a failure mid-chain rejects once all have left; close and abort', guest, async (t) => {
  const s = setup(t, { maxSendWr: 4, maxRecvWr: 4 });
  const src = s.mr(s.pattern(4096, 5), 'local-write');
  const dst = s.mr(s.buffer(4096));
  const dstBytes = dst.target as Buffer;
  const w = (offset: number) => ({ op: 'write' as const, local: { mr: src, offset, length: 1024 }, remote: dst, remoteOffset: offset, length: 1024 });
  const nothingPosted = (what: string) => {
    t.same(s.a.outstanding, { send: 0, recv: 0 }, `${what}: nothing posted`);
    t.ok(dstBytes.equals(Buffer.alloc(4096)), `${what}: no byte written`);
  };

  // Bad input: a rejected promise (never a throw), and nothing of the chain posted.
  await t.rejects(s.a.postAll('wrs' as never), { code: 'ERR_INVALID_ARG_TYPE', message: /wrs/ });
  await t.rejects(s.a.postAll([w(0)], { signal: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.signal/ });
  await t.rejects(s.a.postAll([w(0), { op: 'nope' } as never, w(2048)]), { code: 'ERR_INVALID_ARG_VALUE', message: /wr\.op/ });
  nothingPosted('a bad op in the middle');
  await t.rejects(s.a.postAll([w(0), null as never]), { code: 'ERR_INVALID_ARG_TYPE', message: /wr/ });
  await t.rejects(s.a.postAll([w(0), { ...w(1024), length: 8192 }]), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(s.a.postAll([w(0), { ...w(1024), signal: new AbortController().signal }]), { code: 'ERR_INVALID_ARG_VALUE', message: /options\.signal/ });
  const gone = s.mr(s.buffer(1024), 'local-write');
  gone.close();
  await t.rejects(s.a.postAll([w(0), { op: 'write', local: gone, remote: dst }]), { code: 'ERR_P2PDMA_CLOSED', message: /deregistered/ });
  nothingPosted('bad entries');
  t.same(await s.a.postAll([]), [], 'an empty chain resolves at once');

  // One more than the send queue holds: refused whole. As many as it holds: in posting order.
  const cap = s.a.cap.maxSendWr;
  const full = Array.from({ length: cap }, (_, i) => ({ ...w(0), length: 16, local: { mr: src, offset: 16 * i, length: 16 }, remoteOffset: 16 * i }));
  await t.rejects(s.a.postAll([...full, w(0)]), { code: 'ENOMEM', syscall: 'ibv_post_send', message: new RegExp(`send queue holds ${cap} work requests, 0 are outstanding and ${cap + 1} more`) });
  nothingPosted('one too many');
  const done = await s.a.postAll(full);
  t.equal(done.length, cap, `${cap} completions`);
  t.ok(done.every((c, i) => c.op === 'write' && c.byteLen === 16 && (i === 0 || c.wrId > done[i - 1].wrId)), 'in posting order');
  t.ok(dstBytes.subarray(0, 16 * cap).equals((src.target as Buffer).subarray(0, 16 * cap)));

  // A request that fails mid-chain (a bad rkey): all three were posted; the
  // promise waits for every one to leave the queue, then rejects with the
  // failure. The one before it landed.
  dstBytes.fill(0);
  const bad = { ...w(1024), remote: { addr: dst.addr, rkey: (dst.rkey ^ 0xff00) >>> 0 } };
  const e = await s.a.postAll([w(0), bad, w(2048)]).then(
    () => undefined,
    (x: { code: string; status: string; op: string; wrId: number }) => ({ code: x.code, status: x.status, op: x.op, wrId: x.wrId, outstanding: s.a.outstanding }),
  );
  t.match(e, { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: 'IBV_WC_REM_ACCESS_ERR', op: 'write', outstanding: { send: 0, recv: 0 } }, 'the first failure, once none is outstanding');
  t.ok(Number.isInteger(e?.wrId) && e!.wrId > done[cap - 1].wrId, 'the failed request is named by its wrId');
  t.ok(dstBytes.subarray(0, 1024).equals((src.target as Buffer).subarray(0, 1024)), 'the request before the failure completed');
  t.ok(dstBytes.subarray(1024, 2048).equals(Buffer.alloc(1024)), 'the failed one wrote nothing');

  // A fresh pair (the failure put that one in the error state).
  const s2 = setup(t, { maxSendWr: 4, maxRecvWr: 4 });
  const inbox = s2.mr(s2.buffer(4096));
  const out = s2.mr(s2.pattern(4096, 9), 'local-write');
  const recvs = (n: number) => Array.from({ length: n }, (_, i) => ({ op: 'recv' as const, local: { mr: inbox, offset: 1024 * i, length: 1024 } }));

  // Abort: an aborted signal posts nothing; aborting later rejects at once,
  // and the requests stay posted until their completions, which are discarded.
  const dead = new AbortController();
  dead.abort();
  await t.rejects(s2.b.postAll(recvs(2), { signal: dead.signal }), { name: 'AbortError', code: 'ABORT_ERR' });
  t.same(s2.b.outstanding, { send: 0, recv: 0 }, 'aborted before: nothing posted');
  const ac = new AbortController();
  const waiting = s2.b.postAll(recvs(2), { signal: ac.signal });
  t.same(s2.b.outstanding, { send: 0, recv: 2 });
  ac.abort(new Error('enough'));
  await t.rejects(waiting, { name: 'AbortError', cause: { message: 'enough' } });
  t.same(s2.b.outstanding, { send: 0, recv: 2 }, 'still posted: nothing recalls a posted receive');
  // Three SENDs: the two aborted receives take the first two, a new one the third.
  const next = s2.b.postAll(recvs(1));
  const sent = await s2.a.postAll([64, 32, 16].map((length) => ({ op: 'send' as const, local: { mr: out, length } })));
  t.same(sent.map((c) => c.byteLen), [64, 32, 16]);
  t.same((await next).map((c) => c.byteLen), [16], 'the aborted receives were served first, their completions discarded');
  t.same(s2.b.outstanding, { send: 0, recv: 0 });

  // Closing the QP with a chain in flight rejects it (flushed); a closed QP refuses.
  const flushed = s2.b.postAll(recvs(3));
  s2.b.close();
  await t.rejects(flushed, { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: 'IBV_WC_WR_FLUSH_ERR' });
  await t.rejects(s2.b.postAll(recvs(1)), { code: 'ERR_P2PDMA_CLOSED' });
});
