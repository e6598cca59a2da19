// Two-node runs (vm run --nodes 2): each node's plan and QEMU command line,
// without booting anything.
import t from 'tap';
import { fabricArgs, nodePlans, parseNodeEnv } from '../../harness/vm/nodes';
import { qemuArgs } from '../../harness/vm/qemu-args';
import { baseQemuOptions, valueOf } from './qemu-args-fixture';

const [a, b] = nodePlans('/run');

t.test('two nodes, a and b, on 10.0.3.1 and 10.0.3.2, each told its role and the other\'s address', async (t) => {
  t.same([a.role, b.role], ['a', 'b']);
  t.same(a.env, { P2PDMA_NODE_ROLE: 'a', P2PDMA_NODE_ADDR: '10.0.3.1', P2PDMA_PEER_ADDR: '10.0.3.2' });
  t.same(b.env, { P2PDMA_NODE_ROLE: 'b', P2PDMA_NODE_ADDR: '10.0.3.2', P2PDMA_PEER_ADDR: '10.0.3.1' });
  t.not(a.resultsDir, b.resultsDir, 'results (console log, NVMe images) apart');
  t.equal(a.resultsDir, '/run/node-a');
});

t.test('the wire: each node binds its own datagram socket and sends to the other\'s', async (t) => {
  t.equal(a.fabric.remoteSocket, b.fabric.localSocket);
  t.equal(b.fabric.remoteSocket, a.fabric.localSocket);
  t.not(a.fabric.localSocket, b.fabric.localSocket);
  t.not(a.fabric.mac, b.fabric.mac, 'distinct MACs on one wire');
  t.same(fabricArgs(a.fabric), [
    '-netdev', 'dgram,id=n0,local.type=unix,local.path=/run/fabric-a.sock,remote.type=unix,remote.path=/run/fabric-b.sock',
    '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:00:03:01',
  ]);
});

t.test('a node\'s QEMU line: the fabric NIC instead of the user-mode one, its own NVMe pair with CMBs', async (t) => {
  for (const plan of [a, b]) {
    const args = qemuArgs({
      ...baseQemuOptions,
      resultsDir: plan.resultsDir,
      nvmeImages: [`${plan.resultsDir}/nvme0.img`, `${plan.resultsDir}/nvme1.img`],
      fabric: plan.fabric,
    });
    const netdevs = valueOf(args, '-netdev');
    t.equal(netdevs.length, 1, 'one NIC');
    t.match(netdevs[0], new RegExp(`^dgram,id=n0,local\\.type=unix,local\\.path=${plan.fabric.localSocket},`));
    t.ok(valueOf(args, '-device').includes(`virtio-net-pci,netdev=n0,mac=${plan.fabric.mac}`));
    t.same(valueOf(args, '-blockdev').map((x) => /filename=(.*)$/.exec(x)![1]), [`${plan.resultsDir}/nvme0.img`, `${plan.resultsDir}/nvme1.img`]);
    t.equal(valueOf(args, '-device').filter((d) => /^nvme,.*cmb_size_mb=64/.test(d)).length, 2);
    t.same(valueOf(args, '-serial'), [`file:${plan.resultsDir}/console.log`]);
  }
  t.ok(valueOf(qemuArgs(baseQemuOptions), '-netdev').includes('user,id=n0,restrict=on'), 'one guest keeps the user-mode NIC');
});

t.test('--node-env a|b:NAME=VALUE sets one node\'s environment', async (t) => {
  t.same(parseNodeEnv(['a:X=1', 'b:Y=two=2', 'a:Z=']), { a: { X: '1', Z: '' }, b: { Y: 'two=2' } });
  t.throws(() => parseNodeEnv(['c:X=1']), { name: 'TypeError', message: /N:NAME=VALUE with N a or b, got 'c:X=1'/ });
  t.throws(() => parseNodeEnv(['a:=1']), TypeError);
  t.throws(() => parseNodeEnv(['X=1']), TypeError);
});
