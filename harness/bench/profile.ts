/**
 * `p2pdma bench --profile`: where a suite's time goes. bench/suites.js runs
 * each suite with `node --cpu-prof` (every node process it starts writes a
 * .cpuprofile) and, where the kernel has perf events and `perf` is
 * installed, under `perf record -e cpu-clock` with `perf report`'s flat
 * table saved beside them (perf.txt; the report is made where the run was,
 * since it needs that machine's JIT maps and kallsyms). This module reduces
 * both to top-N self-time tables in Markdown.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../../lib/core/package-root';

/** What a frame is: our JS or the caller's, Node's own JS, native code (a binding or a V8/Node builtin), GC, or V8's buckets. */
export type FrameKind = 'JS' | 'Node JS' | 'native' | 'GC' | '(program)' | '(idle)';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
/** The parts of V8's .cpuprofile (the DevTools format) read here. */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfRow {
  name: string;
  where: string;
  kind: FrameKind;
  selfMs: number;
  /** Share of all sampled time, idle included. */
  share: number;
}

export interface CpuProfileSummary {
  profiles: number;
  samples: number;
  totalMs: number;
  byKind: Record<FrameKind, number>;
  rows: SelfRow[];
}

export function frameKind(f: CallFrame): FrameKind {
  if (f.functionName === '(garbage collector)') return 'GC';
  if (f.functionName === '(idle)') return '(idle)';
  if (f.functionName === '(program)' || f.functionName === '(root)') return '(program)';
  if (!f.url) return 'native';
  return f.url.startsWith('node:') ? 'Node JS' : 'JS';
}

function where(f: CallFrame, root: string): string {
  if (!f.url) return '';
  let u = f.url.startsWith('file://') ? decodeURIComponent(f.url.slice('file://'.length)) : f.url;
  if (root && u.startsWith(`${root}/`)) u = u.slice(root.length + 1);
  return `${u}:${f.lineNumber + 1}`;
}

/**
 * Self time per function over one or more profiles (one per process).
 * A sample's time is the gap to the next one, as DevTools counts it; the
 * last one's runs to endTime. `root` is cut from script paths.
 */
export function reduceCpuProfiles(profiles: CpuProfile[], root = ''): CpuProfileSummary {
  const byKey = new Map<string, SelfRow>();
  const byKind: Record<FrameKind, number> = { JS: 0, 'Node JS': 0, native: 0, GC: 0, '(program)': 0, '(idle)': 0 };
  let totalUs = 0;
  let samples = 0;
  for (const p of profiles) {
    const nodes = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
    let t = p.startTime;
    const times = p.timeDeltas.map((d) => (t += d));
    for (const [i, id] of p.samples.entries()) {
      const us = Math.max(0, (i + 1 < times.length ? times[i + 1] : p.endTime) - times[i]);
      const f = nodes.get(id);
      if (!f) throw new Error(`sample of unknown node ${id}`);
      const kind = frameKind(f);
      const w = where(f, root);
      const name = f.functionName || '(anonymous)';
      const key = `${name}\u0000${w}\u0000${kind}`;
      let row = byKey.get(key);
      if (!row) byKey.set(key, (row = { name, where: w, kind, selfMs: 0, share: 0 }));
      row.selfMs += us / 1000;
      byKind[kind] += us / 1000;
      totalUs += us;
      samples++;
    }
  }
  const totalMs = totalUs / 1000;
  const rows = [...byKey.values()].sort((a, b) => b.selfMs - a.selfMs);
  for (const r of rows) r.share = totalMs ? r.selfMs / totalMs : 0;
  return { profiles: profiles.length, samples, totalMs, byKind, rows };
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const cell = (s: string) => s.replace(/\|/g, '\\|');

/** A top-N table and the split by kind; idle is left out of the shares of busy time. */
export function cpuProfileMarkdown(s: CpuProfileSummary, top = 20): string {
  const busy = s.totalMs - s.byKind['(idle)'];
  const kinds = (Object.keys(s.byKind) as FrameKind[]).filter((k) => k !== '(idle)' && s.byKind[k] > 0);
  const out = [
    `node --cpu-prof: ${s.profiles} profile(s) (a process or thread each), ${s.samples} samples, ${(busy / 1000).toFixed(2)} s busy (+${(s.byKind['(idle)'] / 1000).toFixed(2)} s idle: waiting, e.g. on a C anchor or the device).`,
    '',
    `By kind, share of busy time: ${kinds.map((k) => `${k} ${pct(busy ? s.byKind[k] / busy : 0)}`).join(', ')}.`,
    '',
    '| self ms | % of busy | kind | function | where |',
    '|---:|---:|---|---|---|',
  ];
  const rows = s.rows.filter((x) => x.kind !== '(idle)').slice(0, top);
  for (const r of rows) {
    out.push(`| ${r.selfMs.toFixed(1)} | ${pct(busy ? r.selfMs / busy : 0)} | ${r.kind} | ${cell(r.name)} | ${cell(r.where)} |`);
  }
  if (rows.some((r) => r.kind === 'native')) {
    out.push(
      '',
      "V8 names a native frame after its entry point, and every Node-API function of an addon has the same one (Node's callback trampoline): all of them carry the name of one (e.g. `rdmaGetAddrInfo`). Read such a row as time in the addon's bindings, the syscalls under them included.",
    );
  }
  return `${out.join('\n')}\n`;
}

/** One row of `perf report --stdio -t '|' --sort comm,dso,sym`. */
export interface PerfRow {
  share: number;
  comm: string;
  dso: string;
  symbol: string;
  kind: 'kernel' | 'JIT (JS, V8 stubs)' | 'node/V8' | 'addon' | 'libc' | 'other';
}

export function perfKind(dso: string, symbol: string): PerfRow['kind'] {
  if (dso.startsWith('[kernel') || symbol.startsWith('[k]')) return 'kernel';
  if (/perf-\d+\.map$/.test(dso) || dso.startsWith('[JIT]')) return 'JIT (JS, V8 stubs)';
  if (dso === 'node' || dso.endsWith('/node')) return 'node/V8';
  if (dso.endsWith('.node')) return 'addon';
  if (/^(libc|libm|ld-linux|libpthread)[.-]/.test(path.basename(dso))) return 'libc';
  return 'other';
}

/** Parses the flat report; lines that are not rows (comments, blanks) are skipped. */
export function parsePerfReport(text: string): PerfRow[] {
  const rows: PerfRow[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const parts = line.split('|');
    const m = /^([\d.]+)%$/.exec((parts[0] ?? '').trim());
    if (!m || parts.length < 4) continue;
    const [, comm, dso, ...sym] = parts;
    const symbol = sym.join('|').trim();
    rows.push({ share: Number(m[1]) / 100, comm: comm.trim(), dso: dso.trim(), symbol, kind: perfKind(dso.trim(), symbol) });
  }
  return rows.sort((a, b) => b.share - a.share);
}

export function perfMarkdown(rows: PerfRow[], top = 20): string {
  const byKind = new Map<string, number>();
  for (const r of rows) byKind.set(r.kind, (byKind.get(r.kind) ?? 0) + r.share);
  const out = [
    `perf record -e cpu-clock (the processes profiled, kernel included): by kind ${[...byKind].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${pct(v)}`).join(', ')}.`,
    '',
    '| % | command | object | symbol | kind |',
    '|---:|---|---|---|---|',
  ];
  for (const r of rows.slice(0, top)) out.push(`| ${pct(r.share)} | ${cell(r.comm)} | ${cell(path.basename(r.dso))} | ${cell(r.symbol)} | ${r.kind} |`);
  return `${out.join('\n')}\n`;
}

/**
 * The Markdown for one profiled suite's directory (as bench/suites.js
 * leaves it: *.cpuprofile, perf.txt or perf-unavailable.txt), or null when
 * it holds neither.
 */
export function suiteProfileMarkdown(dir: string, root: string, top = 20): string | null {
  if (!fs.existsSync(dir)) return null;
  const files = fs.readdirSync(dir).sort();
  const parts: string[] = [];
  const cpu = files.filter((f) => f.endsWith('.cpuprofile'));
  if (cpu.length) {
    const profiles = cpu.map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as CpuProfile);
    parts.push(cpuProfileMarkdown(reduceCpuProfiles(profiles, root), top));
  }
  if (files.includes('perf.txt')) parts.push(perfMarkdown(parsePerfReport(fs.readFileSync(path.join(dir, 'perf.txt'), 'utf8')), top));
  else if (files.includes('perf-unavailable.txt')) parts.push(`perf: not run (${fs.readFileSync(path.join(dir, 'perf-unavailable.txt'), 'utf8').trim()}).\n`);
  return parts.length ? parts.join('\n') : null;
}

// `node dist/harness/harness/bench/profile.js DIR [TOP]`: the Markdown of every
// profiled directory under DIR (bench/profile-hot.js's, or a --profile run's).
if (require.main === module) {
  const [dir, top = '20'] = process.argv.slice(2);
  if (!dir) {
    process.stderr.write('usage: node dist/harness/harness/bench/profile.js DIR [TOP]\n');
    process.exit(2);
  }
  for (const name of fs.readdirSync(dir).sort()) {
    const md = suiteProfileMarkdown(path.join(dir, name), packageRoot, Number(top));
    if (md) process.stdout.write(`## ${name}\n\n${md}\n`);
  }
}
