// RDMA verbs through the addon on the guest's soft-RoCE device rxe0 (on
// eth0, 10.0.2.15): devices, object lifecycles, WRITE/READ/SEND/RECV over a
// loopback pair and over rdma_cm. Errors and teardown: rdma-errors.test.ts.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import { DmaBuf, DmaHeap, Drm, memfd, mmap, Rdma, Udmabuf, type RdmaAccess, type RdmaConnection as Connection, type RdmaListener as Listener } from '../../lib';
import { guest, inGuest, kernel } from './helpers';
import { ADDR, DEV, hostBuffer, hostMemory, hostPattern, onPvrdma, pattern, setup } from './rdma-helpers';

// rdma_cm needs CM MADs relayed to the backend, which the pvrdma lane's
// rdmacm-mux stand-in refuses.
const cmOnly = guest.skip ? guest : { skip: onPvrdma ? 'pvrdma lane: no CM MAD relay (harness/vm/rdmacm-mux.ts)' : false };
// QEMU's pvrdma posts every send work request to its backend as a SEND, so
// an RDMA WRITE or READ never reaches the peer's memory there
// (test/guest/pvrdma/device.test.ts shows it); those tests move data with
// SEND/RECV in that lane.
const writeOp = onPvrdma ? 'send' : 'write';
const rdmaOnly = guest.skip ? guest : { skip: onPvrdma ? 'pvrdma lane: QEMU posts RDMA WRITE and READ as SENDs (test/guest/pvrdma/device.test.ts)' : false };

// QEMU 7.2's pvrdma offers RoCE v1 GIDs only (test/guest/pvrdma/device.test.ts).
const GID_TYPE = onPvrdma ? 'IB/RoCE v1' : 'RoCE v2';

/** A client connected through rdma_cm to `listener`, and the server side it accepted; both closed when the test ends. */
async function connectedPair(t: Test, listener: Listener): Promise<{ client: Connection; server: Connection }> {
  const accepted = listener.accept();
  const client = await Rdma.connect({ address: ADDR, port: listener.port });
  const server = await accepted;
  t.teardown(() => {
    client.close();
    server.close();
  });
  return { client, server };
}

t.test(`devices() lists the device with its ACTIVE port and a ${GID_TYPE} GID for 10.0.2.15`, guest, async (t) => {
  const d = Rdma.devices().find((x) => x.name === DEV);
  if (!t.ok(d, `${DEV} listed`)) return;
  t.match(d!.guid, /^[0-9a-f]{4}(:[0-9a-f]{4}){3}$/);
  t.equal(d!.ports.length, 1);
  t.equal(d!.ports[0].state, 'ACTIVE');
  t.equal(d!.ports[0].linkLayer, 'Ethernet');
  const v4 = d!.ports[0].gids.find((g) => g.gid === '0000:0000:0000:0000:0000:ffff:0a00:020f');
  t.ok(v4, 'the IPv4-mapped GID of 10.0.2.15');
  t.equal(v4?.type, GID_TYPE);
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
  // One ioctl for the table; the same entries as sysfs lists.
  const fromSysfs = Rdma.devices().find((d) => d.name === DEV)!.ports[0].gids.map(({ index, gid, type }) => ({ index, gid, type }));
  t.same(ctx.gids(1), fromSysfs, 'gids() matches the kernel\'s sysfs GID table');
  t.throws(() => ctx.gids(2), { code: 'EINVAL', syscall: 'ibv_query_port' }, 'rxe has one port');
  t.throws(() => Rdma.open('nosuchdev0'), { code: 'ENODEV', message: new RegExp(`nosuchdev0.*${DEV}`) });
});

t.test('lifecycles: children keep parents alive; close is idempotent and ordered', guest, async (t) => {
  const ctx = Rdma.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(16);
  const qp = pd.createQp({ sendCq: cq });
  const mr = pd.registerMemorySync(Buffer.from(hostMemory(4096)), { access: 'local-write' });
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
  const mr2 = await pd.registerMemory(new Uint8Array(hostMemory(8192)), { access: 'local-write' });
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

t.test('RDMA WRITE and READ over a loopback pair, byte for byte', rdmaOnly, async (t) => {
  const s = setup(t);
  const src = s.pattern(65536, 1);
  const dst = s.buffer(65536, 0x5a);
  const srcMr = s.mr(src, 'local-write');
  const dstMr = s.mr(dst);
  const w = await s.a.write(srcMr, dstMr.remote());
  t.same({ op: w.op, byteLen: w.byteLen }, { op: 'write', byteLen: 65536 });
  t.ok(dst.equals(src), 'WRITE landed');
  const back = s.buffer(4096);
  const backMr = s.mr(back, 'local-write');
  // Part of it, at offsets on both sides.
  await s.a.post([{ op: 'read', local: backMr, remote: dstMr, remoteOffset: 8192, length: 4096 }])[0];
  t.ok(back.equals(src.subarray(8192, 12288)), 'READ of a slice matches');
  t.same(s.a.outstanding, { send: 0, recv: 0 });
});

t.test('SEND/RECV: the receive resolves with the byte count', guest, async (t) => {
  const s = setup(t);
  const msg = s.pattern(3000, 7);
  const inbox = s.buffer(4096);
  const inMr = s.mr(inbox, 'local-write');
  const outMr = s.mr(msg, 'local-write');
  const recv = s.b.recv(inMr);
  await s.a.send(outMr);
  const r = await recv;
  t.equal(r.op, 'recv');
  t.equal(r.byteLen, 3000);
  t.ok(inbox.subarray(0, 3000).equals(msg));
});

t.test('SEND with an immediate: the receive carries it', guest, async (t) => {
  const s = setup(t);
  const msg = s.pattern(100, 11);
  const inbox = s.buffer(4096);
  const inMr = s.mr(inbox, 'local-write');
  const recv = s.b.recv(inMr);
  const sent = await s.a.send(s.mr(msg, 'local-write'), undefined, { immediate: 0xdeadbeef });
  t.same({ op: sent.op, byteLen: sent.byteLen }, { op: 'send', byteLen: 100 });
  const r = await recv;
  t.same({ op: r.op, byteLen: r.byteLen, immediate: r.immediate, byWrite: r.byWrite }, { op: 'recv', byteLen: 100, immediate: 0xdeadbeef, byWrite: undefined });
  t.ok(inbox.subarray(0, 100).equals(msg));
  // Without one, a receive has no immediate.
  const plain = s.b.recv(inMr);
  await s.a.send(s.mr(msg, 'local-write'));
  t.equal((await plain).immediate, undefined);
});

t.test('RDMA WRITE with an immediate: the data lands and a receive (no buffer) completes with it', rdmaOnly, async (t) => {
  const s = setup(t);
  const src = s.pattern(8192, 12);
  const dst = s.buffer(8192);
  const dstMr = s.mr(dst);
  const recv = s.b.recv(null);
  const w = await s.a.write(s.mr(src, 'local-write'), dstMr.remote(), undefined, { immediate: 42 });
  t.equal(w.op, 'write');
  const r = await recv;
  t.same({ op: r.op, byteLen: r.byteLen, immediate: r.immediate, byWrite: r.byWrite }, { op: 'recv', byteLen: 8192, immediate: 42, byWrite: true });
  t.ok(dst.equals(src), 'WRITE landed where it pointed');
  // In a batch too, beside a plain WRITE.
  const recv2 = s.b.recv(null);
  const [a, b] = s.a.post([
    { op: 'write', local: s.mr(src, 'local-write'), remote: dstMr },
    { op: 'write', local: s.mr(src, 'local-write'), remote: dstMr, immediate: 7 },
  ]);
  await Promise.all([a, b]);
  t.equal((await recv2).immediate, 7);
});

t.test('inline SEND up to cap.maxInlineData; larger, or immediate/inline where they do not apply, refused before posting', guest, async (t) => {
  const s = setup(t, { maxInlineData: 64 });
  const msg = s.pattern(64, 13);
  const msgMr = s.mr(msg, 'local-write');
  const inbox = s.buffer(4096);
  const inMr = s.mr(inbox, 'local-write');
  const recv = s.b.recv(inMr);
  await s.a.send(msgMr, 64, { inline: true, immediate: 1 });
  const r = await recv;
  t.same({ byteLen: r.byteLen, immediate: r.immediate }, { byteLen: 64, immediate: 1 });
  t.ok(inbox.subarray(0, 64).equals(msg), 'inline data arrived');
  const big = s.mr(s.pattern(65, 14), 'local-write');
  await t.rejects(s.a.send(big, 65, { inline: true }), { code: 'ERR_OUT_OF_RANGE', message: /cap\.maxInlineData/ });
  await t.rejects(s.a.read(inMr, s.mr(s.buffer(64)).remote(), 64, { immediate: 1 } as never), { code: 'ERR_INVALID_ARG_VALUE', message: /'write' and 'send' only/ });
  t.throws(() => s.b.post([{ op: 'recv', local: inMr, inline: true }]), { code: 'ERR_INVALID_ARG_VALUE' });
  await t.rejects(s.a.send(msgMr, 1, { immediate: 2 ** 32 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(s.a.send(msgMr, 1, { immediate: '1' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(s.a.send(msgMr, 1, { inline: 1 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.same(s.a.outstanding, { send: 0, recv: 0 }, 'nothing was posted');
  t.same(s.b.outstanding, { send: 0, recv: 0 });
});

t.test('atomics: compare-and-swap and fetch-and-add on the peer\'s 8 bytes, the original value returned; bad operands refused', rdmaOnly, async (t) => {
  const s = setup(t);
  const target = s.buffer(64);
  target.writeBigUInt64LE(5n, 8);
  const targetMr = s.mr(target, ['local-write', 'remote-atomic']);
  const old = s.buffer(16);
  const oldMr = s.mr(old, 'local-write');
  const remote = { ...targetMr.remote(), addr: targetMr.remote().addr + 8n, length: 8 };

  const cas = await s.a.compareAndSwap(oldMr, remote, 5n, 99n);
  t.same({ op: cas.op, byteLen: cas.byteLen }, { op: 'compare-swap', byteLen: 8 });
  t.equal(old.readBigUInt64LE(0), 5n, 'the original value came back');
  t.equal(target.readBigUInt64LE(8), 99n, 'swapped: it equalled compare');
  await s.a.compareAndSwap(oldMr, remote, 5n, 7n);
  t.equal(old.readBigUInt64LE(0), 99n);
  t.equal(target.readBigUInt64LE(8), 99n, 'not swapped: it no longer equalled compare');

  await s.a.fetchAndAdd({ mr: oldMr, offset: 8 }, remote, 2n ** 64n - 1n);
  t.equal(old.readBigUInt64LE(8), 99n);
  t.equal(target.readBigUInt64LE(8), 98n, 'added 2^64 - 1: wraps to minus one');
  const adds = await Promise.all(s.a.post(Array.from({ length: 8 }, () => ({ op: 'fetch-add' as const, local: oldMr, remote: targetMr, remoteOffset: 8, add: 1n }))));
  t.equal(adds.length, 8);
  t.equal(target.readBigUInt64LE(8), 106n, 'eight adds in one chain');

  await t.rejects(s.a.fetchAndAdd(oldMr, { ...remote, addr: remote.addr + 4n }, 1n), { code: 'ERR_INVALID_ARG_VALUE', message: /8-byte aligned/ });
  await t.rejects(s.a.fetchAndAdd({ mr: oldMr, offset: 12 }, remote, 1n), { code: 'ERR_OUT_OF_RANGE', message: />= 8 bytes/ });
  await t.rejects(s.a.fetchAndAdd(oldMr, remote, 1 as never), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(s.a.compareAndSwap(oldMr, remote, -1n, 0n), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(s.a.fetchAndAdd(oldMr, remote, 1n, { immediate: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
  await t.rejects(s.a.fetchAndAdd(s.mr(s.buffer(8), 'remote-read'), remote, 1n), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ });
  t.same(s.a.outstanding, { send: 0, recv: 0 }, 'nothing was posted');

  // The target MR without 'remote-atomic': the peer's NIC refuses it.
  const noAtomic = s.mr(s.buffer(64), ['local-write', 'remote-write']);
  await t.rejects(s.a.fetchAndAdd(oldMr, noAtomic, 1n), { message: /remote access error|REM_ACCESS_ERR|IBV_WC_/ }, 'completion error, not a hang');
});

t.test('scatter/gather: a WRITE gathered from three buffers, a SEND scattered into two receive buffers; lists past cap.maxSendSge refused', rdmaOnly, async (t) => {
  const s = setup(t, { maxSendSge: 3, maxRecvSge: 2 });
  t.ok(s.a.cap.maxSendSge >= 3 && s.a.cap.maxRecvSge >= 2, `caps ${s.a.cap.maxSendSge}/${s.a.cap.maxRecvSge}`);
  const src = s.pattern(12288, 21);
  const srcMr = s.mr(src, 'local-write');
  const dst = s.buffer(8192);
  const dstMr = s.mr(dst);
  // Three pieces of src, out of order: [8192, 10240), [0, 4096), [4096, 6144).
  const w = await s.a.write([{ mr: srcMr, offset: 8192, length: 2048 }, { mr: srcMr, offset: 0, length: 4096 }, { mr: srcMr, offset: 4096, length: 2048 }], dstMr.remote());
  t.equal(w.byteLen, 8192, 'the sum of the parts');
  t.ok(dst.equals(Buffer.concat([src.subarray(8192, 10240), src.subarray(0, 6144)])), 'gathered in list order');

  const a = s.buffer(1000);
  const b = s.buffer(4096);
  const recv = s.b.recv([s.mr(a, 'local-write'), s.mr(b, 'local-write')]);
  await s.a.send({ mr: srcMr, offset: 0, length: 3000 });
  t.equal((await recv).byteLen, 3000);
  t.ok(a.equals(src.subarray(0, 1000)) && b.subarray(0, 2000).equals(src.subarray(1000, 3000)), 'scattered: the first buffer filled, then the second');

  await t.rejects(s.a.write([srcMr, srcMr, srcMr, srcMr], dstMr.remote()), { code: 'ERR_OUT_OF_RANGE', message: /cap\.maxSendSge/ });
  await t.rejects(s.b.recv([srcMr, srcMr, srcMr]), { code: 'ERR_OUT_OF_RANGE', message: /cap\.maxRecvSge/ });
  await t.rejects(s.a.write([], dstMr.remote()), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(s.a.write([srcMr], dstMr.remote(), 10), { code: 'ERR_INVALID_ARG_VALUE', message: /list of buffers/ });
  await t.rejects(s.b.recv([s.mr(s.buffer(64), 'remote-read')]), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ });
  t.same(s.a.outstanding, { send: 0, recv: 0 }, 'nothing was posted');
});

t.test(`a batch posts one chain; every request settles (${writeOp})`, guest, async (t) => {
  const s = setup(t, { maxSendWr: 64, maxRecvWr: 64 });
  const src = s.pattern(64 * 1024, 3);
  const dst = s.buffer(64 * 1024);
  const srcMr = s.mr(src, 'local-write');
  const dstMr = s.mr(dst);
  const chunk = (mr: typeof srcMr, i: number) => ({ mr, offset: i * 1024, length: 1024 });
  const received = onPvrdma ? s.b.post(Array.from({ length: 64 }, (_, i) => ({ op: 'recv' as const, local: chunk(dstMr, i) }))) : [];
  const wrs = Array.from({ length: 64 }, (_, i) =>
    onPvrdma ? { op: 'send' as const, local: chunk(srcMr, i) } : { op: 'write' as const, local: chunk(srcMr, i), remote: dstMr, remoteOffset: i * 1024 },
  );
  const done = await Promise.all(s.a.post(wrs));
  t.equal(done.length, 64);
  t.equal((await Promise.all(received)).length, onPvrdma ? 64 : 0);
  t.ok(dst.equals(src));
});

t.test('registerMemory on a memfd Mapping: RDMA lands in the shared pages', guest, async (t) => {
  const s = setup(t);
  using fd = memfd('rdma-test');
  const fs = await import('node:fs');
  fs.ftruncateSync(fd.fd, 65536);
  using map = mmap(fd, 65536);
  // Declared after the map: disposed first (the map cannot be unmapped under it).
  using mr = await s.pd.registerMemory(map, { access: ['local-write', 'remote-write', 'remote-read'] });
  t.equal(mr.target, map);
  t.equal(mr.mapping, map);
  const src = s.pattern(65536, 9);
  const srcMr = s.mr(src, 'local-write');
  if (onPvrdma) {
    const received = s.b.recv(mr);
    await s.a.send(srcMr);
    t.equal((await received).byteLen, 65536);
  } else {
    await s.a.write(srcMr, mr);
  }
  t.ok(Buffer.from(fs.readFileSync(`/proc/self/fd/${fd.fd}`)).equals(src), 'the file has the bytes');
});

t.test('rdma_cm: listen/connect on 10.0.2.15, then WRITE, READ and SEND/RECV', cmOnly, async (t) => {
  using listener = Rdma.listen({ address: ADDR, port: 0 });
  t.ok(listener.port > 0, `listening on port ${listener.port}`);
  const { client, server } = await connectedPair(t, listener);
  t.equal(client.qp.state, 'RTS');
  t.equal(server.qp.state, 'RTS');
  t.equal(client.remote.port, listener.port);
  t.equal(client.context.name, DEV);

  const srvBuf = hostBuffer(65536);
  const srvMr = await server.pd.registerMemory(srvBuf, { access: ['local-write', 'remote-write', 'remote-read'] });
  const cliBuf = hostPattern(65536, 11);
  const cliMr = await client.pd.registerMemory(cliBuf, { access: 'local-write' });
  t.teardown(() => {
    srvMr.close();
    cliMr.close();
  });
  // The server tells the client where its buffer is, by SEND.
  const adv = hostBuffer(16);
  adv.writeBigUInt64LE(srvMr.addr, 0);
  adv.writeUInt32LE(srvMr.rkey, 8);
  const advMr = server.pd.registerMemorySync(adv, { access: 'local-write' });
  const got = hostBuffer(16);
  const gotMr = client.pd.registerMemorySync(got, { access: 'local-write' });
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
  const readBack = hostBuffer(4096);
  const rbMr = client.pd.registerMemorySync(readBack, { access: 'local-write' });
  t.teardown(() => rbMr.close());
  await client.qp.read(rbMr, remote);
  t.ok(readBack.equals(Buffer.alloc(4096, 0x33)), 'READ through rdma_cm matches');

  const bye = server.waitDisconnect();
  client.close();
  await bye;
  t.ok(server.disconnected, 'the server saw DISCONNECTED');
});

t.test('completions beyond one drain batch all settle: 128 receives then 128 sends on each QP of a default loopbackPair', guest, async (t) => {
  // 512 completions on one CQ: more than one drain batch (256). rxe signals
  // the channel only for completions after the re-arm, so a drain that
  // stopped at a count left the rest waiting for ever.
  const s = setup(t);
  const recv = Array.from({ length: 128 }, () => ({ op: 'recv' as const, local: null }));
  const send = Array.from({ length: 128 }, () => ({ op: 'send' as const, local: null }));
  const promises = [...s.a.post(recv), ...s.b.post(recv), ...s.a.post(send), ...s.b.post(send)];
  let settled = 0;
  let failed = 0;
  const all = Promise.all(promises.map((p) => p.then(() => settled++, () => (failed++, settled++))));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((r) => (timer = setTimeout(r, 90_000)));
  await Promise.race([all, timeout]);
  clearTimeout(timer);
  t.equal(settled, 512, 'all 512 work requests settled');
  t.equal(failed, 0, 'none failed');
  t.same(s.a.outstanding, { send: 0, recv: 0 });
  t.same(s.b.outstanding, { send: 0, recv: 0 });
});

t.test('GC backstop: an unreferenced idle CQ and rdma_cm listener are collected, with a warning and their fds closed', guest, async (t) => {
  const v8 = await import('node:v8');
  const vm = await import('node:vm');
  const fs = await import('node:fs');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  // Completion channels are anon inodes; rdma_cm channels /dev/infiniband/rdma_cm.
  const count = () => {
    const cq = new Set<string>();
    const cm = new Set<string>();
    for (const fd of fs.readdirSync('/proc/self/fd')) {
      let target = '';
      try {
        target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        continue;
      }
      if (target.includes('infinibandevent')) cq.add(fd);
      if (target === '/dev/infiniband/rdma_cm') cm.add(fd);
    }
    return { cq, cm };
  };
  const added = (now: Set<string>, then: Set<string>) => [...now].filter((fd) => !then.has(fd));
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }) => {
    if (w.code === 'P2PDMA_GC_CLOSE') warnings.push(w.message);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  using ctx = Rdma.open(DEV);
  const before = count();
  (() => {
    for (let i = 0; i < 4; i++) ctx.createCq(16);
    if (!onPvrdma) Rdma.listen({ address: ADDR, port: 0 });
  })();
  const made = count();
  const newCq = added(made.cq, before.cq);
  const newCm = added(made.cm, before.cm);
  t.ok(newCq.length >= 4, `completion channels open (${newCq.length} fds with the pollers' dups)`);
  if (!onPvrdma) t.ok(newCm.length >= 1, `rdma_cm channel open (${newCm.length} fds)`);
  for (let i = 0; i < 10; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 20));
  }
  const after = count();
  t.same(newCq.filter((fd) => after.cq.has(fd)), [], 'the CQs\' fds are closed');
  t.same(newCm.filter((fd) => after.cm.has(fd)), [], 'the listener\'s fds are closed');
  t.equal(warnings.filter((m) => /Closing CompletionQueue on garbage collection/.test(m)).length, 4, 'a P2PDMA_GC_CLOSE warning per CQ');
  if (!onPvrdma) t.ok(warnings.some((m) => /Closing Listener .* on garbage collection/.test(m)), 'and for the listener');
  // A CQ with work outstanding is not collected while its promises wait.
  const s = setup(t);
  const p = s.b.recv(null);
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  await s.a.send(null);
  t.equal((await p).byteLen, 0, 'the receive still completed');
});

t.test('rdma_cm: a peer disconnect flushes the posted receives; a failed channel rejects pending waits', cmOnly, async (t) => {
  using listener = Rdma.listen({ address: ADDR, port: 0 });
  const { client, server } = await connectedPair(t, listener);
  const inbox = await server.pd.allocMemory(4096, { access: 'local-write' });
  t.teardown(() => inbox.close());
  const recvs = [server.qp.recv(inbox), server.qp.recv(inbox)];
  const bye = server.waitDisconnect();
  client.close();
  await bye;
  t.equal(server.qp.state, 'ERR', 'the QP was moved to the error state');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((r) => (timer = setTimeout(() => r('still pending after 30 s'), 30_000)));
  for (const p of recvs) {
    const e = await Promise.race([p.then(() => 'resolved', (x: { status?: string }) => x.status ?? String(x)), timeout]);
    t.equal(e, 'IBV_WC_WR_FLUSH_ERR', 'a posted receive completed as flushed, before close()');
  }
  clearTimeout(timer);
  t.same(server.qp.outstanding, { send: 0, recv: 0 });

  // A channel that fails (an epoll error, rdma_get_cm_event failing) settles what waits on it.
  const waiting = listener.accept();
  const boom = Object.assign(new Error('EBADF: bad file descriptor, rdma_get_cm_event'), { code: 'EBADF' });
  listener.failChannel(boom);
  await t.rejects(waiting, { code: 'EBADF' }, 'a pending accept() rejects with the error');
  await t.rejects(listener.accept(), { code: 'EBADF' }, 'and a later one at once');
  using l2 = Rdma.listen({ address: ADDR, port: 0 });
  const { client: c2 } = await connectedPair(t, l2);
  const w = c2.waitDisconnect();
  c2.failChannel(boom);
  await t.rejects(w, { code: 'EBADF' }, 'a pending waitDisconnect() rejects with it');
});

t.test('rdma_cm: private data both ways (connect carries the client\'s, accept the server\'s); over the CM limits refused', cmOnly, async (t) => {
  using listener = Rdma.listen({ address: ADDR, port: 0 });
  const accepted = listener.accept({ privateData: Buffer.from('server hello') });
  const client = await Rdma.connect({ address: ADDR, port: listener.port, privateData: new TextEncoder().encode('client hello') });
  const server = await accepted;
  t.teardown(() => {
    client.close();
    server.close();
  });
  t.equal(server.peerPrivateData?.subarray(0, 12).toString(), 'client hello', `server sees ${server.peerPrivateData?.length} bytes`);
  t.equal(client.peerPrivateData?.subarray(0, 12).toString(), 'server hello', `client sees ${client.peerPrivateData?.length} bytes`);
  t.ok(server.peerPrivateData!.subarray(12).every((b) => b === 0), 'the rest is the CM\'s zero padding');

  await t.rejects(Rdma.connect({ address: ADDR, port: listener.port, privateData: Buffer.alloc(57) }), { code: 'ERR_OUT_OF_RANGE', message: /56 bytes/ });
  await t.rejects(listener.accept({ privateData: Buffer.alloc(197) }), { code: 'ERR_OUT_OF_RANGE', message: /196 bytes/ });
  await t.rejects(Rdma.connect({ address: ADDR, port: listener.port, privateData: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
});

t.test('rdma_cm: connecting to a port nobody listens on is rejected', cmOnly, async (t) => {
  await t.rejects(Rdma.connect({ address: ADDR, port: 1, timeoutMs: 2000 }), { code: 'ERR_P2PDMA_RDMA_CM', event: /REJECTED|UNREACHABLE/ });
  await t.rejects(Rdma.connect({ address: 'localhost', port: 1 } as never), { code: 'ERR_INVALID_ARG_VALUE' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(Rdma.connect({ address: ADDR, port: 1, signal: ac.signal }), { code: 'ABORT_ERR' });
});

// dma-bufs on rxe: the stock kernel's rxe has no reg_user_mr_dmabuf verb;
// the series' patch 12 adds one (a dynamic importer copying through
// dma_buf_vmap()).
const rxeStock = guest.skip ? guest : { skip: onPvrdma ? 'pvrdma lane: the EOPNOTSUPP check is about rxe' : kernel === 'patched' ? 'patched kernel: rxe has dma-buf MRs (patch 12)' : false };
const rxeDmaBuf = guest.skip ? guest : { skip: onPvrdma ? 'pvrdma lane: QEMU posts RDMA WRITE and READ as SENDs' : kernel === 'baseline' ? 'stock kernel: rxe has no dma-buf MRs' : false };
const DMABUF_SIZE = 16 * 4096;
const RW: RdmaAccess[] = ['local-write', 'remote-write', 'remote-read'];

function heapBuffer(t: Test, size: number): DmaBuf {
  using heap = DmaHeap.open('system');
  const buf = heap.allocSync(size);
  t.teardown(() => buf.close());
  return buf;
}

/** The guest's dma-buf exporters, each giving a `size`-byte buffer closed when the test ends (the dma-buf holds what it needs of its exporter's objects). */
const dmaBufSources: [string, (t: Test, size: number) => DmaBuf][] = [
  ['a dma-heap (system) buffer', heapBuffer],
  ['a udmabuf', (t, size) => {
    const u = Udmabuf.createSync({ size });
    t.teardown(() => u.close());
    return u;
  }],
  ['a vgem PRIME buffer', (t, size) => {
    using d = Drm.open({ driver: 'vgem' });
    using bo = d.createDumb({ width: 1024, height: size / 4096, bpp: 32 });
    const buf = bo.export({ rw: true });
    t.teardown(() => buf.close());
    return buf;
  }],
];

/** The devices attached to `buf` in debugfs's bufinfo; undefined where it cannot be read. */
function attachedDevices(buf: DmaBuf): string[] | undefined {
  let info: string;
  try {
    info = fs.readFileSync('/sys/kernel/debug/dma_buf/bufinfo', 'utf8');
  } catch {
    return undefined;
  }
  const ino = fs.fstatSync(buf.fd).ino;
  const lines = info.split('\n');
  const at = lines.findIndex((l) => /^\d+\t/.test(l) && Number(l.split('\t')[5]) === ino);
  if (at < 0) return undefined;
  // Fence lines (dma_resv_describe()) come before the attachments.
  let i = lines.indexOf('\tAttached Devices:', at);
  if (i < 0) return undefined;
  const devices: string[] = [];
  for (i++; i < lines.length && lines[i].startsWith('\t'); i++) devices.push(lines[i].trim());
  return devices;
}

t.test('registerDmaBuf on the stock kernel\'s rxe: EOPNOTSUPP, saying the driver has no dma-buf MRs', rxeStock, async (t) => {
  using ctx = Rdma.open(DEV);
  using pd = ctx.allocPd();
  const buf = heapBuffer(t, 65536);
  const refused = { code: 'EOPNOTSUPP', syscall: 'ibv_reg_dmabuf_mr', message: /rxe0 does not support dma-buf memory regions/ };
  t.throws(() => pd.registerDmaBufSync(buf, { length: 65536, access: 'local-write' }), refused);
  await t.rejects(pd.registerDmaBuf(buf, { length: 65536, access: 'local-write' }), refused, 'the promise form too');
});

for (const [what, make] of dmaBufSources) {
  t.test(`registerDmaBuf on rxe: ${what}: RDMA WRITE into it and READ back, WRITE out of it, SEND into it, seen through its mapping`, rxeDmaBuf, async (t) => {
    const s = setup(t);
    const buf = make(t, DMABUF_SIZE);
    using m = buf.map();
    const view = Buffer.from(m.buffer, 0, DMABUF_SIZE);
    buf.withCpuAccess('write', () => view.fill(0x5a));
    // The promise form here; the tests below use registerDmaBufSync().
    const mr = await s.pd.registerDmaBuf(buf, { length: DMABUF_SIZE, access: RW });
    t.teardown(() => mr.close());
    t.equal(mr.length, DMABUF_SIZE);
    t.equal(mr.addr, 0n, 'iova defaults to the offset');
    const attached = attachedDevices(buf);
    if (attached) t.ok(attached.includes(DEV), `attached to ${DEV} (bufinfo: ${attached.join(', ')})`);

    const src = s.pattern(DMABUF_SIZE, 3);
    const w = await s.a.write(s.mr(src, 'local-write'), mr.remote());
    t.same({ op: w.op, byteLen: w.byteLen }, { op: 'write', byteLen: DMABUF_SIZE });
    t.ok(buf.withCpuAccess('read', () => view.equals(src)), 'the WRITE landed in the dma-buf (read through its own mapping)');

    const back = s.buffer(4096);
    const backMr = s.mr(back, 'local-write');
    await s.a.post([{ op: 'read', local: backMr, remote: mr, remoteOffset: 3 * 4096 + 100, length: 4096 }])[0];
    t.ok(back.equals(src.subarray(3 * 4096 + 100, 4 * 4096 + 100)), 'a READ of a slice across pages matches');

    // The dma-buf MR as the local side: the requester copies out of it.
    const fresh = pattern(DMABUF_SIZE, 9);
    buf.withCpuAccess('write', () => fresh.copy(view));
    const dst = s.buffer(DMABUF_SIZE);
    await s.a.write(mr, s.mr(dst).remote());
    t.ok(dst.equals(fresh), 'a WRITE from the dma-buf MR carries what its mapping holds');

    const msg = s.pattern(3000, 5);
    const recv = s.b.recv(mr);
    await s.a.send(s.mr(msg, 'local-write'));
    t.equal((await recv).byteLen, 3000);
    t.ok(buf.withCpuAccess('read', () => view.subarray(0, 3000).equals(msg) && view.subarray(3000).equals(fresh.subarray(3000))), 'the SEND landed in the dma-buf, the rest untouched');
  });
}

t.test('registerDmaBuf on rxe: an offset and iova into the buffer; ranges past it refused; no atomics', rxeDmaBuf, async (t) => {
  const s = setup(t);
  const buf = heapBuffer(t, DMABUF_SIZE);
  using m = buf.map();
  const view = Buffer.from(m.buffer, 0, DMABUF_SIZE);
  const offset = 4096 + 512;
  const mr = s.pd.registerDmaBufSync(buf, { offset, length: 4096, iova: 0x100000n + 512n, access: [...RW, 'remote-atomic'] });
  t.teardown(() => mr.close());
  t.equal(mr.addr, 0x100200n, 'addr is the iova (libibverbs reports the offset)');
  const remote = mr.remote();
  const src = s.pattern(4096, 13);
  await s.a.write(s.mr(src, 'local-write'), remote);
  t.ok(buf.withCpuAccess('read', () => view.subarray(offset, offset + 4096).equals(src) && view.subarray(0, offset).every((b) => b === 0)), 'the WRITE landed at the offset, nothing before it');
  await t.rejects(s.a.write(s.mr(s.buffer(8), 'local-write'), { addr: remote.addr + 4096n, rkey: mr.rkey, length: 8 }), { status: 'IBV_WC_REM_ACCESS_ERR', message: /remote access error/ }, 'a WRITE past the MR is a remote access error');
  // Atomics need a struct page, which rxe does not take from a dma-buf.
  const s2 = setup(t);
  const mr2 = s2.pd.registerDmaBufSync(buf, { length: 4096, access: [...RW, 'remote-atomic'] });
  t.teardown(() => mr2.close());
  await t.rejects(s2.a.fetchAndAdd(s2.mr(s2.buffer(8), 'local-write'), { ...mr2.remote(), length: 8 }, 1n), { status: 'IBV_WC_REM_ACCESS_ERR', message: /remote access error/ }, 'fetch-and-add on a dma-buf MR fails');
  t.throws(() => s.pd.registerDmaBufSync(buf, { offset: DMABUF_SIZE - 4096, length: 8192, access: RW }), { code: 'EINVAL' }, 'past the end of the buffer');
  t.throws(() => s.pd.registerDmaBufSync(buf, { offset: 100, length: 4096, iova: 0n, access: RW }), { code: 'EINVAL' }, 'offset and iova in different places of a page (ib core)');
});

t.test('registerDmaBuf on rxe: the dma-buf fd and the MR closed in either order', rxeDmaBuf, async (t) => {
  const s = setup(t);
  {
    // fd first: the MR holds the buffer, and data still moves into it.
    const buf = heapBuffer(t, DMABUF_SIZE);
    using m = buf.map();
    const mr = s.pd.registerDmaBufSync(buf, { length: DMABUF_SIZE, access: RW });
    buf.close();
    const src = s.pattern(DMABUF_SIZE, 21);
    await s.a.write(s.mr(src, 'local-write'), mr.remote());
    t.ok(Buffer.from(m.buffer, 0, DMABUF_SIZE).equals(src), 'a WRITE after the fd closed lands in the buffer (read through the mapping still held)');
    await mr[Symbol.asyncDispose]();
    t.ok(mr.closed, 'the MR closes after its fd');
  }
  {
    // MR first: the buffer stays the exporter's, detached from rxe.
    const buf = heapBuffer(t, DMABUF_SIZE);
    const mr = s.pd.registerDmaBufSync(buf, { length: DMABUF_SIZE, access: RW });
    const before = attachedDevices(buf);
    await mr[Symbol.asyncDispose]();
    const after = attachedDevices(buf);
    if (before && after) {
      t.ok(before.includes(DEV), `attached while registered: ${before.join(', ')}`);
      t.notOk(after.includes(DEV), `detached once deregistered: ${after.join(', ') || 'none'}`);
    }
    using m = buf.map();
    buf.withCpuAccess('write', () => new Uint8Array(m.buffer).fill(7));
    t.ok(buf.withCpuAccess('read', () => new Uint8Array(m.buffer).every((b) => b === 7)), 'the buffer still maps and holds data');
    buf.close();
    t.ok(buf.closed);
  }
});

if (!inGuest) t.pass('guest-only file');
