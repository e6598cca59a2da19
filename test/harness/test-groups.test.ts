// scripts/test-all.sh runs the host suite by groups (harness files once,
// line-dependent files on every Node line, the rest once on the newest LTS):
// every group names files that exist, and no file is in two groups.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { repoRoot } from '../helpers';

function group(script: string, name: string): string[] {
  const m = new RegExp(`^${name}=\\(([^)]*)\\)`, 'm').exec(script);
  if (m === null) throw new Error(`${name} not found in scripts/test-all.sh`);
  return m[1].split(/\s+/).filter(Boolean);
}

/** Host test files: test/ and its subsystem folders; test/guest/ is the guest suite. */
function hostTestFiles(): string[] {
  return fs
    .readdirSync(path.join(repoRoot, 'test'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts') && !f.startsWith('guest/'))
    .map((f) => `test/${f}`);
}

t.test('the host-suite groups of test-all.sh name real files, each in one group', async (t) => {
  const script = fs.readFileSync(path.join(repoRoot, 'scripts', 'test-all.sh'), 'utf8');
  const harness = group(script, 'HARNESS_TESTS');
  const line = group(script, 'LINE_TESTS');
  const all = hostTestFiles();
  t.same([...harness, ...line].filter((f) => !all.includes(f)), [], 'every listed file exists');
  t.same(harness.filter((f) => line.includes(f)), [], 'no file is both a harness and a line test');
  t.ok(line.includes('test/core/sweep.test.ts') && line.includes('test/core/views.test.ts'), 'the sweep and the view kinds run on every line');
  t.ok(harness.includes('test/harness/vm-boot.test.ts'), 'the boot tests run once, on the system node');
});

t.test('the newest line runs every host file but the harness files, and no guest file', async (t) => {
  const script = fs.readFileSync(path.join(repoRoot, 'scripts', 'test-all.sh'), 'utf8');
  const harness = group(script, 'HARNESS_TESTS');
  // test-all.sh's excludes, as it builds them: on the command line they
  // replace package.json's, which once let every guest file run (skipped) on the host.
  const m = /^\s*excludes=\(([^)]*)\)/m.exec(script);
  t.ok(m, 'test-all.sh starts its excludes from a fixed list');
  const fixed = (m?.[1] ?? '').split(/\s+/).filter(Boolean).map((w) => w.replace(/^'|'$/g, ''));
  const args = [...fixed, ...harness.flatMap((f) => ['--exclude', f])];
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules', '.bin', 'tap'), 'list', ...args], { cwd: repoRoot, encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const listed = r.stdout.split('\n').filter(Boolean).sort();
  const expected = hostTestFiles()
    .filter((f) => !harness.includes(f))
    .sort();
  t.same(listed, expected);
});
