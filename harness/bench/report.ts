/**
 * What `p2pdma bench` writes: results.json (everything: the machine, the
 * kernels, every quiet check, every sample, the summaries and ratios) and
 * results.md (a table per suite). A run on a busy machine says so at the
 * top of both, and in every chart.
 */
import type { BenchKernel } from './kernels';
import type { QuietCheck } from './quiet';
import { Ratio, ratios, Sample, summarize, Summary } from './stats';

export interface RunRecord {
  round: number;
  kernel: string;
  ok: boolean;
  reason?: string;
  accel: string;
  seconds: number;
  /** What bench/suites.js saw where it ran (kernel release, Node, CPUs). */
  place?: Record<string, unknown>;
  skipped: { suite: string; why: string }[];
  failed: { suite: string; why: string }[];
}

export interface BenchResults {
  tool: 'p2pdma bench';
  /** False when any quiet check failed, or the run was profiled: the figures are not clean. */
  clean: boolean;
  /** Run under the profilers (`--profile`): the figures include their cost. */
  profiled?: boolean;
  busyAllowed: boolean;
  /** The signal that stopped the run before its last round, or null. */
  interrupted: string | null;
  started: string;
  finished: string;
  where: 'host' | 'guest';
  suites: string[];
  rounds: number;
  host: { cpu: string; cpus: number; kernel: string; node: string; accel: string[] };
  kernels: Omit<BenchKernel, 'vmKernel'>[];
  quiet: QuietCheck[];
  runs: RunRecord[];
  samples: Sample[];
  summaries: Summary[];
  ratios: Ratio[];
}

export type BenchInputs = Omit<BenchResults, 'clean' | 'summaries' | 'ratios'>;

export function buildResults(inputs: BenchInputs): BenchResults {
  const summaries = summarize(inputs.samples);
  return {
    ...inputs,
    clean: inputs.quiet.every((q) => q.quiet) && !inputs.profiled,
    summaries,
    ratios: ratios(summaries, inputs.kernels.map((k) => k.label)),
  };
}

const fmt = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toPrecision(3));
const NOISY = ' (spread > difference)';

export function markdown(r: BenchResults): string {
  const out: string[] = [];
  const busy = !r.quiet.every((q) => q.quiet);
  out.push(`# p2pdma bench${busy ? ': BUSY MACHINE, NOT CLEAN FIGURES' : r.profiled ? ': PROFILED RUN, NOT CLEAN FIGURES' : ''}`, '');
  if (r.profiled) out.push('> **Profiled:** the suites ran under the profilers (see profile.md); the figures include their cost.', '');
  if (busy) {
    const why = [...new Set(r.quiet.flatMap((q) => q.reasons))];
    out.push(`> **Busy:** ${why.join('; ')}. Rerun on a quiet machine before quoting any figure.`, '');
  }
  if (r.interrupted) out.push(`> **Interrupted** (${r.interrupted}): ${r.runs.length} run(s) only.`, '');
  out.push(
    `${r.where}, ${r.rounds} round(s), ${r.started}; ${r.host.cpu} (${r.host.cpus} CPUs), host kernel ${r.host.kernel}, Node ${r.host.node}` +
      (r.where === 'guest' ? `, accel ${[...new Set(r.host.accel)].join('/')}` : ''),
    '',
  );
  for (const k of r.kernels) out.push(`- **${k.label}**: ${k.version}${k.configHash ? `, config ${k.configHash}` : ''}`);
  out.push('');
  const labels = r.kernels.map((k) => k.label);
  for (const suite of r.suites) {
    const rows = r.summaries.filter((s) => s.suite === suite);
    const skipped = [...new Set(r.runs.flatMap((run) => run.skipped.filter((s) => s.suite === suite).map((s) => s.why)))];
    const failed = r.runs.flatMap((run) => run.failed.filter((s) => s.suite === suite).map((s) => `${run.kernel} round ${run.round + 1}: ${s.why}`));
    out.push(`## ${suite}`, '');
    if (skipped.length) out.push(`Skipped: ${skipped.join('; ')}.`, '');
    if (failed.length) out.push(`Failed: ${failed.join('; ')}.`, '');
    if (!rows.length) continue;
    const ab = labels.slice(1).map((l) => `${labels[0]}/${l}`);
    out.push(`| metric | variant | unit | ${labels.map((l) => `${l}: median [min, max]`).join(' | ')} | ${[...ab, 'vs anchor'].join(' | ')} |`);
    out.push(`|${'---|'.repeat(4 + labels.length + ab.length)}`);
    // One row per (metric, variant), a metric's variants together, in the order the suite gave them.
    const seen = new Set<string>();
    const metrics = [...new Set(rows.map((s) => s.metric))];
    for (const s of metrics.flatMap((m) => rows.filter((x) => x.metric === m))) {
      const id = `${s.metric}\u0000${s.variant}`;
      if (seen.has(id)) continue;
      seen.add(id);
      const cells = labels.map((l) => {
        const m = rows.find((x) => x.kernel === l && x.metric === s.metric && x.variant === s.variant);
        return m ? `${fmt(m.median)} [${fmt(m.min)}, ${fmt(m.max)}]` : '-';
      });
      const abCells = labels.slice(1).map((l) => {
        const q = r.ratios.find((x) => x.kind === 'kernels' && x.suite === suite && x.metric === s.metric && x.of === s.variant && x.denominator === l);
        return q ? `${q.ratio.toFixed(2)}x${q.spreadExceedsDifference ? NOISY : ''}` : '-';
      });
      const anchor = r.ratios
        .filter((x) => x.kind === 'anchor' && x.suite === suite && x.metric === s.metric && x.numerator === s.variant)
        .map((x) => `${x.of}: ${x.ratio.toFixed(2)}x of ${x.denominator}${x.spreadExceedsDifference ? NOISY : ''}`)
        .join('; ');
      out.push(`| ${s.metric} | ${s.variant}${s.anchor ? ' (anchor)' : ''} | ${s.unit}, ${s.better} is better | ${cells.join(' | ')} | ${[...abCells, anchor || '-'].join(' | ')} |`);
    }
    out.push('');
  }
  out.push(`Quiet checks: ${r.quiet.map((q) => `${q.when}: ${q.quiet ? 'quiet' : `busy (${q.reasons.join('; ')})`}`).join('; ')}.`, '');
  return `${out.join('\n')}\n`;
}
