// mmap(): round trips, unmap/detach semantics, GC, argument checks.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Fd, Mapping, constants, memfd, mmap, pageSize } from '../../lib';
import { native } from '../../lib/core/native';
import { expectCode, leakGuard, report, runTs, tempFile, testMaps } from '../helpers';

const leaks = leakGuard();

function sizedMemfd(size: number, name = 'p2pdma-test-mmap'): Fd {
  const m = memfd(name);
  fs.ftruncateSync(m.fd, size);
  return m;
}

/** The /proc/self/maps line that starts at the mapping's address: its range and permissions. */
function vmaOf(map: Mapping): { range: string; perms: string } | undefined {
  const hex = (a: bigint) => a.toString(16).padStart(8, '0');
  const line = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => l.startsWith(`${hex(map.address)}-`));
  if (line === undefined) return undefined;
  const [range, perms] = line.split(' ');
  return { range, perms };
}

/** The whole mapping as one VMA with `perms`. */
function wholeVma(map: Mapping, perms: string): { range: string; perms: string } {
  const hex = (a: bigint) => a.toString(16).padStart(8, '0');
  return { range: `${hex(map.address)}-${hex(map.address + BigInt(map.length))}`, perms };
}

t.test('a shared memfd mapping round-trips data through .buffer', async (t) => {
  using m = sizedMemfd(2 * pageSize);
  using map = mmap(m, 2 * pageSize);
  t.type(map, Mapping);
  t.equal(map.buffer.byteLength, 2 * pageSize);
  t.equal(map.length, 2 * pageSize);
  t.equal(map.offset, 0n);
  t.type(map.address, 'bigint');
  t.equal(map.address % BigInt(pageSize), 0n, 'page-aligned address');
  new Uint8Array(map.buffer).set([1, 2, 3], pageSize);
  const back = Buffer.alloc(3);
  fs.readSync(m.fd, back, 0, 3, pageSize);
  t.same([...back], [1, 2, 3], 'JS writes reach the file');
  fs.writeSync(m.fd, Buffer.from([9, 8]), 0, 2, 10);
  t.same([...new Uint8Array(map.buffer, 10, 2)], [9, 8], 'file writes show in the mapping');
  t.equal(map.buffer, map.buffer, '.buffer is one ArrayBuffer, no copies');
});

t.test('a temp file maps at a page offset', async (t) => {
  const file = tempFile(3 * pageSize, (i) => (i >> 12) + 1);
  using f = Fd.open(file, 'r+');
  using map = mmap(f, pageSize, { offset: 2 * pageSize, prot: 'read' });
  t.equal(map.offset, BigInt(2 * pageSize));
  t.equal(map.read(Buffer.alloc(1))[0], 3, 'third page');
  t.equal(map.source, f, 'the mapping keeps its source handle');
  fs.rmSync(path.dirname(file), { recursive: true });
});

t.test("'private' mappings do not write through", async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize, { flags: 'private' });
  new Uint8Array(map.buffer)[0] = 5;
  const b = Buffer.alloc(1);
  fs.readSync(m.fd, b, 0, 1, 0);
  t.equal(b[0], 0);
});

t.test('flags combine strings and numbers', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize, { flags: ['shared', 'populate'], prot: constants.PROT_READ | constants.PROT_WRITE });
  t.equal(map.length, pageSize);
});

t.test('unmap() detaches .buffer and windows, and a later access does not crash', async (t) => {
  using m = sizedMemfd(2 * pageSize);
  const before = native.counters();
  const map = mmap(m, 2 * pageSize);
  const view = new Uint8Array(map.buffer);
  const win = new Uint8Array(map.window(pageSize, pageSize));
  view[0] = 1;
  map.unmap();
  t.ok(map.closed);
  t.equal(map.buffer.byteLength, 0, 'detached');
  t.equal(view.length, 0, 'views over it are empty');
  t.equal(win.length, 0, 'windows too');
  t.equal(view[0], undefined, 'reads give undefined');
  view[0] = 2; // ignored, no fault
  t.same(testMaps().filter((l) => l.includes('p2pdma-test-mmap')), [], 'the file is gone from /proc/self/maps');
  const c = native.counters();
  t.same([c.munmap - before.munmap, c.pinned - before.pinned], [0, 1], 'range pinned until the views are collected');
  map.unmap();
  map[Symbol.dispose]();
  t.equal(native.counters().pinned - before.pinned, 1, 'idempotent: unmapped once');
});

t.test('unmap() of a mapping no ArrayBuffer was made of munmaps at once', async (t) => {
  using m = sizedMemfd(pageSize);
  const before = native.counters();
  const map = mmap(m, pageSize);
  map.write(Buffer.from([1]));
  map.unmap();
  map.unmap();
  const c = native.counters();
  t.same([c.munmap - before.munmap, c.pinned - before.pinned], [1, 0]);
  t.equal(map.buffer.byteLength, 0, '.buffer after unmap() is a detached, empty ArrayBuffer');
});

t.test('window() gives a zero-copy ArrayBuffer over part of the mapping', async (t) => {
  using m = sizedMemfd(2 * pageSize);
  using map = mmap(m, 2 * pageSize);
  const w = map.window(pageSize + 8, 4);
  t.equal(w.byteLength, 4);
  new Uint8Array(w).set([1, 2, 3, 4]);
  t.same([...new Uint8Array(map.buffer, pageSize + 8, 4)], [1, 2, 3, 4], 'same bytes as .buffer');
  t.equal(map.window(pageSize).byteLength, pageSize, 'length defaults to the rest');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => map.window(2 * pageSize), range, 'empty window');
  t.throws(() => map.window(pageSize, pageSize + 1), range, 'past the end');
  t.throws(() => map.window(-1, 1), range, 'negative offset');
  t.throws(() => map.window('0' as never, 1), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  map.unmap();
  t.throws(() => map.window(0, 1), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
});

t.test('read() and write() copy', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  map.write(new Uint16Array([0x0201, 0x0403]), 10);
  const b = map.read(Buffer.alloc(4), 10);
  t.ok(Buffer.isBuffer(b));
  t.same([...b], [1, 2, 3, 4]);
  b[0] = 9;
  t.equal(new Uint8Array(map.buffer)[10], 1, 'read() returns a copy');
  t.equal(map.read().length, pageSize, 'defaults: the whole mapping');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => map.read(Buffer.alloc(2), pageSize - 1), range);
  t.throws(() => map.write(Buffer.alloc(2), pageSize - 1), range);
  t.throws(() => map.write([1] as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  map.unmap();
  t.throws(() => map.read(Buffer.alloc(1)), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
  t.throws(() => map.write(Buffer.alloc(1)), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
});

t.test('write() and read() take views of a SharedArrayBuffer', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  const shared = new Uint8Array(new SharedArrayBuffer(8), 2, 4);
  shared.set([1, 2, 3, 4]);
  map.write(shared, 16); // threw a bare Error('Invalid argument') from ArrayBuffer() of a SharedArrayBuffer
  t.same([...map.read(Buffer.alloc(4), 16)], [1, 2, 3, 4]);
});

t.test("write() bounds a view by its real length, whatever its byteLength property or prototype says", async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  const swapped = Object.setPrototypeOf(new Uint8Array([7]), DataView.prototype) as Uint8Array;
  map.write(swapped, 0); // threw an uncoded TypeError from DataView's byteLength getter
  t.equal(map.read(Buffer.alloc(1))[0], 7);
  const lying = Object.defineProperty(new Uint8Array(8), 'byteLength', { value: 1 });
  t.throws(() => map.write(lying, pageSize - 1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'), '8 bytes do not fit in the last byte');
});

t.test('msync() resolves, msyncSync() returns, both refuse after unmap', async (t) => {
  using m = sizedMemfd(pageSize);
  const map = mmap(m, pageSize);
  t.equal(map.msyncSync(), undefined);
  t.equal(map.msyncSync(['async', 'invalidate']), undefined);
  const p = map.msync();
  t.type(p, Promise);
  t.equal(await p, undefined);
  t.equal(await map.msync('async', {}), undefined);
  t.equal(await map.msync({ signal: new AbortController().signal }), undefined, 'options alone');
  t.throws(() => map.msyncSync('x' as never), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  await t.rejects(map.msync('x' as never), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'), 'a promise, even for bad arguments');
  await t.rejects(map.msync('sync', { signal: 1 as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  map.unmap();
  t.throws(() => map.msyncSync(), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
  await t.rejects(map.msync(), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
});

t.test('msync() with an aborted signal rejects with AbortError before any syscall', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  const ac = new AbortController();
  const reason = new Error('stop');
  ac.abort(reason);
  await t.rejects(map.msync({ signal: ac.signal }), { name: 'AbortError', code: 'ABORT_ERR', cause: reason });
  await t.rejects(map.msync(constants.MS_SYNC | constants.MS_ASYNC, { signal: ac.signal }), { code: 'ABORT_ERR' }, 'checked before the syscall');
});

t.test('msync failures are system errors', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  t.throws(() => map.msyncSync(constants.MS_SYNC | constants.MS_ASYNC), { code: 'EINVAL', syscall: 'msync' });
  await t.rejects(map.msync(constants.MS_SYNC | constants.MS_ASYNC), { code: 'EINVAL', syscall: 'msync' });
});

t.test("mprotect('read') refuses write(), keeps read(), and changes the whole VMA to r--s", async (t) => {
  using m = sizedMemfd(2 * pageSize);
  using map = mmap(m, 2 * pageSize);
  map.write(Buffer.from([1, 2]), pageSize);
  t.same(vmaOf(map), wholeVma(map, 'rw-s'));
  t.equal(map.mprotect('read'), undefined);
  t.equal(map.prot, constants.PROT_READ);
  t.same(vmaOf(map), wholeVma(map, 'r--s'), 'one VMA, not split');
  t.throws(() => map.write(Buffer.from([9]), pageSize), {
    code: 'ERR_P2PDMA_MAPPING_ACCESS',
    message: 'write() needs a mapping with PROT_WRITE; this one is mapped PROT_READ',
  });
  t.same([...map.read(Buffer.alloc(2), pageSize)], [1, 2], 'read() still copies, and the refused write() left the bytes alone');
  t.throws(() => map.buffer, { code: 'ERR_P2PDMA_MAPPING_ACCESS' }, 'no .buffer over read-only pages');
  t.throws(() => map.window(0, 1), { code: 'ERR_P2PDMA_MAPPING_ACCESS' }, 'nor a window');
});

t.test("mprotect('rw') after 'read' restores write() and hands out a new .buffer over the same bytes", async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  const old = map.buffer;
  new Uint8Array(old).set([4, 5, 6]);
  map.mprotect('read');
  map.mprotect('rw');
  t.equal(map.prot, constants.PROT_READ | constants.PROT_WRITE);
  t.same(vmaOf(map), wholeVma(map, 'rw-s'));
  const fresh = map.buffer;
  t.not(fresh, old, 'a new ArrayBuffer');
  t.equal(old.byteLength, 0, 'the old one stays detached');
  t.equal(fresh.byteLength, pageSize);
  t.equal(map.buffer, fresh, 'then the same one every time');
  t.same([...new Uint8Array(fresh, 0, 3)], [4, 5, 6], 'the same bytes');
  new Uint8Array(fresh)[3] = 7;
  map.write(Buffer.from([8]), 4);
  const back = Buffer.alloc(5);
  fs.readSync(m.fd, back, 0, 5, 0);
  t.same([...back], [4, 5, 6, 7, 8], 'writes through .buffer and write() reach the file');
});

t.test("mprotect('rw') on an 'rw' mapping keeps .buffer and windows attached", async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  const buffer = map.buffer;
  const win = map.window(8, 8);
  map.mprotect('rw');
  t.equal(map.buffer, buffer, 'the same ArrayBuffer');
  t.equal(buffer.byteLength, pageSize);
  t.equal(win.byteLength, 8);
  new Uint8Array(win)[0] = 3;
  t.same([...map.read(Buffer.alloc(1), 8)], [3]);
});

t.test("mprotect('none') refuses read() and write(); 'read' then makes read() work again", async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  map.write(Buffer.from([0x42]));
  map.mprotect('none');
  t.equal(map.prot, constants.PROT_NONE);
  t.same(vmaOf(map), wholeVma(map, '---s'));
  t.throws(() => map.read(Buffer.alloc(1)), { code: 'ERR_P2PDMA_MAPPING_ACCESS', message: 'read() needs a mapping with PROT_READ; this one is mapped PROT_NONE' });
  t.throws(() => map.write(Buffer.from([1])), { code: 'ERR_P2PDMA_MAPPING_ACCESS', message: 'write() needs a mapping with PROT_WRITE; this one is mapped PROT_NONE' });
  map.mprotect(constants.PROT_READ);
  t.same([...map.read(Buffer.alloc(1))], [0x42]);
});

t.test('mprotect() refuses bad prot values as mmap() does, changing nothing', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  const buffer = map.buffer;
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  const value = expectCode(TypeError, 'ERR_INVALID_ARG_VALUE');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => map.mprotect('x' as never), { ...value, message: "The argument 'prot' must be 'read', 'write', 'rw', 'none' or PROT_* bits. Received 'x'" });
  t.throws(() => map.mprotect('exec' as never), value);
  t.throws(() => map.mprotect(-1), range, 'negative');
  t.throws(() => map.mprotect(1.5), range, 'fractional');
  t.throws(() => map.mprotect(2 ** 31), range, 'over 2^31-1');
  t.throws(() => map.mprotect(undefined as never), type, 'missing');
  t.throws(() => map.mprotect(1n as never), type, 'bigint');
  t.throws(() => map.mprotect(null as never), type, 'null');
  t.equal(map.prot, constants.PROT_READ | constants.PROT_WRITE);
  t.same(vmaOf(map), wholeVma(map, 'rw-s'));
  t.equal(map.buffer, buffer);
  t.equal(buffer.byteLength, pageSize, '.buffer still attached');
});

t.test('mprotect(2) failures are system errors with syscall mprotect, changing nothing', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  const buffer = map.buffer;
  t.throws(() => map.mprotect(constants.PROT_READ | 0x40), { code: 'EINVAL', errno: -22, syscall: 'mprotect', message: 'EINVAL: invalid argument, mprotect' }, 'a PROT_* bit the kernel does not know');
  t.equal(map.prot, constants.PROT_READ | constants.PROT_WRITE);
  t.equal(buffer.byteLength, pageSize, 'nothing was detached');
});

t.test('mprotect(PROT_WRITE) on a shared mapping of a file opened read-only fails with EACCES', async (t) => {
  const file = tempFile(pageSize);
  const fd = fs.openSync(file, 'r');
  using map = mmap(fd, pageSize, { prot: 'read' });
  t.throws(() => map.mprotect(constants.PROT_WRITE), { code: 'EACCES', errno: -13, syscall: 'mprotect', message: 'EACCES: permission denied, mprotect' });
  t.equal(map.prot, constants.PROT_READ, 'prot unchanged');
  t.same(vmaOf(map), wholeVma(map, 'r--s'));
  t.throws(() => map.write(Buffer.from([1])), { code: 'ERR_P2PDMA_MAPPING_ACCESS' });
  t.same([...map.read(Buffer.alloc(2))], [0, 1]);
  map.unmap();
  fs.closeSync(fd);
  fs.rmSync(path.dirname(file), { recursive: true });
});

t.test('mprotect() after unmap() throws ERR_P2PDMA_CLOSED', async (t) => {
  using m = sizedMemfd(pageSize);
  const map = mmap(m, pageSize);
  map.unmap();
  t.throws(() => map.mprotect('read'), { code: 'ERR_P2PDMA_CLOSED', message: 'Mapping is closed' });
  t.throws(() => map.mprotect('x' as never), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'), 'arguments are checked first, as msyncSync() does');
  t.equal(map.prot, constants.PROT_READ | constants.PROT_WRITE);
});

t.test('mprotect() while an msync() runs on the thread pool: both complete', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  map.write(Buffer.from([1]));
  const p = map.msync();
  map.mprotect('read');
  t.equal(await p, undefined, 'msync() resolved');
  t.equal(map.prot, constants.PROT_READ);
  t.same([...map.read(Buffer.alloc(1))], [1]);
});

t.test('mmap failures are system errors with syscall and fd', async (t) => {
  t.throws(() => mmap(0x7ffffff0, pageSize), { code: 'EBADF', errno: -9, syscall: 'mmap', fd: 0x7ffffff0 });
  const fd = fs.openSync('/dev/null', 'r');
  t.throws(() => mmap(fd, pageSize, { prot: 'rw' }), { code: 'EACCES', syscall: 'mmap', fd }, 'rw map of a read-only fd');
  fs.closeSync(fd);
  using m = sizedMemfd(pageSize);
  t.throws(() => mmap(m, pageSize, { flags: ['shared-validate', 'sync'] }), { code: 'EOPNOTSUPP', errno: -95, syscall: 'mmap' }, 'MAP_SYNC on a memfd');
});

t.test('bad arguments throw TypeError/RangeError before any syscall', async (t) => {
  using m = sizedMemfd(pageSize);
  const before = native.counters().mmap;
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  const value = expectCode(TypeError, 'ERR_INVALID_ARG_VALUE');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => mmap('3' as never, pageSize), type, 'fd string');
  t.throws(() => mmap(-1, pageSize), range, 'fd negative');
  t.throws(() => mmap(m, '4096' as never), type, 'length string');
  t.throws(() => mmap(m, 0), range, 'zero length');
  t.throws(() => mmap(m, -4096), range, 'negative length');
  t.throws(() => mmap(m, 1.5), range, 'fractional length');
  t.throws(() => mmap(m, 2 ** 53), range, 'length > 2^53-1');
  t.throws(() => mmap(m, 2n ** 53n), range, 'bigint length > 2^53-1');
  t.throws(() => mmap(m, pageSize, { offset: 1 }), range, 'unaligned offset');
  t.throws(() => mmap(m, pageSize, { offset: -pageSize }), range, 'negative offset');
  t.throws(() => mmap(m, pageSize, { offset: 2n ** 63n }), range, 'offset > off_t');
  t.throws(() => mmap(m, pageSize, { offset: 2n ** 63n - BigInt(pageSize) }), range, 'offset + length overflows off_t');
  t.throws(() => mmap(m, pageSize, { offset: '0' as never }), type, 'offset string');
  t.throws(() => mmap(m, pageSize, { prot: 'x' as never }), value, 'unknown prot');
  t.throws(() => mmap(m, pageSize, { prot: -1 }), range, 'negative prot');
  t.throws(() => mmap(m, pageSize, { flags: 'x' as never }), value, 'unknown flag');
  t.throws(() => mmap(m, pageSize, { flags: 'populate' }), value, 'no shared/private');
  t.throws(() => mmap(m, pageSize, { flags: ['shared', constants.MAP_FIXED] }), value, 'MAP_FIXED');
  t.throws(() => mmap(m, pageSize, { flags: ['shared', 'private'] }), value, "'shared' + 'private' (would OR to MAP_SHARED_VALIDATE)");
  t.throws(() => mmap(m, pageSize, { flags: ['private', 'shared-validate'] }), value, "'private' + 'shared-validate'");
  t.throws(() => mmap(m, pageSize, { flags: [constants.MAP_SHARED, constants.MAP_PRIVATE] }), value, 'MAP_SHARED + MAP_PRIVATE bits');
  t.throws(() => mmap(m, pageSize, null as never), type, 'options null');
  t.equal(native.counters().mmap, before, 'no mmap(2) was attempted');
});

t.test('Mapping cannot be constructed directly: ERR_ILLEGAL_CONSTRUCTOR', async (t) => {
  const illegal = { constructor: TypeError, code: 'ERR_ILLEGAL_CONSTRUCTOR', message: 'Illegal constructor' };
  const Ctor = Mapping as unknown as new (...a: unknown[]) => Mapping;
  t.throws(() => new Ctor(), illegal, 'was a TypeError reading address of undefined');
  t.throws(() => new Ctor({ address: () => 0n }, 4096, 0n, 3, undefined), illegal, 'a look-alike of the native mapping');
});

t.test('window() and read() validate offset before using it for the default length', async (t) => {
  using m = sizedMemfd(2 * pageSize);
  using map = mmap(m, 2 * pageSize);
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  t.throws(() => map.window(0n as never), type, 'window(0n): was a TypeError mixing BigInt');
  t.throws(() => map.read(0n as never), type, 'read(0n)');
  t.throws(() => map.window(Symbol() as never), type, 'window(Symbol)');
  t.equal(map.window(pageSize).byteLength, pageSize, 'the default length is the rest of the mapping');
  t.equal(map.read(Buffer.alloc(pageSize), pageSize).length, pageSize);
});

t.test('a GC-collected Mapping is unmapped exactly once (child, --expose-gc)', async (t) => {
  const r = report<Record<string, unknown>>(runTs(path.join(__dirname, '..', 'fixtures', 'gc-mapping.ts'), ['--expose-gc']));
  t.equal(r.mappedBeforeGc, true, 'mapped before GC');
  t.ok((r.rounds as number) > 0, `unmapped after ${r.rounds} GC round(s)`);
  t.equal(r.gcMmaps, 1);
  t.equal(r.gcMunmaps, 1, 'the finalizer unmapped it once');
  t.equal(r.unmappedGone, true, 'unmap() removed it from /proc/self/maps');
  t.equal(r.explicitMunmaps, 1, 'GC after unmap() does not unmap again');
  t.equal(r.viewStillMapped, true, 'a view over .buffer keeps the pages mapped');
  t.ok((r.viewRounds as number) > 0, 'unmapped once the view is gone too');
  t.equal(r.balanced, true, 'every mmap matched by one munmap');
});

leaks.check(t);
