/**
 * The QEMU command line of the test guest, as a pure function so the host
 * suite can check it without booting anything.
 */

import { FabricNic, fabricArgs } from './nodes';
import { PvrdmaBackend, pvrdmaArgs } from './pvrdma';

/**
 * Where the two NVMe controllers sit, which decides the P2P map type the
 * guest's p2pdma code computes between them:
 * - `switch`: behind one PCIe switch -> BUS_ADDR
 * - `host-bridge`: on the root complex, AMD family 23 CPU -> THRU_HOST_BRIDGE
 * - `none`: on the root complex, default CPU -> NOT_SUPPORTED
 */
export type Topology = 'switch' | 'host-bridge' | 'none';
export const TOPOLOGIES: readonly Topology[] = ['switch', 'host-bridge', 'none'];

/**
 * The topologies one guest can hold at once, in canonical order (the switch
 * pair first, so its controllers keep serials p2pdma0/p2pdma1 and the
 * hot-plug slots dn0/dn1). Each topology adds its own pair of NVMe
 * controllers; host-bridge and none differ only in the CPU (the AMD family 23
 * whitelist is machine-wide), so one guest cannot have both.
 */
export function parseTopologies(spec: string | readonly string[]): Topology[] {
  const words = typeof spec === 'string' ? spec.split(',') : [...spec];
  for (const w of words) {
    if (!TOPOLOGIES.includes(w as Topology)) {
      throw new RangeError(`unknown topology '${w}': want one or more of ${TOPOLOGIES.join(', ')}, comma-separated`);
    }
  }
  const list = TOPOLOGIES.filter((x) => words.includes(x));
  if (list.includes('host-bridge') && list.includes('none')) {
    throw new RangeError('host-bridge and none need different CPUs (AMD family 23 or not): they cannot share a guest');
  }
  return list;
}

/** QEMU serials of the NVMe pair that `topology` has in a guest booted with `topologies`. */
export function pairSerials(topologies: readonly Topology[], topology: Topology): [string, string] | undefined {
  const pair = topologies.indexOf(topology);
  return pair < 0 ? undefined : [`p2pdma${2 * pair}`, `p2pdma${2 * pair + 1}`];
}

/** The map type each topology should produce (names as in the kernel's enum). */
export const EXPECTED_MAP_TYPE: Record<Topology, string> = {
  switch: 'BUS_ADDR',
  'host-bridge': 'THRU_HOST_BRIDGE',
  none: 'NOT_SUPPORTED',
};

/** The root port of QemuArgsOptions.acsPair. */
export const ACS_PORT = 'rpacs';

/** QMP socket in the run's results directory. */
export const QMP_SOCKET = 'qmp.sock';
/** Host end of the guest's control port (virtserialport). */
export const HOST_CONTROL_SOCKET = 'hostctl.sock';
/** Name of that port in the guest (/sys/class/virtio-ports/vport*\/name). */
export const HOST_CONTROL_PORT = 'org.p2pdma.host';

export interface QemuArgsOptions {
  kernel: string;
  /** Absolute path of scripts/vm/init inside the shared root. */
  init: string;
  /** Host directory shared read-write as the guest's results channel. */
  resultsDir: string;
  /** Host directory of the project, shared read-only. */
  projectDir: string;
  /** Raw NVMe namespace images, one per controller: two per topology. */
  nvmeImages: string[];
  /** One or more topologies (parseTopologies): an NVMe pair for each. */
  topology: Topology | readonly Topology[];
  accel: 'tcg' | 'kvm';
  /** TCG's vCPU threading: one host thread per vCPU (default) or one for all. */
  tcgThread?: 'multi' | 'single';
  memoryMiB: number;
  cpus: number;
  /** CMB size per NVMe controller; QEMU wants a power of two, Linux >= 2. */
  cmbMiB: number;
  /** 2 MiB huge pages reserved at boot (udmabuf on hugetlb memfds). */
  hugepages: number;
  /** An Intel vIOMMU (DMA remapping) in front of every PCI device. */
  iommu?: boolean;
  /**
   * The ivshmem BAR and a pci-testdev as functions 0 and 1 of one slot behind
   * an ACS-capable PCIe root port, instead of ivshmem on the root complex:
   * the P2P map type between the two is BUS_ADDR while the port's ACS
   * redirect bits are clear and goes through the host bridge once they are
   * set, so a test can change the answer under a live mapping.
   */
  acsPair?: boolean;
  /**
   * A pvrdma device backed by this RDMA device of the machine QEMU runs on,
   * instead of the virtio-net NIC that carries rxe (the nested pvrdma lane).
   */
  pvrdma?: PvrdmaBackend;
  /**
   * One node of a two-node run (harness/vm/nodes.ts): its NIC on the wire to
   * the other node, instead of the user-mode NIC.
   */
  fabric?: FabricNic;
  /**
   * A headless virtio-gpu-pci (the guest's PCI DRM device with sync objects;
   * vgem has none). Default true.
   */
  virtioGpu?: boolean;
  /** Host directories shared read-write, mounted at the same path in the guest. */
  rwDirs?: string[];
  /**
   * The host's TSC frequency (harness/vm/tsc.ts), given to a TCG guest as
   * `tsc_early_khz=` so that it does not calibrate its TSC on a loaded host.
   */
  tscKhz?: number;
  /** Extra kernel command line words. */
  append?: string[];
  /** Extra QEMU arguments, appended last. */
  extra?: string[];
}

export function qemuArgs(o: QemuArgsOptions): string[] {
  if (!(o.cmbMiB >= 2 && (o.cmbMiB & (o.cmbMiB - 1)) === 0)) {
    throw new RangeError(`cmbMiB must be a power of two >= 2, got ${o.cmbMiB}`);
  }
  const topologies = parseTopologies(typeof o.topology === 'string' ? [o.topology] : o.topology);
  if (o.nvmeImages.length !== 2 * topologies.length) {
    throw new RangeError(`${topologies.length} topologies want ${2 * topologies.length} NVMe images, got ${o.nvmeImages.length}`);
  }
  const cmdline = [
    'console=ttyS0',
    'root=hostroot',
    'rootfstype=9p',
    // cache=loose: the root is read-only, so the guest may cache lookups and
    // pages; node loading thousands of module files depends on it.
    'rootflags=trans=virtio,version=9p2000.L,msize=512000,cache=loose',
    'ro',
    `init=${o.init}`,
    'panic=-1',
    // Keep the whole CMB as p2pmem instead of I/O submission queues.
    'nvme.use_cmb_sqes=0',
    `hugepages=${o.hugepages}`,
    ...(o.iommu ? ['intel_iommu=on'] : []),
    ...(o.accel === 'tcg' && o.tscKhz !== undefined ? [`tsc_early_khz=${o.tscKhz}`, 'tsc=reliable'] : []),
    ...(o.append ?? []),
  ];
  // pvrdma maps guest RAM into its backend, which only works on shared RAM:
  // it refuses to start unless every RAM backend is share=on.
  const shared = o.pvrdma ? ',share=on' : '';
  const args = [
    // The vIOMMU must exist before the PCI devices it translates for.
    ...(o.iommu ? ['-device', 'intel-iommu,intremap=off'] : []),
    '-M', o.pvrdma ? 'q35,memory-backend=ram' : 'q35',
    ...(o.pvrdma ? ['-object', `memory-backend-ram,id=ram,size=${o.memoryMiB}M${shared}`] : []),
    '-accel', o.accel === 'tcg' && o.tcgThread === 'single' ? 'tcg,thread=single' : o.accel,
    '-cpu', topologies.includes('host-bridge') ? 'qemu64,family=23' : 'qemu64',
    '-m', `${o.memoryMiB}M`,
    '-smp', String(o.cpus),
    '-nodefaults', '-no-user-config', '-no-reboot',
    // Native PCIe hotplug: with QEMU's ACPI hotplug on, _OSC keeps PCIe
    // hotplug from the guest and pciehp never drives the switch's slots.
    '-global', 'ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off',
    '-display', 'none',
    '-kernel', o.kernel,
    '-append', cmdline.join(' '),
    // Kernel console to a file; the host scans it for splats.
    '-serial', `file:${o.resultsDir}/console.log`,
    // The job's own output, streamed live on QEMU's stdout.
    '-chardev', 'stdio,id=job,signal=off',
    '-device', 'virtio-serial-pci',
    '-device', 'virtconsole,chardev=job',
    // QMP for the host, and a port through which the guest asks the host's
    // relay (harness/vm/host-control.ts) for QMP commands such as device_del.
    '-qmp', `unix:${o.resultsDir}/${QMP_SOCKET},server=on,wait=off`,
    '-chardev', `socket,id=hostctl,path=${o.resultsDir}/${HOST_CONTROL_SOCKET},server=on,wait=off`,
    '-device', `virtserialport,chardev=hostctl,name=${HOST_CONTROL_PORT}`,
    ...share('hostroot', '/', true),
    ...share('project', o.projectDir, true),
    ...share('results', o.resultsDir, false),
    ...(o.rwDirs ?? []).flatMap((dir, i) => share(`rw${i}`, dir, false)),
    // restrict=on: the guest NIC exists for RDMA and reaches nothing outside.
    ...(o.pvrdma
      ? pvrdmaArgs(o.resultsDir, o.pvrdma)
      : o.fabric
        ? fabricArgs(o.fabric)
        : ['-netdev', 'user,id=n0,restrict=on', '-device', 'virtio-net-pci,netdev=n0']),
    // A RAM-backed BAR without struct pages, for the BAR exporter.
    '-object', `memory-backend-ram,id=ivshmem,size=16M${shared}`,
    ...(o.acsPair
      ? [
          // QEMU's root ports have ACS (its switch ports do not).
          '-device', `pcie-root-port,id=${ACS_PORT},chassis=4,slot=4`,
          '-device', `ivshmem-plain,memdev=ivshmem,bus=${ACS_PORT},addr=0.0,multifunction=on`,
          '-device', `pci-testdev,bus=${ACS_PORT},addr=0.1`,
        ]
      : ['-device', 'ivshmem-plain,memdev=ivshmem']),
  ];
  if (topologies.includes('switch')) {
    args.push(
      '-device', 'pcie-root-port,id=rp0,chassis=1,slot=1',
      '-device', 'x3130-upstream,id=up0,bus=rp0',
      '-device', 'xio3130-downstream,id=dn0,bus=up0,chassis=2,slot=0',
      '-device', 'xio3130-downstream,id=dn1,bus=up0,chassis=3,slot=1',
    );
  }
  o.nvmeImages.forEach((image, i) => {
    // -blockdev, not -drive: its backend outlives a device_del, so the
    // controller can be plugged back with device_add.
    args.push(
      '-blockdev', `driver=raw,node-name=nvm${i},file.driver=file,file.filename=${image}`,
      '-device', nvmeDevice(i, o.cmbMiB, topologies[i >> 1]),
    );
  });
  if (o.virtioGpu ?? true) {
    // A fixed slot on the root complex, far above the slots QEMU hands out
    // in order: adding it moves no other device, and as an endpoint it takes
    // no bus number, so every NVMe pair keeps its address. No display
    // (-display none) and no KMS in the guest kernel: a render device.
    args.push('-device', `virtio-gpu-pci,addr=${VIRTIO_GPU_SLOT.toString(16)}.0,max_outputs=1,edid=off`);
  }
  return [...args, ...(o.extra ?? [])];
}

/** The root-complex slot of the virtio-gpu (0x1f is the ICH9 LPC, SATA and SMBus). */
export const VIRTIO_GPU_SLOT = 0x1e;

/** The properties of NVMe controller `index`, as -device or device_add takes them. */
export function nvmeDeviceProps(index: number, cmbMiB: number, topology: Topology): Record<string, string | number> {
  return {
    driver: 'nvme',
    id: `nvme${index}`,
    serial: `p2pdma${index}`,
    drive: `nvm${index}`,
    cmb_size_mb: cmbMiB,
    ...(topology === 'switch' ? { bus: `dn${index}` } : {}),
  };
}

function nvmeDevice(index: number, cmbMiB: number, topology: Topology): string {
  const { driver, ...props } = nvmeDeviceProps(index, cmbMiB, topology);
  return [driver, ...Object.entries(props).map(([k, v]) => `${k}=${v}`)].join(',');
}

function share(tag: string, dir: string, readonly: boolean): string[] {
  const ro = readonly ? ',readonly=on' : '';
  return [
    '-fsdev', `local,id=fs_${tag},path=${dir},security_model=none,multidevs=remap${ro}`,
    '-device', `virtio-9p-pci,fsdev=fs_${tag},mount_tag=${tag}`,
  ];
}
