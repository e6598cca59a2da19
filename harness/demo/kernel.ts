/**
 * The demo's first step: the guest kernel, from the cache or built, with
 * scripts/kernel/build.sh's progress passed through to stderr as it comes
 * (a cold build takes many minutes: silence would look like a hang).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KERNEL_BUILD_SCRIPT } from '../vm/run';
import { isKernelName, kernelBuildArgs } from '../vm/kernel-names';
import type { StepResult } from './report';

export interface ResolvedKernel {
  /** The bzImage to boot, or undefined when the step failed. */
  image: string | undefined;
  step: StepResult;
}

export async function resolveDemoKernel(kernel: string, debug: boolean, progress: NodeJS.WritableStream): Promise<ResolvedKernel> {
  const started = process.hrtime.bigint();
  const title = `kernel ${isKernelName(kernel) ? `${kernel}${debug ? ' (debug)' : ''}` : path.basename(kernel)}`;
  const done = (status: StepResult['status'], detail: string, image?: string): ResolvedKernel => ({
    image,
    step: { name: 'kernel', title, status, seconds: Number(process.hrtime.bigint() - started) / 1e9, detail },
  });
  if (!isKernelName(kernel)) {
    const image = path.resolve(kernel);
    return fs.existsSync(image) ? done('ok', `given: ${image}`, image) : done('failed', `${image}: no such file`);
  }
  const args = ['--print-path', ...kernelBuildArgs(kernel, debug)];
  let stdout = '';
  let cached = false;
  const status = await new Promise<number | null>((resolve) => {
    const child = spawn(KERNEL_BUILD_SCRIPT, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      // build.sh says "cached: DIR" when it had nothing to build.
      if (/\] cached: /.test(d)) cached = true;
      progress.write(d);
    });
    child.on('error', (e) => {
      progress.write(`${e.message}\n`);
      resolve(null);
    });
    child.on('close', resolve);
  });
  if (status !== 0) return done('failed', `${path.relative(process.cwd(), KERNEL_BUILD_SCRIPT)} ${args.join(' ')} exited with ${status}`);
  const dir = stdout.trim();
  return done('ok', `${cached ? 'cached' : 'built'}: ${dir}`, path.join(dir, 'bzImage'));
}
