/**
 * `p2pdma demo`: scripts/demo.js's steps in the test guest (kernel resolved,
 * guest booted) or on this host, gathered from its JSON lines into one
 * report: the table on stdout, everything else on stderr.
 */
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { kernelLabel } from '../vm/kernel-names';
import { PROJECT_DIR, runVm } from '../vm/run';
import type { DemoOptions } from './args';
import { resolveDemoKernel } from './kernel';
import { DemoReport, exitStatus, formatReport, parseStepLine, StepResult } from './report';

export const DEMO_SCRIPT = path.join(PROJECT_DIR, 'scripts', 'demo.js');

export interface DemoIo {
  stdout: NodeJS.WritableStream;
  /** Progress: the kernel build, the guest's console, the steps' prose. */
  stderr: NodeJS.WritableStream;
}

/** A stream that hands each step line to onStep and passes every other line to `rest`. */
function stepSplitter(rest: NodeJS.WritableStream, onStep: (s: StepResult) => void): Writable {
  let partial = '';
  const take = (line: string) => {
    const step = parseStepLine(line);
    if (step) onStep(step);
    else rest.write(`${line}\n`);
  };
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop()!;
      for (const l of lines) take(l.replace(/\r$/, ''));
      cb();
    },
    final(cb) {
      if (partial) take(partial);
      cb();
    },
  });
}

const since = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

async function guestSteps(o: DemoOptions, io: DemoIo): Promise<{ steps: StepResult[]; kernel: string }> {
  const kernel = await resolveDemoKernel(o.kernel, o.debug, io.stderr);
  const steps = [kernel.step];
  if (!kernel.image) return { steps, kernel: o.kernel };
  // The boot row runs from QEMU's start to the first step the guest reports.
  let bootStarted: bigint | undefined;
  let booting = '';
  const boot: StepResult = { name: 'boot', title: 'boot the test guest', status: 'ok', seconds: 0, detail: '' };
  steps.push(boot);
  const guestSteps: StepResult[] = [];
  const output = stepSplitter(io.stderr, (s) => {
    if (guestSteps.length === 0 && bootStarted !== undefined) boot.seconds = since(bootStarted);
    guestSteps.push(s);
  });
  const label = kernelLabel(o.kernel);
  const result = await runVm({
    kernel: kernel.image,
    debug: o.debug,
    topology: o.topology,
    iommu: o.iommu,
    accel: o.accel,
    timeoutSec: o.timeoutSec,
    // The guest shares the host's root: the same node binary runs there.
    command: [process.execPath, DEMO_SCRIPT],
    cwd: PROJECT_DIR,
    // runVm is handed an image path: tell the steps which kernel it is.
    env: { P2PDMA_KERNEL: label },
    output,
    log: (line) => {
      if (line.startsWith('booting ')) {
        bootStarted = process.hrtime.bigint();
        booting = line.slice('booting '.length);
      }
      io.stderr.write(`[vm] ${line}\n`);
    },
  });
  await new Promise<void>((resolve) => output.end(resolve));
  boot.detail = booting;
  steps.push(...guestSteps);
  if (guestSteps.length === 0) {
    Object.assign(boot, { status: 'failed', seconds: bootStarted ? since(bootStarted) : 0, detail: result.reason ?? 'the guest reported no step' });
  } else if (!result.ok && (result.exitCode !== 1 || !guestSteps.some((s) => s.status === 'failed') || result.splats.length)) {
    // Beyond the steps' own failures (exit status 1): a crash, a timeout, a kernel splat.
    steps.push({ name: 'guest', title: 'guest run', status: 'failed', seconds: result.seconds, detail: result.splats.length ? `kernel reported: ${result.splats[0].text}` : result.reason ?? '' });
  }
  return { steps, kernel: o.kernel };
}

async function hostSteps(o: DemoOptions, io: DemoIo, script: string): Promise<StepResult[]> {
  const steps: StepResult[] = [];
  const out = stepSplitter(io.stderr, (s) => steps.push(s));
  const args = [script, '--host', ...(o.writeNvme ? ['--write-nvme'] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(out);
  child.stderr.pipe(io.stderr, { end: false });
  const status = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  await new Promise<void>((resolve) => (out.writableFinished ? resolve() : out.on('finish', resolve)));
  if (status !== 0 && !steps.some((s) => s.status === 'failed')) {
    steps.push({ name: 'runner', title: 'scripts/demo.js', status: 'failed', seconds: 0, detail: `exited with status ${status}` });
  }
  return steps;
}

/**
 * Runs the demo; resolves to the exit status (report.ts's exitStatus).
 * `script` is the step runner for --host (the tests pass synthetic ones).
 */
export async function runDemo(o: DemoOptions, io: DemoIo = { stdout: process.stdout, stderr: process.stderr }, script = DEMO_SCRIPT): Promise<number> {
  const t0 = process.hrtime.bigint();
  const report: DemoReport = o.host
    ? { mode: 'host', kernel: os.release(), steps: await hostSteps(o, io, script), seconds: 0 }
    : { mode: 'guest', ...(await guestSteps(o, io)), seconds: 0 };
  report.seconds = since(t0);
  io.stdout.write(o.json ? `${JSON.stringify({ ...report, status: exitStatus(report.steps) }, null, 2)}\n` : formatReport(report));
  return exitStatus(report.steps);
}
