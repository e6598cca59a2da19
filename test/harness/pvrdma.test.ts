// The pvrdma lane's pure parts: its QEMU arguments, and the GID relay's
// decoding of QEMU's RDMA_GID_STATUS_CHANGED events (the nested run itself is
// `make test-pvrdma`).
import t from 'tap';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { qemuArgs, QemuArgsOptions } from '../../harness/vm/qemu-args';
import { gidAddress, gidAddressCommand, parseGidEvent, parsePvrdmaBackend } from '../../harness/vm/pvrdma';
import { OP_MAD, OP_REG, OP_UNREG, RDMACM_MUX_MSG_SIZE, startRdmacmMux } from '../../harness/vm/rdmacm-mux';
import { baseQemuOptions, valueOf } from './qemu-args-fixture';

const base: QemuArgsOptions = { ...baseQemuOptions, memoryMiB: 1024, cpus: 1 };

t.test('pvrdma sits in function 1 of the vmxnet3 slot, backed by the given device', async (t) => {
  const args = qemuArgs({ ...base, pvrdma: { ibdev: 'rxe0', netdev: 'eth0' } });
  const devices = valueOf(args, '-device');
  t.ok(devices.includes('vmxnet3,netdev=pv0,mac=52:54:00:12:34:57,addr=10.0,multifunction=on'), 'not the first level eth0\'s MAC (QEMU\'s default)');
  t.ok(devices.includes('pvrdma,ibdev=rxe0,netdev=eth0,mad-chardev=mad,addr=10.1'));
  t.notOk(devices.some((d) => d.startsWith('virtio-net')), 'vmxnet3 is the only NIC, so it is eth0');
  t.ok(valueOf(args, '-qmp').includes('unix:/r/qmp-pvrdma.sock,server=on,wait=off'), 'a second monitor for GID events');
});

t.test('pvrdma runs on shared RAM only: guest RAM and the ivshmem backend are share=on', async (t) => {
  const args = qemuArgs({ ...base, pvrdma: { ibdev: 'rxe0', netdev: 'eth0' } });
  t.same(valueOf(args, '-M'), ['q35,memory-backend=ram']);
  const objects = valueOf(args, '-object');
  t.ok(objects.includes('memory-backend-ram,id=ram,size=1024M,share=on'));
  t.ok(objects.includes('memory-backend-ram,id=ivshmem,size=16M,share=on'));
});

t.test('without pvrdma the command line keeps virtio-net and private RAM', async (t) => {
  const args = qemuArgs(base);
  t.same(valueOf(args, '-M'), ['q35']);
  t.ok(valueOf(args, '-device').includes('virtio-net-pci,netdev=n0'));
  t.notOk(args.some((a) => a.includes('share=on') || a.includes('pvrdma')));
});

t.test('a pvrdma backend is IBDEV:NETDEV', async (t) => {
  t.same(parsePvrdmaBackend('rxe0:eth0'), { ibdev: 'rxe0', netdev: 'eth0' });
  t.throws(() => parsePvrdmaBackend('rxe0'), { name: 'TypeError', message: /IBDEV:NETDEV/ });
  t.throws(() => parsePvrdmaBackend('rxe0:eth0;reboot'), TypeError);
});

// GID ::ffff:10.0.2.15 as QEMU 7.2 prints it: each half is the u64 a
// little-endian host reads from the big-endian bytes (above 2^53 here too).
const v4Event =
  '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RDMA_GID_STATUS_CHANGED", ' +
  '"data": {"netdev": "eth0", "gid-status": true, "interface-id": 1081426907766915072, "subnet-prefix": 0}}';
// fe80::5054:ff:fe12:3456: both halves above 2^53, which JSON.parse would round.
const v6Event =
  '{"event": "RDMA_GID_STATUS_CHANGED", "data": {"netdev": "eth0", "gid-status": false, ' +
  '"interface-id": 6211610672459961426, "subnet-prefix": 33022}}';

t.test('a GID event decodes to the raw GID bytes, halves above 2^53 intact', async (t) => {
  const v4 = parseGidEvent(v4Event)!;
  t.equal(v4.netdev, 'eth0');
  t.equal(v4.added, true);
  t.equal(v4.gid.toString('hex'), '00000000000000000000ffff0a00020f');
  const v6 = parseGidEvent(v6Event)!;
  t.equal(v6.added, false);
  t.equal(v6.gid.toString('hex'), 'fe80000000000000525400fffe123456');
  t.equal(parseGidEvent('{"event": "DEVICE_DELETED", "data": {"device": "nvme0"}}'), undefined);
});

t.test('a GID maps to the address and ip command that give it to the backend netdev', async (t) => {
  const v4 = parseGidEvent(v4Event)!;
  t.same(gidAddress(v4.gid), { family: 4, address: '10.0.2.15' });
  t.same(gidAddressCommand(v4), ['-4', 'addr', 'add', '10.0.2.15/32', 'dev', 'eth0']);
  const v6 = parseGidEvent(v6Event)!;
  t.same(gidAddress(v6.gid), { family: 6, address: 'fe80:0:0:0:5254:ff:fe12:3456' });
  t.same(gidAddressCommand(v6), ['-6', 'addr', 'del', 'fe80:0:0:0:5254:ff:fe12:3456/64', 'dev', 'eth0']);
});

t.test('the rdmacm-mux stand-in accepts GID (un)registration and refuses MADs', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mux-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const mux = await startRdmacmMux(path.join(dir, 'mad.sock'));
  t.teardown(() => mux.close());
  const client = net.connect(path.join(dir, 'mad.sock'));
  await once(client, 'connect');
  t.teardown(() => client.destroy());
  const request = (op: number, tag: number) => {
    const m = Buffer.alloc(RDMACM_MUX_MSG_SIZE);
    m.writeUInt32LE(op, 4);
    m[8] = tag; // first byte of the sgid, echoed back
    return m;
  };
  // QEMU writes whole messages, but a stream may split or join them.
  const reg = request(OP_REG, 0xfe);
  client.write(reg.subarray(0, 100));
  client.write(Buffer.concat([reg.subarray(100), request(OP_MAD, 1), request(OP_UNREG, 2)]));
  let got = Buffer.alloc(0);
  while (got.length < 3 * RDMACM_MUX_MSG_SIZE) got = Buffer.concat([got, (await once(client, 'data'))[0] as Buffer]);
  const answers = [0, 1, 2].map((i) => got.subarray(i * RDMACM_MUX_MSG_SIZE, (i + 1) * RDMACM_MUX_MSG_SIZE));
  t.same(answers.map((a) => [a.readUInt32LE(0), a.readUInt32LE(4), a[8], a.readUInt32LE(24)]), [
    [1, OP_REG, 0xfe, 0], // RESP, OK
    [1, OP_MAD, 1, 1], // RESP, EINVAL: no MAD relay
    [1, OP_UNREG, 2, 0],
  ]);
  t.same(mux.counts, { reg: 1, unreg: 1, mad: 1, other: 0 });
});
