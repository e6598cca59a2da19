// DmaHeap on the host (no heaps here; allocation is tested in the guest):
// listing, opening a missing heap, argument checks, and the ioctl error and
// abort paths through a DmaHeap over a foreign fd.
import t from 'tap';
import * as fs from 'node:fs';

import { DmaHeap, memfd } from '../../lib';
import { expectCode, leakGuard, TEST_PREFIX } from '../helpers';

const leaks = leakGuard();
const hostHasHeaps = fs.existsSync('/dev/dma_heap');

t.test('DmaHeap.list() lists /dev/dma_heap, [] without it', { skip: hostHasHeaps && 'this host has dma-buf heaps' }, async (t) => {
  t.same(DmaHeap.list(), []);
});

t.test('DmaHeap.open() of a missing heap is ENOENT with the path and why', { skip: hostHasHeaps && 'this host has dma-buf heaps' }, async (t) => {
  t.throws(() => DmaHeap.open(), { code: 'ENOENT', path: '/dev/dma_heap/system', message: /no dma-buf heaps: CONFIG_DMABUF_HEAPS/ });
  t.throws(() => DmaHeap.open('cma'), { code: 'ENOENT', path: '/dev/dma_heap/cma' });
});

t.test('DmaHeap.open() refuses names that are not heap names', async (t) => {
  const value = expectCode(TypeError, 'ERR_INVALID_ARG_VALUE');
  t.throws(() => DmaHeap.open('../udmabuf'), value);
  t.throws(() => DmaHeap.open(''), value);
  t.throws(() => DmaHeap.open('..'), value);
  t.throws(() => DmaHeap.open(1 as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

function foreignHeap(): DmaHeap {
  return new DmaHeap(memfd(TEST_PREFIX).release());
}

t.test('alloc() and allocSync() check size and flags before the ioctl', async (t) => {
  using h = foreignHeap();
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  const type = expectCode(TypeError, 'ERR_INVALID_ARG_TYPE');
  for (const size of [0, -4096, 1.5, 2 ** 53, NaN, 0n, -1n, 2n ** 64n]) {
    t.throws(() => h.allocSync(size), range, `allocSync(${String(size)})`);
    await t.rejects(h.alloc(size), range, `alloc(${String(size)})`);
  }
  t.throws(() => h.allocSync('4096' as never), type);
  t.throws(() => h.allocSync(4096, { fdFlags: -1 }), range);
  t.throws(() => h.allocSync(4096, { fdFlags: 2 ** 32 }), range);
  t.throws(() => h.allocSync(4096, { heapFlags: -1 }), range);
  t.throws(() => h.allocSync(4096, { heapFlags: 2n ** 64n }), range);
  t.throws(() => h.allocSync(4096, { heapFlags: '0' as never }), type);
  t.throws(() => h.allocSync(4096, null as never), type);
  await t.rejects(h.alloc(4096, { signal: {} as never }), type);
});

t.test('a failing allocation is a SystemError naming DMA_HEAP_IOCTL_ALLOC, sync and async', async (t) => {
  using h = foreignHeap();
  t.throws(() => h.allocSync(4096), { code: 'ENOTTY', syscall: 'ioctl', request: 'DMA_HEAP_IOCTL_ALLOC', fd: h.fd });
  await t.rejects(h.alloc(4096), { code: 'ENOTTY', syscall: 'ioctl', request: 'DMA_HEAP_IOCTL_ALLOC', fd: h.fd });
});

t.test('alloc() with an aborted signal rejects with AbortError', async (t) => {
  using h = foreignHeap();
  const ac = new AbortController();
  ac.abort(new Error('stop'));
  await t.rejects(h.alloc(4096, { signal: ac.signal }), { name: 'AbortError', code: 'ABORT_ERR' });
  const ac2 = new AbortController();
  const p = h.alloc(4096, { signal: ac2.signal });
  ac2.abort();
  await t.rejects(p, { name: 'AbortError' }, 'an abort while queued wins');
});

t.test('closing the heap while alloc() runs defers its close; a closed heap refuses', async (t) => {
  const h = foreignHeap();
  const p = h.alloc(4096);
  h.close();
  await t.rejects(p, { code: 'ENOTTY' }, 'the call ran on the still-open fd');
  t.throws(() => h.allocSync(4096), { code: 'ERR_P2PDMA_CLOSED' });
  await t.rejects(h.alloc(4096), { code: 'ERR_P2PDMA_CLOSED' });
});

leaks.check(t);
