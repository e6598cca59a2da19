/**
 * Aggregation of `p2pdma bench` samples: median, min and max per (kernel,
 * suite, metric, variant); the ratio of each variant to its anchor (the C
 * program or perftest) and of the first kernel to each other kernel; and a
 * flag wherever the spread of the runs exceeds the difference being
 * reported, since such a ratio says nothing either way.
 */

/** One measurement, as bench/lib/results.js writes it, with where it ran. */
export interface Sample {
  kernel: string;
  round: number;
  suite: string;
  metric: string;
  unit: string;
  variant: string;
  anchor: boolean;
  better: 'higher' | 'lower';
  value: number;
}

export interface Summary {
  kernel: string;
  suite: string;
  metric: string;
  variant: string;
  unit: string;
  anchor: boolean;
  better: 'higher' | 'lower';
  n: number;
  median: number;
  min: number;
  max: number;
}

export interface Ratio {
  suite: string;
  metric: string;
  /** 'variant/anchor' within one kernel, or 'kernelA/kernelB' for one variant. */
  kind: 'anchor' | 'kernels';
  numerator: string;
  denominator: string;
  /** The kernel (kind anchor) or the variant (kind kernels) both sides share. */
  of: string;
  ratio: number;
  /** The larger of the two min..max ranges exceeds the medians' difference. */
  spreadExceedsDifference: boolean;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of no values');
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const key = (...parts: string[]) => parts.join('\u0000');

export function summarize(samples: readonly Sample[]): Summary[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const k = key(s.kernel, s.suite, s.metric, s.variant);
    const g = groups.get(k);
    if (g) g.push(s);
    else groups.set(k, [s]);
  }
  return [...groups.values()].map((g) => {
    const values = g.map((s) => s.value);
    const { kernel, suite, metric, variant, unit, anchor, better } = g[0];
    return { kernel, suite, metric, variant, unit, anchor, better, n: values.length, median: median(values), min: Math.min(...values), max: Math.max(...values) };
  });
}

function ratioOf(a: Summary, b: Summary): { ratio: number; spreadExceedsDifference: boolean } {
  const spread = Math.max(a.max - a.min, b.max - b.min);
  return { ratio: a.median / b.median, spreadExceedsDifference: spread > Math.abs(a.median - b.median) };
}

/**
 * Each non-anchor variant against each anchor of the same kernel and metric,
 * then each variant on the first kernel against the same on every other
 * kernel (A/B, in the order the kernels were given).
 */
export function ratios(summaries: readonly Summary[], kernels: readonly string[]): Ratio[] {
  const out: Ratio[] = [];
  const byMetric = new Map<string, Summary[]>();
  for (const s of summaries) {
    const k = key(s.suite, s.metric);
    byMetric.set(k, [...(byMetric.get(k) ?? []), s]);
  }
  for (const group of byMetric.values()) {
    const { suite, metric } = group[0];
    for (const kernel of kernels) {
      const mine = group.filter((s) => s.kernel === kernel);
      for (const v of mine.filter((s) => !s.anchor)) {
        for (const a of mine.filter((s) => s.anchor)) {
          out.push({ suite, metric, kind: 'anchor', numerator: v.variant, denominator: a.variant, of: kernel, ...ratioOf(v, a) });
        }
      }
    }
    const [first, ...others] = kernels;
    for (const a of group.filter((s) => s.kernel === first)) {
      for (const other of others) {
        const b = group.find((s) => s.kernel === other && s.variant === a.variant);
        if (b) out.push({ suite, metric, kind: 'kernels', numerator: first, denominator: other, of: a.variant, ...ratioOf(a, b) });
      }
    }
  }
  return out;
}
