/** `p2pdma demo`'s command line. */
import { parseArgs } from 'node:util';
import { DEFAULT_PATCHED } from '../vm/kernel-names';
import { parseTopologies, Topology } from '../vm/qemu-args';

export const DEMO_USAGE = `usage: p2pdma demo [--kernel NAME|PATH] [--debug] [--topology T[,...]] [--iommu]
                   [--accel auto|tcg|kvm] [--timeout SECONDS] [--json]
       p2pdma demo --host [--write-nvme] [--json]

The flagship P2P flow (scripts/demo.js), each step's data checked and timed:
NVMe controller A writes a pattern from its own CMB, reads it back straight
into controller B's CMB (peer-to-peer) and through RAM (bounce), then RDMA
registers a CMB as a memory region and WRITEs and READs it over the verbs.

In the test guest (default): the kernel is resolved first (cached, or built
with the build's progress on stderr), the guest booted with two NVMe CMBs and
rxe0, and the steps run there. NAME is patched-7.3 (the default: Linux 7.3
with kernel-patches/v3), baseline-7.3 (stock 7.3), or patched / baseline
(6.12 with and without v2). A baseline kernel shows the refusal the series
removes: its RDMA step ends "refused (expected)".

--host runs the steps on this machine's devices as \`p2pdma info\` finds them,
without booting; a step whose device is missing is "skipped" with the reason.
The NVMe steps overwrite the first 4 MiB of controller A's namespace, so on a
host they run only with --write-nvme.

Output: the guest's and the build's progress on stderr, then a table (step,
result, time, detail) on stdout, or with --json the same as one object.
Exit status: 0 when no step failed (skipped steps do not fail: the table says
why), 1 when a step, the boot or the guest kernel failed, 2 for bad arguments.
`;

export interface DemoOptions {
  host: boolean;
  json: boolean;
  /** Host only: let the NVMe steps overwrite the start of a namespace. */
  writeNvme: boolean;
  /** A kernel name of ours (harness/vm/kernel-names.ts) or a bzImage path. */
  kernel: string;
  debug: boolean;
  topology: Topology[];
  iommu: boolean;
  accel: 'auto' | 'tcg' | 'kvm';
  timeoutSec: number | undefined;
}

/** Parses argv (after `demo`); throws a TypeError that names the bad argument. */
export function parseDemoArgs(argv: string[]): DemoOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      host: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      'write-nvme': { type: 'boolean', default: false },
      kernel: { type: 'string' },
      debug: { type: 'boolean', default: false },
      // No defaults here: what was given decides whether --host conflicts.
      topology: { type: 'string' },
      iommu: { type: 'boolean', default: false },
      accel: { type: 'string' },
      timeout: { type: 'string' },
    },
  });
  if (positionals.length > 0) throw new TypeError(`unexpected argument '${positionals[0]}'`);
  const guestOnly = (['kernel', 'debug', 'topology', 'iommu', 'accel', 'timeout'] as const).filter((k) => values[k] !== undefined && values[k] !== false);
  if (values.host && guestOnly.length) throw new TypeError(`--${guestOnly[0]} boots a guest: it does not go with --host`);
  if (!values.host && values['write-nvme']) throw new TypeError('--write-nvme goes with --host (the guest\'s namespaces are scratch images)');
  const accel = values.accel ?? 'auto';
  if (!['auto', 'tcg', 'kvm'].includes(accel)) throw new TypeError('--accel must be auto, tcg or kvm');
  let timeoutSec: number | undefined;
  if (values.timeout !== undefined) {
    timeoutSec = Number(values.timeout);
    if (!Number.isInteger(timeoutSec) || timeoutSec <= 0) throw new TypeError(`--timeout wants a positive integer, got '${values.timeout}'`);
  }
  const kernel = values.kernel ?? DEFAULT_PATCHED;
  if (kernel === '') throw new TypeError('--kernel wants patched-7.3, baseline-7.3, patched, baseline or a bzImage path');
  return {
    host: values.host!,
    json: values.json!,
    writeNvme: values['write-nvme']!,
    kernel,
    debug: values.debug!,
    topology: parseTopologies(values.topology ?? 'switch'),
    iommu: values.iommu!,
    accel: accel as DemoOptions['accel'],
    timeoutSec,
  };
}
