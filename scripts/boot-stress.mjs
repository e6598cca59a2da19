#!/usr/bin/env node
// Boot a guest kernel N times in a row with a command that does nothing, and
// count the runs that failed by signature (the first kernel report line with
// addresses and numbers masked): the measurement behind "Boot panics under
// TCG" in docs/harness.md. Not part of `make test`.
//
//   node scripts/boot-stress.mjs [--runs N] [--kernel baseline|patched|PATH]
//        [--debug] [--tcg-thread multi|single] [--command 'true']
//
// Prints one line per failure (kept results directory) and a JSON summary.
import { parseArgs } from 'node:util';
import { PassThrough } from 'node:stream';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { runVm, resolveKernel } = require('../dist/harness/harness/vm/run.js');

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '50' },
    kernel: { type: 'string', default: 'baseline' },
    debug: { type: 'boolean', default: false },
    'tcg-thread': { type: 'string', default: 'multi' },
    command: { type: 'string', default: 'true' },
  },
});
const runs = Number(values.runs);
const tcgThread = values['tcg-thread'];
if (!['multi', 'single'].includes(tcgThread)) throw new Error('--tcg-thread must be multi or single');

/** A failure's signature: the first report line, minus what varies per boot. */
export function signature(result) {
  const line = result.splats[0]?.text ?? result.reason ?? 'unknown';
  return line
    .replace(/^\[\s*[\d.]+\]\s*/, '')
    .replace(/\+0x[0-9a-f]+\/0x[0-9a-f]+/g, '')
    .replace(/0x[0-9a-f]+|\b[0-9a-f]{8,}\b/g, 'X')
    .replace(/\b(CPU|PID|Comm):?\s*\S+/g, '$1 _')
    .trim();
}

const kernel = resolveKernel(values.kernel, values.debug, () => {});
const counts = new Map();
const seconds = [];
for (let i = 1; i <= runs; i++) {
  const output = new PassThrough();
  output.resume();
  const r = await runVm({
    kernel,
    command: ['sh', '-c', values.command],
    accel: 'tcg',
    tcgThread,
    output,
    log: () => {},
    timeoutSec: values.debug ? 300 : 120,
  });
  seconds.push(r.seconds);
  if (!r.ok) {
    const sig = signature(r);
    counts.set(sig, (counts.get(sig) ?? 0) + 1);
    console.log(`run ${i}: FAILED ${sig} (kept ${r.resultsDir})`);
  } else if (i % 10 === 0) {
    console.log(`run ${i}: ok`);
  }
}
seconds.sort((a, b) => a - b);
const failed = [...counts.values()].reduce((a, b) => a + b, 0);
console.log(JSON.stringify({
  kernel,
  debug: values.debug,
  tcgThread,
  runs,
  failed,
  bySignature: Object.fromEntries(counts),
  bootSeconds: { min: seconds[0], median: seconds[Math.floor(seconds.length / 2)], max: seconds.at(-1) },
}, null, 2));
process.exit(failed === 0 ? 0 : 1);
