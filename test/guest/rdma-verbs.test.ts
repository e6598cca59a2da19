// Issue 27's verbs on rxe0: qp.query(), unsignaled/fenced/solicited
// requests, shared receive queues, async events (the SRQ limit), UD QPs
// with address handles, memory windows of types 1 and 2 (bind, LOCAL_INV,
// SEND_WITH_INV), and what rxe cannot do (on-demand paging before
// Linux 6.14, XRC) as clear errors.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Rdma, type RdmaAsyncEvent, type RdmaCompletion } from '../../lib';
import { guest } from './helpers';
import { ADDR, DEV, hostBuffer, hostPattern, onPvrdma, pattern, setup } from './rdma-helpers';

const rxeOnly = guest.skip ? guest : { skip: onPvrdma ? 'pvrdma lane: these verbs are checked on rxe' : false };

t.test('qp.query(): state, MTU, peer QP, PSNs, retry counts, access, as connect() set them', rxeOnly, async (t) => {
  const { a, b, pd } = setup(t, { maxInlineData: 64 });
  const q = a.query();
  const ai = a.info();
  const bi = b.info();
  t.equal(q.state, 'RTS');
  t.equal(q.type, 'RC');
  t.equal(q.pathMtu, Math.min(ai.mtu, bi.mtu));
  t.equal(q.destQpNum, b.qpNum);
  t.equal(q.sqPsn, ai.psn, 'the send PSN connect() gave it');
  t.equal(q.rqPsn, bi.psn, "the receive PSN is the peer's send PSN");
  t.equal(q.retryCnt, 7);
  t.equal(q.rnrRetry, 7);
  t.equal(q.timeout, 14);
  t.equal(q.minRnrTimer, 12);
  t.same([...q.access].sort(), ['local-write', 'remote-atomic', 'remote-read', 'remote-write']);
  t.ok(q.maxInlineData >= 64, `maxInlineData ${q.maxInlineData}`);
  t.equal(q.sqSigAll, false, 'each request says whether it is signaled');
  t.equal(q.destGid, bi.gid);
  t.equal(q.portNum, 1);
  // A new QP is in RESET; a closed one refuses.
  const cq = pd.context.createCq(4);
  const fresh = pd.createQp({ sendCq: cq });
  t.equal(fresh.query().state, 'RESET');
  fresh.close();
  cq.close();
  t.throws(() => fresh.query(), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('{ signaled: false }: settles when a later signaled request completes; never left hanging', rxeOnly, async (t) => {
  const { a, b, mr, buffer } = setup(t, { maxSendWr: 4 });
  const dst = mr(buffer(4096));
  const src = mr(buffer(4096, 0x5a));
  const order: string[] = [];
  const recv = b.recv(dst);
  const quiet = a.send(src, 64, { signaled: false }).then((c) => (order.push('unsignaled'), c));
  const got = await recv;
  t.equal(got.byteLen, 64, 'the peer received the unsignaled SEND');
  await sleep(50);
  t.same(order, [], 'no completion of its own: still pending after delivery');
  const loud = a.write(src, dst, 128).then((c) => (order.push('signaled'), c));
  const [q, l] = await Promise.all([quiet, loud]);
  t.same(order, ['unsignaled', 'signaled'], 'settled in send-queue order by the signaled completion');
  t.equal(q.op, 'send');
  t.equal(q.byteLen, 64);
  t.equal(l.op, 'write');
  t.same(a.outstanding, { send: 0, recv: 0 });

  // The send queue (4, or what rxe granted) can never fill with unsignaled requests.
  const n = a.cap.maxSendWr;
  const wrs = Array.from({ length: n }, () => ({ op: 'write' as const, local: src, remote: dst, length: 8, signaled: false }));
  t.throws(() => a.post(wrs), { code: 'ENOMEM', syscall: 'ibv_post_send', message: /unsignaled request would take the send queue's last slot/ });
  t.same(a.outstanding, { send: 0, recv: 0 }, 'nothing of the refused batch was posted');
  const ok = await Promise.all(a.post([...wrs.slice(1), { op: 'write', local: src, remote: dst, length: 8 }]));
  t.equal(ok.length, n, `${n - 1} unsignaled and a signaled one fill the queue and settle`);
  t.ok(ok.every((c) => c.op === 'write'));
  t.same(await a.postAll([{ op: 'write', local: src, remote: dst, length: 8, signaled: false }, { op: 'write', local: src, remote: dst, length: 8 }]).then((c) => c.length), 2, 'postAll too');

  // Closing the QP rejects an unsignaled request still waiting.
  const left = a.write(src, dst, 8, { signaled: false });
  await sleep(20);
  a.close();
  await t.rejects(left, { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: 'IBV_WC_WR_FLUSH_ERR' });
});

t.test('an unsignaled request that fails completes on its own (errors always do)', rxeOnly, async (t) => {
  const { a, mr, buffer } = setup(t);
  const src = mr(buffer(64));
  const bad = a.write(src, { addr: 0x1000n, rkey: 0x1234, length: 64 }, 64, { signaled: false });
  await t.rejects(bad, { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: /IBV_WC_(REM_ACCESS_ERR|REM_INV_REQ_ERR)/ });
  t.equal(a.outstanding.send, 0);
});

t.test('{ fence: true } and { solicited: true }: accepted by rxe, data where it should be', rxeOnly, async (t) => {
  const { a, b, mr, buffer, pattern: pat } = setup(t);
  const remote = mr(pat(4096, 3));
  const local = mr(buffer(4096));
  const dstBuf = buffer(4096);
  const dst = mr(dstBuf);
  // READ, then a SEND of what it read, fenced: the SEND waits for the READ.
  const recv = b.recv(dst);
  const read = a.read(local, remote, 4096);
  const send = a.send(local, 4096, { fence: true, solicited: true });
  const [, s, r] = await Promise.all([read, send, recv]);
  t.equal(s.op, 'send');
  t.equal(r.byteLen, 4096);
  t.ok(dstBuf.equals(pattern(4096, 3)), 'the fenced SEND carried what the READ brought');
  const w = await a.write(local, dst, 16, { solicited: true, fence: true });
  t.equal(w.op, 'write');
});

t.test("createCq({ solicitedOnly }): a receive CQ wakes for the peer's solicited SEND, and settles what came before it", rxeOnly, async (t) => {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(16);
  const rcq = ctx.createCq(16, { solicitedOnly: true });
  const a = pd.createQp({ sendCq: cq });
  const b = pd.createQp({ sendCq: cq, recvCq: rcq });
  const src = pd.registerMemorySync(hostBuffer(256, 3), { access: 'local-write' });
  const dst = pd.registerMemorySync(hostBuffer(512), { access: 'local-write' });
  t.teardown(() => {
    for (const o of [a, b, src, dst, rcq, cq, pd, ctx]) o.close();
  });
  a.connect(b.info());
  b.connect(a.info());
  t.equal(rcq.solicitedOnly, true);
  let first = false;
  const r1 = b.recv({ mr: dst, offset: 0, length: 256 }).then((c) => ((first = true), c));
  const r2 = b.recv({ mr: dst, offset: 256, length: 256 });
  await a.send(src, 10);
  await sleep(200);
  t.equal(first, false, 'an unsolicited message wakes nothing');
  await a.send(src, 20, { solicited: true });
  const [c1, c2] = await Promise.all([r1, r2]);
  t.equal(c1.byteLen, 10, 'the earlier one settles with the solicited one');
  t.equal(c2.byteLen, 20);
  t.throws(() => ctx.createCq(4, { solicitedOnly: 1 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => ctx.createCq(4, { solicitedOnly: true, busyPoll: true }), { code: 'ERR_INVALID_ARG_VALUE' });
});

t.test('request flags: bad input', rxeOnly, async (t) => {
  const { a, mr, buffer } = setup(t);
  const m = mr(buffer(64));
  await t.rejects(a.send(m, 8, { signaled: 'no' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE', message: /wr\.signaled/ });
  await t.rejects(a.recv(m, 8, { fence: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /wr\.fence.*receives/ });
  await t.rejects(a.read(m, m, 8, { solicited: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /wr\.solicited.*'send' and 'write'/ });
  await t.rejects(a.send(m, 8, { remoteQpn: 5 }), { code: 'ERR_INVALID_ARG_VALUE', message: /UD queue pair/ });
  t.same(a.outstanding, { send: 0, recv: 0 });
});

t.test('SRQ: two QPs share one shared receive queue; SENDs from both peers land in its receives', rxeOnly, async (t) => {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(64);
  const srq = pd.createSrq({ cq, maxWr: 16 });
  const s1 = pd.createQp({ sendCq: cq, srq });
  const s2 = pd.createQp({ sendCq: cq, srq });
  const c1 = pd.createQp({ sendCq: cq });
  const c2 = pd.createQp({ sendCq: cq });
  const mrs = [pd.registerMemorySync(hostBuffer(4096), { access: 'local-write' }), pd.registerMemorySync(hostBuffer(4096, 1), { access: 'local-write' })];
  t.teardown(() => {
    for (const o of [c1, c2, s1, s2, ...mrs, srq, cq, pd, ctx]) o.close();
  });
  c1.connect(s1.info());
  s1.connect(c1.info());
  c2.connect(s2.info());
  s2.connect(c2.info());
  t.ok(srq.maxWr >= 16);
  t.equal(s1.srq, srq);
  t.equal(s1.recvCq, cq, "the SRQ's CQ");
  const [dst, src] = mrs;
  const recvs = [0, 1, 2, 3].map((i) => srq.recv({ mr: dst, offset: i * 1024, length: 1024 }));
  t.equal(srq.outstanding, 4);
  await Promise.all([c1.send({ mr: src, offset: 0, length: 100 }), c2.send({ mr: src, offset: 0, length: 200 }, undefined, { immediate: 42 })]);
  const got = (await Promise.race([Promise.all(recvs.slice(0, 2)), sleep(5000).then(() => 'timeout')])) as RdmaCompletion[];
  t.not(got, 'timeout');
  const byQp = new Map(got.map((c) => [c.qpNum, c]));
  t.equal(byQp.get(s1.qpNum)?.byteLen, 100, "c1's SEND consumed a receive through s1");
  t.equal(byQp.get(s2.qpNum)?.byteLen, 200, "c2's SEND consumed one through s2");
  t.equal(byQp.get(s2.qpNum)?.immediate, 42);
  t.equal(srq.outstanding, 2);
  // Bad input: receives of an SRQ's QP go to the SRQ; its QPs use its CQ.
  await t.rejects(s1.recv(dst), { code: 'ERR_INVALID_ARG_VALUE', message: /srq\.recv\(\)/ });
  const other = ctx.createCq(4);
  t.throws(() => pd.createQp({ sendCq: cq, recvCq: other, srq }), { code: 'ERR_INVALID_ARG_VALUE', message: /shared receive queue's cq/ });
  other.close();
  t.throws(() => pd.createSrq({ cq: {} as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => pd.createSrq({ cq, maxWr: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(srq.recv(pd.registerMemorySync(hostBuffer(64), { access: 'remote-read' })), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ });
  // Closing the SRQ rejects its receives as flushed, at once; the QPs keep it until they go.
  srq.close();
  await t.rejects(recvs[2], { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: 'IBV_WC_WR_FLUSH_ERR' });
  await t.rejects(recvs[3], { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: 'IBV_WC_WR_FLUSH_ERR' });
  await t.rejects(srq.recv(dst), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('async events: the SRQ limit event arrives through ctx.events(), acked, naming the SRQ', rxeOnly, async (t) => {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(64);
  const srq = pd.createSrq({ cq, maxWr: 16 });
  const s = pd.createQp({ sendCq: cq, srq });
  const c = pd.createQp({ sendCq: cq });
  const dst = pd.registerMemorySync(hostBuffer(8 * 256), { access: 'local-write' });
  const src = pd.registerMemorySync(hostBuffer(256, 9), { access: 'local-write' });
  t.teardown(() => {
    for (const o of [c, s, dst, src, srq, cq, pd, ctx]) o.close();
  });
  c.connect(s.info());
  s.connect(c.info());
  const recvs = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => srq.recv({ mr: dst, offset: i * 256, length: 256 }));
  // The three left are flushed when the SRQ closes at the end.
  for (const r of recvs.slice(5)) r.catch(() => undefined);
  srq.setLimit(4);
  // Nothing yet: an aborted wait takes no event.
  await t.rejects(ctx.nextEvent({ signal: AbortSignal.timeout(100) }), { name: /AbortError|TimeoutError/ });
  const next = ctx.nextEvent({ signal: AbortSignal.timeout(10_000) });
  for (let i = 0; i < 5; i++) await c.send(src, 16);
  await Promise.all(recvs.slice(0, 5));
  const e: RdmaAsyncEvent = await next;
  t.equal(e.type, 'IBV_EVENT_SRQ_LIMIT_REACHED');
  t.equal(e.srq, srq, 'names the SRQ object');
  t.match(e.description, /limit/i);
  t.throws(() => srq.setLimit(-1), { code: 'ERR_OUT_OF_RANGE' });
  // events(): an async iterator that ends when the context closes.
  const iter = ctx.events();
  const done = iter.next();
  const ctx2 = Rdma.open(DEV);
  const it2 = ctx2.events()[Symbol.asyncIterator]();
  const end = it2.next();
  ctx2.close();
  t.same(await end, { value: undefined, done: true }, 'closing the context ends its events()');
  await t.rejects(ctx2.nextEvent(), { code: 'ERR_P2PDMA_CLOSED' });
  await t.rejects(ctx.nextEvent({ signal: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  void done;
});

t.test('UD: SEND through an address handle; the payload after the 40-byte GRH, the source QP in the completion', rxeOnly, async (t) => {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(16);
  const u1 = pd.createQp({ type: 'UD', sendCq: cq });
  const u2 = pd.createQp({ type: 'UD', sendCq: cq });
  const srcBuf = hostPattern(512, 11);
  const dstBuf = hostBuffer(40 + 512);
  const src = pd.registerMemorySync(srcBuf, { access: 'local-write' });
  const dst = pd.registerMemorySync(dstBuf, { access: 'local-write' });
  t.teardown(() => {
    for (const o of [u1, u2, src, dst, cq, pd, ctx]) o.close();
  });
  t.equal(u1.type, 'UD');
  u1.activate();
  u2.activate();
  const q = u2.query();
  t.equal(q.state, 'RTS');
  t.equal(q.type, 'UD');
  t.equal(q.qkey, 0x11111111);
  const ah = pd.createAh({ gid: u2.info().gid });
  t.teardown(() => ah.close());
  const recv = u2.recv(dst);
  const sent = await u1.send(src, 300, { ah, remoteQpn: u2.qpNum, immediate: 7 });
  t.equal(sent.op, 'send');
  const r = await Promise.race([recv, sleep(5000).then(() => undefined)]);
  if (!t.ok(r, 'the UD receive completed')) return;
  t.equal(r!.byteLen, 40 + 300, 'GRH + payload');
  t.equal(r!.srcQp, u1.qpNum, 'the source QP number');
  t.equal(r!.qpNum, u2.qpNum);
  t.equal(r!.grh, true);
  t.equal(r!.immediate, 7);
  t.ok(dstBuf.subarray(40, 340).equals(srcBuf.subarray(0, 300)), 'the payload follows the GRH');
  // Bad input: a UD send needs a destination; RC-only operations and calls are refused.
  await t.rejects(u1.send(src, 8), { code: 'ERR_INVALID_ARG_TYPE', message: /AddressHandle/ });
  await t.rejects(u1.send(src, 8, { ah, remoteQpn: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(u1.write(src, dst, 8), { code: 'ERR_INVALID_ARG_VALUE', message: /UD queue pair/ });
  t.throws(() => u1.connect(u2.info()), { code: 'ERR_INVALID_ARG_VALUE', message: /activate\(\)/ });
  t.throws(() => pd.createAh({ gid: 'nope' }), { code: /ERR_INVALID_ARG/ });
  const { a } = setup(t);
  t.throws(() => a.activate(), { code: 'ERR_INVALID_ARG_VALUE', message: /connect\(\)/ });
  // The AH stays usable while a send uses it; closing it defers ibv_destroy_ah.
  ah.close();
  t.ok(ah.closed);
  await t.rejects(u1.send(src, 8, { ah, remoteQpn: u2.qpNum }), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('UC: connect(), then SEND and RDMA WRITE (no READ, no atomics)', rxeOnly, async (t) => {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(16);
  const a = pd.createQp({ type: 'UC', sendCq: cq });
  const b = pd.createQp({ type: 'UC', sendCq: cq });
  const srcBuf = hostPattern(4096, 21);
  const dstBuf = hostBuffer(4096);
  const src = pd.registerMemorySync(srcBuf, { access: 'local-write' });
  const dst = pd.registerMemorySync(dstBuf, { access: ['local-write', 'remote-write'] });
  t.teardown(() => {
    for (const o of [a, b, src, dst, cq, pd, ctx]) o.close();
  });
  a.connect(b.info());
  b.connect(a.info());
  const q = a.query();
  t.equal(q.type, 'UC');
  t.equal(q.state, 'RTS');
  t.equal(q.destQpNum, b.qpNum);
  await a.write(src, dst, 2048);
  t.ok(dstBuf.subarray(0, 2048).equals(srcBuf.subarray(0, 2048)), 'the RDMA WRITE landed');
  const recv = b.recv({ mr: dst, offset: 2048, length: 2048 });
  await a.send({ mr: src, offset: 0, length: 100 }, undefined, { immediate: 5 });
  const r = await recv;
  t.equal(r.byteLen, 100);
  t.equal(r.immediate, 5);
  await t.rejects(a.read(dst, src, 8), { code: 'ERR_INVALID_ARG_VALUE', message: /UC queue pair/ });
  await t.rejects(a.fetchAndAdd(dst, src, 1n), { code: 'ERR_INVALID_ARG_VALUE', message: /UC queue pair/ });
  t.throws(() => a.activate(), { code: 'ERR_INVALID_ARG_VALUE', message: /connect\(\).*UC QueuePair/ });
});

t.test('memory windows (type 1): bind part of an MR, the peer writes through the window; a rebind retires the old rkey', rxeOnly, async (t) => {
  const { a, b, pd, buffer, pattern: pat } = setup(t);
  const targetBuf = buffer(4096);
  const target = pd.registerMemorySync(targetBuf, { access: ['local-write', 'remote-write', 'remote-read', 'mw-bind'] });
  const srcBuf = pat(4096, 31);
  const src = pd.registerMemorySync(srcBuf, { access: 'local-write' });
  const mw = pd.allocMw();
  t.teardown(() => {
    mw.close();
    target.close();
    src.close();
  });
  t.equal(mw.rkey, 0, 'no rkey before a bind');
  const c = await a.bindMw(mw, { mr: target, offset: 1024, length: 1024, access: ['remote-write', 'remote-read'] });
  t.equal(c.op, 'bind-mw');
  t.not(mw.rkey, 0);
  t.not(mw.rkey, target.rkey, 'its own rkey');
  t.same(mw.remote(), { addr: target.addr + 1024n, rkey: mw.rkey, length: 1024 });
  // The peer writes through the window: it lands 1024 bytes into the MR.
  await b.write(src, mw.remote(), 512);
  t.ok(targetBuf.subarray(1024, 1536).equals(srcBuf.subarray(0, 512)), 'the WRITE through the window landed in its range');
  t.ok(targetBuf.subarray(0, 1024).every((x) => x === 0), 'nothing before it');
  // Bad input, before anything is posted.
  await t.rejects(a.bindMw(mw, { mr: src }), { code: 'ERR_INVALID_ARG_VALUE', message: /mw-bind/ });
  await t.rejects(a.bindMw(mw, { mr: target, access: 'local-write' as never }), { code: 'ERR_INVALID_ARG_VALUE', message: /remote-write/ });
  await t.rejects(a.bindMw({} as never, { mr: target }), { code: 'ERR_INVALID_ARG_TYPE' });
  // Moving the window gives it a new rkey; the old one stops working.
  const old = mw.rkey;
  await a.bindMw(mw, { mr: target, offset: 0, length: 1024, access: 'remote-write' });
  t.not(mw.rkey, old, 'a new rkey');
  t.same(mw.bound, { mr: target, offset: 0, length: 1024 });
  // Past the window, with its rkey: the IB spec has the responder refuse
  // it. rxe (6.12) checks a window's accesses against its MR's range, not
  // the window's (rxe_resp.c check_rkey), so there it lands; mlx5 refuses.
  const past = await b.write(src, { addr: target.addr + 2048n, rkey: mw.rkey, length: 512 }, 512).then(() => 'landed', (e: { status?: string }) => e.status);
  if (past === 'landed') t.comment('rxe let a WRITE past the window land (its MR range check only)');
  else t.match(past, /IBV_WC_(REM_ACCESS_ERR|REM_INV_REQ_ERR)/, 'refused past the window');
  // The old rkey (last: a refusal moves the QP to the error state).
  const stale = await b.write(src, { addr: target.addr + 1024n, rkey: old, length: 512 }, 8).then(() => 'landed', (e: { status?: string }) => e.status);
  t.match(stale, /^IBV_WC_/, `the old rkey is refused (${stale})`);
});

t.test('memory windows (type 2): bound by a posted IBV_WR_BIND_MW, used through its QP, invalidated by LOCAL_INV and by a SEND_WITH_INV', rxeOnly, async (t) => {
  const { a, b, pd, buffer, pattern: pat, mr } = setup(t);
  const targetBuf = buffer(4096);
  const target = mr(targetBuf, ['local-write', 'remote-write', 'remote-read', 'mw-bind']);
  const srcBuf = pat(4096, 41);
  const src = mr(srcBuf, 'local-write');
  const gotBuf = buffer(4096);
  const got = mr(gotBuf, 'local-write');
  const mw = pd.allocMw({ type: 2 });
  t.teardown(() => mw.close());
  t.equal(mw.type, 2);
  const c = await a.bindMw(mw, { mr: target, offset: 512, length: 1024, access: ['remote-write', 'remote-read'] });
  t.equal(c.op, 'bind-mw');
  t.not(mw.rkey, 0);
  t.same(mw.remote(), { addr: target.addr + 512n, rkey: mw.rkey, length: 1024 });
  // The peer of the QP that bound it writes and reads through the window.
  await b.write(src, mw.remote(), 256);
  t.ok(targetBuf.subarray(512, 768).equals(srcBuf.subarray(0, 256)), 'the WRITE through the type 2 window landed in its range');
  await b.read({ mr: got, offset: 0, length: 256 }, mw.remote(), 256);
  t.ok(gotBuf.subarray(0, 256).equals(srcBuf.subarray(0, 256)), 'the READ through it brought the same bytes back');
  // A bound type 2 window is not bound again: refused before anything is posted.
  await t.rejects(a.bindMw(mw, { mr: target }), { code: 'ERR_INVALID_ARG_VALUE', message: /invalidated before it is bound again/ });
  t.same(a.outstanding, { send: 0, recv: 0 });
  // LOCAL_INV unbinds it; it binds again with a new rkey.
  const first = mw.rkey;
  const li = await a.localInvalidate(mw);
  t.equal(li.op, 'local-inv');
  t.equal(mw.bound, undefined, 'unbound once the LOCAL_INV completed');
  await a.bindMw(mw, { mr: target, offset: 0, length: 1024, access: 'remote-write' });
  t.not(mw.rkey, first, 'the next bind gives a new rkey');
  await b.write({ mr: src, offset: 1024, length: 64 }, mw.remote(), 64);
  t.ok(targetBuf.subarray(0, 64).equals(srcBuf.subarray(1024, 1088)), 'the WRITE through the rebound window landed');
  // The peer invalidates it with its SEND: this side's receive names the rkey.
  const second = mw.rkey;
  const recv = a.recv({ mr: got, offset: 0, length: 256 });
  const s = await b.send({ mr: src, offset: 0, length: 32 }, undefined, { invalidate: second });
  t.equal(s.op, 'send');
  const r = await recv;
  t.equal(r.byteLen, 32);
  t.equal(r.invalidatedRkey, second, "the receive completion carries the invalidated rkey");
  t.equal(mw.bound, undefined, "the peer's SEND_WITH_INV unbound the window");
  // Bad input, before anything is posted.
  await t.rejects(b.send(src, 8, { invalidate: second, immediate: 1 }), { code: 'ERR_INVALID_ARG_VALUE', message: /immediate/ });
  await t.rejects(b.write(src, { addr: target.addr, rkey: second, length: 64 }, 8, { invalidate: second }), { code: 'ERR_INVALID_ARG_VALUE', message: /'send' on an RC/ });
  await t.rejects(b.send(src, 8, { invalidate: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(a.localInvalidate('x' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  const t1 = pd.allocMw();
  await t.rejects(a.localInvalidate(t1), { code: 'ERR_INVALID_ARG_VALUE', message: /type 1/ });
  t1.close();
  await t.rejects(a.localInvalidate(t1), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => pd.allocMw({ type: 3 as never }), { code: 'ERR_INVALID_ARG_VALUE' });
  // After invalidation the rkey is dead: the peer's WRITE with it fails
  // (last: the refusal moves both QPs to the error state).
  const stale = await b.write(src, { addr: target.addr, rkey: second, length: 64 }, 64).then(() => 'landed', (e: { status?: string }) => e.status);
  t.match(stale, /^IBV_WC_(REM_ACCESS_ERR|REM_INV_REQ_ERR|REM_OP_ERR)$/, `a WRITE with the invalidated rkey is refused (${stale})`);
});

t.test('rdma_cm retry and RNR retry counts reach the QPs (qp.query())', rxeOnly, async (t) => {
  const listener = Rdma.listen({ address: ADDR, port: 0 });
  t.teardown(() => listener.close());
  const accepted = listener.accept({ rnrRetryCount: 4 });
  const client = await Rdma.connect({ address: ADDR, port: listener.port, retryCount: 3, rnrRetryCount: 2 });
  const server = await accepted;
  t.teardown(() => {
    client.close();
    server.close();
  });
  const c = client.qp.query();
  const s = server.qp.query();
  t.equal(c.retryCnt, 3, "the client's own retry count");
  t.equal(s.retryCnt, 3, 'the server takes it from the REQ');
  t.equal(c.rnrRetry, 4, "the client's RNR retries: the server's accept() value (REP)");
  t.equal(s.rnrRetry, 2, "the server's: the client's connect() value (REQ)");
  await t.rejects(Rdma.connect({ address: ADDR, port: listener.port, retryCount: 8 }), { code: 'ERR_OUT_OF_RANGE', message: /retryCount/ });
  await t.rejects(listener.accept({ retryCount: 1 }), { code: 'ERR_INVALID_ARG_VALUE', message: /connect\(\)/ });
});

t.test('rdma_cm responder resources and initiator depth reach the peer: agreed values on both connections and QPs', rxeOnly, async (t) => {
  const listener = Rdma.listen({ address: ADDR, port: 0 });
  t.teardown(() => listener.close());
  // The server keeps its defaults (16, 16): it takes the client's REQ values.
  // rxe rounds a QP's READ depths up to powers of two: these are ones.
  const accepted = listener.accept();
  const client = await Rdma.connect({ address: ADDR, port: listener.port, responderResources: 8, initiatorDepth: 2 });
  const server = await accepted;
  t.teardown(() => {
    client.close();
    server.close();
  });
  t.same([client.responderResources, client.initiatorDepth], [8, 2], "the client's own, confirmed by the REP");
  t.same([server.responderResources, server.initiatorDepth], [2, 8], "the server's: the client's REQ values, from its side");
  const c = client.qp.query();
  const s = server.qp.query();
  t.same([c.maxDestRdAtomic, c.maxRdAtomic], [8, 2], "the client's QP");
  t.same([s.maxDestRdAtomic, s.maxRdAtomic], [2, 8], "the server's QP");
  // The accepting side caps them with its own: the client gets the REP's.
  const accepted2 = listener.accept({ initiatorDepth: 4, responderResources: 1 });
  const client2 = await Rdma.connect({ address: ADDR, port: listener.port, responderResources: 8, initiatorDepth: 2 });
  const server2 = await accepted2;
  t.teardown(() => {
    client2.close();
    server2.close();
  });
  t.same([server2.responderResources, server2.initiatorDepth], [1, 4], 'the server: min(own, REQ)');
  t.same([client2.responderResources, client2.initiatorDepth], [4, 1], 'the client: what the REP carried');
  t.same([client2.qp.query().maxDestRdAtomic, client2.qp.query().maxRdAtomic], [4, 1]);
  t.same([server2.qp.query().maxDestRdAtomic, server2.qp.query().maxRdAtomic], [1, 4]);
  // Bad values: refused before any syscall (no fd opened).
  const fds = readdirSync('/proc/self/fd').length;
  await t.rejects(Rdma.connect({ address: ADDR, port: listener.port, responderResources: 256 }), { code: 'ERR_OUT_OF_RANGE', message: /options\.responderResources/ });
  await t.rejects(Rdma.connect({ address: ADDR, port: listener.port, initiatorDepth: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.initiatorDepth/ });
  await t.rejects(listener.accept({ responderResources: -1 }), { code: 'ERR_OUT_OF_RANGE', message: /options\.responderResources/ });
  t.equal(readdirSync('/proc/self/fd').length, fds, 'no fd opened by the refused calls');
  // Above the device's maximum (not 255, librdmacm's "the device's maximum"): rdma_connect's EINVAL.
  using ctx = Rdma.open(DEV);
  const max = ctx.query().maxQpRdAtom;
  if (max < 254) await t.rejects(Rdma.connect({ address: ADDR, port: listener.port, responderResources: max + 1 }), { code: 'EINVAL', syscall: 'rdma_connect' });
});

t.test('Rdma.getAddrInfo(): rdma_getaddrinfo for an address and a listener; unknown names fail as dns.lookup does', rxeOnly, async (t) => {
  const active = Rdma.getAddrInfo({ node: ADDR, service: 7471 });
  t.ok(active.length >= 1);
  t.same(active[0].dst, { address: ADDR, port: 7471 });
  t.equal(active[0].family, 'IPv4');
  const passive = Rdma.getAddrInfo({ node: ADDR, service: '7471', passive: true });
  t.same(passive[0].src, { address: ADDR, port: 7471 }, 'passive: the address to bind');
  t.throws(() => Rdma.getAddrInfo({ node: 'no-such-host.invalid' }), { code: /^(ENOTFOUND|EAI_AGAIN)$/, syscall: 'rdma_getaddrinfo', hostname: 'no-such-host.invalid' });
  t.throws(() => Rdma.getAddrInfo({}), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => Rdma.getAddrInfo({ node: ADDR, service: 70000 }), { code: 'ERR_OUT_OF_RANGE' });
});

t.test('ctx.queryEx(): ibv_query_device_ex on rxe; ODP caps agree with ODP registration', rxeOnly, async (t) => {
  using ctx = Rdma.open(DEV);
  const ex = ctx.queryEx();
  // rxe's values (drivers/infiniband/sw/rxe/rxe_param.h): no timestamps, device memory, TSO or RSS.
  t.equal(ex.completionTimestampMask, 0n);
  t.equal(ex.hcaCoreClock, 0n);
  t.equal(ex.maxDmSize, 0n);
  t.equal(ex.tsoCaps.maxTso, 0);
  t.equal(ex.rawPacketCaps, 0);
  t.type(ex.deviceCapFlagsEx, 'bigint');
  // IBV_ODP_SUPPORT (bit 0) exactly when an ODP registration works.
  using pd = ctx.allocPd();
  let odp = false;
  try {
    pd.registerMemorySync(hostBuffer(4096), { access: ['local-write', 'on-demand'] }).close();
    odp = true;
  } catch (e) {
    t.match(e, { syscall: 'ibv_reg_mr' });
  }
  t.equal((ex.odpCaps.generalCaps & 1n) === 1n, odp, `ODP ${odp ? 'present' : 'absent'} in both`);
  if (!odp) t.same([ex.odpCaps.rcCaps, ex.odpCaps.ucCaps, ex.odpCaps.udCaps, ex.odpCaps.xrcCaps], [0, 0, 0, 0], 'no ODP on any transport');
  else t.not(ex.odpCaps.rcCaps, 0, 'RC has ODP');
  ctx.close();
  t.throws(() => ctx.queryEx(), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('prepared requests: post(count) chains and a postSync + pollByte ping-pong land their data; cq.poll(); errors are clean', rxeOnly, async (t) => {
  const { a, b, mr, buffer, pattern: pat } = setup(t, { maxSendWr: 16, maxInlineData: 64 });
  // Bandwidth form: 8 copies of a 4 KiB WRITE as one chain, one promise.
  const src = mr(pat(4096, 7));
  const dstBuf = buffer(4096);
  const dst = mr(dstBuf);
  const w = a.prepare({ op: 'write', local: src, remote: dst });
  t.equal(await w.post(8), 8);
  t.ok(dstBuf.equals(pattern(4096, 7)), 'the chain wrote the pattern');
  t.same(a.outstanding, { send: 0, recv: 0 }, 'one completion freed all 8 slots');
  // Latency form: 64 B inline WRITEs back and forth, each side's arrival awaited by a native spin.
  const [sA, sB, iA, iB] = [0, 1, 2, 3].map(() => buffer(64));
  const [mA, mB, inA, inB] = [sA, sB, iA, iB].map((x) => mr(x));
  const wa = a.prepare({ op: 'write', local: mA, remote: inB, inline: true }, { signalEvery: 4 });
  const wb = b.prepare({ op: 'write', local: mB, remote: inA, inline: true });
  let wrong = 0;
  for (let i = 1; i <= 200; i++) {
    const seq = ((i - 1) % 255) + 1;
    sA[0] = i & 0xff;
    sA[63] = seq;
    wa.postSync();
    inB.pollByte(63, seq, { timeout: 10000 });
    if (iB[0] !== (i & 0xff)) wrong++;
    sB[0] = ~i & 0xff;
    sB[63] = seq;
    wb.postSync();
    inA.pollByte(63, seq, { timeout: 10000 });
    if (iA[0] !== (~i & 0xff)) wrong++;
  }
  t.equal(wrong, 0, '200 round trips, each byte before the flag byte already there');
  // Left: signaled completions not reaped yet (postSync reaps only when the queue is
  // full) and the unsignaled posts after the last of them, which the next signaled
  // completion on each QP settles, as the send queue completes in order.
  const one = a.prepare({ op: 'write', local: src, remote: dst, length: 64 }, { signalEvery: 1 });
  const oneB = b.prepare({ op: 'write', local: mB, remote: inA, length: 64 }, { signalEvery: 1 });
  one.postSync();
  oneB.postSync();
  for (let k = 0; k < 10 && a.outstanding.send + b.outstanding.send > 0; k++) a.sendCq.poll({ timeout: 1000 });
  t.same([a.outstanding.send, b.outstanding.send], [0, 0], 'cq.poll() reaped the signaled ones, and they settled the tails');
  // postSync + cq.poll(): post to completion with no promise.
  one.postSync();
  t.equal(a.sendCq.poll({ timeout: 10000 }), 1, 'its completion, spun for');
  t.equal(a.sendCq.poll({ timeout: 1 }), 0, 'an empty CQ: 0 once the spin times out');
  t.throws(() => inA.pollByte(5, 0xee, { timeout: 5 }), { code: 'ETIMEDOUT', errno: -110, syscall: 'pollByte' }, 'a byte that never comes: ETIMEDOUT');
  // Bad input, before any verb.
  t.throws(() => a.prepare({ op: 'recv', local: src } as never), { code: 'ERR_INVALID_ARG_VALUE' });
  await t.rejects(w.post(a.cap.maxSendWr + 1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => inA.pollByte(64, 1), { code: 'ERR_OUT_OF_RANGE' });
  // A WRITE to a key the peer never gave: the chain rejects, the QP is then in error
  // and a sync post's flush is thrown by the next postSync().
  const bad = a.prepare({ op: 'write', local: src, remote: { addr: 0x1000n, rkey: 0x1234, length: 4096 } });
  await t.rejects(bad.post(4), { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: /IBV_WC_(REM_ACCESS_ERR|REM_INV_REQ_ERR)/ });
  t.equal(a.outstanding.send, 0);
  one.postSync();
  t.equal(a.sendCq.poll({ timeout: 10000 }), 1);
  t.throws(() => one.postSync(), { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: 'IBV_WC_WR_FLUSH_ERR' });
  // Closed: the QP's close closes its prepared requests.
  a.close();
  t.equal(w.closed, true);
  t.throws(() => w.postSync(), { code: 'ERR_P2PDMA_CLOSED' });
  await t.rejects(w.post(1), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => a.prepare({ op: 'write', local: src, remote: dst }), { code: 'ERR_P2PDMA_CLOSED' });
});

t.test('what rxe cannot do: on-demand paging (before Linux 6.14) and XRC, as clear errors', rxeOnly, async (t) => {
  using ctx = Rdma.open(DEV);
  using pd = ctx.allocPd();
  const buf = hostBuffer(4096);
  let mr;
  try {
    mr = pd.registerMemorySync(buf, { access: ['local-write', 'on-demand'] });
  } catch (e) {
    t.match(e, { code: /^(EOPNOTSUPP|EINVAL)$/, syscall: 'ibv_reg_mr', message: /on-demand paging.*rxe from Linux 6\.14/ }, 'rxe before 6.14 has no ODP: the error says who has it');
  }
  if (mr !== undefined) {
    t.ok(mr.access.includes('on-demand'), 'this kernel\'s rxe has ODP (6.14+)');
    mr.close();
  }
  using cq = ctx.createCq(4);
  t.throws(() => pd.createQp({ type: 'XRC' as never, sendCq: cq }), { code: 'ERR_INVALID_ARG_VALUE', message: /rxe.*no XRC.*mlx5/ });
});
