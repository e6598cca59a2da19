// DmaBuf on the host: the host kernel has no exporter we can reach
// (udmabuf, heaps and vgem live in the guest suite), so this covers the
// parsing and every refusal that needs no real dma-buf.
import t from 'tap';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';

import { DmaBuf, Fd, eventfd, isDmaBuf, memfd } from '../../lib';
import { parseDmaBufFdinfo } from '../../lib/dmabuf/dmabuf';
import { expectCode, leakGuard, TEST_PREFIX } from '../helpers';

const leaks = leakGuard();

// dma_buf_show_fdinfo() after the generic block, 6.12 (ino present, size in
// the dma-buf block) and the later layout with size moved up into the
// generic block and no ino (6.0/6.1 lack ino too).
const FDINFO_612 = 'pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1042\nsize:\t65536\ncount:\t1\nexp_name:\tsystem\nname:\tframes\n';
const FDINFO_SIZE_FIRST = 'size:\t8192\npos:\t0\nflags:\t02000000\nmnt_id:\t15\ncount:\t3\nexp_name:\tudmabuf\n';

t.test('parseDmaBufFdinfo reads the 6.12 layout', async (t) => {
  t.same(parseDmaBufFdinfo(FDINFO_612), { size: 65536, count: 1, exporter: 'system', name: 'frames', inode: 1042, flags: 0o2000002 });
});

t.test('parseDmaBufFdinfo reads size from the generic block and takes the inode from elsewhere without ino', async (t) => {
  t.same(parseDmaBufFdinfo(FDINFO_SIZE_FIRST, 77), { size: 8192, count: 3, exporter: 'udmabuf', name: undefined, inode: 77, flags: 0o2000000 });
});

t.test('parseDmaBufFdinfo keeps a name with spaces and colons', async (t) => {
  t.equal(parseDmaBufFdinfo(FDINFO_612.replace('frames', 'cam 0: raw'))!.name, 'cam 0: raw');
});

t.test('parseDmaBufFdinfo returns undefined for a file that is not a dma-buf', async (t) => {
  t.equal(parseDmaBufFdinfo('pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t5\n'), undefined);
});

t.test('isDmaBuf is false for a memfd, an eventfd and /dev/null', async (t) => {
  using m = memfd(TEST_PREFIX);
  using e = eventfd();
  using n = Fd.open('/dev/null');
  t.equal(isDmaBuf(m), false);
  t.equal(isDmaBuf(e), false);
  t.equal(isDmaBuf(n.fd), false);
});

t.test('DmaBuf.from refuses a memfd, naming what the fd is, and takes nothing', async (t) => {
  using m = memfd(`${TEST_PREFIX}-foreign`);
  t.throws(() => DmaBuf.from(m), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: new RegExp(`must be a dma-buf file descriptor; fd ${m.fd} is /memfd:${TEST_PREFIX}-foreign \\(deleted\\)`),
  });
  t.throws(() => DmaBuf.from(m, { own: true }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.notOk(m.closed, 'the memfd handle is still open and still its own');
  t.throws(() => DmaBuf.from(m.fd, { own: true }), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
  t.ok(fs.existsSync(`/proc/self/fd/${m.fd}`), 'the fd number was not closed');
});

t.test('DmaBuf.from refuses a FileHandle of a regular file, and own: true for any FileHandle', async (t) => {
  const fh = await fsp.open('/proc/self/status', 'r');
  try {
    t.throws(() => DmaBuf.from(fh), expectCode(TypeError, 'ERR_INVALID_ARG_VALUE'));
    t.throws(() => DmaBuf.from(fh, { own: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /cannot be true for a FileHandle/ });
  } finally {
    await fh.close();
  }
  t.throws(() => DmaBuf.from(fh), { code: 'ERR_P2PDMA_CLOSED' }, 'a closed FileHandle');
});

t.test('DmaBuf.from validates its arguments', async (t) => {
  t.throws(() => DmaBuf.from(-1), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => DmaBuf.from(2 ** 31), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => DmaBuf.from('3' as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => DmaBuf.from(0, null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => DmaBuf.from(0, { own: 1 as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  const closed = memfd(TEST_PREFIX);
  closed.close();
  t.throws(() => DmaBuf.from(closed), { code: 'ERR_P2PDMA_CLOSED' });
});

// A DmaBuf wrapped around a non-dma-buf fd (the constructor takes any fd,
// as Fd's does) still fails cleanly in every method: the kernel says ENOTTY.
t.test('every method on a DmaBuf over a foreign fd fails with a clear error, none crashes', async (t) => {
  const m = memfd(TEST_PREFIX);
  fs.ftruncateSync(m.fd, 8192);
  using b = new DmaBuf(m.release());
  t.equal(b.size, 8192, 'size is the inode size');
  t.throws(() => b.info(), { code: 'ERR_INVALID_ARG_VALUE', message: /must be a dma-buf/ });
  t.throws(() => b.setName('x'), { code: 'ENOTTY', syscall: 'ioctl', request: 'DMA_BUF_SET_NAME' });
  t.throws(() => b.beginCpuAccess('rw'), { code: 'ENOTTY', request: 'DMA_BUF_IOCTL_SYNC' });
  t.throws(() => b.withCpuAccess('read', () => t.fail('must not run')), { code: 'ENOTTY' });
  t.throws(() => b.exportSyncFile('read'), { code: 'ENOTTY', request: 'DMA_BUF_IOCTL_EXPORT_SYNC_FILE' });
  using e = eventfd();
  t.throws(() => b.importSyncFile(e, 'write'), { code: 'ENOTTY', request: 'DMA_BUF_IOCTL_IMPORT_SYNC_FILE' });
  await t.rejects(b.waitIdle('read'), { code: 'EPERM', syscall: 'epoll_ctl' }, 'a memfd cannot be polled');
});

t.test('map() maps the whole buffer or a page-aligned part, zero copy, and outlives close()', async (t) => {
  const m = memfd(TEST_PREFIX);
  fs.ftruncateSync(m.fd, 3 * 4096);
  fs.writeSync(m.fd, Buffer.from('tail'), 0, 4, 2 * 4096);
  const b = new DmaBuf(m.release());
  using whole = b.map();
  t.equal(whole.length, 3 * 4096);
  t.equal(whole.source, b, 'the mapping keeps its DmaBuf reachable');
  using part = b.map({ offset: 2 * 4096, length: 4096 });
  t.equal(Buffer.from(part.buffer, 0, 4).toString(), 'tail');
  new Uint8Array(whole.buffer)[2 * 4096] = 0x54; // 'T'
  t.equal(Buffer.from(part.buffer, 0, 4).toString(), 'Tail', 'two views of the same pages');
  using ro = b.map({ prot: 'read' });
  t.throws(() => ro.buffer, { code: 'ERR_P2PDMA_MAPPING_ACCESS' });
  b.close();
  t.equal(Buffer.from(part.buffer, 0, 4).toString(), 'Tail', 'still mapped after close()');
});

t.test('bad arguments are refused before any syscall', async (t) => {
  const m = memfd(TEST_PREFIX);
  fs.ftruncateSync(m.fd, 8192);
  using b = new DmaBuf(m.release());
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  const value = expectCode(TypeError, 'ERR_INVALID_ARG_VALUE');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => b.setName(1 as never), type);
  t.throws(() => b.setName('a\0b'), value);
  t.throws(() => b.setName('x'.repeat(32)), { code: 'ERR_OUT_OF_RANGE', message: /at most 31 UTF-8 bytes \(32 with the NUL\)\. Received 32 bytes/ });
  t.throws(() => b.setName('é'.repeat(16)), range, '16 characters but 32 bytes');
  t.throws(() => b.beginCpuAccess('readwrite' as never), value);
  t.throws(() => b.beginCpuAccess(1 as never), type);
  t.throws(() => b.withCpuAccess('rw', 'fn' as never), type);
  t.throws(() => b.exportSyncFile('x' as never), value);
  t.throws(() => b.importSyncFile(-1, 'read'), range);
  await t.rejects(b.waitIdle('rw', { timeoutMs: -1 }), range);
  await t.rejects(b.waitIdle('rw', null as never), type);
  t.throws(() => b.waitIdleSync('rw', { timeoutMs: 1.5 }), range);
  t.throws(() => b.map({ offset: 100 }), range, 'unaligned offset');
  t.throws(() => b.map({ offset: 8192 }), range, 'offset at the end');
  t.throws(() => b.map({ length: 8193 }), range, 'past the end');
  t.throws(() => b.map({ length: 0 }), range);
  t.throws(() => b.map({ length: -4096 }), range);
  t.throws(() => b.map({ offset: '0' as never }), type);
});

t.test('a closed DmaBuf throws ERR_P2PDMA_CLOSED everywhere', async (t) => {
  const m = memfd(TEST_PREFIX);
  fs.ftruncateSync(m.fd, 4096);
  const b = new DmaBuf(m.release());
  b.close();
  const closed = { code: 'ERR_P2PDMA_CLOSED' };
  t.throws(() => b.size, closed);
  t.throws(() => b.info(), closed);
  t.throws(() => b.setName('x'), closed);
  t.throws(() => b.beginCpuAccess('rw'), closed);
  t.throws(() => b.map(), closed);
  t.throws(() => b.exportSyncFile('rw'), closed);
  t.throws(() => b.importSyncFile(0, 'rw'), closed);
  await t.rejects(b.waitIdle('rw'), closed);
  t.throws(() => b.waitIdleSync('rw'), closed);
});

leaks.check(t);
