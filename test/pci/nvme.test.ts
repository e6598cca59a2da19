// Nvme on the host: status decoding, what open() refuses, the in-flight cap,
// and the native I/O primitive on a plain file. The device paths (identify,
// O_DIRECT, passthrough, P2P) are tested in the guest (test/guest/nvme.test.ts).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { Nvme, nvmeStatus } from '../../lib';
import { native } from '../../lib/core/native';
import { expectCode, leakGuard, TEST_PREFIX } from '../helpers';

const leaks = leakGuard();

t.test('nvmeStatus() names generic, command-specific and media statuses', async (t) => {
  t.match(nvmeStatus(0x4001), { statusCodeType: 0, statusCode: 1, name: 'INVALID_OPCODE', description: 'Invalid Command Opcode', dnr: true, more: false });
  t.match(nvmeStatus(0x000b), { name: 'INVALID_NS', dnr: false });
  t.match(nvmeStatus(0x4080), { name: 'LBA_RANGE' });
  t.match(nvmeStatus(0x0182), { statusCodeType: 1, name: 'READ_ONLY' });
  t.match(nvmeStatus(0x0281), { statusCodeType: 2, name: 'READ_ERROR' });
  t.match(nvmeStatus(0x07c1), { statusCodeType: 7, name: 'SCT7_SC0xc1', description: /vendor specific/ });
  t.match(nvmeStatus(0x2002), { more: true, name: 'INVALID_FIELD' });
  t.throws(() => nvmeStatus(-1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => nvmeStatus(1.5), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
});

t.test('open() refuses what is not an NVMe device, and closes what it opened', async (t) => {
  const file = path.join(os.tmpdir(), `${TEST_PREFIX}-nvme-file`);
  fs.writeFileSync(file, Buffer.alloc(4096));
  t.teardown(() => fs.rmSync(file, { force: true }));
  t.throws(() => Nvme.open('/dev/null'), { code: 'ERR_P2PDMA_NOT_NVME', message: /\/dev\/null is not an NVMe namespace or controller/ });
  t.throws(() => Nvme.open(file), { code: 'ERR_P2PDMA_NOT_NVME' });
  t.throws(() => Nvme.open('/nonexistent/nvme0n1'), { code: 'ENOENT', syscall: 'stat' });
  t.throws(() => Nvme.open(7 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Nvme.open('/dev/null', { readOnly: 1 as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => Nvme.open('/dev/null', null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('maxInFlight defaults to half the thread pool and refuses nonsense', async (t) => {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  t.equal(Nvme.maxInFlight, Math.max(1, Math.floor(pool / 2)));
  const old = Nvme.maxInFlight;
  Nvme.maxInFlight = 8;
  t.equal(Nvme.maxInFlight, 8);
  Nvme.maxInFlight = old;
  t.throws(() => (Nvme.maxInFlight = 0), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => (Nvme.maxInFlight = 1.5), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => (Nvme.maxInFlight = '2' as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.same(Nvme.queue, { inFlight: 0, waiting: 0 });
});

t.test('the native I/O primitive reads and writes a whole view in place, sync and on the pool', async (t) => {
  const file = path.join(os.tmpdir(), `${TEST_PREFIX}-nvme-io`);
  const fd = fs.openSync(file, 'w+');
  t.teardown(() => {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  });
  const data = Buffer.from('0123456789abcdef'.repeat(256));
  t.equal(native.nvmeIoSync(fd, true, data, 4096), data.length);
  const back = Buffer.alloc(data.length);
  t.equal(await native.nvmeIo(fd, false, back, 4096n), data.length);
  t.ok(back.equals(data), 'bytes round-trip');
  const tail = new Uint8Array(8192);
  t.equal(native.nvmeIoSync(fd, false, tail, 4096), 4096, 'a short read at EOF returns what there was');
  await t.rejects(native.nvmeIo(999, false, back, 0), { sysErrno: 9, syscall: 'read' }, 'EBADF from the pool');
  t.throws(() => native.nvmeIoSync(fd, false, {} as never, 0), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => native.nvmeIoSync(fd, false, back, 2 ** 63 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.equal(native.viewAddress(back.subarray(3)) - native.viewAddress(back), 3);
});

// Issue 22 defect 3: the pool thread must never write into memory JS freed.
// The pool's threads are parked on reads of FIFOs, so the read below waits
// in libuv's queue while its buffer is transferred away and collected and
// new buffers take its memory; then the pool is let go.
t.test('a read staged for a detachable buffer never writes into memory JS freed meanwhile', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const size = 16384;
  const file = path.join(os.tmpdir(), `${TEST_PREFIX}-nvme-detach`);
  fs.writeFileSync(file, Buffer.alloc(size, 0x42));
  const fd = fs.openSync(file, 'r');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${TEST_PREFIX}-fifo-`));
  const fifos: number[] = [];
  t.teardown(() => {
    fs.closeSync(fd);
    for (const f of fifos) fs.closeSync(f);
    fs.rmSync(file, { force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const parked: Promise<number>[] = [];
  for (let i = 0; i < poolSize; i++) {
    execFileSync('mkfifo', [`${dir}/f${i}`]);
    // O_RDWR: open() does not wait for a writer; read() waits for data.
    const f = fs.openSync(`${dir}/f${i}`, fs.constants.O_RDWR);
    fifos.push(f);
    parked.push(new Promise((resolve, reject) => fs.read(f, Buffer.alloc(1), 0, 1, null, (e, n) => (e ? reject(e) : resolve(n)))));
  }
  let victim: Uint8Array | undefined = new Uint8Array(size);
  const io = native.nvmeIo(fd, false, victim, 0, undefined, 2 /* BOUNCE_OUT, as lib/pci/nvme.ts asks for a plain ArrayBuffer */);
  structuredClone(victim.buffer, { transfer: [victim.buffer] });
  t.equal(victim.byteLength, 0, 'the view is detached, its memory moved to a buffer no one holds');
  const view = victim;
  victim = undefined;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  const fresh: Uint8Array[] = [];
  for (let i = 0; i < 256; i++) fresh.push(new Uint8Array(size).fill(0xaa));
  for (const f of fifos) fs.writeSync(f, Buffer.from([1]));
  await Promise.all(parked);
  t.equal(await io, size, 'the read completed and reports its bytes');
  t.equal(view.byteLength, 0, 'the detached view got nothing');
  const hit = fresh.findIndex((b) => b.some((x) => x !== 0xaa));
  t.equal(hit, -1, 'no buffer allocated after the transfer was written by the read');
});

t.test('a staged read lands in the view when it settles, and a staged write sends the bytes of the call', async (t) => {
  const file = path.join(os.tmpdir(), `${TEST_PREFIX}-nvme-stage`);
  const fd = fs.openSync(file, 'w+');
  t.teardown(() => {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  });
  const out = Buffer.alloc(4096, 7);
  const w = native.nvmeIo(fd, true, out, 0, undefined, 1);
  out.fill(9); // after the call: the staged copy holds the 7s
  t.equal(await w, 4096);
  const back = Buffer.alloc(4096);
  t.equal(await native.nvmeIo(fd, false, back, 0, undefined, 2), 4096);
  t.ok(back.every((b) => b === 7), 'the write sent the bytes the view had when it was called');
  const ab = new (ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer)(4096, { maxByteLength: 8192 });
  const shrinking = new Uint8Array(ab, 0, 4096);
  const r = native.nvmeIo(fd, false, shrinking, 0, undefined, 2);
  (ab as unknown as { resize(n: number): void }).resize(1024);
  t.equal(await r, 4096);
  t.same(new Uint8Array(ab).every((b) => b === 0), true, 'a view resized meanwhile got nothing back');
  t.throws(() => native.nvmeIo(fd, false, back, 0, undefined, 4), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  // lib/core/abort.ts: an aborted operation's outcome is discarded.
  const ac = new AbortController();
  const untouched = Buffer.alloc(4096);
  const aborted = native.nvmeIo(fd, false, untouched, 0, undefined, 2, ac.signal);
  ac.abort();
  t.equal(await aborted, 4096, 'the read itself ran to its end');
  t.ok(untouched.every((b) => b === 0), 'an aborted staged read copies nothing back');
});

t.test('no fd or mapping leaked', async (t) => leaks.check(t));
