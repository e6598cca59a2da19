/**
 * Kernel reports that fail a guest run even when the guest command passed:
 * KASAN, lockdep, kmemleak, BUG, WARN, oopses and panics.
 */

// Reports start a log line (after the printk timestamp, if any), which keeps
// informational lines such as "Speculative Return Stack Overflow: WARNING:
// ..." (AMD CPUs at boot) from counting.
const START = String.raw`(?:^|\]\s*)`;
const SPLAT_PATTERNS: readonly RegExp[] = [
  new RegExp(`${START}BUG: `),
  /\bkernel BUG at /,
  new RegExp(`${START}WARNING: `), // WARN_ON, lockdep ("WARNING: possible circular locking ...")
  /\bKASAN: /,
  /\bUBSAN: /,
  /\bOops: /,
  /\bgeneral protection fault\b/,
  /\bKernel panic - /,
  /\bINFO: task .* blocked for more than/,
  /\bINFO: possible (recursive|circular|irq lock)/,
  /\bunreferenced object 0x/, // kmemleak
];

export interface Splat {
  /** 1-based line number in the scanned text. */
  line: number;
  text: string;
  /** Set when the report is a known bug of the kernel we build on, not ours: where it is reported. */
  known?: string;
}

/**
 * Reports of the unmodified 6.12 kernel that our tests cannot avoid, each
 * matched on the report's own lines (the lock pair and function), never on
 * its first line alone. Such a report is listed, not failed; lockdep turns
 * itself off after any report, so a test that triggers one runs last.
 */
interface KnownSplat {
  reference: string;
  /** The report's first line. */
  first: RegExp;
  /** Each must match one of the lines that follow it. */
  body: readonly RegExp[];
}
const KNOWN_UPSTREAM: readonly KnownSplat[] = [
  {
    // Any pciehp surprise or QEMU device_del removal on a lockdep kernel:
    // pciehp_unconfigure_device() takes reset_lock again while holding
    // pci_rescan_remove_lock since f5eff5591b8f (6.4).
    reference: 'linux-pci 2025-06-19, "PCI: pciehp: ... circular locking dependency" (reset_lock vs pci_rescan_remove_lock)',
    first: /WARNING: possible circular locking dependency detected/,
    body: [
      /irq\/\d+-pciehp\/\d+ is trying to acquire lock:/,
      /\(&ctrl->reset_lock(\/\d+)?\)\{[^}]*\}-\{[^}]*\}, at: pciehp_unconfigure_device\+/,
      /\(pci_rescan_remove_lock\)\{[^}]*\}-\{[^}]*\}, at: pciehp_unconfigure_device\+/,
    ],
  },
  {
    // Stock 7.3.4 at boot, before any driver: the fs_info (8 bytes: the mode
    // 0755) that ramfs_init_fs_context() allocates for the initial rootfs
    // mount in mnt_init(). Seen on the patched-7.3 DEBUG kernel, whose series
    // (kernel-patches/v3) touches dma-buf, vfio-pci and rxe only.
    reference: 'Linux 7.3.4 kmemleak at boot: ramfs_init_fs_context() from mnt_init() (rootfs)',
    first: /unreferenced object 0x[0-9a-f]+ \(size 8\):/,
    body: [/comm "swapper\/0", pid 0/, /^\s*ramfs_init_fs_context\+/, /^\s*mnt_init\+/],
  },
  {
    // Stock 7.3.4's nvmet-rdma, seen on stock 7.3 and on patched-7.3 DEBUG
    // kernels when nvmeof.test.ts removes its port: unlinking a subsystem
    // from an RDMA port holds nvmet_config_sem across rdma_destroy_id(),
    // which takes the CM id's handler_mutex, while the CM handler of a queue
    // connect takes nvmet_config_sem under it (nvmet_find_get_subsys()).
    // 6.12's nvmet does not show it.
    reference: 'Linux 7.3.4 nvmet-rdma lockdep at port removal: nvmet_config_sem vs rdma_cm handler_mutex (seen on stock 7.3.4 DEBUG)',
    first: /WARNING: possible circular locking dependency detected/,
    body: [
      /\(&id_priv->handler_mutex\)\{[^}]*\}-\{[^}]*\}, at: rdma_destroy_id\+/,
      /\(nvmet_config_sem\)\{[^}]*\}-\{[^}]*\}, at: nvmet_port_subsys_drop_link\+/,
    ],
  },
];
/** How many lines of a report identify it (lockdep's header is 10 lines). */
const REPORT_HEAD_LINES = 12;

/** Lines of a kernel log that report a kernel bug; known upstream ones carry `known`. */
export function findSplats(log: string): Splat[] {
  const found: Splat[] = [];
  const lines = log.split('\n');
  lines.forEach((text, i) => {
    if (!SPLAT_PATTERNS.some((re) => re.test(text))) return;
    const head = lines.slice(i + 1, i + REPORT_HEAD_LINES);
    const known = KNOWN_UPSTREAM.find((k) => k.first.test(text) && k.body.every((re) => head.some((l) => re.test(l))));
    found.push({ line: i + 1, text: text.trimEnd(), ...(known ? { known: known.reference } : {}) });
  });
  return found;
}

/** The reports that fail a run: all but the known upstream ones. */
export function unknownSplats(splats: readonly Splat[]): Splat[] {
  return splats.filter((s) => s.known === undefined);
}
