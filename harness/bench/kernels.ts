/**
 * The kernels `p2pdma bench --kernels` names, resolved to bzImages:
 *   baseline, patched   ours, built and cached by scripts/kernel/build.sh
 *   (and -7.3 of each)
 *   series:DIR          a directory of patches on the same source
 *                       (`p2pdma kernel build --series DIR`), cached alike
 *   tree:PATH           a kernel source tree (git), built with our config
 *                       fragments and cached by its state (./tree.ts)
 *   PATH                a bzImage of the caller's own
 * and what the results record about each (version, config hash).
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KERNEL_BUILD_SCRIPT, resolveKernel } from '../vm/run';
import { isKernelName } from '../vm/kernel-names';
import { buildTree } from './tree';

export interface BenchKernel {
  /** The name in tables and charts. */
  label: string;
  /** As given on the command line. */
  spec: string;
  /** What `vm run --kernel` is given: a name of ours, or a bzImage path. */
  vmKernel: string;
  bzImage: string;
  version: string;
  /** sha256 (16 hex digits) of the .config beside the bzImage, or null when there is none. */
  configHash: string | null;
}

/** The kind of each spec, before anything is built (argument checking). */
export function parseKernelSpec(spec: string): { kind: 'ours' | 'series' | 'tree' | 'image'; arg: string } {
  if (isKernelName(spec)) return { kind: 'ours', arg: spec };
  if (spec.startsWith('series:')) {
    const dir = spec.slice('series:'.length);
    if (!dir) throw new Error(`'${spec}': series: wants a directory of patches`);
    return { kind: 'series', arg: dir };
  }
  if (spec.startsWith('tree:')) {
    const dir = spec.slice('tree:'.length);
    if (!dir) throw new Error(`'${spec}': tree: wants the path of a kernel source tree`);
    return { kind: 'tree', arg: dir };
  }
  return { kind: 'image', arg: spec };
}

/** Builds (or finds cached) the kernel of a series directory; its build directory. */
export function buildSeries(dir: string, log: (l: string) => void): string {
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`series: ${dir} is not a directory`);
  log(`kernel: series ${dir}`);
  const r = spawnSync(KERNEL_BUILD_SCRIPT, ['--print-path', '--series', dir], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the kernel of series ${dir} failed`);
  return r.stdout.trim();
}

/** The version string a bzImage carries (the x86 boot header's kernel_version field). */
export function bzImageVersion(file: string): string {
  const head = Buffer.alloc(0x10000);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (head.toString('latin1', 0x202, 0x206) !== 'HdrS') return 'unknown (not a bzImage)';
  const at = head.readUInt16LE(0x20e) + 0x200;
  const end = head.indexOf(0, at);
  return head.toString('latin1', at, end > at ? end : at + 128).trim();
}

function configHash(bzImage: string): string | null {
  const config = path.join(path.dirname(bzImage), '.config');
  if (!fs.existsSync(config)) return null;
  return crypto.createHash('sha256').update(fs.readFileSync(config)).digest('hex').slice(0, 16);
}

export async function resolveBenchKernel(spec: string, log: (l: string) => void): Promise<BenchKernel> {
  const { kind, arg } = parseKernelSpec(spec);
  let bzImage: string;
  let label: string;
  if (kind === 'ours') {
    bzImage = resolveKernel(arg, false, log);
    label = arg;
  } else if (kind === 'tree') {
    const dir = await buildTree(arg, { log });
    bzImage = path.join(dir, 'bzImage');
    label = `tree:${path.basename(path.resolve(arg))}`;
  } else if (kind === 'series') {
    bzImage = path.join(buildSeries(arg, log), 'bzImage');
    label = `series:${path.basename(path.resolve(arg))}`;
  } else {
    if (!fs.existsSync(arg)) throw new Error(`kernel image not found: ${arg}`);
    bzImage = path.resolve(arg);
    label = path.basename(arg) === 'bzImage' ? path.basename(path.dirname(bzImage)) : path.basename(arg);
  }
  return { label, spec, vmKernel: kind === 'ours' ? arg : bzImage, bzImage, version: bzImageVersion(bzImage), configHash: configHash(bzImage) };
}

/** Labels made unique (two bzImages both named bzImage in dirs of the same name). */
export function uniqueLabels(kernels: BenchKernel[]): BenchKernel[] {
  const seen = new Map<string, number>();
  return kernels.map((k) => {
    const n = (seen.get(k.label) ?? 0) + 1;
    seen.set(k.label, n);
    return n === 1 ? k : { ...k, label: `${k.label}#${n}` };
  });
}
