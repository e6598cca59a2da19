// What the QEMU command-line tests share (test/harness/vm.test.ts, test/harness/pvrdma.test.ts):
// a complete set of qemuArgs() options and a reader for one flag's values.
import type { QemuArgsOptions } from '../../harness/vm/qemu-args';

export const baseQemuOptions: QemuArgsOptions = {
  kernel: '/k/bzImage',
  init: '/repo/scripts/vm/init',
  resultsDir: '/r',
  projectDir: '/repo',
  nvmeImages: ['/r/nvme0.img', '/r/nvme1.img'],
  topology: 'switch',
  accel: 'tcg',
  memoryMiB: 2048,
  cpus: 2,
  cmbMiB: 64,
  hugepages: 16,
};

/** Every value that follows `flag` in `args`. */
export function valueOf(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (args[i - 1] === flag ? [a] : []));
}
