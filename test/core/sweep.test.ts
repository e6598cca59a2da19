// The property-based sweep: fast-check feeds every function, constructor,
// method and getter that lib/index.ts exports arguments of wrong types,
// ranges and alignments mixed with valid ones (test/fixtures/sweep-values.ts),
// in child processes (test/fixtures/sweep.ts), one per group of targets.
// Each call must leave the child running, throw or reject only Errors with a
// string `code`, and leave /proc/self/fd and the addon's mappings as they
// were once what it returned is closed. Views and buffers are of every kind
// this Node has (test/fixtures/sweep-views.ts); a byte of an argument's
// ArrayBuffer outside the view must not change, and the buffers of a call
// that returns a promise are detached, transferred or resized while it is
// pending. Run it on every Node line (scripts/node-line.sh).
//
// The seed is fixed and printed; replay a failure, or explore, with
//   SWEEP_SEED=<seed>|random [SWEEP_ONLY=<target>] [SWEEP_RUNS=<n>] npx tap test/core/sweep.test.ts
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { exportedCallables, groupNames, targets, targetsOf } from '../fixtures/sweep-targets';
import { report, runTs } from '../helpers';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'sweep.ts');
// A fixed seed by default: CI must not fail on a draw it never made before.
// SWEEP_SEED=random explores new cases (the seed is printed to replay them).
const FIXED_SEED = 20261125;
const seedEnv = process.env.SWEEP_SEED;
const seed = seedEnv === undefined ? FIXED_SEED : seedEnv === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedEnv);
const runs = Number(process.env.SWEEP_RUNS ?? 100);

interface SweepReport {
  targets: string[];
  ms: number;
  failures: { target: string; message: string }[];
  incidents: string[];
  pinnedGone: boolean;
  mmap: number;
  munmap: number;
  fdsLeft: string[];
  stats: { guarded: number; guardChecks: number; promises: number; inFlight: Record<string, number> };
  features: { typedArrays: string[]; transfer: boolean; transferToFixedLength: boolean };
}

t.comment(`sweep seed ${seed}, ${runs} runs per target (replay: SWEEP_SEED=${seed} npx tap test/core/sweep.test.ts)`);

t.test('every exported function, class, method, getter and static method is in the sweep', async (t) => {
  const exported = exportedCallables();
  const swept = Object.keys(targets);
  t.same(
    exported.filter((name) => !swept.includes(name)),
    [],
    'not swept: add them to test/fixtures/sweep-targets.ts',
  );
  t.same(
    swept.filter((name) => !exported.includes(name)),
    [],
    'swept but no longer exported',
  );
  t.same(
    swept.filter((name) => groupNames.filter((g) => targetsOf(g).includes(name)).length !== 1),
    [],
    'every target in exactly one group',
  );
});

for (const group of groupNames) {
  t.test(`sweep of ${group} (${targetsOf(group).join(', ')})`, async (t) => {
    const traceFile = path.join(os.tmpdir(), `p2pdma-test-sweep-trace-${process.pid}-${group}`);
    const env: NodeJS.ProcessEnv = { SWEEP_GROUP: group, SWEEP_SEED: String(seed), SWEEP_RUNS: String(runs), SWEEP_TRACE: traceFile };
    if (process.env.SWEEP_ONLY !== undefined) env.SWEEP_ONLY = process.env.SWEEP_ONLY;
    // Sequential: loading the TypeScript is most of each child's time, and
    // two at a time on this 2-CPU machine took longer than one after another.
    const r = runTs(FIXTURE, ['--expose-gc'], env);
    const inProgress = fs.existsSync(traceFile) ? fs.readFileSync(traceFile, 'utf8').trim() : '';
    fs.rmSync(traceFile, { force: true });
    const where = `seed ${seed}${inProgress ? `, in ${inProgress}` : ''}`;
    t.equal(r.signal, null, `the child was not killed by a signal (${where})`);
    t.equal(r.status, 0, `the child exited normally (${where})`, { stderr: r.stderr.slice(-4000) });
    if (r.status !== 0) return;
    const rep = report<SweepReport>(r);
    t.comment(`${group}: ${rep.targets.length} targets in ${rep.ms} ms; ${rep.stats.guardChecks} guard-byte checks, ${rep.stats.promises} promises, changed in flight: ${JSON.stringify(rep.stats.inFlight)}`);
    if (group === 'ioctl') {
      t.comment(`node ${process.version}: ${rep.features.typedArrays.join(', ')}; transfer() ${rep.features.transfer}, transferToFixedLength() ${rep.features.transferToFixedLength}`);
      if (process.env.SWEEP_ONLY === undefined && runs >= 100) {
        // The view checks must not be dead code: ioctl() takes views, on the thread pool.
        t.ok(rep.stats.guardChecks > 50, 'views were guard-checked');
        const kinds = Object.keys(rep.stats.inFlight);
        t.ok(['detach', 'transfer', 'resize to 0', 'grow to max'].every((k) => kinds.includes(k)), `buffers detached, transferred, shrunk and grown while ioctl() was pending (${kinds.join(', ')})`);
      }
    }
    t.same(
      rep.failures.map((f) => `${f.target} (seed ${seed}): ${f.message}`),
      [],
      'every call threw only coded Errors, settled, and left no fd or mapping behind',
    );
    t.same(rep.incidents, [], 'no P2PDMA warning, unhandled rejection or uncaught exception between calls');
    t.same(rep.fdsLeft, [], 'no fd left open at the end');
    t.ok(rep.pinnedGone, 'every unmapped range reserved for a live ArrayBuffer was released after GC');
    t.equal(rep.munmap, rep.mmap, 'every mmap(2) was munmap()ed');
  });
}
