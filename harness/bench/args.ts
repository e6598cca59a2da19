/** The command line of `p2pdma bench`, checked before anything runs. */
import { parseArgs } from 'node:util';
import { DEFAULT_BASELINE } from '../vm/kernel-names';
import { parseKernelSpec } from './kernels';

export const BENCH_USAGE = `usage: p2pdma bench [--suites a,b] [--where host|guest] [--kernels K,K...] [--rounds N]
                    [--out DIR] [--allow-busy] [--timeout SECONDS] [--profile] [--nodes 1|2]
  --suites LIST     ${'{SUITES}'} (default: all; a suite whose
                    device is missing where it runs is recorded as skipped)
  --where host|guest  on this machine (its own kernel and devices: real hardware), or
                    in the test guest (default), booted once per kernel and round
  --kernels LIST    guest kernels, compared A/B (default: ${DEFAULT_BASELINE}): baseline-7.3, patched-7.3,
                    baseline, patched (6.12),
                    series:DIR (patches on the same source, p2pdma kernel build --series DIR),
                    tree:PATH (a kernel source tree, built with our config fragments and
                    cached by its HEAD, uncommitted diff and config) or the path of a bzImage
  --rounds N        runs per kernel, interleaved A B A B (default: 3)
  --out DIR         results.json, results.md, <suite>.svg/.png (default: bench-results/<time>)
  --allow-busy      run on a busy machine anyway; every output is marked busy
  --timeout SECONDS per guest boot (default: 1800)
  --max-load X      1-minute load per CPU above which the machine is busy (default: 0.25)
  --profile         run the suites under node --cpu-prof (and perf record where the kernel
                    has perf events): profile.md and profiles/ in --out; the figures of a
                    profiled run are not clean (the profilers cost time)
  --nodes 1|2       2: two guests on one wire (vm run --nodes 2), for the suites that
                    measure between nodes: ${'{NODE_SUITES}'} (the default then)
`;

export interface BenchOptions {
  suites: string[];
  where: 'host' | 'guest';
  kernels: string[];
  rounds: number;
  out: string;
  allowBusy: boolean;
  timeoutSec: number;
  loadPerCpu: number;
  profile: boolean;
  /** 2: each run boots two guests on one wire (vm run --nodes 2) and runs the node suites on both. */
  nodes: 1 | 2;
}

function positive(name: string, value: string, integer: boolean): number {
  const n = Number(value);
  if (!(n > 0) || (integer && !Number.isInteger(n))) throw new Error(`--${name} wants a positive ${integer ? 'integer' : 'number'}, got '${value}'`);
  return n;
}

function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Throws with a message for the user on bad arguments. */
export function parseBenchArgs(argv: string[], knownSuites: readonly string[], now = new Date(), nodeSuites: readonly string[] = []): BenchOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      suites: { type: 'string' },
      where: { type: 'string', default: 'guest' },
      kernels: { type: 'string' },
      rounds: { type: 'string', default: '3' },
      out: { type: 'string' },
      'allow-busy': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '1800' },
      'max-load': { type: 'string', default: '0.25' },
      profile: { type: 'boolean', default: false },
      nodes: { type: 'string', default: '1' },
    },
  });
  if (positionals.length) throw new Error(`unexpected argument '${positionals[0]}'`);
  if (values.nodes !== '1' && values.nodes !== '2') throw new Error(`--nodes must be 1 or 2, got '${values.nodes}'`);
  const nodes = values.nodes === '2' ? 2 : 1;
  const all = [...knownSuites, ...nodeSuites.filter((s) => !knownSuites.includes(s))];
  const suites = values.suites === undefined ? all.filter((s) => nodeSuites.includes(s) === (nodes === 2)) : list(values.suites);
  if (!suites.length) throw new Error('--suites names no suite');
  for (const s of suites) if (!all.includes(s)) throw new Error(`unknown suite '${s}' (suites: ${all.join(', ')})`);
  for (const s of suites) {
    if (nodes === 2 && !nodeSuites.includes(s)) throw new Error(`suite '${s}' runs in one guest: --nodes 2 runs ${nodeSuites.join(', ')}`);
    if (nodes === 1 && nodeSuites.includes(s)) throw new Error(`suite '${s}' measures between two nodes: add --nodes 2`);
  }
  if (values.where !== 'host' && values.where !== 'guest') throw new Error('--where must be host or guest');
  if (nodes === 2 && values.where === 'host') throw new Error('--nodes 2 boots two guests: not with --where host');
  if (values.where === 'host' && values.kernels !== undefined) throw new Error('--kernels is for --where guest: the host runs its own kernel');
  const kernels = values.where === 'host' ? ['host'] : list(values.kernels ?? DEFAULT_BASELINE);
  if (!kernels.length) throw new Error('--kernels names no kernel');
  if (values.where === 'guest') for (const k of kernels) parseKernelSpec(k);
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return {
    suites,
    where: values.where,
    kernels,
    rounds: positive('rounds', values.rounds!, true),
    out: values.out ?? `bench-results/${stamp}`,
    allowBusy: values['allow-busy']!,
    timeoutSec: positive('timeout', values.timeout!, true),
    loadPerCpu: positive('max-load', values['max-load']!, false),
    profile: values.profile!,
    nodes,
  };
}
