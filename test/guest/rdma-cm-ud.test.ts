// rdma_cm beyond RC connections, on rxe0: a listener handing out
// connections as an async iterator, UD through RDMA_PS_UDP (resolve, SIDR,
// the peer's address handle and Q_Key, SEND/RECV both ways) and IP
// multicast (join, a receive on the group, leave).
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { Rdma, type RdmaCompletion, type RdmaConnection } from '../../lib';
import { guest } from './helpers';
import { ADDR, hostBuffer, hostPattern, onPvrdma } from './rdma-helpers';

// pvrdma's lane has no relay for rdma_cm's MADs (rdma-helpers.ts).
const rxeOnly = guest.skip ? guest : { skip: onPvrdma ? 'pvrdma lane: rdma_cm is checked on rxe' : false };
const GROUP = '239.1.2.7';

/** A receive that has not completed in `ms` resolves 'timeout' (never a hang). */
function within<T>(p: Promise<T>, ms = 5000): Promise<T | 'timeout'> {
  return Promise.race([p, sleep(ms).then(() => 'timeout' as const)]);
}

t.test('listener: for await hands out each connection; closing the listener ends the loop', rxeOnly, async (t) => {
  const listener = Rdma.listen({ address: ADDR, port: 0 });
  const got: RdmaConnection[] = [];
  const loop = (async () => {
    for await (const conn of listener.connections({ cqSize: 16 })) got.push(conn);
  })();
  const clients = [await Rdma.connect({ address: ADDR, port: listener.port }), await Rdma.connect({ address: ADDR, port: listener.port })];
  while (got.length < 2) await sleep(10);
  t.equal(got.length, 2, 'two connects, two connections');
  t.same(got.map((c) => c.qp.state), ['RTS', 'RTS']);
  t.same(new Set(got.map((c) => c.remote.port)), new Set(clients.map((c) => c.local.port)), "each is a client's");
  listener.close();
  await loop;
  t.pass('the loop ended when the listener closed');
  for (const c of [...clients, ...got]) c.close();
  // Bad input reaches the loop's first step.
  const l2 = Rdma.listen({ address: ADDR, port: 0 });
  await t.rejects(l2.connections({ signal: AbortSignal.abort() } as never).next(), { code: 'ERR_INVALID_ARG_VALUE', message: /signal/ });
  l2.close();
  t.same(await l2[Symbol.asyncIterator]().next(), { value: undefined, done: true }, 'a closed listener yields nothing');
});

t.test('UD through rdma_cm: connectUd() resolves the listener QP (SIDR); SEND/RECV both ways', rxeOnly, async (t) => {
  const listener = Rdma.listenUd({ address: ADDR, port: 0 });
  t.teardown(() => listener.close());
  const accepted = listener.accept();
  const client = await Rdma.connectUd({ address: ADDR, port: listener.port });
  const server = await accepted;
  t.teardown(() => {
    client.close();
    server.close();
  });
  t.equal(client.qp.type, 'UD');
  t.equal(client.qp.query().state, 'RTS');
  t.equal(server.qp.query().state, 'RTS');
  const peer = client.peer!;
  t.ok(peer, 'the client has the listener side as its peer');
  t.equal(peer.remoteQpn, server.qp.qpNum, "SIDR's reply: the server QP's number");
  t.equal(peer.remoteQkey, server.qp.qkey, "and its Q_Key (rdma_cm's, set through rdma_init_qp_attr)");
  t.equal(server.qp.query().qkey, server.qp.qkey);
  t.equal(server.peer, undefined, 'the listener side learns its peer from the first message');

  // Client -> server.
  const srcBuf = hostPattern(256, 5);
  const cs = client.pd.registerMemorySync(srcBuf, { access: 'local-write' });
  const sdBuf = hostBuffer(40 + 256);
  const sd = server.pd.registerMemorySync(sdBuf, { access: 'local-write' });
  const ssBuf = hostPattern(128, 6);
  const ss = server.pd.registerMemorySync(ssBuf, { access: 'local-write' });
  const cdBuf = hostBuffer(40 + 128);
  const cd = client.pd.registerMemorySync(cdBuf, { access: 'local-write' });
  t.teardown(() => {
    for (const m of [cs, sd, ss, cd]) m.close();
  });
  const r1 = server.qp.recv(sd);
  await client.qp.send(cs, 200, { ...peer });
  const c1 = await within(r1);
  if (c1 === 'timeout') return t.fail('the server received nothing');
  t.equal(c1.byteLen, 40 + 200);
  t.equal(c1.srcQp, client.qp.qpNum);
  t.ok(sdBuf.subarray(40, 240).equals(srcBuf.subarray(0, 200)), 'the payload follows the GRH');
  // Server -> client: the way back from the message's GRH and completion.
  const back = server.pd.createAhFromCompletion(c1 as RdmaCompletion, sdBuf.subarray(0, 40));
  t.teardown(() => back.close());
  t.equal(back.gid, client.qp.info().gid, "the sender's GID, from the GRH");
  const r2 = client.qp.recv(cd);
  await server.qp.send(ss, 100, { ah: back, remoteQpn: c1.srcQp!, remoteQkey: client.qp.qkey });
  const c2 = await within(r2);
  if (c2 === 'timeout') return t.fail('the client received nothing');
  t.equal(c2.byteLen, 40 + 100);
  t.equal(c2.srcQp, server.qp.qpNum);
  t.ok(cdBuf.subarray(40, 140).equals(ssBuf.subarray(0, 100)), 'the reply landed');

  // Bad input.
  await t.rejects(Rdma.connectUd({ address: ADDR, port: listener.port, privateData: Buffer.alloc(4) } as never), { code: 'ERR_INVALID_ARG_VALUE', message: /privateData.*UD/ });
  await t.rejects(Rdma.connectUd({ address: 'nope', port: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => server.pd.createAhFromCompletion({ wrId: 1, op: 'send', byteLen: 0 }, Buffer.alloc(40)), { code: 'ERR_INVALID_ARG_VALUE', message: /UD/ });
  t.throws(() => server.pd.createAhFromCompletion(c1 as RdmaCompletion, Buffer.alloc(8)), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(listener.accept({ retryCount: 3 } as never), { code: 'ERR_INVALID_ARG_VALUE', message: /UD/ });
  // Nobody listens there: the SIDR request is answered unreachable.
  const free = Rdma.listenUd({ address: ADDR, port: 0 });
  const port = free.port;
  free.close();
  await t.rejects(Rdma.connectUd({ address: ADDR, port, timeoutMs: 2000 }), { code: 'ERR_P2PDMA_RDMA_CM' });
  // Closed: a pending accept rejects, the iterator ends.
  const pending = listener.accept();
  listener.close();
  await t.rejects(pending, { code: 'ERR_P2PDMA_CLOSED' });
  t.same(await listener[Symbol.asyncIterator]().next(), { value: undefined, done: true });
});

t.test('multicast: joinMulticast() attaches a UD QP; a SEND to the group reaches the members; leave() detaches', rxeOnly, async (t) => {
  const a = await Rdma.joinMulticast({ address: GROUP, localAddress: ADDR });
  const b = await Rdma.joinMulticast({ address: GROUP, localAddress: ADDR });
  t.teardown(() => {
    a.close();
    b.close();
  });
  t.equal(a.address, GROUP);
  t.equal(a.dest.remoteQpn, 0xffffff, 'multicast QP number');
  t.equal(a.qp.qkey, a.dest.remoteQkey, "the member QP takes the group's Q_Key");
  t.match(a.gid, /^0000:0000:0000:0000:0000:ffff:ef01:0207$/, 'the group as an IPv4-mapped GID');
  const srcBuf = hostPattern(64, 9);
  const src = a.pd.registerMemorySync(srcBuf, { access: 'local-write' });
  const dstBuf = hostBuffer(40 + 64);
  const dst = b.pd.registerMemorySync(dstBuf, { access: 'local-write' });
  t.teardown(() => {
    src.close();
    dst.close();
  });
  const r = b.qp.recv(dst);
  await a.qp.send(src, 64, { ...a.dest });
  const c = await within(r);
  if (c === 'timeout') return t.fail("b's QP received nothing from the group");
  t.equal(c.byteLen, 40 + 64);
  t.equal(c.srcQp, a.qp.qpNum, "the sender's QP");
  t.ok(dstBuf.subarray(40).equals(srcBuf), 'the group message landed');
  // Leaving detaches the QP; it stays open for close().
  b.leave();
  t.equal(b.left, true);
  t.equal(b.qp.closed, false);
  // Bad input.
  await t.rejects(Rdma.joinMulticast({ address: ADDR, localAddress: ADDR }), { code: 'ERR_INVALID_ARG_VALUE', message: /multicast address/ });
  await t.rejects(Rdma.joinMulticast({ address: GROUP, localAddress: 5 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(Rdma.joinMulticast({ address: GROUP, localAddress: '10.9.9.9' }), { code: /^(EADDRNOTAVAIL|ENODEV|EINVAL)$/ });
});
