// The pvrdma lane's own checks (`make test-pvrdma`): QEMU's pvrdma function
// is bound, its port is up on the vmxnet3 beside it with a usable RoCE GID,
// and rdma-core's own RC ping-pong moves data through it (the reference the
// addon's RDMA tests, run in the same lane, are judged against).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { readSysfs } from '../helpers';
import { Rdma } from '../../../lib';
import { hostMemory, pattern, pvrdmaLane as lane, setup } from '../rdma-helpers';

const PVRDMA_DEVICE = 'vmw_pvrdma0';
const PVRDMA_ID = ['0x15ad', '0x0820'];
const VMXNET3_ID = ['0x15ad', '0x07b0'];
const V4_GID = '0000:0000:0000:0000:0000:ffff:0a00:020f'; // 10.0.2.15, the guest's eth0

function pciFunctions(): { bdf: string; id: string[]; driver?: string }[] {
  const root = '/sys/bus/pci/devices';
  return fs.readdirSync(root).map((bdf) => ({
    bdf,
    id: [readSysfs(`${root}/${bdf}/vendor`), readSysfs(`${root}/${bdf}/device`)],
    driver: fs.existsSync(`${root}/${bdf}/driver`) ? fs.readlinkSync(`${root}/${bdf}/driver`).split('/').pop() : undefined,
  }));
}

t.test('the pvrdma function is bound to vmw_pvrdma, beside vmxnet3 in the same slot', lane, async (t) => {
  const fns = pciFunctions();
  const rdma = fns.find((f) => f.id.join() === PVRDMA_ID.join());
  const nic = fns.find((f) => f.id.join() === VMXNET3_ID.join());
  if (!t.ok(rdma, 'a 15ad:0820 function') || !t.ok(nic, 'a 15ad:07b0 function')) return;
  t.equal(rdma!.driver, 'vmw_pvrdma');
  t.equal(nic!.driver, 'vmxnet3');
  t.equal(rdma!.bdf.slice(0, -1), nic!.bdf.slice(0, -1), 'same bus and slot, functions 1 and 0');
  t.ok(fs.existsSync(`/sys/class/infiniband/${PVRDMA_DEVICE}`), `${PVRDMA_DEVICE} registered`);
  t.notOk(fs.existsSync('/sys/class/infiniband/rxe0'), 'no soft-RoCE in this lane');
});

// QEMU 7.2's pvrdma offers the guest RoCE v1 GIDs only (measured: every GID
// of vmw_pvrdma0 is 'IB/RoCE v1'); it maps each to the backend rxe0's own
// GID, which is RoCE v2.
t.test('its port is ACTIVE on eth0 with the (RoCE v1) GID of 10.0.2.15', lane, async (t) => {
  const port = `/sys/class/infiniband/${PVRDMA_DEVICE}/ports/1`;
  t.equal(readSysfs(`${port}/state`), '4: ACTIVE');
  const indexes = fs.readdirSync(`${port}/gids`).map(Number).sort((a, b) => a - b);
  const v4 = indexes.find((i) => readSysfs(`${port}/gids/${i}`) === V4_GID);
  if (!t.ok(v4 !== undefined, `GID ${V4_GID} in the table (QEMU's rdmacm-mux stand-in accepted it)`)) return;
  t.equal(readSysfs(`${port}/gid_attrs/types/${v4}`), 'IB/RoCE v1');
  t.equal(readSysfs(`${port}/gid_attrs/ndevs/${v4}`), 'eth0');
});

t.test("rdma-core's ibv_rc_pingpong runs an RC loopback through pvrdma", lane, async (t) => {
  const port = `/sys/class/infiniband/${PVRDMA_DEVICE}/ports/1`;
  const gid = fs.readdirSync(`${port}/gids`).find((i) => readSysfs(`${port}/gids/${i}`) === V4_GID) ?? '0';
  const args = ['-d', PVRDMA_DEVICE, '-g', gid, '-n', '20', '-s', '4096', '-c'];
  const server = spawn('ibv_rc_pingpong', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let serverOut = '';
  server.stdout.on('data', (d) => (serverOut += d));
  server.stderr.on('data', (d) => (serverOut += d));
  const exited = new Promise<number | null>((resolve) => server.on('close', resolve));
  // The client retries its TCP connect until the server listens.
  let client;
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    client = spawnSync('ibv_rc_pingpong', [...args, '127.0.0.1'], { encoding: 'utf8', timeout: 120_000 });
    if (!/Couldn't connect/.test(client.stderr)) break;
  }
  // A server whose client never got through waits for it forever.
  const killer = setTimeout(() => server.kill('SIGKILL'), 60_000);
  const serverStatus = await exited;
  clearTimeout(killer);
  t.equal(client!.status, 0, `client: ${client!.stdout}${client!.stderr}`);
  t.equal(serverStatus, 0, `server: ${serverOut}`);
  t.match(client!.stdout, /\d+ bytes in [\d.]+ seconds/, 'data moved both ways, checked (-c)');
});

// QEMU 7.2 maps an MR from the guest's page list and checks (CVE-2021-3582)
// that the pages number the length rounded up to pages, ignoring where in
// its first page the MR starts. The addon's RDMA tests register page-aligned
// memory here (rdma-helpers' hostMemory()).
t.test("QEMU's pvrdma refuses an unaligned MR that spans one page more than its length needs", lane, async (t) => {
  const s = setup(t);
  const pages = hostMemory(3 * 4096);
  const spans = Buffer.from(pages, 256, 4096); // 4096 bytes over two pages
  t.throws(() => s.pd.registerMemorySync(spans, { access: ['local-write', 'remote-write'] }), {
    code: 'EFAULT',
    syscall: 'ibv_reg_mr',
    message: /pvrdma device; QEMU's .* page boundary/,
  });
  // Unaligned within the pages its length needs: registered, and the
  // offset into its first page is kept (a receive lands where it should).
  const inside = Buffer.from(pages, 4096 + 256, 2048);
  const inMr = s.mr(inside, 'local-write');
  const received = s.b.recv(inMr);
  await s.a.send(s.mr(s.pattern(2048, 4), 'local-write'));
  t.equal((await received).byteLen, 2048);
  t.ok(inside.equals(pattern(2048, 4)), 'the data landed at the unaligned start');
  t.ok(Buffer.from(pages, 4096, 256).equals(Buffer.alloc(256)), 'nothing before it');
  t.ok(Buffer.from(pages, 4096 + 256 + 2048).equals(Buffer.alloc(4096 - 256 - 2048 + 4096)), 'nothing after it');
});

// QEMU's backend (hw/rdma/rdma_backend.c) posts every send work request of
// the guest to the backend QP with opcode IBV_WR_SEND and without the
// remote address and key, so RDMA WRITE cannot work through pvrdma: the
// peer gets a SEND (with no receive posted it answers RNR NAKs forever).
t.test("QEMU's pvrdma turns an RDMA WRITE into a SEND", lane, async (t) => {
  const s = setup(t);
  const src = s.mr(s.pattern(4096, 8), 'local-write');
  const target = s.buffer(4096);
  const targetMr = s.mr(target);
  const inbox = s.buffer(4096);
  const received = s.b.recv(s.mr(inbox, 'local-write'));
  const written = await s.a.write(src, targetMr);
  t.equal(written.op, 'write', 'the WRITE completes for the requester');
  const r = await received;
  t.equal(r.byteLen, 4096, "the peer's receive consumed it");
  t.ok(inbox.equals(pattern(4096, 8)), 'its data went to the receive buffer');
  t.ok(target.equals(Buffer.alloc(4096)), 'and not to the remote address the WRITE named');
});

// pvrdma reports max_qp_init_rd_atom 0: a QP can have no RDMA READ
// outstanding, and one posted would wait forever for a credit.
t.test('RDMA READ is refused up front: the device grants no outstanding READ', lane, async (t) => {
  const s = setup(t);
  t.equal(s.ctx.query().maxQpInitRdAtom, 0);
  t.equal(s.a.maxRdAtomic, 0, "connect() took the device's limit");
  const local = s.mr(s.buffer(4096), 'local-write');
  const remote = s.mr(s.buffer(4096));
  await t.rejects(s.a.read(local, remote), {
    code: 'EOPNOTSUPP',
    syscall: 'ibv_post_send',
    message: /no RDMA READ outstanding \(vmw_pvrdma0 offers maxQpInitRdAtom 0\)/,
  });
  t.same(s.a.outstanding, { send: 0, recv: 0 }, 'nothing posted');
});

/** Interrupts taken by vmw_pvrdma's MSI-X vectors 1 and up (completion notifications). */
function completionIrqs(): number {
  return fs
    .readFileSync('/proc/interrupts', 'utf8')
    .split('\n')
    .filter((l) => l.includes('vmw_pvrdma') && !/\s0-edge\s/.test(l))
    .reduce((n, l) => n + Number(l.trim().split(/\s+/)[1]), 0);
}

// Measured with rdma-core first: `ibv_rc_pingpong -e` (completion events)
// times out where the polling ping-pong passes, and the driver's completion
// vectors count no interrupt. The lane's RDMA tests therefore poll their CQ
// (rdma-helpers' setup(): loopbackPair's busyPoll).
t.test("QEMU's pvrdma raises no completion interrupt: an event-driven CQ never hears of a SEND", lane, async (t) => {
  const ctx = Rdma.open(PVRDMA_DEVICE);
  const pd = ctx.allocPd();
  const [a, b] = Rdma.loopbackPair(pd);
  const msg = Buffer.from(hostMemory(4096)).fill(0x3c);
  const inbox = Buffer.from(hostMemory(4096));
  const outMr = pd.registerMemorySync(msg, { access: 'local-write' });
  const inMr = pd.registerMemorySync(inbox, { access: 'local-write' });
  const before = completionIrqs();
  const done = Promise.allSettled([b.recv(inMr), a.send(outMr)]);
  const heard = await Promise.race([done.then(() => true), new Promise<boolean>((r) => setTimeout(r, 20_000, false))]);
  t.equal(heard, false, 'neither completion reached the event loop in 20 s');
  t.ok(inbox.equals(msg), 'although the SEND was delivered');
  t.equal(completionIrqs(), before, "vmw_pvrdma's completion vectors took no interrupt");
  a.close();
  b.close();
  const results = await done;
  t.same(results.map((r) => r.status), ['rejected', 'rejected'], 'closing the pair flushed both requests');
  outMr.close();
  inMr.close();
  pd.close();
  ctx.close();
});
