/**
 * One run's JSON-lines file, as bench/suites.js and bench/lib/results.js
 * write it: a `place` line, a line per sample, and a line per suite skipped
 * or failed. Lines that parse as none of these are an error: a suite that
 * printed garbage into the file has a bug worth hearing about.
 */
import * as fs from 'node:fs';
import type { Sample } from './stats';

export interface RunFile {
  place?: Record<string, unknown>;
  samples: Sample[];
  skipped: { suite: string; why: string }[];
  failed: { suite: string; why: string }[];
}

export function parseRunFile(text: string, kernel: string, round: number): RunFile {
  const out: RunFile = { samples: [], skipped: [], failed: [] };
  for (const [i, line] of text.split('\n').entries()) {
    if (!line.trim()) continue;
    const o = JSON.parse(line);
    if (o.place) out.place = o.place;
    else if (typeof o.skipped === 'string') out.skipped.push({ suite: o.suite, why: o.skipped });
    else if (typeof o.failed === 'string') out.failed.push({ suite: o.suite, why: o.failed });
    else if (typeof o.metric === 'string' && typeof o.value === 'number') {
      out.samples.push({ kernel, round, suite: o.suite, metric: o.metric, unit: o.unit, variant: o.variant, anchor: Boolean(o.anchor), better: o.better === 'lower' ? 'lower' : 'higher', value: o.value });
    } else throw new Error(`line ${i + 1}: not a bench record: ${line}`);
  }
  return out;
}

export function readRunFile(file: string, kernel: string, round: number): RunFile {
  return parseRunFile(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '', kernel, round);
}
