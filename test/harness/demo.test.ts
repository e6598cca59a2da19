// `p2pdma demo` without a guest: its arguments and --help, the table and the
// exit status from synthetic step results (a fake step runner), and --host on
// this machine, whose missing devices skip steps with a reason.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { parseDemoArgs } from '../../harness/demo/args';
import { runDemo } from '../../harness/demo/demo';
import { exitStatus, formatReport, parseStepLine, type StepResult } from '../../harness/demo/report';
import { repoRoot, runTs } from '../helpers';

const CLI = path.join(repoRoot, 'lib', 'cli.ts');
const step = (name: string, status: StepResult['status'], detail = ''): StepResult => ({ name, title: `step ${name}`, status, seconds: 0.5, detail });

t.test('arguments: defaults, guest options, --host and mistakes', async (t) => {
  const o = parseDemoArgs([]);
  t.same(o, { host: false, json: false, writeNvme: false, kernel: 'patched-7.3', debug: false, topology: ['switch'], iommu: false, accel: 'auto', timeoutSec: undefined });
  const g = parseDemoArgs(['--kernel', 'baseline', '--topology', 'switch,none', '--debug', '--timeout', '600', '--json']);
  t.same([g.kernel, g.topology, g.debug, g.timeoutSec, g.json], ['baseline', ['switch', 'none'], true, 600, true]);
  t.same(parseDemoArgs(['--host', '--write-nvme']), { ...o, host: true, writeNvme: true });
  t.throws(() => parseDemoArgs(['--host', '--kernel', 'patched']), /--kernel boots a guest: it does not go with --host/);
  t.throws(() => parseDemoArgs(['--host', '--topology', 'none']), /--topology boots a guest/);
  t.throws(() => parseDemoArgs(['--write-nvme']), /--write-nvme goes with --host/);
  t.throws(() => parseDemoArgs(['--topology', 'ring']), /unknown topology 'ring'/);
  t.throws(() => parseDemoArgs(['--timeout', '0']), /--timeout wants a positive integer/);
  t.throws(() => parseDemoArgs(['--accel', 'hvf']), /--accel must be auto, tcg or kvm/);
  t.throws(() => parseDemoArgs(['now']), /unexpected argument 'now'/);
  t.throws(() => parseDemoArgs(['--frobnicate']), /Unknown option '--frobnicate'/);
});

t.test('p2pdma demo --help, and bad arguments exit 2', async (t) => {
  const r = runTs(CLI, [], {}, ['demo', '--help']);
  t.equal(r.status, 0, r.stderr);
  for (const word of ['--kernel NAME|PATH', 'patched-7.3 (the default', '--host', '--write-nvme', '--json', 'Exit status: 0 when no step failed']) t.match(r.stdout, word);
  t.match(runTs(CLI, [], {}, ['--help']).stdout, /p2pdma demo \[--kernel NAME\|PATH\] \[--host\] \[--json\]/);
  const bad = runTs(CLI, [], {}, ['demo', '--host', '--debug']);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /^p2pdma: --debug boots a guest/);
});

t.test('step lines: parsed from the runner or a guest console, anything else left alone', async (t) => {
  const line = JSON.stringify({ demo: 'step', name: 'bounce', title: 'bounce', status: 'ok', seconds: 0.2, detail: '50 MB/s' });
  t.same(parseStepLine(line), { name: 'bounce', title: 'bounce', status: 'ok', seconds: 0.2, detail: '50 MB/s' });
  t.same(parseStepLine(`[   3.1] rxe: x ${line}\r`)?.name, 'bounce', 'a console prefix and CR');
  t.equal(parseStepLine('kernel 6.12.0'), undefined);
  t.equal(parseStepLine('{"demo":"step","name":"x","status":"great","seconds":1}'), undefined, 'an unknown status');
  t.equal(parseStepLine('{"demo":"step", broken'), undefined);
});

t.test('table and exit status from synthetic results', async (t) => {
  const steps = [step('a', 'ok', '91.5 MB/s, pattern checked'), step('b', 'expected', 'refused with EFAULT'), step('c', 'skipped', 'no RDMA device')];
  t.equal(exitStatus(steps), 0, 'skips and expected refusals do not fail');
  t.equal(exitStatus([...steps, step('d', 'failed', 'CMB B does not hold the pattern')]), 1);
  t.equal(exitStatus([]), 0);
  const table = formatReport({ mode: 'guest', kernel: 'baseline', steps: [...steps, step('d', 'failed', 'boom')], seconds: 31.25 });
  t.equal(table, [
    'p2pdma demo on the test guest, kernel baseline',
    'step    result                time  detail',
    '------  ------------------  ------  ------',
    'step a  ok                  0.50 s  91.5 MB/s, pattern checked',
    'step b  refused (expected)  0.50 s  refused with EFAULT',
    'step c  skipped             0.50 s  no RDMA device',
    'step d  FAILED              0.50 s  boom',
    '1 ok, 1 refused as expected, 1 failed, 1 skipped; 31.3 s in all',
    '',
  ].join('\n'));
});

/** runDemo --host with a fake step runner: what it prints and returns. */
async function hostRun(t: Tap, runner: string, json = false): Promise<{ status: number; stdout: string; stderr: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-demo-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const script = path.join(dir, 'steps.js');
  fs.writeFileSync(script, runner);
  const out = { stdout: new PassThrough(), stderr: new PassThrough() };
  const text = { stdout: '', stderr: '' };
  out.stdout.on('data', (d) => (text.stdout += d));
  out.stderr.on('data', (d) => (text.stderr += d));
  const status = await runDemo({ ...parseDemoArgs(['--host']), json }, out, script);
  return { status, ...text };
}
type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

const emit = (s: object) => `process.stdout.write(JSON.stringify(${JSON.stringify({ demo: 'step', title: 'a step', seconds: 0.1, detail: '', ...s })}) + '\\n');`;

t.test('a failed step fails the run; prose goes to stderr', async (t) => {
  const r = await hostRun(t, `console.error('some prose'); console.log('not a step'); ${emit({ name: 'a', status: 'ok' })} ${emit({ name: 'b', status: 'failed', detail: 'CMB B does not hold the pattern' })} process.exitCode = 1;`);
  t.equal(r.status, 1);
  t.match(r.stdout, /a step +FAILED +0\.10 s +CMB B does not hold the pattern/);
  t.match(r.stdout, /1 ok, 0 refused as expected, 1 failed, 0 skipped/);
  t.match(r.stderr, /some prose/);
  t.match(r.stderr, /not a step/);
});

t.test('a runner that dies without a failed step is a failure too', async (t) => {
  const r = await hostRun(t, `${emit({ name: 'a', status: 'ok' })} process.exit(3);`, true);
  t.equal(r.status, 1);
  const report = JSON.parse(r.stdout);
  t.same(report.steps.map((s: StepResult) => [s.name, s.status]), [['a', 'ok'], ['runner', 'failed']]);
  t.equal(report.steps[1].detail, 'exited with status 3');
  t.equal(report.status, 1);
});

t.test('--host on this machine: every step runs or says why it is skipped', async (t) => {
  const r = runTs(CLI, [], {}, ['demo', '--host', '--json']);
  const report = JSON.parse(r.stdout) as { mode: string; steps: StepResult[]; status: number };
  t.equal(report.mode, 'host');
  t.same(report.steps.map((s) => s.name), ['providers', 'nvme-write', 'p2p-read', 'bounce', 'rdma-mr', 'rdma-write', 'rdma-read']);
  for (const s of report.steps) {
    t.not(s.status, 'failed', `${s.name}: ${s.detail}`);
    if (s.status === 'skipped') t.ok(s.detail.length > 0, `${s.name} says why it is skipped: ${s.detail}`);
  }
  // Without --write-nvme a host's namespace is never written.
  const nvme = report.steps.find((s) => s.name === 'nvme-write')!;
  t.equal(nvme.status, 'skipped');
  t.equal(r.status, 0, r.stderr);
  t.equal(report.status, 0);
});
