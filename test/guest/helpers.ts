/**
 * What the guest suite needs to find its devices: the NVMe controllers with
 * their CMBs (p2pmem providers) and namespaces, and the run's settings that
 * scripts/vm/init exports (P2PDMA_TOPOLOGY, P2PDMA_KERNEL).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { memfd, mmap, type Mapping, Vfio } from '../../lib';
import { pairSerials, parseTopologies } from '../../harness/vm/qemu-args';

export const inGuest = process.env.P2PDMA_GUEST === '1';
/** The topology this run of the file tests: its NVMe pair is nvmeControllers(). */
export const topology = parseTopologies(process.env.P2PDMA_TOPOLOGY ?? 'switch')[0];
/** Every topology the guest was booted with (vm run --topology a,b): a pair each. */
export const guestTopologies = parseTopologies(process.env.P2PDMA_TOPOLOGIES ?? topology);
/**
 * 'baseline' (pristine 6.12) or 'patched' (kernel-patches/series applied).
 * Anything but P2PDMA_KERNEL=baseline (a custom kernel included) is checked
 * as patched: the series' features must be there, their absence fails.
 */
const kernelEnv = process.env.P2PDMA_KERNEL ?? '';
export const kernel: 'baseline' | 'patched' = kernelEnv === 'baseline' || kernelEnv === 'baseline-7.3' ? 'baseline' : 'patched';
/**
 * The series a patched kernel carries: 'v3' (kernel-patches/v3 on 7.3,
 * P2PDMA_KERNEL=patched-7.3) or 'v2' (kernel-patches/ on 6.12, or custom).
 */
export const kernelSeries: 'v2' | 'v3' | null = kernel === 'baseline' ? null : kernelEnv === 'patched-7.3' ? 'v3' : 'v2';
/** The guest kernel's major version (6 for 6.12, 7 for 7.3). */
export const linuxMajor = Number(os.release().split('.')[0]);
/**
 * How the block layer refuses an O_DIRECT or passthrough transfer into
 * p2pmem its device cannot reach (map type NOT_SUPPORTED): EREMOTEIO on
 * 6.12, EINVAL on 7.x (the same on stock 7.3: not the series').
 */
export const P2P_REFUSAL = linuxMajor >= 7
  ? { code: 'EINVAL', errno: -22, message: 'invalid argument' }
  : { code: 'EREMOTEIO', errno: -121, message: 'remote I/O error' };
/** Test options for guest-only tests: skipped, with the reason, anywhere else. */
export const guest: { skip: string | false } = { skip: inGuest ? false : 'runs only in the p2pdma guest (make vm-test)' };
/** Test options for what only the kernel series provides: skipped on the baseline kernel. */
export const patchedOnly: { skip: string | false } = {
  skip: guest.skip || (kernel === 'baseline' ? 'the baseline kernel has no kernel-patches/ series' : false),
};
/**
 * Test options for what only v2 (kernel-patches/ on 6.12) provides: its
 * p2p_map() callbacks, test module and ivshmem_p2p exporter, which v3
 * replaces with the exporters' dma-bufs. `v3Has` names v3's counterpart.
 */
export function v2Only(v3Has: string): { skip: string | false } {
  return { skip: patchedOnly.skip || (kernelSeries === 'v3' ? `kernel-patches/v2 (6.12) only; v3 has ${v3Has}` : false) };
}
/** Test options for what only v3 (kernel-patches/v3 on 7.3) provides. */
export function v3Only(what: string): { skip: string | false } {
  return { skip: patchedOnly.skip || (kernelSeries === 'v3' ? false : `${what} are kernel-patches/v3 (P2PDMA_KERNEL=patched-7.3)`) };
}

/**
 * The map type between the ivshmem BAR and any NVMe controller (names as in
 * the kernel's enum). ivshmem sits on the root complex (or behind its own
 * root port with --acs-pair), so it shares no upstream bridge with a
 * controller even behind the switch: calc_map_type_and_dist() always goes
 * through the host bridge, which only the AMD family 23 CPU of a guest with
 * the host-bridge topology allows (cpu_supports_p2pdma(); q35's host bridge
 * is not on the whitelist, as the none topology shows for its controllers).
 */
export const IVSHMEM_MAP_TYPE = guestTopologies.includes('host-bridge') ? 'THRU_HOST_BRIDGE' : 'NOT_SUPPORTED';

export function readSysfs(file: string): string {
  return fs.readFileSync(file, 'utf8').trim();
}

export interface NvmeController {
  name: string; // nvme0
  serial: string; // p2pdma0 (QEMU's serial= property)
  bdf: string; // 0000:02:00.0
  namespace: string; // /dev/nvme0n1
  p2pmem: string; // /sys/bus/pci/devices/<bdf>/p2pmem
}

/**
 * The NVMe pair of this file's topology, in serial order, each with its PCI
 * function and first namespace (a guest with several topologies has a pair
 * each; harness/vm/qemu-args.ts pairSerials).
 */
export function nvmeControllers(): NvmeController[] {
  const serials: string[] = pairSerials(guestTopologies, topology) ?? [];
  return allNvmeControllers().filter((c) => serials.includes(c.serial))
    .sort((a, b) => serials.indexOf(a.serial) - serials.indexOf(b.serial));
}

/** Every NVMe controller of the guest, whichever pair it belongs to. */
export function allNvmeControllers(): NvmeController[] {
  const dir = '/sys/class/nvme';
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).sort().flatMap((name) => {
    try {
      const bdf = path.basename(fs.realpathSync(path.join(dir, name, 'device')));
      return [{
        name,
        serial: readSysfs(path.join(dir, name, 'serial')),
        bdf,
        namespace: `/dev/${name}n1`,
        p2pmem: `/sys/bus/pci/devices/${bdf}/p2pmem`,
      }];
    } catch {
      return []; // a controller being hot-unplugged while we look
    }
  });
}

/** The controller with this serial (unplugged ones are absent). */
export function nvmeController(serial: string): NvmeController | undefined {
  return allNvmeControllers().find((c) => c.serial === serial);
}

/** Poll `probe` every 200 ms until it gives a value, for a device to come or go. */
export async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 120_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(200);
  }
}

/**
 * `length` zeroed bytes of a shared mapping of their own memfd: page-aligned
 * memory whose address JS knows (a Buffer's address is not visible from JS).
 */
export function memfdMapping(length: number): Mapping {
  using fd = memfd('guest-test');
  fs.ftruncateSync(fd.fd, length);
  return mmap(fd, length);
}

/**
 * A zeroed buffer of `length` bytes that starts on a page boundary, as
 * O_DIRECT and QEMU's pvrdma want (slicing a Buffer cannot align it). The
 * mapping goes when the buffer is garbage collected.
 */
export function alignedBuffer(length: number): Buffer {
  return Buffer.from(memfdMapping(length).buffer);
}

/** The PCI function of QEMU's ivshmem-plain device (1af4:1110), if any. */
export function ivshmemBdf(): string | undefined {
  return fs.readdirSync('/sys/bus/pci/devices').find((bdf) => {
    const dev = `/sys/bus/pci/devices/${bdf}`;
    return readSysfs(`${dev}/vendor`) === '0x1af4' && readSysfs(`${dev}/device`) === '0x1110';
  });
}

/** Test options for what needs vfio-pci: this project's 7.x configs have it, 6.12's does not. */
export const vfioKernel: { skip: string | false } = {
  skip: guest.skip || (linuxMajor >= 7 ? false : `Linux ${os.release()} has no VFIO in this project's config (the 7.3 lanes do)`),
};

/** Opens ivshmem through VFIO in no-IOMMU mode (the guest has no IOMMU), restoring both at the end of `t`. */
export function openIvshmemVfio(t: Test, bdf: string): Vfio {
  const wasOff = Vfio.setNoIommuMode(true);
  const v = Vfio.open(bdf);
  t.teardown(() => {
    v.close();
    if (wasOff) Vfio.setNoIommuMode(false);
  });
  return v;
}

/**
 * Binds @bdf to vfio-pci in no-IOMMU mode without opening its group, for a
 * program that opens it itself (Vfio.open would hold it); the driver it had
 * and no-IOMMU mode are given back at the end of `t`.
 */
export function bindToVfio(t: Test, bdf: string): void {
  const dev = `/sys/bus/pci/devices/${bdf}`;
  const driver = () => (fs.existsSync(`${dev}/driver`) ? path.basename(fs.readlinkSync(`${dev}/driver`)) : undefined);
  const before = driver();
  const wasOff = Vfio.setNoIommuMode(true);
  t.teardown(() => {
    if (driver() === 'vfio-pci') fs.writeFileSync('/sys/bus/pci/drivers/vfio-pci/unbind', bdf);
    fs.writeFileSync(`${dev}/driver_override`, '\n');
    if (before) fs.writeFileSync(`/sys/bus/pci/drivers/${before}/bind`, bdf);
    if (wasOff) Vfio.setNoIommuMode(false);
  });
  if (before && before !== 'vfio-pci') fs.writeFileSync(`${dev}/driver/unbind`, bdf);
  fs.writeFileSync(`${dev}/driver_override`, 'vfio-pci');
  if (driver() !== 'vfio-pci') fs.writeFileSync('/sys/bus/pci/drivers/vfio-pci/bind', bdf);
}

/** The /dev node of the ivshmem_p2p exporter bound to @bdf, if any. */
export function ivshmemNode(bdf: string): string | undefined {
  const dir = `/sys/bus/pci/devices/${bdf}/misc`;
  if (!fs.existsSync(dir)) return undefined;
  const name = fs.readdirSync(dir).find((n) => n.startsWith('ivshmem_p2p'));
  return name ? `/dev/${name}` : undefined;
}
