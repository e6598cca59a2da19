#!/usr/bin/env node
/**
 * p2pdma command line.
 *
 *   p2pdma vm run [options] -- <command...>   run a command in the test guest
 *   p2pdma vm shell [options]                 interactive shell in the test guest
 *   p2pdma kernel build [--debug] baseline|patched
 *   p2pdma dmabuf ls [--json] [--pid PID]     dma-bufs held by processes
 *   p2pdma info [--json]                      what this machine and kernel can do
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { parseTopologies, Topology } from './vm/qemu-args';
import { parsePvrdmaBackend } from './vm/pvrdma';
import { KERNEL_BUILD_SCRIPT, runVm } from './vm/run';

const USAGE = `usage:
  p2pdma vm run [options] -- <command...>
  p2pdma vm shell [options]
  p2pdma kernel build [--debug] baseline|patched
  p2pdma dmabuf ls [--json] [--pid PID]
  p2pdma info [--json]
  p2pdma COMMAND --help

vm options:
  --kernel baseline|patched|PATH   guest kernel (default: baseline; named kernels are built and cached)
  --debug                          the KASAN + lockdep + kmemleak build of a named kernel
  --topology switch|host-bridge|none[,...]
                                   where a pair of NVMe controllers sits (default: switch); a
                                   list gives one pair per topology in one guest (switch,none)
  --iommu                          an Intel vIOMMU in front of the PCI devices (intel_iommu=on)
  --acs-pair                       the ivshmem BAR and a pci-testdev as two functions behind one
                                   ACS-capable root port (P2P map type set by the port's ACS bits)
  --rdma rxe|pvrdma                the RDMA device (default: rxe; pvrdma nests a second guest, slow)
  --accel auto|tcg|kvm             (default: auto = KVM only where a probe boot works)
  --tcg-thread multi|single        TCG vCPU threading (default: multi, one host thread per vCPU)
  --timeout SECONDS                kill the guest after this long (default: 900)
  --memory MIB  --cpus N  --cmb MIB  --hugepages N
  --env NAME=VALUE                 set in the guest (repeatable)
  --rwdir DIR                      share a host directory read-write at the same path (repeatable)
  --keep                           keep the results directory (console log, dmesg)
`;

function fail(message: string, status = 2): never {
  process.stderr.write(`p2pdma: ${message}\n`);
  process.exit(status);
}

function int(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) fail(`--${name} wants a positive integer, got '${value}'`);
  return n;
}

async function vm(sub: string, argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      kernel: { type: 'string', default: 'baseline' },
      debug: { type: 'boolean', default: false },
      topology: { type: 'string', default: 'switch' },
      iommu: { type: 'boolean', default: false },
      'acs-pair': { type: 'boolean', default: false },
      accel: { type: 'string', default: 'auto' },
      'tcg-thread': { type: 'string', default: 'multi' },
      timeout: { type: 'string' },
      memory: { type: 'string' },
      cpus: { type: 'string' },
      cmb: { type: 'string' },
      hugepages: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
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
  if (!shell && positionals.length === 0) fail(`vm run needs a command after --\n${USAGE}`);
  const result = await runVm({
    kernel: values.kernel!,
    debug: values.debug,
    topology,
    iommu: values.iommu,
    acsPair: values['acs-pair'],
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

function kernel(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { debug: { type: 'boolean', default: false } },
  });
  if (positionals[0] !== 'build' || !['baseline', 'patched'].includes(positionals[1])) fail(USAGE);
  const r = spawnSync(KERNEL_BUILD_SCRIPT, [...(values.debug ? ['--debug'] : []), positionals[1]], { stdio: 'inherit' });
  return r.status ?? 1;
}

// The inspector needs no native addon: loaded only for this command.
async function dmabuf(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, pid: { type: 'string' } },
  });
  if (positionals[0] !== 'ls' || positionals.length !== 1) fail(USAGE);
  const { dmabufs, formatDmaBufReport } = await import('./dmabuf-inspect');
  const report = dmabufs({ pid: int('pid', values.pid) });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatDmaBufReport(report));
  return 0;
}

/** Each command's usage for --help: the lines of USAGE that start with it, and the vm options for vm. */
function usageOf(group: string): string {
  const lines = USAGE.split('\n').filter((l) => l.startsWith(`  p2pdma ${group} `) || l === `  p2pdma ${group}`);
  if (lines.length === 0) return USAGE;
  const vmOptions = group === 'vm' ? `\n${USAGE.slice(USAGE.indexOf('vm options:'))}` : '';
  return `usage:\n${lines.join('\n')}\n${vmOptions}`;
}

async function info(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean', default: false } } });
  if (positionals.length !== 0) fail(usageOf('info'));
  const { machineInfo, formatMachineInfo } = await import('./info');
  const report = machineInfo();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatMachineInfo(report));
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [group, sub, ...rest] = argv;
  // --help anywhere before a '--' (after it, the words belong to the guest command).
  const ours = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  if (ours.includes('--help') || ours.includes('-h') || group === 'help') {
    process.stdout.write(group === undefined || group.startsWith('-') || group === 'help' ? USAGE : usageOf(group));
    return 0;
  }
  if (group === 'info') return info([sub, ...rest].filter((a) => a !== undefined));
  if (group === 'vm' && (sub === 'run' || sub === 'shell')) return vm(sub, rest);
  if (group === 'kernel') return kernel([sub, ...rest].filter((a) => a !== undefined));
  if (group === 'dmabuf') return dmabuf([sub, ...rest].filter((a) => a !== undefined));
  return fail(USAGE);
}

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (err: Error) => fail(err.message, 1),
);
