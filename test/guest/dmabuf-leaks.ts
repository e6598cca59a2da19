/**
 * Leak check for the dma-buf guest tests: the fds and dma-buf mappings of
 * this process at the start of a file and at its end must match. (The host
 * suite's leakGuard in test/helpers.ts does not type-check under the guest
 * tsconfig.)
 */
import t from 'tap';
import * as fs from 'node:fs';

// What the dma-buf APIs open: dma-bufs, sync_files, DRM nodes, heaps,
// udmabuf and memfds. (Node opens pipes, sockets and /dev/null of its own.)
const OURS = /^(\/dmabuf:|anon_inode:(\[)?(sync_file|dmabuf)|\/dev\/(dri|dma_heap|udmabuf)|\/memfd:)/;

function fds(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (OURS.test(target)) out.push(`${fd} -> ${target}`);
    } catch {
      // the fd readdir itself used
    }
  }
  return out.sort();
}

function dmabufMaps(): string[] {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/dmabuf:') || l.includes('/dev/dri/'));
}

/** Call at the top of a test file; `check()` at its end adds the test. */
export function dmabufLeakGuard(): { check(): void } {
  const before = { fds: fds(), maps: dmabufMaps() };
  // P2PDMA_LEAK_TRACE=1: which test left what open, as TAP comments.
  if (process.env.P2PDMA_LEAK_TRACE) {
    t.afterEach((c: { name?: string }) => {
      const extra = fds().filter((f) => !before.fds.includes(f));
      if (extra.length > 0) console.log(`# open after '${c.name}': ${extra.join(', ')}`);
    });
  }
  return {
    check() {
      t.test('leaves no fds or dma-buf mappings behind', async (t) => {
        // A handle closed while a poll on it was settling closes its fd
        // once the event loop has let go of the poll (lib/core/handle.ts).
        for (let i = 0; i < 40 && fds().some((f) => !before.fds.includes(f)); i++) await new Promise((r) => setTimeout(r, 50));
        t.same(fds().filter((f) => !before.fds.includes(f)), [], 'no new open fds');
        t.same(dmabufMaps().filter((m) => !before.maps.includes(m)), [], 'no new dma-buf or DRM mappings');
      });
    },
  };
}
