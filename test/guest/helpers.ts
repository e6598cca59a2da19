/**
 * What the guest suite needs to find its devices: the NVMe controllers with
 * their CMBs (p2pmem providers) and namespaces, and the run's settings that
 * scripts/vm/init exports (P2PDMA_TOPOLOGY, P2PDMA_KERNEL).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const inGuest = process.env.P2PDMA_GUEST === '1';
export const topology = process.env.P2PDMA_TOPOLOGY ?? 'switch';
/** 'baseline' (pristine 6.12) or 'patched' (kernel-patches/series applied). */
export const kernel = process.env.P2PDMA_KERNEL ?? 'baseline';
/** Test options for guest-only tests: skipped, with the reason, anywhere else. */
export const guest = { skip: inGuest ? false : 'runs only in the p2pdma guest (make vm-test)' };

export function readSysfs(file: string): string {
  return fs.readFileSync(file, 'utf8').trim();
}

export interface NvmeController {
  name: string; // nvme0
  bdf: string; // 0000:02:00.0
  namespace: string; // /dev/nvme0n1
  p2pmem: string; // /sys/bus/pci/devices/<bdf>/p2pmem
}

/** NVMe controllers, sorted by name, each with its PCI function and first namespace. */
export function nvmeControllers(): NvmeController[] {
  const dir = '/sys/class/nvme';
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).sort().map((name) => {
    const bdf = path.basename(fs.realpathSync(path.join(dir, name, 'device')));
    return {
      name,
      bdf,
      namespace: `/dev/${name}n1`,
      p2pmem: `/sys/bus/pci/devices/${bdf}/p2pmem`,
    };
  });
}
