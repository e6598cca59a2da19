/**
 * `p2pdma bench --kernels tree:PATH`: a kernel developer's own source tree
 * (a git work tree), built with our config fragments into the kernel cache
 * as tree-<name>-<key>, where the key hashes the tree's HEAD commit, its
 * uncommitted changes (the diff against HEAD and the untracked files) and
 * the fragments: the same tree state is built once, and any edit builds
 * anew. The build is out of tree (make O=...), so the tree is not written;
 * one object directory per tree name keeps rebuilds incremental.
 *
 * scripts/kernel/build.sh builds from Debian's source and our patches only
 * (and changing it would change our own kernels' keys), so the recipe is
 * here: allnoconfig + base.config + p2pdma.config through the tree's own
 * merge_config.sh, then `make bzImage`.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CACHE_DIR, PROJECT_DIR } from '../vm/run';

/** Bump when what is built from a tree changes (part of the key). */
const TREE_RECIPE = 1;

/** Our config fragments a tree is built with, in merge order. */
export const TREE_FRAGMENTS = ['base.config', 'p2pdma.config'].map((f) => path.join(PROJECT_DIR, 'scripts', 'kernel', f));

function git(tree: string, args: string[]): Buffer {
  const r = spawnSync('git', ['-C', tree, ...args], { maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`git ${args.join(' ')} in ${tree}: ${r.stderr.toString().trim()}`);
  return r.stdout;
}

export interface TreeState {
  /** The tree's top directory. */
  top: string;
  head: string;
  /** Whether it has uncommitted changes (tracked or untracked, not ignored). */
  dirty: boolean;
  /** 16 hex digits of sha256 over the recipe, HEAD, the changes and the fragments. */
  key: string;
  /** tree-<basename of the tree>-<key>, the cache entry's name. */
  name: string;
}

/** The state of a kernel tree and its cache key; throws if PATH is not a git work tree with a commit. */
export function treeState(tree: string, fragments: readonly string[] = TREE_FRAGMENTS): TreeState {
  if (!fs.statSync(tree, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`tree: ${tree} is not a directory`);
  let top: string;
  let head: string;
  try {
    top = git(tree, ['rev-parse', '--show-toplevel']).toString().trim();
    head = git(tree, ['rev-parse', '--verify', 'HEAD^{commit}']).toString().trim();
  } catch (e) {
    throw new Error(`tree: ${tree} is not a git work tree with a commit (${(e as Error).message.split('\n')[0]})`);
  }
  const h = crypto.createHash('sha256');
  h.update(`tree recipe ${TREE_RECIPE}\nHEAD ${head}\n`);
  // Tracked changes, staged or not, binary-safe; then each untracked file
  // (git's ignore rules apply) by name and content.
  const diff = git(top, ['diff', 'HEAD', '--binary', '--no-ext-diff', '--no-color']);
  h.update(`== diff ${diff.length}\n`).update(diff);
  const untracked = git(top, ['ls-files', '--others', '--exclude-standard', '-z']).toString().split('\0').filter(Boolean).sort();
  for (const f of untracked) {
    const file = path.join(top, f);
    const st = fs.lstatSync(file);
    const content = st.isSymbolicLink() ? Buffer.from(`-> ${fs.readlinkSync(file)}`) : fs.readFileSync(file);
    h.update(`== untracked ${f} ${content.length}\n`).update(content);
  }
  for (const f of fragments) h.update(`== fragment ${path.basename(f)}\n`).update(fs.readFileSync(f));
  const key = h.digest('hex').slice(0, 16);
  const base = path.basename(top).replace(/[^\w.-]+/g, '_') || 'tree';
  return { top, head, dirty: diff.length > 0 || untracked.length > 0, key, name: `tree-${base}-${key}` };
}

export interface TreeBuildOptions {
  cacheDir?: string;
  fragments?: readonly string[];
  jobs?: number;
  log?: (line: string) => void;
  /** The make to run (default: make on PATH; tests pass a stand-in). */
  make?: string;
}

function run(cmd: string, args: string[], opts: { cwd: string; log: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const fd = fs.openSync(opts.log, 'a');
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else {
        const tail = fs.readFileSync(opts.log, 'utf8').split('\n').slice(-20).join('\n');
        reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}); the end of ${opts.log}:\n${tail}`));
      }
    });
  });
}

/**
 * The cache directory holding the tree's bzImage and .config, built first
 * unless the cache has it. The tree's own build must be clean (`make
 * mrproper`): the kernel refuses an out-of-tree build beside an in-tree one.
 */
export async function buildTree(tree: string, o: TreeBuildOptions = {}): Promise<string> {
  const log = o.log ?? (() => {});
  const fragments = o.fragments ?? TREE_FRAGMENTS;
  const state = treeState(tree, fragments);
  const cache = o.cacheDir ?? CACHE_DIR;
  const out = path.join(cache, 'kernel', state.name);
  if (fs.existsSync(path.join(out, 'bzImage'))) {
    log(`kernel: ${tree} at ${state.head.slice(0, 12)}${state.dirty ? ' + changes' : ''}: cached: ${out}`);
    return out;
  }
  // One object directory per tree (by its path: two trees of one name must
  // not share kbuild's state), kept across keys so rebuilds are incremental.
  const objName = `${state.name.replace(/-[0-9a-f]{16}$/, '')}-${crypto.createHash('sha256').update(state.top).digest('hex').slice(0, 8)}`;
  const obj = path.join(cache, 'build', objName, 'obj');
  const tmp = `${out}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  fs.mkdirSync(obj, { recursive: true });
  const buildLog = path.join(tmp, 'build.log');
  fs.writeFileSync(buildLog, '');
  const t0 = Date.now();
  log(`kernel: building ${tree} at ${state.head.slice(0, 12)}${state.dirty ? ' + changes' : ''} (allnoconfig + ${fragments.map((f) => path.basename(f)).join(' + ')}; log: ${buildLog})`);
  fs.rmSync(path.join(obj, '.config'), { force: true });
  await run(path.join(state.top, 'scripts', 'kconfig', 'merge_config.sh'), ['-n', '-O', obj, ...fragments], { cwd: state.top, log: buildLog });
  const config = fs.readFileSync(path.join(obj, '.config'), 'utf8');
  // A tree of another version may lack some of our symbols: say which, and go on.
  const missing = missingSymbols(config, fragments.map((f) => fs.readFileSync(f, 'utf8')));
  if (missing.length) log(`kernel: config: ${missing.length} line(s) of our fragments did not stick in this tree: ${missing.join(', ')}`);
  const jobs = o.jobs ?? Number(process.env.P2PDMA_JOBS ?? os.availableParallelism() + 1);
  const ticker = setInterval(() => {
    const objects = fs.readFileSync(buildLog, 'utf8').match(/^ {2}CC /gm)?.length ?? 0;
    log(`kernel: compiling ${state.name}: ${objects} objects so far`);
  }, 60_000);
  try {
    await run(o.make ?? 'make', ['-C', state.top, `O=${obj}`, `-j${jobs}`, 'bzImage'], { cwd: state.top, log: buildLog });
  } finally {
    clearInterval(ticker);
  }
  fs.copyFileSync(path.join(obj, 'arch', 'x86', 'boot', 'bzImage'), path.join(tmp, 'bzImage'));
  fs.copyFileSync(path.join(obj, '.config'), path.join(tmp, '.config'));
  const info = [`variant=${state.name}`, `tree=${state.top}`, `head=${state.head}`, `dirty=${state.dirty}`, `key=${state.key}`, `built=${new Date().toISOString()}`, `seconds=${Math.round((Date.now() - t0) / 1000)}`];
  fs.writeFileSync(path.join(tmp, 'build-info'), `${info.join('\n')}\n`);
  fs.rmSync(out, { recursive: true, force: true });
  fs.renameSync(tmp, out);
  log(`kernel: done: ${out}/bzImage`);
  return out;
}

/** Lines `CONFIG_X=...` / `CONFIG_X=n` of the fragments that the merged .config does not honour. */
export function missingSymbols(config: string, fragments: readonly string[]): string[] {
  const have = new Set(config.split('\n'));
  const set = new Set(config.split('\n').filter((l) => /^CONFIG_\w+=[ym]/.test(l)).map((l) => l.slice(0, l.indexOf('='))));
  const missing: string[] = [];
  for (const text of fragments) {
    for (const line of text.split('\n').map((l) => l.trim())) {
      const m = /^(CONFIG_\w+)=(.*)$/.exec(line);
      if (!m) continue;
      if (m[2] === 'n' ? set.has(m[1]) : !have.has(line)) missing.push(line);
    }
  }
  return missing;
}
