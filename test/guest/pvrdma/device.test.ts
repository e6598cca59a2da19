// The pvrdma lane's own checks (`make test-pvrdma`): QEMU's pvrdma function
// is bound, its port is up on the vmxnet3 beside it with a usable RoCE GID,
// and rdma-core's own RC ping-pong moves data through it (the reference the
// addon's RDMA tests, run in the same lane, are judged against).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { guest, readSysfs } from '../helpers';

const onPvrdma = process.env.P2PDMA_RDMA === 'pvrdma';
const lane = guest.skip ? guest : { skip: onPvrdma ? false : 'runs only in the pvrdma lane (make test-pvrdma)' };
export const PVRDMA_DEVICE = 'vmw_pvrdma0';
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
