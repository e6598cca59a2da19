/**
 * NVMe over Fabrics: an nvmet target configured through configfs, and the
 * host side that connects to one through `/dev/nvme-fabrics`.
 *
 * `NvmeOf.createTarget()` builds, under `/sys/kernel/config/nvmet` (configfs
 * is mounted there first if it is not): a subsystem (any host, or the given
 * host NQNs), one namespace backed by a local block device with its
 * `p2pmem` attribute (a CMB's PCI function, `'auto'` or off), and a port
 * (rdma or tcp on an IPv4/IPv6 address, or loop) linked to the subsystem,
 * which is what enables the port. Every step is undone, in reverse, on
 * `close()` and when a later step fails: configfs refuses to remove a
 * directory that still has links or children, so the order is the port's
 * link, the port, the namespace (disabled first), the allowed hosts, the
 * subsystem.
 *
 * `NvmeOf.connect()` writes the options string (`transport=rdma,traddr=...`)
 * to `/dev/nvme-fabrics`, reads back the new controller's instance, and waits
 * until the controller is live and its namespaces have block devices; each
 * opens with `Nvme.open()` as a local one does (`connection.open()`).
 * `close()` closes what it opened and deletes the controller
 * (`delete_controller` in sysfs).
 *
 * Whether nvmet stages data in p2pmem is the kernel's choice per controller
 * (`nvmet_setup_p2p_ns_map()`): only a transport whose device DMAs as a PCI
 * function asks for it (nvmet-rdma, when `ib_dma_pci_p2p_dma_supported()`).
 * Software RDMA (rxe, siw) copies with the CPU and never does; loop hands the
 * host's own pages to the backing device. `target.p2pmemFor()` says which,
 * and why; docs/nvmeof.md has the kernel's reasoning and what would change it.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { abortError, closedError, type CodedError, illegalConstructor, invalidArgType, invalidArgValue, outOfRange, sysError, type SystemError, validateObject } from '../core/errors';
import { Nvme, type NvmeOpenOptions } from './nvme';
import { normalizeBdf } from './pci';

export type NvmeOfTransport = 'rdma' | 'tcp' | 'loop';

/** The kernel option each transport needs on each side. */
const TARGET_CONFIG: Record<NvmeOfTransport, string> = { rdma: 'CONFIG_NVME_TARGET_RDMA', tcp: 'CONFIG_NVME_TARGET_TCP', loop: 'CONFIG_NVME_TARGET_LOOP' };
const HOST_CONFIG: Record<NvmeOfTransport, string> = { rdma: 'CONFIG_NVME_RDMA', tcp: 'CONFIG_NVME_TCP', loop: 'CONFIG_NVME_TARGET_LOOP' };

/** Where the kernel offers configfs. */
const CONFIGFS = '/sys/kernel/config';

/** NVMe-oF's well-known port (trsvcid). */
export const NVMF_DEFAULT_PORT = 4420;

export interface NvmeOfTargetOptions {
  /** The subsystem's NQN, e.g. 'nqn.2026-12.io.p2pdma:test'. */
  nqn: string;
  /** The block device behind the namespace (e.g. '/dev/nvme1n1'). */
  device: string;
  /** The namespace's id. Default 1. */
  nsid?: number;
  transport: NvmeOfTransport;
  /** The address to listen on (rdma, tcp): an IPv4 or IPv6 address of this machine. */
  address?: string;
  /** The service id (TCP/RDMA port). Default 4420. */
  port?: number;
  /** The nvmet port's number in configfs. Default: the lowest free one. */
  portId?: number;
  /** Host NQNs allowed to connect. Default: any host. */
  hosts?: string[];
  /**
   * Where nvmet stages the namespace's data: a p2pmem provider (a CMB's PCI
   * address), `'auto'` (a p2pmem provider near both the backing device and
   * the RDMA device, chosen per controller), or `false` (host memory, the
   * default).
   */
  p2pmem?: string | 'auto' | false;
  /** Where configfs is (mounted there when it is not). Default '/sys/kernel/config'. */
  configfs?: string;
  /** The sysfs mount. Default '/sys'. */
  sysfs?: string;
}

/** Whether nvmet will stage a host's I/O in p2pmem, and why (see `NvmeOfTarget.p2pmemFor()`). */
export interface NvmeOfP2pmemUse {
  /** What the namespace asks for: its `p2pmem` attribute as the kernel shows it. */
  requested: string | 'auto' | false;
  /** Whether a controller on this port can get p2pmem. */
  used: boolean;
  reason: string;
}

export interface NvmeOfConnectOptions {
  /** The subsystem NQN to connect to. */
  nqn: string;
  transport: NvmeOfTransport;
  /** The target's address (rdma, tcp). */
  address?: string;
  /** Default 4420. */
  port?: number;
  /** This host's NQN. Default: the kernel's default host NQN. */
  hostnqn?: string;
  /** Seconds the host keeps reconnecting a lost controller before removing it (ctrl_loss_tmo). Default: the kernel's (600). */
  ctrlLossTimeout?: number;
  /** How long to wait for the controller's namespaces, ms. Default 60000. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Default '/dev/nvme-fabrics'. */
  fabrics?: string;
  /** Default '/sys'. */
  sysfs?: string;
}

function coded(message: string, code: string, caller: Function, cause?: unknown): CodedError {
  const e = new Error(message, cause === undefined ? undefined : { cause }) as CodedError;
  e.code = code;
  Error.captureStackTrace(e, caller);
  return e;
}

/** Node's fs error, with why appended and the stack cut at the API call. */
function explain(e: unknown, why: string | undefined, caller: Function): unknown {
  if (e instanceof Error) {
    if (why) e.message += ` (${why})`;
    Error.captureStackTrace(e, caller);
  }
  return e;
}

function validateNqn(v: unknown, name: string, caller: Function): string {
  if (typeof v !== 'string') throw invalidArgType(name, 'of type string', v, caller);
  // NVMF_NQN_SIZE is 223 bytes; configfs names cannot hold '/'; the options
  // string of /dev/nvme-fabrics is split on ',' and '\n'.
  if (v.length === 0 || Buffer.byteLength(v) > 223 || /[/,=\s\x00-\x1f]/.test(v)) {
    throw invalidArgValue(name, v, "must be an NQN of 1-223 bytes without '/', ',', '=' or whitespace", caller);
  }
  return v;
}

function validatePort(v: unknown, name: string, dflt: number, caller: Function): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v, caller);
  if (!Number.isInteger(v) || v < 0 || v > 65535) throw outOfRange(name, 'an integer >= 0 && <= 65535', v, caller);
  return v;
}

function validateTransport(v: unknown, caller: Function): NvmeOfTransport {
  if (v !== 'rdma' && v !== 'tcp' && v !== 'loop') throw invalidArgValue('options.transport', v, "must be 'rdma', 'tcp' or 'loop'", caller);
  return v;
}

function validateAddress(v: unknown, transport: NvmeOfTransport, caller: Function): string | undefined {
  if (transport === 'loop') {
    if (v !== undefined) throw invalidArgValue('options.address', v, 'must be undefined for the loop transport', caller);
    return undefined;
  }
  if (typeof v !== 'string') throw invalidArgType('options.address', 'of type string', v, caller);
  if (net.isIP(v) === 0) throw invalidArgValue('options.address', v, 'must be an IPv4 or IPv6 address', caller);
  return v;
}

function validateString(v: unknown, name: string, dflt: string, caller: Function): string {
  if (v === undefined) return dflt;
  if (typeof v !== 'string') throw invalidArgType(name, 'of type string', v, caller);
  return v;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** One write(2) of the value, no newline: pci_p2pdma_enable_store() matches a PCI name byte for byte. */
function writeAttr(file: string, value: string): void {
  fs.writeFileSync(file, value);
}

/** configfs mounted at `dir`, mounting it when it is not (root only). */
function ensureConfigfs(dir: string, caller: Function): void {
  const mounts = readText('/proc/self/mounts') ?? '';
  if (mounts.split('\n').some((l) => l.split(' ')[1] === dir && l.split(' ')[2] === 'configfs')) return;
  if (!fs.existsSync(dir)) throw enoent('stat', dir, 'this kernel has no configfs: CONFIG_CONFIGFS_FS', caller);
  // Only the kernel's own mount point is mounted on; another `options.configfs`
  // is taken as the tree to use (a fake one in the host tests).
  if (dir !== CONFIGFS || fs.existsSync(path.join(dir, 'nvmet'))) return;
  try {
    // Left mounted on close: configfs is the machine's, not this target's.
    execFileSync('mount', ['-t', 'configfs', 'configfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = String((e as { stderr?: Buffer }).stderr ?? '').trim();
    throw coded(`cannot mount configfs on ${dir}: ${stderr || (e as Error).message}`, 'ERR_P2PDMA_CONFIGFS', caller, e);
  }
}

/** Node's ENOENT for a file the kernel would have, with what provides it. */
function enoent(syscall: string, file: string, why: string, caller: Function): SystemError {
  const err = new Error(`ENOENT: no such file or directory, ${syscall} '${file}'`) as SystemError;
  Object.assign(err, { errno: -2, code: 'ENOENT', syscall, path: file });
  return explain(err, why, caller) as SystemError;
}

/** What close() undoes, in reverse. */
type Undo = { what: string; run(): void };

function runUndo(steps: Undo[]): Error[] {
  const failed: Error[] = [];
  for (const s of steps.splice(0).reverse()) {
    try {
      s.run();
    } catch (e) {
      failed.push(new Error(`${s.what}: ${(e as Error).message}`, { cause: e }));
    }
  }
  return failed;
}

// The GC backstop: configfs state outlives the process, so a target
// collected while open is torn down, with a warning, as an Fd is closed.
const targetFinalizer = new FinalizationRegistry<{ steps: Undo[]; nqn: string }>((held) => {
  process.emitWarning(`Removing NVMe-oF target ${held.nqn} on garbage collection`, {
    type: 'Warning',
    code: 'P2PDMA_GC_CLOSE',
    detail: "Its NvmeOfTarget was garbage collected while open. Call close() on it, or declare it with 'using'.",
  });
  const failed = runUndo(held.steps);
  if (failed.length > 0) closeFailed(`removing NVMe-oF target ${held.nqn} on garbage collection`, failed);
});

function closeFailed(what: string, failed: Error[]): void {
  const w = new Error(`${what} failed: ${failed.map((f) => f.message).join('; ')}`, { cause: failed[0] }) as Error & { code: string };
  w.name = 'Warning';
  w.code = 'P2PDMA_CLOSE_FAILED';
  process.emitWarning(w);
}

let creating = false;

/** An nvmet subsystem with one namespace, exported on one port. Made by `NvmeOf.createTarget()`. */
export class NvmeOfTarget implements Disposable {
  readonly nqn: string;
  readonly nsid: number;
  /** The block device behind the namespace. */
  readonly device: string;
  readonly transport: NvmeOfTransport;
  /** The listening address (undefined for loop). */
  readonly address: string | undefined;
  readonly port: number;
  /** The nvmet port's number (`<configfs>/nvmet/ports/<portId>`). */
  readonly portId: number;
  /** The subsystem's configfs directory. */
  readonly path: string;
  readonly #steps: Undo[];
  readonly #sysfs: string;
  #closed = false;

  private constructor(o: { nqn: string; nsid: number; device: string; transport: NvmeOfTransport; address: string | undefined; port: number; portId: number; path: string; steps: Undo[]; sysfs: string }) {
    if (!creating) throw illegalConstructor(new.target);
    this.nqn = o.nqn;
    this.nsid = o.nsid;
    this.device = o.device;
    this.transport = o.transport;
    this.address = o.address;
    this.port = o.port;
    this.portId = o.portId;
    this.path = o.path;
    this.#steps = o.steps;
    this.#sysfs = o.sysfs;
    targetFinalizer.register(this, { steps: o.steps, nqn: o.nqn }, this);
  }

  /** See `NvmeOf.createTarget()`. */
  static create(options: NvmeOfTargetOptions): NvmeOfTarget {
    const caller = NvmeOfTarget.create;
    validateObject(options, 'options', caller);
    const nqn = validateNqn(options.nqn, 'options.nqn', caller);
    if (nqn === 'nqn.2014-08.org.nvmexpress.discovery') throw invalidArgValue('options.nqn', nqn, 'is the discovery subsystem', caller);
    const device = validateString(options.device, 'options.device', '', caller);
    if (device === '') throw invalidArgType('options.device', 'of type string', options.device, caller);
    const nsid = options.nsid ?? 1;
    if (typeof nsid !== 'number') throw invalidArgType('options.nsid', 'of type number', nsid, caller);
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > 0xfffffffe) throw outOfRange('options.nsid', 'an integer >= 1 && <= 4294967294', nsid, caller);
    const transport = validateTransport(options.transport, caller);
    const address = validateAddress(options.address, transport, caller);
    const port = validatePort(options.port, 'options.port', NVMF_DEFAULT_PORT, caller);
    let portId = options.portId;
    if (portId !== undefined) {
      if (typeof portId !== 'number') throw invalidArgType('options.portId', 'of type number', portId, caller);
      if (!Number.isInteger(portId) || portId < 1 || portId > 65535) throw outOfRange('options.portId', 'an integer >= 1 && <= 65535', portId, caller);
    }
    const hosts = options.hosts;
    if (hosts !== undefined) {
      if (!Array.isArray(hosts)) throw invalidArgType('options.hosts', 'an array of strings', hosts, caller);
      hosts.forEach((h, i) => validateNqn(h, `options.hosts[${i}]`, caller));
    }
    const p2pmem = options.p2pmem ?? false;
    let p2pValue: string;
    if (p2pmem === false) p2pValue = '0';
    else if (p2pmem === 'auto') p2pValue = '1';
    else if (typeof p2pmem === 'string') {
      try {
        p2pValue = normalizeBdf(p2pmem, caller);
      } catch {
        throw invalidArgValue('options.p2pmem', p2pmem, "must be a PCI address like '0000:03:00.0', 'auto' or false", caller);
      }
    }
    else throw invalidArgType('options.p2pmem', "a PCI address, 'auto' or false", p2pmem, caller);
    const configfs = validateString(options.configfs, 'options.configfs', CONFIGFS, caller);
    const sysfs = validateString(options.sysfs, 'options.sysfs', '/sys', caller);

    ensureConfigfs(configfs, caller);
    const root = path.join(configfs, 'nvmet');
    if (!fs.existsSync(root)) throw enoent('stat', root, 'this kernel has no NVMe target: CONFIG_NVME_TARGET', caller);

    const steps: Undo[] = [];
    const subsys = path.join(root, 'subsystems', nqn);
    const ns = path.join(subsys, 'namespaces', String(nsid));
    let portDir = '';
    // Each step: do it, then record its undo (a step that failed left nothing).
    const step = (what: string, run: () => void, undo?: () => void, why?: (e: SystemError) => string | undefined) => {
      try {
        run();
      } catch (e) {
        throw explain(e, why?.(e as SystemError), caller);
      }
      if (undo) steps.push({ what, run: undo });
    };
    try {
      step(`rmdir ${subsys}`, () => fs.mkdirSync(subsys), () => fs.rmdirSync(subsys), (e) =>
        e.code === 'EEXIST' ? `a subsystem ${nqn} exists already; it is not this target's to change` : undefined);
      if (hosts === undefined || hosts.length === 0) {
        step('allow any host', () => writeAttr(path.join(subsys, 'attr_allow_any_host'), '1'));
      } else {
        step('allow listed hosts', () => writeAttr(path.join(subsys, 'attr_allow_any_host'), '0'));
        for (const h of hosts) {
          const hostDir = path.join(root, 'hosts', h);
          if (!fs.existsSync(hostDir)) step(`rmdir ${hostDir}`, () => fs.mkdirSync(hostDir), () => fs.rmdirSync(hostDir));
          const link = path.join(subsys, 'allowed_hosts', h);
          step(`unlink ${link}`, () => fs.symlinkSync(hostDir, link), () => fs.unlinkSync(link));
        }
      }
      step(`rmdir ${ns}`, () => fs.mkdirSync(ns), () => fs.rmdirSync(ns));
      step('device_path', () => writeAttr(path.join(ns, 'device_path'), device));
      if (p2pmem !== false) {
        const attr = path.join(ns, 'p2pmem');
        if (!fs.existsSync(attr)) throw enoent('open', attr, 'nvmet has no p2pmem attribute: CONFIG_PCI_P2PDMA', caller);
        step('p2pmem', () => writeAttr(attr, p2pValue), undefined, (e) =>
          e.code === 'ENODEV' ? `${p2pValue} is no PCI device with p2pmem` : undefined);
      }
      step(`disable namespace ${nsid}`, () => writeAttr(path.join(ns, 'enable'), '1'), () => writeAttr(path.join(ns, 'enable'), '0'), (e) => {
        if (e.code === 'EINVAL' && p2pmem !== false) {
          return p2pmem === 'auto'
            ? `nvmet found no published p2pmem that ${device} can reach, or ${device}'s driver does not do peer-to-peer DMA; the kernel log says which`
            : `${p2pValue}'s p2pmem and ${device} cannot reach each other peer to peer, or ${device}'s driver does not do peer-to-peer DMA; the kernel log says which`;
        }
        if (e.code === 'ENOENT' || e.code === 'ENOTBLK') return `nvmet cannot open ${device} as the namespace's device`;
        return undefined;
      });
      const ports = path.join(root, 'ports');
      // The lowest free port number; another process may take it between
      // the look and the mkdir (EEXIST), then the next.
      for (let id = portId ?? 1; ; id++) {
        const dir = path.join(ports, String(id));
        if (portId === undefined && fs.existsSync(dir)) continue;
        try {
          fs.mkdirSync(dir);
        } catch (e) {
          if (portId === undefined && (e as SystemError).code === 'EEXIST' && id < 65535) continue;
          throw explain(e, (e as SystemError).code === 'EEXIST' ? `nvmet port ${id} exists already` : undefined, caller);
        }
        portDir = dir;
        portId = id;
        steps.push({ what: `rmdir ${dir}`, run: () => fs.rmdirSync(dir) });
        break;
      }
      step('addr_trtype', () => writeAttr(path.join(portDir, 'addr_trtype'), transport));
      if (address !== undefined) {
        step('addr_adrfam', () => writeAttr(path.join(portDir, 'addr_adrfam'), net.isIPv6(address) ? 'ipv6' : 'ipv4'));
        step('addr_traddr', () => writeAttr(path.join(portDir, 'addr_traddr'), address));
        step('addr_trsvcid', () => writeAttr(path.join(portDir, 'addr_trsvcid'), String(port)));
      }
      // Linking the first subsystem enables the port: the transport listens.
      const link = path.join(portDir, 'subsystems', nqn);
      step(`unlink ${link}`, () => fs.symlinkSync(subsys, link), () => fs.unlinkSync(link), (e) => {
        if (e.code === 'EINVAL') return `nvmet could not enable a ${transport} port: no ${transport} transport (${TARGET_CONFIG[transport]}), or it refused the address; the kernel log says which`;
        if (e.code === 'EADDRNOTAVAIL' || e.code === 'EADDRINUSE' || e.code === 'ENODEV') {
          return `nvmet-${transport} cannot listen on ${address}:${port}${transport === 'rdma' ? ' (is the address on an RDMA device, e.g. rxe over its NIC?)' : ''}`;
        }
        return undefined;
      });
    } catch (e) {
      const failed = runUndo(steps);
      if (failed.length > 0 && e instanceof Error) e.message += `; undoing the earlier steps also failed: ${failed.map((f) => f.message).join('; ')}`;
      throw e;
    }
    creating = true;
    try {
      return new NvmeOfTarget({ nqn, nsid, device, transport, address, port, portId: portId!, path: subsys, steps, sysfs });
    } finally {
      creating = false;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The namespace's `p2pmem` attribute as the kernel shows it: false, 'auto' or the provider's PCI address. */
  get p2pmem(): string | 'auto' | false {
    if (this.#closed) throw closedError('NvmeOfTarget');
    const v = readText(path.join(this.path, 'namespaces', String(this.nsid), 'p2pmem'));
    if (v === undefined || v === '0') return false;
    return v === '1' ? 'auto' : v;
  }

  /**
   * Whether a controller connecting to this port gets its data staged in
   * p2pmem, and why, by the rule nvmet applies when a host connects
   * (`nvmet_setup_p2p_ns_map()` and `nvmet_p2pmem_ns_add_p2p()`, 6.12):
   * only a transport that names a PCI DMA device as its p2p client gets
   * p2pmem, and then only one that device and the backing device can reach.
   */
  p2pmemFor(): NvmeOfP2pmemUse {
    this.#check(this.p2pmemFor);
    const requested = this.p2pmem;
    if (requested === false) return { requested, used: false, reason: 'the namespace\'s p2pmem attribute is off: nvmet stages data in host memory' };
    if (this.transport === 'loop') {
      return { requested, used: false, reason: 'the loop transport hands the host\'s own pages to the backing device: there is no staging buffer for p2pmem (nvme-loop names no p2p client)' };
    }
    if (this.transport === 'tcp') {
      return { requested, used: false, reason: 'nvmet-tcp names no p2p client: it copies between sockets and host memory' };
    }
    const ib = rdmaDeviceOf(this.address!, this.#sysfs);
    if (ib === undefined) return { requested, used: false, reason: `no RDMA device found for ${this.address} in sysfs` };
    if (ib.pci === undefined) {
      return {
        requested,
        used: false,
        reason:
          `${ib.name} is a software RDMA device (no PCI function, virtual DMA: ib_uses_virt_dma()), so ib_dma_pci_p2p_dma_supported() is false, ` +
          'nvmet-rdma sets no p2p_client and nvmet_setup_p2p_ns_map() gives the controller no p2pmem: I/O is staged in host memory, with no error and no kernel log line',
      };
    }
    return { requested, used: true, reason: `${ib.name} DMAs as PCI function ${ib.pci}: nvmet picks p2pmem that it and the backing device can reach ("nvmet: using p2pmem on ... for nsid ${this.nsid}" in the kernel log)` };
  }

  /** Removes the port link, the port, the namespace, the allowed hosts and the subsystem, in that order. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    targetFinalizer.unregister(this);
    const failed = runUndo(this.#steps);
    if (failed.length > 0) {
      throw coded(`removing NVMe-oF target ${this.nqn} left configfs state behind: ${failed.map((f) => f.message).join('; ')}`, 'ERR_P2PDMA_NVMEOF_TEARDOWN', this.close, failed[0]);
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #check(caller: Function): void {
    if (this.#closed) throw closedError('NvmeOfTarget', caller);
  }
}

/** The RDMA device whose netdev holds `address`, and its PCI function if it has one. */
function rdmaDeviceOf(address: string, sysfs: string): { name: string; pci: string | undefined } | undefined {
  const dir = path.join(sysfs, 'class', 'infiniband');
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch {
    return undefined;
  }
  const netdev = netdevOf(address);
  for (const name of names) {
    const ports = path.join(dir, name, 'ports');
    let owns = netdev === undefined;
    if (netdev !== undefined) {
      try {
        owns = fs.readdirSync(ports).some((p) => fs.readdirSync(path.join(ports, p, 'gid_attrs', 'ndevs')).some((g) => readText(path.join(ports, p, 'gid_attrs', 'ndevs', g)) === netdev));
      } catch {
        owns = false;
      }
    }
    if (!owns) continue;
    let pci: string | undefined;
    try {
      const dev = path.basename(fs.realpathSync(path.join(dir, name, 'device')));
      if (/^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(dev)) pci = dev;
    } catch {
      pci = undefined; // rxe, siw: no parent device
    }
    return { name, pci };
  }
  return undefined;
}

/** The network interface that holds `address`. */
function netdevOf(address: string): string | undefined {
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (addrs?.some((a) => a.address === address)) return name;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// The host side

let connecting = false;

/** A controller connected to a remote (or loop) subsystem. Made by `NvmeOf.connect()`. */
export class NvmeOfConnection implements Disposable {
  /** The controller's name, e.g. 'nvme2'. */
  readonly controller: string;
  /** Its instance number (`instance=` from /dev/nvme-fabrics). */
  readonly instance: number;
  /** The controller id the target gave it. */
  readonly cntlid: number;
  readonly nqn: string;
  /** This host's NQN as the controller presents it. */
  readonly hostnqn: string;
  readonly transport: NvmeOfTransport;
  readonly address: string | undefined;
  readonly port: number;
  /** The namespaces' block devices, e.g. ['/dev/nvme2n1'], by nsid. */
  readonly namespaces: readonly string[];
  readonly #sysfs: string;
  readonly #opened = new Set<Nvme>();
  #closed = false;

  private constructor(o: { controller: string; instance: number; cntlid: number; nqn: string; hostnqn: string; transport: NvmeOfTransport; address: string | undefined; port: number; namespaces: string[]; sysfs: string }) {
    if (!connecting) throw illegalConstructor(new.target);
    this.controller = o.controller;
    this.instance = o.instance;
    this.cntlid = o.cntlid;
    this.nqn = o.nqn;
    this.hostnqn = o.hostnqn;
    this.transport = o.transport;
    this.address = o.address;
    this.port = o.port;
    this.namespaces = Object.freeze(o.namespaces);
    this.#sysfs = o.sysfs;
    connectionFinalizer.register(this, { controller: o.controller, sysfs: o.sysfs }, this);
  }

  /** See `NvmeOf.connect()`. */
  static async connect(options: NvmeOfConnectOptions): Promise<NvmeOfConnection> {
    const caller = NvmeOfConnection.connect;
    validateObject(options, 'options', caller);
    const nqn = validateNqn(options.nqn, 'options.nqn', caller);
    const transport = validateTransport(options.transport, caller);
    const address = validateAddress(options.address, transport, caller);
    const port = validatePort(options.port, 'options.port', NVMF_DEFAULT_PORT, caller);
    const hostnqn = options.hostnqn === undefined ? undefined : validateNqn(options.hostnqn, 'options.hostnqn', caller);
    const lossTmo = options.ctrlLossTimeout;
    if (lossTmo !== undefined) {
      if (typeof lossTmo !== 'number') throw invalidArgType('options.ctrlLossTimeout', 'of type number', lossTmo, caller);
      if (!Number.isInteger(lossTmo) || lossTmo < -1 || lossTmo > 2 ** 31 - 1) throw outOfRange('options.ctrlLossTimeout', 'an integer >= -1', lossTmo, caller);
    }
    const timeoutMs = options.timeoutMs ?? 60_000;
    if (typeof timeoutMs !== 'number') throw invalidArgType('options.timeoutMs', 'of type number', timeoutMs, caller);
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw outOfRange('options.timeoutMs', '>= 0', timeoutMs, caller);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal, caller);
    const fabrics = validateString(options.fabrics, 'options.fabrics', '/dev/nvme-fabrics', caller);
    const sysfs = validateString(options.sysfs, 'options.sysfs', '/sys', caller);
    if (signal?.aborted) throw abortError(signal.reason, caller);

    const args = [`transport=${transport}`];
    if (address !== undefined) args.push(`traddr=${address}`, `trsvcid=${port}`);
    args.push(`nqn=${nqn}`);
    if (hostnqn !== undefined) args.push(`hostnqn=${hostnqn}`);
    if (lossTmo !== undefined) args.push(`ctrl_loss_tmo=${lossTmo}`);
    const request = args.join(',');

    let reply: string;
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(fabrics, 'r+');
    } catch (e) {
      throw explain(e, (e as SystemError).code === 'ENOENT' ? `this kernel has no NVMe over Fabrics host: CONFIG_NVME_FABRICS, with ${HOST_CONFIG[transport]}` : undefined, caller);
    }
    try {
      // The kernel connects (admin queue, then the I/O queues) inside this write.
      try {
        await fh.write(request);
      } catch (e) {
        const errno = (e as SystemError).errno;
        if (typeof errno !== 'number') throw e;
        const err = sysError(errno, 'write', { path: fabrics }, caller);
        const why =
          err.code === 'EINVAL' ? `the kernel refused '${request}': a transport it lacks (${HOST_CONFIG[transport]}), no such subsystem on the target or a bad option; the kernel log says which`
          : `connecting '${request}' failed; the kernel log says why`;
        throw explain(err, why, caller);
      }
      const buf = Buffer.alloc(128);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      reply = buf.toString('utf8', 0, bytesRead).trim();
    } finally {
      await fh.close();
    }
    const m = /instance=(\d+),cntlid=(\d+)/.exec(reply);
    if (m === null) throw coded(`unexpected reply from ${fabrics}: '${reply}'`, 'ERR_P2PDMA_NVMEOF_REPLY', caller);
    const instance = Number(m[1]);
    const controller = `nvme${instance}`;
    const ctrlDir = path.join(sysfs, 'class', 'nvme', controller);
    // From here the controller exists: any failure deletes it again.
    try {
      const namespaces = await waitForNamespaces(ctrlDir, instance, timeoutMs, signal, caller);
      connecting = true;
      try {
        return new NvmeOfConnection({
          controller,
          instance,
          cntlid: Number(m[2]),
          nqn,
          hostnqn: readText(path.join(ctrlDir, 'hostnqn')) ?? hostnqn ?? '',
          transport,
          address,
          port,
          namespaces,
          sysfs,
        });
      } finally {
        connecting = false;
      }
    } catch (e) {
      try {
        deleteController(controller, sysfs);
      } catch (d) {
        if (e instanceof Error) e.message += `; deleting ${controller} again also failed: ${(d as Error).message}`;
      }
      throw e;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The controller's state in sysfs ('live', 'connecting', 'deleting', ...). */
  get state(): string | undefined {
    return readText(path.join(this.#sysfs, 'class', 'nvme', this.controller, 'state'));
  }

  /**
   * Opens namespace `nsid` (default: the first) with `Nvme.open()`; the
   * handle is closed by this connection's close() if it is still open.
   */
  open(nsid?: number, options: NvmeOpenOptions = {}): Nvme {
    if (this.#closed) throw closedError('NvmeOfConnection', this.open);
    let dev: string | undefined;
    if (nsid === undefined) dev = this.namespaces[0];
    else {
      if (typeof nsid !== 'number') throw invalidArgType('nsid', 'of type number', nsid, this.open);
      dev = this.namespaces.find((d) => d.endsWith(`n${nsid}`));
    }
    if (dev === undefined) throw invalidArgValue('nsid', nsid, `is not a namespace of ${this.controller} (${this.namespaces.join(', ') || 'none'})`, this.open);
    const ns = Nvme.open(dev, { sysfs: this.#sysfs, ...options });
    this.#opened.add(ns);
    return ns;
  }

  /** Closes the namespaces opened through open(), then deletes the controller. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    connectionFinalizer.unregister(this);
    for (const ns of this.#opened) ns.close();
    this.#opened.clear();
    try {
      deleteController(this.controller, this.#sysfs);
    } catch (e) {
      throw explain(e, `deleting ${this.controller}`, this.close);
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const connectionFinalizer = new FinalizationRegistry<{ controller: string; sysfs: string }>((held) => {
  process.emitWarning(`Disconnecting NVMe-oF controller ${held.controller} on garbage collection`, {
    type: 'Warning',
    code: 'P2PDMA_GC_CLOSE',
    detail: "Its NvmeOfConnection was garbage collected while open. Call close() on it, or declare it with 'using'.",
  });
  try {
    deleteController(held.controller, held.sysfs);
  } catch (e) {
    closeFailed(`disconnecting ${held.controller} on garbage collection`, [e as Error]);
  }
});

/** Deletes a fabrics controller; one already gone (deleted by the kernel after a lost target) is not an error. */
function deleteController(controller: string, sysfs: string): void {
  const file = path.join(sysfs, 'class', 'nvme', controller, 'delete_controller');
  try {
    fs.writeFileSync(file, '1');
  } catch (e) {
    if ((e as SystemError).code !== 'ENOENT') throw e;
  }
}

/**
 * Whether a namespace's block device opens: its node can be there before
 * the disk is (add_disk() makes the device, and with it the node, before it
 * adds the block device), and an open meanwhile is ENXIO (seen on 7.3 with
 * nvme-rdma under the DEBUG kernel).
 */
function openable(dev: string): boolean {
  try {
    fs.closeSync(fs.openSync(dev, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK));
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENXIO' || code === 'ENOENT' || code === 'ENODEV') return false;
    // Anything else (EACCES for a caller without access): the device is there.
    return true;
  }
}

/** The controller's namespace block devices once it is live and has at least one whose /dev node opens. */
async function waitForNamespaces(ctrlDir: string, instance: number, timeoutMs: number, signal: AbortSignal | undefined, caller: Function): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  // nvme2n1 (no multipath), or the head nvmeXnY of a path nvmeXc2nY.
  const own = new RegExp(`^nvme(\\d+)c${instance}n(\\d+)$|^nvme${instance}n(\\d+)$`);
  for (;;) {
    if (signal?.aborted) throw abortError(signal.reason, caller);
    const state = readText(path.join(ctrlDir, 'state'));
    if (state === 'live') {
      let entries: string[] = [];
      try {
        entries = fs.readdirSync(ctrlDir);
      } catch {
        entries = [];
      }
      const devs: { nsid: number; dev: string }[] = [];
      for (const e of entries) {
        const m = own.exec(e);
        if (m === null) continue;
        const dev = m[1] !== undefined ? `/dev/nvme${m[1]}n${m[2]}` : `/dev/${e}`;
        devs.push({ nsid: Number(m[2] ?? m[3]), dev });
      }
      if (devs.length > 0 && devs.every((d) => openable(d.dev))) return devs.sort((a, b) => a.nsid - b.nsid).map((d) => d.dev);
    }
    if (Date.now() > deadline) {
      throw coded(`${path.basename(ctrlDir)} connected but ${state === 'live' ? 'showed no namespace' : `is '${state ?? 'gone'}', not live`} within ${timeoutMs} ms`, 'ERR_P2PDMA_NVMEOF_TIMEOUT', caller);
    }
    await sleep(50);
  }
}

/** NVMe over Fabrics: an nvmet target (configfs) and the host side (/dev/nvme-fabrics). */
export const NvmeOf = {
  /**
   * Exports a block device as namespace `nsid` of subsystem `nqn` on a new
   * nvmet port (rdma/tcp on `address:port`, or loop). Throws Node-style
   * errors, with the kernel option when nvmet or the transport is missing;
   * a failed step leaves nothing behind.
   */
  createTarget(options: NvmeOfTargetOptions): NvmeOfTarget {
    return NvmeOfTarget.create(options);
  },

  /**
   * Connects to subsystem `nqn` and resolves once the controller is live and
   * its namespaces have block devices. A failure after the kernel made the
   * controller deletes it again.
   */
  connect(options: NvmeOfConnectOptions): Promise<NvmeOfConnection> {
    return NvmeOfConnection.connect(options);
  },

  /** NVMe-oF's well-known port, 4420. */
  defaultPort: NVMF_DEFAULT_PORT,
};
