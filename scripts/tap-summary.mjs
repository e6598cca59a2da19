#!/usr/bin/env node
// Count tests across raw TAP files (`tap --output-file`, scripts/guest-suite.sh)
// and print the closing line CI reads: "N passed, N failed, N skipped".
//
//   node scripts/tap-summary.mjs [--exit-status LABEL=CODE]... [LABEL=]FILE...
//
// The stream shape of both suites: each test file is a `# Subtest: FILE` at
// the top level, closed by `ok N - FILE`. A test is a test point at depth 1,
// inside a file (a t.test(), or a bare assertion at a file's top level); a
// bare test point at the top level (a pseudo-suite such as "not ok 1 - kernel
// build failed") is a test too. tap-parser reads the stream, so plans,
// bail-outs and directives mean what TAP says. Nothing may fail silently:
// - a TODO test is neither a pass nor a failure: it counts as skipped, and
//   the per-suite line says how many of the skipped are TODO;
// - a file that failed without a failing test (crash, timeout, broken plan,
//   no test at all) is one failure;
// - a stream that bailed out or ends early (fewer results than planned, a
//   file never closed, or no plan and no failure to show for it) is one
//   failure of the suite; a plan-less `not ok 1 - kernel build failed`
//   (test-all.sh's pseudo-suites) is one failure, not two;
// - a missing TAP file, or one with no test, is one failure;
// - --exit-status LABEL=CODE: the suite's runner exited CODE; non-zero with
//   no failure in its TAP is one failure.
import * as fs from 'node:fs';
import { Parser } from 'tap-parser';

/** Counts one suite's TAP text. */
export function countTap(text) {
  const counts = { passed: 0, failed: 0, skipped: 0, todo: 0, failures: [], todos: [] };
  const files = [];
  const count = (point, file) => {
    if (point.skip) counts.skipped++;
    else if (point.todo) {
      counts.todo++;
      counts.todos.push(point.name);
    } else if (point.ok) counts.passed++;
    else {
      counts.failed++;
      counts.failures.push(point.name);
      if (file) file.failed++;
    }
    if (file) file.tests++;
  };

  const root = new Parser();
  root.on('child', (child) => {
    const file = { name: child.name, tests: 0, failed: 0, results: undefined, closer: undefined };
    files.push(file);
    child.on('assert', (point) => count(point, file));
    child.on('complete', (results) => { file.results = results; });
  });
  root.on('assert', (point) => {
    const file = files.at(-1);
    if (point.closingTestPoint && file && !file.closer) file.closer = point;
    else count(point, undefined);
  });
  let suite;
  root.on('complete', (results) => { suite = results; });
  root.end(text);

  for (const file of files) {
    if (!file.closer) continue; // cut off: the suite's failure below
    const problem = fileProblem(file);
    if (problem === 'skipped') counts.skipped++;
    else if (problem && file.failed === 0) {
      counts.failed++;
      counts.failures.push(`${file.name} (${problem})`);
    }
  }

  const cutOff = streamProblem(suite, files, counts.failed > 0);
  if (cutOff) {
    counts.failed++;
    counts.failures.push(`the TAP stream ${cutOff}`);
  }
  if (counts.passed + counts.failed + counts.skipped + counts.todo === 0) {
    counts.failed++;
    counts.failures.push('ran no test');
  }
  return counts;
}

/** Why a closed file failed without a failing test, 'skipped', or undefined. */
function fileProblem(file) {
  const { closer, results } = file;
  // The tap CLI closes a file that ran no test as skipped; here it is a defect.
  if (closer.skip === 'no tests found') return 'ran no test';
  if (closer.skip) return file.tests === 0 ? 'skipped' : undefined;
  if (!closer.ok && !closer.todo) {
    const diag = closer.diag ?? {};
    const how = diag.signal ? `signal ${diag.signal}` : diag.exitCode ? `exit ${diag.exitCode}` : 'not ok';
    return `the file itself failed: ${how}`;
  }
  // `1..0 # SKIP reason` skips a file; a bare `1..0` is a file that found no test.
  if (results?.plan.skipAll && results.plan.skipReason) return file.tests === 0 ? 'skipped' : undefined;
  if (file.tests === 0) return 'ran no test';
  if (results && !results.ok) return planProblem(results.plan, file.tests) ?? 'its TAP is not ok';
  return undefined;
}

/** Why the stream as a whole is incomplete, or undefined. */
function streamProblem(suite, files, failed) {
  if (suite.bailout !== false) return `bailed out${suite.bailout === true ? '' : `: ${suite.bailout}`}`;
  const open = files.find((f) => !f.closer);
  if (open) return `ends inside ${open.name}`;
  if (suite.plan.end === null && failed) return undefined;
  return planProblem(suite.plan, suite.count);
}

function planProblem(plan, ran) {
  if (plan.end === null) return 'has no plan (cut off?)';
  const planned = plan.end - plan.start + 1;
  if (ran < planned) return `planned ${planned}, ran ${ran}`;
  return undefined;
}

function parseArgs(argv) {
  const suites = [];
  const exitStatus = new Map();
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--exit-status') {
      const [label, code] = (argv[++i] ?? '').split(/=(.*)/s);
      if (!/^\d+$/.test(code ?? '')) throw new Error(`--exit-status wants LABEL=CODE, got '${argv[i]}'`);
      exitStatus.set(label, Number(code));
    } else {
      const [label, file] = argv[i].includes('=') ? argv[i].split(/=(.*)/s) : [argv[i], argv[i]];
      suites.push({ label, file });
    }
  }
  // A runner whose TAP file was not named still counts.
  for (const label of exitStatus.keys()) {
    if (!suites.some((s) => s.label === label)) suites.push({ label, file: undefined });
  }
  return { suites, exitStatus };
}

function main(argv) {
  const { suites, exitStatus } = parseArgs(argv);
  const total = { passed: 0, failed: 0, skipped: 0 };
  for (const { label, file } of suites) {
    const c = file !== undefined && fs.existsSync(file)
      ? countTap(fs.readFileSync(file, 'utf8'))
      : { passed: 0, failed: 1, skipped: 0, todo: 0, failures: ['suite did not run (no TAP output)'], todos: [] };
    const code = exitStatus.get(label) ?? 0;
    if (code !== 0 && c.failed === 0) {
      c.failed++;
      c.failures.push(`its runner exited ${code} with no failure in the TAP`);
    }
    // Per-suite lines are worded differently so only the last line reads as the total.
    const todo = c.todo ? ` (${c.todo} of them todo)` : '';
    console.log(`suite ${label}: passed ${c.passed}, failed ${c.failed}, skipped ${c.skipped + c.todo}${todo}`);
    for (const f of c.failures) console.log(`  not ok: ${f}`);
    for (const f of c.todos) console.log(`  todo: ${f}`);
    total.passed += c.passed;
    total.failed += c.failed;
    total.skipped += c.skipped + c.todo;
  }
  console.log(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
  return total.failed === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exit(main(process.argv.slice(2)));
