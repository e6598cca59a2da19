/**
 * Leak check for the dma-buf guest tests: the fds and dma-buf mappings of
 * this process at the start of a file and at its end must match. (The host
 * suite's leakGuard in test/helpers.ts does not type-check under the guest
 * tsconfig.)
 */
import t from 'tap';
import * as fs from 'node:fs';

// Fds that libuv and V8 open lazily on first use; not ours.
const RUNTIME_FD = /^anon_inode:\[?(io_uring|eventfd|eventpoll|timerfd|signalfd)/;

function fds(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (!RUNTIME_FD.test(target)) out.push(`${fd} -> ${target}`);
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
  return {
    check() {
      t.test('leaves no fds or dma-buf mappings behind', async (t) => {
        t.same(fds().filter((f) => !before.fds.includes(f)), [], 'no new open fds');
        t.same(dmabufMaps().filter((m) => !before.maps.includes(m)), [], 'no new dma-buf or DRM mappings');
      });
    },
  };
}
