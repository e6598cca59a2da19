/**
 * The results of `p2pdma demo`: the steps scripts/demo.js reports as JSON
 * lines, the harness's own (kernel, boot), the table on stdout and the exit
 * status.
 */

/** ok: done and checked; expected: refused where the kernel should refuse (baseline). */
export type StepStatus = 'ok' | 'expected' | 'failed' | 'skipped';

export interface StepResult {
  /** Stable id (`'p2p-read'`). */
  name: string;
  /** What the table shows. */
  title: string;
  status: StepStatus;
  seconds: number;
  /** The rate and what was checked, or why it failed or was skipped. */
  detail: string;
}

export interface DemoReport {
  /** `'guest'` or `'host'`. */
  mode: 'guest' | 'host';
  /** The kernel the steps ran on (`'patched'`, a path, or the host's release). */
  kernel: string;
  steps: StepResult[];
  seconds: number;
}

const STATUSES: readonly string[] = ['ok', 'expected', 'failed', 'skipped'];

/** One line of scripts/demo.js's stdout as a step, or undefined for any other line. */
export function parseStepLine(line: string): StepResult | undefined {
  // From the guest's console a line may carry a prefix (a kernel message's tail).
  const start = line.indexOf('{"demo":"step"');
  if (start < 0) return undefined;
  const text = line.slice(start).trim();
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof r.name !== 'string' || typeof r.status !== 'string' || !STATUSES.includes(r.status) || typeof r.seconds !== 'number') return undefined;
  return {
    name: r.name,
    title: typeof r.title === 'string' ? r.title : r.name,
    status: r.status as StepStatus,
    seconds: r.seconds,
    detail: typeof r.detail === 'string' ? r.detail : '',
  };
}

/** 0 when no step failed (skipped steps say why and do not fail), else 1. */
export function exitStatus(steps: readonly StepResult[]): number {
  return steps.some((s) => s.status === 'failed') ? 1 : 0;
}

const RESULT: Record<StepStatus, string> = { ok: 'ok', expected: 'refused (expected)', failed: 'FAILED', skipped: 'skipped' };

function seconds(s: number): string {
  return s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`;
}

/** The table: step, result, time, then what was measured and checked (or why not). */
export function formatReport(report: DemoReport): string {
  const header = ['step', 'result', 'time', 'detail'];
  const rows = report.steps.map((s) => [s.title, RESULT[s.status], seconds(s.seconds), s.detail]);
  const width = (i: number) => Math.max(header[i].length, ...rows.map((r) => r[i].length));
  const line = (r: string[]) => `${r[0].padEnd(width(0))}  ${r[1].padEnd(width(1))}  ${r[2].padStart(width(2))}  ${r[3]}`.trimEnd();
  const count = (st: StepStatus) => report.steps.filter((s) => s.status === st).length;
  const summary = [`${count('ok')} ok`, `${count('expected')} refused as expected`, `${count('failed')} failed`, `${count('skipped')} skipped`].join(', ');
  return [
    `p2pdma demo on ${report.mode === 'host' ? 'this host' : 'the test guest'}, kernel ${report.kernel}`,
    line(header),
    line(header.map((h, i) => '-'.repeat(i === 3 ? h.length : width(i)))),
    ...rows.map(line),
    `${summary}; ${seconds(report.seconds)} in all`,
    '',
  ].join('\n');
}
