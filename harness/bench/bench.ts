/**
 * `p2pdma bench`: checks that the machine is quiet, runs the suites
 * (bench/suites.js) on the host or in a guest booted once per kernel and
 * round in A B A B order, then writes results.json, results.md and a chart
 * per suite into the output directory. Progress goes to stderr.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROJECT_DIR, runVm } from '../vm/run';
import { runNodes } from '../vm/run-nodes';
import type { BenchOptions } from './args';
import { chartSpec, renderPng, renderSvg } from './chart';
import { BenchKernel, resolveBenchKernel, uniqueLabels } from './kernels';
import { suiteProfileMarkdown } from './profile';
import { checkQuiet, QuietCheck } from './quiet';
import { BenchResults, buildResults, markdown, RunRecord } from './report';
import { readRunFile, type RunFile } from './results-file';
import { schedule } from './schedule';
import type { Sample } from './stats';

const SUITES_SCRIPT = path.join(PROJECT_DIR, 'bench', 'suites.js');

/** Exit status when the machine is busy and --allow-busy was not given. */
export const BUSY_STATUS = 3;

function hostKernel(): BenchKernel {
  return { label: 'host', spec: 'host', vmKernel: '', bzImage: '', version: `${os.release()} ${os.version()}`, configHash: null };
}

export async function runBench(o: BenchOptions, log = (l: string) => process.stderr.write(`[bench] ${l}\n`)): Promise<number> {
  const quiet: QuietCheck[] = [];
  const check = (when: string, ignoreLoad: boolean) => {
    const q = checkQuiet({ loadPerCpu: o.loadPerCpu, ignoreLoad, when });
    quiet.push(q);
    log(`quiet check (${when}): ${q.quiet ? 'quiet' : `BUSY: ${q.reasons.join('; ')}`}`);
    return q;
  };
  if (!check('before', false).quiet && !o.allowBusy) {
    log(`refusing to benchmark a busy machine (--allow-busy runs anyway and marks every result busy)`);
    return BUSY_STATUS;
  }
  const started = new Date().toISOString();
  const resolved: BenchKernel[] = [];
  // One at a time: a tree or series may have to be built first.
  const t0Kernels = Date.now();
  if (o.where === 'guest') for (const k of o.kernels) resolved.push(await resolveBenchKernel(k, log));
  // A kernel built just now (a tree or series not in the cache yet) leaves
  // the load high: judge it again, with the load, before measuring.
  if (Date.now() - t0Kernels > 30_000 && !check('after building kernels', false).quiet && !o.allowBusy) {
    log(`refusing to benchmark right after a kernel build: run again (the kernels are cached now)`);
    return BUSY_STATUS;
  }
  const kernels = o.where === 'host' ? [hostKernel()] : uniqueLabels(resolved);
  const out = path.resolve(o.out);
  const raw = path.join(out, 'raw');
  // The scripts' C anchors, compiled once for all runs (a TCG guest compiles slowly).
  const bin = path.join(out, 'bin');
  for (const d of [raw, bin]) fs.mkdirSync(d, { recursive: true });
  const env = { P2PDMA_BENCH_DIR: bin };
  const prepared = spawnSync('node', [SUITES_SCRIPT, '--prepare'], { stdio: ['ignore', 2, 2], env: { ...process.env, ...env } });
  if (prepared.status !== 0) throw new Error('compiling the C anchors failed (node bench/suites.js --prepare)');

  const runs: RunRecord[] = [];
  const samples: Sample[] = [];
  const accel: string[] = [];
  const plan = schedule(kernels.map((k) => k.label), o.rounds);
  // Told to stop, the run in progress ends (runVm kills its guest) and no
  // other starts; what ran so far is still written, marked interrupted.
  let stoppedBy: NodeJS.Signals | undefined;
  const stop = (signal: NodeJS.Signals) => {
    stoppedBy = signal;
  };
  const stopSignals: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGINT'];
  for (const sig of stopSignals) process.on(sig, stop);
  for (const [i, step] of plan.entries()) {
    if (stoppedBy) break;
    const kernel = kernels.find((k) => k.label === step.kernel)!;
    // Our own previous run still weighs in the 1-minute load: only other processes count now.
    if (i > 0) check(`before round ${step.round + 1} on ${step.kernel}`, true);
    log(`run ${i + 1}/${plan.length}: round ${step.round + 1}, ${step.kernel}: ${o.suites.join(', ')}`);
    const runName = `${step.kernel.replace(/[^\w.-]+/g, '_')}-round${step.round + 1}`;
    const file = path.join(raw, `${runName}.jsonl`);
    for (const f of [file, file.replace(/\.jsonl$/, '-a.jsonl'), file.replace(/\.jsonl$/, '-b.jsonl')]) fs.rmSync(f, { force: true });
    const command = ['node', SUITES_SCRIPT, '--results', file, '--suites', o.suites.join(',')];
    // --profile: bench/suites.js profiles each suite into profiles/<run>/<suite>/.
    const profileDir = path.join(out, 'profiles', runName);
    const runEnv: Record<string, string> = { ...env };
    if (o.profile) {
      fs.rmSync(profileDir, { recursive: true, force: true });
      fs.mkdirSync(profileDir, { recursive: true });
      runEnv.P2PDMA_BENCH_PROFILE = profileDir;
    }
    const t0 = Date.now();
    let ok: boolean;
    let reason: string | undefined;
    let runAccel = 'none';
    // One guest or two nodes: the same boot, command and shared directories.
    const guestRun = {
      kernel: kernel.vmKernel,
      command,
      cwd: PROJECT_DIR,
      rwDirs: o.profile ? [raw, bin, profileDir] : [raw, bin],
      env: runEnv,
      timeoutSec: o.timeoutSec,
      output: process.stderr,
      log: (l: string) => log(`vm: ${l}`),
    };
    if (o.where === 'host') {
      const r = spawnSync(command[0], command.slice(1), { cwd: PROJECT_DIR, stdio: ['ignore', 2, 2], env: { ...process.env, ...runEnv } });
      ok = r.status === 0;
      if (!ok) reason = `bench/suites.js exited ${r.status ?? r.signal}`;
    } else if (o.nodes === 2) {
      // Both nodes run the same suites and keep in step over the wire; each writes its own file.
      const r = await runNodes(guestRun);
      ok = r.ok;
      reason = r.nodes.filter((n) => !n.ok).map((n) => `node ${n.role}: ${n.reason}`).join('; ') || undefined;
      runAccel = r.nodes[0]?.accel ?? 'none';
      accel.push(runAccel);
    } else {
      const r = await runVm(guestRun);
      ok = r.ok;
      reason = r.reason;
      runAccel = r.accel;
      accel.push(r.accel);
    }
    const got = o.nodes === 2 ? mergeRunFiles(['a', 'b'].map((role) => readRunFile(file.replace(/\.jsonl$/, `-${role}.jsonl`), step.kernel, step.round))) : readRunFile(file, step.kernel, step.round);
    samples.push(...got.samples);
    runs.push({ round: step.round, kernel: step.kernel, ok, reason, accel: runAccel, seconds: (Date.now() - t0) / 1000, place: got.place, skipped: got.skipped, failed: got.failed });
    if (!ok) log(`run failed: ${reason} (its samples are kept)`);
  }
  for (const sig of stopSignals) process.off(sig, stop);
  if (stoppedBy) log(`stopped by ${stoppedBy} after ${runs.length} of ${plan.length} runs`);

  const results: BenchResults = buildResults({
    tool: 'p2pdma bench',
    busyAllowed: o.allowBusy,
    profiled: o.profile,
    interrupted: stoppedBy ?? null,
    started,
    finished: new Date().toISOString(),
    where: o.where,
    suites: o.suites,
    rounds: o.rounds,
    host: { cpu: os.cpus()[0]?.model ?? '?', cpus: os.availableParallelism(), kernel: os.release(), node: process.version, accel },
    kernels: kernels.map(({ vmKernel: _, ...k }) => k),
    quiet,
    runs,
    samples,
  });
  await writeOutputs(out, results, log);
  if (o.profile) writeProfiles(out, runs, o.suites, log);
  if (!results.quiet.every((q) => q.quiet)) {
    log(`the machine was busy during the run: every output says so; these are not clean figures`);
    if (!o.allowBusy) return BUSY_STATUS;
  }
  return runs.every((r) => r.ok) && !stoppedBy ? 0 : 1;
}

/** The two nodes' files of one run as one: node a's place, both nodes' samples, skips and failures. */
function mergeRunFiles(files: RunFile[]): RunFile {
  return {
    place: files.find((f) => f.place)?.place,
    samples: files.flatMap((f) => f.samples),
    skipped: files.flatMap((f) => f.skipped),
    failed: files.flatMap((f) => f.failed),
  };
}

export async function writeOutputs(out: string, results: BenchResults, log: (l: string) => void): Promise<void> {
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  fs.writeFileSync(path.join(out, 'results.md'), markdown(results));
  const written = ['results.json', 'results.md'];
  for (const suite of results.suites) {
    if (!results.summaries.some((s) => s.suite === suite)) continue;
    const busy = !results.quiet.every((q) => q.quiet);
    const svg = await renderSvg(chartSpec(suite, results.summaries, busy || (results.profiled ? 'PROFILED RUN: not clean figures' : false)));
    fs.writeFileSync(path.join(out, `${suite}.svg`), svg);
    written.push(`${suite}.svg`);
    const png = await renderPng(svg);
    if (png) {
      fs.writeFileSync(path.join(out, `${suite}.png`), png);
      written.push(`${suite}.png`);
    }
  }
  log(`wrote ${written.join(', ')} in ${out}`);
}

/** profile.md: per run and suite, the top self-time tables of its profiles (harness/bench/profile.ts). */
export function writeProfiles(out: string, runs: RunRecord[], suites: string[], log: (l: string) => void): void {
  const parts = ['# p2pdma bench --profile', '', 'Self time by function, per run and suite (node --cpu-prof; perf where the guest had it). Raw profiles in profiles/.', ''];
  for (const run of runs) {
    const runName = `${run.kernel.replace(/[^\w.-]+/g, '_')}-round${run.round + 1}`;
    for (const suite of suites) {
      const md = suiteProfileMarkdown(path.join(out, 'profiles', runName, suite), PROJECT_DIR);
      if (md) parts.push(`## ${suite}: ${run.kernel}, round ${run.round + 1}`, '', md);
    }
  }
  fs.writeFileSync(path.join(out, 'profile.md'), `${parts.join('\n')}\n`);
  log(`wrote profile.md in ${out}`);
}
