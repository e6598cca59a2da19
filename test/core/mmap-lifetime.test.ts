// Views that outlive unmap() or exceed one ArrayBuffer: each scenario runs in
// a child (test/fixtures/mmap-lifetime.ts, --expose-gc) because before the
// fix it aborted the process or wrote into another mapping.
import t from 'tap';
import * as path from 'node:path';

import { maxViewLength, pageSize } from '../../lib';
import { report, runTs } from '../helpers';

function scenario(name: string): Record<string, unknown> {
  const fixture = path.join(__dirname, '..', 'fixtures', 'mmap-lifetime.ts');
  return report<Record<string, unknown>>(runTs(fixture, ['--expose-gc'], { SCENARIO: name }));
}

const hasTransfer = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';

t.test(
  'a buffer moved by transfer() before unmap() never reaches the next mapping',
  { skip: hasTransfer ? false : `ArrayBuffer.prototype.transfer() does not exist on Node ${process.version}` },
  async (t) => {
    const r = scenario('transfer');
    t.equal(r.sameAddress, false, 'the old range is still reserved, so the next mmap lands elsewhere');
    t.same(r.staleRead, [0], 'the moved buffer reads zeros, not the unmapped file');
    t.same(r.newMapping, [0x22], "writes through the moved buffer left the new mapping's bytes alone");
    t.same(r.oldFile, [0x11], 'and did not reach the unmapped file');
    t.same(r.whileMoved, { mmap: 2, munmap: 0, pinned: 1 }, 'range pinned while the moved buffer lives');
    t.ok((r.rounds as number) > 0, 'unmapped once the moved buffer was collected');
    t.same(r.after, { mmap: 2, munmap: 2, pinned: 0 }, 'exactly one munmap per mapping');
    t.equal(r.balanced, true);
  },
);

t.test('fs.readSync() into a view after unmap() reads nothing and writes nowhere', async (t) => {
  const r = scenario('readSyncAfterUnmap');
  t.equal(r.viewLength, 0, 'the view is detached');
  t.equal(r.bytesRead, 0, 'a read into it reads 0 bytes');
  t.equal(r.explicitLength, 'ERR_INVALID_ARG_VALUE', 'asking for a page throws (empty buffer) before any read');
  t.same(r.newMapping, [0x22], 'the next mapping is untouched');
  t.same(r.oldFile, [0x11], 'the unmapped file is untouched');
});

t.test('an fs.read() in flight across unmap() and GC lands in no other mapping', async (t) => {
  const r = scenario('pendingRead');
  t.same(r.whilePending, { mmap: 1, munmap: 0, pinned: 1 }, 'the range stays reserved while the read holds the view');
  t.equal(r.landedOnOld, false, 'no new mapping got the old address');
  t.equal(r.bytesRead, pageSize, 'the read completed');
  t.same(r.newMappings, [0x22], 'none of the 8 new mappings was written');
  t.same(r.oldFile, [0x11], 'nor the unmapped file');
  t.ok((r.rounds as number) > 0, 'unmapped after the read settled and its view was collected');
  t.same(r.after, { mmap: 9, munmap: 9, pinned: 0 });
  t.equal(r.balanced, true);
});

t.test('a window stays valid after its Mapping is collected, and is then unmapped once', async (t) => {
  const r = scenario('windowOutlivesMapping');
  t.equal(r.stillMapped, true, 'still in /proc/self/maps after the Mapping was collected');
  t.equal(r.windowReads, 0x11, 'the window reads the file');
  t.same(r.fileSawWrite, [0x33], 'and writes reach it');
  t.same(r.beforeDrop, { mmap: 1, munmap: 0, pinned: 0 });
  t.ok((r.rounds as number) > 0, 'unmapped once the window is gone');
  t.same(r.after, { mmap: 1, munmap: 1, pinned: 0 });
});

t.test('unmap() during msync() with a view alive: msync settles, one munmap after GC', async (t) => {
  const r = scenario('unmapDuringMsync');
  t.equal(r.viewLength, 0, 'the view is detached at once');
  t.equal(r.settled, true, 'msync() resolved');
  t.same(r.whileViewAlive, { mmap: 1, munmap: 0, pinned: 1 });
  t.ok((r.rounds as number) > 0);
  t.same(r.after, { mmap: 1, munmap: 1, pinned: 0 });
});

t.test('unmap() during msync() with no ArrayBuffer made unmaps when it settles', async (t) => {
  const r = scenario('unmapDuringMsyncNoView');
  t.same(r.whilePending, { mmap: 1, munmap: 0, pinned: 0 }, 'the worker holds the range until msync returns');
  t.same(r.settled, { mmap: 1, munmap: 1, pinned: 0 }, 'unmapped exactly once when it settles');
  t.equal(r.stillMapped, false, 'gone from /proc/self/maps');
});

t.test(
  "mprotect('read') is refused while .buffer moved by transfer() lives, and works once it is collected",
  { skip: hasTransfer ? false : `ArrayBuffer.prototype.transfer() does not exist on Node ${process.version}` },
  async (t) => {
    const r = scenario('mprotectTransfer');
    t.same(r.refused, {
      code: 'ERR_P2PDMA_MAPPING_BUSY',
      message: 'mprotect(PROT_READ) refused: 1 ArrayBuffer over this mapping cannot be detached (moved by transfer(), or collected but not yet finalized) and would fault',
    });
    t.equal(r.protWhileMoved, 3, 'still PROT_READ | PROT_WRITE');
    t.same(r.fileWhileMoved, [0x55], 'writes through the moved buffer still reach the file');
    t.ok((r.rounds as number) > 0, 'mprotect() succeeded once the moved buffer was collected');
    t.equal(r.protAfter, 1);
    t.same(r.read, [0x55]);
    t.equal(r.after, 1, 'unmapped once');
    t.equal(r.balanced, true);
  },
);

t.test("an fs.read() in flight into .buffer across mprotect('read') fails with EFAULT, no crash", async (t) => {
  const r = scenario('pendingReadMprotect');
  t.equal(r.viewLength, 0, 'the view is detached at once');
  t.equal(r.read, 'EFAULT', "the kernel's copy into the read-only pages faulted");
  t.same(r.mapping, [0x11], 'nothing was written');
  t.same(r.file, [0x11]);
  t.ok((r.rounds as number) > 0, 'unmapped once the view was collected');
  t.equal(r.balanced, true);
});

t.test('.buffer in a transfer list (worker postMessage, structuredClone) is refused or copied', async (t) => {
  const r = scenario('transferList');
  // Node 20 copies buffers it may not transfer; Node 22+ refuses them.
  const refusedOrCopied = new RegExp(`^(DataCloneError|copied ${pageSize})$`);
  t.match(r.worker, refusedOrCopied, `worker postMessage: ${r.worker}`);
  t.match(r.structuredClone, refusedOrCopied, `structuredClone: ${r.structuredClone}`);
  t.equal(r.attached, pageSize, '.buffer is still attached');
  t.same(r.mapping, [0x11], 'writes to a copy did not reach the mapping');
});

t.test('a 5 GiB mapping works through windows and copies on every Node line', async (t) => {
  const r = scenario('large');
  const size = 5 * 2 ** 30;
  t.equal(r.maxViewLength, maxViewLength, 'the limit is read from buffer.constants.MAX_LENGTH');
  if (size > maxViewLength) {
    t.match(r.buffer, { code: 'ERR_OUT_OF_RANGE', message: new RegExp(`MAX_LENGTH \\(${maxViewLength}\\)`) }, '.buffer names the limit');
  } else {
    t.equal(r.buffer, size, '.buffer spans the whole mapping');
  }
  t.same(r.windowWrite, [1, 2, 3], 'a window above 4 GiB writes the file at that offset');
  t.same(r.tail, [9, 8], 'read() copies the last bytes');
  t.equal(r.tooLongWindow, 'ERR_OUT_OF_RANGE', 'a window longer than the limit is refused');
  t.same(r.after, { mmap: 1, munmap: 1, pinned: 0 });
  t.equal(r.balanced, true);
});
