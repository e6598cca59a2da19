/**
 * Is this machine quiet enough for benchmark figures? Checked before
 * `p2pdma bench` starts and between its runs, and recorded with the
 * results: a 1-minute load average above a share of the CPUs, or another
 * QEMU, compiler or linker running, makes any figure a measure of the
 * neighbours as much as of the code.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Process names (/proc/PID/comm) that compete for the CPU and memory bandwidth for minutes. */
const NOISY = /^(qemu-system-.*|cc1|cc1plus|cc1obj|gcc|g\+\+|c\+\+|clang(\+\+)?(-\d+)?|ld|ld\.bfd|ld\.gold|ld\.lld|lld|mold|rustc|as|make|ninja)$/;

/** Load per CPU above which the machine counts as busy. */
export const DEFAULT_LOAD_PER_CPU = 0.25;

export interface QuietCheck {
  quiet: boolean;
  /** When (ISO time) and where in the run (before, before round N). */
  at: string;
  when: string;
  loadavg1: number;
  cpus: number;
  maxLoad: number;
  /** The 1-minute load was not judged (right after our own guest ran, it counts that guest). */
  loadIgnored: boolean;
  busyProcesses: { pid: number; comm: string }[];
  reasons: string[];
}

export interface QuietOptions {
  procDir?: string;
  cpus?: number;
  loadPerCpu?: number;
  /** Skip the load test (see QuietCheck.loadIgnored). */
  ignoreLoad?: boolean;
  /** Processes of our own (a guest we still run) that do not count. */
  ownPids?: readonly number[];
  when?: string;
}

export function checkQuiet(o: QuietOptions = {}): QuietCheck {
  const proc = o.procDir ?? '/proc';
  const cpus = o.cpus ?? os.availableParallelism();
  const maxLoad = cpus * (o.loadPerCpu ?? DEFAULT_LOAD_PER_CPU);
  const loadavg1 = Number(fs.readFileSync(path.join(proc, 'loadavg'), 'utf8').split(/\s+/)[0]);
  const own = new Set([process.pid, ...(o.ownPids ?? [])]);
  const busyProcesses: { pid: number; comm: string }[] = [];
  for (const entry of fs.readdirSync(proc)) {
    if (!/^\d+$/.test(entry) || own.has(Number(entry))) continue;
    let comm: string;
    try {
      comm = fs.readFileSync(path.join(proc, entry, 'comm'), 'utf8').trim();
    } catch {
      continue; // gone since readdir
    }
    if (NOISY.test(comm)) busyProcesses.push({ pid: Number(entry), comm });
  }
  const reasons: string[] = [];
  if (!o.ignoreLoad && loadavg1 > maxLoad) reasons.push(`load average ${loadavg1} > ${maxLoad.toFixed(2)} (${cpus} CPUs)`);
  if (busyProcesses.length) {
    const names = [...new Set(busyProcesses.map((p) => p.comm))].join(', ');
    reasons.push(`${busyProcesses.length} other process(es) running: ${names}`);
  }
  return {
    quiet: reasons.length === 0,
    at: new Date().toISOString(),
    when: o.when ?? 'before',
    loadavg1,
    cpus,
    maxLoad,
    loadIgnored: o.ignoreLoad ?? false,
    busyProcesses,
    reasons,
  };
}
