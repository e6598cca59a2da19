/**
 * Run one command (or an interactive shell) in the p2pdma test guest: the
 * host's root shared read-only, two NVMe controllers with CMBs in a chosen
 * topology, soft-RoCE, vgem, udmabuf and dma-heaps. The guest command's exit
 * status becomes ours; a timeout, a panic or any kernel splat is a failure.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chooseAccel, Accel } from './accel';
import { HOST_CONTROL_SOCKET, parseTopologies, QMP_SOCKET, qemuArgs, Topology } from './qemu-args';
import type { FabricNic } from './nodes';
import { relayGuestRequests } from './host-control';
import { PVRDMA_MAD_SOCKET, PVRDMA_QMP_SOCKET, PvrdmaBackend, relayGids } from './pvrdma';
import { startRdmacmMux } from './rdmacm-mux';
import { findSplats, Splat, unknownSplats } from './splats';
import { isKernelName, kernelBuildArgs, kernelLabel, KernelName } from './kernel-names';
import { hostTscKhz } from './tsc';
import { packageRoot } from '../../lib/core/package-root';

export const PROJECT_DIR = packageRoot;
export const KERNEL_BUILD_SCRIPT = path.join(PROJECT_DIR, 'scripts', 'kernel', 'build.sh');
export const CACHE_DIR = process.env.P2PDMA_CACHE ?? path.join(os.homedir(), '.cache', 'p2pdma');

export type { KernelName } from './kernel-names';

export interface VmOptions {
  /** A name of ours (kernel-names.ts: built and cached on demand) or a bzImage path. */
  kernel: KernelName | string;
  /** Build and boot the KASAN + lockdep + kmemleak variant of a named kernel. */
  debug?: boolean;
  /** One topology, or several in one guest (an NVMe pair each; parseTopologies). */
  topology?: Topology | readonly Topology[];
  /** An Intel vIOMMU in front of the PCI devices (intel_iommu=on). */
  iommu?: boolean;
  /** ivshmem and a pci-testdev behind one ACS-capable root port (QemuArgsOptions.acsPair). */
  acsPair?: boolean;
  /** The headless virtio-gpu-pci (QemuArgsOptions.virtioGpu). Default true. */
  virtioGpu?: boolean;
  /** TCG's vCPU threading (default multi: one host thread per vCPU). */
  tcgThread?: 'multi' | 'single';
  /** 'auto' boots with KVM only where a probe proved it works. */
  accel?: Accel | 'auto';
  /** Command and arguments to run in the guest; ignored by a shell. */
  command?: string[];
  shell?: boolean;
  /** Guest working directory; defaults to the current one. */
  cwd?: string;
  timeoutSec?: number;
  memoryMiB?: number;
  cpus?: number;
  cmbMiB?: number;
  hugepages?: number;
  /**
   * The guest's RDMA device: 'rxe' (soft-RoCE on its virtio-net, default) or
   * 'pvrdma': a first-level guest runs QEMU again and the command runs in the
   * second-level guest on a pvrdma device backed by the first level's rxe0.
   */
  rdma?: 'rxe' | 'pvrdma';
  /** Internal (the first level of a pvrdma run): back pvrdma by this device. */
  pvrdmaBackend?: PvrdmaBackend;
  /** Host directories the guest may write, at the same paths (results, reports). */
  rwDirs?: string[];
  /** Environment variables to set in the guest. */
  env?: Record<string, string>;
  /** One node of a two-node run (harness/vm/run-nodes.ts): its NIC on the shared wire. */
  fabric?: FabricNic;
  /** Stops the guest (SIGKILL to QEMU), failing the run with the signal's reason. */
  signal?: AbortSignal;
  /** Results directory to create (default: a new one under P2PDMA_VM_TMP or the OS's). */
  resultsDir?: string;
  /** Keep the results directory even when the run passed. */
  keep?: boolean;
  /** Where the guest's output goes (default: this process's stdout). */
  output?: NodeJS.WritableStream;
  /** Progress lines of the harness itself (default: stderr). */
  log?: (line: string) => void;
}

export interface VmResult {
  ok: boolean;
  /** The guest command's exit status, or null when the guest never reported one. */
  exitCode: number | null;
  /** Why the run failed, when it did. */
  reason?: string;
  splats: Splat[];
  timedOut: boolean;
  kernel: string;
  accel: Accel;
  seconds: number;
  /** Console log, dmesg, kmemleak report and QEMU's stderr (removed on success unless keep). */
  resultsDir: string;
}

/** Resolve a kernel name to a bzImage, building it (or hitting the cache) first. */
export function resolveKernel(kernel: string, debug: boolean, log: (l: string) => void): string {
  if (!isKernelName(kernel)) {
    if (!fs.existsSync(kernel)) throw new Error(`kernel image not found: ${kernel}`);
    return path.resolve(kernel);
  }
  const args = ['--print-path', ...kernelBuildArgs(kernel, debug)];
  log(`kernel: ${kernel}${debug ? ' (debug)' : ''}`);
  const r = spawnSync(KERNEL_BUILD_SCRIPT, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the ${kernel} kernel failed (${KERNEL_BUILD_SCRIPT} ${args.join(' ')})`);
  return path.join(r.stdout.trim(), 'bzImage');
}

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Memory the first level of a pvrdma run needs beside its guest's. */
const PVRDMA_OUTER_MIB = 1536;
/** The second level's memory and vCPUs: TCG inside TCG, keep it small. */
const PVRDMA_INNER_MIB = 1024;
const PVRDMA_INNER_CPUS = 1;

/**
 * The pvrdma lane's first level: boots the same kernel with rxe0, whose job
 * runs this CLI again to boot the second level with pvrdma on rxe0.
 */
function runNestedPvrdma(o: VmOptions, kernel: string, log: (l: string) => void): Promise<VmResult> {
  const innerMiB = o.memoryMiB ?? PVRDMA_INNER_MIB;
  const innerTimeout = o.timeoutSec ?? 2400;
  const inner = [
    'node', path.join(PROJECT_DIR, 'dist', 'cli.js'), 'vm', 'run',
    '--kernel', kernel, '--accel', 'tcg', '--pvrdma-backend', 'rxe0:eth0',
    '--topology', parseTopologies(o.topology ?? 'switch').join(','),
    '--memory', String(innerMiB), '--cpus', String(o.cpus ?? PVRDMA_INNER_CPUS),
    '--timeout', String(innerTimeout),
    ...(o.cmbMiB ? ['--cmb', String(o.cmbMiB)] : []),
    ...(o.hugepages ? ['--hugepages', String(o.hugepages)] : []),
    ...(o.iommu ? ['--iommu'] : []),
    ...(o.keep ? ['--keep'] : []),
    ...(o.rwDirs ?? []).flatMap((d) => ['--rwdir', path.resolve(d)]),
    // The inner run boots a bzImage path; tell its tests which kernel that is.
    ...Object.entries({ P2PDMA_KERNEL: kernelLabel(o.kernel), P2PDMA_DEBUG_KERNEL: o.debug ? '1' : '0', ...o.env })
      .flatMap(([k, v]) => ['--env', `${k}=${v}`]),
    '--', ...(o.command ?? []),
  ];
  log('pvrdma: the first-level guest boots QEMU again for the second level (TCG inside TCG)');
  return runVm({
    ...o,
    kernel,
    debug: false,
    rdma: 'rxe',
    iommu: false,
    command: inner,
    memoryMiB: innerMiB + PVRDMA_OUTER_MIB,
    cpus: 2,
    timeoutSec: innerTimeout + 300,
  });
}

export async function runVm(o: VmOptions): Promise<VmResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(`[vm] ${l}\n`));
  const started = Date.now();
  const kernel = resolveKernel(o.kernel, o.debug ?? false, log);
  if (o.rdma === 'pvrdma' && !o.pvrdmaBackend) {
    if (o.shell) throw new TypeError('vm shell does not support --rdma pvrdma');
    return runNestedPvrdma(o, kernel, log);
  }
  const topologies = parseTopologies(o.topology ?? 'switch');
  const accelChoice = o.accel && o.accel !== 'auto'
    ? { accel: o.accel, reason: 'requested' }
    : chooseAccel(kernel, CACHE_DIR);
  const cwd = path.resolve(o.cwd ?? process.cwd());
  if (!o.shell && !o.command?.length) throw new TypeError('a command to run in the guest is required');

  const resultsDir = o.resultsDir
    ? (fs.mkdirSync(o.resultsDir, { recursive: true }), o.resultsDir)
    : fs.mkdtempSync(path.join(process.env.P2PDMA_VM_TMP ?? os.tmpdir(), 'p2pdma-vm-'));
  const nvmeImages = Array.from({ length: 2 * topologies.length }, (_, i) => {
    const image = path.join(resultsDir, `nvme${i}.img`);
    fs.closeSync(fs.openSync(image, 'w'));
    fs.truncateSync(image, 256 << 20);
    return image;
  });

  const rwDirs = (o.rwDirs ?? []).map((d) => path.resolve(d));
  for (const d of rwDirs) {
    if (!fs.statSync(d, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`--rwdir ${d} is not a directory`);
  }
  const env: Record<string, string> = {
    P2PDMA_RWDIRS: rwDirs.join('\n'),
    P2PDMA_REPO: PROJECT_DIR,
    P2PDMA_CWD: cwd,
    P2PDMA_MODE: o.shell ? 'shell' : 'run',
    // The guest's topologies, and the one a test file gets by default
    // (scripts/guest-suite.sh's FILE@TOPOLOGY picks another).
    P2PDMA_TOPOLOGIES: topologies.join(','),
    P2PDMA_TOPOLOGY: topologies[0],
    P2PDMA_IOMMU: o.iommu ? '1' : '0',
    P2PDMA_ACS_PAIR: o.acsPair ? '1' : '0',
    P2PDMA_KERNEL: kernelLabel(o.kernel),
    // The kernel's build directory: its selftests/ and headers/ for the guest suite.
    P2PDMA_KERNEL_DIR: path.dirname(kernel),
    // rdma-core with rxe's reg_dmabuf_mr (scripts/rdma-core/build.sh), for rdma-thirdparty.test.ts.
    P2PDMA_RDMA_CORE_DIR: path.join(CACHE_DIR, 'rdma-core', 'rxe-dmabuf'),
    P2PDMA_DEBUG_KERNEL: o.debug ? '1' : '0',
    P2PDMA_RDMA: o.pvrdmaBackend ? 'pvrdma' : 'rxe',
    P2PDMA_TERM: process.env.TERM ?? 'dumb',
    ...o.env,
  };
  fs.writeFileSync(
    path.join(resultsDir, 'job.env'),
    Object.entries(env).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join(''),
  );
  fs.writeFileSync(path.join(resultsDir, 'job.sh'), `${(o.command ?? []).map(shellQuote).join(' ')}\n`);

  const args = qemuArgs({
    kernel,
    init: path.join(PROJECT_DIR, 'scripts', 'vm', 'init'),
    resultsDir,
    projectDir: PROJECT_DIR,
    nvmeImages,
    topology: topologies,
    iommu: o.iommu ?? false,
    acsPair: o.acsPair ?? false,
    virtioGpu: o.virtioGpu ?? true,
    tcgThread: o.tcgThread,
    accel: accelChoice.accel,
    tscKhz: hostTscKhz(),
    memoryMiB: o.memoryMiB ?? 2048,
    cpus: o.cpus ?? 2,
    cmbMiB: o.cmbMiB ?? 64,
    hugepages: o.hugepages ?? 16,
    rwDirs,
    pvrdma: o.pvrdmaBackend,
    fabric: o.fabric,
  });
  log(`booting ${path.basename(path.dirname(kernel))} on ${accelChoice.accel} (${accelChoice.reason}), topology ${topologies.join(' + ')}${o.iommu ? ', vIOMMU' : ''}`);

  const timeoutSec = o.timeoutSec ?? 900;
  // QEMU connects to the mux at start-up: it must listen first.
  const mux = o.pvrdmaBackend ? await startRdmacmMux(path.join(resultsDir, PVRDMA_MAD_SOCKET)) : undefined;
  const qemuStderr = fs.openSync(path.join(resultsDir, 'qemu.stderr'), 'w');
  const child = spawn('qemu-system-x86_64', args, {
    stdio: [o.shell ? 'inherit' : 'ignore', o.shell ? 'inherit' : 'pipe', qemuStderr],
  });
  if (!o.shell) child.stdout!.pipe(o.output ?? process.stdout, { end: false });
  const relayStop = new AbortController();
  const relay = relayGuestRequests(
    path.join(resultsDir, QMP_SOCKET),
    path.join(resultsDir, HOST_CONTROL_SOCKET),
    relayStop.signal,
    log,
  );
  const gids = o.pvrdmaBackend
    ? relayGids(path.join(resultsDir, PVRDMA_QMP_SOCKET), relayStop.signal, log)
    : Promise.resolve();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutSec * 1000);
  // QEMU is our child, not the caller's: a harness told to stop (CI's
  // timeout, kill) takes the guest with it instead of leaving it running.
  let stoppedBy: NodeJS.Signals | undefined;
  const stop = (signal: NodeJS.Signals) => {
    stoppedBy = signal;
    child.kill('SIGKILL');
  };
  const stopSignals: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP'];
  for (const sig of stopSignals) process.once(sig, stop);
  // The other node of a two-node run failed or hung: this one ends too.
  let aborted: string | undefined;
  const abort = () => {
    aborted = String(o.signal?.reason ?? 'aborted');
    child.kill('SIGKILL');
  };
  if (o.signal?.aborted) abort();
  else o.signal?.addEventListener('abort', abort, { once: true });
  const qemuStatus = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  }).finally(() => {
    for (const sig of stopSignals) process.off(sig, stop);
    o.signal?.removeEventListener('abort', abort);
    clearTimeout(timer);
    fs.closeSync(qemuStderr);
    relayStop.abort();
  });
  await Promise.all([relay, gids]);
  if (mux) {
    await mux.close();
    log(`pvrdma: rdmacm-mux answered ${JSON.stringify(mux.counts)}`);
  }

  const read = (name: string) => {
    try {
      return fs.readFileSync(path.join(resultsDir, name), 'utf8');
    } catch {
      return '';
    }
  };
  const rcText = read('rc').trim();
  const exitCode = rcText === '' ? null : Number(rcText);
  const consoleLog = read('console.log');
  const allSplats = [...findSplats(consoleLog), ...findSplats(read('kmemleak'))];
  const splats = unknownSplats(allSplats);
  for (const k of allSplats.filter((s) => s.known)) log(`known upstream kernel report, not failed: ${k.text} (${k.known})`);

  let reason: string | undefined;
  if (stoppedBy) reason = `stopped by ${stoppedBy}`;
  // A guest that wrote its status before the abort reached it finished.
  else if (aborted && exitCode === null) reason = `stopped: ${aborted}`;
  else if (timedOut) reason = `the guest did not finish within ${timeoutSec} s`;
  else if (exitCode === null) {
    const panic = /Kernel panic - .*/.exec(consoleLog);
    reason = panic
      ? `the guest kernel panicked: ${panic[0]}`
      : `the guest reported no exit status (QEMU exited with ${qemuStatus}: ${read('qemu.stderr').trim() || 'no message'})`;
  } else if (exitCode !== 0) reason = `the guest command exited with status ${exitCode}`;
  else if (splats.length) reason = `the guest kernel reported ${splats.length} problem(s): ${splats[0].text}`;

  const ok = reason === undefined;
  const seconds = (Date.now() - started) / 1000;
  if (!ok) {
    log(`FAILED: ${reason}`);
    const tail = consoleLog.trimEnd().split('\n').slice(-40).join('\n');
    if (splats.length || exitCode === null) log(`kernel console (last lines):\n${tail}`);
    log(`kept ${resultsDir} (console.log, dmesg, kmemleak, qemu.stderr)`);
  } else {
    log(`guest command passed in ${seconds.toFixed(1)} s`);
  }
  for (const image of nvmeImages) fs.rmSync(image, { force: true });
  if (ok && !o.keep) fs.rmSync(resultsDir, { recursive: true, force: true });
  return { ok, exitCode, reason, splats, timedOut, kernel, accel: accelChoice.accel, seconds, resultsDir };
}
