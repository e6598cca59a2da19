/**
 * The host's TSC frequency, for the guest's kernel command line
 * (`tsc_early_khz=`). Under TCG the guest's TSC is the host's, and the guest
 * kernel calibrates it against the PIT at boot: on a loaded host a vCPU
 * thread descheduled during that loop once made a guest find a 29.7 MHz TSC
 * on a 2596 MHz machine, after which its clock ran about 87 times too fast
 * and in-guest timeouts fired at once (2026-12-07, three QEMU beside a host
 * test suite on 2 cores). Given the frequency, the guest skips that loop.
 *
 * With it goes `tsc=reliable`: the kernel's clocksource watchdog compares
 * the TSC with the HPET every half second, and while both vCPUs spin (a
 * latency benchmark) QEMU answers the HPET late, the watchdog declares the
 * TSC unstable and the guest switches to the HPET for good, after which
 * every clock read is an emulated MMIO access (seen 2026-12-08: 30 s into
 * ib_write_lat; the addon's spin-waits, which read the clock, got 5-20x
 * slower). Under TCG the guest's TSC is the host's constant, nonstop one.
 */
import * as fs from 'node:fs';

/** The TSC frequency in kHz where the host's TSC is constant, else undefined. */
export function hostTscKhz(cpuinfo = readCpuinfo()): number | undefined {
  const first = cpuinfo.split('\n\n')[0] ?? '';
  const flags = /^flags\s*:\s*(.*)$/m.exec(first)?.[1].split(/\s+/) ?? [];
  if (!flags.includes('constant_tsc') || !flags.includes('nonstop_tsc')) return undefined;
  const mhz = Number(/^cpu MHz\s*:\s*([0-9.]+)$/m.exec(first)?.[1]);
  return mhz > 0 ? Math.round(mhz * 1000) : undefined;
}

function readCpuinfo(): string {
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}
