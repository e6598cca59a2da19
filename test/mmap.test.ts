// mmap(): round trips, unmap/detach semantics, GC, argument checks.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Fd, Mapping, constants, memfd, mmap, pageSize } from '../lib/index';
import { native } from '../lib/native';
import { expectCode, leakGuard, report, runTs, tempFile, testMaps } from './helpers';

const leaks = leakGuard();

function sizedMemfd(size: number, name = 'p2pdma-test-mmap'): Fd {
  const m = memfd(name);
  fs.ftruncateSync(m.fd, size);
  return m;
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
  t.equal(new Uint8Array(map.buffer)[0], 3, 'third page');
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

t.test('unmap() detaches .buffer and a later access does not crash', async (t) => {
  using m = sizedMemfd(pageSize);
  const before = native.counters();
  const map = mmap(m, pageSize);
  const view = new Uint8Array(map.buffer);
  view[0] = 1;
  map.unmap();
  t.ok(map.unmapped);
  t.equal(map.buffer.byteLength, 0, 'detached');
  t.equal(view.length, 0, 'views over it are empty');
  t.equal(view[0], undefined, 'reads give undefined');
  view[0] = 2; // ignored, no fault
  t.same(testMaps().filter((l) => l.includes('p2pdma-test-mmap')), [], 'gone from /proc/self/maps');
  map.unmap();
  map[Symbol.dispose]();
  t.equal(native.counters().munmap - before.munmap, 1, 'idempotent: one munmap');
});

t.test('msync works while mapped and throws ERR_P2PDMA_CLOSED after unmap', async (t) => {
  using m = sizedMemfd(pageSize);
  const map = mmap(m, pageSize);
  t.equal(map.msync(), undefined);
  t.equal(map.msync(['async', 'invalidate']), undefined);
  await t.resolves(map.msyncAsync());
  t.throws(() => map.msync('x' as never), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  map.unmap();
  t.throws(() => map.msync(), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
  await t.rejects(map.msyncAsync(), expectCode(Error, 'ERR_P2PDMA_CLOSED'));
});

t.test('msync failures are system errors', async (t) => {
  using m = sizedMemfd(pageSize);
  using map = mmap(m, pageSize);
  t.throws(() => map.msync(constants.MS_SYNC | constants.MS_ASYNC), { code: 'EINVAL', syscall: 'msync' });
  await t.rejects(map.msyncAsync(constants.MS_SYNC | constants.MS_ASYNC), { code: 'EINVAL', syscall: 'msync' });
});

t.test('unmap() during msyncAsync() detaches now and unmaps when it settles', async (t) => {
  using m = sizedMemfd(pageSize, 'p2pdma-test-mmap-async');
  const before = native.counters();
  const map = mmap(m, pageSize);
  const p = map.msyncAsync();
  map.unmap();
  t.equal(map.buffer.byteLength, 0, 'detached at once');
  await p;
  t.equal(native.counters().munmap - before.munmap, 1, 'unmapped exactly once');
  t.same(testMaps().filter((l) => l.includes('p2pdma-test-mmap-async')), []);
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
  t.throws(() => mmap(m, pageSize, null as never), type, 'options null');
  t.equal(native.counters().mmap, before, 'no mmap(2) was attempted');
});

t.test('a GC-collected Mapping is unmapped exactly once (child, --expose-gc)', async (t) => {
  const r = report<Record<string, unknown>>(runTs(path.join(__dirname, 'fixtures', 'gc-mapping.ts'), ['--expose-gc']));
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
