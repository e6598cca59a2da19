// `p2pdma bench`'s pure parts on synthetic inputs: arguments, the A B A B
// schedule, aggregation and its spread flag, the quiet check on a fake
// /proc, the run file, the JSON and Markdown shape and the charts.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseBenchArgs } from '../../harness/bench/args';
import { chartSpec, renderSvg } from '../../harness/bench/chart';
import { bzImageVersion, parseKernelSpec, uniqueLabels, type BenchKernel } from '../../harness/bench/kernels';
import { checkQuiet } from '../../harness/bench/quiet';
import { buildResults, markdown, type BenchInputs } from '../../harness/bench/report';
import { parseRunFile } from '../../harness/bench/results-file';
import { schedule } from '../../harness/bench/schedule';
import { median, ratios, summarize, type Sample } from '../../harness/bench/stats';
import { repoRoot, runTs } from '../helpers';

const SUITES = ['ioctl', 'dmabuf', 'nvme'];

t.test('arguments: defaults, lists and mistakes', async (t) => {
  const o = parseBenchArgs([], SUITES, new Date('2026-01-02T03:04:05Z'));
  t.same(o, { suites: SUITES, where: 'guest', kernels: ['baseline-7.3'], rounds: 3, out: 'bench-results/20260102-030405', allowBusy: false, timeoutSec: 1800, loadPerCpu: 0.25, profile: false, nodes: 1 });
  const g = parseBenchArgs(['--suites', 'ioctl,dmabuf', '--kernels', 'baseline,series:/tmp/s,/x/bzImage', '--rounds', '2', '--allow-busy', '--out', 'o'], SUITES);
  t.same([g.suites, g.kernels, g.rounds, g.allowBusy, g.out], [['ioctl', 'dmabuf'], ['baseline', 'series:/tmp/s', '/x/bzImage'], 2, true, 'o']);
  t.same(parseBenchArgs(['--where', 'host'], SUITES).kernels, ['host']);
  t.equal(parseBenchArgs(['--profile'], SUITES).profile, true);
  t.throws(() => parseBenchArgs(['--suites', 'nope'], SUITES), /unknown suite 'nope'/);
  t.throws(() => parseBenchArgs(['--where', 'moon'], SUITES), /host or guest/);
  t.throws(() => parseBenchArgs(['--where', 'host', '--kernels', 'patched'], SUITES), /--kernels is for --where guest/);
  t.throws(() => parseBenchArgs(['--rounds', '0'], SUITES), /--rounds wants a positive integer/);
  t.throws(() => parseBenchArgs(['--kernels', 'tree:'], SUITES), /tree: wants the path/);
  t.throws(() => parseBenchArgs(['extra'], SUITES), /unexpected argument/);
  // Suites between two guests: the default of --nodes 2, refused without it, and the one-guest suites refused with it.
  const NODES = ['rdma-nodes', 'nvmeof'];
  t.same(parseBenchArgs([], SUITES, new Date(), NODES).suites, SUITES);
  const two = parseBenchArgs(['--nodes', '2'], SUITES, new Date(), NODES);
  t.same([two.nodes, two.suites], [2, NODES]);
  t.throws(() => parseBenchArgs(['--suites', 'nvmeof'], SUITES, new Date(), NODES), /measures between two nodes: add --nodes 2/);
  t.throws(() => parseBenchArgs(['--nodes', '2', '--suites', 'ioctl'], SUITES, new Date(), NODES), /runs in one guest/);
  t.throws(() => parseBenchArgs(['--nodes', '3'], SUITES, new Date(), NODES), /--nodes must be 1 or 2/);
  t.throws(() => parseBenchArgs(['--nodes', '2', '--where', 'host'], SUITES, new Date(), NODES), /not with --where host/);
});

t.test('p2pdma bench --help lists the options and the suites', async (t) => {
  const r = runTs(path.join(repoRoot, 'lib', 'cli.ts'), [], {}, ['bench', '--help']);
  t.equal(r.status, 0, r.stderr);
  for (const word of ['--suites', '--kernels', '--rounds', '--allow-busy', 'series:DIR', 'ioctl, dmabuf, nvme, mr-reg, p2p-paths, rdma']) t.match(r.stdout, word);
  const bad = runTs(path.join(repoRoot, 'lib', 'cli.ts'), [], {}, ['bench', '--rounds', 'x']);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--rounds wants a positive integer/);
  const series = runTs(path.join(repoRoot, 'lib', 'cli.ts'), [], {}, ['kernel', 'build', '--series', '/nonexistent/series']);
  t.equal(series.status, 2);
  t.match(series.stderr, '--series: /nonexistent/series is not a directory');
});

t.test('kernel specs', async (t) => {
  t.same(parseKernelSpec('patched'), { kind: 'ours', arg: 'patched' });
  t.same(parseKernelSpec('series:/p'), { kind: 'series', arg: '/p' });
  t.same(parseKernelSpec('/boot/vmlinuz'), { kind: 'image', arg: '/boot/vmlinuz' });
  t.throws(() => parseKernelSpec('series:'), /wants a directory/);
  const k = (label: string): BenchKernel => ({ label, spec: label, vmKernel: label, bzImage: label, version: '', configHash: null });
  t.same(uniqueLabels([k('a'), k('b'), k('a')]).map((x) => x.label), ['a', 'b', 'a#2']);
  // A bzImage's boot header points at its version string.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-kernel-'));
  const img = Buffer.alloc(0x1000);
  img.write('HdrS', 0x202, 'latin1');
  img.writeUInt16LE(0x300, 0x20e);
  img.write('6.12.99 (me@here) #1\0', 0x500, 'latin1');
  fs.writeFileSync(path.join(dir, 'bzImage'), img);
  t.equal(bzImageVersion(path.join(dir, 'bzImage')), '6.12.99 (me@here) #1');
  fs.writeFileSync(path.join(dir, 'other'), Buffer.alloc(0x1000));
  t.match(bzImageVersion(path.join(dir, 'other')), /not a bzImage/);
  fs.rmSync(dir, { recursive: true });
});

t.test('the schedule interleaves kernels round by round', async (t) => {
  t.same(schedule(['A', 'B'], 2).map((r) => `${r.kernel}${r.round}`), ['A0', 'B0', 'A1', 'B1']);
  t.same(schedule(['host'], 3).map((r) => r.round), [0, 1, 2]);
  t.throws(() => schedule([], 1));
  t.throws(() => schedule(['A'], 0));
});

const sample = (kernel: string, variant: string, value: number, anchor = false, metric = 'm'): Sample =>
  ({ kernel, round: 0, suite: 's', metric, unit: 'ns', variant, anchor, better: 'lower', value });

t.test('aggregation: median, min, max, ratios and the spread flag', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 3, 2]), 2.5);
  t.throws(() => median([]));
  const samples = [
    // A: addon 10..12 vs C 5..6 (clear); B: addon 20,21,22 vs C 5, 5, 30 (C spread 25 > difference).
    ...[10, 11, 12].map((v) => sample('A', 'addon', v)), ...[5, 6, 5].map((v) => sample('A', 'c', v, true)),
    ...[20, 21, 22].map((v) => sample('B', 'addon', v)), ...[5, 5, 30].map((v) => sample('B', 'c', v, true)),
  ];
  const sums = summarize(samples);
  const addonA = sums.find((s) => s.kernel === 'A' && s.variant === 'addon')!;
  t.same([addonA.n, addonA.median, addonA.min, addonA.max, addonA.unit, addonA.better], [3, 11, 10, 12, 'ns', 'lower']);
  const r = ratios(sums, ['A', 'B']);
  const vsC = r.filter((x) => x.kind === 'anchor');
  t.same(vsC.map((x) => [x.of, x.numerator, x.denominator, x.ratio, x.spreadExceedsDifference]), [
    ['A', 'addon', 'c', 11 / 5, false],
    ['B', 'addon', 'c', 21 / 5, true],
  ]);
  const ab = r.filter((x) => x.kind === 'kernels');
  t.same(ab.map((x) => [x.of, x.numerator, x.denominator, x.ratio, x.spreadExceedsDifference]), [
    ['addon', 'A', 'B', 11 / 21, false],
    ['c', 'A', 'B', 1, true],
  ]);
});

t.test('quiet check on a fake /proc', async (t) => {
  const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-proc-'));
  const pid = (n: number, comm: string) => {
    fs.mkdirSync(path.join(proc, String(n)));
    fs.writeFileSync(path.join(proc, String(n), 'comm'), `${comm}\n`);
  };
  fs.writeFileSync(path.join(proc, 'loadavg'), '0.10 0.20 0.30 1/100 999\n');
  pid(10, 'bash');
  pid(11, 'node');
  fs.mkdirSync(path.join(proc, 'self'));
  const quiet = checkQuiet({ procDir: proc, cpus: 4 });
  t.same([quiet.quiet, quiet.loadavg1, quiet.maxLoad, quiet.reasons], [true, 0.1, 1, []]);
  pid(12, 'qemu-system-x86');
  pid(13, 'cc1');
  pid(14, 'ld');
  fs.writeFileSync(path.join(proc, 'loadavg'), '3.50 0.20 0.30 1/100 999\n');
  const busy = checkQuiet({ procDir: proc, cpus: 4, when: 'before round 2' });
  t.equal(busy.quiet, false);
  t.same(busy.busyProcesses.map((p) => p.comm).sort(), ['cc1', 'ld', 'qemu-system-x86']);
  t.match(busy.reasons[0], /load average 3.5 > 1.00 \(4 CPUs\)/);
  t.match(busy.reasons[1], /3 other process\(es\)/);
  t.equal(busy.when, 'before round 2');
  // Our own guest does not count, nor (when told) the load it left behind.
  const own = checkQuiet({ procDir: proc, cpus: 4, ignoreLoad: true, ownPids: [12, 13, 14] });
  t.same([own.quiet, own.loadIgnored], [true, true]);
  fs.rmSync(proc, { recursive: true });
});

t.test('run files: samples, skips, failures, and garbage refused', async (t) => {
  const text = [
    JSON.stringify({ place: { kernel: '6.12' } }),
    JSON.stringify({ suite: 'ioctl', metric: 'FIONREAD CPU', unit: 'ns/call', variant: 'c', anchor: true, better: 'lower', value: 5 }),
    JSON.stringify({ suite: 'nvme', skipped: 'no CMB' }),
    JSON.stringify({ suite: 'rdma', failed: 'exit 1' }),
    '',
  ].join('\n');
  const f = parseRunFile(text, 'baseline', 1);
  t.same(f.place, { kernel: '6.12' });
  t.same(f.samples, [{ kernel: 'baseline', round: 1, suite: 'ioctl', metric: 'FIONREAD CPU', unit: 'ns/call', variant: 'c', anchor: true, better: 'lower', value: 5 }]);
  t.same(f.skipped, [{ suite: 'nvme', why: 'no CMB' }]);
  t.same(f.failed, [{ suite: 'rdma', why: 'exit 1' }]);
  t.throws(() => parseRunFile('{"hello":1}', 'k', 0), /not a bench record/);
});

function inputs(quiet: boolean): BenchInputs {
  const check = { quiet, at: 't', when: 'before', loadavg1: quiet ? 0 : 9, cpus: 2, maxLoad: 0.5, loadIgnored: false, busyProcesses: [], reasons: quiet ? [] : ['load average 9 > 0.50 (2 CPUs)'] };
  return {
    tool: 'p2pdma bench', busyAllowed: !quiet, interrupted: null, started: 's', finished: 'f', where: 'guest', suites: ['s', 'nvme'], rounds: 2,
    host: { cpu: 'cpu', cpus: 2, kernel: 'k', node: 'v20', accel: ['tcg'] },
    kernels: ['A', 'B'].map((label) => ({ label, spec: label, bzImage: `/${label}`, version: `6.12 ${label}`, configHash: 'abc' })),
    quiet: [check],
    runs: [{ round: 0, kernel: 'A', ok: true, accel: 'tcg', seconds: 1, skipped: [{ suite: 'nvme', why: 'no CMB' }], failed: [] }],
    samples: [sample('A', 'addon', 10), sample('A', 'c', 5, true), sample('B', 'addon', 20), sample('B', 'c', 5, true)],
  };
}

t.test('JSON and Markdown: shape, ratios, and busy marked everywhere', async (t) => {
  const clean = buildResults(inputs(true));
  t.equal(clean.clean, true);
  t.same(Object.keys(clean).sort(), ['busyAllowed', 'clean', 'finished', 'host', 'interrupted', 'kernels', 'quiet', 'ratios', 'rounds', 'runs', 'samples', 'started', 'suites', 'summaries', 'tool', 'where']);
  t.same(clean.kernels[0], { label: 'A', spec: 'A', bzImage: '/A', version: '6.12 A', configHash: 'abc' });
  const md = markdown(clean);
  t.match(md, /^# p2pdma bench\n/);
  t.match(md, '| metric | variant | unit | A: median [min, max] | B: median [min, max] | A/B | vs anchor |');
  t.match(md, '| m | addon | ns, lower is better | 10.0 [10.0, 10.0] | 20.0 [20.0, 20.0] | 0.50x | A: 2.00x of c; B: 4.00x of c |');
  t.match(md, 'Skipped: no CMB.');
  t.match(md, '- **A**: 6.12 A, config abc');
  const busy = buildResults(inputs(false));
  t.equal(busy.clean, false);
  t.match(markdown(busy), /^# p2pdma bench: BUSY MACHINE, NOT CLEAN FIGURES\n/);
  t.match(markdown(busy), /load average 9 > 0.50/);
  t.match(JSON.stringify(chartSpec('s', busy.summaries, true)), 'BUSY MACHINE');
  // A profiled run on a quiet machine is not clean either, and says why.
  const profiled = buildResults({ ...inputs(true), profiled: true });
  t.equal(profiled.clean, false);
  t.match(markdown(profiled), /^# p2pdma bench: PROFILED RUN, NOT CLEAN FIGURES\n/);
  t.notMatch(markdown(profiled), 'BUSY');
  t.match(JSON.stringify(chartSpec('s', profiled.summaries, 'PROFILED RUN: not clean figures')), 'PROFILED RUN');
});

t.test('a chart per suite: Vega-Lite rendered to SVG with the metric names', async (t) => {
  const r = buildResults(inputs(true));
  const svg = await renderSvg(chartSpec('s', [...r.summaries, { ...r.summaries[0], metric: 'copy 64 KiB x4' }], false));
  t.match(svg, /^<svg /);
  t.match(svg, 'p2pdma bench: s');
  t.match(svg, 'm (ns, lower is better)');
  t.match(svg, 'copy 64 KiB x4');
  t.match(svg, 'addon');
});
