// `p2pdma bench --kernels tree:PATH` (harness/bench/tree.ts) without
// building a kernel: the cache key of a git tree's state, the argument, and
// the build recipe run against a stand-in tree (its merge_config.sh) and a
// stand-in make that leave a bzImage where the kernel's would be.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseBenchArgs } from '../../harness/bench/args';
import { bzImageVersion, parseKernelSpec } from '../../harness/bench/kernels';
import { buildTree, missingSymbols, TREE_FRAGMENTS, treeState } from '../../harness/bench/tree';

function git(dir: string, ...args: string[]): void {
  const r = spawnSync('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
}

/** A git tree with a stand-in scripts/kconfig/merge_config.sh (-n -O OBJ FRAGMENTS: their lines become OBJ/.config). */
function fakeTree(t: Tap.Test, name = 'linux'): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-tree-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const tree = path.join(root, name);
  fs.mkdirSync(path.join(tree, 'scripts', 'kconfig'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'scripts', 'kconfig', 'merge_config.sh'), '#!/bin/sh\n[ "$1" = -n ] && [ "$2" = -O ] || exit 2\nobj=$3; shift 3\ncat "$@" | grep -v "^CONFIG_NOT_IN_THIS_TREE" > "$obj/.config"\n', { mode: 0o755 });
  fs.writeFileSync(path.join(tree, 'Makefile'), 'VERSION = 6\n');
  fs.writeFileSync(path.join(tree, '.gitignore'), '*.o\n');
  git(tree, 'init', '-q');
  git(tree, 'add', '.');
  git(tree, 'commit', '-qm', 'v6');
  return tree;
}

t.test('the key follows HEAD, uncommitted changes, untracked files and the fragments', async (t) => {
  const tree = fakeTree(t);
  const frag = path.join(path.dirname(tree), 'frag.config');
  fs.writeFileSync(frag, 'CONFIG_A=y\n');
  const key = () => treeState(tree, [frag]).key;
  const clean = treeState(tree, [frag]);
  t.match(clean, { top: fs.realpathSync(tree), dirty: false, name: `linux-${clean.key}`.replace(/^/, 'tree-') });
  t.match(clean.key, /^[0-9a-f]{16}$/);
  t.equal(key(), clean.key, 'same state, same key');
  t.equal(treeState(path.join(tree, 'scripts'), [frag]).key, clean.key, 'a subdirectory names the same tree');
  fs.writeFileSync(path.join(tree, 'x.o'), 'ignored');
  t.equal(key(), clean.key, 'ignored files do not count');
  fs.appendFileSync(path.join(tree, 'Makefile'), 'PATCHLEVEL = 12\n');
  const edited = treeState(tree, [frag]);
  t.not(edited.key, clean.key, 'an edit to a tracked file');
  t.equal(edited.dirty, true);
  fs.writeFileSync(path.join(tree, 'new.c'), 'int x;\n');
  const untracked = key();
  t.not(untracked, edited.key, 'a new file');
  fs.writeFileSync(path.join(tree, 'new.c'), 'int y;\n');
  t.not(key(), untracked, "a new file's content");
  git(tree, 'add', '.');
  t.equal(key(), treeState(tree, [frag]).key);
  const staged = key();
  git(tree, 'commit', '-qm', 'next');
  t.not(key(), staged, 'committing moves HEAD: another key');
  t.equal(treeState(tree, [frag]).dirty, false);
  const committed = key();
  fs.writeFileSync(frag, 'CONFIG_A=m\n');
  t.not(key(), committed, 'a fragment');
  t.same(TREE_FRAGMENTS.map((f) => path.basename(f)), ['base.config', 'p2pdma.config']);
  t.match(treeState(tree).key, /^[0-9a-f]{16}$/, 'our fragments by default');
});

t.test('not a tree: clear errors', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-notree-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  t.throws(() => treeState(path.join(dir, 'missing')), /tree: .*missing is not a directory/);
  t.throws(() => treeState(dir), /is not a git work tree with a commit/);
  git(dir, 'init', '-q');
  t.throws(() => treeState(dir), /is not a git work tree with a commit/, 'no commit yet');
});

t.test('tree:PATH on the command line', async (t) => {
  t.same(parseKernelSpec('tree:/src/linux'), { kind: 'tree', arg: '/src/linux' });
  t.throws(() => parseKernelSpec('tree:'), /tree: wants the path of a kernel source tree/);
  t.same(parseBenchArgs(['--kernels', 'baseline,tree:/src/linux'], ['ioctl']).kernels, ['baseline', 'tree:/src/linux']);
});

t.test('missing symbols: lines of the fragments the merged config lacks', async (t) => {
  t.same(missingSymbols('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\n', ['CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=n\nCONFIG_D=n\n# c\n', 'CONFIG_E="x"\n']), ['CONFIG_B=y', 'CONFIG_E="x"']);
  t.same(missingSymbols('CONFIG_D=y\n', ['CONFIG_D=n']), ['CONFIG_D=n'], 'wanted off, set on');
});

t.test('build: the recipe with a stand-in make, then a cache hit', async (t) => {
  const tree = fakeTree(t, 'my linux');
  const work = path.dirname(tree);
  const cache = path.join(work, 'cache');
  const frag = path.join(work, 'frag.config');
  fs.writeFileSync(frag, 'CONFIG_A=y\nCONFIG_NOT_IN_THIS_TREE=y\n');
  // make -C TREE O=OBJ -jN bzImage: a bzImage whose header names a version.
  const calls = path.join(work, 'make-calls');
  const make = path.join(work, 'make');
  fs.writeFileSync(
    make,
    `#!/usr/bin/env node
const fs = require('fs'), path = require('path');
fs.appendFileSync(${JSON.stringify(calls)}, process.argv.slice(2).join(' ') + '\\n');
const obj = process.argv.find((a) => a.startsWith('O=')).slice(2);
const img = Buffer.alloc(0x1000);
img.write('HdrS', 0x202, 'latin1');
img.writeUInt16LE(0x300, 0x20e);
img.write('6.99.0-tree (dev@box) #1\\0', 0x500, 'latin1');
fs.mkdirSync(path.join(obj, 'arch/x86/boot'), { recursive: true });
fs.writeFileSync(path.join(obj, 'arch/x86/boot/bzImage'), img);
console.log('  CC      init/main.o');
`,
    { mode: 0o755 },
  );
  const lines: string[] = [];
  const o = { cacheDir: cache, fragments: [frag], jobs: 3, make, log: (l: string) => lines.push(l) };
  const state = treeState(tree, [frag]);
  t.equal(state.name, `tree-my_linux-${state.key}`);
  const dir = await buildTree(tree, o);
  t.equal(dir, path.join(cache, 'kernel', state.name));
  t.equal(bzImageVersion(path.join(dir, 'bzImage')), '6.99.0-tree (dev@box) #1');
  t.equal(fs.readFileSync(path.join(dir, '.config'), 'utf8'), 'CONFIG_A=y\n');
  t.match(fs.readFileSync(path.join(dir, 'build-info'), 'utf8'), new RegExp(`^variant=${state.name}\\ntree=.*\\nhead=[0-9a-f]{40}\\ndirty=false\\nkey=${state.key}\\n`));
  t.match(fs.readFileSync(path.join(dir, 'build.log'), 'utf8'), 'CC      init/main.o');
  const objDir = path.join(cache, 'build', `tree-my_linux-${createHash('sha256').update(state.top).digest('hex').slice(0, 8)}`, 'obj');
  t.same(fs.readFileSync(calls, 'utf8').trim().split('\n'), [`-C ${fs.realpathSync(tree)} O=${objDir} -j3 bzImage`]);
  t.ok(lines.some((l) => l.includes('did not stick in this tree: CONFIG_NOT_IN_THIS_TREE=y')), 'a symbol the tree lacks is named');
  t.notOk(fs.existsSync(`${dir}.tmp`));
  t.equal(spawnSync('git', ['-C', tree, 'status', '--porcelain'], { encoding: 'utf8' }).stdout, '', 'the tree is not written');

  lines.length = 0;
  t.equal(await buildTree(tree, o), dir);
  t.equal(fs.readFileSync(calls, 'utf8').trim().split('\n').length, 1, 'the second call is a cache hit');
  t.match(lines.join('\n'), /cached: /);

  fs.writeFileSync(path.join(tree, 'fix.patch.c'), 'int fix;\n');
  const dirty = await buildTree(tree, o);
  t.not(dirty, dir, 'an uncommitted change is another kernel');
  t.match(fs.readFileSync(path.join(dirty, 'build-info'), 'utf8'), 'dirty=true');
  t.equal(fs.readFileSync(calls, 'utf8').trim().split('\n').length, 2);

  fs.writeFileSync(make, '#!/bin/sh\necho "  CC      broken.o"; echo "error: no" >&2; exit 2\n');
  fs.writeFileSync(path.join(tree, 'another.c'), 'int another;\n');
  await t.rejects(buildTree(tree, o), /make -C .* bzImage failed \(exit 2\); the end of .*build\.log:\n[^]*error: no/);
});
