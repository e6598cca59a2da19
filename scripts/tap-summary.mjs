#!/usr/bin/env node
// Count tests across raw TAP files written by `tap --output-file`, and print
// the closing line CI reads: "N passed, N failed, N skipped".
//
// A test is a subtest at depth 1 (a t.test() inside a test file). A file that
// failed without any failing test inside (a crash, a timeout, a load error)
// counts as one failure of its own, so nothing can fail silently. A missing
// TAP file (a suite that never ran) is one failure too.
//
//   node scripts/tap-summary.mjs [--label NAME=FILE]... FILE...
import * as fs from 'node:fs';

const POINT = /^( *)(not ok|ok) \d+(?: - (.*?))?(?: # (SKIP|TODO)\b.*)?$/i;

export function countTap(text) {
  const counts = { passed: 0, failed: 0, skipped: 0, failures: [] };
  let fileFailuresSeen = 0;
  for (const line of text.split('\n')) {
    const m = POINT.exec(line);
    if (!m) continue;
    const depth = m[1].length / 4;
    const ok = m[2].toLowerCase() === 'ok';
    const directive = (m[4] ?? '').toUpperCase();
    const name = m[3] ?? '';
    if (depth === 1) {
      if (directive === 'SKIP') counts.skipped++;
      else if (ok || directive === 'TODO') counts.passed++;
      else {
        counts.failed++;
        fileFailuresSeen++;
        counts.failures.push(name);
      }
    } else if (depth === 0) {
      if (directive === 'SKIP') counts.skipped++;
      else if (!ok && fileFailuresSeen === 0) {
        counts.failed++;
        counts.failures.push(`${name} (the file itself failed)`);
      }
      fileFailuresSeen = 0;
    }
  }
  return counts;
}

function main(argv) {
  const total = { passed: 0, failed: 0, skipped: 0 };
  for (const arg of argv) {
    const [label, file] = arg.includes('=') ? arg.split(/=(.*)/s) : [arg, arg];
    let c;
    if (!fs.existsSync(file)) {
      c = { passed: 0, failed: 1, skipped: 0, failures: ['suite did not run (no TAP output)'] };
    } else {
      c = countTap(fs.readFileSync(file, 'utf8'));
      if (c.passed + c.failed + c.skipped === 0) {
        c.failed = 1;
        c.failures.push('suite ran no test');
      }
    }
    // Per-suite lines are worded differently so only the last line reads as the total.
    console.log(`suite ${label}: passed ${c.passed}, failed ${c.failed}, skipped ${c.skipped}`);
    for (const f of c.failures) console.log(`  not ok: ${f}`);
    total.passed += c.passed;
    total.failed += c.failed;
    total.skipped += c.skipped;
  }
  console.log(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
  return total.failed === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exit(main(process.argv.slice(2)));
