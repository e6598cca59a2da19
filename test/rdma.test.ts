// RDMA on the host: libibverbs and librdmacm are loaded at run time, so the
// addon works without them and a missing one is a clear error; argument
// errors come before any verb. The verbs themselves run in the guest
// (test/guest/rdma.test.ts, rxe0): this machine has no RDMA device.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Rdma } from '../lib/index';
import { leakGuard, report, runTs } from './helpers';

const leaks = leakGuard();
const fixture = path.join(__dirname, 'fixtures', 'rdma-library.ts');

interface Attempt {
  ok?: boolean;
  code?: string;
  message?: string;
  library?: string;
  symbol?: string;
}
interface Report {
  library: { verbs: boolean; rdmacm: boolean; dmabuf: boolean; reason?: string };
  devices: Attempt;
  open: Attempt;
  listen: Attempt;
  connect: Attempt;
  memfdWorks: boolean;
}

const run = (env: NodeJS.ProcessEnv) => report<Report>(runTs(fixture, [], env));
const hasDevices = fs.existsSync('/sys/class/infiniband');

t.test('without libibverbs the addon loads; RDMA calls name the library', async (t) => {
  const r = run({ P2PDMA_LIBIBVERBS: 'libibverbs-missing.so.1' });
  t.equal(r.memfdWorks, true, 'the rest of the addon works');
  t.equal(r.library.verbs, false);
  t.match(r.library.reason, /libibverbs-missing\.so\.1 could not be loaded.*install libibverbs1/);
  for (const k of ['devices', 'open'] as const) {
    t.equal(r[k].code, 'ERR_P2PDMA_RDMA_LIBRARY', `${k}()`);
    t.equal(r[k].library, 'libibverbs-missing.so.1');
    t.match(r[k].message, /cannot open shared object file/);
  }
});

t.test('a libibverbs without the verbs names the missing symbol', async (t) => {
  // libc loads but has none of them.
  const r = run({ P2PDMA_LIBIBVERBS: 'libc.so.6' });
  t.equal(r.devices.code, 'ERR_P2PDMA_RDMA_LIBRARY');
  t.equal(r.devices.symbol, 'ibv_get_device_list');
  t.match(r.devices.message, /^libc\.so\.6 has no ibv_get_device_list: .*undefined symbol/);
});

t.test('without librdmacm, listen() and connect() name it; the verbs still load', async (t) => {
  const r = run({ P2PDMA_LIBRDMACM: 'librdmacm-missing.so.1' });
  t.equal(r.library.verbs, true);
  t.equal(r.library.rdmacm, false);
  t.equal(r.listen.code, 'ERR_P2PDMA_RDMA_LIBRARY');
  t.equal(r.connect.code, 'ERR_P2PDMA_RDMA_LIBRARY');
  t.match(r.listen.message, /librdmacm-missing\.so\.1 could not be loaded.*install librdmacm1/);
});

t.test('rdma-core here: both libraries load, ibv_reg_dmabuf_mr is found', async (t) => {
  const l = Rdma.library();
  t.same(l, { verbs: true, rdmacm: true, dmabuf: true });
});

t.test('no RDMA device on this host: devices() is empty, open() says why', { skip: hasDevices && 'this host has RDMA devices' }, async (t) => {
  t.same(Rdma.devices(), []);
  t.throws(() => Rdma.open('rxe0'), { code: 'ENOSYS', syscall: 'ibv_get_device_list', message: /'rxe0' \(this kernel has no RDMA devices/ });
  t.throws(() => Rdma.listen({ address: '127.0.0.1', port: 0 }), { code: 'ENODEV', syscall: 'rdma_create_event_channel' });
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1 }), { code: 'ENODEV' });
});

t.test('argument errors come before any verb', async (t) => {
  t.throws(() => Rdma.open(1 as never), { code: 'ERR_INVALID_ARG_TYPE', message: /"name" argument must be of type string/ });
  t.throws(() => Rdma.loopbackPair({} as never), { code: 'ERR_INVALID_ARG_TYPE', message: /ProtectionDomain/ });
  t.throws(() => Rdma.listen({ address: 'localhost', port: 0 }), { code: 'ERR_INVALID_ARG_VALUE', message: /IPv4 or IPv6/ });
  t.throws(() => Rdma.listen({ address: '127.0.0.1', port: 70000 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => Rdma.listen({ address: '127.0.0.1', port: 0, backlog: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => Rdma.listen(null as never), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1, timeoutMs: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1, signal: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1, signal: ac.signal }), { code: 'ABORT_ERR' });
});

leaks.check(t);
