// `p2pdma bench --profile`'s reduction: .cpuprofile files and perf's flat
// report to top-N self-time tables (harness/bench/profile.ts), on a
// synthetic profile, a real one from this Node, and a report in perf's
// own format.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cpuProfileMarkdown, frameKind, parsePerfReport, perfKind, perfMarkdown, reduceCpuProfiles, suiteProfileMarkdown, type CpuProfile } from '../../harness/bench/profile';

const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber, scriptId: '0', columnNumber: 0 });

// root -> hot (JS) -> ioctlView (native); GC; idle; program. Samples every
// 100 us, the last one running to endTime.
const synthetic: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)') },
    { id: 2, callFrame: frame('hot', 'file:///repo/bench/x.js', 9) },
    { id: 3, callFrame: frame('ioctlView') },
    { id: 4, callFrame: frame('(garbage collector)') },
    { id: 5, callFrame: frame('(idle)') },
    { id: 6, callFrame: frame('(program)') },
    { id: 7, callFrame: frame('spawnSync', 'node:internal/child_process', 1107) },
  ],
  startTime: 1000,
  endTime: 2000,
  samples: [2, 3, 3, 3, 4, 5, 5, 6, 7, 2],
  timeDeltas: [0, 100, 100, 100, 100, 100, 100, 100, 100, 100],
};

t.test('self time per function and kind from a .cpuprofile', async (t) => {
  t.equal(frameKind(frame('(garbage collector)')), 'GC');
  t.equal(frameKind(frame('x', 'node:fs')), 'Node JS');
  t.equal(frameKind(frame('x', 'file:///a.js')), 'JS');
  t.equal(frameKind(frame('isDataView')), 'native');
  const s = reduceCpuProfiles([synthetic], '/repo');
  t.equal(s.samples, 10);
  // 9 gaps of 100 us, and the last sample's 100 us to endTime.
  t.equal(Math.round(s.totalMs * 1000), 1000);
  t.same(s.rows.slice(0, 2).map((r) => [r.name, r.kind, Math.round(r.selfMs * 1000)]), [
    ['ioctlView', 'native', 300],
    ['hot', 'JS', 200],
  ]);
  t.equal(s.rows.find((r) => r.name === 'hot')!.where, 'bench/x.js:10');
  t.same(Object.fromEntries(Object.entries(s.byKind).map(([k, v]) => [k, Math.round(v * 1000)])), { JS: 200, 'Node JS': 100, native: 300, GC: 100, '(program)': 100, '(idle)': 200 });
  const md = cpuProfileMarkdown(s, 3);
  t.match(md, 'node --cpu-prof: 1 profile(s) (a process or thread each), 10 samples');
  // Shares are of busy time (800 us): ioctlView 300/800.
  t.match(md, '| 0.3 | 37.5 % | native | ioctlView |  |');
  t.match(md, 'By kind, share of busy time: JS 25.0 %, Node JS 12.5 %, native 37.5 %, GC 12.5 %, (program) 12.5 %.');
  t.equal(md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| self')).length, 3, 'top 3 rows, idle left out');
  t.throws(() => reduceCpuProfiles([{ ...synthetic, samples: [99], timeDeltas: [0] }]), /unknown node 99/);
});

t.test('a real --cpu-prof profile of this Node reduces, its busy function on top', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-cpuprof-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const script = path.join(dir, 'spin.js');
  fs.writeFileSync(script, 'function spinHere() { let x = 0; const end = Date.now() + 300; while (Date.now() < end) x += Math.sqrt(x + 1); return x; }\nspinHere();\n');
  // Without tap's NODE_OPTIONS, whose hooks would profile a process of their own.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const r = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, script], { encoding: 'utf8', env });
  t.equal(r.status, 0, r.stderr);
  const md = suiteProfileMarkdown(dir, dir);
  t.ok(md, 'a profile was found');
  t.match(md!, /\| JS \| spinHere \| spin\.js:1 \|/);
  // One profile per thread: Node may run a loader thread of its own beside the main one.
  t.match(md!, /node --cpu-prof: \d profile\(s\)/);
  t.equal(suiteProfileMarkdown(path.join(dir, 'none'), dir), null);
});

// `perf report --stdio -t '|' --sort comm,dso,sym`, as bench/suites.js saves it.
const PERF = `# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 3K of event 'cpu-clock'
#
# Overhead|Command|Shared Object|Symbol
 30.00% |node   |[kernel.kallsyms]   |[k] do_syscall_64
 20.00% |node   |node                |[.] v8impl::(anonymous namespace)::FunctionCallbackWrapper::Invoke
 15.00% |node   |/tmp/perf-167.map   |[.] Builtin:CallApiCallback
 10.00% |node   |p2pdma.node         |[.] p2pdma::(anonymous namespace)::IoctlView
  8.00% |ioctl-loop|libc.so.6        |[.] __GI___ioctl
  2.00% |node   |libstdc++.so.6.0.33 |[.] operator new

#
# (Tip: ...)
`;

t.test("perf's flat report: rows, kinds and the table", async (t) => {
  const rows = parsePerfReport(PERF);
  t.equal(rows.length, 6);
  t.same(rows[1], { share: 0.2, comm: 'node', dso: 'node', symbol: '[.] v8impl::(anonymous namespace)::FunctionCallbackWrapper::Invoke', kind: 'node/V8' });
  t.same(rows.map((r) => r.kind), ['kernel', 'node/V8', 'JIT (JS, V8 stubs)', 'addon', 'libc', 'other']);
  t.equal(perfKind('/usr/lib/x86_64-linux-gnu/libc.so.6', '[.] memcpy'), 'libc');
  const md = perfMarkdown(rows, 2);
  t.match(md, 'by kind kernel 30.0 %, node/V8 20.0 %, JIT (JS, V8 stubs) 15.0 %, addon 10.0 %, libc 8.0 %, other 2.0 %.');
  t.match(md, '| 30.0 % | node | [kernel.kallsyms] | [k] do_syscall_64 | kernel |');
  t.notMatch(md, 'Builtin:CallApiCallback', 'top 2 only');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-perf-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'perf-unavailable.txt'), 'this kernel has no perf events (CONFIG_PERF_EVENTS is off)\n');
  t.equal(suiteProfileMarkdown(dir, dir), 'perf: not run (this kernel has no perf events (CONFIG_PERF_EVENTS is off)).\n');
  fs.writeFileSync(path.join(dir, 'perf.txt'), PERF);
  t.match(suiteProfileMarkdown(dir, dir)!, 'perf record -e cpu-clock');
});

t.test('bench/suites.js with P2PDMA_BENCH_PROFILE: a .cpuprofile per node process, and perf.txt or why not', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-suite-prof-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, P2PDMA_BENCH_DIR: path.join(dir, 'bin'), P2PDMA_BENCH_PROFILE: path.join(dir, 'p'), IOCTL_ITERATIONS: '2000', IOCTL_ROUNDS: '1' };
  delete env.NODE_OPTIONS;
  const root = path.resolve(__dirname, '..', '..');
  const r = spawnSync(process.execPath, [path.join(root, 'bench', 'suites.js'), '--results', path.join(dir, 'r.jsonl'), '--suites', 'ioctl'], { encoding: 'utf8', env, cwd: dir });
  t.equal(r.status, 0, r.stderr);
  const files = fs.readdirSync(path.join(dir, 'p', 'ioctl'));
  t.ok(files.some((f) => f.endsWith('.cpuprofile')), `a .cpuprofile in ${files.join(', ')}`);
  t.ok(files.includes('perf.txt') || files.includes('perf-unavailable.txt'), 'perf ran, or says why not');
  const md = suiteProfileMarkdown(path.join(dir, 'p', 'ioctl'), root)!;
  t.match(md, /\| JS \| \S+ \| bench\/ioctl\.js:\d+ \|/, 'the suite script is named, relative to the repository');
  t.notOk(fs.readdirSync(root).some((f) => /^isolate-.*-v8\.log$/.test(f)), 'no V8 log left in the tree');
});
