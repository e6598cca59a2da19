/*
 * Machine-readable results of the bench scripts, for `p2pdma bench`: when
 * P2PDMA_BENCH_RESULTS names a file, record() appends one JSON line
 *   {suite, metric, unit, variant, anchor, better, value}
 * per sample to it, and the scripts' human output goes to stderr (human()).
 * Run by hand (no P2PDMA_BENCH_RESULTS), record() does nothing and the
 * human output stays on stdout.
 */
'use strict';
const fs = require('node:fs');

const file = process.env.P2PDMA_BENCH_RESULTS;

/** Where a script's own report goes: stdout by hand, stderr under `p2pdma bench`. */
const human = file ? (...a) => console.error(...a) : (...a) => console.log(...a);

/**
 * One sample. `anchor` marks the C/perftest reference the addon is compared
 * with; `better` is 'higher' or 'lower' (for the reader: which way is good).
 */
function record(suite, metric, unit, variant, value, { anchor = false, better = 'higher' } = {}) {
  if (!file) return;
  if (!Number.isFinite(value)) throw new Error(`${suite}/${metric}/${variant}: not a number: ${value}`);
  fs.appendFileSync(file, `${JSON.stringify({ suite, metric, unit, variant, anchor, better, value })}\n`);
}

module.exports = { record, human, machine: Boolean(file) };
