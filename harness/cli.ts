/**
 * The QEMU harness's commands of the p2pdma command line (lib/cli.ts loads
 * this file from a checkout of the repository; it is not in the npm package):
 *
 *   p2pdma vm run [options] -- <command...>   run a command in the test guest
 *   p2pdma vm shell [options]                 interactive shell in the test guest
 *   p2pdma kernel build [--debug] NAME|--series DIR
 *   p2pdma bench [options]                    benchmark suites, A/B kernels
 *   p2pdma demo [options]                     the P2P flow, checked and timed (guest or --host)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { fail, int } from '../lib/core/cli-args';
import { parseTopologies, Topology } from './vm/qemu-args';
import { parsePvrdmaBackend } from './vm/pvrdma';
import * as path from 'node:path';
import { KERNEL_BUILD_SCRIPT, PROJECT_DIR, runVm } from './vm/run';
import { DEFAULT_BASELINE, isKernelName, kernelBuildArgs, KernelName } from './vm/kernel-names';
import { parseNodeEnv } from './vm/nodes';
import { runNodes } from './vm/run-nodes';
import { BENCH_USAGE as BENCH_USAGE_TEMPLATE, parseBenchArgs } from './bench/args';
import { DEMO_USAGE, parseDemoArgs } from './demo/args';

/** The usage lines of these commands, as lib/cli.ts's USAGE lists them. */
export const COMMANDS = `  p2pdma vm run [options] -- <command...>
  p2pdma vm shell [options]
  p2pdma kernel build [--debug] patched-7.3|baseline-7.3|patched|baseline|--series DIR
  p2pdma bench [options]
  p2pdma demo [--kernel NAME|PATH] [--host] [--json]
`;

/** The suites bench/suites.js runs (plain JavaScript: it also runs in the guest). */
function benchSuites(): string[] {
  return (require(path.join(PROJECT_DIR, 'bench', 'suites.js')) as { DEFAULT_SUITES: string[] }).DEFAULT_SUITES;
}

/** The suites that measure between two guests (--nodes 2). */
function benchNodeSuites(): string[] {
  return (require(path.join(PROJECT_DIR, 'bench', 'suites.js')) as { NODE_SUITES: string[] }).NODE_SUITES;
}

export const BENCH_USAGE = BENCH_USAGE_TEMPLATE.replace('{SUITES}', benchSuites().join(', ')).replace('{NODE_SUITES}', benchNodeSuites().join(', '));

/** `p2pdma bench`: see BENCH_USAGE. */
export async function bench(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseBenchArgs(argv, benchSuites(), new Date(), benchNodeSuites());
  } catch (e) {
    fail(`${(e as Error).message}\n${BENCH_USAGE}`);
  }
  // Loaded here: the chart libraries are only needed by this command.
  const { runBench } = await import('./bench/bench');
  return runBench(options);
}

export { DEMO_USAGE };

/** `p2pdma demo`: see DEMO_USAGE. */
export async function demo(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseDemoArgs(argv);
  } catch (e) {
    fail(`${(e as Error).message}\n${DEMO_USAGE}`);
  }
  const { runDemo } = await import('./demo/demo');
  return runDemo(options);
}

export const VM_OPTIONS = `vm options:
  --kernel NAME|PATH               guest kernel (default: baseline-7.3); named kernels are built and
                                   cached: baseline-7.3 and patched-7.3 (Linux 7.3, stock and with
                                   kernel-patches/v3), baseline and patched (6.12, stock and with v2)
  --debug                          the KASAN + lockdep + kmemleak build of a named kernel
  --topology switch|host-bridge|none[,...]
                                   where a pair of NVMe controllers sits (default: switch); a
                                   list gives one pair per topology in one guest (switch,none)
  --iommu                          an Intel vIOMMU in front of the PCI devices (intel_iommu=on)
  --acs-pair                       the ivshmem BAR and a pci-testdev as two functions behind one
                                   ACS-capable root port (P2P map type set by the port's ACS bits)
  --no-virtio-gpu                  leave out the headless virtio-gpu-pci (the PCI DRM device
                                   with sync objects; vgem stays)
  --rdma rxe|pvrdma                the RDMA device (default: rxe; pvrdma nests a second guest, slow)
  --accel auto|tcg|kvm             (default: auto = KVM only where a probe boot works)
  --tcg-thread multi|single        TCG vCPU threading (default: multi, one host thread per vCPU)
  --timeout SECONDS                kill the guest after this long (default: 900)
  --memory MIB  --cpus N  --cmb MIB  --hugepages N
  --env NAME=VALUE                 set in the guest (repeatable)
  --nodes 1|2                      two guests on one network (10.0.3.1 and .2, rxe0 on it), the
                                   command in both, told P2PDMA_NODE_ROLE=a|b, P2PDMA_NODE_ADDR
                                   and P2PDMA_PEER_ADDR; fails if either fails (default: 1)
  --node-env a|b:NAME=VALUE        set in one node only (repeatable)
  --rwdir DIR                      share a host directory read-write at the same path (repeatable)
  --keep                           keep the results directory (console log, dmesg)
`;

/** `vm run` and `vm shell`; `usage` is the whole command line's, for errors. */
export async function vm(sub: string, argv: string[], usage: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      kernel: { type: 'string', default: DEFAULT_BASELINE },
      debug: { type: 'boolean', default: false },
      topology: { type: 'string', default: 'switch' },
      iommu: { type: 'boolean', default: false },
      'acs-pair': { type: 'boolean', default: false },
      'no-virtio-gpu': { type: 'boolean', default: false },
      accel: { type: 'string', default: 'auto' },
      'tcg-thread': { type: 'string', default: 'multi' },
      timeout: { type: 'string' },
      memory: { type: 'string' },
      cpus: { type: 'string' },
      cmb: { type: 'string' },
      hugepages: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      nodes: { type: 'string', default: '1' },
      'node-env': { type: 'string', multiple: true, default: [] },
      rwdir: { type: 'string', multiple: true, default: [] },
      keep: { type: 'boolean', default: false },
      rdma: { type: 'string', default: 'rxe' },
      // Internal: the first level of a pvrdma run passes its rxe0.
      'pvrdma-backend': { type: 'string' },
    },
  });
  let topology: Topology[] = [];
  try {
    topology = parseTopologies(values.topology!);
  } catch (e) {
    fail(`--topology: ${(e as Error).message}`);
  }
  if (!['auto', 'tcg', 'kvm'].includes(values.accel!)) fail('--accel must be auto, tcg or kvm');
  if (!['multi', 'single'].includes(values['tcg-thread']!)) fail('--tcg-thread must be multi or single');
  if (!['rxe', 'pvrdma'].includes(values.rdma!)) fail('--rdma must be rxe or pvrdma');
  let pvrdmaBackend;
  try {
    pvrdmaBackend = values['pvrdma-backend'] === undefined ? undefined : parsePvrdmaBackend(values['pvrdma-backend']);
  } catch (e) {
    fail((e as Error).message);
  }
  const env: Record<string, string> = {};
  for (const pair of values.env!) {
    const eq = pair.indexOf('=');
    if (eq <= 0) fail(`--env wants NAME=VALUE, got '${pair}'`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const shell = sub === 'shell';
  if (!shell && positionals.length === 0) fail(`vm run needs a command after --\n${usage}`);
  if (!['1', '2'].includes(values.nodes!)) fail('--nodes must be 1 or 2');
  const twoNodes = values.nodes === '2';
  if (twoNodes && (shell || values.rdma !== 'rxe')) fail('--nodes 2 runs a command on rxe: not vm shell, not --rdma pvrdma');
  let nodeEnv;
  try {
    nodeEnv = parseNodeEnv(values['node-env']!);
  } catch (e) {
    fail((e as Error).message);
  }
  if (!twoNodes && values['node-env']!.length) fail('--node-env needs --nodes 2');
  const result = await (twoNodes ? runNodes : runVm)({
    nodeEnv,
    kernel: values.kernel!,
    debug: values.debug,
    topology,
    iommu: values.iommu,
    acsPair: values['acs-pair'],
    virtioGpu: !values['no-virtio-gpu'],
    accel: values.accel as 'auto' | 'tcg' | 'kvm',
    tcgThread: values['tcg-thread'] as 'multi' | 'single',
    command: positionals,
    shell,
    timeoutSec: int('timeout', values.timeout),
    memoryMiB: int('memory', values.memory),
    cpus: int('cpus', values.cpus),
    cmbMiB: int('cmb', values.cmb),
    hugepages: int('hugepages', values.hugepages),
    env,
    rwDirs: values.rwdir,
    keep: values.keep,
    rdma: values.rdma as 'rxe' | 'pvrdma',
    pvrdmaBackend,
  });
  if (result.ok) return 0;
  return result.exitCode && result.exitCode > 0 ? result.exitCode : 1;
}

export function kernel(argv: string[], usage: string): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { debug: { type: 'boolean', default: false }, series: { type: 'string' } },
  });
  // --series DIR: a kernel developer's own patches, cached like ours (scripts/kernel/build.sh).
  if (positionals[0] !== 'build' || (values.series === undefined && !isKernelName(positionals[1] ?? ''))) fail(usage);
  if (values.series !== undefined && positionals.length !== 1) fail(`kernel build --series DIR takes no variant\n${usage}`);
  if (values.series !== undefined && !fs.statSync(values.series, { throwIfNoEntry: false })?.isDirectory()) fail(`--series: ${values.series} is not a directory`);
  const args = values.series !== undefined
    ? [...(values.debug ? ['--debug'] : []), '--series', values.series]
    : kernelBuildArgs(positionals[1] as KernelName, values.debug!);
  const r = spawnSync(KERNEL_BUILD_SCRIPT, args, { stdio: 'inherit' });
  return r.status ?? 1;
}
