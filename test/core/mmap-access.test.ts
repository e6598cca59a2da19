// What JS may touch: no ArrayBuffer over pages it cannot read and write, no
// mapping past the end of a regular file. The touches run in a child
// (test/fixtures/mmap-access.ts): each used to crash with SIGSEGV or SIGBUS.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Fd, memfd, mmap, pageSize } from '../../lib';
import { native } from '../../lib/core/native';
import { expectCode, leakGuard, report, runTs, tempFile } from '../helpers';

const leaks = leakGuard();

const r = report<Record<string, Record<string, unknown>>>(runTs(path.join(__dirname, '..', 'fixtures', 'mmap-access.ts')));

function refused(needs: string, mappedAs: string, what: string) {
  return { code: 'ERR_P2PDMA_MAPPING_ACCESS', message: `${what} needs a mapping with ${needs}; this one is mapped ${mappedAs}` };
}

t.test("prot 'read': no .buffer or window(), read() copies, write() is refused", async (t) => {
  t.same(r.read.buffer, refused('PROT_READ | PROT_WRITE', 'PROT_READ', '.buffer'));
  t.same(r.read.window, refused('PROT_READ | PROT_WRITE', 'PROT_READ', 'window()'));
  t.same(r.read.read, [0x11], 'read() returns the bytes');
  t.same(r.read.write, refused('PROT_WRITE', 'PROT_READ', 'write()'));
});

t.test("prot 'write': no .buffer, write() copies in, read() is refused", async (t) => {
  t.same(r.write.buffer, refused('PROT_READ | PROT_WRITE', 'PROT_WRITE', '.buffer'));
  t.same(r.write.window, refused('PROT_READ | PROT_WRITE', 'PROT_WRITE', 'window()'));
  t.same(r.write.write, 'ok');
  t.same(r.write.read, refused('PROT_READ', 'PROT_WRITE', 'read()'));
  t.same(r.file.bytes, [0x11, 0x22], 'only the write() through the PROT_WRITE mapping reached the file');
});

t.test("prot 'none': every access is refused", async (t) => {
  t.same(r.none.buffer, refused('PROT_READ | PROT_WRITE', 'PROT_NONE', '.buffer'));
  t.same(r.none.window, refused('PROT_READ | PROT_WRITE', 'PROT_NONE', 'window()'));
  t.same(r.none.read, refused('PROT_READ', 'PROT_NONE', 'read()'));
  t.same(r.none.write, refused('PROT_WRITE', 'PROT_NONE', 'write()'));
});

t.test('numeric prot without PROT_WRITE gets no .buffer', async (t) => {
  t.same(r['5'].buffer, refused('PROT_READ | PROT_WRITE', 'PROT_READ | PROT_EXEC', '.buffer'));
  t.same(r['5'].read, [0x11]);
});

t.test("mprotect('read') detaches .buffer and windows taken before: empty, and writes through them go nowhere", async (t) => {
  t.same(r.mprotect, {
    byteLength: 0,
    view: [0, 'undefined'],
    window: [0, 'undefined'],
    file: [0x33, 0x33],
    buffer: refused('PROT_READ | PROT_WRITE', 'PROT_READ', '.buffer'),
    read: [0x33],
  });
});

t.test('a range past the last page of a memfd is refused before mmap(2)', async (t) => {
  using empty = memfd('p2pdma-test-access-empty');
  using small = memfd('p2pdma-test-access-small');
  fs.ftruncateSync(small.fd, 100);
  const before = native.counters().mmap;
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => mmap(empty, pageSize), range, 'a page of an empty memfd');
  t.throws(() => mmap(empty, pageSize), { message: /file's size, 0, rounded up to the page size/ });
  t.throws(() => mmap(small, 2 * pageSize), range, 'a page wholly past the end');
  t.throws(() => mmap(small, pageSize, { offset: pageSize }), range, 'an offset past the end');
  t.equal(native.counters().mmap, before, 'no mmap(2) was attempted');
  using map = mmap(small, pageSize);
  t.same([...map.read(Buffer.alloc(4), 98)], [0, 0, 0, 0], 'the last page maps whole; bytes past the end read as 0');
});

t.test('regular files are checked like memfds', async (t) => {
  const file = tempFile(pageSize);
  using f = Fd.open(file, 'r+');
  t.throws(() => mmap(f, 2 * pageSize), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  using map = mmap(f, pageSize);
  t.equal(map.length, pageSize);
  fs.rmSync(path.dirname(file), { recursive: true });
});

t.test('files on sysfs and procfs are left to mmap(2) (p2pmem allocate has size 0)', async (t) => {
  for (const file of ['/proc/self/status', '/sys/kernel/mm/transparent_hugepage/enabled']) {
    if (!fs.existsSync(file)) continue;
    const fd = fs.openSync(file, 'r');
    t.ok(fs.fstatSync(fd).size < 2 * pageSize, `${file} is smaller than the range`);
    t.throws(() => mmap(fd, 2 * pageSize, { prot: 'read', flags: 'private' }), { code: 'ENODEV', syscall: 'mmap', fd }, file);
    fs.closeSync(fd);
  }
});

t.test('character devices are not size-checked', async (t) => {
  const fd = fs.openSync('/dev/zero', 'r');
  using map = mmap(fd, 2 * pageSize, { prot: 'read', flags: 'private' });
  t.same([...new Set(map.read())], [0]);
  map.unmap();
  fs.closeSync(fd);
});

leaks.check(t);
