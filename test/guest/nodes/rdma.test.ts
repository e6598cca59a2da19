// RDMA between two guests (vm run --nodes 2): node A (10.0.3.1) and node B
// (10.0.3.2), rxe0 on each over one wire. The file runs on both nodes; each
// test does its role's half and the two keep in step over a control channel
// (./peer.ts). rdma_cm connect A -> B, SEND/RECV, WRITE into B's host memory
// and READ back; on the patched kernel WRITE/READ on B's NVMe CMB (on the
// baseline kernel B's registration fails and says why); node B's process
// killed under A's outstanding work requests.
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { P2pMem, Rdma, type RdmaConnection as Connection, type RemoteRegion } from '../../../lib';
import { inGuest, kernel, nvmeControllers } from '../helpers';
import { hostBuffer, hostPattern, pattern } from '../rdma-helpers';
import { Control, NODE_ADDR, PEER_ADDR, role, twoNodes } from './peer';

/** This file's control port (each two-node file has its own). */
const CONTROL_PORT = 7301;
const SIZE = 1 << 20;
const ACCESS = ['local-write', 'remote-write', 'remote-read'] as const;

let ctl: Control;
t.before(async () => {
  if (!twoNodes.skip) ctl = await Control.open(CONTROL_PORT);
});
t.teardown(() => ctl?.close());

/** `p`, or undefined after `ms`; the timer does not outlive it (a pending one keeps node alive). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  const stop = new AbortController();
  try {
    return await Promise.race([p, sleep(ms, undefined, { signal: stop.signal }).catch(() => undefined)]);
  } finally {
    stop.abort();
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function remoteOf(m: Record<string, unknown>): RemoteRegion {
  return { addr: BigInt(m.addr as string), rkey: m.rkey as number, length: m.length as number };
}

/** A's connection to B (B listens on an ephemeral port and says which), closed when the test ends. */
async function connection(t: Test): Promise<Connection> {
  let conn: Connection;
  if (role === 'b') {
    using listener = Rdma.listen({ address: NODE_ADDR, port: 0 });
    const accepted = listener.accept();
    ctl.send({ type: 'listening', port: listener.port });
    conn = await accepted;
  } else {
    const { port } = await ctl.expect('listening');
    conn = await Rdma.connect({ address: PEER_ADDR, port: port as number });
  }
  t.teardown(() => conn.close());
  return conn;
}

/**
 * A's half of a round trip on B's memory: WRITE pattern(seed) there, tell B
 * ('written'), wait until B wrote its own pattern ('rewritten'), READ it back.
 */
async function writeThenReadBack(conn: Connection, remote: RemoteRegion, seed: number): Promise<{ back: Buffer; expected: Buffer }> {
  const src = hostPattern(SIZE, seed);
  using srcMr = await conn.pd.registerMemory(src, 'local-write');
  await conn.qp.write(srcMr, remote);
  ctl.send({ type: 'written', seed });
  const rewritten = await ctl.expect('rewritten');
  const back = hostBuffer(SIZE);
  using backMr = await conn.pd.registerMemory(back, 'local-write');
  await conn.qp.read(backMr, remote);
  return { back, expected: pattern(SIZE, rewritten.seed as number) };
}

t.test('rdma_cm across the wire: A connects to B, SEND/RECV, WRITE into B\'s memory verified on B, READ back', twoNodes, async (t) => {
  const conn = await connection(t);
  t.equal(conn.qp.state, 'RTS');
  t.equal(conn.context.name, 'rxe0');
  if (role === 'b') {
    t.equal(conn.remote.address, PEER_ADDR, 'the peer is node A');
    using inMr = await conn.pd.allocMemory(4096, 'local-write');
    const hello = conn.qp.recv(inMr);
    ctl.send({ type: 'recv-posted' });
    t.equal((await hello).byteLen, 12, 'A\'s SEND arrived');
    const buf = hostBuffer(SIZE);
    using mr = await conn.pd.registerMemory(buf, [...ACCESS]);
    ctl.send({ type: 'mr', addr: mr.addr, rkey: mr.rkey, length: SIZE });
    const { seed } = await ctl.expect('written');
    t.ok(buf.equals(pattern(SIZE, seed as number)), 'A\'s RDMA WRITE landed in B\'s memory, byte for byte');
    pattern(SIZE, 22).copy(buf);
    ctl.send({ type: 'rewritten', seed: 22 });
    const { digest } = await ctl.expect('read');
    t.equal(digest, sha(buf), 'A\'s RDMA READ got what B holds');
  } else {
    t.equal(conn.remote.address, PEER_ADDR, 'connected to node B');
    await ctl.expect('recv-posted');
    const out = hostBuffer(64);
    out.write('hello from a');
    using outMr = await conn.pd.registerMemory(out, 'local-write');
    await conn.qp.send(outMr, 12);
    const { back, expected } = await writeThenReadBack(conn, remoteOf(await ctl.expect('mr')), 21);
    t.ok(back.equals(expected), 'RDMA READ brought B\'s new contents back');
    ctl.send({ type: 'read', digest: sha(back) });
  }
  await ctl.sync('host memory done');
});

t.test(`B's NVMe CMB as the target: ${kernel === 'baseline' ? 'the baseline kernel refuses B\'s registration, and says why' : 'WRITE lands in the CMB, READ comes back'}`, twoNodes, async (t) => {
  const conn = await connection(t);
  if (role === 'b') {
    const c = inGuest ? nvmeControllers()[0] : undefined;
    if (!t.ok(c, 'an NVMe controller with a CMB')) return;
    using cmb = P2pMem.allocate(c!.bdf, SIZE);
    cmb.write(Buffer.alloc(SIZE, 0));
    if (kernel === 'baseline') {
      const refused = await conn.pd.registerMemory(cmb, [...ACCESS]).then(
        (mr) => (mr.close(), undefined),
        (e: Error) => e,
      );
      t.match(refused, {
        code: 'EFAULT',
        syscall: 'ibv_reg_mr',
        message: /^EFAULT: bad address[^,]*, ibv_reg_mr: this kernel cannot pin peer \(device\) memory for RDMA.*kernel-patches\//,
      });
      ctl.send({ type: 'p2p-mr', refused: refused?.message ?? 'registered' });
    } else {
      using mr = await conn.pd.registerMemory(cmb, [...ACCESS]);
      ctl.send({ type: 'p2p-mr', addr: mr.addr, rkey: mr.rkey, length: SIZE });
      const { seed } = await ctl.expect('written');
      t.ok(cmb.read(0, SIZE).equals(pattern(SIZE, seed as number)), 'A\'s RDMA WRITE landed in B\'s CMB');
      cmb.write(pattern(SIZE, 32));
      ctl.send({ type: 'rewritten', seed: 32 });
      await ctl.expect('read');
    }
  } else {
    const m = await ctl.expect('p2p-mr');
    if (kernel === 'baseline') {
      t.match(m.refused, /^EFAULT: .*this kernel cannot pin peer \(device\) memory for RDMA/, 'B reports the refusal');
    } else {
      const { back, expected } = await writeThenReadBack(conn, remoteOf(m), 31);
      t.ok(back.equals(expected), 'RDMA READ from B\'s CMB matches what B wrote there');
      ctl.send({ type: 'read' });
    }
  }
  await ctl.sync('cmb done');
});

/** This process's open fds. */
const fdCount = () => fs.readdirSync('/proc/self/fd').length;

/** rdma_cm ids and QPs the kernel lists for this process (iproute2's `rdma res`), or undefined without the tool. */
function rdmaResources(): { qp: number; cmId: number } | undefined {
  const count = (kind: string) => {
    const r = spawnSync('rdma', ['-j', 'res', 'show', kind], { encoding: 'utf8' });
    if (r.status !== 0) return undefined;
    return (JSON.parse(r.stdout || '[]') as { pid?: number }[]).filter((x) => x.pid === process.pid).length;
  };
  const qp = count('qp');
  const cmId = count('cm_id');
  return qp === undefined || cmId === undefined ? undefined : { qp, cmId };
}

t.test('node B\'s process killed: A\'s outstanding work requests fail with a completion error, and A leaks nothing', twoNodes, async (t) => {
  if (role === 'b') {
    const child = spawn(process.execPath, [path.join(__dirname, 'doomed-peer.js'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
    const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const { listening } = JSON.parse((await lines.next()).value as string) as { listening: number };
    ctl.send({ type: 'listening', port: listening });
    ctl.send({ type: 'mr', ...(JSON.parse((await lines.next()).value as string) as object) });
    await ctl.expect('posted');
    child.kill('SIGKILL');
    t.equal(await exited, 'SIGKILL', 'B\'s peer process killed');
    ctl.send({ type: 'killed' });
    const { verdict } = await ctl.expect('settled');
    t.equal(verdict, 'ok', 'A saw its work requests fail');
    return;
  }
  const fdsBefore = fdCount();
  const resBefore = rdmaResources();
  const { port } = await ctl.expect('listening');
  const conn = await Rdma.connect({ address: PEER_ADDR, port: port as number });
  const remote = remoteOf(await ctl.expect('mr'));
  const src = hostPattern(65536, 5);
  const srcMr = await conn.pd.registerMemory(src, 'local-write');
  const inMr = await conn.pd.allocMemory(4096, 'local-write');
  await conn.qp.write(srcMr, remote);
  // Receives stay outstanding until the peer sends, which it never will.
  const recvs = Array.from({ length: 4 }, () => conn.qp.recv(inMr));
  // Watched from now: the peer's DREQ may flush them before 'killed' arrives.
  const recvsSettled = Promise.allSettled(recvs);
  t.same(conn.qp.outstanding, { send: 0, recv: 4 });
  ctl.send({ type: 'posted' });
  await ctl.expect('killed');
  // Posted after the peer is gone: retried until rxe gives up, or flushed once the DREQ lands.
  const late = Promise.allSettled([conn.qp.write(srcMr, remote)]);
  const all = Promise.all([recvsSettled, late]).then(([r, w]) => [...r, ...w]);
  const settled = await within(all, 120_000);
  let verdict = 'ok';
  if (!t.ok(settled, 'every outstanding work request settled within 120 s')) verdict = 'hung';
  for (const [i, s] of (settled ?? []).entries()) {
    const what = i < recvs.length ? `receive ${i}` : 'the WRITE posted after the kill';
    if (s.status === 'fulfilled') {
      t.fail(`${what} completed`);
      verdict = 'completed';
      continue;
    }
    t.match(s.reason, { code: 'ERR_P2PDMA_RDMA_COMPLETION', status: /^IBV_WC_(WR_FLUSH|RETRY_EXC)_ERR$/, message: /^RDMA (RECV|WRITE) failed: .*\(IBV_WC_/ }, `${what}: ${(s.reason as Error).message}`);
  }
  t.same(conn.qp.outstanding, { send: 0, recv: 0 }, 'nothing outstanding');
  await within(conn.waitDisconnect(), 30_000);
  t.ok(conn.disconnected, 'the connection saw the peer go');
  srcMr.close();
  inMr.close();
  conn.close();
  ctl.send({ type: 'settled', verdict });
  // Pollers let go of their fds on the next turns of the loop.
  for (let i = 0; i < 10 && fdCount() > fdsBefore; i++) await sleep(50);
  t.equal(fdCount(), fdsBefore, 'A\'s fds are back to what they were');
  if (resBefore) t.same(rdmaResources(), resBefore, 'and the kernel lists no QP or cm_id of A\'s left');
});
