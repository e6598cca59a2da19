// dma-buf heaps in the guest: the upstream kselftest
// (tools/testing/selftests/dmabuf-heaps) as tap tests, for every heap, plus
// our API's own behaviour (info, names, async alloc, abort).
import t from 'tap';
import * as fs from 'node:fs';

import { DmaBuf, DmaHeap, Drm, ioctlSync, requests } from '../../lib';
import { dmabufLeakGuard } from './dmabuf-leaks';
import { guest } from './helpers';

const leaks = dmabufLeakGuard();

const heaps = guest.skip ? [] : DmaHeap.list();
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const openFds = () => fs.readdirSync('/proc/self/fd').length;

t.test('the guest kernel has dma-buf heaps, system among them', guest, async (t) => {
  t.ok(heaps.includes('system'), `heaps: ${heaps.join(', ')}`);
});

for (const name of heaps) {
  t.test(`${name}: open and close`, guest, async (t) => {
    using heap = DmaHeap.open(name);
    t.equal(heap.name, name);
    t.ok(fs.fstatSync(heap.fd).isCharacterDevice());
  });

  t.test(`${name}: alloc, map, sync, write and read back`, guest, async (t) => {
    using heap = DmaHeap.open(name);
    using buf = heap.allocSync(4 * 4096);
    t.type(buf, DmaBuf);
    t.equal(buf.size, 4 * 4096);
    using m = buf.map();
    const view = new Uint8Array(m.buffer);
    buf.withCpuAccess('write', () => view.fill(0xa5));
    {
      using access = buf.beginCpuAccess('read');
      t.equal(access.mode, 'read');
      t.ok(view.every((b) => b === 0xa5), 'what was written reads back');
    }
    const fdFlags = parseInt(/flags:\s+(\d+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${buf.fd}`, 'utf8'))![1], 8);
    t.ok(fdFlags & O_CLOEXEC, 'the fd is close-on-exec');
    t.equal(fdFlags & 3, O_RDWR, 'read-write by default');
  });

  t.test(`${name}: buffers come back zeroed`, guest, async (t) => {
    using heap = DmaHeap.open(name);
    // As the kselftest: dirty 32 buffers, free them, allocate again.
    for (let i = 0; i < 32; i++) {
      using b = heap.allocSync(4096);
      using m = b.map();
      new Uint8Array(m.buffer).fill(0xff);
    }
    for (let i = 0; i < 32; i++) {
      using b = heap.allocSync(4096);
      using m = b.map();
      if (!new Uint8Array(m.buffer).every((x) => x === 0)) {
        t.fail(`buffer ${i} was not zeroed`);
        return;
      }
    }
    t.pass('32 buffers zeroed');
  });

  t.test(`${name}: a heap buffer imports into vgem`, guest, async (t) => {
    using heap = DmaHeap.open(name);
    using buf = heap.allocSync(8192);
    using vgem = Drm.open({ driver: 'vgem' });
    using gem = vgem.importBuffer(buf);
    t.ok(gem.handle > 0, `handle ${gem.handle}`);
    t.equal(gem.size, 8192);
    // And back out: the kernel hands back the same dma-buf.
    using again = vgem.exportBuffer(gem);
    t.equal(again.info().inode, buf.info().inode, 'the same buffer');
  });

  t.test(`${name}: invalid heap_flags and fd_flags are EINVAL from the kernel`, guest, async (t) => {
    using heap = DmaHeap.open(name);
    t.throws(() => heap.allocSync(4096, { heapFlags: 2n ** 64n - 1n }), { code: 'EINVAL', request: 'DMA_HEAP_IOCTL_ALLOC' });
    t.throws(() => heap.allocSync(4096, { fdFlags: 0xffffffff }), { code: 'EINVAL', request: 'DMA_HEAP_IOCTL_ALLOC' });
    await t.rejects(heap.alloc(4096, { heapFlags: 1 }), { code: 'EINVAL', syscall: 'ioctl' });
  });

  t.test(`${name}: the raw ioctl with a zero length is EINVAL`, guest, async (t) => {
    using heap = DmaHeap.open(name);
    const arg = Buffer.alloc(24);
    arg.writeUInt32LE(O_RDWR | O_CLOEXEC, 12);
    t.throws(() => ioctlSync(heap, requests.DMA_HEAP_IOCTL_ALLOC, arg), { code: 'EINVAL' });
  });
}

t.test('alloc() resolves on the thread pool with a DmaBuf, and sizes round up to pages', guest, async (t) => {
  using heap = DmaHeap.open();
  using buf = await heap.alloc(5000);
  t.equal(buf.size, 8192);
  const info = buf.info();
  t.equal(info.exporter, 'system');
  t.equal(info.size, 8192);
  t.equal(info.inode, fs.fstatSync(buf.fd).ino);
});

t.test('setName shows in fdinfo; 31 bytes fit and 32 do not', guest, async (t) => {
  using heap = DmaHeap.open();
  using buf = heap.allocSync(4096);
  t.equal(buf.info().name, undefined, 'no name at first');
  buf.setName('x'.repeat(31));
  t.equal(buf.info().name, 'x'.repeat(31));
  buf.setName('frames');
  t.equal(buf.info().name, 'frames');
  t.throws(() => buf.setName('x'.repeat(32)), { code: 'ERR_OUT_OF_RANGE' });
  t.equal(buf.info().name, 'frames', 'unchanged by the refused name');
});

t.test('an alloc() aborted while it runs rejects at once and its buffer is closed when it lands', guest, async (t) => {
  const heap = DmaHeap.open();
  const before = openFds();
  const ac = new AbortController();
  const p = heap.alloc(32 << 20, { signal: ac.signal });
  ac.abort();
  await t.rejects(p, { name: 'AbortError' });
  // The ioctl still runs on the pool, holding the heap's fd: the heap is
  // really closed once it has landed (waiting for the count to drop raced
  // with a landing that had not happened yet). The landed buffer is closed
  // in a promise callback of that same settlement.
  await heap[Symbol.asyncDispose]();
  await new Promise((r) => setImmediate(r));
  t.equal(openFds(), before - 1, 'no fd left behind: only the heap\'s own is gone');
});

t.test('DmaBuf.from dups by default and takes the number with own: true; count follows the fds', guest, async (t) => {
  using heap = DmaHeap.open();
  const buf = heap.allocSync(4096);
  const dup = DmaBuf.from(buf.fd);
  t.not(dup.fd, buf.fd);
  t.equal(dup.info().inode, buf.info().inode);
  const n = buf.release();
  using owned = DmaBuf.from(n, { own: true });
  t.equal(owned.fd, n);
  const withDup = owned.info().count;
  dup.close();
  t.equal(withDup - owned.info().count, 1, 'closing the dup drops one reference');
});

t.test('a mapping outlives close() of its DmaBuf', guest, async (t) => {
  using heap = DmaHeap.open();
  const buf = heap.allocSync(4096);
  using m = buf.map();
  buf.close();
  const v = new Uint8Array(m.buffer);
  v[0] = 42;
  t.equal(v[0], 42);
  t.ok(fs.readFileSync('/proc/self/maps', 'utf8').includes('/dmabuf:'), 'still mapped');
});

t.test('withCpuAccess ends the bracket when fn throws or rejects and passes results through', guest, async (t) => {
  using heap = DmaHeap.open();
  using buf = heap.allocSync(4096);
  t.equal(buf.withCpuAccess('rw', () => 7), 7);
  t.throws(() => buf.withCpuAccess('rw', () => { throw new Error('boom'); }), { message: 'boom' });
  await t.rejects(buf.withCpuAccess('read', async () => { throw new Error('later'); }), { message: 'later' });
  t.equal(await buf.withCpuAccess('write', async () => 'ok'), 'ok');
  // END with no START is accepted by the kernel, so brackets are checked by
  // the next START working.
  using a = buf.beginCpuAccess('rw');
  a.end();
  t.ok(a.ended);
});

leaks.check();
