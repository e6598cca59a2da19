// The loader: prebuilds made by `prebuildify --napi --strip` load with no
// build/ at all, and a package with neither says what to run.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { native } from '../../lib/core/native';
import { leakGuard, repoRoot, runTs } from '../helpers';

const leaks = leakGuard();
const nodeGypBuild = require.resolve('node-gyp-build');

function tmp(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `p2pdma-test-${name}-`));
}

/** prebuildify --napi --strip on a copy of the sources: the repo's build/ is never touched. */
function prebuildCopy(): { dir: string; log: string; status: number | null } {
  const src = tmp('prebuild-src');
  for (const f of ['package.json', 'binding.gyp']) fs.copyFileSync(path.join(repoRoot, f), path.join(src, f));
  fs.cpSync(path.join(repoRoot, 'native'), path.join(src, 'native'), { recursive: true });
  fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(src, 'node_modules'));
  const env: NodeJS.ProcessEnv = { ...process.env, JOBS: 'max' };
  delete env.NODE_OPTIONS;
  // Offline: build against the local Node headers, as npm does with nodedir.
  if (!env.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) env.npm_config_nodedir = '/usr';
  const r = spawnSync(process.execPath, [require.resolve('prebuildify/bin.js'), '--napi', '--strip'], {
    cwd: src,
    env,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { dir: src, log: `${r.stdout}\n${r.stderr}`, status: r.status };
}

t.test('the addon exposes the native API', async (t) => {
  for (const f of ['Fd', 'Watcher', 'eventfdCreate', 'errnoTable', 'ioctl', 'ioctlView', 'ioctlBigInt', 'ioctlAsync', 'Mapping', 'pageSize', 'counters', 'memfdCreate', 'dlprobe']) {
    t.ok(f in native, f);
  }
});

/**
 * The repo's prebuilds/ if `npm run prebuildify` made it after the last change
 * to the native sources (make build does), else undefined.
 */
function freshRepoPrebuilds(arch: string): string | undefined {
  const file = path.join(repoRoot, 'prebuilds', arch, 'p2pdma.node');
  if (!fs.existsSync(file)) return undefined;
  const built = fs.statSync(file).mtimeMs;
  const nativeDir = path.join(repoRoot, 'native');
  const sources = [
    path.join(repoRoot, 'binding.gyp'),
    ...fs.readdirSync(nativeDir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(nativeDir, f)),
  ];
  return sources.every((s) => fs.statSync(s).mtimeMs <= built) ? path.dirname(path.dirname(file)) : undefined;
}

t.test('a prebuild loads from a package that has no build/ directory', async (t) => {
  const arch = `${process.platform}-${process.arch}`;
  let prebuilds = freshRepoPrebuilds(arch);
  let cleanup: string | undefined;
  if (prebuilds !== undefined) {
    t.pass('using prebuilds/ from npm run prebuildify (newer than native/ and binding.gyp)');
  } else {
    const built = prebuildCopy();
    t.equal(built.status, 0, 'prebuildify --napi --strip succeeded on a copy of the sources') || t.comment(built.log);
    prebuilds = path.join(built.dir, 'prebuilds');
    cleanup = built.dir;
  }
  const files = fs.readdirSync(path.join(prebuilds, arch));
  t.same(files, ['p2pdma.node'], `prebuilds/${arch}/p2pdma.node`);

  const pkg = tmp('prebuild-pkg');
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(pkg, 'package.json'));
  fs.cpSync(prebuilds, path.join(pkg, 'prebuilds'), { recursive: true });
  if (cleanup !== undefined) fs.rmSync(cleanup, { recursive: true, force: true });
  t.same(fs.readdirSync(pkg).sort(), ['package.json', 'prebuilds'], 'only package.json and prebuilds/');

  const script = `
    const ngb = require(${JSON.stringify(nodeGypBuild)});
    const dir = ${JSON.stringify(pkg)};
    const b = ngb(dir);
    console.log(JSON.stringify({ file: ngb.resolve(dir), page: b.pageSize(), ebadf: b.ioctl(0x7ffffff0, 0x541b, 0) }));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  t.equal(out.file, path.join(pkg, 'prebuilds', arch, 'p2pdma.node'), 'loaded from prebuilds/');
  t.ok(out.page > 0, 'and it works');
  t.equal(out.ebadf, -9);
  fs.rmSync(pkg, { recursive: true, force: true });
});

t.test('with neither prebuilds nor build/, loading fails with one error that says what to run', async (t) => {
  const pkg = tmp('noaddon');
  fs.mkdirSync(path.join(pkg, 'lib', 'core'), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(pkg, 'package.json'));
  for (const file of ['native.ts', 'package-root.ts']) {
    fs.copyFileSync(path.join(repoRoot, 'lib', 'core', file), path.join(pkg, 'lib', 'core', file));
  }
  fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(pkg, 'node_modules'));
  const main = path.join(pkg, 'main.ts');
  fs.writeFileSync(
    main,
    `try { require('./lib/core/native'); console.log('{}'); }
     catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, cause: !!e.cause })); }`,
  );
  const r = runTs(main);
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  t.equal(out.code, 'ERR_P2PDMA_ADDON_LOAD');
  t.match(out.message, /npm run build/, 'names the command');
  t.match(out.message, /prebuilds\/linux-/, 'says where it looked');
  t.ok(out.cause, 'keeps the underlying error as cause');
  fs.rmSync(pkg, { recursive: true, force: true });
});

leaks.check(t);
