// The io_uring engine on the host (lib/pci/nvme.ts, native/pci/uring.h): engine
// choice and fallback, and the ring primitive on a plain file: batching,
// many in flight, staging, errors, abort before the flush, close and GC
// with I/O in flight, worker and process exit. The NVMe paths (O_DIRECT,
// URING_CMD on /dev/ngXnY, P2P) run in the guest (test/guest/nvme-uring.test.ts).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { Fd, Nvme } from '../../lib/index';
import { nativeOf } from '../../lib/core/handle';
import { native } from '../../lib/core/native';
import { expectCode, leakGuard, report, runTs, TEST_PREFIX } from '../helpers';

// The ring is per thread and lives as long as it: made before the guard.
const probe = native.nvmeUringProbe();
const leaks = leakGuard();
const disabled = Number(fs.readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8'));
const hasRing = probe.errno === 0;

function scratch(t: Tap.Test, size: number): { file: string; fd: Fd } {
  const file = path.join(os.tmpdir(), `${TEST_PREFIX}-uring-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(file, Buffer.alloc(size));
  const fd = Fd.open(file, fs.constants.O_RDWR);
  t.teardown(() => {
    if (!fd.closed) fd.close();
    fs.rmSync(file, { force: true });
  });
  return { file, fd };
}
type Tap = typeof t;
declare namespace Tap {
  type Test = typeof t;
}

t.test('the engine: io_uring where io_uring_setup works, the thread pool otherwise or when asked', async (t) => {
  t.equal(hasRing, disabled === 0 || (disabled === 1 && process.getuid?.() === 0), `io_uring_disabled ${disabled}, errno ${probe.errno}`);
  t.equal(Nvme.engine, hasRing ? 'io_uring' : 'threadpool');
  t.match(Nvme.engineInfo, { engine: Nvme.engine, reason: hasRing ? /io_uring_setup works/ : /from io_uring_setup/ });
  const child = (env: NodeJS.ProcessEnv) =>
    report<{ engine: string; reason: string }>(runTs(path.join(__dirname, '..', 'fixtures', 'nvme-engine.ts'), [], env));
  t.same(child({ P2PDMA_NVME_ENGINE: 'threadpool' }), { engine: 'threadpool', reason: 'P2PDMA_NVME_ENGINE=threadpool' });
  t.equal(child({ P2PDMA_NVME_ENGINE: '' }).engine, Nvme.engine, 'unset: the same choice as here');
  Nvme.engine = 'threadpool';
  t.same(Nvme.engineInfo, { engine: 'threadpool', reason: 'set by Nvme.engine' });
  if (hasRing) Nvme.engine = 'io_uring';
  t.throws(() => (Nvme.engine = 'spdk' as never), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.equal(Nvme.engine, hasRing ? 'io_uring' : 'threadpool');
  t.same(Nvme.queue, { inFlight: 0, waiting: 0 });
});

t.test('the ring batches a turn of I/O into one flush and settles 128 in flight byte for byte', { skip: !hasRing && 'no io_uring' }, async (t) => {
  const N = 128;
  const SZ = 8192;
  const { fd } = scratch(t, N * SZ);
  const writes: Promise<number>[] = [];
  for (let i = 0; i < N; i++) writes.push(native.nvmeUringIo(nativeOf(fd), true, Buffer.alloc(SZ, i), i * SZ, undefined, 1));
  t.same(native.nvmeUringQueue(), { queued: N, inFlight: 0 }, 'queued during the turn, not yet submitted');
  t.equal(nativeOf(fd).inFlight(), N, 'each op holds the fd');
  // Two turns: this code may run in the poll phase, after this turn's flush.
  for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
  const q = native.nvmeUringQueue();
  t.equal(q.queued, 0, `submitted by the turn's flush (${q.inFlight} still in flight)`);
  t.same(await Promise.all(writes), writes.map(() => SZ));
  const sab = new Uint8Array(new SharedArrayBuffer(N * SZ));
  const reads = [];
  for (let i = 0; i < N; i++) reads.push(native.nvmeUringIo(nativeOf(fd), false, sab.subarray(i * SZ, (i + 1) * SZ), i * SZ));
  t.same(await Promise.all(reads), reads.map(() => SZ));
  t.ok(Array.from({ length: N }, (_, i) => sab[i * SZ] === i && sab[(i + 1) * SZ - 1] === i).every(Boolean), 'every read landed in place');
  t.same(native.nvmeUringQueue(), { queued: 0, inFlight: 0 });
  t.equal(nativeOf(fd).inFlight(), 0);
  const tail = new Uint8Array(2 * SZ);
  t.equal(await native.nvmeUringIo(nativeOf(fd), false, tail, (N - 1) * SZ), SZ, 'a short read at EOF returns what there was');
});

t.test('staging, errors and abort before the flush, as on the pool', { skip: !hasRing && 'no io_uring' }, async (t) => {
  const { file, fd } = scratch(t, 16384);
  const out = Buffer.alloc(4096, 7);
  const w = native.nvmeUringIo(nativeOf(fd), true, out, 0, undefined, 1);
  out.fill(9);
  t.equal(await w, 4096);
  const back = Buffer.alloc(4096);
  const r = native.nvmeUringIo(nativeOf(fd), false, back, 0, undefined, 2);
  t.equal(back[0], 0, 'a staged read lands when it settles');
  t.equal(await r, 4096);
  t.ok(back.every((b) => b === 7), 'the write sent the bytes of the call');
  const ro = Fd.open(file, fs.constants.O_RDONLY);
  await t.rejects(native.nvmeUringIo(nativeOf(ro), true, back, 0), { sysErrno: 9, syscall: 'write', fd: ro.fd }, 'EBADF from the CQE');
  ro.close();
  t.throws(() => native.nvmeUringIo(nativeOf(fd), false, {} as never, 0), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => native.nvmeUringIo({} as never, false, back, 0), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => native.nvmeUringIo(nativeOf(fd), false, back, 0, undefined, 4), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  // Aborted before the turn's flush: never submitted, nothing written.
  const ac = new AbortController();
  const p = native.nvmeUringIo(nativeOf(fd), true, Buffer.alloc(4096, 1), 8192, undefined, 1, ac.signal);
  ac.abort();
  await t.rejects(p, { sysErrno: 125 }, 'ECANCELED: discarded by lib/abort.ts');
  t.ok(fs.readFileSync(file).subarray(8192, 12288).every((b) => b === 0), 'the aborted write never ran');
});

t.test('close() with I/O in flight defers the close(2) until the CQEs; GC of the handle meanwhile is harmless', { skip: !hasRing && 'no io_uring' }, async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const { fd } = scratch(t, 1 << 20);
  const n = fd.fd;
  const ps = Array.from({ length: 16 }, (_, i) => native.nvmeUringIo(nativeOf(fd), false, Buffer.alloc(65536), i * 65536, undefined, 2));
  fd.close();
  t.ok(fd.closed);
  t.ok(fs.existsSync(`/proc/self/fd/${n}`), 'the fd number stays open under the queued I/O');
  t.same((await Promise.all(ps)).length, 16);
  t.notOk(fs.existsSync(`/proc/self/fd/${n}`) && fs.readlinkSync(`/proc/self/fd/${n}`).includes(TEST_PREFIX), 'and is closed after them');
  let lost: Fd | undefined = Fd.open('/dev/zero');
  const q = native.nvmeUringIo(nativeOf(lost), false, Buffer.alloc(4096, 1), 0, undefined, 2);
  lost = undefined;
  gc();
  t.equal(await q, 4096, 'an unreferenced handle with I/O in flight stays until it settles');
  // Released by the op: now the finalizer closes it.
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    gc();
  }
});

t.test('a worker with I/O in flight: terminate, normal exit and process.exit leave no ring fds and do not crash', { skip: !hasRing && 'no io_uring' }, async (t) => {
  for (const mode of ['terminate', 'exit']) {
    const r = report<{ mode: string; before: number; after: number }>(runTs(path.join(__dirname, '..', 'fixtures', 'nvme-uring-exit.ts'), [], {}, [mode]));
    t.equal(r.after, r.before, `${mode}: the worker's ring and eventfd are closed`);
  }
  t.same(report(runTs(path.join(__dirname, '..', 'fixtures', 'nvme-uring-exit.ts'), [], {}, ['process-exit'])), { mode: 'process-exit' });
});

// Nvme.copyTo()'s native job (native/pci/nvme-copy.cc) between two plain
// files: lanes through their slots, a last short chunk, a short read in a
// chain, errors, abort.
t.test('the native copy job: depth lanes through one staging view, byte for byte, one promise', { skip: !hasRing && 'no io_uring' }, async (t) => {
  const SIZE = 1 << 20;
  const a = scratch(t, SIZE);
  const b = scratch(t, SIZE);
  const data = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4) data.writeUInt32LE(i * 2654435761 >>> 0, i);
  fs.writeFileSync(a.file, data);
  const via = new Uint8Array(new SharedArrayBuffer(4 * 65536));
  const length = SIZE - 3 * 4096; // 15 chunks of 64 KiB and a short one
  t.equal(await native.nvmeUringCopy(nativeOf(a.fd), nativeOf(b.fd), via, 4096n, 8192n, length, 65536, 4, [a.fd, b.fd], 0), length);
  const out = fs.readFileSync(b.file);
  t.ok(out.subarray(8192, 8192 + length).equals(data.subarray(4096, 4096 + length)), 'every byte at its place');
  t.ok(out.subarray(0, 8192).equals(Buffer.alloc(8192)), 'nothing before the range');
  // A plain ArrayBuffer is staged (bounce): the copy does not depend on it.
  const plain = new Uint8Array(2 * 65536);
  t.equal(await native.nvmeUringCopy(nativeOf(b.fd), nativeOf(a.fd), plain, 8192n, 0n, 65536, 65536, 2, [a.fd, b.fd], 1), 65536);
  t.ok(fs.readFileSync(a.file).subarray(0, 65536).equals(data.subarray(4096, 4096 + 65536)), 'back through a staged buffer');
  // A read of the write-only side fails: the error names the read and its fd.
  const wo = Fd.open(b.file, fs.constants.O_WRONLY);
  t.teardown(() => wo.close());
  await t.rejects(native.nvmeUringCopy(nativeOf(wo), nativeOf(a.fd), via, 0n, 0n, SIZE, 65536, 4, [wo, a.fd], 0), { sysErrno: 9, syscall: 'read', fd: wo.fd });
  const ro = Fd.open(a.file, fs.constants.O_RDONLY);
  t.teardown(() => ro.close());
  await t.rejects(native.nvmeUringCopy(nativeOf(a.fd), nativeOf(ro), via, 0n, 0n, SIZE, 65536, 4, [ro, a.fd], 0), { sysErrno: 9, syscall: 'write', fd: ro.fd });
  // The file ends inside the last chunk: its read comes up short, the kernel
  // cancels the write linked to it, and the rest of the read gets 0 bytes.
  await t.rejects(native.nvmeUringCopy(nativeOf(a.fd), nativeOf(b.fd), via, 4096n, 0n, SIZE, 65536, 4, [a.fd, b.fd], 0), { sysErrno: 5, syscall: 'read', fd: a.fd.fd }, 'EIO at the end of the source');
  // Aborted before the flush: no lane reaches the kernel.
  const ac = new AbortController();
  const p = native.nvmeUringCopy(nativeOf(a.fd), nativeOf(b.fd), via, 0n, 0n, SIZE, 65536, 4, [a.fd, b.fd], 0, ac.signal);
  ac.abort();
  await t.rejects(p, { sysErrno: 125 }, 'ECANCELED');
  t.throws(() => native.nvmeUringCopy(nativeOf(a.fd), nativeOf(b.fd), via, 0n, 0n, SIZE, 65536, 5, [], 0), { code: 'ERR_OUT_OF_RANGE' }, 'depth slots past the view');
  t.throws(() => native.nvmeUringCopy(nativeOf(a.fd), nativeOf(b.fd), via, 0n, 0n, SIZE, 0, 1, [], 0), { code: 'ERR_OUT_OF_RANGE' }, 'chunk 0');
  t.same(native.nvmeUringQueue(), { queued: 0, inFlight: 0 }, 'nothing left on the ring');
});

t.test('no fd or mapping leaked', async (t) => leaks.check(t));
