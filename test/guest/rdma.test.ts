// RDMA verbs through the addon on the guest's soft-RoCE device rxe0 (on
// eth0, 10.0.2.15): devices, object lifecycles, WRITE/READ/SEND/RECV over a
// loopback pair and over rdma_cm, and the errors of bad input.
import t, { type Test } from 'tap';
import { memfd, mmap, Rdma, type MemoryRegion, type ProtectionDomain, type QueuePair, type RdmaContext } from '../../lib/index';
import { guest, inGuest } from './helpers';

const DEV = 'rxe0';
const ADDR = '10.0.2.15';

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    b[i] = s >>> 16;
  }
  return b;
}

interface Setup {
  ctx: RdmaContext;
  pd: ProtectionDomain;
  a: QueuePair;
  b: QueuePair;
  mr(buf: Buffer | ArrayBuffer, access?: Parameters<ProtectionDomain['registerMemorySync']>[1]): MemoryRegion;
}

/** A context, a PD and a connected loopback pair, closed when the test ends. */
function setup(t: Test, cap?: { maxSendWr?: number; maxRecvWr?: number }): Setup {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const [a, b] = Rdma.loopbackPair(pd, { cap });
  const mrs: MemoryRegion[] = [];
  t.teardown(() => {
    a.close();
    b.close();
    for (const m of mrs) m.close();
    pd.close();
    ctx.close();
  });
  return {
    ctx,
    pd,
    a,
    b,
    mr(buf, access = ['local-write', 'remote-write', 'remote-read']) {
      const m = pd.registerMemorySync(buf, access);
      mrs.push(m);
      return m;
    },
  };
}

t.test('devices() lists rxe0 with its ACTIVE port and a RoCE v2 GID for 10.0.2.15', guest, async (t) => {
  const d = Rdma.devices().find((x) => x.name === DEV);
  if (!t.ok(d, `${DEV} listed`)) return;
  t.match(d!.guid, /^[0-9a-f]{4}(:[0-9a-f]{4}){3}$/);
  t.equal(d!.ports.length, 1);
  t.equal(d!.ports[0].state, 'ACTIVE');
  t.equal(d!.ports[0].linkLayer, 'Ethernet');
  const v4 = d!.ports[0].gids.find((g) => g.gid === '0000:0000:0000:0000:0000:ffff:0a00:020f');
  t.ok(v4, 'the IPv4-mapped GID of 10.0.2.15');
  t.equal(v4?.type, 'RoCE v2');
});

t.test('open() and query(): device and port attributes', guest, async (t) => {
  using ctx = Rdma.open(DEV);
  const q = ctx.query();
  t.equal(q.name, DEV);
  t.ok(q.maxQpWr >= 1024, `maxQpWr ${q.maxQpWr}`);
  t.ok(q.maxCqe >= 1024, `maxCqe ${q.maxCqe}`);
  t.equal(typeof q.maxMrSize, 'bigint');
  t.equal(q.ports.length, 1);
  t.equal(q.ports[0].state, 'ACTIVE');
  t.equal(q.ports[0].linkLayer, 'Ethernet');
  t.ok(q.ports[0].activeMtu >= 1024, `active MTU ${q.ports[0].activeMtu}`);
  t.equal(ctx.queryGid(1, 0).length, 16);
  t.throws(() => Rdma.open('nosuchdev0'), { code: 'ENODEV', message: /nosuchdev0.*rxe0/ });
});

t.test('lifecycles: children keep parents alive; close is idempotent and ordered', guest, async (t) => {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(16);
  const qp = pd.createQp({ sendCq: cq });
  const mr = pd.registerMemorySync(Buffer.alloc(4096), 'local-write');
  t.equal(qp.state, 'RESET');
  t.ok(mr.lkey > 0 && mr.rkey > 0);
  t.equal(mr.length, 4096);
  // The context closes first: it reads as closed, its kernel object waits.
  ctx.close();
  t.ok(ctx.closed);
  t.throws(() => ctx.allocPd(), { code: 'ERR_P2PDMA_CLOSED' });
  let gone = false;
  const ctxGone = ctx[Symbol.asyncDispose]().then(() => (gone = true));
  // Its children still work.
  const mr2 = await pd.registerMemory(new Uint8Array(8192), 'local-write');
  t.equal(mr2.length, 8192);
  mr2.close();
  pd.close();
  t.throws(() => pd.createQp({ sendCq: cq }), { code: 'ERR_P2PDMA_CLOSED' });
  await new Promise((r) => setImmediate(r));
  t.equal(gone, false, 'context still held by its CQ, QP and MR');
  qp.close();
  qp.close();
  mr.close();
  cq.close();
  await ctxGone;
  t.equal(gone, true, 'the context went with its last child');
});

t.test('RDMA WRITE and READ over a loopback pair, byte for byte', guest, async (t) => {
  const s = setup(t);
  const src = pattern(65536, 1);
  const dst = Buffer.alloc(65536, 0x5a);
  const srcMr = s.mr(src, 'local-write');
  const dstMr = s.mr(dst);
  const w = await s.a.write(srcMr, dstMr.remote());
  t.same({ op: w.op, byteLen: w.byteLen }, { op: 'write', byteLen: 65536 });
  t.ok(dst.equals(src), 'WRITE landed');
  // Part of it, at offsets on both sides.
  const back = Buffer.alloc(4096);
  const backMr = s.mr(back, 'local-write');
  await s.a.post([{ op: 'read', local: backMr, remote: dstMr, remoteOffset: 8192, length: 4096 }])[0];
  t.ok(back.equals(src.subarray(8192, 12288)), 'READ of a slice matches');
  t.same(s.a.outstanding, { send: 0, recv: 0 });
});

t.test('SEND/RECV: the receive resolves with the byte count', guest, async (t) => {
  const s = setup(t);
  const msg = pattern(3000, 7);
  const inbox = Buffer.alloc(4096);
  const inMr = s.mr(inbox, 'local-write');
  const outMr = s.mr(msg, 'local-write');
  const recv = s.b.recv(inMr);
  await s.a.send(outMr);
  const r = await recv;
  t.equal(r.op, 'recv');
  t.equal(r.byteLen, 3000);
  t.ok(inbox.subarray(0, 3000).equals(msg));
});

t.test('a batch posts one chain; every request settles', guest, async (t) => {
  const s = setup(t, { maxSendWr: 64 });
  const src = pattern(64 * 1024, 3);
  const dst = Buffer.alloc(64 * 1024);
  const srcMr = s.mr(src, 'local-write');
  const dstMr = s.mr(dst);
  const wrs = Array.from({ length: 64 }, (_, i) => ({ op: 'write' as const, local: { mr: srcMr, offset: i * 1024, length: 1024 }, remote: dstMr, remoteOffset: i * 1024 }));
  const done = await Promise.all(s.a.post(wrs));
  t.equal(done.length, 64);
  t.ok(dst.equals(src));
});

t.test('registerMemory on a memfd Mapping: RDMA lands in the shared pages', guest, async (t) => {
  const s = setup(t);
  using fd = memfd('rdma-test');
  const fs = await import('node:fs');
  fs.ftruncateSync(fd.fd, 65536);
  using map = mmap(fd, 65536);
  const mr = await s.pd.registerMemory(map, ['local-write', 'remote-write', 'remote-read']);
  t.teardown(() => mr.close());
  t.equal(mr.target, map);
  const src = pattern(65536, 9);
  const srcMr = s.mr(src, 'local-write');
  await s.a.write(srcMr, mr);
  t.ok(Buffer.from(fs.readFileSync(`/proc/self/fd/${fd.fd}`)).equals(src), 'the file has the bytes');
});

t.test('a bad rkey fails the WRITE with a remote access error', guest, async (t) => {
  const s = setup(t);
  const srcMr = s.mr(Buffer.alloc(4096, 1), 'local-write');
  const dstMr = s.mr(Buffer.alloc(4096));
  await t.rejects(s.a.write(srcMr, { addr: dstMr.addr, rkey: (dstMr.rkey ^ 0xff00) >>> 0 }), {
    code: 'ERR_P2PDMA_RDMA_COMPLETION',
    status: 'IBV_WC_REM_ACCESS_ERR',
    op: 'write',
    message: /remote access error/,
  });
});

t.test('missing access flags: the peer refuses, the API refuses what it can see', guest, async (t) => {
  const s = setup(t);
  const srcMr = s.mr(Buffer.alloc(4096, 1), 'local-write');
  const readOnly = s.mr(Buffer.alloc(4096), ['local-write', 'remote-read']);
  const e = await s.a.write(srcMr, readOnly).then(() => undefined, (x: unknown) => x as { status: string; vendorErr: number; wrId: number });
  t.equal(e?.status, 'IBV_WC_REM_ACCESS_ERR', 'WRITE into an MR without remote-write');
  t.equal(typeof e?.vendorErr, 'number');
  t.ok(Number.isInteger(e?.wrId));
  // A fresh pair: the failed one went to the error state.
  const s2 = setup(t);
  const noLocal = s2.mr(Buffer.alloc(4096), 'remote-read');
  const remote = s2.mr(Buffer.alloc(4096));
  await t.rejects(s2.a.read(noLocal, remote), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ });
  t.throws(() => s2.pd.registerMemorySync(Buffer.alloc(4096), 'remote-write'), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ });
  t.throws(() => s2.pd.registerMemorySync(Buffer.alloc(4096), 'remote-everything' as never), { code: 'ERR_INVALID_ARG_VALUE' });
});

t.test('bad input: deregistered MR, closed QP, lengths beyond the MR, a full queue', guest, async (t) => {
  const s = setup(t, { maxSendWr: 4 });
  const src = s.mr(Buffer.alloc(8192), 'local-write');
  const dst = s.mr(Buffer.alloc(4096));
  await t.rejects(s.a.write(src, dst), { code: 'ERR_OUT_OF_RANGE', message: /remote region/ });
  await t.rejects(s.a.write({ mr: src, offset: 4096, length: 8192 }, dst), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(s.a.write(src, dst, 1 << 20), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.pd.registerMemorySync(new ArrayBuffer(0)), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.pd.registerMemorySync(Buffer.alloc(16), undefined, { offset: 8, length: 16 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.pd.registerMemorySync('nope' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  // One more write than the send queue holds (the provider rounds the 4
  // asked for up): refused before posting anything.
  const cap = s.a.cap.maxSendWr;
  t.ok(cap >= 4, `send queue of ${cap}`);
  const wrs = Array.from({ length: cap + 1 }, () => ({ op: 'write' as const, local: { mr: src, length: 16 }, remote: dst, length: 16 }));
  t.throws(() => s.a.post(wrs), { code: 'ENOMEM', syscall: 'ibv_post_send', message: new RegExp(`send queue holds ${cap} work requests, 0 are outstanding`) });
  t.same(s.a.outstanding, { send: 0, recv: 0 }, 'nothing posted');
  await Promise.all(s.a.post(wrs.slice(0, cap)));
  const gone = s.mr(Buffer.alloc(4096), 'local-write');
  gone.close();
  await t.rejects(s.a.write(gone, dst), { code: 'ERR_P2PDMA_CLOSED', message: /deregistered/ });
  s.a.close();
  await t.rejects(s.a.write(src, dst, 16), { code: 'ERR_P2PDMA_CLOSED' });
  // Unmapped mappings and detached buffers.
  const ab = new ArrayBuffer(4096);
  structuredClone(ab, { transfer: [ab] });
  t.throws(() => s.pd.registerMemorySync(ab), { code: 'ERR_OUT_OF_RANGE', message: /detached/ });
});

t.test('closing a QP with work in flight rejects it as flushed', guest, async (t) => {
  const s = setup(t);
  const inbox = s.mr(Buffer.alloc(4096), 'local-write');
  const recvs = [s.b.recv(inbox), s.b.recv(inbox)];
  t.same(s.b.outstanding, { send: 0, recv: 2 });
  // The MR stays registered while they are in flight: close defers.
  inbox.close();
  s.b.close();
  for (const p of recvs) await t.rejects(p, { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: 'IBV_WC_WR_FLUSH_ERR', op: 'recv' });
});

t.test('an MR closed while a WRITE uses it is deregistered after the completion', guest, async (t) => {
  const s = setup(t);
  const src = s.mr(pattern(1 << 20, 5), 'local-write');
  const dstBuf = Buffer.alloc(1 << 20);
  const dst = s.mr(dstBuf);
  const p = s.a.write(src, dst);
  src.close();
  t.ok(src.closed);
  await p;
  t.ok(dstBuf.equals(src.target as Buffer));
});

t.test('rdma_cm: listen/connect on 10.0.2.15, then WRITE, READ and SEND/RECV', guest, async (t) => {
  using listener = Rdma.listen({ address: ADDR, port: 0 });
  t.ok(listener.port > 0, `listening on port ${listener.port}`);
  const accepted = listener.accept();
  const client = await Rdma.connect({ address: ADDR, port: listener.port });
  const server = await accepted;
  t.teardown(() => {
    client.close();
    server.close();
  });
  t.equal(client.qp.state, 'RTS');
  t.equal(server.qp.state, 'RTS');
  t.equal(client.remote.port, listener.port);
  t.equal(client.context.name, DEV);

  const srvBuf = Buffer.alloc(65536);
  const srvMr = await server.pd.registerMemory(srvBuf, ['local-write', 'remote-write', 'remote-read']);
  const cliBuf = pattern(65536, 11);
  const cliMr = await client.pd.registerMemory(cliBuf, 'local-write');
  t.teardown(() => {
    srvMr.close();
    cliMr.close();
  });
  // The server tells the client where its buffer is, by SEND.
  const adv = Buffer.alloc(16);
  adv.writeBigUInt64LE(srvMr.addr, 0);
  adv.writeUInt32LE(srvMr.rkey, 8);
  const advMr = server.pd.registerMemorySync(adv, 'local-write');
  const got = Buffer.alloc(16);
  const gotMr = client.pd.registerMemorySync(got, 'local-write');
  t.teardown(() => {
    advMr.close();
    gotMr.close();
  });
  const recv = client.qp.recv(gotMr);
  await server.qp.send(advMr);
  t.equal((await recv).byteLen, 16);
  const remote = { addr: got.readBigUInt64LE(0), rkey: got.readUInt32LE(8), length: 65536 };

  await client.qp.write(cliMr, remote);
  t.ok(srvBuf.equals(cliBuf), 'WRITE through rdma_cm landed');
  srvBuf.fill(0x33, 0, 4096);
  const readBack = Buffer.alloc(4096);
  const rbMr = client.pd.registerMemorySync(readBack, 'local-write');
  t.teardown(() => rbMr.close());
  await client.qp.read(rbMr, remote);
  t.ok(readBack.equals(Buffer.alloc(4096, 0x33)), 'READ through rdma_cm matches');

  const bye = server.waitDisconnect();
  client.close();
  await bye;
  t.ok(server.disconnected, 'the server saw DISCONNECTED');
});

t.test('rdma_cm: connecting to a port nobody listens on is rejected', guest, async (t) => {
  await t.rejects(Rdma.connect({ address: ADDR, port: 1, timeoutMs: 2000 }), { code: 'ERR_P2PDMA_RDMA_CM', event: /REJECTED|UNREACHABLE/ });
  await t.rejects(Rdma.connect({ address: 'localhost', port: 1 } as never), { code: 'ERR_INVALID_ARG_VALUE' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(Rdma.connect({ address: ADDR, port: 1, signal: ac.signal }), { code: 'ABORT_ERR' });
});

t.test('registerDmaBuf on rxe: EOPNOTSUPP, saying the driver has no dma-buf MRs', guest, async (t) => {
  using ctx = Rdma.open(DEV);
  using pd = ctx.allocPd();
  const { ioctlSync, ioc, Fd } = await import('../../lib/index');
  // DMA_HEAP_IOCTL_ALLOC: { u64 len; u32 fd; u32 fd_flags; u64 heap_flags }
  using heap = Fd.open('/dev/dma_heap/system', 'r');
  const arg = Buffer.alloc(24);
  arg.writeBigUInt64LE(65536n, 0);
  arg.writeUInt32LE(0o2000002, 12); // O_RDWR | O_CLOEXEC
  ioctlSync(heap, ioc.iowr(0x48, 0, 24), arg);
  using buf = new Fd(arg.readUInt32LE(8));
  t.throws(() => pd.registerDmaBuf(buf, { length: 65536, access: 'local-write' }), {
    code: 'EOPNOTSUPP',
    syscall: 'ibv_reg_dmabuf_mr',
    message: /rxe0 does not support dma-buf memory regions/,
  });
});

t.test('an MR whose ArrayBuffer was transferred away is refused for local work', guest, async (t) => {
  const s = setup(t);
  const ab = new ArrayBuffer(8192);
  const mr = s.mr(ab, 'local-write');
  const dst = s.mr(Buffer.alloc(8192));
  // ArrayBuffer.prototype.transfer() is Node 22+; structuredClone moves it on 20 too.
  const moved = structuredClone(ab, { transfer: [ab] });
  await t.rejects(s.a.write(mr, dst), { code: 'ERR_P2PDMA_CLOSED', message: /detached or transferred/ });
  t.equal(moved.byteLength, 8192);
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
    const mr = pd.registerMemorySync(Buffer.alloc(1 << 16), ['local-write', 'remote-write']);
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
  const src = s.mr(Buffer.alloc(64, 7), 'local-write');
  const dst = s.mr(Buffer.alloc(64));
  await s.a.write(src, dst);
  t.ok((dst.target as Buffer).equals(Buffer.alloc(64, 7)));
});

if (!inGuest) t.pass('guest-only file');
