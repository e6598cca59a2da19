// RDMA on the host: libibverbs and librdmacm are loaded at run time, so the
// addon works without them and a missing one is a clear error; argument
// errors come before any verb. The verbs themselves run in the guest
// (test/guest/rdma.test.ts, rxe0): this machine has no RDMA device.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { memfd, mmap, Rdma } from '../../lib';
import { native } from '../../lib/core/native';
import { ProtectionDomain, RdmaResource, remoteAddress, resolveTarget } from '../../lib/rdma';
import { leakGuard, report, runTs } from '../helpers';

const leaks = leakGuard();
const fixture = path.join(__dirname, '..', 'fixtures', 'rdma-library.ts');

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
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1, responderResources: 256 }), { code: 'ERR_OUT_OF_RANGE', message: /"options\.responderResources".*<= 255/ });
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1, responderResources: 1.5 }), { code: 'ERR_OUT_OF_RANGE', message: /options\.responderResources/ });
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1, initiatorDepth: -1 }), { code: 'ERR_OUT_OF_RANGE', message: /options\.initiatorDepth/ });
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1, initiatorDepth: '4' as never }), { code: 'ERR_INVALID_ARG_TYPE', message: /options\.initiatorDepth/ });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(Rdma.connect({ address: '127.0.0.1', port: 1, signal: ac.signal }), { code: 'ABORT_ERR' });
});

// Memory under an MR (issue 22 defect 3): only memory JS cannot free under
// the device. Checked on the host through the same resolver the PD uses
// (no RDMA device here), and through a PD whose native side is a stand-in:
// refusals come before any native call.
const SHARED_ADVICE = /pd\.allocMemory\(length\), a SharedArrayBuffer .* or a Mapping/;

t.test('registerMemory refuses memory backed by a non-shared ArrayBuffer, saying why and what to use', async (t) => {
  const ab = new ArrayBuffer(4096);
  const resizable = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(4096, { maxByteLength: 8192 });
  const kinds: [string, unknown][] = [
    ['Buffer', Buffer.alloc(4096)],
    ['Buffer (unpooled)', Buffer.allocUnsafeSlow(4096)],
    ['ArrayBuffer', ab],
    ['Uint8Array', new Uint8Array(4096)],
    ['Float64Array', new Float64Array(512)],
    ['DataView', new DataView(ab, 16)],
    ['resizable ArrayBuffer', resizable],
    ['length-tracking view of a resizable ArrayBuffer', new Uint8Array(resizable)],
  ];
  const F16 = (globalThis as { Float16Array?: new (n: number) => ArrayBufferView }).Float16Array;
  if (F16) kinds.push(['Float16Array', new F16(2048)]);
  for (const [what, target] of kinds) {
    t.throws(() => resolveTarget(target, {}, t.fail), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: /non-shared.*ArrayBuffer .*can be detached by transfer\(\) or postMessage\(\) and its memory freed while the NIC or a remote peer still writes into it/,
    }, what);
    t.throws(() => resolveTarget(target, {}, t.fail), { message: SHARED_ADVICE }, `${what}: says what to use`);
  }
  t.throws(() => resolveTarget(resizable, {}, t.fail), { message: /non-shared, resizable ArrayBuffer/ });
  t.throws(() => resolveTarget('nope', {}, t.fail), { code: 'ERR_INVALID_ARG_TYPE' });
});

t.test('registerMemory takes shared memory and Mappings (and the ArrayBuffers a Mapping made)', async (t) => {
  const sab = new SharedArrayBuffer(8192);
  const r1 = resolveTarget(sab, {}, t.fail);
  t.equal(r1.length, 8192);
  t.equal(r1.mapping, undefined);
  t.ok(r1.args[0] instanceof Uint8Array && (r1.args[0] as Uint8Array).buffer === sab, 'the SharedArrayBuffer itself');
  const b = Buffer.from(sab, 4096, 100);
  const r2 = resolveTarget(b, { offset: 10 }, t.fail);
  t.same([r2.args[1], r2.args[2], r2.length], [10, 90, 90]);
  t.equal((r2.args[0] as Uint8Array).byteOffset, 4096, 'the view keeps its offset');
  const growable = new (SharedArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => SharedArrayBuffer)(4096, { maxByteLength: 8192 });
  t.equal(resolveTarget(new Uint8Array(growable), {}, t.fail).length, 4096, 'a growable SharedArrayBuffer cannot shrink');

  using fd = memfd('rdma-host-test');
  fs.ftruncateSync(fd.fd, 16384);
  const map = mmap(fd, 16384);
  const r3 = resolveTarget(map, { offset: 4096 }, t.fail);
  t.equal(r3.mapping, map);
  t.same(r3.args, [map.address + 4096n, 12288]);
  // The Mapping's own ArrayBuffers are its pages: registered as the Mapping.
  const r4 = resolveTarget(new DataView(map.buffer, 100, 200), {}, t.fail);
  t.equal(r4.mapping, map);
  t.same(r4.args, [map.address + 100n, 200]);
  const r5 = resolveTarget(new Uint32Array(map.window(8192, 4096), 8), { offset: 4 }, t.fail);
  t.equal(r5.mapping, map);
  t.same(r5.args, [map.address + 8192n + 8n + 4n, 4096 - 8 - 4]);
  t.equal(resolveTarget(Buffer.from(map.buffer), {}, t.fail).mapping, map, 'a Buffer over map.buffer');
  const win = map.window(0, 4096);
  map.unmap();
  t.throws(() => resolveTarget(map, {}, t.fail), { code: 'ERR_P2PDMA_CLOSED' });
  t.throws(() => resolveTarget(win, {}, t.fail), { code: 'ERR_P2PDMA_CLOSED' }, "an unmapped Mapping's window");
});

/** A PD whose native side is a stand-in: what runs before any native call is the real code. */
function fakePd(t: Test): ProtectionDomain {
  // A native PD by its prototype (the constructor refuses anything else), its methods stand-ins.
  const n = Object.setPrototypeOf({ close: () => 0, hold() {}, unhold() {}, inFlight: () => 0 }, native.RdmaPd.prototype);
  const ctx = { name: 'fake0' };
  const pd = new (ProtectionDomain as unknown as new (c: unknown, n: unknown) => ProtectionDomain)(ctx, n);
  // Closed, so no GC warning lands in a later test that counts warnings.
  t.teardown(() => pd.close());
  return pd;
}

t.test('registerMemory and allocMemory: refusals come before any syscall', async (t) => {
  const pd = fakePd(t);
  t.throws(() => pd.registerMemorySync(Buffer.alloc(64), { access: 'local-write' }), { code: 'ERR_INVALID_ARG_VALUE', message: SHARED_ADVICE });
  await t.rejects(pd.registerMemory(new Uint8Array(64), { access: 'local-write' }), { code: 'ERR_INVALID_ARG_VALUE', message: /transfer\(\)/ });
  t.throws(() => pd.allocMemorySync(0), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => pd.allocMemorySync(1.5), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => pd.allocMemorySync('4096' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => pd.allocMemorySync(4096, { access: 'remote-write' }), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ });
  await t.rejects(pd.allocMemory(4096, { access: 'local-write', signal: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(pd.allocMemory(4096, { access: 'local-write', signal: ac.signal }), { code: 'ABORT_ERR' });
  // Past the checks the stand-in fails: the memory allocMemory made is unmapped again.
  const maps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('p2pdma-rdma-mr')).length;
  const before = maps();
  t.throws(() => pd.allocMemorySync(65536, { access: 'local-write' }));
  await t.rejects(pd.allocMemory(65536, { access: 'local-write' }));
  t.equal(maps(), before, 'no mapping left behind by a failed allocMemory');
  // A registration that fails lets go of the Mapping it held.
  using fd = memfd('rdma-host-test');
  fs.ftruncateSync(fd.fd, 4096);
  const map = mmap(fd, 4096);
  t.throws(() => pd.registerMemorySync(map, { access: 'local-write' }));
  await t.rejects(pd.registerMemory(new Uint8Array(map.buffer), { access: 'local-write' }));
  map.unmap();
  t.equal(map.closed, true, 'unmap() works after failed registrations');
});

t.test('the old positional access still works for one release, with one DeprecationWarning (P2PDMA_DEP0003)', async (t) => {
  const pd = fakePd(t);
  const warned: string[] = [];
  const onWarning = (w: Error & { code?: string }) => {
    if (w.name === 'DeprecationWarning' && w.code?.startsWith('P2PDMA_')) warned.push(w.code);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  t.throws(() => pd.registerMemorySync(Buffer.alloc(64), 'local-write'), { code: 'ERR_INVALID_ARG_VALUE', message: SHARED_ADVICE });
  t.throws(() => pd.allocMemorySync(4096, 'remote-write'), { code: 'ERR_INVALID_ARG_VALUE', message: /local-write/ }, 'the positional access is still checked');
  await t.rejects(pd.allocMemory(4096, 'local-write', { signal: 'x' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => pd.registerMemorySync(Buffer.alloc(64), { access: 'bogus' as never }), { code: 'ERR_INVALID_ARG_VALUE', message: /options\.access/ });
  await new Promise((r) => setImmediate(r));
  t.same(warned, ['P2PDMA_DEP0003'], 'warned once');
});

t.test('registerDmaBuf is a promise with a Sync twin, as registerMemory', async (t) => {
  const pd = fakePd(t);
  await t.rejects(pd.registerDmaBuf('x' as never, { length: 4096 }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => pd.registerDmaBufSync('x' as never, { length: 4096 }), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(pd.registerDmaBuf(0, null as never), { code: 'ERR_INVALID_ARG_TYPE' });
  const ac = new AbortController();
  ac.abort();
  await t.rejects(pd.registerDmaBuf(0, { length: 4096, signal: ac.signal }), { code: 'ABORT_ERR' });
});

t.test('a remote address plus offset that would wrap past 2^64 is refused', async (t) => {
  const top = 2n ** 64n - 4096n;
  t.equal(remoteAddress({ addr: top, rkey: 1 }, 0, 4096, t.fail), top);
  t.equal(remoteAddress({ addr: top, rkey: 1 }, 1024, 3072, t.fail), top + 1024n);
  t.throws(() => remoteAddress({ addr: top, rkey: 1 }, 4096, 1, t.fail), { code: 'ERR_OUT_OF_RANGE', message: /must not pass 2\^64/ });
  t.throws(() => remoteAddress({ addr: 2n ** 64n - 1n, rkey: 1 }, Number.MAX_SAFE_INTEGER, 16, t.fail), { code: 'ERR_OUT_OF_RANGE' });
});

t.test('a deferred RDMA teardown that fails warns when nobody awaits it, as Fd does', async (t) => {
  class Stub extends RdmaResource {
    protected get teardownCall(): string {
      return 'ibv_dereg_mr';
    }
  }
  const stub = () => {
    const n = Object.setPrototypeOf({ close: () => 1, onclose: undefined as ((r: number) => void) | undefined, hold() {}, unhold() {}, inFlight: () => 1 }, native.RdmaMr.prototype) as { close(): number; onclose: ((r: number) => void) | undefined };
    return { n, r: new (Stub as unknown as new (n: unknown) => Stub)(n) };
  };
  const warned: Error[] = [];
  // Only this kind: Node 26 warns about the test loader (DEP0205), and a GC close of some
  // other test's object may land meanwhile.
  const onWarning = (w: Error) => {
    if ((w as { code?: unknown }).code === 'P2PDMA_CLOSE_FAILED') warned.push(w);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const a = stub();
  a.r.close();
  a.n.onclose!(-5);
  await new Promise((r) => setImmediate(r));
  t.equal(warned.length, 1, 'one warning');
  t.match(warned[0], { code: 'P2PDMA_CLOSE_FAILED', message: /Deferred close of Stub failed: EIO.*ibv_dereg_mr/ });
  // Awaited: the error goes to the awaiter instead.
  const b = stub();
  const done = b.r[Symbol.asyncDispose]();
  b.n.onclose!(-5);
  await t.rejects(done, { code: 'EIO', syscall: 'ibv_dereg_mr' });
  await new Promise((r) => setImmediate(r));
  t.equal(warned.length, 1, 'no warning when awaited');
});

leaks.check(t);
