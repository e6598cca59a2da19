// Shared by the guest tests that run rdma-core's pyverbs scripts
// (test/guest/pyverbs/): copies of them and of the patched rdma-core where
// uid 65534 can read them, and a runner that parses a script's JSON.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../../lib/core/package-root';

export const PYTHON = '/usr/bin/python3';
export const NOBODY = 65534;
export const havePyverbs = fs.existsSync('/usr/lib/python3/dist-packages/pyverbs/__init__.py');
export const noPyverbs = !havePyverbs && 'python3-pyverbs is not installed (scripts/setup.sh installs it)';
/** A bound on each child (never a hang), not a measure. */
export const LIMIT_MS = 120_000;

/** A directory of the guest's own (tmpfs) that every user can read; removed when the file ends. */
function readableDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Copies of test/guest/pyverbs/`files` where uid 65534 can read them: the
 * checkout may sit in a home only root enters (a clone under /root, as CI
 * may have it). Returns their directory.
 */
export function readableScripts(files: string[]): string {
  const dir = readableDir('p2pdma-pyverbs-');
  for (const f of files) {
    fs.copyFileSync(path.join(packageRoot, 'test/guest/pyverbs', f), path.join(dir, f));
    fs.chmodSync(path.join(dir, f), 0o644);
  }
  return dir;
}

/** rdma-core built with userspace-patches/rdma-core/ (scripts/rdma-core/build.sh), as the host's cache holds it. */
export const PATCHED_RDMA_CORE = process.env.P2PDMA_RDMA_CORE_DIR ?? '';

/**
 * A copy of the patched rdma-core's lib/ that uid 65534 can read (the cache
 * sits under the host's /root), for LD_LIBRARY_PATH: its libibverbs finds
 * the providers beside it. Undefined, with a failure naming the build
 * script, when it was not built: every lane needs it.
 */
export function patchedRdmaCoreLib(t: Test): string | undefined {
  const src = PATCHED_RDMA_CORE && path.join(PATCHED_RDMA_CORE, 'lib');
  if (!t.ok(src && fs.existsSync(path.join(src, 'librxe-rdmav34.so')), `rdma-core with rxe's reg_dmabuf_mr at ${src || '(P2PDMA_RDMA_CORE_DIR unset)'}: scripts/rdma-core/build.sh builds it (make test does, before the guest lanes)`)) return undefined;
  const lib = path.join(readableDir('p2pdma-rdma-core-'), 'lib');
  // The versioned names are relative symlinks: kept as they are.
  fs.cpSync(fs.realpathSync(src!), lib, { recursive: true, verbatimSymlinks: true });
  fs.chmodSync(lib, 0o755);
  return lib;
}

export interface PythonOptions {
  /** Started as this user (and group). */
  uid?: number;
  /** Added to the environment (LD_LIBRARY_PATH for the patched rdma-core). */
  env?: Record<string, string>;
}

/** Runs `dir/script` with `args`, `fds` as its fds 3, 4...; resolves to its JSON, rejects with its stderr. */
export async function python(dir: string, script: string, args: (string | number)[], fds: number[], o: PythonOptions = {}): Promise<Record<string, unknown>> {
  const child = spawn(PYTHON, [path.join(dir, script), ...args.map(String)], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe', ...fds],
    timeout: LIMIT_MS,
    ...(o.uid === undefined ? {} : { uid: o.uid, gid: o.uid }),
    ...(o.env ? { env: { ...process.env, ...o.env } } : {}),
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, s) => resolve([c, s]));
  });
  if (code !== 0) throw new Error(`${script}: exit ${code ?? signal}\n${err}`);
  return JSON.parse(out) as Record<string, unknown>;
}
