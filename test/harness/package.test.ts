// What `npm pack` publishes: the library, never the tests (the guest suite
// compiles into dist/guest-tests/, inside the published dist/) nor the QEMU
// harness (harness/, compiled into dist/harness/).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { repoRoot } from '../helpers';

/** The paths `npm pack --dry-run` would publish from `dir`. */
function packedFiles(dir: string): string[] {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`npm pack exited ${r.status}: ${r.stderr}`);
  const [pack] = JSON.parse(r.stdout) as { files: { path: string }[] }[];
  return pack.files.map((f) => f.path).sort();
}

const isTest = (p: string) => p.startsWith('test/') || p.startsWith('dist/guest-tests/') || /\.test\.[jt]s$/.test(p);
const isHarness = (p: string) => p.startsWith('harness/') || p.startsWith('dist/harness/');

t.test('the package holds no test file, no compiled guest test and no harness', async (t) => {
  const files = packedFiles(repoRoot);
  t.same(files.filter(isTest), []);
  t.same(files.filter(isHarness), []);
  t.ok(files.includes('dist/index.js'), 'the library is in it');
  t.ok(files.includes('dist/cli.js'), "the p2pdma command's library part is in it");
});

t.test("package.json's files leave out dist/guest-tests/ and the harness even where they are built", async (t) => {
  // A copy of package.json over a tree that has every kind of file, so the
  // check holds whether or not this checkout built the guest suite.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-pack-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(dir, 'package.json'));
  const tree = [
    'dist/index.js',
    'dist/guest-tests/lib/index.js',
    'dist/guest-tests/test/guest/devices.test.js',
    'dist/harness/harness/vm/run.js',
    'dist/harness/lib/core/package-root.js',
    'harness/vm/run.ts',
    'lib/index.ts',
    'test/core/memfd.test.ts',
    'test/guest/devices.test.ts',
  ];
  for (const file of tree) {
    fs.mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), '\n');
  }
  t.same(packedFiles(dir), ['dist/index.js', 'lib/index.ts', 'package.json']);
});
