/**
 * QEMU 7.2's paravirtual RDMA device (pvrdma) for a nested guest.
 *
 * pvrdma forwards every verb to an RDMA device of the machine QEMU runs on
 * (`ibdev=`). This host has none, so the pvrdma lane boots two levels: the
 * first-level guest creates rxe0 on its virtio-net as usual and runs QEMU
 * again, giving the second-level guest a pvrdma function backed by rxe0
 * (docs/harness.md, "The pvrdma lane").
 *
 * Two things QEMU leaves to a management layer, done here:
 * - GIDs: a GID the inner guest's driver adds is looked up in the backend
 *   device's GID table when first used; QEMU only announces it with the QMP
 *   event RDMA_GID_STATUS_CHANGED and expects someone to give the backend's
 *   netdev that address (libvirt's job in production). `relayGids` does.
 * - The MAD multiplexer: pvrdma registers each GID with QEMU's rdmacm-mux
 *   and fails the GID without an answer; harness/vm/rdmacm-mux.ts stands in.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Qmp } from './host-control';

/** The first-level guest's RDMA device and the netdev it runs on. */
export interface PvrdmaBackend {
  ibdev: string;
  netdev: string;
}

/** Second QMP monitor of a pvrdma run: the host-control relay holds the first. */
export const PVRDMA_QMP_SOCKET = 'qmp-pvrdma.sock';
/** The socket of the rdmacm-mux stand-in, which QEMU connects to. */
export const PVRDMA_MAD_SOCKET = 'mad.sock';
/** PCI slot of the vmxnet3 (function 0) + pvrdma (function 1) pair. */
const PVRDMA_SLOT = 0x10;
/**
 * The second level's vmxnet3 MAC. QEMU's default (52:54:00:12:34:56) is also
 * the first level's eth0 MAC, which made the inner link-local GID the same as
 * the backend rxe0's GID 0, and QEMU 7.2's pvrdma treats backend GID index 0
 * as "not found" ("Failed to get bk sgid_idx for sgid_idx 0" on every RC
 * send, then a loop under the big lock that froze the second level).
 */
export const PVRDMA_MAC = '52:54:00:12:34:57';

/** Parses "IBDEV:NETDEV", the form of `vm run --pvrdma-backend`. */
export function parsePvrdmaBackend(spec: string): PvrdmaBackend {
  const m = /^([\w.-]+):([\w.-]+)$/.exec(spec);
  if (!m) throw new TypeError(`a pvrdma backend is IBDEV:NETDEV (e.g. rxe0:eth0), got '${spec}'`);
  return { ibdev: m[1], netdev: m[2] };
}

/**
 * The QEMU arguments of the pvrdma pair. pvrdma sits in function 1 of
 * vmxnet3's slot because the guest driver finds its netdev there. Guest RAM
 * must be shared (the caller backs it with share=on): pvrdma refuses to start
 * otherwise ("Only shared memory backed ram is supported").
 */
export function pvrdmaArgs(resultsDir: string, backend: PvrdmaBackend): string[] {
  const slot = PVRDMA_SLOT.toString(16);
  return [
    '-netdev', 'user,id=pv0,restrict=on',
    '-device', `vmxnet3,netdev=pv0,mac=${PVRDMA_MAC},addr=${slot}.0,multifunction=on`,
    '-chardev', `socket,id=mad,path=${resultsDir}/${PVRDMA_MAD_SOCKET}`,
    '-device', `pvrdma,ibdev=${backend.ibdev},netdev=${backend.netdev},mad-chardev=mad,addr=${slot}.1`,
    '-qmp', `unix:${resultsDir}/${PVRDMA_QMP_SOCKET},server=on,wait=off`,
  ];
}

/** One RDMA_GID_STATUS_CHANGED event, with the GID as 16 raw bytes. */
export interface GidChange {
  netdev: string;
  added: boolean;
  gid: Buffer;
}

/**
 * Decodes RDMA_GID_STATUS_CHANGED from a raw QMP line. QEMU sends the GID's
 * two halves as the u64s a little-endian host reads from the big-endian
 * bytes, so they exceed 2^53: they are taken from the text as BigInt before
 * JSON.parse would round them.
 */
export function parseGidEvent(line: string): GidChange | undefined {
  if (!line.includes('"RDMA_GID_STATUS_CHANGED"')) return undefined;
  const prefix = /"subnet-prefix":\s*(\d+)/.exec(line);
  const iface = /"interface-id":\s*(\d+)/.exec(line);
  const m = JSON.parse(line) as { data?: { netdev?: string; 'gid-status'?: boolean } };
  if (!prefix || !iface || typeof m.data?.netdev !== 'string') return undefined;
  const gid = Buffer.alloc(16);
  gid.writeBigUInt64LE(BigInt(prefix[1]), 0);
  gid.writeBigUInt64LE(BigInt(iface[1]), 8);
  return { netdev: m.data.netdev, added: m.data['gid-status'] === true, gid };
}

/** The address a RoCE GID stands for: IPv4-mapped (RoCE v2) or IPv6. */
export function gidAddress(gid: Buffer): { family: 4 | 6; address: string } {
  const v4mapped = gid.subarray(0, 10).every((b) => b === 0) && gid[10] === 0xff && gid[11] === 0xff;
  if (v4mapped) return { family: 4, address: [...gid.subarray(12)].join('.') };
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(gid.readUInt16BE(i).toString(16));
  return { family: 6, address: words.join(':') };
}

/** The `ip` command that gives (or takes) a GID's address to the backend netdev. */
export function gidAddressCommand(change: GidChange): string[] {
  const { family, address } = gidAddress(change.gid);
  const prefixLen = family === 4 ? 32 : 64;
  return [`-${family}`, 'addr', change.added ? 'add' : 'del', `${address}/${prefixLen}`, 'dev', change.netdev];
}

const execFileAsync = promisify(execFile);

/**
 * Mirrors the inner guest's GIDs onto the backend netdev until `signal`
 * aborts. Failures are logged, never fatal: a GID left unmirrored fails the
 * inner test that uses it, with QEMU's own message in its log.
 */
export async function relayGids(qmpPath: string, signal: AbortSignal, log: (line: string) => void): Promise<void> {
  let qmp: Qmp | undefined;
  try {
    qmp = await Qmp.connect(qmpPath, signal);
    qmp.on('raw', (line: string) => {
      const change = parseGidEvent(line);
      if (!change) return;
      const args = gidAddressCommand(change);
      execFileAsync('ip', args).then(
        () => log(`pvrdma: ip ${args.join(' ')}`),
        (e: Error & { stderr?: string }) => {
          // The inner guest may announce an address the backend already has.
          if (!/File exists|Cannot assign|already assigned/.test(e.stderr ?? '')) log(`pvrdma: ip ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
        },
      );
    });
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } catch (e) {
    if (!signal.aborted) log(`pvrdma GID relay: ${(e as Error).message}`);
  } finally {
    qmp?.close();
  }
}
