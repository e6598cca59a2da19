/**
 * Shared helpers for the host suite (not a test file: tap runs
 * test/*.test.ts only).
 */
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Fd } from '../lib/core/handle';
import { native } from '../lib/core/native';

export const repoRoot = path.resolve(__dirname, '..');

/** Name prefix of every memfd and temp file the tests create. */
export const TEST_PREFIX = 'p2pdma-test';

/** Error shapes for t.throws: `expectCode(TypeError, 'ERR_INVALID_ARG_TYPE')`. */
export function expectCode(ctor: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, code: string): object {
  return { constructor: ctor, code };
}

// Fds that libuv and V8 open lazily on first use; not ours.
const RUNTIME_FD = /^anon_inode:\[?(io_uring|eventfd|eventpoll|timerfd|signalfd)/;
// tsx, which runs the test files, reads and writes its transpile cache under
// the temporary directory in the background: never the library's.
const TSX_CACHE_FD = new RegExp(`^${os.tmpdir().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/tsx-\\d+(/|$)`);

function openFds(): Map<string, string> {
  const m = new Map<string, string>();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      m.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // the fd readdir itself used
    }
  }
  return m;
}

/** Open fds of this process as `fd -> link target`, less those the runtime opens lazily. */
export function ownFds(): string[] {
  return [...openFds()].filter(([, target]) => !RUNTIME_FD.test(target)).map(([fd, target]) => `${fd} -> ${target}`);
}

/** /proc/self/maps lines for files the tests made. */
export function testMaps(): string[] {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(TEST_PREFIX));
}

interface Tap {
  test(name: string, fn: (t: TapAssert) => Promise<void>): unknown;
}
interface TapAssert {
  same(a: unknown, b: unknown, msg?: string): void;
  equal(a: unknown, b: unknown, msg?: string): void;
}

/**
 * Snapshot of open fds, test mappings and the addon's mmap/munmap counts.
 * Call at the top of a test file and `leakCheck(t)` at its end.
 */
export function leakGuard(): { check(t: Tap): void } {
  const fds = openFds();
  const maps = testMaps();
  const counts = native.counters();
  return {
    check(t: Tap) {
      t.test('leaves no fds or mappings behind', async (t) => {
        const now = openFds();
        const added = [...now].filter(([fd, target]) => fds.get(fd) !== target && !RUNTIME_FD.test(target) && !TSX_CACHE_FD.test(target));
        t.same(added, [], 'no new open fds (/proc/self/fd)');
        t.same(testMaps(), maps, 'no new test mappings (/proc/self/maps)');
        // An unmapped range that an ArrayBuffer may still reach stays
        // reserved (pinned) until that buffer is collected; it is unmapped
        // as far as the device is concerned.
        const c = native.counters();
        t.equal(c.mmap - counts.mmap, c.munmap - counts.munmap + (c.pinned - counts.pinned), 'every mmap was unmapped');
      });
    },
  };
}

/** A temp file of `size` bytes filled with `fill(i)`; removed by the caller. */
export function tempFile(size: number, fill: (i: number) => number = (i) => i & 0xff): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${TEST_PREFIX}-`));
  const file = path.join(dir, `${TEST_PREFIX}.bin`);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = fill(i);
  fs.writeFileSync(file, b);
  return file;
}

/**
 * Runs a TypeScript file in a fresh node (TypeScript through test/ts-require.cjs) with
 * extra node flags (e.g. --expose-gc). Returns the finished child.
 */
export function runTs(file: string, nodeArgs: string[] = [], env: NodeJS.ProcessEnv = {}, args: string[] = []): SpawnSyncReturns<string> {
  // TypeScript through test/ts-require.cjs (why not the tsx the test files run under: there).
  const loader = ['--require', path.join(__dirname, 'ts-require.cjs')];
  const childEnv = { ...process.env, ...env };
  delete childEnv.NODE_OPTIONS;
  return spawnSync(process.execPath, [...loader, ...nodeArgs, path.join(__dirname, 'run-ts.cjs'), file, ...args], {
    encoding: 'utf8',
    env: childEnv,
    timeout: 30_000,
  });
}

/** Parses the last line of a child's stdout as JSON (the fixture's report). */
export function report<T>(r: SpawnSyncReturns<string>): T {
  if (r.status !== 0) throw new Error(`child exited ${r.status} ${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}

/** A pipe with `n` bytes written into it; both ends are Fd handles (Node has no pipe(2): both ends of a FIFO). */
export function pipeWith(n: number): { r: Fd; w: Fd } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${TEST_PREFIX}-fifo-`));
  const fifo = `${dir}/fifo`;
  execFileSync('mkfifo', [fifo]);
  const r = new Fd(fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK));
  const w = new Fd(fs.openSync(fifo, fs.constants.O_WRONLY));
  fs.rmSync(dir, { recursive: true });
  if (n > 0) fs.writeSync(w.fd, Buffer.alloc(n, 1));
  return { r, w };
}
