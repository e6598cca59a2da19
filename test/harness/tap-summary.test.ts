// scripts/tap-summary.mjs: the closing "N passed, N failed, N skipped" line
// of `make test` and its exit status, from the suites' raw TAP files.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { repoRoot } from '../helpers';

const script = path.join(repoRoot, 'scripts', 'tap-summary.mjs');

interface Summary {
  status: number | null;
  /** The per-suite lines and the total, as printed. */
  lines: string[];
  total: string;
}

/**
 * Writes each suite's TAP (an array of lines) to a file in a temp dir and
 * runs the script on them as LABEL=FILE; `null` names a file that does not
 * exist. `args` go first (e.g. --exit-status).
 */
function summarize(t: Test, suites: Record<string, string[] | null>, args: string[] = []): Summary {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-summary-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const files = Object.entries(suites).map(([label, lines]) => {
    const file = path.join(dir, `${label}.tap`);
    if (lines) fs.writeFileSync(file, `${lines.join('\n')}\n`);
    return `${label}=${file}`;
  });
  const r = spawnSync(process.execPath, [script, ...args, ...files], { encoding: 'utf8' });
  t.equal(r.stderr, '', 'nothing on stderr');
  const lines = r.stdout.trim().split('\n');
  return { status: r.status, lines, total: lines.at(-1)! };
}

/** One test file as the tap CLI writes it: `# Subtest: name`, indented TAP, closing point. */
function file(id: number, name: string, body: string[], closer = `ok ${id} - ${name} # time=10ms`): string[] {
  return [`# Subtest: ${name}`, ...body.map((l) => `    ${l}`), closer];
}

const passingFile = (id: number, name: string) => file(id, name, ['ok 1 - works # time=1ms', '1..1']);

t.test('a cut-off stream with a plan of 9, two passes, a failing TODO and a bail-out fails', async (t) => {
  const s = summarize(t, {
    host: [
      'TAP version 14',
      '1..9',
      'ok 1 - first',
      'ok 2 - second',
      'not ok 3 - third # TODO not written yet',
      'Bail out! the runner died',
    ],
  });
  t.equal(s.status, 1);
  t.same(s.lines, [
    'suite host: passed 2, failed 1, skipped 1 (1 of them todo)',
    '  not ok: the TAP stream bailed out: the runner died',
    '  todo: third',
    '2 passed, 1 failed, 1 skipped',
  ]);
});

t.test('a bail-out inside a file fails the suite once and stops the count there', async (t) => {
  const s = summarize(t, {
    host: [
      'TAP version 14',
      ...passingFile(1, 'test/a.test.ts'),
      '# Subtest: test/b.test.ts',
      '    ok 1 - before # time=1ms',
      '    Bail out! no device',
      'ok 2 - test/b.test.ts',
      ...passingFile(3, 'test/c.test.ts'),
      '1..3',
    ],
  });
  t.equal(s.status, 1);
  t.same(s.lines.slice(0, 2), [
    'suite host: passed 2, failed 1, skipped 0',
    '  not ok: the TAP stream bailed out: no device',
  ]);
  t.equal(s.total, '2 passed, 1 failed, 0 skipped');
});

t.test('a stream without a plan is one failure', async (t) => {
  const s = summarize(t, { host: ['TAP version 14', ...passingFile(1, 'test/a.test.ts')] });
  t.equal(s.status, 1);
  t.same(s.lines.slice(0, 2), [
    'suite host: passed 1, failed 1, skipped 0',
    '  not ok: the TAP stream has no plan (cut off?)',
  ]);
});

t.test('fewer files than planned is one failure', async (t) => {
  const s = summarize(t, { host: ['TAP version 14', '1..3', ...passingFile(1, 'test/a.test.ts')] });
  t.equal(s.status, 1);
  t.equal(s.lines[1], '  not ok: the TAP stream planned 3, ran 1');
  t.equal(s.total, '1 passed, 1 failed, 0 skipped');
});

t.test('a stream cut off inside a file is one failure', async (t) => {
  const s = summarize(t, {
    host: ['TAP version 14', '1..2', ...passingFile(1, 'test/a.test.ts'), '# Subtest: test/b.test.ts', '    ok 1 - x'],
  });
  t.equal(s.status, 1);
  t.equal(s.lines[1], '  not ok: the TAP stream ends inside test/b.test.ts');
  t.equal(s.total, '2 passed, 1 failed, 0 skipped');
});

t.test('a failing TODO counts as skipped (todo), neither passed nor failed', async (t) => {
  const s = summarize(t, {
    host: [
      'TAP version 14',
      ...file(1, 'test/a.test.ts', ['ok 1 - done', 'not ok 2 - not yet # TODO needs the kernel series', '1..2']),
      '1..1',
    ],
  });
  t.equal(s.status, 0, 'the run passes');
  t.same(s.lines, [
    'suite host: passed 1, failed 0, skipped 1 (1 of them todo)',
    '  todo: not yet',
    '1 passed, 0 failed, 1 skipped',
  ]);
});

t.test('a skipped test counts as skipped', async (t) => {
  const s = summarize(t, {
    host: [
      'TAP version 14',
      ...file(1, 'test/a.test.ts', ['ok 1 - done', 'ok 2 - on a GPU # SKIP no GPU', '1..2']),
      '1..1',
    ],
  });
  t.equal(s.status, 0);
  t.equal(s.total, '1 passed, 0 failed, 1 skipped');
});

t.test('a file skipped as a whole (1..0 # SKIP) counts as one skipped test', async (t) => {
  const s = summarize(t, {
    host: [
      'TAP version 14',
      ...passingFile(1, 'test/a.test.ts'),
      ...file(2, 'test/b.test.ts', ['1..0 # SKIP not on this kernel'], 'ok 2 - test/b.test.ts # SKIP not on this kernel'),
      '1..2',
    ],
  });
  t.equal(s.status, 0);
  t.equal(s.total, '1 passed, 0 failed, 1 skipped');
});

t.test('nested subtests count once, at depth 1, failing once however deep the failure', async (t) => {
  const s = summarize(t, {
    host: [
      'TAP version 14',
      ...file(1, 'test/a.test.ts', [
        '# Subtest: outer',
        '    # Subtest: inner',
        '        ok 1 - deep pass',
        '        not ok 2 - deep failure',
        '        1..2',
        '    not ok 1 - inner',
        '    ok 2 - sibling',
        '    1..2',
        'not ok 1 - outer',
        '# Subtest: plain',
        '    ok 1 - a',
        '    ok 2 - b',
        '    1..2',
        'ok 2 - plain',
        '1..2',
      ], 'not ok 1 - test/a.test.ts'),
      '1..1',
    ],
  });
  t.equal(s.status, 1);
  t.same(s.lines, ['suite host: passed 1, failed 1, skipped 0', '  not ok: outer', '1 passed, 1 failed, 0 skipped']);
});

t.test('a crashed file without a failing test is one failure with its signal', async (t) => {
  const s = summarize(t, {
    host: [
      'TAP version 14',
      ...file(1, 'test/crash.test.ts', ['ok 1 - before the crash # time=1ms'], 'not ok 1 - test/crash.test.ts'),
      '  ---',
      '  signal: SIGSEGV',
      '  ...',
      ...passingFile(2, 'test/b.test.ts'),
      '1..2',
    ],
  });
  t.equal(s.status, 1);
  t.same(s.lines, [
    'suite host: passed 2, failed 1, skipped 0',
    '  not ok: test/crash.test.ts (the file itself failed: signal SIGSEGV)',
    '2 passed, 1 failed, 0 skipped',
  ]);
});

t.test('a file whose own plan is short fails, even if its closing point says ok', async (t) => {
  const s = summarize(t, {
    host: ['TAP version 14', ...file(1, 'test/a.test.ts', ['1..3', 'ok 1 - one']), '1..1'],
  });
  t.equal(s.status, 1);
  t.equal(s.lines[1], '  not ok: test/a.test.ts (planned 3, ran 1)');
});

t.test('a file with no test is a failure', async (t) => {
  const s = summarize(t, { host: ['TAP version 14', ...file(1, 'test/a.test.ts', ['1..0']), '1..1'] });
  t.equal(s.status, 1);
  t.equal(s.lines[1], '  not ok: test/a.test.ts (ran no test)');
  t.equal(s.total, '0 passed, 1 failed, 0 skipped');
});

t.test("a file the tap CLI skips for having no test is a failure", async (t) => {
  const s = summarize(t, {
    host: [
      'TAP version 14',
      ...file(1, 'test/a.test.ts', ['1..0 # no tests found'], 'ok 1 - test/a.test.ts # SKIP no tests found'),
      '1..1',
    ],
  });
  t.equal(s.status, 1);
  t.equal(s.lines[1], '  not ok: test/a.test.ts (ran no test)');
});

t.test('a missing TAP file and an empty one are one failure each', async (t) => {
  const s = summarize(t, { guest: null, empty: [] });
  t.equal(s.status, 1);
  t.same(s.lines, [
    'suite guest: passed 0, failed 1, skipped 0',
    '  not ok: suite did not run (no TAP output)',
    'suite empty: passed 0, failed 1, skipped 0',
    '  not ok: ran no test',
    '0 passed, 2 failed, 0 skipped',
  ]);
});

t.test("the guest suite's shape: a file that exits non-zero fails once", async (t) => {
  const s = summarize(t, {
    'patched-debug': [
      'TAP version 14',
      ...file(1, 'test/guest/a.test.ts', ['TAP version 14', 'ok 1 - x # time=1ms', '1..1', '# time=5ms']),
      ...file(2, 'test/guest/b.test.ts', ['TAP version 14', 'ok 1 - y # time=1ms'], 'not ok 2 - test/guest/b.test.ts # exit 1'),
      '1..2',
      '# guest suite: 2 files, 1 failed, 9 s',
    ],
  });
  t.equal(s.status, 1);
  t.same(s.lines, [
    'suite patched-debug: passed 2, failed 1, skipped 0',
    '  not ok: test/guest/b.test.ts (the file itself failed: not ok)',
    '2 passed, 1 failed, 0 skipped',
  ]);
});

t.test('a bare failing test point without a plan (a pseudo-suite) is one failure', async (t) => {
  const s = summarize(t, { kernels: ['not ok 1 - kernel build failed'] });
  t.equal(s.status, 1);
  t.same(s.lines, ['suite kernels: passed 0, failed 1, skipped 0', '  not ok: kernel build failed', '0 passed, 1 failed, 0 skipped']);
});

t.test('counts add up across suites, and an all-green run exits 0', async (t) => {
  const s = summarize(t, {
    host: ['TAP version 14', ...passingFile(1, 'test/a.test.ts'), ...passingFile(2, 'test/b.test.ts'), '1..2'],
    guest: ['TAP version 14', ...passingFile(1, 'test/guest/a.test.ts'), '1..1'],
  });
  t.equal(s.status, 0);
  t.same(s.lines, [
    'suite host: passed 2, failed 0, skipped 0',
    'suite guest: passed 1, failed 0, skipped 0',
    '3 passed, 0 failed, 0 skipped',
  ]);
});

t.test('a runner exit status that is not 0 fails a suite whose TAP shows no failure', async (t) => {
  const host = ['TAP version 14', ...passingFile(1, 'test/a.test.ts'), '1..1'];
  const s = summarize(t, { host }, ['--exit-status', 'host=1']);
  t.equal(s.status, 1);
  t.same(s.lines, [
    'suite host: passed 1, failed 1, skipped 0',
    '  not ok: its runner exited 1 with no failure in the TAP',
    '1 passed, 1 failed, 0 skipped',
  ]);
});

t.test('a runner exit status adds nothing where the TAP already failed', async (t) => {
  const host = ['TAP version 14', ...file(1, 'test/a.test.ts', ['not ok 1 - broken', '1..1'], 'not ok 1 - test/a.test.ts'), '1..1'];
  const s = summarize(t, { host }, ['--exit-status', 'host=1']);
  t.equal(s.total, '0 passed, 1 failed, 0 skipped');
});

t.test('an exit status of 0 changes nothing', async (t) => {
  const host = ['TAP version 14', ...passingFile(1, 'test/a.test.ts'), '1..1'];
  const s = summarize(t, { host }, ['--exit-status', 'host=0']);
  t.equal(s.status, 0);
  t.equal(s.total, '1 passed, 0 failed, 0 skipped');
});
